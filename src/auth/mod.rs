//! Who is calling and what they may do: API users' passwords (argon2, with
//! failed-login limits per user and per client address), the caller of an
//! operation with the domain it acts in, and the role rules. The API's Basic
//! header and the admin UI's login form both come here; so does the command
//! line, as a superuser.

pub mod password;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::guard::strikes::Strike;
use crate::guard::{StrikePolicy, StrikeTable};
use crate::model::user::parse_login;
use crate::model::{ApiUser, Role, Secret};
use crate::store::{Actor, Store, StoreError};

/// More than 10 failed logins for one user or from one IP within 5 minutes
/// bans that user or IP for 5 minutes.
pub const LOGIN_POLICY: StrikePolicy =
    StrikePolicy { threshold: 10, window: Duration::from_secs(5 * 60), ban: Duration::from_secs(5 * 60), capacity: 100_000 };

/// How long a verified (user, password hash, password) triple is trusted
/// without running argon2 again. The stored hash is part of the key, so a
/// password change invalidates it at once, on every node.
const VERIFIED_TTL: Duration = Duration::from_secs(10 * 60);
const VERIFIED_CAPACITY: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("Authentication required")]
    Unauthorized,
    #[error("Too many failed logins; try again later")]
    TooManyFailures(Duration),
    /// A domain the caller may not act in, or that does not exist: the same
    /// answer, so other tenants do not exist as far as a caller can tell.
    #[error("Domain not found")]
    NoSuchDomain,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("password check: {0}")]
    Internal(String),
}

pub struct Authenticator {
    store: Store,
    by_user: StrikeTable<String>,
    by_ip: StrikeTable<IpAddr>,
    /// Keyed SHA-256 of verified credentials; argon2 is deliberately slow
    /// (tens of ms), far too slow to run on every API request.
    verified: Mutex<HashMap<[u8; 32], Instant>>,
    cache_key: [u8; 32],
    /// Verified against when the user does not exist, so that unknown and
    /// known users take the same time to refuse.
    dummy_hash: String,
}

impl Authenticator {
    pub fn new(store: Store) -> Self {
        Authenticator {
            store,
            by_user: StrikeTable::new(LOGIN_POLICY),
            by_ip: StrikeTable::new(LOGIN_POLICY),
            verified: Mutex::new(HashMap::new()),
            cache_key: rand::random(),
            dummy_hash: password::hash(&Secret::generate(24)),
        }
    }

    /// Refuses at once an address that is banned for failed logins.
    pub fn check_address(&self, ip: IpAddr) -> Result<(), AuthError> {
        match self.by_ip.banned(&ip, Instant::now()) {
            Some(left) => Err(AuthError::TooManyFailures(left)),
            None => Ok(()),
        }
    }

    /// Checks `user@domain` and its password from `ip`, under the same
    /// failed-login limits whether they came in a Basic header or the web
    /// UI's login form.
    pub async fn check(&self, login: &str, password: &Secret, ip: IpAddr) -> Result<ApiUser, AuthError> {
        let now = Instant::now();
        self.check_address(ip)?;
        let user_key = login.to_ascii_lowercase();
        if let Some(left) = self.by_user.banned(&user_key, now) {
            return Err(AuthError::TooManyFailures(left));
        }
        let user = match parse_login(login) {
            Ok((name, domain)) => self.find_user(&name, &domain).await?,
            Err(_) => None,
        };
        let ok = match &user {
            Some(u) => self.verify(u, password).await?,
            None => {
                self.verify_hash(&self.dummy_hash, password).await?;
                false
            }
        };
        match (ok, user) {
            (true, Some(user)) => {
                self.by_user.forgive(&user_key);
                Ok(user)
            }
            _ => {
                let banned_user = self.by_user.strike(&user_key, now) == Strike::Banned;
                let banned_ip = self.by_ip.strike(&ip, now) == Strike::Banned;
                if banned_user || banned_ip {
                    // One line per ban, for fail2ban and people alike.
                    tracing::warn!(client_ip = %ip, user = %user_key, "api login ban: too many failed logins");
                    return Err(AuthError::TooManyFailures(LOGIN_POLICY.ban));
                }
                tracing::info!(client_ip = %ip, user = %user_key, "api login failed");
                Err(AuthError::Unauthorized)
            }
        }
    }

