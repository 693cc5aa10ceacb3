//! A domain's settings and its provisioning token (admins).

use std::collections::BTreeMap;
use std::time::Duration;

use super::{Result, Service};
use crate::auth::Caller;
use crate::model::{Domain, DomainChanges};

impl Service {
    /// Changes the caller's domain; a change to what phones are configured
    /// with gives every handset a new revision and a push.
    pub async fn update_domain(&self, caller: &Caller, changes: &DomainChanges) -> Result<(Domain, Vec<&'static str>)> {
        caller.require_admin()?;
        let (d, changed) = self.store.update_domain(&caller.actor, &caller.domain, changes).await?;
        if !changed.is_empty() {
            tracing::info!(user = %caller.user.login(), domain = %d.name, fields = %changed.join(","), "domain updated");
        }
        Ok((d, changed))
    }

    /// A new provisioning token; the old one works for `grace`.
    pub async fn rotate_token(&self, caller: &Caller, grace: Duration) -> Result<Domain> {
        caller.require_admin()?;
        let d = self.store.rotate_provisioning_token(&caller.actor, &caller.domain, grace).await?;
        tracing::info!(user = %caller.user.login(), domain = %d.name, grace_hours = grace.as_secs() / 3600, "provisioning token rotated");
        Ok(d)
    }
}

/// Where phones reach this server, for the provisioning URLs shown to
/// admins.
#[derive(Clone, Debug, Default)]
pub struct ProvisioningUrls {
    /// `public_url` (ending in `/`), which wins when set.
    pub public_url: Option<String>,
    pub http_port: Option<u16>,
    pub https_port: Option<u16>,
    pub tftp_port: Option<u16>,
    /// The HTTP(S) path prefix (`/prov`), if any.
    pub prefix: Option<String>,
    /// Phones trust our certificate (an operator's): HTTPS is the URL to give.
    pub prefer_https: bool,
}

impl ProvisioningUrls {
    /// The domain's provisioning URLs as `caller` may see them, on `host`
    /// (the name the caller reached us by): read-only users do not see the
    /// token (it opens the domain's phones' files to anyone who knows a
    /// MAC).
    pub fn view(&self, d: &Domain, caller: &Caller, host: &str) -> ProvisioningView {
        let token = match caller.require_write() {
            Ok(()) => d.access.token.expose(),
            Err(_) => "***",
        };
        let (url, urls) = self.for_token(host, token);
        ProvisioningView { token: token.to_string(), url, urls }
    }

    /// The URL to give phones, and one per listener, for `token` on `host`.
    pub fn for_token(&self, host: &str, token: &str) -> (String, BTreeMap<&'static str, String>) {
        let prefix = self.prefix.as_deref().unwrap_or("");
        let at = |scheme: &str, port: u16, default: u16, prefix: &str| {
            let port = if port == default { String::new() } else { format!(":{port}") };
            format!("{scheme}://{host}{port}{prefix}/p/{token}/")
        };
        let mut each = BTreeMap::new();
        if let Some(p) = self.http_port {
            each.insert("http", at("http", p, 80, prefix));
        }
        if let Some(p) = self.https_port {
            each.insert("https", at("https", p, 443, prefix));
        }
        if let Some(p) = self.tftp_port {
            each.insert("tftp", at("tftp", p, 69, ""));
        }
        let preferred = match &self.public_url {
            Some(url) => format!("{url}p/{token}/"),
            None => {
                let first = if self.prefer_https { ["https", "http", "tftp"] } else { ["http", "https", "tftp"] };
                first.iter().find_map(|s| each.get(s).cloned()).unwrap_or_default()
            }
        };
        (preferred, each)
    }
}

/// A domain's provisioning URLs, shown to its users.
#[derive(Clone, Debug)]
pub struct ProvisioningView {
    /// The token (`***` for read-only users).
    pub token: String,
    /// The URL to give phones.
    pub url: String,
    /// The same per listener: `http`, `https`, `tftp`.
    pub urls: BTreeMap<&'static str, String>,
}
