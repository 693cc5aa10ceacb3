//! Devices: phones that fetched their files, known (the caller's domain's
//! handsets) or unknown (MACs no handset has: for installers to claim).

use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;

use super::auth::Caller;
use super::auth::DomainParam;
use super::body::{optional_string_field, string_field, JsonObject};
use super::error::{ApiError, ApiResult, ErrorBody, ErrorResponses};
use super::handsets::query;
use super::handsets::HandsetJson;
use super::{paging, ApiState};
use crate::model::Mac;
use crate::store::devices::{DeviceRow, DeviceScope};

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeviceParams {
    /// known (default) or unknown.
    state: Option<String>,
    /// The last key of the previous page.
    afterid: Option<String>,
    /// Page size, 1-1000 (default 100).
    maxresults: Option<String>,
    /// Superusers: act in this domain (read by [`Caller`]).
    #[allow(dead_code)]
    domain: Option<String>,
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
    responses((status = 200, description = "Devices in MAC order", body = [crate::store::devices::DeviceRow]), ErrorResponses),
    security(("basic" = []))
)]
pub async fn list(State(state): State<ApiState>, caller: Caller, uri: axum::http::Uri) -> ApiResult<Json<Vec<DeviceRow>>> {
    let p: DeviceParams = query(&uri)?;
    let limit = paging::max_results(p.maxresults.as_deref())?;
    let scope = match p.state.as_deref().unwrap_or("known") {
        "known" => DeviceScope::Known(caller.domain_id),
        "unknown" => unknown_scope(&state.store, &caller).await?,
        _ => return Err(ApiError::BadRequest("state: must be known or unknown".into())),
    };
    let after = p
        .afterid
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<Mac>())
        .transpose()
        .map_err(|e| ApiError::BadRequest(format!("afterid: {e}")))?;
    Ok(Json(state.store.list_devices(scope, after.as_ref(), limit).await?))
}

/// The unknown devices `caller` may see: all for a superuser, else those
/// that came under the domain's token or from its site networks.
pub async fn unknown_scope(store: &crate::store::Store, caller: &Caller) -> ApiResult<DeviceScope> {
    if caller.user.superuser {
        return Ok(DeviceScope::Unknown);
    }
    let domain = store.domain_by_name(&caller.domain).await?.ok_or(ApiError::NotFound("Domain not found"))?;
    Ok(DeviceScope::UnknownFor { domain_id: domain.id, networks: domain.site_networks })
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
    responses((status = 200, description = "The handset", body = HandsetJson), (status = 409, description = "MAC already in use", body = ErrorBody), ErrorResponses),
    security(("basic" = []))
)]
pub async fn claim(
    State(state): State<ApiState>,
    caller: Caller,
    Path(mac): Path<String>,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<HandsetJson>> {
    caller.require_write()?;
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
    Ok(Json(HandsetJson::from(&claim_for(&state, &caller, mac, &ext, model).await?)))
}

/// A claim as the API and the web UI make it: the extension checked, the
/// phone one the caller may see (seen under the domain's token or from its
/// site networks; else 404, as for a MAC nobody has), the domain's
/// `claimcreates` obeyed, the push queued with it.
pub async fn claim_for(
    state: &ApiState,
    caller: &Caller,
    mac: Mac,
    ext: &str,
    model: Option<String>,
) -> ApiResult<crate::store::handsets::HandsetView> {
    let store = &state.store;
    caller.require_write()?;
    crate::model::validate_extension(ext)?;
    state.mac_probes.check(caller)?;
    let domain = store.domain_by_name(&caller.domain).await?.ok_or(ApiError::NotFound("Domain not found"))?;
    if !caller.user.superuser {
        let device = store.device(&mac).await?;
        if !device.is_some_and(|d| d.visible_to(domain.id, &domain.site_networks)) {
            return Err(ApiError::NotFound(
                "Device not found: it has not asked for its file under this domain's provisioning URL or from its site networks",
            ));
        }
    }
    let view = match store.claim_device(&caller.actor(), caller.domain_id, mac, ext, model, domain.claim_creates).await {
        Ok(view) => view,
        Err(e) => return Err(state.mac_probes.answer(store, caller, Some(mac), Some(ext), e).await),
    };
    tracing::info!(user = %caller.user.login(), domain = %caller.domain, ext = %ext, mac = %mac, "device claimed");
    Ok(view)
}