    /// `name@mycompany.example.com` logs into domain `mycompany` when no
    /// domain has the full name.
    async fn find_user(&self, name: &str, domain: &str) -> Result<Option<ApiUser>, AuthError> {
        if let Some(user) = self.store.user_by_login(name, domain).await? {
            return Ok(Some(user));
        }
        match domain.split_once('.') {
            Some((label, _)) => Ok(self.store.user_by_login(name, label).await?),
            None => Ok(None),
        }
    }

    async fn verify(&self, user: &ApiUser, password: &Secret) -> Result<bool, AuthError> {
        let key = {
            let mut h = Sha256::new();
            h.update(self.cache_key);
            h.update(user.id.to_be_bytes());
            h.update(user.password_hash.as_bytes());
            h.update([0]);
            h.update(password.expose().as_bytes());
            <[u8; 32]>::from(h.finalize())
        };
        let now = Instant::now();
        {
            let cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
            if cache.get(&key).is_some_and(|at| now.duration_since(*at) < VERIFIED_TTL) {
                return Ok(true);
            }
        }
        let ok = self.verify_hash(&user.password_hash, password).await?;
        if ok {
            let mut cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
            if cache.len() >= VERIFIED_CAPACITY {
                cache.retain(|_, at| now.duration_since(*at) < VERIFIED_TTL);
                if cache.len() >= VERIFIED_CAPACITY {
                    cache.clear();
                }
            }
            cache.insert(key, now);
        }
        Ok(ok)
    }

    /// argon2 on the blocking pool: it would stall the async workers.
    async fn verify_hash(&self, phc: &str, password: &Secret) -> Result<bool, AuthError> {
        let (phc, password) = (phc.to_string(), password.clone());
        tokio::task::spawn_blocking(move || password::verify(&password, &phc))
            .await
            .map_err(|e| AuthError::Internal(e.to_string()))
    }

    /// The caller `user` is when it names `domain` (`?domain=`): its own
    /// domain, or for a superuser any that exists.
    pub async fn caller(&self, user: ApiUser, domain: Option<&str>, client_ip: IpAddr) -> Result<Caller, AuthError> {
        let named = domain.map(|d| d.to_ascii_lowercase()).filter(|d| *d != user.domain);
        let (domain_id, domain) = match named {
            None => (user.domain_id, user.domain.clone()),
            Some(name) if user.superuser => {
                let d = self.store.domain_by_name(&name).await?.ok_or(AuthError::NoSuchDomain)?;
                (d.id, d.name)
            }
            Some(_) => return Err(AuthError::NoSuchDomain),
        };
        let actor = Actor { login: user.login(), client_ip: Some(client_ip) };
        Ok(Caller { user, domain_id, domain, actor })
    }
}

/// Who is calling an operation and the domain it acts in.
#[derive(Clone, Debug)]
pub struct Caller {
    pub user: ApiUser,
    /// The domain this call acts in: the user's own, or for a superuser the
    /// one it named.
    pub domain_id: i64,
    pub domain: String,
    /// Who the audit log names.
    pub actor: Actor,
}

impl Caller {
    /// The command line: the operator of the server, a superuser acting in
    /// `domain`.
    pub fn cli(domain_id: i64, domain: &str) -> Caller {
        let user = ApiUser {
            id: 0,
            name: "cli".into(),
            domain_id,
            domain: domain.to_string(),
            role: Role::Admin,
            superuser: true,
            password_hash: String::new(),
        };
        Caller { user, domain_id, domain: domain.to_string(), actor: Actor::cli() }
    }

    pub fn actor(&self) -> Actor {
        self.actor.clone()
    }

    /// Handset and status writes: anyone but `readonly`.
    pub fn require_write(&self) -> Result<(), AuthError> {
        if self.user.role == Role::Readonly && !self.user.superuser {
            return Err(AuthError::Forbidden("Read-only users cannot make changes"));
        }
        Ok(())
    }

    /// Domain settings and the audit log: admins and superusers.
    pub fn require_admin(&self) -> Result<(), AuthError> {
        if self.user.role != Role::Admin && !self.user.superuser {
            return Err(AuthError::Forbidden("Only admins may do this"));
        }
        Ok(())
    }
}
