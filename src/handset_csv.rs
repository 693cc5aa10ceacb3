//! Handsets as CSV, for installers: a whole site in one file. The header
//! names the API's fields in any order; every row is parsed and validated
//! here on its own (with its line number), as a stream: the import
//! (`service::import`) reads a file twice, to check it and to write it,
//! and holds no row longer than it takes. Export writes the same format,
//! so export → import → export gives the same bytes. The command line, the
//! API and the web UI all read and write CSV through this module; uploads
//! are spooled to a private file first ([`Spool`]).
//!
//! # Cells a spreadsheet would evaluate
//!
//! Installers open exports in spreadsheets, and a cell starting with `=`,
//! `+`, `-` or `@` (or a tab or carriage return) is a formula there
//! (OWASP "CSV Injection"): a display name `=HYPERLINK(…)` next to the
//! password column must not become a live link. Export therefore adds one
//! `'` (which spreadsheets show as "this is text") to every cell matching
//! `^'*[=+\-@\t\r]`, and import removes one `'` from every cell matching
//! `^'+[=+\-@\t\r]`. The rule is reversible for every value: a value that
//! really starts with quotes before such a character (`'=x`) gets one more
//! on export (`''=x`) and loses exactly that one on import, and a value
//! with quotes before anything else (`'quoted`) is never touched. It
//! applies to every cell alike; the header is fixed and never needs it.

use std::io::Read;
use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt;

use crate::model::{HandsetField, HandsetInput, NewHandset};
use crate::service::import::{Row, RowError, RowSource};

/// The columns, in export order: the extension, then every handset field
/// but the extra settings.
pub static COLUMNS: std::sync::LazyLock<Vec<&'static str>> = std::sync::LazyLock::new(|| {
    std::iter::once("extensionnumber")
        .chain(HandsetField::ALL.into_iter().filter(|f| *f != HandsetField::Settings).map(HandsetField::name))
        .collect()
});

/// A CSV file of handsets on disk, as the import reads it (from the start,
/// as often as it needs). A spooled upload is removed when this is dropped.
pub struct CsvFile {
    path: PathBuf,
    _spooled: Option<tempfile::TempPath>,
}

impl CsvFile {
    /// A file of the operator's (the command line's), left in place.
    pub fn at(path: &Path) -> Self {
        CsvFile { path: path.to_path_buf(), _spooled: None }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl RowSource for CsvFile {
    fn rows(&self) -> std::io::Result<Box<dyn Iterator<Item = std::io::Result<Result<Row, RowError>>> + Send>> {
        Ok(Box::new(rows(std::fs::File::open(&self.path)?)))
    }
}

/// Every row of a CSV file in line order, parsed and validated on its own:
/// a [`Row`], or why not (the header's problems first, and then nothing
/// else). An `Err` is a failure to read, and the last item.
pub fn rows<R: Read>(reader: R) -> Rows<R> {
    let reader = csv::ReaderBuilder::new().has_headers(true).flexible(false).buffer_capacity(64 * 1024).from_reader(reader);
    Rows { reader, columns: Vec::new(), record: csv::ByteRecord::new(), header_errors: Vec::new(), state: State::Header }
}

/// See [`rows`].
pub struct Rows<R> {
    reader: csv::Reader<R>,
    columns: Vec<String>,
    /// Reused for every row.
    record: csv::ByteRecord,
    /// The header's problems, yielded last first.
    header_errors: Vec<RowError>,
    state: State,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Header,
    Rows,
    Done,
}

impl<R: Read> Rows<R> {
    /// Reads the header: the columns, or its problems.
    fn header(&mut self) -> std::io::Result<()> {
        let headers = match self.reader.byte_headers() {
            Ok(h) => h.clone(),
            Err(e) if e.is_io_error() => return Err(into_io(e)),
            Err(e) => {
                self.header_errors.push(RowError::new(1, format!("cannot read the header: {e}")));
                return Ok(());
            }
        };
        let mut errors = Vec::new();
        for h in headers.iter() {
            match std::str::from_utf8(h).map(|s| s.trim().to_ascii_lowercase()) {
                Ok(name) if COLUMNS.contains(&name.as_str()) && !self.columns.contains(&name) => self.columns.push(name),
                Ok(name) if COLUMNS.contains(&name.as_str()) => {
                    errors.push(RowError::new(1, format!("column {name} appears twice")))
                }
                Ok(name) => {
                    errors.push(RowError::new(1, format!("unknown column {name:?}; the columns are {}", COLUMNS.join(","))))
                }
                Err(_) => errors.push(RowError::new(1, "the header is not UTF-8")),
            }
        }
        if !self.columns.iter().any(|c| c == "extensionnumber") {
            errors.push(RowError::new(1, "the extensionnumber column is required"));
        }
        errors.reverse();
        self.header_errors = errors;
        Ok(())
    }
}

impl<R: Read> Iterator for Rows<R> {
    type Item = std::io::Result<Result<Row, RowError>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.state == State::Header {
            if let Err(e) = self.header() {
                self.state = State::Done;
                return Some(Err(e));
            }
            self.state = if self.header_errors.is_empty() { State::Rows } else { State::Done };
        }
        if let Some(e) = self.header_errors.pop() {
            return Some(Ok(Err(e)));
        }
        if self.state == State::Done {
            return None;
        }
        match self.reader.read_byte_record(&mut self.record) {
            Ok(false) => {
                self.state = State::Done;
                None
            }
            Ok(true) => {
                let line = self.record.position().map(|p| p.line()).unwrap_or(0);
                let row = parse_row(&self.columns, &self.record).map(|handset| Row { line, handset });
                Some(Ok(row.map_err(|error| RowError::new(line, error))))
            }
            Err(e) if e.is_io_error() => {
                self.state = State::Done;
                Some(Err(into_io(e)))
            }
            Err(e) => {
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                Some(Ok(Err(RowError::new(line, format!("unreadable row: {e}")))))
            }
        }
    }
}

fn into_io(e: csv::Error) -> std::io::Error {
    match e.into_kind() {
        csv::ErrorKind::Io(e) => e,
        other => std::io::Error::other(format!("{other:?}")),
    }
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
        object.insert(name.clone(), serde_json::Value::String(unquote_formula(value).to_string()));
    }
    if object.get("extensionnumber").and_then(|v| v.as_str()).is_none_or(str::is_empty) {
        return Err("extensionnumber: is missing".into());
    }
    let input = HandsetInput::from_object(object).map_err(|e| e.to_string())?;
    input.into_new().map_err(|e| e.to_string())
}

