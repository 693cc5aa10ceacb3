//! The handset pages: the list (search, paging, badges, a create form) and
//! one handset (edit, resync, delete, its phone's last fetch and push, its
//! history, and a preview of its config with the password masked).

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect};
use serde::Deserialize;

use super::badges::{self, Badge};
use super::error::html;
use super::form::{Fields, Posted};
use super::nav::Nav;
use super::session::Session;
use super::{AdminState, PageResult};
use crate::api::ApiError;
use crate::model::settings;
use crate::model::{validate_extension, HandsetInput, Mac, NewHandset};
use crate::model::{AuditEntry, Device};
use crate::store::handsets::{HandsetFilter, HandsetView, ProvisioningState};

/// Handsets per page of the list.
const PAGE: i64 = 50;

/// A handset's fields as the forms show them.
#[derive(Clone, Debug, Default)]
pub struct HandsetForm {
    pub extensionnumber: String,
    pub name: String,
    pub location: String,
    pub outgoingcli: String,
    pub recording: bool,
    pub notes: String,
    pub mac: String,
    pub model: String,
    /// `key = value` lines.
    pub settings: String,
    /// IANA zone; empty for the domain's.
    pub timezone: String,
}

impl HandsetForm {
    fn from_view(v: &HandsetView) -> Self {
        let h = &v.handset;
        HandsetForm {
            extensionnumber: h.extensionnumber.clone(),
            name: h.name.clone(),
            location: h.location.clone(),
            outgoingcli: h.outgoingcli.clone(),
            recording: h.recording,
            notes: h.notes.clone(),
            mac: h.mac.map(|m| m.lower()).unwrap_or_default(),
            model: h.model.clone().unwrap_or_default(),
            settings: settings::to_lines(&h.settings),
            timezone: h.timezone.clone(),
        }
    }

    fn from_fields(f: &Fields) -> Self {
        HandsetForm {
            extensionnumber: f.get("extensionnumber").trim().to_string(),
            name: f.get("name").to_string(),
            location: f.get("location").to_string(),
            outgoingcli: f.get("outgoingcli").to_string(),
            recording: f.ticked("recording"),
            notes: f.get("notes").to_string(),
            mac: f.get("mac").trim().to_string(),
            model: f.get("model").trim().to_string(),
            settings: f.get("settings").to_string(),
            timezone: f.get("timezone").trim().to_string(),
        }
    }
}

/// The edit form as a Handset Update: every field is sent, so every field
/// is set (an empty MAC or model clears it); an empty password keeps it.
fn edit_changes(f: &Fields) -> Result<HandsetInput, ApiError> {
    let form = HandsetForm::from_fields(f);
    let mut object = form_object(&form, f.get("password"));
    let settings = settings::from_lines("settings", &form.settings)?;
    object.insert("settings".into(), serde_json::to_value(settings).unwrap_or_default());
    object.insert("location".into(), form.location.into());
    object.insert("outgoingcli".into(), form.outgoingcli.into());
    object.insert("recording".into(), form.recording.into());
    object.insert("notes".into(), form.notes.replace("\r\n", "\n").into());
    input(object)
}

/// The fields the create form has.
fn create_changes(f: &Fields) -> Result<HandsetInput, ApiError> {
    input(form_object(&HandsetForm::from_fields(f), f.get("password")))
}

/// The fields both forms have, as the handset input every front end reads.
fn form_object(form: &HandsetForm, password: &str) -> serde_json::Map<String, serde_json::Value> {
    let mut object = serde_json::Map::new();
    object.insert("name".into(), form.name.clone().into());
    if !password.is_empty() {
        object.insert("password".into(), password.into());
    }
    object.insert("mac".into(), form.mac.clone().into());
    object.insert("model".into(), form.model.clone().into());
    object.insert("timezone".into(), form.timezone.clone().into());
    object
}

fn input(object: serde_json::Map<String, serde_json::Value>) -> Result<HandsetInput, ApiError> {
    HandsetInput::from_object(object).map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// What a redirect after a post asks the page to say (fixed texts: nothing
/// from the URL is shown).
fn done_message(done: Option<&str>) -> Option<&'static str> {
    Some(match done? {
        "created" => "Handset created.",
        "saved" => "Saved. The phone is told to fetch its new configuration.",
        "unchanged" => "Nothing changed.",
        "resync" => "Resync queued: the phone gets a NOTIFY.",
        "reboot" => "Reboot queued: the phone gets a NOTIFY to reboot.",
        "deleted" => "Handset deleted.",
        "claimed" => "Phone claimed: it is told to fetch its configuration.",
        _ => return None,
    })
}

pub struct Row {
    pub ext: String,
    pub name: String,
    pub location: String,
    pub mac: String,
    pub model: String,
    pub line: Badge,
    pub provisioning: Badge,
    pub last_fetch: String,
}

