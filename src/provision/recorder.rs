//! Write-behind recording of phone fetches. A boot storm must not turn into
//! one database write per request: fetches are coalesced per MAC in memory
//! and written in one transaction per interval (and at shutdown). A crash
//! loses at most one interval of "last seen" data, never a config change.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::model::Mac;
use crate::store::devices::FetchRecord;
use crate::store::Store;

/// Pending records beyond this are dropped (and counted) until the next
/// flush: memory stays bounded even if the database stalls.
const MAX_PENDING: usize = 100_000;

pub struct FetchRecorder {
    pending: Mutex<HashMap<Mac, FetchRecord>>,
    dropped: std::sync::atomic::AtomicU64,
}

impl Default for FetchRecorder {
    fn default() -> Self {
        FetchRecorder { pending: Mutex::new(HashMap::new()), dropped: Default::default() }
    }
}

impl FetchRecorder {
    pub fn record(&self, rec: FetchRecord) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let len = pending.len();
        match pending.get_mut(&rec.mac) {
            Some(existing) => {
                // The newest fetch wins, but a TFTP fetch (no User-Agent)
                // does not erase the model and firmware an HTTP one reported;
                // the database upsert follows the same rule.
                let keep = |new: String, old: &mut String| if new.is_empty() { std::mem::take(old) } else { new };
                let model = keep(rec.model, &mut existing.model);
                let firmware = keep(rec.firmware, &mut existing.firmware);
                let (first_seen, count) = (existing.first_seen, existing.count);
                *existing = FetchRecord { first_seen, count: count + rec.count, model, firmware, ..rec };
            }
            None if len >= MAX_PENDING => {
                self.dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            None => {
                pending.insert(rec.mac, rec);
            }
        }
    }

    /// Writes everything pending now.
    pub async fn flush(&self, store: &Store, unknown_cap: i64) {
        let batch: Vec<FetchRecord> = {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            pending.drain().map(|(_, r)| r).collect()
        };
        if batch.is_empty() {
            return;
        }
        if let Err(e) = store.record_fetches(&batch, unknown_cap).await {
            tracing::error!(error = %e, records = batch.len(), "could not record phone fetches");
        }
        let dropped = self.dropped.swap(0, std::sync::atomic::Ordering::Relaxed);
        if dropped > 0 {
            tracing::warn!(dropped, "fetch records dropped: the database did not keep up");
        }
    }

    /// Flushes every `interval` until `stop` turns true, then once more.
    pub async fn run(self: Arc<Self>, store: Store, interval: Duration, unknown_cap: i64, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.flush(&store, unknown_cap).await,
                _ = stop.changed() => break,
            }
        }
        self.flush(&store, unknown_cap).await;
    }
}
