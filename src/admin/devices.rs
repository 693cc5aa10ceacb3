//! Unknown phones: MACs that asked for a file no handset has, for
//! installers to claim in one step. As in the API, only superusers see the
//! list (an unknown phone belongs to no tenant yet); everyone who may write
//! can claim a phone by the MAC on its label.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use serde::Deserialize;

use super::error::html;
use super::form::Posted;
use super::nav::Nav;
use super::session::Session;
use super::{AdminState, PageResult};
use crate::api::devices::claim_for;
use crate::api::ApiError;
use crate::model::Mac;
use crate::store::devices::{DeviceRow, DeviceScope};

/// The most unknown phones one page lists.
const PAGE: i64 = 200;

#[derive(Template)]
#[template(path = "admin/devices.html")]
struct DevicesPage {
    nav: Nav,
    error: Option<String>,
    /// `None`: this user may not list unknown phones.
    devices: Option<Vec<(String, DeviceRow)>>,
    refresh: bool,
    models: Vec<String>,
}

#[derive(Deserialize)]
pub struct DevicesQuery {
    /// Reload the page every few seconds (a `<meta>` refresh: no script).
    #[serde(default)]
    refresh: bool,
}

pub async fn list(State(state): State<AdminState>, session: Session, Query(q): Query<DevicesQuery>) -> PageResult {
    page(&state, &session, None, q.refresh, StatusCode::OK).await
}

async fn page(state: &AdminState, session: &Session, error: Option<String>, refresh: bool, status: StatusCode) -> PageResult {
    let nav = Nav::new(state, session, "devices").await?;
    let devices = if session.row.user.superuser {
        let rows = state.api.store.list_devices(DeviceScope::Unknown, None, PAGE).await?;
        Some(rows.into_iter().map(|d| (super::when(d.lastseen), d)).collect())
    } else {
        None
    };
    let page = DevicesPage { nav, error, devices, refresh, models: super::handsets::models(state) };
    Ok(html(status, &page))
}

pub async fn claim(State(state): State<AdminState>, posted: Posted) -> PageResult {
    let caller = posted.session.caller();
    let f = &posted.fields;
    let ext = f.get("extensionnumber").trim();
    let model = Some(f.get("model").trim().to_string()).filter(|m| !m.is_empty());
    let result = match f.get("mac").trim().parse::<Mac>() {
        Ok(mac) => claim_for(&state.api.store, &caller, mac, ext, model).await,
        Err(e) => Err(ApiError::BadRequest(e.to_string())),
    };
    match result {
        Ok(view) => Ok(Redirect::to(&format!("/admin/handsets/{}?done=claimed", view.handset.extensionnumber)).into_response()),
        Err(e @ (ApiError::BadRequest(_) | ApiError::Conflict(_) | ApiError::NotFound(_))) => {
            let why = match &e {
                ApiError::NotFound("Handset not found") => {
                    format!("Extension {ext} does not exist; create it first, or let claims create handsets (Domain page).")
                }
                other => other.to_string(),
            };
            page(&state, &posted.session, Some(why), false, e.status()).await
        }
        Err(e) => Err(e.into()),
    }
}
