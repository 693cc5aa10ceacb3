//! The monitoring listener (`metrics_listen`, loopback by default): plain
//! HTTP for Prometheus and the service manager or load balancer.
//!
//! - `GET /metrics`: every metric ([`crate::metrics`]) in the Prometheus
//!   text format 0.0.4; what exists elsewhere (open connections, the
//!   database pool) is read at the scrape.
//! - `GET /healthz`: 200 while the process serves at all.
//! - `GET /readyz`: 200 when the database answers `SELECT 1` within
//!   [`DATABASE_DEADLINE`] and every listener's loop (HTTP, HTTPS, TFTP,
//!   the push worker's) is running; else 503 with the reasons, one a line.
//!
//! It answers nobody's secrets (counts, families, protocols), but what it
//! tells an outsider about traffic is still the operator's: keep it on
//! loopback or a management network.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::task::AbortHandle;

use crate::http_listener::connections::Registry;
use crate::metrics::Metrics;
use crate::store::Store;

/// How long `/readyz` waits for the database's answer.
pub const DATABASE_DEADLINE: Duration = Duration::from_secs(1);

/// What the monitoring listener reads.
#[derive(Clone)]
pub struct Monitored {
    pub metrics: Arc<Metrics>,
    pub store: Store,
    /// The phones', API's and UI's connections (HTTP and HTTPS share one
    /// registry), when either listener is on.
    pub connections: Option<Arc<Registry>>,
    /// The loops that must run for the server to be ready, by what they
    /// serve ("HTTP", "TFTP", …).
    pub loops: Arc<[(&'static str, AbortHandle)]>,
    /// The budget of the phones' files kept as rendered.
    pub rendered: Arc<crate::provision::rendered::RenderedBudget>,
}

pub fn router(monitored: Monitored) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(|| async { (StatusCode::NOT_FOUND, "Not found: /metrics, /healthz, /readyz\n") })
        .with_state(monitored)
}

async fn metrics(State(m): State<Monitored>) -> Response {
    if let Some(connections) = &m.connections {
        m.metrics.http_connections.set(connections.len() as i64);
    }
    let pool = m.store.pool();
    m.metrics.db_pool_connections.set(i64::from(pool.size()));
    m.metrics.db_pool_idle_connections.set(pool.num_idle() as i64);
    m.metrics.db_pool_max_connections.set(i64::from(pool.options().get_max_connections()));
    m.metrics.rendered_cache_bytes.set(m.rendered.used() as i64);
    m.metrics.rendered_cache_limit_bytes.set(m.rendered.limit() as i64);
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE), (header::CACHE_CONTROL, "no-store")], m.metrics.encode())
        .into_response()
}

async fn healthz() -> Response {
    ([(header::CACHE_CONTROL, "no-store")], "ok\n").into_response()
}

async fn readyz(State(m): State<Monitored>) -> Response {
    let mut reasons = Vec::new();
    match tokio::time::timeout(DATABASE_DEADLINE, m.store.ping()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => reasons.push(format!("database: {e}")),
        Err(_) => reasons.push(format!("database: no answer within {DATABASE_DEADLINE:?}")),
    }
    let mut stopped: Vec<&str> = m.loops.iter().filter(|(_, h)| h.is_finished()).map(|(what, _)| *what).collect();
    stopped.dedup();
    for what in stopped {
        reasons.push(format!("{what}: not serving"));
    }
    let (status, body) = match reasons.is_empty() {
        true => (StatusCode::OK, "ready\n".to_string()),
        false => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready\n{}\n", reasons.join("\n"))),
    };
    (status, [(header::CACHE_CONTROL, "no-store")], body).into_response()
}
