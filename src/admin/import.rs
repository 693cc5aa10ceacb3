//! CSV import from the browser: upload a site's file, see every refused row
//! with its line (nothing written), or what was written. The same check and
//! the same single transaction as `autoprov import` and the API.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Multipart, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};

use super::error::html;
use super::form::{check_csrf, Fields};
use super::nav::Nav;
use super::session::Session;
use super::{AdminState, PageResult};
use crate::api::ApiError;
use crate::handset_csv::{CsvFile, Spool, SpoolError};
use crate::service::import::MAX_CSV_BYTES as MAX_CSV_BODY;
use crate::service::import::{ImportMode, ImportOutcome, Refused, IMPORTS_BUSY};
use crate::service::ServiceError;
use crate::store::handsets::ImportReport;

/// The upload: the CSV's limit and room for the form's other fields.
pub const MAX_UPLOAD: usize = MAX_CSV_BODY + 64 * 1024;

#[derive(Template)]
#[template(path = "admin/import.html")]
struct ImportPage {
    nav: Nav,
    file: String,
    /// The refused rows (the first 1000) and how many there were.
    refused: Refused,
    /// Rows checked by a dry run.
    checked: Option<usize>,
    report: Option<ImportReport>,
    /// Refused for now: too many imports wait.
    busy: Option<&'static str>,
}

pub async fn page(State(state): State<AdminState>, session: Session) -> PageResult {
    let nav = Nav::new(&state, &session, "import").await?;
    let page = ImportPage { nav, file: String::new(), refused: Refused::default(), checked: None, report: None, busy: None };
    Ok(html(StatusCode::OK, &page))
}

pub async fn upload(State(state): State<AdminState>, session: Session, headers: HeaderMap, multipart: Multipart) -> PageResult {
    let caller = session.caller();
    caller.require_write().map_err(ApiError::from)?;
    let nav = Nav::new(&state, &session, "import").await?;
    let mut page = ImportPage { nav, file: String::new(), refused: Refused::default(), checked: None, report: None, busy: None };
    // A place in the import queue before the file is read (as the API).
    let ticket = match state.api.service.queue_import(&caller) {
        Ok(ticket) => ticket,
        Err(ServiceError::ImportsBusy(retry)) => {
            page.busy = Some(IMPORTS_BUSY);
            let mut response = html(StatusCode::SERVICE_UNAVAILABLE, &page);
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry.as_secs().max(1)));
            return Ok(response);
        }
        Err(e) => return Err(ApiError::from(e).into()),
    };
    let (fields, file, csv) = read_upload(&state.api.spool_dir, &session, &headers, multipart).await?;
    check_csrf(&session, &headers, fields.get("csrf"))?;
    page.file = file;
    let mode = ImportMode { dry_run: fields.ticked("dryrun"), update: fields.ticked("update") };
    let outcome = state.api.service.import(&caller, ticket, Arc::new(csv), mode, &|_, _| {}).await;
    let status = match outcome.map_err(ApiError::from)? {
        ImportOutcome::Refused(refused) => {
            page.refused = refused;
            StatusCode::BAD_REQUEST
        }
        ImportOutcome::Checked(rows) => {
            page.checked = Some(rows);
            StatusCode::OK
        }
        ImportOutcome::Written(report) => {
            page.report = Some(report);
            StatusCode::OK
        }
    };
    Ok(html(status, &page))
}

/// The form's text fields, the file's name, and the file, spooled to disk
/// as it arrives. The CSRF token is checked before the file is read when
/// the form sends it first (browsers send fields in the form's order).
async fn read_upload(
    spool_dir: &std::path::Path,
    session: &Session,
    headers: &HeaderMap,
    mut multipart: Multipart,
) -> Result<(Fields, String, CsvFile), super::PageError> {
    let bad = |e: axum::extract::multipart::MultipartError| -> super::PageError {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(MAX_CSV_BODY).into()
        } else if crate::api::body::timed_out(&e) {
            crate::api::body::read_error(&e).into()
        } else {
            ApiError::BadRequest(format!("Bad upload: {}", e.body_text())).into()
        }
    };
    let (mut fields, mut file, mut csv) = (Fields::default(), String::new(), None);
    while let Some(mut field) = multipart.next_field().await.map_err(bad)? {
        let name = field.name().unwrap_or("").to_string();
        if name == "file" {
            if !fields.get("csrf").is_empty() {
                check_csrf(session, headers, fields.get("csrf"))?;
            }
            file = field.file_name().unwrap_or("").to_string();
            let mut spool = Spool::create(spool_dir, MAX_CSV_BODY)?;
            while let Some(chunk) = field.chunk().await.map_err(bad)? {
                spool.write(&chunk).await.map_err(|e| match e {
                    SpoolError::TooLarge(limit) => ApiError::PayloadTooLarge(limit),
                    other => other.into(),
                })?;
            }
            csv = (!spool.is_empty()).then_some(spool);
        } else {
            let text = field.text().await.map_err(bad)?;
            fields.insert(&name, text);
        }
    }
    let spool = csv.ok_or(ApiError::BadRequest("Choose a CSV file to upload".into()))?;
    Ok((fields, file, spool.finish().await?))
}
