//! Handsets as CSV, for installers: a whole site in one file. The header
//! names the API's fields in any order; every row is validated (with its
//! line number) before anything is written, and export writes the same
//! format, so export → import → export gives the same bytes.

use std::collections::{HashMap, HashSet};

use crate::model::handset::parse_bool;
use crate::model::{validate_extension, HandsetChanges, Mac, NewHandset, Secret};

/// The columns, in export order.
pub const COLUMNS: &[&str] =
    &["extensionnumber", "name", "password", "location", "outgoingcli", "recording", "notes", "mac", "model"];

/// One refused row.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RowError {
    pub line: u64,
    pub error: String,
    /// The row names a MAC in use in another domain (such answers are
    /// rate-limited: see `api::mac_probes`).
    #[serde(skip)]
    pub foreign_mac: bool,
}

impl RowError {
    pub fn new(line: u64, error: impl Into<String>) -> Self {
        RowError { line, error: error.into(), foreign_mac: false }
    }
}

/// A parsed, validated row.
#[derive(Clone, Debug)]
pub struct Row {
    pub line: u64,
    pub handset: NewHandset,
}

/// Parses and validates a CSV file on its own (duplicates inside the file
/// included): the good rows, and an error for every other one.
pub fn parse(bytes: &[u8]) -> (Vec<Row>, Vec<RowError>) {
    let mut reader = csv::ReaderBuilder::new().has_headers(true).flexible(false).from_reader(bytes);
    let headers = match reader.byte_headers() {
        Ok(h) => h.clone(),
        Err(e) => return (Vec::new(), vec![RowError::new(1, format!("cannot read the header: {e}"))]),
    };
    let mut columns = Vec::new();
    let mut errors = Vec::new();
    for h in headers.iter() {
        match std::str::from_utf8(h).map(|s| s.trim().to_ascii_lowercase()) {
            Ok(name) if COLUMNS.contains(&name.as_str()) && !columns.contains(&name) => columns.push(name),
            Ok(name) if COLUMNS.contains(&name.as_str()) => errors.push(RowError::new(1, format!("column {name} appears twice"))),
            Ok(name) => errors.push(RowError::new(1, format!("unknown column {name:?}; the columns are {}", COLUMNS.join(",")))),
            Err(_) => errors.push(RowError::new(1, "the header is not UTF-8")),
        }
    }
    if !columns.iter().any(|c| c == "extensionnumber") {
        errors.push(RowError::new(1, "the extensionnumber column is required"));
    }
    if !errors.is_empty() {
        return (Vec::new(), errors);
    }
    let mut rows = Vec::new();
    let mut seen_ext: HashMap<String, u64> = HashMap::new();
    let mut seen_mac: HashMap<Mac, u64> = HashMap::new();
    for record in reader.byte_records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                errors.push(RowError::new(line, format!("unreadable row: {e}")));
                continue;
            }
        };
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        match parse_row(&columns, &record) {
            Ok(h) => {
                if let Some(first) = seen_ext.insert(h.extensionnumber.clone(), line) {
                    errors.push(RowError::new(line, format!("extension {} is also on line {first}", h.extensionnumber)));
                    continue;
                }
                if let Some(Some(mac)) = h.fields.mac {
                    if let Some(first) = seen_mac.insert(mac, line) {
                        errors.push(RowError::new(line, format!("MAC {mac} is also on line {first}")));
                        continue;
                    }
                }
                rows.push(Row { line, handset: h });
            }
            Err(error) => errors.push(RowError::new(line, error)),
        }
    }
    (rows, errors)
}

fn parse_row(columns: &[String], record: &csv::ByteRecord) -> Result<NewHandset, String> {
    let mut ext = None;
    let mut f = HandsetChanges::default();
    for (name, raw) in columns.iter().zip(record.iter()) {
        let value = std::str::from_utf8(raw).map_err(|_| format!("{name}: not UTF-8"))?.to_string();
        match name.as_str() {
            "extensionnumber" => ext = Some(value),
            "name" => f.name = Some(value),
            "password" if value.is_empty() => {}
            "password" => f.password = Some(Secret::new(value)),
            "location" => f.location = Some(value),
            "outgoingcli" => f.outgoingcli = Some(value),
            "recording" if value.is_empty() => {}
            "recording" => {
                f.recording = Some(parse_bool("recording", &serde_json::Value::String(value)).map_err(|e| e.to_string())?)
            }
            "notes" => f.notes = Some(value),
            "mac" if value.is_empty() => f.mac = Some(None),
            "mac" => f.mac = Some(Some(value.parse::<Mac>().map_err(|e| e.to_string())?)),
            "model" => f.model = Some(Some(value).filter(|v| !v.is_empty())),
            _ => {}
        }
    }
    let ext = ext.filter(|e| !e.is_empty()).ok_or("extensionnumber: is missing")?;
    validate_extension(&ext).map_err(|e| e.to_string())?;
    f.validate().map_err(|e| e.to_string())?;
    Ok(NewHandset { extensionnumber: ext, fields: f })
}

