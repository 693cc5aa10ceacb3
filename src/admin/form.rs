//! Form posts: every one must come from a logged-in session, carry that
//! session's CSRF token, and (when the browser says where it came from)
//! come from this site. SameSite=Strict already keeps the cookie off
//! cross-site posts; the token and the Origin check do not rely on it.

use std::collections::HashMap;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};

use super::session::Session;
use super::{AdminState, PageError};
use crate::api::ApiError;

/// Form bodies are small; the CSV upload has its own limit.
pub const MAX_FORM: usize = 64 * 1024;

/// The fields of a urlencoded form (the last of a repeated name wins).
#[derive(Debug, Default)]
pub struct Fields(HashMap<String, String>);

impl Fields {
    /// `""` for a field the form did not send.
    pub fn get(&self, name: &str) -> &str {
        self.0.get(name).map(String::as_str).unwrap_or("")
    }

    /// A checkbox: sent (with any value) when ticked.
    pub fn ticked(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    pub fn insert(&mut self, name: &str, value: String) {
        self.0.insert(name.to_string(), value);
    }

    /// Reads an `application/x-www-form-urlencoded` body.
    pub async fn read(headers: &HeaderMap, body: axum::body::Body) -> Result<Fields, PageError> {
        let urlencoded = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().to_ascii_lowercase().starts_with("application/x-www-form-urlencoded"));
        if !urlencoded {
            return Err(ApiError::BadRequest("Content-Type must be application/x-www-form-urlencoded".into()).into());
        }
        let bytes = axum::body::to_bytes(body, MAX_FORM).await.map_err(|_| ApiError::PayloadTooLarge(MAX_FORM))?;
        Ok(Fields(form_urlencoded::parse(&bytes).into_owned().collect()))
    }
}

/// A checked form post: the session, and the fields.
pub struct Posted {
    pub session: Session,
    pub fields: Fields,
}

impl FromRequest<AdminState> for Posted {
    type Rejection = Response;

    async fn from_request(request: Request, state: &AdminState) -> Result<Self, Response> {
        let (mut parts, body) = request.into_parts();
        let session = Session::from_request_parts(&mut parts, state).await?;
        let fields = Fields::read(&parts.headers, body).await.map_err(IntoResponse::into_response)?;
        check_csrf(&session, &parts.headers, fields.get("csrf")).map_err(IntoResponse::into_response)?;
        Ok(Posted { session, fields })
    }
}

/// Refuses a post without the session's CSRF token, or (by its `Origin`)
/// from another site.
pub fn check_csrf(session: &Session, headers: &HeaderMap, token: &str) -> Result<(), PageError> {
    const REFUSED: &str = "This form had expired or did not come from this site: reload the page and try again";
    if !constant_time_eq(&session.row.csrf, token) {
        tracing::warn!(user = %session.row.user.login(), client_ip = %session.client.ip, "admin UI post refused: bad CSRF token");
        return Err(ApiError::Forbidden(REFUSED).into());
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
        let same = origin.to_str().ok().and_then(|o| o.strip_prefix("https://")).is_some_and(|o| !host.is_empty() && o == host);
        if !same {
            tracing::warn!(user = %session.row.user.login(), client_ip = %session.client.ip, "admin UI post refused: foreign Origin");
            return Err(ApiError::Forbidden(REFUSED).into());
        }
    }
    Ok(())
}

/// Compares secrets without an early exit that would time their prefix.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
