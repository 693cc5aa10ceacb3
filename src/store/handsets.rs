//! Handset records: select, search with keyset paging, create, update (with
//! the revision rule) and delete. Every write records its audit row in the
//! same transaction.

use std::collections::{HashMap, HashSet};

use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::changes::{self, Change};
use super::devices::LastFetch;
use super::push;
use super::status::status_from_row;
use super::{audit, is_unique_violation, like_escape, now_ms, Actor, Backend, Result, Store, StoreError};
use crate::model::settings;
use crate::model::{Handset, HandsetInput, HandsetStatus, Mac, NewHandset, PushState, Secret};

/// A handset with its last known status and its phone's last fetch, as
/// Handset Select shows it.
#[derive(Clone, Debug)]
pub struct HandsetView {
    pub handset: Handset,
    pub status: HandsetStatus,
    pub last_fetch: Option<LastFetch>,
    pub push: Option<PushView>,
}

impl HandsetView {
    /// The revision the phone last fetched (0: never).
    pub fn fetched_revision(&self) -> i64 {
        self.last_fetch.as_ref().map(|f| f.revision).unwrap_or(0)
    }

    pub fn provisioning_state(&self) -> ProvisioningState {
        if self.fetched_revision() >= self.handset.revision {
            ProvisioningState::Applied
        } else if self.push.as_ref().is_some_and(|p| p.state.is_failure()) {
            ProvisioningState::Failed
        } else {
            ProvisioningState::Pending
        }
    }
}

/// Handset Search filters; `None` matches everything.
#[derive(Clone, Debug, Default)]
pub struct HandsetFilter {
    /// Substring of the name, case-insensitive.
    pub name: Option<String>,
    /// Substring of the location, case-insensitive.
    pub location: Option<String>,
    /// Prefix of the extension number.
    pub extension_prefix: Option<String>,
    pub mac: Option<Mac>,
    pub model: Option<String>,
    pub provisioning: Option<ProvisioningState>,
}

/// Where a handset's latest change stands on its way to the phone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProvisioningState {
    /// The phone has fetched the current revision (or a later one).
    Applied,
    /// Not yet applied: a push is queued, on its way, or was sent.
    Pending,
    /// Not applied, and the push gave up (or had no target).
    Failed,
}

impl ProvisioningState {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "applied" => Some(ProvisioningState::Applied),
            "pending" => Some(ProvisioningState::Pending),
            "failed" => Some(ProvisioningState::Failed),
            _ => None,
        }
    }
}

/// The push row of a handset, for Handset Select.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushView {
    pub state: PushState,
    pub last_push_at: Option<i64>,
    pub last_error: String,
}

/// SQL conditions for [`ProvisioningState`] over `h`, `dv` and `p`.
const APPLIED: &str = "COALESCE(dv.revision, 0) >= h.revision";
const FAILED: &str = "p.state IN ('failed', 'no-target')";

/// A handset's columns over alias `h`, as [`handset_from_row`] reads them.
macro_rules! handset_columns {
    () => {
        "h.id, h.domain_id, h.extensionnumber, h.name, h.password, h.location, h.outgoingcli, h.recording, h.notes, \
         h.mac, h.model, h.revision, h.settings, h.prov_password, h.timezone, h.event_token"
    };
}
pub(crate) use handset_columns;

const SELECT_VIEW: &str = concat!(
    "SELECT ",
    handset_columns!(),
    ", s.state, s.calldirection, s.calldurationseconds, \
    s.otherpartyphonenumber, s.app, s.registration_address, s.registration_transport, s.user_agent, s.registered_until, s.updated_at AS status_updated_at, \
    s.call_id, s.call_stage, s.call_started_at, s.event_at, s.ended_calls, s.dnd, s.forward, \
    dv.last_seen AS fetched_at, dv.revision AS fetched_revision, dv.model AS device_model, dv.firmware AS device_firmware, \
    p.state AS push_state, p.last_push_at, p.last_error AS push_error \
    FROM handset h LEFT JOIN handset_status s ON s.handset_id = h.id \
    LEFT JOIN device dv ON dv.mac = h.mac AND dv.handset_id = h.id \
    LEFT JOIN push p ON p.handset_id = h.id"
);

