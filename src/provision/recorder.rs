//! Write-behind recording of phone fetches. A boot storm must not turn into
//! one database write per request: fetches are coalesced per MAC in memory
//! and written in one transaction per interval (and at shutdown).
//!
//! A fetch that tells nothing new (same handset, revision, file, address,
//! User-Agent as the last one written for that MAC, within a minute) is not
//! written at once: its count and time are kept and written with the next
//! real change or a minute later. So what matters (a new phone, a new
//! revision fetched) reaches the database within one interval, while a
//! phone polling the same file costs one row update a minute. A crash loses
//! at most that: "last seen" data, never a config change.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::model::Mac;
use crate::store::devices::FetchRecord;
use crate::store::outage::Backoff;
use crate::store::{Store, StoreError};

/// Pending records beyond this are dropped (and counted) until the next
/// flush: memory stays bounded even if the database stalls.
const MAX_PENDING: usize = 100_000;

/// How long a fetch that changes nothing may wait to be counted.
const QUIET_WRITE_DELAY: Duration = Duration::from_secs(60);
/// Beyond this many remembered MACs the memory of what was written starts
/// over (everything is then written once more).
const MAX_REMEMBERED: usize = 250_000;

const SHARDS: usize = 16;

/// The shard of `written` that remembers `mac`.
fn shard(mac: &Mac) -> usize {
    let h = mac.octets().iter().fold(0usize, |h, &b| h.wrapping_mul(31).wrapping_add(b as usize));
    h % SHARDS
}

/// What was last written for one MAC.
struct Written {
    fingerprint: u64,
    at: Instant,
    /// Fetches since then that were not written, and the last one's time.
    unwritten: i64,
    last_seen: i64,
}

/// One fetch as the provisioner saw it, borrowed: a fetch that tells
/// nothing new costs no allocation.
#[derive(Debug)]
pub struct Fetch<'a> {
    pub mac: Mac,
    pub handset_id: Option<i64>,
    pub ip: std::net::IpAddr,
    pub user_agent: &'a str,
    pub vendor: &'a str,
    pub model: &'a str,
    pub firmware: &'a str,
    pub file: &'a str,
    pub protocol: &'static str,
    pub revision: Option<i64>,
    /// The domain whose token the request carried.
    pub token_domain_id: Option<i64>,
}

#[derive(Default)]
pub struct FetchRecorder {
    /// Fetches with news, coalesced per MAC, with their fingerprint.
    pending: Mutex<HashMap<Mac, (FetchRecord, u64)>>,
    /// Sharded by MAC: a quiet fetch (most of a storm's) locks one shard,
    /// and a flush walking them never holds up every request at once.
    written: [Mutex<HashMap<Mac, Written>>; SHARDS],
    dropped: std::sync::atomic::AtomicU64,
}

/// Everything of a fetch but its time.
fn fingerprint(f: &Fetch<'_>) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (f.handset_id, f.ip, f.user_agent, f.vendor, f.model, f.firmware, f.file, f.protocol, f.revision, f.token_domain_id)
        .hash(&mut h);
    h.finish()
}

