//! Importing a site: every row of a file checked against the file's other
//! rows and the domain's handsets before anything is written, then all of
//! it written in one transaction. The one import the command line, the API
//! and the web UI run (each gives it a file `handset_csv` reads).
//!
//! A file may be a whole site (32 MiB, 262,144 rows), so nothing is held
//! per row but what finding duplicates inside the file needs (each
//! extension and MAC with its line), and the file is read twice: pass 1
//! parses, validates and checks each row (against the database a batch of
//! rows at a time), and a dry run ends there; pass 2 reads it again and
//! writes it. Refused rows are reported in line order, at most
//! [`MAX_LISTED_ERRORS`] of them with the count of all.
//!
//! Imports take turns ([`super::import_queue`]): at most a few at once, one
//! at a time per domain.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::import_queue::Ticket;
use super::{Result, Service, ServiceError};
use crate::auth::Caller;
use crate::model::Mac;
use crate::store::handsets::{ImportReport, IMPORT_LOOKUP_MAX};

/// The largest CSV file taken at once over HTTP (a whole site); the command
/// line reads any size.
pub const MAX_CSV_BYTES: usize = 32 * 1024 * 1024;

/// Refused rows listed in an answer; the rest are counted.
pub const MAX_LISTED_ERRORS: usize = 1000;

/// What a client refused for a full import queue is told.
pub const IMPORTS_BUSY: &str = "Too many imports are waiting; try again in a few seconds";

/// Rows read, checked against the database and written per batch.
const BATCH: usize = 500;
const _: () = assert!(BATCH <= IMPORT_LOOKUP_MAX);

/// A parsed, validated row.
#[derive(Clone, Debug)]
pub struct Row {
    pub line: u64,
    pub handset: crate::model::NewHandset,
}

/// One refused row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowError {
    pub line: u64,
    pub error: String,
    /// The row names a MAC in use in another domain (such answers are
    /// rate-limited: see `mac_probes`).
    pub foreign_mac: bool,
}

impl RowError {
    pub fn new(line: u64, error: impl Into<String>) -> Self {
        RowError { line, error: error.into(), foreign_mac: false }
    }
}

/// A file of rows that can be read from the start more than once (to
/// check it, then to write it): `handset_csv::CsvFile`.
pub trait RowSource: Send + Sync + 'static {
    /// Every row in line order, each parsed and validated on its own, or
    /// why not; an `Err` item is a failure to read the file, and the last.
    #[allow(clippy::type_complexity)]
    fn rows(&self) -> std::io::Result<Box<dyn Iterator<Item = std::io::Result<Result<Row, RowError>>> + Send>>;
}

/// What to do with a file.
#[derive(Clone, Copy, Debug, Default)]
pub struct ImportMode {
    /// Check only, write nothing.
    pub dry_run: bool,
    /// Rows naming existing extensions update them (else they are refused).
    pub update: bool,
}

/// The refused rows of a file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Refused {
    /// The first [`MAX_LISTED_ERRORS`], in line order.
    pub errors: Vec<RowError>,
    /// All of them.
    pub total: usize,
}

impl Refused {
    /// Refused rows beyond those listed.
    pub fn unlisted(&self) -> usize {
        self.total - self.errors.len()
    }
}

/// What an import came to.
#[derive(Debug)]
pub enum ImportOutcome {
    /// Nothing was written.
    Refused(Refused),
    /// A dry run: this many rows would be written.
    Checked(usize),
    Written(ImportReport),
}

/// `progress(done, total)`: rows written, every 1000 and at the end.
pub type Progress<'a> = &'a (dyn Fn(usize, usize) + Sync);

impl Service {
    /// A place in the import queue for the caller's domain, taken before
    /// the file is read (so a refusal costs the client no upload): 403
    /// without the right to write, 503 when too many imports wait.
    pub fn queue_import(&self, caller: &Caller) -> Result<Ticket> {
        caller.require_write()?;
        self.imports.admit(caller.domain_id).ok_or(ServiceError::ImportsBusy(IMPORTS_BUSY_RETRY))
    }

