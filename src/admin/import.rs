//! CSV import from the browser: upload a site's file, see every refused row
//! with its line (nothing written), or what was written. The same check and
//! the same single transaction as `autoprov import` and the API.

use askama::Template;
use axum::extract::{Multipart, State};
use axum::http::{HeaderMap, StatusCode};

use super::error::html;
use super::form::{check_csrf, Fields};
use super::nav::Nav;
use super::session::Session;
use super::{AdminState, PageResult};
use crate::api::ApiError;
use crate::service::import::MAX_CSV_BYTES as MAX_CSV_BODY;
use crate::service::import::{ImportMode, ImportOutcome, RowError};
use crate::store::handsets::ImportReport;

/// The upload: the CSV's limit and room for the form's other fields.
pub const MAX_UPLOAD: usize = MAX_CSV_BODY + 64 * 1024;

#[derive(Template)]
#[template(path = "admin/import.html")]
struct ImportPage {
    nav: Nav,
    file: String,
    errors: Vec<RowError>,
    /// Rows checked by a dry run.
    checked: Option<usize>,
    report: Option<ImportReport>,
}

pub async fn page(State(state): State<AdminState>, session: Session) -> PageResult {
    let nav = Nav::new(&state, &session, "import").await?;
    Ok(html(StatusCode::OK, &ImportPage { nav, file: String::new(), errors: Vec::new(), checked: None, report: None }))
}

pub async fn upload(State(state): State<AdminState>, session: Session, headers: HeaderMap, multipart: Multipart) -> PageResult {
    let (fields, file, bytes) = read_upload(multipart).await?;
    check_csrf(&session, &headers, fields.get("csrf"))?;
    let caller = session.caller();
    caller.require_write().map_err(ApiError::from)?;
    let nav = Nav::new(&state, &session, "import").await?;
    let mut page = ImportPage { nav, file, errors: Vec::new(), checked: None, report: None };
    let mode = ImportMode { dry_run: fields.ticked("dryrun"), update: fields.ticked("update") };
    let outcome = state.api.service.import(&caller, crate::handset_csv::parse(&bytes), mode, &|_| {}).await;
    let status = match outcome.map_err(ApiError::from)? {
        ImportOutcome::Refused(errors) => {
            page.errors = errors;
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

/// The form's text fields, the file's name, and its bytes.
async fn read_upload(mut multipart: Multipart) -> Result<(Fields, String, Vec<u8>), super::PageError> {
    let bad = |e: axum::extract::multipart::MultipartError| -> super::PageError {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(MAX_CSV_BODY).into()
        } else {
            ApiError::BadRequest(format!("Bad upload: {}", e.body_text())).into()
        }
    };
    let (mut fields, mut file, mut bytes) = (Fields::default(), String::new(), None);
    while let Some(field) = multipart.next_field().await.map_err(bad)? {
        let name = field.name().unwrap_or("").to_string();
        if name == "file" {
            file = field.file_name().unwrap_or("").to_string();
            bytes = Some(field.bytes().await.map_err(bad)?.to_vec());
        } else {
            let text = field.text().await.map_err(bad)?;
            fields.insert(&name, text);
        }
    }
    let bytes = bytes.filter(|b| !b.is_empty()).ok_or(ApiError::BadRequest("Choose a CSV file to upload".into()))?;
    Ok((fields, file, bytes))
}
