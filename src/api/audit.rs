//! The audit log of the caller's domain, for admins.

use axum::extract::State;
use axum::Json;

use super::error::{ApiError, ApiResult, ErrorResponses};
use super::handsets::query;
use super::{paging, ApiState};
use crate::auth::Caller;
use crate::model::AuditEntry;

paging::paged_query! {
    /// The audit log's pages.
    pub struct AuditParams {}
}

#[utoipa::path(
    get,
    path = "/api/audit",
    tag = "audit",
    summary = "The domain's audit log (admins)",
    params(AuditParams),
    responses((status = 200, description = "Audit rows in id order", body = [AuditEntry]), ErrorResponses)
)]
pub async fn list(State(state): State<ApiState>, caller: Caller, uri: axum::http::Uri) -> ApiResult<Json<Vec<AuditEntry>>> {
    caller.require_admin()?;
    let p: AuditParams = query(&uri)?;
    let limit = paging::max_results(p.maxresults.as_deref())?;
    let after = match p.afterid.as_deref().filter(|s| !s.is_empty()) {
        None => 0,
        Some(s) => s.parse::<i64>().map_err(|_| ApiError::BadRequest("afterid: must be the id of an audit row".into()))?,
    };
    Ok(Json(state.store.list_audit(caller.domain_id, after, limit).await?))
}
