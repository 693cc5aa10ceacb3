//! The API's side of authentication: HTTP Basic as Jingl does it,
//! `user@domain:password`, and `?domain=` for superusers, turned into an
//! [`auth::Caller`](crate::auth::Caller) by `crate::auth`.

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use base64::Engine;

use super::error::ApiError;
use super::ApiState;
use crate::auth::Caller;
use crate::client::ClientInfo;
use crate::model::Secret;

/// `?domain=`, read by every call.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DomainParam {
    /// Superusers: act in this domain.
    pub domain: Option<String>,
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

impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let client = ClientInfo::from_request_parts(parts, state).await.unwrap_or_else(|e| match e {});
        state.auth.check_address(client.ip)?;
        let (login, password) = basic_credentials(&parts.headers).ok_or(ApiError::Unauthorized)?;
        let user = state.auth.check(&login, &password, client.ip).await?;
        let named = Query::<DomainParam>::try_from_uri(&parts.uri).ok().and_then(|q| q.0.domain);
        Ok(state.auth.caller(user, named.as_deref(), client.ip).await?)
    }
}
