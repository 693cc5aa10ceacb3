//! The REST API, compatible with Jingl's hosted-PBX handset API: Handset
//! Search / Select / Update (plus create and delete), Handset Status Search /
//! Select (plus the platform's status reports), the caller's domain, and the
//! audit log. HTTPS only: plain HTTP gets `406 SSL must be used` before any
//! credentials are read.

pub mod audit;
pub mod auth;
pub mod body;
pub mod calls;
pub mod devices;
pub mod domain;
pub mod error;
pub mod handsets;
pub mod openapi;
pub mod paging;
pub mod status;

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::client::ClientInfo;
use crate::store::Store;
pub use error::{ApiError, ApiResult};

/// What the API handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub store: Store,
    pub auth: Arc<crate::auth::Authenticator>,
    pub service: Arc<crate::service::Service>,
    /// What the domain's provisioning URL looks like.
    pub urls: Arc<crate::service::domains::ProvisioningUrls>,
    /// Where uploaded CSV files wait for their import (see
    /// `handset_csv::Spool`).
    pub spool_dir: Arc<std::path::Path>,
}

impl ApiState {
    /// The API over `service`, spooling uploads into `spool_dir`.
    pub fn new(
        store: Store,
        service: crate::service::Service,
        urls: crate::service::domains::ProvisioningUrls,
        spool_dir: &std::path::Path,
    ) -> Self {
        ApiState {
            auth: Arc::new(crate::auth::Authenticator::new(store.clone())),
            service: Arc::new(service),
            urls: Arc::new(urls),
            spool_dir: spool_dir.into(),
            store,
        }
    }
}

/// The `/api` routes.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/api/handset", get(handsets::search).post(handsets::create))
        .route("/api/handset/{extensionnumber}", get(handsets::select).put(handsets::update).delete(handsets::delete))
        .route("/api/handset/{extensionnumber}/resync", axum::routing::post(handsets::resync))
        .route("/api/handset/{extensionnumber}/action/{actionid}", get(calls::action))
        .route("/api/handset/import", axum::routing::post(handsets::import))
        .route("/api/call", axum::routing::any(calls::not_ours))
        .route("/api/call/{*rest}", axum::routing::any(calls::not_ours))
        .route("/api/callrecording", axum::routing::any(calls::not_ours))
        .route("/api/callrecording/{*rest}", axum::routing::any(calls::not_ours))
        .route("/api/handsetstatus", get(status::search))
        .route("/api/handsetstatus/{extensionnumber}", get(status::select).put(status::report))
        .route("/api/registration", axum::routing::post(status::registration))
        .route("/api/domain", get(domain::show).put(domain::update))
        .route("/api/domain/provisioningtoken", axum::routing::post(domain::rotate_token))
        .route("/api/audit", get(audit::list))
        .route("/api/device", get(devices::list))
        .route("/api/device/{mac}/claim", axum::routing::post(devices::claim))
        .merge(utoipa_swagger_ui::SwaggerUi::new("/api/docs").url("/api/openapi.json", openapi::document()))
        .route("/api/{*rest}", axum::routing::any(not_found))
        .layer(middleware::from_fn(require_tls))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::NotFound("Not found")
}

/// Jingl's rule: the API is HTTPS only, and says so before it looks at
/// credentials (which a plain-HTTP client has just sent in the clear).
///
/// No API answer is stored by a browser or proxy on the way: handsets carry
/// SIP passwords.
async fn require_tls(client: ClientInfo, request: Request, next: Next) -> Response {
    let mut response = if client.tls { next.run(request).await } else { ApiError::SslRequired.into_response() };
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
