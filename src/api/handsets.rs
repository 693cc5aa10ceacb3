//! Handset Search / Select / Update, create and delete.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::auth::DomainParam;
use super::body::{JsonBody, JsonObject};
use super::error::{ApiError, ApiResult, ErrorBody, ErrorResponses};
use super::{paging, ApiState};
use crate::auth::Caller;
use crate::handset_csv::{Spool, SpoolError};
use crate::model::handset::parse_bool;
use crate::model::settings::ExtraSettings;
use crate::model::{validate_extension, HandsetInput, Mac, NewHandset};
use crate::service::import::{ImportMode, ImportOutcome, Refused};
use crate::store::handsets::{HandsetFilter, HandsetView, ProvisioningState};

/// Handset Select's body: Jingl's fields, all strings, then ours (`mac`,
/// `model`, `revision`).
#[derive(Serialize, utoipa::ToSchema)]
pub struct HandsetJson {
    pub extensionnumber: String,
    pub name: String,
    pub password: String,
    pub location: String,
    pub outgoingcli: String,
    pub recording: &'static str,
    pub notes: String,
    pub status: String,
    pub registrationipaddress: String,
    pub mac: String,
    pub model: String,
    pub revision: i64,
    /// When the phone last fetched its file (RFC 3339), `""` if never.
    pub lastprovisioned: String,
    /// The model and firmware the phone reported on its last fetch.
    pub devicemodel: String,
    pub firmware: String,
    /// Extra vendor settings of this handset (over the domain's and model's).
    pub settings: ExtraSettings,
    /// The phone's own IANA time zone; `""` for the domain's.
    pub timezone: String,
    /// The phone's device password (`***` for read-only users): with its
    /// MAC as the user name, what it fetches its files with and, on
    /// families whose template sets it (snom, Yealink: see the profile's
    /// `[remote_control]`), its web login, so an installer can still open
    /// the phone's web page.
    pub devicepassword: String,
    /// Whether the latest change has reached the phone.
    pub provisioning: ProvisioningJson,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ProvisioningJson {
    pub revision: i64,
    /// The revision the phone last fetched (0: never).
    pub fetchedrevision: i64,
    /// `applied` once the phone fetched this revision; else the push's
    /// state: `pending`, `sent`, `failed`, `no-target`, or `none`.
    pub pushstate: String,
    pub lastpushat: String,
    pub lasterror: String,
}

/// What a `readonly` user sees instead of a SIP password: reading the
/// directory must not hand out every phone's credentials.
pub const MASKED: &str = "***";

impl HandsetJson {
    /// The handset as `caller` may see it.
    pub fn new(v: &HandsetView, caller: &Caller) -> Self {
        let h = &v.handset;
        let password = if caller.may_see_secrets() { h.password.expose() } else { MASKED };
        HandsetJson {
            extensionnumber: h.extensionnumber.clone(),
            name: h.name.clone(),
            password: password.to_string(),
            location: h.location.clone(),
            outgoingcli: h.outgoingcli.clone(),
            recording: if h.recording { "true" } else { "false" },
            notes: h.notes.clone(),
            status: v.status.summary(),
            registrationipaddress: v.status.registration_ip(),
            mac: h.mac.map(|m| m.lower()).unwrap_or_default(),
            model: h.model.clone().unwrap_or_default(),
            revision: h.revision,
            lastprovisioned: v.last_fetch.as_ref().map(|f| crate::model::rfc3339(f.at)).unwrap_or_default(),
            devicemodel: v.last_fetch.as_ref().map(|f| f.model.clone()).unwrap_or_default(),
            firmware: v.last_fetch.as_ref().map(|f| f.firmware.clone()).unwrap_or_default(),
            settings: h.settings.clone(),
            timezone: h.timezone.clone(),
            devicepassword: if caller.may_see_secrets() { h.device_password.expose() } else { MASKED }.to_string(),
            provisioning: ProvisioningJson {
                revision: h.revision,
                fetchedrevision: v.fetched_revision(),
                pushstate: match (v.provisioning_state(), &v.push) {
                    (ProvisioningState::Applied, _) => "applied".into(),
                    (_, Some(p)) => p.state.as_str().into(),
                    (_, None) => "none".into(),
                },
                lastpushat: v.push.as_ref().and_then(|p| p.last_push_at).map(crate::model::rfc3339).unwrap_or_default(),
                lasterror: v.push.as_ref().map(|p| p.last_error.clone()).unwrap_or_default(),
            },
        }
    }
}

/// Jingl's call-control parameters: Handset Update queues them
/// (`api::calls`); a create that carries one is refused.
const CALL_CONTROL: &[&str] =
    &["callcreate", "calltransferattended", "calltransferblind", "callmonitor", "callcoach", "callbarge"];

paging::paged_query! {
    /// Handset Search's filters.
    pub struct SearchParams {
        /// Substring of the name.
        name: Option<String>,
        /// Substring of the location.
        location: Option<String>,
        /// Prefix of the extension.
        extensionnumber: Option<String>,
        /// A MAC in any usual spelling.
        mac: Option<String>,
        model: Option<String>,
        /// pending, failed or applied.
        provisioning: Option<String>,
    }
}

/// `{extensionnumber}` in a path, for the OpenAPI document.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct ExtensionPath {
    /// The extension number.
    extensionnumber: String,
}

