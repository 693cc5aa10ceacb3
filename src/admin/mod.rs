//! The admin web UI at `/admin`: server-rendered HTML (askama) and one
//! stylesheet, no JavaScript, nothing loaded from elsewhere. It does what the
//! API does, through the same store calls and the same validation, for the
//! same users and under the same tenant rules; what it adds is a login
//! session (`session`) and a CSRF token on every form (`form`).
//!
//! Like the API it is HTTPS only. Every page is sent with a strict
//! Content-Security-Policy and `Cache-Control: no-store` (pages show
//! configuration).

pub mod badges;
pub mod devices;
pub mod domain;
pub mod error;
pub mod form;
pub mod handsets;
pub mod import;
pub mod nav;
pub mod session;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::api::ApiState;
use crate::client::ClientInfo;
use crate::provision::Provisioner;
pub use error::{PageError, PageResult};

/// What the UI's handlers share: the API's state (store, authenticator) and
/// the provisioner (for config previews and the vendor models).
#[derive(Clone)]
pub struct AdminState {
    pub api: ApiState,
    pub provisioner: Arc<Provisioner>,
}

impl AdminState {
    pub fn new(api: ApiState, provisioner: Arc<Provisioner>) -> Self {
        AdminState { api, provisioner }
    }

    /// Every model of every vendor profile in use, for the model fields'
    /// suggestions (read per page: a reload may change them).
    pub fn models(&self) -> Arc<[String]> {
        self.provisioner.profiles().iter().flat_map(|p| p.models.keys().cloned()).collect()
    }
}

pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/admin", get(home))
        .route("/admin/", get(home))
        .route("/admin/login", get(session::login_page).post(session::login))
        .route("/admin/logout", post(session::logout))
        .route("/admin/switch", post(session::switch_domain))
        .route("/admin/handsets", get(handsets::list).post(handsets::create))
        .route("/admin/handsets/{ext}", get(handsets::show).post(handsets::update))
        .route("/admin/handsets/{ext}/resync", post(handsets::resync))
        .route("/admin/handsets/{ext}/delete", post(handsets::delete))
        .route("/admin/devices", get(devices::list))
        .route("/admin/devices/claim", post(devices::claim))
        .route("/admin/import", get(import::page).post(import::upload).layer(DefaultBodyLimit::max(import::MAX_UPLOAD)))
        .route("/admin/domain", get(domain::page).post(domain::update))
        .route("/admin/domain/token", post(domain::rotate_token))
        .route("/admin/static/admin.css", get(stylesheet))
        .route("/admin/{*rest}", axum::routing::any(not_found))
        .layer(middleware::from_fn(page_headers))
        .layer(middleware::from_fn(require_tls))
        .with_state(state)
}

/// A time for people: `2026-11-26 20:43:58` (the pages say it is UTC).
pub fn when(ms: i64) -> String {
    crate::model::rfc3339(ms).replacen('T', " ", 1).trim_end_matches('Z').to_string()
}

async fn home() -> Redirect {
    Redirect::to("/admin/handsets")
}

async fn not_found() -> PageError {
    PageError::from(crate::api::ApiError::NotFound("No such page"))
}

const STYLESHEET: &str = include_str!("../../templates/admin/admin.css");

async fn stylesheet() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=3600")], STYLESHEET)
        .into_response()
}

/// The UI takes passwords and shows configuration: plain HTTP gets 406, as
/// the API does, before anything else is read.
async fn require_tls(client: ClientInfo, request: Request, next: Next) -> Response {
    if !client.tls {
        return (
            StatusCode::NOT_ACCEPTABLE,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "SSL must be used: the admin UI is served over HTTPS only\n",
        )
            .into_response();
    }
    next.run(request).await
}

/// Headers for every UI response: no framing, no sniffing, no scripts, no
/// third-party loads, no caching of pages (the stylesheet sets its own).
async fn page_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // Not no-referrer: with it, browsers send `Origin: null` on form posts,
    // and the Origin check in `form` needs the real one.
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    response
}