    /// Waits for the ticket's turn, then checks every row of `file` against
    /// the file's other rows and the caller's domain and, unless any row is
    /// refused or it is a dry run, writes them all in one transaction.
    ///
    /// Rows naming MACs of other domains are counted against the caller, one
    /// per row (see `mac_probes`): a file with more of them than the caller
    /// has left is refused whole (429), without naming any.
    pub async fn import(
        &self,
        caller: &Caller,
        ticket: Ticket,
        file: Arc<dyn RowSource>,
        mode: ImportMode,
        progress: Progress<'_>,
    ) -> Result<ImportOutcome> {
        caller.require_write()?;
        if ticket.domain_id != caller.domain_id {
            return Err(ServiceError::NotFound("Domain not found"));
        }
        self.mac_probes.check(caller)?;
        let _turn = ticket.turn().await;
        let checked = self.check_rows(caller, &file, mode).await?;
        if checked.refused.total > 0 {
            let foreign = u32::try_from(checked.foreign).unwrap_or(u32::MAX);
            let over = foreign > self.mac_probes.remaining(caller);
            self.mac_probes.count(&self.store, caller, foreign, "handset.import.macconflict", None).await?;
            if over {
                return Err(ServiceError::TooManyMacConflicts(MAC_PROBE_BAN));
            }
            return Ok(ImportOutcome::Refused(checked.refused));
        }
        if mode.dry_run {
            return Ok(ImportOutcome::Checked(checked.rows));
        }
        let report = self.write_rows(caller, &file, &checked, progress).await?;
        tracing::info!(user = %caller.user.login(), domain = %caller.domain, created = report.created, updated = report.updated, "handsets imported");
        Ok(ImportOutcome::Written(report))
    }

    /// Pass 1: every row parsed, checked against the rows before it and
    /// against the database.
    async fn check_rows(&self, caller: &Caller, file: &Arc<dyn RowSource>, mode: ImportMode) -> Result<Checked> {
        let mut checked = Checked::default();
        let mut seen = Seen::default();
        let mut batches = read_batches(file.clone());
        while let Some(batch) = batches.recv().await {
            let mut errors = Vec::new();
            let mut good = Vec::with_capacity(BATCH);
            for item in batch.map_err(ServiceError::File)? {
                match item.and_then(|row| seen.admit(row)) {
                    Ok(row) => good.push(row),
                    Err(e) => errors.push(e),
                }
            }
            let exts: Vec<&str> = good.iter().map(|r| r.handset.extensionnumber.as_str()).collect();
            let macs: Vec<Mac> = good.iter().filter_map(|r| r.handset.fields.mac.flatten()).collect();
            let found = self.store.import_lookup(caller.domain_id, &exts, &macs).await?;
            for r in &good {
                let ext = &r.handset.extensionnumber;
                let existed = found.existing.contains(ext);
                checked.existed.push(existed);
                if existed && !mode.update {
                    errors
                        .push(RowError::new(r.line, format!("extension {ext} exists already (import with update to change it)")));
                }
                if let Some(Some(mac)) = r.handset.fields.mac {
                    if let Some((d, owner)) = found.macs.get(&mac) {
                        if *d != caller.domain_id || owner != ext {
                            errors.push(RowError {
                                line: r.line,
                                error: format!("MAC {mac} already in use"),
                                foreign_mac: *d != caller.domain_id,
                            });
                        }
                    }
                }
            }
            checked.rows += good.len();
            // Within a batch: its bad rows, then the database's refusals of
            // its good ones; a stable sort puts them in line order.
            errors.sort_by_key(|e| e.line);
            for e in errors {
                checked.refuse(e);
            }
        }
        Ok(checked)
    }

    /// Pass 2: the checked file again, written in one transaction. The
    /// file must give the rows it gave the check: a spooled upload always
    /// does; an operator's file edited in between is refused (a row that
    /// no longer parses, another count), and the database's constraints
    /// refuse what the check would have.
    async fn write_rows(
        &self,
        caller: &Caller,
        file: &Arc<dyn RowSource>,
        checked: &Checked,
        progress: Progress<'_>,
    ) -> Result<ImportReport> {
        let changed = || ServiceError::File(std::io::Error::other("the file changed between the check and the write"));
        let mut writer = self.store.import_writer(&caller.actor, caller.domain_id).await?;
        let mut batches = read_batches(file.clone());
        let total = checked.rows;
        while let Some(batch) = batches.recv().await {
            for item in batch.map_err(ServiceError::File)? {
                let row = item.map_err(|_| changed())?;
                let done = writer.written();
                let existed = checked.existed.get(done).ok_or_else(changed)?;
                writer.write(row.handset, existed).await?;
                if (done + 1) % 1000 == 0 || done + 1 == total {
                    progress(done + 1, total);
                }
            }
        }
        if writer.written() != total {
            return Err(changed());
        }
        Ok(writer.commit().await?)
    }
}

const MAC_PROBE_BAN: std::time::Duration = super::mac_probes::MAC_PROBE_POLICY.ban;

/// When a client refused for a full queue is told to come back.
const IMPORTS_BUSY_RETRY: std::time::Duration = std::time::Duration::from_secs(10);

/// What pass 1 found.
#[derive(Default)]
struct Checked {
    /// Rows that parsed and were not duplicates (all of them, if none was
    /// refused).
    rows: usize,
    /// Per such row, in order: whether its extension existed.
    existed: Bits,
    refused: Refused,
    /// Refused rows naming another domain's MAC.
    foreign: usize,
}

impl Checked {
    fn refuse(&mut self, e: RowError) {
        self.refused.total += 1;
        self.foreign += usize::from(e.foreign_mac);
        if self.refused.errors.len() < MAX_LISTED_ERRORS {
            self.refused.errors.push(e);
        }
    }
}