/// Whether a spreadsheet would evaluate a cell starting with `b`.
fn starts_formula(s: &str) -> bool {
    s.bytes().next().is_some_and(|b| matches!(b, b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r'))
}

/// Export: one more `'` before a cell matching `^'*[=+\-@\t\r]`.
fn quote_formula(cell: &str) -> std::borrow::Cow<'_, str> {
    if starts_formula(cell.trim_start_matches('\'')) {
        format!("'{cell}").into()
    } else {
        cell.into()
    }
}

/// Import: one `'` fewer on a cell matching `^'+[=+\-@\t\r]`.
fn unquote_formula(cell: &str) -> &str {
    match cell.strip_prefix('\'') {
        Some(rest) if starts_formula(rest.trim_start_matches('\'')) => rest,
        _ => cell,
    }
}

/// Writes handsets in the export format, formula cells quoted.
pub fn write(handsets: &[crate::model::Handset]) -> Result<Vec<u8>, csv::Error> {
    let mut w = csv::WriterBuilder::new().from_writer(Vec::new());
    w.write_record(COLUMNS.iter())?;
    for h in handsets {
        let fields = HandsetField::ALL.into_iter().filter(|f| *f != HandsetField::Settings).map(|f| h.text(f));
        let cells: Vec<String> = std::iter::once(h.extensionnumber.clone()).chain(fields).collect();
        w.write_record(cells.iter().map(|c| quote_formula(c).into_owned()))?;
    }
    w.into_inner().map_err(|e| csv::Error::from(e.into_error()))
}

/// An upload on its way to disk: a file of the server's own, created 0600
/// (rows carry SIP passwords) in the spool directory, taking at most
/// `limit` bytes, and removed when dropped (an upload refused, failed or
/// abandoned) or, once [`Spool::finish`]ed, when its [`CsvFile`] is.
pub struct Spool {
    file: tokio::io::BufWriter<tokio::fs::File>,
    path: tempfile::TempPath,
    len: usize,
    limit: usize,
}

/// Why an upload could not be spooled.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("the file is larger than {0} bytes")]
    TooLarge(usize),
    #[error("cannot spool the upload: {0}")]
    Io(#[from] std::io::Error),
}

/// The spooled files' names: `import-XXXXXX.csv` (see [`clear_spool`]).
const SPOOL_PREFIX: &str = "import-";

impl Spool {
    pub fn create(dir: &Path, limit: usize) -> Result<Spool, SpoolError> {
        let mut builder = tempfile::Builder::new();
        builder.prefix(SPOOL_PREFIX).suffix(".csv");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(std::fs::Permissions::from_mode(0o600));
        }
        let (file, path) = builder.tempfile_in(dir)?.into_parts();
        let file = tokio::io::BufWriter::with_capacity(64 * 1024, tokio::fs::File::from_std(file));
        Ok(Spool { file, path, len: 0, limit })
    }

    /// Appends `data`; beyond the limit nothing more is written.
    pub async fn write(&mut self, data: &[u8]) -> Result<(), SpoolError> {
        self.len = self.len.saturating_add(data.len());
        if self.len > self.limit {
            return Err(SpoolError::TooLarge(self.limit));
        }
        Ok(self.file.write_all(data).await?)
    }

    /// Bytes received so far.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The whole upload, on disk.
    pub async fn finish(mut self) -> Result<CsvFile, SpoolError> {
        // Into the page cache is enough: the import reads it back here.
        self.file.flush().await?;
        Ok(CsvFile { path: self.path.to_path_buf(), _spooled: Some(self.path) })
    }
}

