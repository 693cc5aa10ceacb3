//! API authentication: HTTP Basic as Jingl does it, `user@domain:password`,
//! with failed-login limits per user and per client IP, and the rule that a
//! caller acts in its own domain unless it is a superuser.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use base64::Engine;
use sha2::{Digest, Sha256};

use super::error::ApiError;
use super::ApiState;
use crate::client::ClientInfo;
use crate::guard::{StrikePolicy, StrikeTable};
use crate::model::user::parse_login;
use crate::model::{ApiUser, Role, Secret};
use crate::store::{Actor, Store};

/// More than 10 failed logins for one user or from one IP within 5 minutes
/// bans that user or IP for 5 minutes.
pub const LOGIN_POLICY: StrikePolicy =
    StrikePolicy { threshold: 10, window: Duration::from_secs(5 * 60), ban: Duration::from_secs(5 * 60), capacity: 100_000 };

/// How long a verified (user, password hash, password) triple is trusted
/// without running argon2 again. The stored hash is part of the key, so a
/// password change invalidates it at once, on every node.
const VERIFIED_TTL: Duration = Duration::from_secs(10 * 60);
const VERIFIED_CAPACITY: usize = 10_000;

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
            dummy_hash: crate::password::hash(&Secret::generate(24)),
        }
    }

    /// Checks the `Authorization` header of a request from `ip`.
    pub async fn authenticate(&self, headers: &HeaderMap, ip: IpAddr) -> Result<ApiUser, ApiError> {
        if let Some(left) = self.by_ip.banned(&ip, Instant::now()) {
            return Err(ApiError::TooManyRequests(left));
        }
        let (login, password) = basic_credentials(headers).ok_or(ApiError::Unauthorized)?;
        self.check(&login, &password, ip).await
    }

    /// Checks `user@domain` and its password from `ip`, under the same
    /// failed-login limits whether they came in a Basic header or the web
    /// UI's login form.
    pub async fn check(&self, login: &str, password: &Secret, ip: IpAddr) -> Result<ApiUser, ApiError> {
        let now = Instant::now();
        if let Some(left) = self.by_ip.banned(&ip, now) {
            return Err(ApiError::TooManyRequests(left));
        }
        let user_key = login.to_ascii_lowercase();
        if let Some(left) = self.by_user.banned(&user_key, now) {
            return Err(ApiError::TooManyRequests(left));
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
                let banned_user = self.by_user.strike(&user_key, now) == crate::guard::strikes::Strike::Banned;
                let banned_ip = self.by_ip.strike(&ip, now) == crate::guard::strikes::Strike::Banned;
                if banned_user || banned_ip {
                    // One line per ban, for fail2ban and people alike.
                    tracing::warn!(client_ip = %ip, user = %user_key, "api login ban: too many failed logins");
                    return Err(ApiError::TooManyRequests(LOGIN_POLICY.ban));
                }
                tracing::info!(client_ip = %ip, user = %user_key, "api login failed");
                Err(ApiError::Unauthorized)
            }
        }
    }

    /// `name@mycompany.example.com` logs into domain `mycompany` when no
    /// domain has the full name.
    async fn find_user(&self, name: &str, domain: &str) -> Result<Option<ApiUser>, ApiError> {
        if let Some(user) = self.store.user_by_login(name, domain).await? {
            return Ok(Some(user));
        }
        match domain.split_once('.') {
            Some((label, _)) => Ok(self.store.user_by_login(name, label).await?),
            None => Ok(None),
        }
    }

    async fn verify(&self, user: &ApiUser, password: &Secret) -> Result<bool, ApiError> {
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
    async fn verify_hash(&self, phc: &str, password: &Secret) -> Result<bool, ApiError> {
        let (phc, password) = (phc.to_string(), password.clone());
        tokio::task::spawn_blocking(move || crate::password::verify(&password, &phc))
            .await
            .map_err(|e| ApiError::Internal(format!("password check: {e}")))
    }
}

/// `Authorization: Basic base64(login:password)`.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, Secret)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (login, password) = text.split_once(':')?;
    Some((login.to_string(), Secret::new(password)))
}

/// An authenticated API caller and the domain it acts in.
#[derive(Clone, Debug)]
pub struct Caller {
    pub user: ApiUser,
    /// The domain this request acts in: the user's own, or for a superuser
    /// the one named by `?domain=`.
    pub domain_id: i64,
    pub domain: String,
    pub client: ClientInfo,
}

/// `?domain=`, read by every call.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DomainParam {
    /// Superusers: act in this domain.
    pub domain: Option<String>,
}

impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let client = ClientInfo::from_request_parts(parts, state).await.unwrap_or_else(|e| match e {});
        let user = state.auth.authenticate(&parts.headers, client.ip).await?;
        let named = Query::<DomainParam>::try_from_uri(&parts.uri)
            .ok()
            .and_then(|q| q.0.domain)
            .map(|d| d.to_ascii_lowercase())
            .filter(|d| *d != user.domain);
        let (domain_id, domain) = match named {
            None => (user.domain_id, user.domain.clone()),
            Some(name) if user.superuser => {
                let d = state.store.domain_by_name(&name).await?.ok_or(ApiError::NotFound("Domain not found"))?;
                (d.id, d.name)
            }
            // Other tenants do not exist as far as this caller can tell.
            Some(_) => return Err(ApiError::NotFound("Domain not found")),
        };
        Ok(Caller { user, domain_id, domain, client })
    }
}

impl Caller {
    pub fn actor(&self) -> Actor {
        Actor { login: self.user.login(), client_ip: Some(self.client.ip) }
    }

    /// Handset and status writes: anyone but `readonly`.
    pub fn require_write(&self) -> Result<(), ApiError> {
        if self.user.role == Role::Readonly && !self.user.superuser {
            return Err(ApiError::Forbidden("Read-only users cannot make changes"));
        }
        Ok(())
    }

    /// Domain settings and the audit log: admins and superusers.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.user.role != Role::Admin && !self.user.superuser {
            return Err(ApiError::Forbidden("Only admins may do this"));
        }
        Ok(())
    }
}
