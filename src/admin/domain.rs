//! The domain's settings: the SIP server every phone is given, time, how
//! pushes travel, whether claims create handsets, and extra vendor
//! settings. Everyone sees them; admins change them (as in the API).
//! Relay secrets are write-only: an empty field keeps the one set. The
//! page shows the URL to give the domain's phones and rotates its token.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect};
use serde::Deserialize;

use super::error::html;
use super::form::{Fields, Posted};
use super::nav::Nav;
use super::session::Session;
use super::{AdminState, PageResult};
use crate::api::ApiError;
use crate::client::request_host;
use crate::model::domain::{parse_port, parse_site_networks, site_networks_text};
use crate::model::settings;
use crate::model::{Domain, DomainChanges, Secret, Transport};
use crate::service::domains::ProvisioningView;

#[derive(Template)]
#[template(path = "admin/domain.html")]
struct DomainPage {
    nav: Nav,
    message: Option<&'static str>,
    error: Option<String>,
    d: DomainForm,
    /// The provisioning URLs (token hidden from read-only users).
    urls: ProvisioningView,
}

/// The domain as the form shows it.
struct DomainForm {
    name: String,
    sipserver: String,
    sipport: String,
    siptransport: String,
    timezone: String,
    ntpserver: String,
    claimcreates: bool,
    pushbackend: String,
    amihost: String,
    amiport: String,
    amiuser: String,
    amisecret_set: bool,
    amicontext: String,
    webhookurl: String,
    webhooksecret_set: bool,
    registrarrelay: String,
    registrartransport: String,
    settings: String,
    sitenetworks: String,
    requiretoken: bool,
    requireclientcert: bool,
}

impl DomainForm {
    fn from_domain(d: &Domain) -> Self {
        DomainForm {
            name: d.name.clone(),
            sipserver: d.sip_server.clone(),
            sipport: d.sip_port.to_string(),
            siptransport: d.sip_transport.as_str().to_string(),
            timezone: d.timezone.clone(),
            ntpserver: d.ntp_server.clone(),
            claimcreates: d.claim_creates,
            pushbackend: if d.relay.backend.is_empty() { "direct".into() } else { d.relay.backend.clone() },
            amihost: d.relay.ami_host.clone(),
            amiport: d.relay.ami_port.to_string(),
            amiuser: d.relay.ami_user.clone(),
            amisecret_set: !d.relay.ami_secret.expose().is_empty(),
            amicontext: d.ami_context.clone(),
            webhookurl: d.relay.webhook_url.clone(),
            webhooksecret_set: !d.relay.webhook_secret.expose().is_empty(),
            registrarrelay: d.relay.registrar_relay.clone(),
            registrartransport: d.relay.registrar_transport.as_str().to_string(),
            settings: settings::to_lines(&d.settings),
            sitenetworks: site_networks_text(&d.site_networks),
            requiretoken: d.access.require_token,
            requireclientcert: d.access.require_client_cert,
        }
    }

    /// What was typed, shown again beside the error.
    fn with_fields(mut self, f: &Fields) -> Self {
        for (slot, name) in [
            (&mut self.sipserver, "sipserver"),
            (&mut self.sipport, "sipport"),
            (&mut self.siptransport, "siptransport"),
            (&mut self.timezone, "timezone"),
            (&mut self.ntpserver, "ntpserver"),
            (&mut self.pushbackend, "pushbackend"),
            (&mut self.amihost, "amihost"),
            (&mut self.amiport, "amiport"),
            (&mut self.amiuser, "amiuser"),
            (&mut self.amicontext, "amicontext"),
            (&mut self.webhookurl, "webhookurl"),
            (&mut self.registrarrelay, "registrarrelay"),
            (&mut self.registrartransport, "registrartransport"),
            (&mut self.settings, "settings"),
            (&mut self.sitenetworks, "sitenetworks"),
        ] {
            *slot = f.get(name).to_string();
        }
        self.claimcreates = f.ticked("claimcreates");
        self.requiretoken = f.ticked("requiretoken");
        self.requireclientcert = f.ticked("requireclientcert");
        self
    }
}

