//! Importing a site: every row of a file checked against the domain's
//! handsets before anything is written, then all of it written in one
//! transaction. The one import the command line, the API and the web UI
//! run (each parses its file with `handset_csv` first).

use std::collections::{HashMap, HashSet};

use super::{Result, Service};
use crate::auth::Caller;
use crate::model::{Mac, NewHandset};
use crate::store::handsets::ImportReport;

/// The largest CSV file taken at once over HTTP (a whole site); the command
/// line reads any size.
pub const MAX_CSV_BYTES: usize = 32 * 1024 * 1024;

/// A parsed, validated row.
#[derive(Clone, Debug)]
pub struct Row {
    pub line: u64,
    pub handset: NewHandset,
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

/// What to do with a file.
#[derive(Clone, Copy, Debug, Default)]
pub struct ImportMode {
    /// Check only, write nothing.
    pub dry_run: bool,
    /// Rows naming existing extensions update them (else they are refused).
    pub update: bool,
}

/// What an import came to.
#[derive(Debug)]
pub enum ImportOutcome {
    /// Nothing was written: every refused row, in line order.
    Refused(Vec<RowError>),
    /// A dry run: this many rows would be written.
    Checked(usize),
    Written(ImportReport),
}

impl Service {
    /// Checks `rows` (with the errors of parsing them) against the caller's
    /// domain and, unless any row is refused or it is a dry run, writes
    /// them; `progress` is told how many rows are written, every 1000.
    ///
    /// Rows naming MACs of other domains are counted against the caller, one
    /// per row (see `mac_probes`): a file with more of them than the caller
    /// has left is refused whole (429), without naming any.
    pub async fn import(
        &self,
        caller: &Caller,
        (rows, mut errors): (Vec<Row>, Vec<RowError>),
        mode: ImportMode,
        progress: &(dyn Fn(usize) + Sync),
    ) -> Result<ImportOutcome> {
        caller.require_write()?;
        self.mac_probes.check(caller)?;
        let (existing, macs) = self.store.import_context(caller.domain_id).await?;
        errors.extend(check_against(&rows, &existing, &macs, caller.domain_id, mode.update));
        if !errors.is_empty() {
            let foreign = u32::try_from(errors.iter().filter(|e| e.foreign_mac).count()).unwrap_or(u32::MAX);
            let over = foreign > self.mac_probes.remaining(caller);
            self.mac_probes.count(&self.store, caller, foreign, "handset.import.macconflict", None).await?;
            if over {
                return Err(super::ServiceError::TooManyMacConflicts(MAC_PROBE_BAN));
            }
            errors.sort_by_key(|e| e.line);
            return Ok(ImportOutcome::Refused(errors));
        }
        if mode.dry_run {
            return Ok(ImportOutcome::Checked(rows.len()));
        }
        let rows = rows.into_iter().map(|r| r.handset).collect();
        let report = self.store.import_handsets(&caller.actor, caller.domain_id, rows, &existing, progress).await?;
        tracing::info!(user = %caller.user.login(), domain = %caller.domain, created = report.created, updated = report.updated, "handsets imported");
        Ok(ImportOutcome::Written(report))
    }
}

const MAC_PROBE_BAN: std::time::Duration = super::mac_probes::MAC_PROBE_POLICY.ban;

/// The rows that may not be written, given the domain's extensions and
/// every MAC in use: an existing extension without `update`, a MAC another
/// handset has.
fn check_against(
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
