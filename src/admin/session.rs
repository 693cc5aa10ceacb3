//! Logging in and out of the UI. The session cookie is `__Host-` prefixed
//! (Secure, Path=/, no Domain), HttpOnly and SameSite=Strict; it carries a
//! random token whose SHA-256 names the session row. The login form has its
//! own CSRF token (double-submit: a cookie and a field that must match),
//! since there is no session yet to hold one.

use std::time::Duration;

use askama::Template;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{AppendHeaders, IntoResponse, Redirect, Response};
use base64::Engine;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::error::html;
use super::form::{constant_time_eq, Fields, Posted};
use super::{AdminState, PageResult};
use crate::api::ApiError;
use crate::auth::Caller;
use crate::client::ClientInfo;
use crate::model::Secret;
use crate::store::sessions::SessionRow;

const SESSION_COOKIE: &str = "__Host-autoprov-session";
const LOGIN_COOKIE: &str = "__Host-autoprov-login";
/// A session lasts a working day, then its user logs in again.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// A logged-in user of the UI, acting in one domain.
pub struct Session {
    pub row: SessionRow,
    token_hash: String,
    pub client: ClientInfo,
}

impl Session {
    /// The session as an API caller: the UI obeys the API's rules for roles
    /// and tenants by going through the same checks.
    pub fn caller(&self) -> Caller {
        Caller {
            user: self.row.user.clone(),
            domain_id: self.row.domain_id,
            domain: self.row.domain.clone(),
            actor: crate::store::Actor { login: self.row.user.login(), client_ip: Some(self.client.ip) },
        }
    }
}

impl FromRequestParts<AdminState> for Session {
    /// To the login page, coming back here afterwards.
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AdminState) -> Result<Self, Response> {
        let client = ClientInfo::from_request_parts(parts, state).await.unwrap_or_else(|e| match e {});
        if let Some(token) = cookie(&parts.headers, SESSION_COOKIE) {
            let token_hash = hash_token(token);
            match state.api.store.session(&token_hash).await {
                Ok(Some(row)) => return Ok(Session { row, token_hash, client }),
                Ok(None) => {}
                Err(e) => return Err(super::PageError::from(e).into_response()),
            }
        }
        let back = if parts.method == axum::http::Method::GET { parts.uri.path() } else { "/admin/handsets" };
        let next: String = form_urlencoded::byte_serialize(back.as_bytes()).collect();
        Err(Redirect::to(&format!("/admin/login?next={next}")).into_response())
    }
}

/// The value of cookie `name`, if the request has it.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn random_token() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

fn set_cookie(name: &str, value: &str, max_age: Option<u64>) -> String {
    let age = max_age.map(|s| format!("; Max-Age={s}")).unwrap_or_default();
    format!("{name}={value}; Path=/; Secure; HttpOnly; SameSite=Strict{age}")
}

/// Where to go after logging in: only a page of the UI (no open redirect).
fn safe_next(next: &str) -> &str {
    let ok = next.starts_with("/admin/") && !next.contains("//") && !next.contains('\\') && !next.contains("/login");
    if ok {
        next
    } else {
        "/admin/handsets"
    }
}

#[derive(Template)]
#[template(path = "admin/login.html")]
struct LoginPage<'a> {
    csrf: &'a str,
    next: &'a str,
    login: &'a str,
    message: Option<String>,
}

/// Shows the login form with a fresh login CSRF token.
fn login_form(status: StatusCode, next: &str, login: &str, message: Option<String>) -> Response {
    let csrf = random_token();
    let page = LoginPage { csrf: &csrf, next: safe_next(next), login, message };
    (AppendHeaders([(header::SET_COOKIE, set_cookie(LOGIN_COOKIE, &csrf, Some(3600)))]), html(status, &page)).into_response()
}

#[derive(Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
    done: Option<String>,
}

pub async fn login_page(Query(q): Query<LoginQuery>) -> Response {
    let message = (q.done.as_deref() == Some("logout")).then(|| "You have logged out.".to_string());
    login_form(StatusCode::OK, q.next.as_deref().unwrap_or(""), "", message)
}

pub async fn login(State(state): State<AdminState>, client: ClientInfo, headers: HeaderMap, body: axum::body::Body) -> Response {
    let fields = match Fields::read(&headers, body).await {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let (login, next) = (fields.get("login").trim(), fields.get("next"));
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or("");
    if expected.is_empty() || !constant_time_eq(expected, fields.get("csrf")) {
        let why = "The login form had expired or did not come from this site. Please try again.";
        return login_form(StatusCode::FORBIDDEN, next, login, Some(why.into()));
    }
    let user = match state.api.auth.check(login, &Secret::new(fields.get("password")), client.ip).await {
        Ok(user) => user,
        Err(crate::auth::AuthError::Unauthorized) => {
            return login_form(StatusCode::UNAUTHORIZED, next, login, Some("Wrong login or password.".into()))
        }
        Err(crate::auth::AuthError::TooManyFailures(left)) => {
            let why = format!("Too many failed logins: try again in {} minutes.", left.as_secs().div_ceil(60));
            return login_form(StatusCode::TOO_MANY_REQUESTS, next, login, Some(why));
        }
        Err(e) => return super::PageError(e.into()).into_response(),
    };
    let (token, csrf) = (random_token(), random_token());
    if let Err(e) = state.api.store.create_session(&hash_token(&token), &user, &csrf, SESSION_LIFETIME.as_millis() as i64).await {
        return super::PageError::from(e).into_response();
    }
    tracing::info!(user = %user.login(), client_ip = %client.ip, "admin UI login");
    (
        AppendHeaders([
            (header::SET_COOKIE, set_cookie(SESSION_COOKIE, &token, None)),
            (header::SET_COOKIE, set_cookie(LOGIN_COOKIE, "", Some(0))),
        ]),
        Redirect::to(safe_next(next)),
    )
        .into_response()
}

pub async fn logout(State(state): State<AdminState>, posted: Posted) -> PageResult {
    state.api.store.delete_session(&posted.session.token_hash).await?;
    tracing::info!(user = %posted.session.row.user.login(), "admin UI logout");
    Ok((AppendHeaders([(header::SET_COOKIE, set_cookie(SESSION_COOKIE, "", Some(0)))]), Redirect::to("/admin/login?done=logout"))
        .into_response())
}

/// A superuser picks the domain the session acts in.
pub async fn switch_domain(State(state): State<AdminState>, posted: Posted) -> PageResult {
    if !posted.session.row.user.superuser {
        return Err(ApiError::Forbidden("Only superusers act in other domains").into());
    }
    let name = posted.fields.get("domain").trim().to_ascii_lowercase();
    let domain = state.api.store.domain_by_name(&name).await?.ok_or(ApiError::NotFound("Domain not found"))?;
    state.api.store.set_session_domain(&posted.session.token_hash, domain.id).await?;
    Ok(Redirect::to("/admin/handsets").into_response())
}