const SELECT_HANDSET: &str = concat!("SELECT ", handset_columns!(), " FROM handset h");

pub(crate) fn handset_from_row(row: &AnyRow) -> Result<Handset> {
    let mac: Option<String> = row.try_get("mac")?;
    Ok(Handset {
        id: row.try_get("id")?,
        domain_id: row.try_get("domain_id")?,
        extensionnumber: row.try_get("extensionnumber")?,
        name: row.try_get("name")?,
        password: Secret::new(row.try_get::<String, _>("password")?),
        location: row.try_get("location")?,
        outgoingcli: row.try_get("outgoingcli")?,
        recording: row.try_get::<i64, _>("recording")? != 0,
        notes: row.try_get("notes")?,
        mac: mac.map(|m| m.parse::<Mac>().map_err(|e| StoreError::Corrupt(format!("handset mac {m:?}: {e}")))).transpose()?,
        model: row.try_get("model")?,
        revision: row.try_get("revision")?,
        settings: settings::from_text(&row.try_get::<String, _>("settings")?).map_err(StoreError::Corrupt)?,
        device_password: Secret::new(row.try_get::<String, _>("prov_password")?),
        event_token: Secret::new(row.try_get::<String, _>("event_token")?),
        // NULL (a row from before the column) is the domain's zone too.
        timezone: row.try_get::<Option<String>, _>("timezone")?.unwrap_or_default(),
    })
}

fn view_from_row(row: &AnyRow) -> Result<HandsetView> {
    let last_fetch = match row.try_get::<Option<i64>, _>("fetched_at")? {
        None => None,
        Some(at) => Some(LastFetch {
            at,
            revision: row.try_get::<Option<i64>, _>("fetched_revision")?.unwrap_or(0),
            model: row.try_get::<Option<String>, _>("device_model")?.unwrap_or_default(),
            firmware: row.try_get::<Option<String>, _>("device_firmware")?.unwrap_or_default(),
        }),
    };
    let push = match row.try_get::<Option<String>, _>("push_state")? {
        None => None,
        Some(state) => Some(PushView {
            state: PushState::parse(&state).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            last_push_at: row.try_get("last_push_at")?,
            last_error: row.try_get::<Option<String>, _>("push_error")?.unwrap_or_default(),
        }),
    };
    Ok(HandsetView { handset: handset_from_row(row)?, status: status_from_row(row)?, last_fetch, push })
}

/// Maps a unique violation on insert or update to the API's 409 messages.
fn conflict_or(e: sqlx::Error) -> StoreError {
    if is_unique_violation(&e, "mac") {
        StoreError::Conflict("MAC already in use".into())
    } else if is_unique_violation(&e, "extension") {
        StoreError::Conflict("Extension number already exists in this domain".into())
    } else {
        e.into()
    }
}

impl Store {
    pub async fn handset(&self, domain_id: i64, ext: &str) -> Result<Option<HandsetView>> {
        let row = sqlx::query(&format!("{SELECT_VIEW} WHERE h.domain_id = $1 AND h.extensionnumber = $2"))
            .bind(domain_id)
            .bind(ext)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(view_from_row).transpose()
    }

