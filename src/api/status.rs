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
use crate::model::status::parse_registration_address;
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
    let filter = HandsetFilter { extension_prefix: p.extensionnumber.filter(|s| !s.is_empty()), ..Default::default() };
    let views =
        state.store.search_handsets(caller.domain_id, &filter, p.afterid.as_deref().filter(|s| !s.is_empty()), limit).await?;
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
