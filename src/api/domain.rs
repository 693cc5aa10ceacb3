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
use crate::service::domains::{ProvisioningUrls, ProvisioningView};

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
    /// How pushes reach the phones: direct, registrar, ami or webhook.
    /// Secrets are write-only: `***` when set.
    pub pushbackend: String,
    pub amihost: String,
    pub amiport: u16,
    pub amiuser: String,
    pub amisecret: &'static str,
    /// The dialplan context the `ami` relay's call actions dial in
    /// (`from-internal` unless set): 1–79 of `A-Z a-z 0-9 _ -`.
    pub amicontext: String,
    pub webhookurl: String,
    pub webhooksecret: &'static str,
    /// `registrar`: the registrar's `host:port` the NOTIFYs go to, addressed
    /// to each phone's address of record (`""`: the SIP server).
    pub registrarrelay: String,
    /// `udp`, `tcp` or `tls` to the registrar.
    pub registrartransport: &'static str,
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
        let ProvisioningView { token, url, urls } = urls.view(d, caller, host);
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
            amicontext: d.ami_context.clone(),
            webhookurl: d.relay.webhook_url.clone(),
            webhooksecret: masked(&d.relay.webhook_secret),
            registrarrelay: d.relay.registrar_relay.clone(),
            registrartransport: d.relay.registrar_transport.as_str(),
            claimcreates: d.claim_creates,
            sitenetworks: d.site_networks.iter().map(|n| n.to_string()).collect(),
            provisioningtoken: token,
            provisioningurl: url,
            provisioningurls: urls,
            requiretoken: d.access.require_token,
            requireclientcert: d.access.require_client_cert,
        }
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
    responses((status = 200, description = "The domain", body = DomainJson), ErrorResponses)
)]
pub async fn show(State(state): State<ApiState>, caller: Caller, headers: HeaderMap) -> ApiResult<Json<DomainJson>> {
    let d = state.store.domain_by_name(&caller.domain).await?.ok_or(ApiError::NotFound("Domain not found"))?;
    Ok(Json(DomainJson::new(&d, &caller, &state.urls, &crate::client::request_host(&headers))))
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
    responses((status = 200, description = "The domain", body = DomainJson), ErrorResponses)
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
            "amicontext" => c.ami_context = Some(string_field("amicontext", v)?),
            "webhookurl" => c.webhook_url = Some(string_field("webhookurl", v)?),
            "webhooksecret" => c.webhook_secret = Some(crate::model::Secret::new(string_field("webhooksecret", v)?)),
            "registrarrelay" => c.registrar_relay = Some(string_field("registrarrelay", v)?),
            "registrartransport" => {
                c.registrar_transport = Some(Transport::parse("registrartransport", &string_field("registrartransport", v)?)?)
            }
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
    Ok(Json(DomainJson::new(&d, &caller, &state.urls, &crate::client::request_host(&headers))))
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
    responses((status = 200, description = "The domain with its new token", body = DomainJson), ErrorResponses)
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
    Ok(Json(DomainJson::new(&d, &caller, &state.urls, &crate::client::request_host(&headers))))
}
