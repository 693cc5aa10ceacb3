//! The audit log of the caller's domain, for admins.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;

use super::auth::Caller;
use super::error::{ApiError, ApiResult};
use super::handsets::query;
use super::{paging, ApiState};
use crate::store::audit::AuditRow;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    afterid: Option<String>,
    maxresults: Option<String>,
    #[allow(dead_code)]
    domain: Option<String>,
}

pub async fn list(State(state): State<ApiState>, caller: Caller, uri: axum::http::Uri) -> ApiResult<Json<Vec<AuditRow>>> {
    caller.require_admin()?;
    let p: AuditParams = query(&uri)?;
    let limit = paging::max_results(p.maxresults.as_deref())?;
    let after = match p.afterid.as_deref().filter(|s| !s.is_empty()) {
        None => 0,
        Some(s) => s.parse::<i64>().map_err(|_| ApiError::BadRequest("afterid: must be the id of an audit row".into()))?,
    };
    Ok(Json(state.store.list_audit(caller.domain_id, after, limit).await?))
}