/// Parses query parameters, naming an unknown one in the 400.
pub fn query<T: serde::de::DeserializeOwned>(uri: &axum::http::Uri) -> ApiResult<T> {
    Query::<T>::try_from_uri(uri).map(|q| q.0).map_err(|e| {
        ApiError::BadRequest(format!("Bad query: {}", e.body_text().trim_start_matches("Failed to deserialize query string: ")))
    })
}

#[utoipa::path(
    get,
    path = "/api/handset",
    tag = "handsets",
    summary = "Handset Search",
    params(SearchParams),
    responses((status = 200, description = "Handsets in extension order", body = [HandsetJson]), ErrorResponses)
)]
pub async fn search(State(state): State<ApiState>, caller: Caller, uri: axum::http::Uri) -> ApiResult<Json<Vec<HandsetJson>>> {
    let p: SearchParams = query(&uri)?;
    let limit = paging::max_results(p.maxresults.as_deref())?;
    let filter = HandsetFilter {
        name: p.name.filter(|s| !s.is_empty()),
        location: p.location.filter(|s| !s.is_empty()),
        extension_prefix: p.extensionnumber.filter(|s| !s.is_empty()).map(|s| validate_extension(&s).map(|_| s)).transpose()?,
        mac: p
            .mac
            .filter(|s| !s.is_empty())
            .map(|m| m.parse::<Mac>())
            .transpose()
            .map_err(|e| ApiError::BadRequest(e.to_string()))?,
        model: p.model.filter(|s| !s.is_empty()),
        provisioning: p
            .provisioning
            .filter(|s| !s.is_empty())
            .map(|s| {
                ProvisioningState::parse(&s)
                    .ok_or(ApiError::BadRequest("provisioning: must be pending, failed or applied".into()))
            })
            .transpose()?,
    };
    let views =
        state.store.search_handsets(caller.domain_id, &filter, p.afterid.as_deref().filter(|s| !s.is_empty()), limit).await?;
    Ok(Json(views.iter().map(|v| HandsetJson::new(v, &caller)).collect()))
}

#[utoipa::path(
    get,
    path = "/api/handset/{extensionnumber}",
    tag = "handsets",
    summary = "Handset Select",
    params(ExtensionPath, DomainParam),
    responses((status = 200, description = "The handset", body = HandsetJson), ErrorResponses)
)]
pub async fn select(State(state): State<ApiState>, caller: Caller, Path(ext): Path<String>) -> ApiResult<Json<HandsetJson>> {
    let view = state.store.handset(caller.domain_id, &ext).await?.ok_or(ApiError::NotFound("Handset not found"))?;
    Ok(Json(HandsetJson::new(&view, &caller)))
}

#[utoipa::path(
    put,
    path = "/api/handset/{extensionnumber}",
    tag = "handsets",
    summary = "Handset Update (partial); or one call-control parameter alone (callcreate, calltransferblind, calltransferattended: a dial string; callmonitor, callcoach, callbarge: the supervisor's extension), queued: 202 with the action",
    params(ExtensionPath, DomainParam),
    request_body(content = HandsetInput),
    responses((status = 200, description = "The updated handset", body = HandsetJson), (status = 202, description = "Call action queued; GET /api/handset/{extensionnumber}/action/{actionid} shows its outcome", body = super::calls::CallActionJson), (status = 403, description = "Read-only user", body = ErrorBody), (status = 409, description = "MAC already in use; or a transfer while the handset has no call", body = ErrorBody), (status = 413, description = "Body over 64 KiB", body = ErrorBody), (status = 429, description = "Too many call actions by this user (Retry-After)", body = ErrorBody), (status = 501, description = "The domain's relay (pushbackend) or the phone cannot do this call action: why", body = ErrorBody), ErrorResponses)
)]
pub async fn update(
    State(state): State<ApiState>,
    caller: Caller,
    Path(ext): Path<String>,
    JsonObject(body): JsonObject,
) -> ApiResult<Response> {
    if let Some((action, target)) = super::calls::call_control(&body)? {
        return super::calls::queue(&state, &caller, &ext, action, &target).await;
    }
    let changes = parse_changes(&body, Some(&ext))?;
    let (view, _) = state.service.update_handset(&caller, &ext, &changes).await?;
    Ok(Json(HandsetJson::new(&view, &caller)).into_response())
}

