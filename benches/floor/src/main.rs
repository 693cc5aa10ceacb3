//! `floor ADDR REQUESTS_FILE BODY_FILE`: answers every path of REQUESTS_FILE
//! (`PATH<TAB>USER-AGENT` lines) with BODY_FILE's bytes, looked up in a
//! `HashMap` by path, with a content type and a strong ETag; 404 otherwise.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;

type Bodies = Arc<HashMap<String, Bytes>>;

/// A strong ETag as long as a served file's (32 hex digits, quoted): the
/// same header bytes for the client to parse; its value does not matter.
const ETAG: &str = "\"00000000000000000000000000000000\"";

async fn serve(State(bodies): State<Bodies>, uri: Uri) -> Response {
    match bodies.get(uri.path()) {
        Some(body) => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8"), (header::ETAG, ETAG)],
            body.clone(),
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, addr, requests, body] = &args[..] else {
        eprintln!("usage: floor ADDR REQUESTS_FILE BODY_FILE");
        std::process::exit(2);
    };
    let body = Bytes::from(std::fs::read(body).expect("BODY_FILE"));
    let text = std::fs::read_to_string(requests).expect("REQUESTS_FILE");
    let bodies: HashMap<String, Bytes> =
        text.lines().filter_map(|l| l.split('\t').next()).map(|p| (p.to_string(), body.clone())).collect();
    let app = Router::new().fallback(serve).with_state(Arc::new(bodies));
    let listener = tokio::net::TcpListener::bind(addr).await.expect("ADDR");
    axum::serve(listener, app).await.expect("serve");
}