    /// One page of a domain's handsets in extension order, strictly after
    /// `after` (keyset paging: stable while rows are added or removed).
    pub async fn search_handsets(
        &self,
        domain_id: i64,
        filter: &HandsetFilter,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<HandsetView>> {
        self.search_handsets_in_state(domain_id, filter, None, after, limit).await
    }

    /// [`Store::search_handsets`], only handsets in `state` (a handset
    /// without a status row is `Unavailable`).
    pub async fn search_handsets_in_state(
        &self,
        domain_id: i64,
        filter: &HandsetFilter,
        state: Option<crate::model::CallState>,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<HandsetView>> {
        let mut sql = format!("{SELECT_VIEW} WHERE h.domain_id = $1");
        let mut binds: Vec<String> = Vec::new();
        let mut bind = |sql: &mut String, clause: &str, value: String| {
            binds.push(value);
            sql.push_str(&clause.replace("$?", &format!("${}", binds.len() + 1)));
        };
        if let Some(name) = &filter.name {
            bind(&mut sql, " AND lower(h.name) LIKE $? ESCAPE '\\'", format!("%{}%", like_escape(&name.to_lowercase())));
        }
        if let Some(loc) = &filter.location {
            bind(&mut sql, " AND lower(h.location) LIKE $? ESCAPE '\\'", format!("%{}%", like_escape(&loc.to_lowercase())));
        }
        if let Some(prefix) = &filter.extension_prefix {
            // Extension numbers are ASCII below '~', so [prefix, prefix~) is
            // exactly the prefix range, and it uses the unique index.
            bind(&mut sql, " AND h.extensionnumber >= $?", prefix.clone());
            bind(&mut sql, " AND h.extensionnumber < $?", format!("{prefix}~"));
        }
        if let Some(mac) = &filter.mac {
            bind(&mut sql, " AND h.mac = $?", mac.lower());
        }
        if let Some(model) = &filter.model {
            bind(&mut sql, " AND h.model = $?", model.clone());
        }
        if let Some(state) = filter.provisioning {
            sql.push_str(&match state {
                ProvisioningState::Applied => format!(" AND {APPLIED}"),
                ProvisioningState::Failed => format!(" AND NOT ({APPLIED}) AND {FAILED}"),
                ProvisioningState::Pending => format!(" AND NOT ({APPLIED}) AND (p.state IS NULL OR NOT {FAILED})"),
            });
        }
        if let Some(state) = state {
            bind(&mut sql, " AND COALESCE(s.state, 'Unavailable') = $?", state.as_str().to_string());
        }
        if let Some(after) = after {
            bind(&mut sql, " AND h.extensionnumber > $?", after.to_string());
        }
        sql.push_str(&format!(" ORDER BY h.extensionnumber LIMIT ${}", binds.len() + 2));
        let mut q = sqlx::query(&sql).bind(domain_id);
        for b in binds {
            q = q.bind(b);
        }
        let rows = q.bind(limit).fetch_all(self.pool()).await?;
        rows.iter().map(view_from_row).collect()
    }

    pub async fn create_handset(&self, actor: &Actor, domain_id: i64, new: NewHandset) -> Result<HandsetView> {
        let mut created = self.create_handsets(actor, domain_id, vec![new]).await.map_err(|(_, e)| e)?;
        Ok(created.remove(0))
    }

    /// Creates several handsets in one transaction: all or none. On failure
    /// the error comes with the index of the handset that caused it.
    pub async fn create_handsets(
        &self,
        actor: &Actor,
        domain_id: i64,
        new: Vec<NewHandset>,
    ) -> std::result::Result<Vec<HandsetView>, (usize, StoreError)> {
        let mut tx = self.pool().begin().await.map_err(|e| (0, e.into()))?;
        let mut created = Vec::with_capacity(new.len());
        for (i, n) in new.into_iter().enumerate() {
            let view = insert_handset(&mut tx, actor, domain_id, n).await.map_err(|e| (i, e))?;
            created.push(view);
        }
        tx.commit().await.map_err(|e| (0, e.into()))?;
        if created.iter().any(|v| v.handset.mac.is_some()) {
            self.note_local_change();
        }
        Ok(created)
    }

    /// Handset Update: applies the given fields, bumps `revision` by exactly
    /// one when the phone's config changes, and audits the changed names.
    pub async fn update_handset(
        &self,
        actor: &Actor,
        domain_id: i64,
        ext: &str,
        changes: &HandsetInput,
    ) -> Result<(HandsetView, Vec<&'static str>)> {
        changes.validate()?;
        let mut tx = self.pool().begin().await?;
        let h = lock_handset(&mut tx, domain_id, ext).await?;
        let (_, changed, config_changed) = apply_changes(&mut tx, actor, h, changes, "handset.update").await?;
        tx.commit().await?;
        if config_changed {
            self.note_local_change();
        }
        let view = self.handset(domain_id, ext).await?.ok_or(StoreError::NotFound("Handset not found"))?;
        Ok((view, changed))
    }

    /// An installer's claim: gives the phone with `mac` to extension `ext`
    /// (with `model`, else the model the phone reported), or creates that
    /// handset when `create` allows; then the phone is known and a push is
    /// queued, all in one transaction. A MAC another handset has is a 409.
    pub async fn claim_device(
        &self,
        actor: &Actor,
        domain_id: i64,
        mac: Mac,
        ext: &str,
        model: Option<String>,
        create: bool,
    ) -> Result<HandsetView> {
        let mut tx = self.pool().begin().await?;
        let owner = sqlx::query("SELECT domain_id, extensionnumber FROM handset WHERE mac = $1")
            .bind(mac.lower())
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(o) = owner {
            if o.try_get::<i64, _>("domain_id")? != domain_id || o.try_get::<String, _>("extensionnumber")? != ext {
                return Err(StoreError::Conflict("MAC already in use".into()));
            }
        }
        let reported: Option<String> = sqlx::query_scalar("SELECT model FROM device WHERE mac = $1")
            .bind(mac.lower())
            .fetch_optional(&mut *tx)
            .await?
            .and_then(|m: String| crate::model::handset::model_from_report(&m));
        let fields = HandsetInput { mac: Some(Some(mac)), model: model.or(reported).map(Some), ..Default::default() };
        fields.validate()?;
        let handset = match lock_handset(&mut tx, domain_id, ext).await {
            Ok(h) => apply_changes(&mut tx, actor, h, &fields, "device.claim").await?.0,
            Err(StoreError::NotFound(_)) if create => {
                let view =
                    insert_handset(&mut tx, actor, domain_id, NewHandset { extensionnumber: ext.to_string(), fields }).await?;
                push::enqueue(&mut tx, view.handset.id, view.handset.revision, false).await?;
                view.handset
            }
            Err(e) => return Err(e),
        };
        sqlx::query("UPDATE device SET handset_id = $1 WHERE mac = $2")
            .bind(handset.id)
            .bind(mac.lower())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.note_local_change();
        self.handset(domain_id, ext).await?.ok_or(StoreError::NotFound("Handset not found"))
    }

    /// The domain of the handset that has `mac`, if any.
    pub async fn mac_owner_domain(&self, mac: &Mac) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar("SELECT domain_id FROM handset WHERE mac = $1")
            .bind(mac.lower())
            .fetch_optional(self.pool())
            .await?)
    }

