//! Phones over HTTP and HTTPS: `GET`/`HEAD` of a file name at the root or
//! under the configured prefix, with `ETag`/`If-None-Match` and
//! `Last-Modified`/`If-Modified-Since`.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;

use super::device_auth::Credentials;
use super::{names, DeviceCert, FetchRequest, Origin, Protocol, Provisioner, Refusal, Served};
use crate::client::{ClientCertificate, ClientInfo, HostHeader};

#[derive(Clone)]
struct HttpFront {
    provisioner: Arc<Provisioner>,
    prefix: Option<Arc<str>>,
}

/// Every path the API does not claim is a phone's file request.
pub fn router(provisioner: Arc<Provisioner>, prefix: Option<String>) -> Router {
    Router::new().fallback(serve_file).with_state(HttpFront { provisioner, prefix: prefix.map(Arc::from) })
}

/// Takes the request whole: separate extractors would copy its header map.
async fn serve_file(State(front): State<HttpFront>, client: ClientInfo, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let axum::http::request::Parts { method, uri, headers, extensions, .. } = parts;
    let path = uri.path();
    let (raw, prefix) = match front.prefix.as_deref() {
        Some(p) if path.starts_with(p) && path[p.len()..].starts_with('/') => (&path[p.len() + 1..], p),
        _ => (path.strip_prefix('/').unwrap_or(path), ""),
    };
    if let Some(rest) = raw.strip_prefix("ev/") {
        if method == Method::POST && rest.ends_with(&format!("/{}", super::events::XML_EVENT)) {
            return phone_xml_event(&front.provisioner, &client, rest, body).await;
        }
        return phone_event(&front.provisioner, &client, &method, rest, uri.query().unwrap_or("")).await;
    }
    if method != Method::GET && method != Method::HEAD {
        return (StatusCode::METHOD_NOT_ALLOWED, [(header::ALLOW, "GET, HEAD")], "Method not allowed\n").into_response();
    }
    let (token, raw) = names::split_token(raw);
    let Ok(file) = percent_encoding::percent_decode_str(raw).decode_utf8() else {
        return refusal_response(&front.provisioner, Refusal::BadName("file name is not UTF-8"));
    };
    let protocol = if client.tls { Protocol::Https } else { Protocol::Http };
    let Some(origin) = headers.get(header::HOST).and_then(|h| h.to_str().ok()).and_then(|h| origin(h, protocol, prefix)) else {
        return (StatusCode::BAD_REQUEST, "Bad or missing Host header\n").into_response();
    };
    let credentials =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| Credentials::parse(v, method.as_str()));
    let req = FetchRequest {
        peer: client.ip,
        file: &file,
        token,
        path,
        user_agent: headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()),
        protocol,
        origin,
        credentials,
        // A verified certificate that names no MAC we know how to read is no
        // device certificate: the request proves itself otherwise or not.
        device_cert: extensions
            .get::<ClientCertificate>()
            .map(|c| front.provisioner.profiles().macs_in_certificate(&c.0))
            .filter(|macs| !macs.is_empty())
            .map(|macs| Arc::new(DeviceCert { macs })),
    };
    match front.provisioner.fetch(&req).await {
        Ok(served) => {
            let not_modified = not_modified(&headers, &served);
            front.provisioner.answered(&served, not_modified);
            file_response(&method, not_modified, served)
        }
        Err(refusal) => refusal_response(&front.provisioner, refusal),
    }
}

/// A phone's event: `GET` or `POST` of `ev/<event_token>/<event>` (the
/// rest of the path after `ev/`), answered 200 with an empty body; 404 for a
/// missing or unknown token, 400 for an unknown event or an overlong query,
/// 403 for a banned source that proves nothing.
async fn phone_event(provisioner: &Provisioner, client: &ClientInfo, method: &Method, rest: &str, query: &str) -> Response {
    if method != Method::GET && method != Method::POST {
        return (StatusCode::METHOD_NOT_ALLOWED, [(header::ALLOW, "GET, POST")], "Method not allowed\n").into_response();
    }
    // A missing token (`ev/ringing`, `ev//ringing`) is an empty one.
    let (token, event) = rest.split_once('/').unwrap_or(("", rest));
    let status = event_status(provisioner.phone_event(client.ip, token, event, query).await);
    (status, [(header::CACHE_CONTROL, "no-store")], Body::empty()).into_response()
}

