//! The caller's domain: the settings every phone of the domain is given.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use serde::Serialize;

use super::auth::DomainParam;
use super::body::{integer_field, string_field, JsonObject};
use super::error::{ApiError, ApiResult, ErrorResponses};
use super::ApiState;
use crate::auth::Caller;
use std::collections::BTreeMap;

use crate::model::settings::{self, ExtraSettings};
use crate::model::{Domain, DomainChanges, Transport};

#[derive(Serialize, utoipa::ToSchema)]
pub struct DomainJson {
    pub name: String,
    pub sipserver: String,
    pub sipport: u16,
    pub siptransport: &'static str,
    pub timezone: String,
    pub ntpserver: String,
    /// Extra vendor settings for every phone of the domain.
    pub settings: ExtraSettings,
    /// Extra settings per model, over the domain's.
    pub modelsettings: BTreeMap<String, ExtraSettings>,
    /// How pushes reach the phones: direct, ami or webhook. Secrets are
    /// write-only: `***` when set.
    pub pushbackend: String,
    pub amihost: String,
    pub amiport: u16,
    pub amiuser: String,
    pub amisecret: &'static str,
    pub webhookurl: String,
    pub webhooksecret: &'static str,
    /// Claiming a phone for an extension the domain lacks creates it.
    pub claimcreates: bool,
    /// Where the domain's phones fetch from (CIDRs): the domain's users see
    /// the unknown phones last seen from them. Written as an array of
    /// addresses or CIDRs, or one string of them separated by commas.
    pub sitenetworks: Vec<String>,
    /// The domain's provisioning token (`***` for read-only users): the
    /// secret in the URL its phones fetch from.
    pub provisioningtoken: String,
    /// The URL to give the domain's phones (DHCP option 66, a vendor's
    /// redirect service): `https://prov.example.com/p/<token>/`.
    pub provisioningurl: String,
    /// The same on each listener: `http`, `https`, `tftp`.
    pub provisioningurls: BTreeMap<&'static str, String>,
    /// Per-MAC files only under the token (or to a phone proving itself
    /// with its device credentials or certificate).
    pub requiretoken: bool,
    /// Per-MAC files only to phones presenting a device certificate.
    pub requireclientcert: bool,
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
    /// The URL to give phones, and one per listener, for `token` on `host`
    /// (the name the admin reached us by).
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

fn masked(s: &crate::model::Secret) -> &'static str {
    if s.expose().is_empty() {
        ""
    } else {
        "***"
    }
}

impl DomainJson {
    /// `d` as `caller` may see it, its URLs on `host`.
    pub fn new(d: &Domain, caller: &Caller, urls: &ProvisioningUrls, host: &str) -> Self {
        let token = d.access.token.expose();
        let (provisioningurl, provisioningurls) = urls.for_token(host, token);
        DomainJson {
            name: d.name.clone(),
            sipserver: d.sip_server.clone(),
            sipport: d.sip_port,
            siptransport: d.sip_transport.as_str(),
            timezone: d.timezone.clone(),
            ntpserver: d.ntp_server.clone(),
            settings: d.settings.clone(),
            modelsettings: d.model_settings.clone(),
            pushbackend: d.relay.backend.clone(),
            amihost: d.relay.ami_host.clone(),
            amiport: d.relay.ami_port,
            amiuser: d.relay.ami_user.clone(),
            amisecret: masked(&d.relay.ami_secret),
            webhookurl: d.relay.webhook_url.clone(),
            webhooksecret: masked(&d.relay.webhook_secret),
            claimcreates: d.claim_creates,
            sitenetworks: d.site_networks.iter().map(|n| n.to_string()).collect(),
            provisioningtoken: token.to_string(),
            provisioningurl,
            provisioningurls,
            requiretoken: d.access.require_token,
            requireclientcert: d.access.require_client_cert,
        }
        .hide_token_from(caller)
    }

    /// Read-only users do not see the token (it opens the domain's phones'
    /// files to anyone who knows a MAC).
    fn hide_token_from(mut self, caller: &Caller) -> Self {
        if caller.require_write().is_err() {
            let token = std::mem::replace(&mut self.provisioningtoken, "***".into());
            for url in std::iter::once(&mut self.provisioningurl).chain(self.provisioningurls.values_mut()) {
                *url = url.replace(&token, "***");
            }
        }
        self
    }
}

/// The host name an API request used (without its port), for the URLs it
/// is shown; `localhost` when the header is missing or odd.
pub fn request_host(headers: &axum::http::HeaderMap) -> String {
    let raw = headers.get(axum::http::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    let host = match raw.strip_prefix('[') {
        Some(v6) => v6.split_once(']').map(|(a, _)| format!("[{a}]")).unwrap_or_default(),
        None => raw.split(':').next().unwrap_or("").to_string(),
    };
    let plain = host.trim_start_matches('[').trim_end_matches(']');
    if crate::model::validate_host("host", plain).is_ok() {
        host
    } else {
        "localhost".into()
    }
}

fn site_networks(v: &serde_json::Value) -> ApiResult<Vec<ipnet::IpNet>> {
    let bad = || ApiError::BadRequest("sitenetworks: must be an array of addresses or CIDRs, or a string of them".into());
    let items: Vec<&str> = match v {
        serde_json::Value::String(s) => vec![s.as_str()],
        serde_json::Value::Array(items) => items.iter().map(|i| i.as_str().ok_or_else(bad)).collect::<ApiResult<_>>()?,
        _ => return Err(bad()),
    };
    Ok(crate::model::domain::parse_site_networks(items)?)
}

#[utoipa::path(
    get,
    path = "/api/domain",
    tag = "domain",
    summary = "The caller's domain settings",
    params(DomainParam),
    responses((status = 200, description = "The domain", body = DomainJson), ErrorResponses),
    security(("basic" = []))
)]
pub async fn show(State(state): State<ApiState>, caller: Caller, headers: HeaderMap) -> ApiResult<Json<DomainJson>> {
    let d = state.store.domain_by_name(&caller.domain).await?.ok_or(ApiError::NotFound("Domain not found"))?;
    Ok(Json(DomainJson::new(&d, &caller, &state.urls, &request_host(&headers))))
}

