//! Phones over HTTP and HTTPS: `GET`/`HEAD` of a file name at the root or
//! under the configured prefix, with `ETag`/`If-None-Match` and
//! `Last-Modified`/`If-Modified-Since`.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;

use super::{FetchRequest, Protocol, Provisioner, Refusal, Served};
use crate::client::ClientInfo;

#[derive(Clone)]
struct HttpFront {
    provisioner: Arc<Provisioner>,
    prefix: Option<Arc<str>>,
}

/// Every path the API does not claim is a phone's file request.
pub fn router(provisioner: Arc<Provisioner>, prefix: Option<String>) -> Router {
    Router::new().fallback(serve_file).with_state(HttpFront { provisioner, prefix: prefix.map(Arc::from) })
}

async fn serve_file(
    State(front): State<HttpFront>,
    client: ClientInfo,
    method: Method,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return (StatusCode::METHOD_NOT_ALLOWED, [(header::ALLOW, "GET, HEAD")], "Method not allowed\n").into_response();
    }
    let path = uri.path();
    let (raw, prefix) = match front.prefix.as_deref() {
        Some(p) if path.starts_with(p) && path[p.len()..].starts_with('/') => (&path[p.len() + 1..], p),
        _ => (path.strip_prefix('/').unwrap_or(path), ""),
    };
    let Ok(file) = percent_encoding::percent_decode_str(raw).decode_utf8() else {
        return refusal_response(Refusal::BadName("file name is not UTF-8"));
    };
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()).filter(|h| valid_host(h)) else {
        return (StatusCode::BAD_REQUEST, "Bad or missing Host header\n").into_response();
    };
    let protocol = if client.tls { Protocol::Https } else { Protocol::Http };
    let req = FetchRequest {
        peer: client.ip,
        file: &file,
        user_agent: headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()),
        protocol,
        base_url: format!("{}://{host}{prefix}/", protocol.as_str()),
    };
    match front.provisioner.fetch(&req).await {
        Ok(served) => file_response(&method, &headers, served),
        Err(refusal) => refusal_response(refusal),
    }
}

fn file_response(method: &Method, request: &HeaderMap, served: Served) -> Response {
    let last_modified = truncate_to_seconds(served.last_modified);
    let not_modified = match request.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) {
        Some(tags) => tags.split(',').map(|t| t.trim().trim_start_matches("W/")).any(|t| t == served.etag || t == "*"),
        None => request
            .get(header::IF_MODIFIED_SINCE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok())
            .is_some_and(|since| last_modified <= since),
    };
    let mut builder = Response::builder()
        .header(header::ETAG, &served.etag)
        .header(header::LAST_MODIFIED, httpdate::fmt_http_date(last_modified))
        // The file carries a SIP password: no shared caches, always revalidate.
        .header(header::CACHE_CONTROL, "private, no-cache");
    if not_modified {
        builder = builder.status(StatusCode::NOT_MODIFIED);
        return builder.body(Body::empty()).unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
    }
    let content_type = HeaderValue::from_str(&served.content_type).unwrap_or(HeaderValue::from_static("text/plain"));
    builder = builder.header(header::CONTENT_TYPE, content_type).header(header::CONTENT_LENGTH, served.body.len());
    let body = if method == Method::HEAD { Body::empty() } else { Body::from(served.body) };
    builder.body(body).unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn refusal_response(refusal: Refusal) -> Response {
    let status = match refusal {
        Refusal::Banned | Refusal::Forbidden(_) => StatusCode::FORBIDDEN,
        Refusal::BadName(_) => StatusCode::BAD_REQUEST,
        Refusal::NotFound(_) => StatusCode::NOT_FOUND,
        Refusal::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    // Say little to an unidentified client: the status is the answer.
    let text = match status {
        StatusCode::FORBIDDEN => "Forbidden\n",
        StatusCode::BAD_REQUEST => "Bad file name\n",
        StatusCode::NOT_FOUND => "Not found\n",
        _ => "Internal server error\n",
    };
    (status, [(header::CACHE_CONTROL, "no-store")], text).into_response()
}

/// `host[:port]` with a DNS name, IPv4 or bracketed IPv6: it goes into the
/// phone's config, so nothing else is accepted.
fn valid_host(h: &str) -> bool {
    h.len() <= 255
        && !h.is_empty()
        && h.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        && h.bytes().filter(|&b| b == b'[').count() <= 1
}

fn truncate_to_seconds(t: SystemTime) -> SystemTime {
    let secs = t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    UNIX_EPOCH + std::time::Duration::from_secs(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_that_may_go_into_a_config() {
        for ok in ["prov.example.com", "192.0.2.1:8080", "[2001:db8::1]:8443", "localhost"] {
            assert!(valid_host(ok), "{ok}");
        }
        for bad in ["", "a b", "evil\"/><x", "host/path", "a\r\nb", "[[::1]]"] {
            assert!(!valid_host(bad), "{bad:?}");
        }
    }
}
