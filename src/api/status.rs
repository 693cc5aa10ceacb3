//! Handset Status Search / Select, and the voice platform's status reports.

use axum::extract::{Path, State};
use axum::Json;
use serde::Serialize;

use super::auth::DomainParam;
use super::body::{integer_field, string_field, JsonObject};
use super::error::{ApiError, ApiResult, ErrorResponses};
use super::handsets::query;
use super::handsets::ExtensionPath;
use super::{paging, ApiState};
use crate::auth::Caller;
use crate::model::status::{parse_registration_address, Registration};
use crate::model::{validate_text, CallDirection, CallState, HandsetStatus, Transport};
use crate::store::handsets::{HandsetFilter, HandsetView};

#[derive(Serialize, utoipa::ToSchema)]
pub struct StatusJson {
    pub extensionnumber: String,
    pub state: &'static str,
    pub calldirection: &'static str,
    pub calldurationseconds: i64,
    pub otherpartyphonenumber: String,
    pub app: String,
    pub registrationaddress: String,
    /// The same address under the name of Jingl's example.
    pub registeredaddress: String,
    pub registrationtransport: &'static str,
    /// Registered now, as the registrar reported (`POST /api/registration`).
    pub registered: bool,
    /// When the registration runs out (RFC 3339), `""` when not registered.
    pub registereduntil: String,
    /// The User-Agent the phone registered with.
    pub useragent: String,
    /// Do-not-disturb as the phone last reported it (its action URLs).
    pub dnd: bool,
    /// Call forwarding as the phone last reported it (its action URLs).
    pub forward: bool,
}

fn status_json(ext: &str, s: &HandsetStatus) -> StatusJson {
    StatusJson {
        extensionnumber: ext.to_string(),
        state: s.state.as_str(),
        calldirection: s.calldirection.as_str(),
        calldurationseconds: s.calldurationseconds,
        otherpartyphonenumber: s.otherpartyphonenumber.clone(),
        app: s.app.clone(),
        registrationaddress: s.registration_address(),
        registeredaddress: s.registration_address(),
        registrationtransport: s.registration_transport.as_str(),
        registered: s.registered(crate::store::now_ms()),
        registereduntil: if s.registered_until > 0 { crate::model::rfc3339(s.registered_until) } else { String::new() },
        useragent: s.user_agent.clone(),
        dnd: s.call.dnd,
        forward: s.call.forward,
    }
}

impl From<&HandsetView> for StatusJson {
    fn from(v: &HandsetView) -> Self {
        status_json(&v.handset.extensionnumber, &v.status)
    }
}

super::paging::paged_query! {
    /// Handset Status Search's filters.
    pub struct StatusSearchParams {
        /// Prefix of the extension.
        extensionnumber: Option<String>,
        /// Only handsets in this state: Idle, OnCall, Ringing, Calling, OnHold or Unavailable (a handset the
        /// platform and its phone have told nothing is Unavailable).
        state: Option<String>,
    }
}

#[utoipa::path(
    get,
    path = "/api/handsetstatus",
    tag = "status",
    summary = "Handset Status Search",
    params(StatusSearchParams),
    responses((status = 200, description = "Statuses in extension order", body = [StatusJson]), ErrorResponses)
)]
pub async fn search(State(state): State<ApiState>, caller: Caller, uri: axum::http::Uri) -> ApiResult<Json<Vec<StatusJson>>> {
    let p: StatusSearchParams = query(&uri)?;
    let limit = paging::max_results(p.maxresults.as_deref())?;
    let state_filter = p.state.as_deref().filter(|s| !s.is_empty()).map(CallState::parse).transpose()?;
    let filter = HandsetFilter { extension_prefix: p.extensionnumber.filter(|s| !s.is_empty()), ..Default::default() };
    let after = p.afterid.as_deref().filter(|s| !s.is_empty());
    let views = state.store.search_handsets_in_state(caller.domain_id, &filter, state_filter, after, limit).await?;
    Ok(Json(views.iter().map(StatusJson::from).collect()))
}

#[utoipa::path(
    get,
    path = "/api/handsetstatus/{extensionnumber}",
    tag = "status",
    summary = "Handset Status Select",
    params(ExtensionPath, DomainParam),
    responses((status = 200, description = "The status", body = StatusJson), ErrorResponses)
)]
pub async fn select(State(state): State<ApiState>, caller: Caller, Path(ext): Path<String>) -> ApiResult<Json<StatusJson>> {
    let view = state.store.handset(caller.domain_id, &ext).await?.ok_or(ApiError::NotFound("Handset not found"))?;
    Ok(Json(StatusJson::from(&view)))
}