impl FetchRecorder {
    pub fn record(&self, f: &Fetch<'_>) {
        let fp = fingerprint(f);
        let now_ms = crate::store::now_ms();
        {
            let mut written = self.written[shard(&f.mac)].lock().unwrap_or_else(|p| p.into_inner());
            if let Some(w) = written.get_mut(&f.mac) {
                if w.fingerprint == fp && w.at.elapsed() < QUIET_WRITE_DELAY {
                    w.unwritten += 1;
                    w.last_seen = now_ms;
                    return;
                }
            }
        }
        let rec = FetchRecord {
            mac: f.mac,
            handset_id: f.handset_id,
            ip: f.ip.to_string(),
            user_agent: f.user_agent.chars().take(256).collect(),
            vendor: f.vendor.to_string(),
            model: f.model.to_string(),
            firmware: f.firmware.to_string(),
            file: f.file.to_string(),
            protocol: f.protocol,
            revision: f.revision,
            token_domain_id: f.token_domain_id,
            first_seen: now_ms,
            last_seen: now_ms,
            count: 1,
        };
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let len = pending.len();
        match pending.get_mut(&rec.mac) {
            Some((existing, existing_fp)) => {
                *existing_fp = fp;
                // The newest fetch wins, but a TFTP fetch (no User-Agent)
                // does not erase the model and firmware an HTTP one reported;
                // the database upsert follows the same rule.
                let keep = |new: String, old: &mut String| if new.is_empty() { std::mem::take(old) } else { new };
                let model = keep(rec.model, &mut existing.model);
                let firmware = keep(rec.firmware, &mut existing.firmware);
                let (first_seen, count) = (existing.first_seen, existing.count);
                let token_domain_id = rec.token_domain_id.or(existing.token_domain_id);
                *existing = FetchRecord { first_seen, count: count + rec.count, model, firmware, token_domain_id, ..rec };
            }
            None if len >= MAX_PENDING => {
                self.dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            None => {
                pending.insert(rec.mac, (rec, fp));
            }
        }
    }

    /// Writes what is due now: new information at once, quiet fetches'
    /// counts once they are a minute old. A database outage is returned,
    /// not logged (the caller backs off and says so once); what could not
    /// be written is lost ("last seen" data only).
    pub async fn flush(&self, store: &Store, unknown_cap: i64) -> Option<StoreError> {
        let pending: Vec<(FetchRecord, u64)> = {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            // Take the map rather than drain it: a storm's worth of capacity
            // would otherwise stay allocated.
            std::mem::take(&mut *pending).into_values().collect()
        };
        let (batch, counts) = {
            let now = Instant::now();
            let mut batch = Vec::with_capacity(pending.len());
            let mut counts = Vec::new();
            let mut by_shard: Vec<Vec<(FetchRecord, u64)>> = (0..SHARDS).map(|_| Vec::new()).collect();
            for (rec, fp) in pending {
                by_shard[shard(&rec.mac)].push((rec, fp));
            }
            for (shard, pending) in self.written.iter().zip(by_shard) {
                let mut written = shard.lock().unwrap_or_else(|p| p.into_inner());
                if written.len() > MAX_REMEMBERED / SHARDS {
                    written.clear();
                }
                // Quiet fetches never reach `pending` (see `record`): all of
                // these are news, with any quiet count since the last write.
                for (mut rec, fp) in pending {
                    if let Some(w) = written.get(&rec.mac) {
                        rec.count += w.unwritten;
                    }
                    written.insert(rec.mac, Written { fingerprint: fp, at: now, unwritten: 0, last_seen: rec.last_seen });
                    batch.push(rec);
                }
                for (mac, w) in written.iter_mut() {
                    if w.unwritten > 0 && now.duration_since(w.at) >= QUIET_WRITE_DELAY {
                        counts.push((*mac, w.unwritten, w.last_seen));
                        w.unwritten = 0;
                        w.at = now;
                    }
                }
            }
            (batch, counts)
        };
        let mut outage = None;
        if !batch.is_empty() {
            match store.record_fetches(&batch, unknown_cap).await {
                Err(e) if e.is_outage() => outage = Some(e),
                Err(e) => tracing::error!(error = %e, records = batch.len(), "could not record phone fetches"),
                Ok(_) => {}
            }
        }
        if !counts.is_empty() && outage.is_none() {
            match store.add_fetch_counts(&counts).await {
                Err(e) if e.is_outage() => outage = Some(e),
                Err(e) => tracing::error!(error = %e, records = counts.len(), "could not record phone fetch counts"),
                Ok(_) => {}
            }
        }
        let dropped = self.dropped.swap(0, std::sync::atomic::Ordering::Relaxed);
        if dropped > 0 {
            tracing::warn!(dropped, "fetch records dropped: the database did not keep up");
        }
        outage
    }

    /// Writes every quiet count now (at shutdown).
    async fn flush_all(&self, store: &Store, unknown_cap: i64) {
        if let Some(e) = self.flush(store, unknown_cap).await {
            tracing::error!(error = %e, "could not record phone fetches: the database is unavailable");
        }
        let mut counts: Vec<(Mac, i64, i64)> = Vec::new();
        for shard in &self.written {
            let mut written = shard.lock().unwrap_or_else(|p| p.into_inner());
            counts.extend(
                written
                    .iter_mut()
                    .filter(|(_, w)| w.unwritten > 0)
                    .map(|(mac, w)| (*mac, std::mem::take(&mut w.unwritten), w.last_seen)),
            );
        }
        if let Err(e) = store.add_fetch_counts(&counts).await {
            tracing::error!(error = %e, "could not record phone fetch counts");
        }
    }

    /// Flushes every `interval` until `stop` turns true, then once more.
    pub async fn run(self: Arc<Self>, store: Store, interval: Duration, unknown_cap: i64, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut backoff = Backoff::new("recording phone fetches");
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => break,
            }
            match self.flush(&store, unknown_cap).await {
                None => backoff.succeeded(),
                Some(e) => {
                    let wait = backoff.failed(&e);
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = stop.changed() => break,
                    }
                }
            }
        }
        self.flush_all(&store, unknown_cap).await;
    }
}