/// Create: a JSON object makes one handset; an array of them (at most
/// [`MAX_BULK`], within the body limit) makes all of them in one transaction
/// or none, and a failure names the array index.
#[utoipa::path(
    post,
    path = "/api/handset",
    tag = "handsets",
    summary = "Create a handset, or up to 1000 from an array in one transaction",
    params(DomainParam),
    request_body(content = HandsetInput),
    responses((status = 201, description = "The created handset (an array for an array)", body = HandsetJson), (status = 409, description = "Extension or MAC already in use", body = ErrorBody), ErrorResponses)
)]
pub async fn create(State(state): State<ApiState>, caller: Caller, JsonBody(body): JsonBody) -> ApiResult<Response> {
    let (items, bulk) = match body {
        Value::Object(map) => (vec![map], false),
        Value::Array(items) if (1..=MAX_BULK).contains(&items.len()) => {
            let maps = items
                .into_iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::Object(m) => Ok(m),
                    _ => Err(ApiError::BadRequest(format!("[{i}]: each element must be a JSON object"))),
                })
                .collect::<ApiResult<Vec<_>>>()?;
            (maps, true)
        }
        Value::Array(_) => return Err(ApiError::BadRequest(format!("a bulk create takes 1 to {MAX_BULK} handsets"))),
        _ => return Err(ApiError::BadRequest("Bad JSON: the body must be a JSON object or an array of them".into())),
    };
    let at = |i: usize, e: ApiError| if bulk { prefix_error(i, e) } else { e };
    let mut new = Vec::with_capacity(items.len());
    for (i, body) in items.iter().enumerate() {
        new.push(new_handset(body).map_err(|e| at(i, e))?);
    }
    let created = state.service.create_handsets(&caller, new).await.map_err(|(i, e)| at(i, e.into()))?;
    let json: Vec<HandsetJson> = created.iter().map(|v| HandsetJson::new(v, &caller)).collect();
    Ok(if bulk {
        (StatusCode::CREATED, Json(json)).into_response()
    } else {
        (StatusCode::CREATED, Json(json.into_iter().next())).into_response()
    })
}

/// The most handsets one bulk create takes.
pub const MAX_BULK: usize = 1000;

fn new_handset(body: &Map<String, Value>) -> ApiResult<NewHandset> {
    Ok(parse_changes(body, None)?.into_new()?)
}

/// `[3]: …` for the fourth element of a bulk call.
fn prefix_error(i: usize, e: ApiError) -> ApiError {
    match e {
        ApiError::BadRequest(m) => ApiError::BadRequest(format!("[{i}]: {m}")),
        ApiError::Conflict(m) => ApiError::Conflict(format!("[{i}]: {m}")),
        ApiError::NotImplemented(m) => ApiError::NotImplemented(format!("[{i}]: {m}")),
        other => other,
    }
}