#[derive(Template)]
#[template(path = "admin/handsets.html")]
struct ListPage {
    nav: Nav,
    message: Option<&'static str>,
    error: Option<String>,
    q: String,
    provisioning: String,
    rows: Vec<Row>,
    next: Option<String>,
    new: HandsetForm,
    models: std::sync::Arc<[String]>,
}

#[derive(Deserialize, Default)]
pub struct ListQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    provisioning: String,
    #[serde(default)]
    after: String,
    done: Option<String>,
}

pub async fn list(State(state): State<AdminState>, session: Session, Query(q): Query<ListQuery>) -> PageResult {
    let message = done_message(q.done.as_deref());
    list_page(&state, &session, q, message, None, HandsetForm::default(), StatusCode::OK).await
}

/// One search box: digits are an extension prefix, a MAC is a MAC, anything
/// else a part of the name.
fn filter(q: &str, provisioning: &str) -> Result<HandsetFilter, ApiError> {
    let q = q.trim();
    let mut f = HandsetFilter::default();
    match q.parse::<Mac>() {
        _ if q.is_empty() => {}
        _ if q.bytes().all(|b| b.is_ascii_digit()) && validate_extension(q).is_ok() => f.extension_prefix = Some(q.into()),
        Ok(mac) => f.mac = Some(mac),
        Err(_) => f.name = Some(q.into()),
    }
    if !provisioning.is_empty() {
        f.provisioning = Some(
            ProvisioningState::parse(provisioning)
                .ok_or(ApiError::BadRequest("provisioning: must be pending, failed or applied".into()))?,
        );
    }
    Ok(f)
}

async fn list_page(
    state: &AdminState,
    session: &Session,
    q: ListQuery,
    message: Option<&'static str>,
    error: Option<String>,
    new: HandsetForm,
    status: StatusCode,
) -> PageResult {
    let nav = Nav::new(state, session, "handsets").await?;
    let filter = filter(&q.q, &q.provisioning)?;
    let after = Some(q.after.as_str()).filter(|a| !a.is_empty());
    let views = state.api.store.search_handsets(session.row.domain_id, &filter, after, PAGE).await?;
    let next = (views.len() as i64 == PAGE).then(|| {
        let last = &views[views.len() - 1].handset.extensionnumber;
        form_urlencoded::Serializer::new(String::new())
            .append_pair("q", &q.q)
            .append_pair("provisioning", &q.provisioning)
            .append_pair("after", last)
            .finish()
    });
    let rows = views
        .iter()
        .map(|v| Row {
            ext: v.handset.extensionnumber.clone(),
            name: v.handset.name.clone(),
            location: v.handset.location.clone(),
            mac: v.handset.mac.map(|m| m.lower()).unwrap_or_default(),
            model: v.handset.model.clone().unwrap_or_default(),
            line: badges::line(v),
            provisioning: badges::provisioning(v),
            last_fetch: v.last_fetch.as_ref().map(|f| super::when(f.at)).unwrap_or_default(),
        })
        .collect();
    let page = ListPage { nav, message, error, q: q.q, provisioning: q.provisioning, rows, next, new, models: state.models() };
    Ok(html(status, &page))
}