    pub async fn delete_handset(&self, actor: &Actor, domain_id: i64, ext: &str) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        let deleted = sqlx::query("DELETE FROM handset WHERE domain_id = $1 AND extensionnumber = $2 RETURNING mac")
            .bind(domain_id)
            .bind(ext)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound("Handset not found"))?;
        audit::record(&mut tx, actor, domain_id, "handset.delete", Some(ext), &[]).await?;
        let mac = deleted.try_get::<Option<String>, _>("mac")?.and_then(|m| m.parse::<Mac>().ok());
        if let Some(mac) = mac {
            changes::record(&mut tx, &Change::Phone(mac)).await?;
        }
        tx.commit().await?;
        self.note_local_change();
        Ok(())
    }
}

async fn insert_handset(tx: &mut Transaction<'_, Any>, actor: &Actor, domain_id: i64, new: NewHandset) -> Result<HandsetView> {
    let fields = new.fields.given();
    let view = insert_new(tx, domain_id, new).await?;
    audit::record(tx, actor, domain_id, "handset.create", Some(&view.handset.extensionnumber), &fields).await?;
    Ok(view)
}

/// Inserts a new handset (no audit row) and feeds its MAC to the caches.
async fn insert_new(tx: &mut Transaction<'_, Any>, domain_id: i64, new: NewHandset) -> Result<HandsetView> {
    let h = new.into_handset(domain_id)?;
    let row = bind_columns(
        sqlx::query(
            "INSERT INTO handset (name, password, location, outgoingcli, recording, notes, mac, model, revision, settings, \
             prov_password, timezone, event_token, domain_id, extensionnumber, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $16) RETURNING id",
        ),
        &h,
    )
    .bind(domain_id)
    .bind(&h.extensionnumber)
    .bind(now_ms())
    .fetch_one(&mut **tx)
    .await
    .map_err(conflict_or)?;
    let id: i64 = row.try_get("id")?;
    if let Some(mac) = h.mac {
        changes::record(tx, &Change::Phone(mac)).await?;
    }
    Ok(HandsetView { handset: Handset { id, ..h }, status: HandsetStatus::default(), last_fetch: None, push: None })
}

