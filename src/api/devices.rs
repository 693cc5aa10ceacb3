//! Devices: phones that fetched their files, known (the caller's domain's
//! handsets) or unknown (MACs no handset has: for installers to claim).

use axum::extract::State;
use axum::Json;
use serde::Deserialize;

use super::auth::Caller;
use super::error::{ApiError, ApiResult};
use super::handsets::query;
use super::{paging, ApiState};
use crate::model::Mac;
use crate::store::devices::{DeviceRow, DeviceScope};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceParams {
    state: Option<String>,
    afterid: Option<String>,
    maxresults: Option<String>,
    #[allow(dead_code)]
    domain: Option<String>,
}

/// `GET /api/device?state=known|unknown`. Unknown devices belong to no
/// tenant yet (any tenant's phone may be booting), so only superusers list
/// them.
pub async fn list(State(state): State<ApiState>, caller: Caller, uri: axum::http::Uri) -> ApiResult<Json<Vec<DeviceRow>>> {
    let p: DeviceParams = query(&uri)?;
    let limit = paging::max_results(p.maxresults.as_deref())?;
    let scope = match p.state.as_deref().unwrap_or("known") {
        "known" => DeviceScope::Known(caller.domain_id),
        "unknown" if caller.user.superuser => DeviceScope::Unknown,
        "unknown" => return Err(ApiError::Forbidden("Only superusers may list unknown devices")),
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