/// Writes handsets in the export format.
pub fn write(handsets: &[crate::model::Handset]) -> Result<Vec<u8>, csv::Error> {
    let mut w = csv::WriterBuilder::new().from_writer(Vec::new());
    w.write_record(COLUMNS)?;
    for h in handsets {
        w.write_record([
            h.extensionnumber.as_str(),
            &h.name,
            h.password.expose(),
            &h.location,
            &h.outgoingcli,
            if h.recording { "true" } else { "false" },
            &h.notes,
            &h.mac.map(|m| m.lower()).unwrap_or_default(),
            h.model.as_deref().unwrap_or(""),
        ])?;
    }
    w.into_inner().map_err(|e| csv::Error::from(e.into_error()))
}

/// A file every row of which may be written into a domain.
pub struct CheckedImport {
    pub rows: Vec<NewHandset>,
    /// The domain's extensions at check time: rows naming one update it.
    pub existing: HashSet<String>,
}

/// Parses `bytes` and checks every row against the domain's handsets: the
/// one check the CLI, the API and the web UI run before writing anything.
pub async fn check(
    store: &crate::store::Store,
    domain_id: i64,
    bytes: &[u8],
    update: bool,
) -> crate::store::Result<Result<CheckedImport, Vec<RowError>>> {
    // Rows that parsed are checked against the database even when others
    // did not, so that one upload reports every problem of the file.
    let (rows, mut errors) = parse(bytes);
    let (existing, macs) = store.import_context(domain_id).await?;
    errors.extend(check_against(&rows, &existing, &macs, domain_id, update));
    if !errors.is_empty() {
        errors.sort_by_key(|e| e.line);
        return Ok(Err(errors));
    }
    Ok(Ok(CheckedImport { rows: rows.into_iter().map(|r| r.handset).collect(), existing }))
}

/// Which rows of a file are new and which change existing handsets, given
/// the domain's extensions and every MAC in use; errors for rows that may
/// not be written (an existing extension without `update`, a MAC another
/// handset has).
pub fn check_against(
    rows: &[Row],
    existing: &HashSet<String>,
    macs: &HashMap<Mac, (i64, String)>,
    domain_id: i64,
    update: bool,
) -> Vec<RowError> {
    let mut errors = Vec::new();
    for r in rows {
        let ext = &r.handset.extensionnumber;
        if existing.contains(ext) && !update {
            errors.push(RowError::new(r.line, format!("extension {ext} exists already (import with update to change it)")));
        }
        if let Some(Some(mac)) = r.handset.fields.mac {
            if let Some((d, owner)) = macs.get(&mac) {
                if *d != domain_id || owner != ext {
                    errors.push(RowError {
                        line: r.line,
                        error: format!("MAC {mac} already in use"),
                        foreign_mac: *d != domain_id,
                    });
                }
            }
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bad_row_kind_is_reported_with_its_line() {
        let csv = b"mac,extensionnumber,recording,name\n\
            001565000001,100,true,A\n\
            bad-mac,101,false,B\n\
            001565000003,,false,C\n\
            001565000004,104,perhaps,D\n\
            001565000001,105,true,E\n\
            001565000006,100,true,F\n\
            001565000007,107,true,\xff\xfe\n\
            001565000008,108,true,ok\n";
        let errors = parse(csv).1;
        let lines: Vec<u64> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [3, 4, 5, 6, 7, 8], "{errors:?}");
        assert!(errors[0].error.contains("MAC") && errors[1].error.contains("extensionnumber"));
        assert!(errors[2].error.contains("recording") && errors[3].error.contains("line 2"));
        assert!(errors[4].error.contains("line 2") && errors[5].error.contains("UTF-8"), "{errors:?}");
    }

    #[test]
    fn headers_are_checked() {
        assert!(parse(b"extensionnumber,colour\n1,red\n").1[0].error.contains("colour"));
        assert!(parse(b"name\nA\n").1[0].error.contains("required"));
        let (rows, errors) = parse(b"Name, ExtensionNumber\nA,100\n");
        assert_eq!((rows.len(), errors.len()), (1, 0));
    }
}
