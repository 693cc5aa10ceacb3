//! The audit log of the caller's domain, for admins.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;

use super::error::{ApiError, ApiResult, ErrorResponses};
use super::handsets::query;
use super::{paging, ApiState};
use crate::auth::Caller;
use crate::store::audit::AuditRow;

/// One audit row: who changed what (field names, never values), when, from
/// where.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct AuditJson {
    pub id: i64,
    /// Unix milliseconds.
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub extensionnumber: Option<String>,
    pub client_ip: String,
    /// The changed fields' names, comma-separated.
    pub fields: String,
}

impl From<AuditRow> for AuditJson {
    fn from(r: AuditRow) -> Self {
        AuditJson {
            id: r.id,
            at: r.at,
            actor: r.actor,
            action: r.action,
            extensionnumber: r.extensionnumber,
            client_ip: r.client_ip,
            fields: r.fields,
        }
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// The last key of the previous page.
    afterid: Option<String>,
    /// Page size, 1-1000 (default 100).
    maxresults: Option<String>,
    /// Superusers: act in this domain (read by [`Caller`]).
    #[allow(dead_code)]
    domain: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/audit",
    tag = "audit",
    summary = "The domain's audit log (admins)",
    params(AuditParams),
    responses((status = 200, description = "Audit rows in id order", body = [AuditJson]), ErrorResponses),
    security(("basic" = []))
)]
pub async fn list(State(state): State<ApiState>, caller: Caller, uri: axum::http::Uri) -> ApiResult<Json<Vec<AuditJson>>> {
    caller.require_admin()?;
    let p: AuditParams = query(&uri)?;
    let limit = paging::max_results(p.maxresults.as_deref())?;
    let after = match p.afterid.as_deref().filter(|s| !s.is_empty()) {
        None => 0,
        Some(s) => s.parse::<i64>().map_err(|_| ApiError::BadRequest("afterid: must be the id of an audit row".into()))?,
    };
    let rows = state.store.list_audit(caller.domain_id, after, limit).await?;
    Ok(Json(rows.into_iter().map(AuditJson::from).collect()))
}