/// Makes the spool directory (0700) and removes what a previous run left
/// in it (a crash leaves its uploads behind): a data directory is one
/// server's.
pub fn clear_spool(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with(SPOOL_PREFIX) {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &'static [u8]) -> (Vec<Row>, Vec<RowError>) {
        let (mut good, mut bad) = (Vec::new(), Vec::new());
        for item in rows(bytes) {
            match item.unwrap() {
                Ok(row) => good.push(row),
                Err(e) => bad.push(e),
            }
        }
        (good, bad)
    }

    #[test]
    fn every_bad_row_kind_is_reported_with_its_line() {
        let csv = b"mac,extensionnumber,recording,name\n\
            001565000001,100,true,A\n\
            bad-mac,101,false,B\n\
            001565000003,,false,C\n\
            001565000004,104,perhaps,D\n\
            001565000005,105,true\n\
            001565000007,107,true,\xff\xfe\n\
            001565000008,108,true,ok\n";
        let (good, errors) = parse(csv);
        let lines: Vec<u64> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [3, 4, 5, 6, 7], "{errors:?}");
        assert!(errors[0].error.contains("MAC") && errors[1].error.contains("extensionnumber"));
        assert!(errors[2].error.contains("recording") && errors[3].error.contains("unreadable"), "{errors:?}");
        assert!(errors[4].error.contains("UTF-8"), "{errors:?}");
        let good: Vec<(u64, &str)> = good.iter().map(|r| (r.line, r.handset.extensionnumber.as_str())).collect();
        assert_eq!(good, [(2, "100"), (8, "108")]);
    }

    #[test]
    fn headers_are_checked() {
        assert!(parse(b"extensionnumber,colour\n1,red\n").1[0].error.contains("colour"));
        assert!(parse(b"name\nA\n").1[0].error.contains("required"));
        let (good, errors) = parse(b"name,colour,name\nA,red,B\n");
        assert!(good.is_empty());
        let errors: Vec<&str> = errors.iter().map(|e| e.error.as_str()).collect();
        assert!(errors[0].contains("colour") && errors[1].contains("twice") && errors[2].contains("required"), "{errors:?}");
        let (good, errors) = parse(b"Name, ExtensionNumber\nA,100\n");
        assert_eq!((good.len(), errors.len()), (1, 0));
    }

    #[test]
    fn formula_quotes_undo_exactly() {
        for value in [
            "=HYPERLINK(\"http://x\",\"y\")",
            "+1",
            "-",
            "@SUM(A1)",
            "\tx",
            "\rx",
            "'=x",
            "''+y",
            "'quoted",
            "''",
            "'",
            "plain",
            "",
            "a=b",
        ] {
            let exported = quote_formula(value);
            assert_eq!(unquote_formula(&exported), value, "{value:?} → {exported:?}");
            let evaluated = starts_formula(&exported);
            assert!(!evaluated, "{value:?} exported as {exported:?} would be evaluated");
        }
        assert_eq!(quote_formula("=1"), "'=1");
        assert_eq!(quote_formula("'=1"), "''=1");
        assert_eq!(quote_formula("'quoted"), "'quoted");
        assert_eq!(unquote_formula("'quoted"), "'quoted", "a quote before anything else is the value's own");
        assert_eq!(unquote_formula("'-5"), "-5");
    }

    #[tokio::test]
    async fn a_spool_is_private_bounded_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::create(dir.path(), 10).unwrap();
        let path = spool.path.to_path_buf();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        spool.write(b"extension").await.unwrap();
        assert!(matches!(spool.write(b"number").await, Err(SpoolError::TooLarge(10))));
        drop(spool);
        assert!(!path.exists(), "a refused upload is removed");

        let mut spool = Spool::create(dir.path(), 100).unwrap();
        spool.write(b"extensionnumber\n100\n").await.unwrap();
        let file = spool.finish().await.unwrap();
        let path = file.path().to_path_buf();
        let read: Vec<_> = file.rows().unwrap().map(|r| r.unwrap().unwrap().handset.extensionnumber).collect();
        assert_eq!(read, ["100"]);
        drop(file);
        assert!(!path.exists(), "a spooled file is removed with its CsvFile");

        std::fs::write(dir.path().join("import-left.csv"), "x").unwrap();
        std::fs::write(dir.path().join("other"), "x").unwrap();
        clear_spool(dir.path()).unwrap();
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, ["other"]);
    }
}