/// A phone's XML notification: `POST` of `ev/<event_token>/xml` with the
/// XML in the body (at most `EVENT_XML_MAX` bytes; longer is 413). Answered
/// as `phone_event`.
async fn phone_xml_event(provisioner: &Provisioner, client: &ClientInfo, rest: &str, body: Body) -> Response {
    let token = rest.split_once('/').map_or("", |(t, _)| t);
    let Ok(bytes) = axum::body::to_bytes(body, super::events::EVENT_XML_MAX).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, [(header::CACHE_CONTROL, "no-store")], Body::empty()).into_response();
    };
    let status = event_status(provisioner.phone_xml_event(client.ip, token, &bytes).await);
    (status, [(header::CACHE_CONTROL, "no-store")], Body::empty()).into_response()
}

fn event_status(result: Result<(), Refusal>) -> StatusCode {
    match result {
        Ok(()) => StatusCode::OK,
        Err(Refusal::BadName(_)) => StatusCode::BAD_REQUEST,
        Err(Refusal::NotFound(_)) => StatusCode::NOT_FOUND,
        Err(Refusal::Banned | Refusal::Forbidden(_)) => StatusCode::FORBIDDEN,
        Err(Refusal::Unavailable) => StatusCode::SERVICE_UNAVAILABLE,
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Where the phone reached us: the `Host` header (already checked to be an
/// authority, see `HostHeader`) with the protocol's port if it named none.
fn origin(h: &str, protocol: Protocol, prefix: &str) -> Option<Origin> {
    let h = HostHeader::parse(h)?;
    Some(Origin { host: h.host, port: h.port.unwrap_or(protocol.default_port()), prefix: prefix.to_string() })
}

/// Whether the phone has `served` already (`If-None-Match`, else
/// `If-Modified-Since`): a 304.
fn not_modified(request: &HeaderMap, served: &Served) -> bool {
    match request.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) {
        Some(tags) => tags.split(',').map(|t| t.trim().trim_start_matches("W/")).any(|t| t == &*served.etag || t == "*"),
        None => request
            .get(header::IF_MODIFIED_SINCE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok())
            .is_some_and(|since| truncate_to_seconds(served.last_modified) <= since),
    }
}

fn file_response(method: &Method, not_modified: bool, served: Served) -> Response {
    let last_modified = truncate_to_seconds(served.last_modified);
    let mut builder = Response::builder()
        .header(header::ETAG, &*served.etag)
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

fn refusal_response(provisioner: &Provisioner, refusal: Refusal) -> Response {
    let status = match refusal {
        Refusal::Banned | Refusal::Forbidden(_) => StatusCode::FORBIDDEN,
        Refusal::BadName(_) => StatusCode::BAD_REQUEST,
        Refusal::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
        Refusal::NotFound(_) => StatusCode::NOT_FOUND,
        Refusal::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Refusal::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    // Say little to an unidentified client: the status is the answer.
    let text = match status {
        StatusCode::FORBIDDEN => "Forbidden\n",
        StatusCode::BAD_REQUEST => "Bad file name\n",
        StatusCode::UNAUTHORIZED => "Unauthorized\n",
        StatusCode::NOT_FOUND => "Not found\n",
        StatusCode::SERVICE_UNAVAILABLE => "Service unavailable\n",
        _ => "Internal server error\n",
    };
    let mut response = (status, [(header::CACHE_CONTROL, "no-store")], text).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
    }
    if let Refusal::Unauthorized { stale } = refusal {
        for challenge in provisioner.challenge(stale) {
            if let Ok(v) = HeaderValue::from_str(&challenge) {
                response.headers_mut().append(header::WWW_AUTHENTICATE, v);
            }
        }
    }
    response
}

fn truncate_to_seconds(t: SystemTime) -> SystemTime {
    let secs = t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    UNIX_EPOCH + std::time::Duration::from_secs(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_protocol_names_the_port_the_host_does_not() {
        let o = |h: &str, p| origin(h, p, "/prov").map(|o| (o.host, o.port));
        assert_eq!(o("prov.example.com", Protocol::Http), Some(("prov.example.com".into(), 80)));
        assert_eq!(o("[::1]", Protocol::Https), Some(("[::1]".into(), 443)));
        assert_eq!(o("192.0.2.1:8080", Protocol::Https), Some(("192.0.2.1".into(), 8080)));
        assert_eq!(o("x:99999999", Protocol::Http), None);
    }
}
