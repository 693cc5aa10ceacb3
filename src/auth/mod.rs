//! Who is calling and what they may do: API users' passwords (argon2 behind
//! the failed-login throttle of [`throttle`]), the caller of an
//! operation with the domain it acts in, and the role rules. The API's Basic
//! header and the admin UI's login form both come here; so does the command
//! line, as a superuser.

pub mod password;
pub mod throttle;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::model::user::parse_login;
use crate::model::{ApiUser, Role, Secret};
use crate::store::{Actor, Store, StoreError};
use throttle::{LoginThrottle, Pair, Refused};

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
    /// Every password-checking slot stayed busy.
    #[error("Too many logins at once; try again shortly")]
    Busy,
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

impl From<Refused> for AuthError {
    fn from(r: Refused) -> Self {
        match r {
            Refused::Banned(left) => AuthError::TooManyFailures(left),
            Refused::Busy => AuthError::Busy,
        }
    }
}

pub struct Authenticator {
    store: Store,
    checks: Arc<PasswordChecks>,
    cache_key: [u8; 32],
    /// Verified against when the user does not exist, so that unknown and
    /// known users take the same time to refuse.
    dummy_hash: String,
}

/// What a password check came to, shared by every request waiting on it.
type Outcome = Option<Result<bool, Refused>>;

/// Password checks: the throttle in front of argon2, the checks in flight
/// and the credentials verified lately.
struct PasswordChecks {
    throttle: LoginThrottle,
    /// Keyed SHA-256 of verified credentials; argon2 is deliberately slow
    /// (tens of ms), far too slow to run on every API request.
    verified: Mutex<HashMap<[u8; 32], Instant>>,
    /// Checks running, by credentials: every request that brings the same
    /// credentials meanwhile (an integration's parallel calls) waits for
    /// the one check: one hash, one counted guess.
    in_flight: Mutex<HashMap<[u8; 32], watch::Receiver<Outcome>>>,
}

impl Authenticator {
    pub fn new(store: Store) -> Self {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let checks =
            PasswordChecks { throttle: LoginThrottle::new(cores), verified: Mutex::default(), in_flight: Mutex::default() };
        Authenticator {
            store,
            checks: Arc::new(checks),
            cache_key: rand::random(),
            dummy_hash: password::hash(&Secret::generate(24)),
        }
    }

    /// Refuses at once an address that is banned for failed logins.
    pub fn check_address(&self, ip: IpAddr) -> Result<(), AuthError> {
        Ok(self.checks.throttle.check_source(ip)?)
    }

    /// Checks `user@domain` and its password from `ip`, under the same
    /// failed-login limits whether they came in a Basic header or the web
    /// UI's login form (see [`throttle`]).
    pub async fn check(&self, login: &str, password: &Secret, ip: IpAddr) -> Result<ApiUser, AuthError> {
        self.check_address(ip)?;
        let user = match parse_login(login) {
            Ok((name, domain)) => self.find_user(&name, &domain).await?,
            Err(_) => None,
        };
        let (phc, user_id) = match &user {
            Some(u) => (u.password_hash.as_str(), Some(u.id)),
            None => (self.dummy_hash.as_str(), None),
        };
        let key = self.credential_key(user_id.unwrap_or(-1), phc, password);
        let right = self.checks.recently_verified(&key)
            || self.verify_once(key, Pair { user: user_id, source: ip }, phc, password).await?;
        match user.filter(|_| right) {
            Some(user) => Ok(user),
            None => {
                tracing::info!(client_ip = %ip, user_id = ?user_id, "api login failed");
                Err(AuthError::Unauthorized)
            }
        }
    }

    /// Runs the one check of these credentials, or waits for the one
    /// running. It runs in its own task: a client that hangs up does not
    /// cancel it for the others waiting.
    async fn verify_once(&self, key: [u8; 32], pair: Pair, phc: &str, password: &Secret) -> Result<bool, AuthError> {
        let mut outcome = {
            let mut in_flight = self.checks.in_flight.lock().unwrap_or_else(|p| p.into_inner());
            match in_flight.get(&key) {
                Some(running) => running.clone(),
                None => {
                    let (tx, rx) = watch::channel(None);
                    in_flight.insert(key, rx.clone());
                    let (checks, phc, password) = (self.checks.clone(), phc.to_string(), password.clone());
                    tokio::spawn(async move {
                        let result = checks.verify(pair, phc, password).await;
                        if result == Ok(true) {
                            checks.remember(key);
                        }
                        checks.in_flight.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
                        let _ = tx.send(Some(result));
                    });
                    rx
                }
            }
        };
        let result = outcome.wait_for(Option::is_some).await.map_err(|_| AuthError::Busy)?.clone();
        Ok(result.unwrap_or(Err(Refused::Busy))?)
    }

    fn credential_key(&self, user_id: i64, phc: &str, password: &Secret) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.cache_key);
        h.update(user_id.to_be_bytes());
        h.update(phc.as_bytes());
        h.update([0]);
        h.update(password.expose().as_bytes());
        h.finalize().into()
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

    /// SIP passwords and tokens are shown to those who may change them;
    /// `readonly` users see them masked.
    pub fn may_see_secrets(&self) -> bool {
        self.require_write().is_ok()
    }

    /// Domain settings and the audit log: admins and superusers.
    pub fn require_admin(&self) -> Result<(), AuthError> {
        if self.user.role != Role::Admin && !self.user.superuser {
            return Err(AuthError::Forbidden("Only admins may do this"));
        }
        Ok(())
    }
}

impl PasswordChecks {
    /// Charges the guess, waits for a hashing slot, runs argon2 on the
    /// blocking pool (it would stall the async workers), and settles the
    /// charge. Unknown users (`pair.user` none) are checked against the
    /// dummy hash and are never right.
    async fn verify(&self, pair: Pair, phc: String, password: Secret) -> Result<bool, Refused> {
        let charged = self.throttle.charge(pair)?;
        let permit = self.throttle.hash_slot().await?;
        let matched = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            password::verify(&password, &phc)
        })
        .await
        .unwrap_or(false);
        let right = matched && pair.user.is_some();
        if right {
            self.throttle.refund(charged);
        } else {
            self.throttle.failed(charged);
        }
        Ok(right)
    }

    fn recently_verified(&self, key: &[u8; 32]) -> bool {
        let cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        cache.get(key).is_some_and(|at| at.elapsed() < VERIFIED_TTL)
    }

    fn remember(&self, key: [u8; 32]) {
        let now = Instant::now();
        let mut cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= VERIFIED_CAPACITY {
            cache.retain(|_, at| now.duration_since(*at) < VERIFIED_TTL);
            if cache.len() >= VERIFIED_CAPACITY {
                cache.clear();
            }
        }
        cache.insert(key, now);
    }
}