#[utoipa::path(
    delete,
    path = "/api/handset/{extensionnumber}",
    tag = "handsets",
    summary = "Delete a handset",
    params(ExtensionPath, DomainParam),
    responses((status = 204, description = "Deleted"), ErrorResponses)
)]
pub async fn delete(State(state): State<ApiState>, caller: Caller, Path(ext): Path<String>) -> ApiResult<StatusCode> {
    state.service.delete_handset(&caller, &ext).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/handset/{ext}/resync`: queue a NOTIFY for the handset's
/// current revision; `{"reboot": true}` uses the vendor's reboot event.
#[utoipa::path(
    post,
    path = "/api/handset/{extensionnumber}/resync",
    tag = "push",
    summary = "Queue a resync NOTIFY; {\"reboot\": true} for the reboot event",
    params(ExtensionPath, DomainParam),
    responses((status = 202, description = "Queued", body = HandsetJson), ErrorResponses)
)]
pub async fn resync(
    State(state): State<ApiState>,
    caller: Caller,
    Path(ext): Path<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<(StatusCode, Json<HandsetJson>)> {
    let mut reboot = false;
    for (key, v) in super::body::options(body)? {
        match key.as_str() {
            "reboot" => reboot = parse_bool("reboot", &v)?,
            other => return Err(ApiError::BadRequest(format!("Unknown field: {other}"))),
        }
    }
    state.service.resync(&caller, &ext, reboot).await?;
    let view = state.store.handset(caller.domain_id, &ext).await?.ok_or(ApiError::NotFound("Handset not found"))?;
    Ok((StatusCode::ACCEPTED, Json(HandsetJson::new(&view, &caller))))
}

/// Reads the handset fields of a create or update body. On update
/// (`path_ext` given) an `extensionnumber` may be repeated but not changed.
fn parse_changes(body: &Map<String, Value>, path_ext: Option<&str>) -> ApiResult<HandsetInput> {
    if let Some(cc) = body.keys().find(|k| CALL_CONTROL.contains(&k.as_str())) {
        return Err(ApiError::NotImplemented(format!(
            "{cc}: call control acts on an existing handset: send it alone in Handset Update (PUT /api/handset/{{extensionnumber}})"
        )));
    }
    let input = HandsetInput::from_object(body.clone()).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    if let (Some(path), Some(given)) = (path_ext, &input.extensionnumber) {
        if path != given {
            return Err(ApiError::BadRequest("extensionnumber: cannot be changed; create a new handset".into()));
        }
    }
    Ok(input)
}

/// CSV bodies may be a whole site: larger than the 64 KiB of JSON calls.
pub const MAX_CSV_BODY: usize = crate::service::import::MAX_CSV_BYTES;

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ImportParams {
    /// true: check only, write nothing.
    dryrun: Option<String>,
    /// true: update extensions that exist (else they are errors).
    update: Option<String>,
    /// Superusers: act in this domain (read by [`Caller`]).
    #[allow(dead_code)]
    domain: Option<String>,
}

/// `POST /api/handset/import` (`text/csv`): every row checked first; any
/// refused row and nothing is written (400 with the errors and their lines,
/// at most 1000 of them listed). Imports take turns: 503 with Retry-After
/// when too many wait.
#[utoipa::path(
    post,
    path = "/api/handset/import",
    tag = "installers",
    summary = "Import handsets from CSV (text/csv); nothing is written if any row is refused",
    params(ImportParams),
    request_body(content = String, content_type = "text/csv"),
    responses((status = 200, description = "What was written", body = ImportReportJson), ErrorResponses)
)]
pub async fn import(
    State(state): State<ApiState>,
    caller: Caller,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> ApiResult<Response> {
    let p: ImportParams = query(&uri)?;
    let flag = |v: Option<String>, name: &'static str| {
        v.map(|s| parse_bool(name, &Value::String(s))).transpose().map(|b| b.unwrap_or(false))
    };
    let mode = ImportMode { dry_run: flag(p.dryrun, "dryrun")?, update: flag(p.update, "update")? };
    let declared =
        headers.get(axum::http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > (MAX_CSV_BODY + MAX_DRAIN) as u64) {
        return Err(ApiError::PayloadTooLarge(MAX_CSV_BODY));
    }
    // The place first: a refusal costs the client no upload, and what
    // waits on disk is bounded.
    let ticket = state.service.queue_import(&caller)?;
    let file = spool(&state.spool_dir, body).await?;
    Ok(match state.service.import(&caller, ticket, std::sync::Arc::new(file), mode, &|_, _| {}).await? {
        ImportOutcome::Refused(refused) => refused_answer(&refused),
        ImportOutcome::Checked(rows) => Json(serde_json::json!({ "checked": rows, "written": false })).into_response(),
        ImportOutcome::Written(r) => {
            Json(ImportReportJson { created: r.created, updated: r.updated, unchanged: r.unchanged }).into_response()
        }
    })
}

/// A body over the limit but under this much more is read (and thrown
/// away) before the 413, so the client sees it (see `api::body`).
const MAX_DRAIN: usize = 1024 * 1024;

/// Streams the body into a spool file, frame by frame.
async fn spool(dir: &std::path::Path, mut body: axum::body::Body) -> ApiResult<crate::handset_csv::CsvFile> {
    use http_body_util::BodyExt;
    let mut spool = Spool::create(dir, MAX_CSV_BODY)?;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| super::body::read_error(&e))?;
        let Ok(data) = frame.into_data() else { continue };
        match spool.write(&data).await {
            Ok(()) => {}
            Err(SpoolError::TooLarge(limit)) => {
                drop(spool);
                let mut drained = 0;
                while let Some(Ok(frame)) = body.frame().await {
                    drained += frame.data_ref().map_or(0, |d| d.len());
                    if drained > MAX_DRAIN {
                        break;
                    }
                }
                return Err(ApiError::PayloadTooLarge(limit));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(spool.finish().await?)
}

/// What an import wrote.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ImportReportJson {
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
}

/// 400 with the refused rows: `{"error", "errors": [{"line", "error"}]}`,
/// the list cut at 1000 (the message counts them all).
fn refused_answer(refused: &Refused) -> Response {
    let rows: Vec<Value> = refused.errors.iter().map(|e| serde_json::json!({ "line": e.line, "error": e.error })).collect();
    let error = match refused.unlisted() {
        0 => format!("{} row(s) refused; nothing was written", refused.total),
        n => format!("{} row(s) refused (the first {} listed, and {n} more); nothing was written", refused.total, rows.len()),
    };
    (StatusCode::BAD_REQUEST, Json(serde_json::json!({ "error": error, "errors": rows }))).into_response()
}
