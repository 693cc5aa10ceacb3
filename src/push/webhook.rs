//! Relay through a webhook: an HTTPS POST of a JSON event to the voice
//! platform, which sends the NOTIFY from the phone's registrar. The body is
//! signed: `X-Autoprov-Signature: sha256=<hex HMAC-SHA256(secret, timestamp
//! "." body)>` with `X-Autoprov-Timestamp` (Unix seconds), so the receiver
//! can check origin and freshness.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::target::{TargetError, TargetPolicy};
use crate::model::Secret;

pub struct WebhookRelay {
    client: reqwest::Client,
    targets: Arc<TargetPolicy>,
}

/// Names resolve through the target policy: the connection goes only to
/// addresses it allows, checked at every resolution.
struct CheckedResolver(Arc<TargetPolicy>);

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let targets = self.0.clone();
        Box::pin(async move {
            let addrs = targets.resolve(name.as_str(), 0).await?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
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
    #[error("webhook URL {0:?} does not parse")]
    Url(String),
    #[error(transparent)]
    Target(#[from] TargetError),
}

impl WebhookRelay {
    pub fn new(targets: Arc<TargetPolicy>) -> Result<Self, String> {
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
            .dns_resolver(Arc::new(CheckedResolver(targets.clone())))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(WebhookRelay { client, targets })
    }

    /// The HTTP client (checked resolver, no redirects, 10 s), for other
    /// requests to hosts the target policy allows (call control's requests
    /// to phones).
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// POSTs `event` (a JSON object) to `url`; any 2xx is success.
    pub async fn post(&self, url: &str, secret: &Secret, event: &serde_json::Value) -> Result<(), WebhookError> {
        // An IP literal is not resolved, so the resolver never sees it.
        let parsed = reqwest::Url::parse(url).map_err(|_| WebhookError::Url(url.to_string()))?;
        let host = parsed.host_str().unwrap_or_default();
        if let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse() {
            self.targets.check(host, ip)?;
        }
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
            .map_err(|error| match refused_target(&error) {
                Some(target) => WebhookError::Target(target),
                None => WebhookError::Request { url: url.to_string(), error },
            })?;
        match response.status() {
            s if s.is_success() => Ok(()),
            status => Err(WebhookError::Status { url: url.to_string(), status }),
        }
    }
}

/// The target policy's refusal, if that is why the request failed (it
/// comes back from the resolver wrapped in reqwest's and hyper's errors).
fn refused_target(error: &reqwest::Error) -> Option<TargetError> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(t) = e.downcast_ref::<TargetError>() {
            return Some(t.clone());
        }
        source = e.source();
    }
    None
}

/// Hex HMAC-SHA256 over `timestamp "." body`.
pub fn signature(secret: &Secret, timestamp: u64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}
