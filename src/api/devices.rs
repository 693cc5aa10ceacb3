//! Devices: phones that fetched their files, known (the caller's domain's
//! handsets) or unknown (MACs no handset has: for installers to claim).

use axum::extract::{Path, State};
use axum::Json;

use super::auth::DomainParam;
use super::body::{optional_string_field, string_field, JsonObject};
use super::error::{ApiError, ApiResult, ErrorBody, ErrorResponses};
use super::handsets::query;
use super::handsets::HandsetJson;
use super::{paging, ApiState};
use crate::auth::Caller;
use crate::model::Device;
use crate::model::Mac;
use crate::store::devices::DeviceScope;

/// A phone that fetched files: known (with its extension) or not.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct DeviceJson {
    /// `known` or `unknown`.
    pub state: &'static str,
    #[serde(flatten)]
    pub device: Device,
}

impl From<Device> for DeviceJson {
    fn from(device: Device) -> Self {
        DeviceJson { state: if device.extensionnumber.is_some() { "known" } else { "unknown" }, device }
    }
}

paging::paged_query! {
    /// Which devices.
    pub struct DeviceParams {
        /// known (default) or unknown.
        state: Option<String>,
    }
}

/// `GET /api/device?state=known|unknown`. An unknown phone belongs to the
/// tenant whose provisioning token it came under; superusers list them
/// all, everyone else those of their domain's token or last seen from its
/// site networks.
#[utoipa::path(
    get,
    path = "/api/device",
    tag = "installers",
    summary = "Phones that fetched files: known ones of the domain, or unknown MACs (superusers: all; others: those under the domain's token or from its site networks)",
    params(DeviceParams),
    responses((status = 200, description = "Devices in MAC order", body = [DeviceJson]), ErrorResponses)
)]
pub async fn list(State(state): State<ApiState>, caller: Caller, uri: axum::http::Uri) -> ApiResult<Json<Vec<DeviceJson>>> {
    let p: DeviceParams = query(&uri)?;
    let limit = paging::max_results(p.maxresults.as_deref())?;
    let scope = match p.state.as_deref().unwrap_or("known") {
        "known" => DeviceScope::Known(caller.domain_id),
        "unknown" => state.service.unknown_scope(&caller).await?,
        _ => return Err(ApiError::BadRequest("state: must be known or unknown".into())),
    };
    let after = p
        .afterid
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<Mac>())
        .transpose()
        .map_err(|e| ApiError::BadRequest(format!("afterid: {e}")))?;
    Ok(Json(state.store.list_devices(scope, after.as_ref(), limit).await?.into_iter().map(DeviceJson::from).collect()))
}

/// `POST /api/device/{mac}/claim` with `{"extensionnumber": "…", "model":
/// "…"}`: gives the phone to that extension of the caller's domain (or
/// creates it when the domain's `claimcreates` allows), and queues a push.
#[utoipa::path(
    post,
    path = "/api/device/{mac}/claim",
    tag = "installers",
    summary = "Give a phone to an extension (created when the domain's claimcreates allows); a push goes out",
    params(("mac" = String, Path), DomainParam),
    request_body(content = Object, description = "extensionnumber, and optionally model"),
    responses((status = 200, description = "The handset", body = HandsetJson), (status = 409, description = "MAC already in use", body = ErrorBody), ErrorResponses)
)]
pub async fn claim(
    State(state): State<ApiState>,
    caller: Caller,
    Path(mac): Path<String>,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<HandsetJson>> {
    let mac: Mac = mac.parse().map_err(|e: crate::model::mac::MacError| ApiError::BadRequest(e.to_string()))?;
    let mut ext = None;
    let mut model = None;
    for (key, v) in &body {
        match key.as_str() {
            "extensionnumber" => ext = Some(string_field("extensionnumber", v)?),
            "model" => model = optional_string_field("model", v)?,
            other => return Err(ApiError::BadRequest(format!("Unknown field: {other}"))),
        }
    }
    let ext = ext.ok_or_else(|| ApiError::BadRequest("extensionnumber: is required".into()))?;
    Ok(Json(HandsetJson::new(&state.service.claim(&caller, mac, &ext, model).await?, &caller)))
}