/// The extensions and MACs of the rows so far, with their lines: exact
/// keys (a MAC is 6 bytes, an extension at most 32), so a duplicate is
/// never reported falsely.
#[derive(Default)]
struct Seen {
    exts: HashMap<Box<str>, u64>,
    macs: HashMap<Mac, u64>,
}

impl Seen {
    /// The row, or why it repeats an earlier one.
    fn admit(&mut self, row: Row) -> Result<Row, RowError> {
        let ext = row.handset.extensionnumber.as_str();
        if let Some(first) = self.exts.get(ext) {
            return Err(RowError::new(row.line, format!("extension {ext} is also on line {first}")));
        }
        self.exts.insert(ext.into(), row.line);
        if let Some(Some(mac)) = row.handset.fields.mac {
            match self.macs.entry(mac) {
                Entry::Occupied(first) => {
                    return Err(RowError::new(row.line, format!("MAC {mac} is also on line {}", first.get())))
                }
                Entry::Vacant(v) => {
                    v.insert(row.line);
                }
            }
        }
        Ok(row)
    }
}

/// A bit per row.
#[derive(Default)]
struct Bits {
    words: Vec<u64>,
    len: usize,
}

impl Bits {
    fn push(&mut self, bit: bool) {
        if self.len % 64 == 0 {
            self.words.push(0);
        }
        if bit {
            self.words[self.len / 64] |= 1 << (self.len % 64);
        }
        self.len += 1;
    }

    fn get(&self, i: usize) -> Option<bool> {
        (i < self.len).then(|| self.words[i / 64] & (1 << (i % 64)) != 0)
    }
}

/// The file's rows in batches, read and parsed on a blocking thread (file
/// reads and CSV parsing would hold up the runtime). At most two batches
/// wait; the reader stops when the receiver is dropped.
fn read_batches(file: Arc<dyn RowSource>) -> mpsc::Receiver<std::io::Result<Vec<Result<Row, RowError>>>> {
    let (tx, rx) = mpsc::channel(2);
    tokio::task::spawn_blocking(move || {
        // The open file is all the reader needs: the import's owner decides
        // when a spooled file goes.
        let opened = file.rows();
        drop(file);
        let rows = match opened {
            Ok(rows) => rows,
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        };
        let mut batch = Vec::with_capacity(BATCH);
        for item in rows {
            match item {
                Ok(row) => batch.push(row),
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
            if batch.len() == BATCH && tx.blocking_send(Ok(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)))).is_err() {
                return;
            }
        }
        if !batch.is_empty() {
            let _ = tx.blocking_send(Ok(batch));
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::HandsetInput;

    fn row(line: u64, ext: &str, mac: Option<&str>) -> Row {
        let fields = HandsetInput { mac: mac.map(|m| Some(m.parse().unwrap())), ..Default::default() };
        Row { line, handset: crate::model::NewHandset { extensionnumber: ext.into(), fields } }
    }

    #[test]
    fn duplicates_name_the_first_line() {
        let mut seen = Seen::default();
        assert!(seen.admit(row(2, "100", Some("001565000001"))).is_ok());
        assert!(seen.admit(row(3, "101", None)).is_ok());
        let e = seen.admit(row(4, "100", Some("001565000004"))).unwrap_err();
        assert_eq!((e.line, e.error.as_str()), (4, "extension 100 is also on line 2"));
        let e = seen.admit(row(5, "105", Some("001565000001"))).unwrap_err();
        assert!(e.line == 5 && e.error.contains("also on line 2"), "{e:?}");
        let e = seen.admit(row(6, "106", Some("001565000001"))).unwrap_err();
        assert!(e.error.contains("also on line 2"), "the first line stays the one named: {e:?}");
        assert!(seen.admit(row(7, "1000", Some("001565000004"))).is_ok(), "a refused row's MAC was not taken");
    }

    #[test]
    fn bits_keep_their_order() {
        let mut bits = Bits::default();
        let pattern: Vec<bool> = (0..200).map(|i| i % 3 == 0 || i == 64 || i == 127).collect();
        for b in &pattern {
            bits.push(*b);
        }
        assert_eq!((0..200).map(|i| bits.get(i).unwrap()).collect::<Vec<_>>(), pattern);
        assert_eq!(bits.get(200), None);
    }

    #[test]
    fn errors_beyond_the_list_are_counted() {
        let mut checked = Checked::default();
        for line in 0..2500 {
            checked.refuse(RowError { line, error: "bad".into(), foreign_mac: line % 2 == 0 });
        }
        assert_eq!((checked.refused.errors.len(), checked.refused.total, checked.refused.unlisted()), (1000, 2500, 1500));
        assert_eq!(checked.foreign, 1250, "every foreign MAC is counted, listed or not");
    }
}