/// Changes the domain's settings; every handset of the domain gets a new
/// revision when something really changed.
#[utoipa::path(
    put,
    path = "/api/domain",
    tag = "domain",
    summary = "Change the domain's settings (admins); phone settings bump every handset's revision",
    params(DomainParam),
    request_body(content = Object, description = "Any of the fields of the domain but name"),
    responses((status = 200, description = "The domain", body = DomainJson), ErrorResponses),
    security(("basic" = []))
)]
pub async fn update(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<DomainJson>> {
    caller.require_admin()?;
    let mut c = DomainChanges::default();
    for (key, v) in &body {
        match key.as_str() {
            "name" if string_field("name", v)? == caller.domain => {}
            "name" => return Err(ApiError::BadRequest("name: a domain cannot be renamed".into())),
            "sipserver" => c.sip_server = Some(string_field("sipserver", v)?),
            "sipport" => {
                let n = integer_field("sipport", v)?;
                c.sip_port = Some(crate::model::domain::parse_port(&n.to_string())?);
            }
            "siptransport" => c.sip_transport = Some(Transport::parse("siptransport", &string_field("siptransport", v)?)?),
            "timezone" => c.timezone = Some(string_field("timezone", v)?),
            "ntpserver" => c.ntp_server = Some(string_field("ntpserver", v)?),
            "settings" => c.settings = Some(settings::from_json("settings", v)?),
            "pushbackend" => c.push_backend = Some(string_field("pushbackend", v)?),
            "amihost" => c.ami_host = Some(string_field("amihost", v)?),
            "amiport" => match integer_field("amiport", v)? {
                n @ 1..=65535 => c.ami_port = Some(n as u16),
                _ => return Err(ApiError::BadRequest("amiport: must be a port number from 1 to 65535".into())),
            },
            "amiuser" => c.ami_user = Some(string_field("amiuser", v)?),
            "amisecret" => c.ami_secret = Some(crate::model::Secret::new(string_field("amisecret", v)?)),
            "webhookurl" => c.webhook_url = Some(string_field("webhookurl", v)?),
            "webhooksecret" => c.webhook_secret = Some(crate::model::Secret::new(string_field("webhooksecret", v)?)),
            "claimcreates" => c.claim_creates = Some(crate::model::handset::parse_bool("claimcreates", v)?),
            "sitenetworks" => c.site_networks = Some(site_networks(v)?),
            "requiretoken" => c.require_token = Some(crate::model::handset::parse_bool("requiretoken", v)?),
            "requireclientcert" => c.require_client_cert = Some(crate::model::handset::parse_bool("requireclientcert", v)?),
            // Shown, not set: POST /api/domain/provisioningtoken rotates it.
            "provisioningtoken" | "provisioningurl" | "provisioningurls" => {}
            "modelsettings" => {
                let obj = v
                    .as_object()
                    .ok_or_else(|| ApiError::BadRequest("modelsettings: must be an object of model → settings".into()))?;
                let mut per_model = BTreeMap::new();
                for (model, s) in obj {
                    per_model.insert(model.clone(), settings::from_json("modelsettings", s)?);
                }
                c.model_settings = Some(per_model);
            }
            other => return Err(ApiError::BadRequest(format!("Unknown field: {other}"))),
        }
    }
    let (d, _) = state.service.update_domain(&caller, &c).await?;
    Ok(Json(DomainJson::new(&d, &caller, &state.urls, &request_host(&headers))))
}

/// `POST /api/domain/provisioningtoken` with optional `{"gracehours": N}`:
/// draws a new provisioning token. The old one keeps working for the grace
/// period (default 168 hours; 0 ends it at once, for a token that leaked),
/// and every phone of the domain is pushed its files with the new URL.
#[utoipa::path(
    post,
    path = "/api/domain/provisioningtoken",
    tag = "domain",
    summary = "Rotate the domain's provisioning token (admins); the old one works for gracehours (default 168)",
    params(DomainParam),
    request_body(content = Object, description = "Optionally gracehours: 0 to 2160"),
    responses((status = 200, description = "The domain with its new token", body = DomainJson), ErrorResponses),
    security(("basic" = []))
)]
pub async fn rotate_token(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    super::body::JsonBody(body): super::body::JsonBody,
) -> ApiResult<Json<DomainJson>> {
    caller.require_admin()?;
    let mut grace = crate::model::access::DEFAULT_GRACE;
    for (key, v) in &super::body::options(body)? {
        match key.as_str() {
            "gracehours" => grace = crate::model::access::parse_grace_hours(integer_field("gracehours", v)?)?,
            other => return Err(ApiError::BadRequest(format!("Unknown field: {other}"))),
        }
    }
    let d = state.service.rotate_token(&caller, grace).await?;
    Ok(Json(DomainJson::new(&d, &caller, &state.urls, &request_host(&headers))))
}
