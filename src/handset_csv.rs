//! Handsets as CSV, for installers: a whole site in one file. The header
//! names the API's fields in any order; every row is parsed and validated
//! here (with its line number), then checked against the database by
//! `service::import`. Export writes the same format, so export → import →
//! export gives the same bytes. The command line, the API and the web UI
//! all read and write CSV through this module.

use std::collections::HashMap;

use crate::model::{HandsetField, HandsetInput, Mac, NewHandset};
use crate::service::import::{Row, RowError};

/// The columns, in export order: the extension, then every handset field
/// but the extra settings.
pub static COLUMNS: std::sync::LazyLock<Vec<&'static str>> = std::sync::LazyLock::new(|| {
    std::iter::once("extensionnumber")
        .chain(HandsetField::ALL.into_iter().filter(|f| *f != HandsetField::Settings).map(HandsetField::name))
        .collect()
});

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

/// A row as the handset input every front end reads: empty cells of
/// `password` and `recording` are not given (a generated password, false);
/// an empty `mac` or `model` clears it.
fn parse_row(columns: &[String], record: &csv::ByteRecord) -> Result<NewHandset, String> {
    let mut object = serde_json::Map::new();
    for (name, raw) in columns.iter().zip(record.iter()) {
        let value = std::str::from_utf8(raw).map_err(|_| format!("{name}: not UTF-8"))?;
        if value.is_empty() && (name == "password" || name == "recording") {
            continue;
        }
        object.insert(name.clone(), serde_json::Value::String(value.to_string()));
    }
    if object.get("extensionnumber").and_then(|v| v.as_str()).is_none_or(str::is_empty) {
        return Err("extensionnumber: is missing".into());
    }
    let input = HandsetInput::from_object(object).map_err(|e| e.to_string())?;
    input.into_new().map_err(|e| e.to_string())
}

/// Writes handsets in the export format.
pub fn write(handsets: &[crate::model::Handset]) -> Result<Vec<u8>, csv::Error> {
    let mut w = csv::WriterBuilder::new().from_writer(Vec::new());
    w.write_record(COLUMNS.iter())?;
    for h in handsets {
        let fields = HandsetField::ALL.into_iter().filter(|f| *f != HandsetField::Settings).map(|f| h.text(f));
        w.write_record(std::iter::once(h.extensionnumber.clone()).chain(fields))?;
    }
    w.into_inner().map_err(|e| csv::Error::from(e.into_error()))
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