/// What an import did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
}

/// How many keys one lookup of [`Store::import_lookup`] takes at most (one
/// bound parameter each; SQLite allows 32,766, PostgreSQL 65,535).
pub const IMPORT_LOOKUP_MAX: usize = 1000;

/// What the database has of a batch of import rows.
#[derive(Debug, Default)]
pub struct ImportLookup {
    /// The batch's extensions the domain has.
    pub existing: HashSet<String>,
    /// The batch's MACs in use, anywhere: the owner's domain and extension.
    pub macs: HashMap<Mac, (i64, String)>,
}

impl Store {
    /// Which of `exts` the domain has, and who has each of `macs` (at most
    /// [`IMPORT_LOOKUP_MAX`] of each): what an import's rows are checked
    /// against, a batch at a time, so that nothing of the database's is
    /// held for a whole file (two indexed lookups per batch).
    pub async fn import_lookup(&self, domain_id: i64, exts: &[&str], macs: &[Mac]) -> Result<ImportLookup> {
        let mut found = ImportLookup::default();
        if !exts.is_empty() {
            let sql = format!(
                "SELECT extensionnumber FROM handset WHERE domain_id = $1 AND extensionnumber IN ({})",
                placeholders(2, exts.len())
            );
            let mut q = sqlx::query(&sql).bind(domain_id);
            for ext in exts {
                q = q.bind(*ext);
            }
            for r in q.fetch_all(self.pool()).await? {
                found.existing.insert(r.try_get("extensionnumber")?);
            }
        }
        if !macs.is_empty() {
            let sql =
                format!("SELECT domain_id, extensionnumber, mac FROM handset WHERE mac IN ({})", placeholders(1, macs.len()));
            let mut q = sqlx::query(&sql);
            for mac in macs {
                q = q.bind(mac.lower());
            }
            for r in q.fetch_all(self.pool()).await? {
                if let Some(mac) = r.try_get::<Option<String>, _>("mac")?.and_then(|m| m.parse::<Mac>().ok()) {
                    found.macs.insert(mac, (r.try_get("domain_id")?, r.try_get("extensionnumber")?));
                }
            }
        }
        Ok(found)
    }

    /// Starts writing checked import rows into a domain: one transaction,
    /// given the rows one by one ([`ImportWriter::write`]) and committed by
    /// [`ImportWriter::commit`]; dropped before that, nothing is written.
    pub async fn import_writer<'a>(&'a self, actor: &'a Actor, domain_id: i64) -> Result<ImportWriter<'a>> {
        Ok(ImportWriter {
            store: self,
            actor,
            domain_id,
            tx: self.pool().begin().await?,
            began_ms: now_ms(),
            report: ImportReport::default(),
            any_config_change: false,
            pending: Vec::with_capacity(IMPORT_INSERT_ROWS),
        })
    }

    /// Every handset of a domain in extension order, for export.
    pub async fn domain_handsets(&self, domain_id: i64) -> Result<Vec<Handset>> {
        let rows = sqlx::query(&format!("{SELECT_HANDSET} WHERE h.domain_id = $1 ORDER BY h.extensionnumber"))
            .bind(domain_id)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(handset_from_row).collect()
    }
}

