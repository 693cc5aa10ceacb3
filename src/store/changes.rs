//! The change feed behind provisioning caches: every write that changes
//! what a phone is configured with adds a row (the MAC, or the whole
//! domain) in its own transaction, and bumps an in-process counter after
//! commit so this process's caches catch up before their next answer.

use std::sync::atomic::Ordering;

use sqlx::{Any, Row, Transaction};

use super::{now_ms, Result, Store};
use crate::model::Mac;

/// How far back each read of the feed reaches before the previous read:
/// a row is written with its transaction's clock and seen only once that
/// transaction commits, so rows up to this much older than the commit are
/// still read. A transaction that ran longer (a large import) adds a row at
/// its end that covers what it changed ([`Store::import_writer`]).
pub const FEED_OVERLAP_MS: i64 = 5_000;

/// What became stale.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Phone(Mac),
    Domain(i64),
}

pub(crate) async fn record(tx: &mut Transaction<'_, Any>, change: &Change) -> Result<()> {
    let (mac, domain) = match change {
        Change::Phone(m) => (Some(m.lower()), None),
        Change::Domain(d) => (None, Some(*d)),
    };
    sqlx::query("INSERT INTO config_change (at, mac, domain_id) VALUES ($1, $2, $3)")
        .bind(now_ms())
        .bind(mac)
        .bind(domain)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The same as [`record`] for many phones, in one statement.
pub(crate) async fn record_phones(tx: &mut Transaction<'_, Any>, macs: &[Mac]) -> Result<()> {
    if macs.is_empty() {
        return Ok(());
    }
    let rows: Vec<String> = (0..macs.len()).map(|i| format!("($1, ${}, NULL)", i + 2)).collect();
    let sql = format!("INSERT INTO config_change (at, mac, domain_id) VALUES {}", rows.join(", "));
    let mut q = sqlx::query(&sql).bind(now_ms());
    for mac in macs {
        q = q.bind(mac.lower());
    }
    q.execute(&mut **tx).await?;
    Ok(())
}

impl Store {
    /// Called after a commit that recorded changes.
    pub(crate) fn note_local_change(&self) {
        self.local_changes.fetch_add(1, Ordering::Release);
        // Every change to a phone's config queues its push.
        self.wake_pushes();
    }

    /// Tells this process's push worker that pushes were queued.
    pub(crate) fn wake_pushes(&self) {
        self.pushes_queued.notify_one();
    }

    /// Completes when this process queues pushes (or already did since the
    /// last wait).
    pub async fn pushes_queued(&self) {
        self.pushes_queued.notified().await
    }

    /// How many changing commits this process has made: a cheap way for a
    /// cache to know it must read the feed now.
    pub fn local_change_count(&self) -> u64 {
        self.local_changes.load(Ordering::Acquire)
    }

    /// Changes recorded at or after `since_ms`.
    pub async fn changes_since(&self, since_ms: i64) -> Result<Vec<Change>> {
        let rows = sqlx::query("SELECT mac, domain_id FROM config_change WHERE at >= $1 ORDER BY seq")
            .bind(since_ms)
            .fetch_all(self.pool())
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            if let Some(mac) = r.try_get::<Option<String>, _>("mac")?.and_then(|m| m.parse().ok()) {
                out.push(Change::Phone(mac));
            }
            if let Some(d) = r.try_get::<Option<i64>, _>("domain_id")? {
                out.push(Change::Domain(d));
            }
        }
        Ok(out)
    }

    /// Drops feed rows older than `before_ms`.
    pub async fn prune_changes(&self, before_ms: i64) -> Result<()> {
        sqlx::query("DELETE FROM config_change WHERE at < $1").bind(before_ms).execute(self.pool()).await?;
        Ok(())
    }
}
