//! A domain's settings and its provisioning token (admins).

use std::collections::BTreeMap;
use std::time::Duration;

use super::{Result, Service};
use crate::auth::Caller;
use crate::model::{Domain, DomainChanges, FieldError};

impl Service {
    /// Changes the caller's domain; a change to what phones are configured
    /// with gives every handset a new revision and a push.
    pub async fn update_domain(&self, caller: &Caller, changes: &DomainChanges) -> Result<(Domain, Vec<&'static str>)> {
        caller.require_admin()?;
        self.check_relay_targets(changes)?;
        let (d, changed) = self.store.update_domain(&caller.actor, &caller.domain, changes).await?;
        if !changed.is_empty() {
            tracing::info!(user = %caller.user.login(), domain = %d.name, fields = %changed.join(","), "domain updated");
        }
        Ok((d, changed))
    }

    /// Relay hosts given as addresses are judged at once by the target
    /// policy (names are judged each time they resolve, when a push goes).
    fn check_relay_targets(&self, changes: &DomainChanges) -> Result<()> {
        let registrar = changes
            .registrar_relay
            .as_deref()
            .map(|r| crate::model::relay::parse_registrar_relay(r, changes.registrar_transport.unwrap_or_default()))
            .transpose()?
            .flatten();
        let hosts = [
            ("amihost", changes.ami_host.as_deref()),
            ("webhookurl", changes.webhook_url.as_deref().and_then(url_host)),
            ("registrarrelay", registrar.as_ref().map(|(host, _)| host.as_str())),
        ];
        for (field, host) in hosts {
            let Some(host) = host else { continue };
            if let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse() {
                self.targets.check(host, ip).map_err(|e| FieldError::new(field, e.to_string()))?;
            }
        }
        Ok(())
    }

    /// A new provisioning token; the old one works for `grace`.
    pub async fn rotate_token(&self, caller: &Caller, grace: Duration) -> Result<Domain> {
        caller.require_admin()?;
        let d = self.store.rotate_provisioning_token(&caller.actor, &caller.domain, grace).await?;
        tracing::info!(user = %caller.user.login(), domain = %d.name, grace_hours = grace.as_secs() / 3600, "provisioning token rotated");
        Ok(d)
    }
}

/// The host of an `http(s)://` URL, IPv6 in brackets.
fn url_host(url: &str) -> Option<&str> {
    (url.starts_with("https://") || url.starts_with("http://")).then(|| crate::model::url_host(url)).flatten()
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
        let token = if caller.may_see_secrets() { d.access.token.expose() } else { "***" };
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

#[cfg(test)]
mod tests {
    #[test]
    fn url_hosts() {
        assert_eq!(super::url_host("https://hooks.example.com:8443/x?y"), Some("hooks.example.com"));
        assert_eq!(super::url_host("http://[::1]:9000/hook"), Some("[::1]"));
        assert_eq!(super::url_host("https://user@169.254.169.254/latest"), Some("169.254.169.254"));
        assert_eq!(super::url_host("ftp://x"), None);
    }
}