/// An import being written (see [`Store::import_writer`]): new extensions
/// are created (one audit row for the import, not one per handset),
/// existing ones updated like Handset Update (revision, audit, push).
pub struct ImportWriter<'a> {
    store: &'a Store,
    actor: &'a Actor,
    domain_id: i64,
    tx: Transaction<'static, Any>,
    /// When the transaction began: its first change rows are that old.
    began_ms: i64,
    report: ImportReport,
    any_config_change: bool,
    /// New handsets not inserted yet: written [`IMPORT_INSERT_ROWS`] to a
    /// statement (a round trip per row made a million-row import on
    /// PostgreSQL take minutes).
    pending: Vec<Handset>,
}

/// New handsets per `INSERT` of an import, 17 parameters each: fewer round
/// trips on PostgreSQL (65,535 parameters at most), fewer statements on
/// SQLite (its parameters are anonymous: see `values_rows`).
const IMPORT_INSERT_ROWS: usize = 250;

impl ImportWriter<'_> {
    /// Writes one row; `existed` is what the check found. A new extension
    /// skips the lock: one created since the check fails the insert, and
    /// an existing one deleted since fails the lock, and either rolls the
    /// whole import back.
    pub async fn write(&mut self, row: NewHandset, existed: bool) -> Result<()> {
        if !existed {
            self.pending.push(row.into_handset(self.domain_id)?);
            self.report.created += 1;
            if self.pending.len() == IMPORT_INSERT_ROWS {
                self.insert_pending().await?;
            }
            return Ok(());
        }
        self.insert_pending().await?;
        let h = lock_handset(&mut self.tx, self.domain_id, &row.extensionnumber).await?;
        let (_, changed, config_changed) = apply_changes(&mut self.tx, self.actor, h, &row.fields, "handset.import").await?;
        self.any_config_change |= config_changed;
        if changed.is_empty() {
            self.report.unchanged += 1;
        } else {
            self.report.updated += 1;
        }
        Ok(())
    }

    /// Rows written so far.
    pub fn written(&self) -> usize {
        self.report.created + self.report.updated + self.report.unchanged
    }

    /// Inserts the pending new handsets in one statement, and records
    /// their MACs in the change feed in another.
    async fn insert_pending(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        const COLUMNS: usize = 17;
        let sql = format!(
            "INSERT INTO handset (name, password, location, outgoingcli, recording, notes, mac, model, revision, settings, \
             prov_password, timezone, event_token, domain_id, extensionnumber, created_at, updated_at) VALUES {}",
            super::values_rows(self.store.backend(), self.pending.len(), COLUMNS)
        );
        let now = now_ms();
        let mut q = sqlx::query(&sql);
        for h in &self.pending {
            q = bind_columns(q, h).bind(self.domain_id).bind(h.extensionnumber.as_str()).bind(now).bind(now);
        }
        q.execute(&mut *self.tx).await.map_err(conflict_or)?;
        let macs: Vec<Mac> = self.pending.iter().filter_map(|h| h.mac).collect();
        changes::record_phones(&mut self.tx, &macs).await?;
        self.pending.clear();
        Ok(())
    }

    /// Audits the creations and commits.
    pub async fn commit(mut self) -> Result<ImportReport> {
        self.insert_pending().await?;
        if self.report.created > 0 {
            let count = format!("created:{}", self.report.created);
            audit::record(&mut self.tx, self.actor, self.domain_id, "handset.import", None, &[count.as_str()]).await?;
        }
        let changed = self.any_config_change || self.report.created > 0;
        // A long import's first change rows are older than the feed reads
        // back (FEED_OVERLAP_MS) by the time they become visible: caches
        // would keep those phones as they were until their entries
        // expire. One row for the whole domain, written now, covers them.
        if changed && now_ms() - self.began_ms > changes::FEED_OVERLAP_MS / 2 {
            changes::record(&mut self.tx, &Change::Domain(self.domain_id)).await?;
        }
        self.tx.commit().await?;
        if changed {
            self.store.note_local_change();
        }
        // A bulk load leaves PostgreSQL's planner with the table's old
        // statistics (none after a first import), and it then sorts the
        // whole table for one page of Handset Search: 97 ms at 100,000
        // handsets, 0.2 ms with statistics. Refresh them now rather than at
        // autovacuum's next turn. The import has committed: a failure here
        // is only logged.
        if self.store.backend() == Backend::Postgres && self.report.created >= ANALYZE_AFTER_CREATING {
            if let Err(e) = sqlx::query("ANALYZE handset").execute(self.store.pool()).await {
                tracing::warn!(error = %e, "could not refresh the handset table's statistics after an import");
            }
        }
        Ok(self.report)
    }
}

