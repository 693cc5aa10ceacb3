//! Errors of the UI's pages: the API's errors (same statuses, same words),
//! shown as a small HTML page.

use askama::Template;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};

use crate::api::ApiError;

#[derive(Debug)]
pub struct PageError(pub ApiError);

pub type PageResult<T = Response> = Result<T, PageError>;

impl<E: Into<ApiError>> From<E> for PageError {
    fn from(e: E) -> Self {
        PageError(e.into())
    }
}

#[derive(Template)]
#[template(path = "admin/error.html")]
struct ErrorPage<'a> {
    status: u16,
    message: &'a str,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let status = self.0.status();
        let message = match &self.0 {
            ApiError::Internal(detail) => {
                let id = hex::encode(rand::random::<[u8; 8]>());
                tracing::error!(request_id = %id, error = %detail, "internal error (admin UI)");
                format!("Internal server error (request id {id})")
            }
            other => other.to_string(),
        };
        let retry_after = match &self.0 {
            ApiError::Unavailable(_, after) => Some(after.as_secs().max(1)),
            _ => None,
        };
        let page = ErrorPage { status: status.as_u16(), message: &message };
        let mut response = match page.render() {
            Ok(html) => (status, Html(html)).into_response(),
            Err(_) => (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], message).into_response(),
        };
        if let Some(secs) = retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
        }
        response
    }
}

/// Renders a page template, or the error page if rendering fails.
pub fn html(status: axum::http::StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => PageError(ApiError::Internal(format!("template: {e}"))).into_response(),
    }
}
