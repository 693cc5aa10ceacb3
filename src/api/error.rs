//! API errors and their status codes. Every error body is `{"error": "…"}`
//! saying what is wrong; internal errors are logged under a request id and
//! the body carries the id, never the internals.

use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::model::FieldError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("Authentication required")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("{0}")]
    NotFound(&'static str),
    #[error("SSL must be used")]
    SslRequired,
    #[error("{0}")]
    Conflict(String),
    #[error("The request body was not sent in time")]
    RequestTimeout,
    #[error("Request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("Too many failed logins; try again later")]
    TooManyRequests(Duration),
    #[error("Too many answers naming MACs in use in other domains; try again later")]
    TooManyMacConflicts(Duration),
    #[error("Too many call actions; try again later")]
    TooManyCallActions(Duration),
    #[error("{0}")]
    NotImplemented(String),
    /// Busy right now: come back after this long.
    #[error("{0}")]
    Unavailable(&'static str, Duration),
    #[error("internal: {0}")]
    Internal(String),
}

impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> Self {
        ApiError::BadRequest(e.to_string())
    }
}

impl From<crate::auth::AuthError> for ApiError {
    fn from(e: crate::auth::AuthError) -> Self {
        use crate::auth::AuthError;
        match e {
            AuthError::Unauthorized => ApiError::Unauthorized,
            AuthError::TooManyFailures(left) => ApiError::TooManyRequests(left),
            AuthError::Busy => ApiError::Unavailable("Too many logins at once; try again shortly", Duration::from_secs(1)),
            AuthError::NoSuchDomain => ApiError::NotFound("Domain not found"),
            AuthError::Forbidden(why) => ApiError::Forbidden(why),
            AuthError::Store(e) => e.into(),
            AuthError::Internal(e) => ApiError::Internal(e),
        }
    }
}

impl From<crate::service::ServiceError> for ApiError {
    fn from(e: crate::service::ServiceError) -> Self {
        use crate::service::ServiceError;
        match e {
            ServiceError::Auth(e) => e.into(),
            ServiceError::Invalid(e) => e.into(),
            ServiceError::NotFound(what) => ApiError::NotFound(what),
            ServiceError::TooManyMacConflicts(left) => ApiError::TooManyMacConflicts(left),
            ServiceError::Store(e) => e.into(),
            ServiceError::ImportsBusy(retry) => ApiError::Unavailable(crate::service::import::IMPORTS_BUSY, retry),
            ServiceError::Conflict(m) => ApiError::Conflict(m),
            ServiceError::Unsupported(m) => ApiError::NotImplemented(m),
            ServiceError::TooManyCallActions(left) => ApiError::TooManyCallActions(left),
            ServiceError::File(e) => ApiError::Internal(format!("import file: {e}")),
        }
    }
}

impl From<crate::handset_csv::SpoolError> for ApiError {
    fn from(e: crate::handset_csv::SpoolError) -> Self {
        match e {
            crate::handset_csv::SpoolError::TooLarge(limit) => ApiError::PayloadTooLarge(limit),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

pub const DATABASE_UNAVAILABLE: &str = "The database is unavailable; try again shortly";
/// The `Retry-After` of answers during a database outage.
pub const DATABASE_RETRY_AFTER: Duration = Duration::from_secs(2);

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => ApiError::NotFound(what),
            StoreError::Conflict(what) => ApiError::Conflict(what),
            StoreError::Invalid(field) => field.into(),
            // The database is down or restarting: say so, and when to retry.
            other if other.is_outage() => ApiError::Unavailable(DATABASE_UNAVAILABLE, DATABASE_RETRY_AFTER),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::SslRequired => StatusCode::NOT_ACCEPTABLE,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::TooManyRequests(_) | ApiError::TooManyMacConflicts(_) | ApiError::TooManyCallActions(_) => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            ApiError::Unavailable(..) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = match &self {
            ApiError::Internal(detail) => {
                let id = hex::encode(rand::random::<[u8; 8]>());
                tracing::error!(request_id = %id, error = %detail, "internal error");
                serde_json::json!({ "error": "Internal server error", "requestid": id })
            }
            other => serde_json::json!({ "error": other.to_string() }),
        };
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        match self {
            ApiError::Unauthorized => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"autoprov\""));
            }
            ApiError::TooManyRequests(left)
            | ApiError::TooManyMacConflicts(left)
            | ApiError::TooManyCallActions(left)
            | ApiError::Unavailable(_, left) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(left.as_secs().max(1)));
            }
            // The rest of the body is not read: the connection cannot carry
            // another request, and the client must not try.
            ApiError::PayloadTooLarge(_) | ApiError::RequestTimeout => {
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// The errors every API call may answer, for the OpenAPI document.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum ErrorResponses {
    /// Bad request: bad JSON, field value, MAC or query.
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// No or wrong credentials.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// Not found (or another tenant's).
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// SSL must be used.
    #[response(status = 406)]
    SslRequired(ErrorBody),
}

/// Every error body, for the OpenAPI document.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What is wrong, in words.
    pub error: String,
    /// Internal errors only: the id under which the error was logged.
    pub requestid: Option<String>,
}