pub async fn create(State(state): State<AdminState>, posted: Posted) -> PageResult {
    let caller = posted.session.caller();
    caller.require_write()?;
    let ext = posted.fields.get("extensionnumber").trim().to_string();
    let result = match (validate_extension(&ext), create_changes(&posted.fields)) {
        (Err(e), _) => Err(ApiError::from(e)),
        (_, Err(e)) => Err(e),
        (Ok(()), Ok(fields)) => {
            let new = vec![NewHandset { extensionnumber: ext.clone(), fields }];
            state.api.service.create_handsets(&caller, new).await.map_err(|(_, e)| ApiError::from(e))
        }
    };
    match result {
        Ok(_) => Ok(Redirect::to(&format!("/admin/handsets/{ext}?done=created")).into_response()),
        Err(e @ (ApiError::BadRequest(_) | ApiError::Conflict(_))) => {
            let status = e.status();
            let new = HandsetForm::from_fields(&posted.fields);
            list_page(&state, &posted.session, ListQuery::default(), None, Some(e.to_string()), new, status).await
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Template)]
#[template(path = "admin/handset.html")]
struct HandsetPage {
    nav: Nav,
    message: Option<&'static str>,
    error: Option<String>,
    form: HandsetForm,
    revision: i64,
    fetched_revision: i64,
    line: Badge,
    provisioning: Badge,
    registration: String,
    push_state: String,
    last_push: String,
    push_error: String,
    device: Option<Device>,
    last_seen: String,
    history: Vec<(String, AuditEntry)>,
    preview_file: String,
    preview: Result<String, String>,
    models: std::sync::Arc<[String]>,
}

#[derive(Deserialize)]
pub struct ShowQuery {
    done: Option<String>,
}

pub async fn show(
    State(state): State<AdminState>,
    session: Session,
    Path(ext): Path<String>,
    headers: HeaderMap,
    Query(q): Query<ShowQuery>,
) -> PageResult {
    handset_page(&state, &session, &ext, &headers, done_message(q.done.as_deref()), None, None, StatusCode::OK).await
}

#[allow(clippy::too_many_arguments)]
async fn handset_page(
    state: &AdminState,
    session: &Session,
    ext: &str,
    headers: &HeaderMap,
    message: Option<&'static str>,
    error: Option<String>,
    submitted: Option<HandsetForm>,
    status: StatusCode,
) -> PageResult {
    let nav = Nav::new(state, session, "handsets").await?;
    let store = &state.api.store;
    let view = store.handset(session.row.domain_id, ext).await?.ok_or(ApiError::NotFound("Handset not found"))?;
    let device = match view.handset.mac {
        Some(mac) => store.device(&mac).await?.filter(|d| d.extensionnumber.as_deref() == Some(ext)),
        None => None,
    };
    let history =
        store.handset_audit(session.row.domain_id, ext, 20).await?.into_iter().map(|row| (super::when(row.at), row)).collect();
    let (preview_file, preview) = match view.handset.mac {
        None => (String::new(), Err("The handset has no MAC yet: claim a phone for it, or enter its MAC.".to_string())),
        Some(mac) => {
            let host = headers.get(axum::http::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
            match state.provisioner.preview(&mac, None, &format!("https://{host}/"), true).await {
                Ok((file, served)) => (file, Ok(String::from_utf8_lossy(&served.body).into_owned())),
                Err(e) => (String::new(), Err(e.to_string())),
            }
        }
    };
    let push = view.push.clone();
    let page = HandsetPage {
        nav,
        message,
        error,
        form: submitted.unwrap_or_else(|| HandsetForm::from_view(&view)),
        revision: view.handset.revision,
        fetched_revision: view.fetched_revision(),
        line: badges::line(&view),
        provisioning: badges::provisioning(&view),
        registration: view.status.registration_address(),
        push_state: push.as_ref().map(|p| p.state.as_str()).unwrap_or("none").into(),
        last_push: push.as_ref().and_then(|p| p.last_push_at).map(super::when).unwrap_or_default(),
        push_error: push.map(|p| p.last_error).unwrap_or_default(),
        last_seen: device.as_ref().map(|d| super::when(d.lastseen)).unwrap_or_default(),
        device,
        history,
        preview_file,
        preview,
        models: state.models(),
    };
    Ok(html(status, &page))
}

pub async fn update(State(state): State<AdminState>, Path(ext): Path<String>, headers: HeaderMap, posted: Posted) -> PageResult {
    let caller = posted.session.caller();
    caller.require_write()?;
    let result = match edit_changes(&posted.fields) {
        Ok(changes) => state.api.service.update_handset(&caller, &ext, &changes).await.map_err(ApiError::from),
        Err(e) => Err(e),
    };
    match result {
        Ok((_, changed)) if changed.is_empty() => {
            Ok(Redirect::to(&format!("/admin/handsets/{ext}?done=unchanged")).into_response())
        }
        Ok(_) => Ok(Redirect::to(&format!("/admin/handsets/{ext}?done=saved")).into_response()),
        Err(e @ (ApiError::BadRequest(_) | ApiError::Conflict(_))) => {
            let form = HandsetForm { extensionnumber: ext.clone(), ..HandsetForm::from_fields(&posted.fields) };
            let status = e.status();
            handset_page(&state, &posted.session, &ext, &headers, None, Some(e.to_string()), Some(form), status).await
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn resync(State(state): State<AdminState>, Path(ext): Path<String>, posted: Posted) -> PageResult {
    let caller = posted.session.caller();
    caller.require_write()?;
    let reboot = posted.fields.ticked("reboot");
    state.api.service.resync(&caller, &ext, reboot).await.map_err(ApiError::from)?;
    let done = if reboot { "reboot" } else { "resync" };
    Ok(Redirect::to(&format!("/admin/handsets/{ext}?done={done}")).into_response())
}

pub async fn delete(State(state): State<AdminState>, Path(ext): Path<String>, headers: HeaderMap, posted: Posted) -> PageResult {
    let caller = posted.session.caller();
    caller.require_write()?;
    if !posted.fields.ticked("confirm") {
        let why = "Tick the box to confirm the deletion.".to_string();
        return handset_page(&state, &posted.session, &ext, &headers, None, Some(why), None, StatusCode::BAD_REQUEST).await;
    }
    state.api.service.delete_handset(&caller, &ext).await.map_err(ApiError::from)?;
    Ok(Redirect::to("/admin/handsets?done=deleted").into_response())
}