/// Imports creating at least this many handsets refresh the planner's
/// statistics (PostgreSQL).
const ANALYZE_AFTER_CREATING: usize = 1000;

/// `$first, $first+1, …`: `n` placeholders.
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

/// Applies `changes` to a locked handset: writes the row, audits the
/// changed field names as `action`, and when the phone's config changed
/// feeds the change to the caches and queues a push. Returns the handset,
/// the changed names and whether the config changed.
async fn apply_changes(
    tx: &mut Transaction<'_, Any>,
    actor: &Actor,
    mut h: Handset,
    changes: &HandsetInput,
    action: &str,
) -> Result<(Handset, Vec<&'static str>, bool)> {
    let old_mac = h.mac;
    let revision = h.revision;
    let changed = changes.apply(&mut h);
    let config_changed = h.revision != revision;
    if !changed.is_empty() {
        bind_columns(
            sqlx::query(
                "UPDATE handset SET name = $1, password = $2, location = $3, outgoingcli = $4, recording = $5, notes = $6, \
                 mac = $7, model = $8, revision = $9, settings = $10, prov_password = $11, timezone = $12, event_token = $13, \
                 updated_at = $14 WHERE id = $15",
            ),
            &h,
        )
        .bind(now_ms())
        .bind(h.id)
        .execute(&mut **tx)
        .await
        .map_err(conflict_or)?;
        audit::record(tx, actor, h.domain_id, action, Some(&h.extensionnumber), &changed).await?;
    }
    if config_changed {
        for mac in [old_mac, h.mac].into_iter().flatten() {
            changes::record(tx, &Change::Phone(mac)).await?;
        }
        if h.mac.is_some() {
            push::enqueue(tx, h.id, h.revision, false).await?;
        }
    }
    Ok((h, changed, config_changed))
}

/// Binds $1…$13: the columns a handset's create and update both write.
fn bind_columns<'q>(
    q: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>,
    h: &'q Handset,
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>> {
    q.bind(h.name.as_str())
        .bind(h.password.expose())
        .bind(h.location.as_str())
        .bind(h.outgoingcli.as_str())
        .bind(i64::from(h.recording))
        .bind(h.notes.as_str())
        .bind(h.mac.map(|m| m.lower()))
        .bind(h.model.as_deref())
        .bind(h.revision)
        .bind(settings::to_text(&h.settings))
        .bind(h.device_password.expose())
        .bind(h.timezone.as_str())
        .bind(h.event_token.expose())
}

/// Takes the handset's row lock, then reads the row.
///
/// The lock comes from a no-op `UPDATE` rather than `SELECT … FOR UPDATE`
/// because it works the same on both databases: PostgreSQL locks the row,
/// SQLite takes its write lock at the first write of the transaction (and
/// waits for it under `busy_timeout`). A read first would leave SQLite with
/// a read snapshot that cannot be upgraded while another writer commits, so
/// concurrent updates would fail with `SQLITE_BUSY` instead of queueing.
pub(crate) async fn lock_handset(tx: &mut Transaction<'_, Any>, domain_id: i64, ext: &str) -> Result<Handset> {
    let locked = sqlx::query("UPDATE handset SET revision = revision WHERE domain_id = $1 AND extensionnumber = $2")
        .bind(domain_id)
        .bind(ext)
        .execute(&mut **tx)
        .await?;
    if locked.rows_affected() == 0 {
        return Err(StoreError::NotFound("Handset not found"));
    }
    let row = sqlx::query(&format!("{SELECT_HANDSET} WHERE h.domain_id = $1 AND h.extensionnumber = $2"))
        .bind(domain_id)
        .bind(ext)
        .fetch_one(&mut **tx)
        .await?;
    handset_from_row(&row)
}