fn changes(f: &Fields) -> Result<DomainChanges, ApiError> {
    let secret = |name: &str| Some(f.get(name)).filter(|s| !s.is_empty()).map(Secret::new);
    let amiport = parse_port(f.get("amiport"))
        .map_err(|_| ApiError::BadRequest("amiport: must be a port number from 1 to 65535".into()))?;
    Ok(DomainChanges {
        sip_server: Some(f.get("sipserver").trim().to_string()),
        sip_port: Some(parse_port(f.get("sipport"))?),
        sip_transport: Some(Transport::parse("siptransport", f.get("siptransport"))?),
        timezone: Some(f.get("timezone").trim().to_string()),
        ntp_server: Some(f.get("ntpserver").trim().to_string()),
        settings: Some(settings::from_lines("settings", f.get("settings"))?),
        model_settings: None,
        push_backend: Some(f.get("pushbackend").trim().to_string()),
        ami_host: Some(f.get("amihost").trim().to_string()),
        ami_port: Some(amiport),
        ami_user: Some(f.get("amiuser").trim().to_string()),
        ami_secret: secret("amisecret"),
        // Blank: the default context, as a new domain has.
        ami_context: Some(match f.get("amicontext").trim() {
            "" => crate::model::domain::DEFAULT_AMI_CONTEXT.to_string(),
            c => c.to_string(),
        }),
        webhook_url: Some(f.get("webhookurl").trim().to_string()),
        webhook_secret: secret("webhooksecret"),
        registrar_relay: Some(f.get("registrarrelay").trim().to_string()),
        registrar_transport: Some(match f.get("registrartransport") {
            "" => Transport::Udp,
            t => Transport::parse("registrartransport", t)?,
        }),
        claim_creates: Some(f.ticked("claimcreates")),
        site_networks: Some(parse_site_networks([f.get("sitenetworks")])?),
        require_token: Some(f.ticked("requiretoken")),
        require_client_cert: Some(f.ticked("requireclientcert")),
    })
}

#[derive(Deserialize)]
pub struct DomainQuery {
    done: Option<String>,
}

pub async fn page(
    State(state): State<AdminState>,
    session: Session,
    headers: HeaderMap,
    Query(q): Query<DomainQuery>,
) -> PageResult {
    let nav = Nav::new(&state, &session, "domain").await?;
    let d = state.api.store.domain_by_name(&session.row.domain).await?.ok_or(ApiError::NotFound("Domain not found"))?;
    let message = match q.done.as_deref() {
        Some("saved") => Some("Saved. Phones whose configuration changed are told to fetch it."),
        Some("rotated") => Some("New provisioning URL. Every phone of the domain is told to fetch its files, which name it; the old URL works until the grace period ends."),
        _ => None,
    };
    let urls = state.api.urls.view(&d, &session.caller(), &request_host(&headers));
    Ok(html(StatusCode::OK, &DomainPage { nav, message, error: None, d: DomainForm::from_domain(&d), urls }))
}

/// Rotates the provisioning token (admins), with the grace period typed
/// in hours.
pub async fn rotate_token(State(state): State<AdminState>, posted: Posted) -> PageResult {
    let caller = posted.session.caller();
    caller.require_admin()?;
    let hours = posted.fields.get("gracehours").trim();
    let grace = match hours.parse::<i64>() {
        Ok(h) => crate::model::access::parse_grace_hours(h).map_err(ApiError::from)?,
        Err(_) if hours.is_empty() => crate::model::access::DEFAULT_GRACE,
        Err(_) => return Err(ApiError::BadRequest("gracehours: must be a whole number of hours".into()).into()),
    };
    state.api.service.rotate_token(&caller, grace).await.map_err(ApiError::from)?;
    Ok(Redirect::to("/admin/domain?done=rotated").into_response())
}

pub async fn update(State(state): State<AdminState>, headers: HeaderMap, posted: Posted) -> PageResult {
    let caller = posted.session.caller();
    caller.require_admin()?;
    let result = match changes(&posted.fields) {
        Ok(c) => state.api.service.update_domain(&caller, &c).await.map_err(ApiError::from),
        Err(e) => Err(e),
    };
    match result {
        Ok(_) => Ok(Redirect::to("/admin/domain?done=saved").into_response()),
        Err(e @ ApiError::BadRequest(_)) => {
            let nav = Nav::new(&state, &posted.session, "domain").await?;
            let d = state.api.store.domain_by_name(&caller.domain).await?.ok_or(ApiError::NotFound("Domain not found"))?;
            let form = DomainForm::from_domain(&d).with_fields(&posted.fields);
            let urls = state.api.urls.view(&d, &caller, &request_host(&headers));
            Ok(html(StatusCode::BAD_REQUEST, &DomainPage { nav, message: None, error: Some(e.to_string()), d: form, urls }))
        }
        Err(e) => Err(e.into()),
    }
}