/// The voice platform reports a handset's state; fields it leaves out keep
/// their last value.
#[utoipa::path(
    put,
    path = "/api/handsetstatus/{extensionnumber}",
    tag = "status",
    summary = "The voice platform reports state and registration address (partial)",
    params(ExtensionPath, DomainParam),
    request_body(content = Object, description = "state, calldirection, calldurationseconds, otherpartyphonenumber, app, registrationaddress (ip:port), registrationtransport"),
    responses((status = 200, description = "The stored status", body = StatusJson), ErrorResponses)
)]
pub async fn report(
    State(state): State<ApiState>,
    caller: Caller,
    Path(ext): Path<String>,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<StatusJson>> {
    caller.require_write()?;
    let mut report = StatusReport::default();
    for (key, v) in &body {
        match key.as_str() {
            "extensionnumber" if string_field("extensionnumber", v)? == ext => {}
            "extensionnumber" => return Err(ApiError::BadRequest("extensionnumber: does not match the path".into())),
            "state" => report.state = Some(CallState::parse(&string_field("state", v)?)?),
            "calldirection" => report.calldirection = Some(CallDirection::parse(&string_field("calldirection", v)?)?),
            "calldurationseconds" => {
                let n = integer_field("calldurationseconds", v)?;
                if n < 0 {
                    return Err(ApiError::BadRequest("calldurationseconds: must not be negative".into()));
                }
                report.calldurationseconds = Some(n);
            }
            "otherpartyphonenumber" => {
                let s = string_field("otherpartyphonenumber", v)?;
                validate_text("otherpartyphonenumber", &s, 64)?;
                report.otherpartyphonenumber = Some(s);
            }
            "app" => {
                let s = string_field("app", v)?;
                validate_text("app", &s, 64)?;
                report.app = Some(s);
            }
            "registrationaddress" | "registeredaddress" => {
                report.registration = Some(parse_registration_address(&string_field("registrationaddress", v)?)?)
            }
            "registrationtransport" => {
                report.transport = Some(Transport::parse("registrationtransport", &string_field("registrationtransport", v)?)?)
            }
            other => return Err(ApiError::BadRequest(format!("Unknown field: {other}"))),
        }
    }
    let new = state.store.report_status(&caller.actor(), caller.domain_id, &ext, |current| report.merge(current)).await?;
    Ok(Json(status_json(&ext, &new)))
}

/// A registrar reports a registration: contrib/kamailio posts one for every
/// REGISTER, un-REGISTER and expiry. A superuser's report may name any
/// domain's phone (one registrar serves every tenant): the handset is the
/// one whose extension and domain SIP server make the address of record.
#[utoipa::path(
    post,
    path = "/api/registration",
    tag = "status",
    summary = "A registrar reports a phone's registration, un-registration or expiry",
    request_body(content = Object, description = "aor (sip:ext@sipserver), address (ip:port it registered from, required unless expires is 0), transport (udp, tcp, tls; default udp), useragent, expires (seconds granted; 0: un-registered or expired)"),
    responses((status = 200, description = "The handset's status now", body = StatusJson), ErrorResponses)
)]
pub async fn registration(
    State(state): State<ApiState>,
    caller: Caller,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<StatusJson>> {
    let (mut aor, mut address, mut transport, mut user_agent, mut expires) = (None, None, Transport::Udp, String::new(), None);
    for (key, v) in &body {
        match key.as_str() {
            "aor" => aor = Some(Registration::parse_aor(&string_field("aor", v)?)?),
            "address" => address = parse_registration_address(&string_field("address", v)?)?,
            "transport" => transport = Transport::parse("transport", &string_field("transport", v)?)?,
            "useragent" => user_agent = printable(&string_field("useragent", v)?, 200),
            "expires" => match integer_field("expires", v)? {
                n @ 0..=0x7fff_ffff => expires = Some(n as u32),
                _ => return Err(ApiError::BadRequest("expires: must be 0 or a number of seconds".into())),
            },
            other => return Err(ApiError::BadRequest(format!("Unknown field: {other}"))),
        }
    }
    let (user, host) = aor.ok_or_else(|| ApiError::BadRequest("aor: required".into()))?;
    let expires_s = expires.ok_or_else(|| ApiError::BadRequest("expires: required".into()))?;
    let address = match (address, expires_s) {
        (Some(a), _) => a,
        // Un-registered: where from no longer matters.
        (None, 0) => std::net::SocketAddr::from(([0, 0, 0, 0], 0)),
        (None, _) => return Err(ApiError::BadRequest("address: required (ip:port the phone registered from)".into())),
    };
    let report = Registration { user, host, address, transport, user_agent, expires_s };
    let status = state.service.report_registration(&caller, &report).await?;
    Ok(Json(status_json(&report.user, &status)))
}

/// `s` with control characters shown as `?`, cut to `max` characters: a
/// User-Agent is the phone's to choose, and only shown.
fn printable(s: &str, max: usize) -> String {
    s.chars().take(max).map(|c| if c.is_control() || crate::model::is_line_or_bidi_control(c) { '?' } else { c }).collect()
}

#[derive(Default)]
struct StatusReport {
    state: Option<CallState>,
    calldirection: Option<CallDirection>,
    calldurationseconds: Option<i64>,
    otherpartyphonenumber: Option<String>,
    app: Option<String>,
    registration: Option<Option<std::net::SocketAddr>>,
    transport: Option<Transport>,
}

impl StatusReport {
    fn merge(self, mut s: HandsetStatus) -> HandsetStatus {
        if let Some(v) = self.state {
            s.state = v;
        }
        if let Some(v) = self.calldirection {
            s.calldirection = v;
        }
        if let Some(v) = self.calldurationseconds {
            s.calldurationseconds = v;
        }
        if let Some(v) = self.otherpartyphonenumber {
            s.otherpartyphonenumber = v;
        }
        if let Some(v) = self.app {
            s.app = v;
        }
        if let Some(v) = self.registration {
            s.registration = v;
        }
        if let Some(v) = self.transport {
            s.registration_transport = v;
        }
        s
    }
}
