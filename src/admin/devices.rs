//! Unknown phones: MACs that asked for a file no handset has, for
//! installers to claim in one step. As in the API, superusers see them all;
//! everyone else those last seen from the domain's site networks (an
//! unknown phone belongs to no tenant yet). A phone can also be claimed by
//! the MAC on its label.

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
use crate::api::ApiError;
use crate::model::domain::site_networks_text;
use crate::model::Device;
use crate::model::Mac;
use crate::store::devices::DeviceScope;

/// The most unknown phones one page lists.
const PAGE: i64 = 200;

#[derive(Template)]
#[template(path = "admin/devices.html")]
struct DevicesPage {
    nav: Nav,
    error: Option<String>,
    devices: Vec<(String, Device)>,
    /// The site networks the list is limited to (`None`: a superuser sees all).
    networks: Option<String>,
    refresh: bool,
    models: std::sync::Arc<[String]>,
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
    let scope = state.api.service.unknown_scope(&session.caller()).await.map_err(ApiError::from)?;
    let networks = match &scope {
        DeviceScope::UnknownFor { networks, .. } => Some(site_networks_text(networks)),
        _ => None,
    };
    let rows = state.api.store.list_devices(scope, None, PAGE).await?;
    let devices = rows.into_iter().map(|d| (super::when(d.lastseen), d)).collect();
    let page = DevicesPage { nav, error, devices, networks, refresh, models: state.models() };
    Ok(html(status, &page))
}

pub async fn claim(State(state): State<AdminState>, posted: Posted) -> PageResult {
    let caller = posted.session.caller();
    let f = &posted.fields;
    let ext = f.get("extensionnumber").trim();
    let model = Some(f.get("model").trim().to_string()).filter(|m| !m.is_empty());
    let result = match f.get("mac").trim().parse::<Mac>() {
        Ok(mac) => state.api.service.claim(&caller, mac, ext, model).await.map_err(ApiError::from),
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
