//! Call control: Handset Update's call-control parameters answer 202 with
//! an action (see `service::calls`), whose outcome its `GET` shows; and
//! Jingl's Call and CallRecording pages, which belong to the voice
//! platform, answer 501 with a pointer.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::{Map, Value};

use super::auth::DomainParam;
use super::error::{ApiError, ApiResult, ErrorBody, ErrorResponses};
use super::ApiState;
use crate::auth::Caller;
use crate::model::call::CallAction;
use crate::store::calls::CallActionRow;

/// A call action: queued with the 202, then `sent`, `done` or `failed`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CallActionJson {
    pub actionid: String,
    /// The call-control parameter: callcreate, calltransferblind,
    /// calltransferattended, callmonitor, callcoach or callbarge.
    pub action: &'static str,
    pub extensionnumber: String,
    /// The number dialled or transferred to, or the supervisor's extension.
    pub target: String,
    /// queued, sent, done or failed.
    pub state: &'static str,
    /// Why it failed (the relay's or phone's words); `""` otherwise.
    pub error: String,
    /// Who asked.
    pub actor: String,
    pub created: String,
    pub updated: String,
}

impl CallActionJson {
    pub fn new(row: &CallActionRow) -> Self {
        CallActionJson {
            actionid: row.id.clone(),
            action: row.action.as_str(),
            extensionnumber: row.extension.clone(),
            target: row.target.clone(),
            state: row.state.as_str(),
            error: row.error.clone(),
            actor: row.actor.clone(),
            created: crate::model::rfc3339(row.created_at),
            updated: crate::model::rfc3339(row.updated_at),
        }
    }
}

/// The call-control parameter of an update body and its value, if it has
/// one: it must be the body's only field (400 otherwise), a string.
pub fn call_control(body: &Map<String, Value>) -> ApiResult<Option<(CallAction, String)>> {
    let mut found = body.keys().filter_map(|k| CallAction::parse(k).map(|a| (k, a)));
    let Some((key, action)) = found.next() else { return Ok(None) };
    if body.len() > 1 {
        return Err(ApiError::BadRequest(format!(
            "{key}: a call-control parameter must be the only field of its request (one action at a time, no handset changes with it)"
        )));
    }
    match &body[key] {
        Value::String(s) => Ok(Some((action, s.clone()))),
        _ => Err(ApiError::BadRequest(format!("{key}: must be a string"))),
    }
}

/// Queues the call action of an update body: 202 with the action.
pub async fn queue(state: &ApiState, caller: &Caller, ext: &str, action: CallAction, target: &str) -> ApiResult<Response> {
    let row = state.service.call_action(caller, ext, action, target).await?;
    Ok((StatusCode::ACCEPTED, Json(CallActionJson::new(&row))).into_response())
}

/// `{extensionnumber}` and `{actionid}` in a path, for the OpenAPI document.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct ActionPath {
    /// The extension number.
    extensionnumber: String,
    /// The `actionid` of the 202.
    actionid: String,
}

#[utoipa::path(
    get,
    path = "/api/handset/{extensionnumber}/action/{actionid}",
    tag = "calls",
    summary = "A call action's outcome (queued, sent, done, or failed with its error)",
    params(ActionPath, DomainParam),
    responses((status = 200, description = "The call action", body = CallActionJson), ErrorResponses)
)]
pub async fn action(
    State(state): State<ApiState>,
    caller: Caller,
    Path((ext, id)): Path<(String, String)>,
) -> ApiResult<Json<CallActionJson>> {
    let row = state.service.call_action_status(&caller, &id).await?;
    if row.extension != ext {
        return Err(ApiError::NotFound("Call action not found"));
    }
    Ok(Json(CallActionJson::new(&row)))
}

/// What Jingl's Call and CallRecording pages answer here.
pub const NOT_OURS: &str =
    "Calls belong to the voice platform, not the provisioning server: ask the platform's API (see README, Call control)";

#[utoipa::path(
    get,
    path = "/api/call",
    tag = "calls",
    summary = "Jingl's Call Search/Select/Create and CallRecording pages (/api/call, /api/call/{id}, /api/callrecording...): 501, they belong to the voice platform",
    responses((status = 501, description = "Calls belong to the voice platform: ask its API", body = ErrorBody))
)]
pub async fn not_ours() -> ApiError {
    ApiError::NotImplemented(NOT_OURS.into())
}
