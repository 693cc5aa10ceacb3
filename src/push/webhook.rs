//! Relay through a webhook: an HTTPS POST of a JSON event to the voice
//! platform, which sends the NOTIFY from the phone's registrar. The body is
//! signed: `X-Autoprov-Signature: sha256=<hex HMAC-SHA256(secret, timestamp
//! "." body)>` with `X-Autoprov-Timestamp` (Unix seconds), so the receiver
//! can check origin and freshness.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::model::Secret;

pub struct WebhookRelay {
    client: reqwest::Client,
}

/// Why the platform did not take a webhook event.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("webhook {url}: {error}")]
    Request { url: String, error: reqwest::Error },
    #[error("webhook {url}: HTTP {status}")]
    Status { url: String, status: reqwest::StatusCode },
    #[error("webhook event: {0}")]
    Body(#[from] serde_json::Error),
}

impl WebhookRelay {
    pub fn new() -> Result<Self, String> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let tls = rustls::ClientConfig::builder_with_provider(crate::crypto::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.to_string())?;
        Ok(WebhookRelay { client })
    }

    /// POSTs `event` (a JSON object) to `url`; any 2xx is success.
    pub async fn post(&self, url: &str, secret: &Secret, event: &serde_json::Value) -> Result<(), WebhookError> {
        let body = serde_json::to_vec(event)?;
        let timestamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let response = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("x-autoprov-timestamp", timestamp.to_string())
            .header("x-autoprov-signature", format!("sha256={}", signature(secret, timestamp, &body)))
            .body(body)
            .send()
            .await
            .map_err(|error| WebhookError::Request { url: url.to_string(), error })?;
        match response.status() {
            s if s.is_success() => Ok(()),
            status => Err(WebhookError::Status { url: url.to_string(), status }),
        }
    }
}

/// Hex HMAC-SHA256 over `timestamp "." body`.
pub fn signature(secret: &Secret, timestamp: u64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}
