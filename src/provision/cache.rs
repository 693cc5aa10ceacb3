//! The phones' records in memory, so a boot storm is served without a
//! database query per request.
//!
//! Entries are loaded on first use (start-up stays instant however many
//! handsets there are) and dropped when the change feed (`store::changes`)
//! says they changed: at once for changes made by this process (the store
//! counts its commits, and a lookup that sees a new count reads the feed
//! first), at once on another node's notice (PostgreSQL, `store::notices`)
//! and within the poll interval regardless, for changes made by other
//! processes or nodes. Each read of the feed overlaps the previous one by a few seconds,
//! so a transaction that committed out of order is not missed; entries are
//! also reloaded after `MAX_AGE` as a last resort.
//!
//! Each entry also holds the files rendered from its record
//! ([`super::rendered`]), so whatever drops or reloads the phone drops them
//! too; common files are kept beside, under the same memory budget.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::{watch, Mutex};

use super::rendered::{CommonBodies, PhoneBodies, RenderedBudget};
use crate::model::{Domain, Mac};
use crate::store::changes::{Change, FEED_OVERLAP_MS};
use crate::store::devices::PhoneRecord;
use crate::store::outage::Backoff;
use crate::store::{now_ms, Result, Store};

const MAX_AGE: Duration = Duration::from_secs(10 * 60);
/// Feed rows older than this are pruned.
const FEED_KEEP_MS: i64 = 10 * 60 * 1000;
/// Beyond this many phones the cache starts over (memory stays bounded:
/// at 250,000, a storm over a million handsets ended at 258–351 MB; the
/// goal is 300 MB with the kept files' budget inside it).
const MAX_ENTRIES: usize = 150_000;
/// Phones per query of the start-up warm-up.
const WARM_PAGE: i64 = 1000;

struct Entry {
    phone: Arc<PhoneRecord>,
    /// Made on the phone's first fetch (a warmed phone that never asks
    /// costs nothing here).
    bodies: OnceLock<Arc<PhoneBodies>>,
    loaded: Instant,
}

impl Entry {
    fn new(phone: Arc<PhoneRecord>, loaded: Instant) -> Entry {
        Entry { phone, bodies: OnceLock::new(), loaded }
    }

    fn bodies(&self, budget: &Arc<RenderedBudget>) -> Arc<PhoneBodies> {
        self.bodies.get_or_init(|| Arc::new(PhoneBodies::new(budget))).clone()
    }

    fn clear_bodies(&self) {
        if let Some(b) = self.bodies.get() {
            b.clear();
        }
    }
}

/// A phone as the cache has it: its record and, while the record is the
/// cache's current one, the files rendered from it.
#[derive(Clone, Debug)]
pub struct CachedPhone {
    pub record: Arc<PhoneRecord>,
    /// `None` when the record was read past an invalidation (it serves this
    /// request only, and nothing rendered from it is kept).
    pub bodies: Option<Arc<PhoneBodies>>,
}

/// The domain a provisioning token belongs to.
#[derive(Clone, Debug)]
pub struct Tenant {
    pub domain_id: i64,
    /// The domain's current token (what its configs name, even for a phone
    /// that came under the previous one).
    pub token: Arc<str>,
}

/// Every domain's tokens: token → (tenant, accepted until; `i64::MAX` for
/// a current token).
type TokenMap = HashMap<String, (Tenant, i64)>;

pub struct PhoneCache {
    phones: RwLock<HashMap<Mac, Entry>>,
    /// One shared copy of each domain's settings.
    domains: RwLock<HashMap<i64, Arc<Domain>>>,
    /// Bumped by every invalidation: a load that started before one must
    /// not insert what it read.
    generation: AtomicU64,
    /// The store's local change count when the feed was last read.
    synced_local: AtomicU64,
    /// When the last feed read started (Unix ms).
    last_read_ms: AtomicI64,
    reading: Mutex<()>,
    /// Loaded on first use and dropped with any domain change: domains are
    /// few and their tokens small, so a token lookup never queries.
    tokens: RwLock<Option<Arc<TokenMap>>>,
    /// The memory budget of every rendered body, and the profiles'
    /// generation they were rendered under.
    budget: Arc<RenderedBudget>,
    /// Common files as rendered.
    pub common: CommonBodies,
}

impl PhoneCache {
    pub fn new(store: &Store) -> Self {
        Self::with_rendered_budget(store, super::rendered::DEFAULT_BUDGET_BYTES)
    }

    /// A cache whose rendered files may hold `budget_bytes` in all.
    pub fn with_rendered_budget(store: &Store, budget_bytes: usize) -> Self {
        let budget = RenderedBudget::new(budget_bytes);
        PhoneCache {
            common: CommonBodies::new(&budget),
            budget,
            phones: RwLock::default(),
            domains: RwLock::default(),
            generation: AtomicU64::new(0),
            synced_local: AtomicU64::new(store.local_change_count()),
            last_read_ms: AtomicI64::new(now_ms()),
            reading: Mutex::new(()),
            tokens: RwLock::default(),
        }
    }

    /// The tenant whose provisioning token `token` is (or was, within its
    /// grace), if any.
    pub async fn tenant(&self, store: &Store, token: &str) -> Result<Option<Tenant>> {
        if !crate::model::access::plausible_token(token) {
            return Ok(None);
        }
        if store.local_change_count() != self.synced_local.load(Ordering::Acquire) {
            self.read_feed(store).await?;
        }
        let map = self.tokens.read().unwrap_or_else(|p| p.into_inner()).clone();
        let map = match map {
            Some(m) => m,
            None => {
                let generation = self.generation.load(Ordering::Acquire);
                let mut map = TokenMap::new();
                for (domain_id, access) in store.domain_tokens().await? {
                    let tenant = Tenant { domain_id, token: Arc::from(access.token.expose()) };
                    if !access.previous_token.expose().is_empty() {
                        map.insert(access.previous_token.expose().to_string(), (tenant.clone(), access.previous_until));
                    }
                    if !access.token.expose().is_empty() {
                        map.insert(access.token.expose().to_string(), (tenant, i64::MAX));
                    }
                }
                let map = Arc::new(map);
                if self.generation.load(Ordering::Acquire) == generation {
                    *self.tokens.write().unwrap_or_else(|p| p.into_inner()) = Some(map.clone());
                }
                map
            }
        };
        Ok(map.get(token).filter(|(_, until)| now_ms() < *until).map(|(t, _)| t.clone()))
    }

    /// The handset that owns `mac`, with its domain.
    pub async fn phone(&self, store: &Store, mac: &Mac) -> Result<Option<Arc<PhoneRecord>>> {
        Ok(self.cached_phone(store, mac).await?.map(|c| c.record))
    }

    /// The handset that owns `mac`, with its domain, and the files kept
    /// rendered from that record.
    pub async fn cached_phone(&self, store: &Store, mac: &Mac) -> Result<Option<CachedPhone>> {
        if store.local_change_count() != self.synced_local.load(Ordering::Acquire) {
            self.read_feed(store).await?;
        }
        {
            let phones = self.phones.read().unwrap_or_else(|p| p.into_inner());
            if let Some(e) = phones.get(mac).filter(|e| e.loaded.elapsed() < MAX_AGE) {
                return Ok(Some(CachedPhone { record: e.phone.clone(), bodies: Some(e.bodies(&self.budget)) }));
            }
        }
        let generation = self.generation.load(Ordering::Acquire);
        let Some(record) = store.handset_for_phone(mac).await? else { return Ok(None) };
        let record = Arc::new(self.slim(record));
        let mut phones = self.phones.write().unwrap_or_else(|p| p.into_inner());
        let mut bodies = None;
        if self.generation.load(Ordering::Acquire) == generation {
            if phones.len() >= MAX_ENTRIES {
                phones.clear();
            }
            let entry = Entry::new(record.clone(), Instant::now());
            bodies = Some(entry.bodies(&self.budget));
            phones.insert(*mac, entry);
        }
        Ok(Some(CachedPhone { record, bodies }))
    }

    /// The rendered files' memory budget (bytes used, limit).
    pub fn rendered_budget(&self) -> &Arc<RenderedBudget> {
        &self.budget
    }

    /// Drops every rendered file, per-phone and common: what they were
    /// rendered from beyond the phones' records changed. A profiles reload
    /// calls this after it has replaced the profiles (a fetch reads the
    /// generation before the profiles, so nothing rendered with the old
    /// ones is kept under the new generation). Phones' records stay.
    pub fn clear_rendered(&self) {
        self.budget.clear_rendered();
        for e in self.phones.read().unwrap_or_else(|p| p.into_inner()).values() {
            e.clear_bodies();
        }
        self.common.clear();
    }

    /// Drops the rendered files of entries older than the reload age (a
    /// phone that stopped asking gives its share of the budget back).
    fn sweep_rendered(&self) {
        for e in self.phones.read().unwrap_or_else(|p| p.into_inner()).values() {
            if e.loaded.elapsed() >= MAX_AGE {
                e.clear_bodies();
            }
        }
    }

    /// Loads every phone, page by page, so that a boot storm right after a
    /// start finds them in memory. Runs beside serving; a page that an
    /// invalidation overtook is skipped (its phones load on demand). Pages
    /// are small and it yields between them: a page is decoded in one poll,
    /// and pages of 5,000 held a worker long enough to push a page of
    /// Handset Search to 52–80 ms during a million-handset warm-up (12–21
    /// ms with pages of 1,000).
    pub async fn warm(&self, store: &Store) -> Result<usize> {
        let started = Instant::now();
        let mut after = String::new();
        let mut loaded = 0;
        loop {
            let generation = self.generation.load(Ordering::Acquire);
            let page = store.phones_after(&after, WARM_PAGE).await?;
            let Some(last) = page.last() else { break };
            after = last.handset.mac.map(|m| m.lower()).unwrap_or_default();
            let full = page.len() == WARM_PAGE as usize;
            let page: Vec<(Mac, Arc<PhoneRecord>)> =
                page.into_iter().filter_map(|r| Some((r.handset.mac?, Arc::new(self.slim(r))))).collect();
            {
                let mut phones = self.phones.write().unwrap_or_else(|p| p.into_inner());
                if self.generation.load(Ordering::Acquire) == generation && phones.len() + page.len() <= MAX_ENTRIES {
                    let now = Instant::now();
                    loaded += page.len();
                    for (mac, phone) in page {
                        phones.entry(mac).or_insert_with(|| Entry::new(phone, now));
                    }
                }
            }
            if !full {
                break;
            }
            tokio::task::yield_now().await;
        }
        tracing::info!(phones = loaded, ms = started.elapsed().as_millis() as u64, "provisioning cache warmed");
        Ok(loaded)
    }

    /// What a cached phone keeps: its domain shared with the other phones
    /// of the domain, and no notes or location (no config carries them).
    fn slim(&self, mut record: PhoneRecord) -> PhoneRecord {
        record.domain = self.shared_domain(record.domain);
        record.handset.notes = String::new();
        record.handset.location = String::new();
        record
    }

    fn shared_domain(&self, domain: Arc<Domain>) -> Arc<Domain> {
        let mut domains = self.domains.write().unwrap_or_else(|p| p.into_inner());
        match domains.get(&domain.id) {
            Some(known) if **known == *domain => known.clone(),
            _ => {
                domains.insert(domain.id, domain.clone());
                domain
            }
        }
    }

    /// Reads the change feed since the last read (with overlap) and drops
    /// what it names.
    pub async fn read_feed(&self, store: &Store) -> Result<()> {
        let _one_reader = self.reading.lock().await;
        let local = store.local_change_count();
        let started = now_ms();
        let since = self.last_read_ms.load(Ordering::Acquire) - FEED_OVERLAP_MS;
        let changes = store.changes_since(since).await?;
        if !changes.is_empty() {
            self.generation.fetch_add(1, Ordering::AcqRel);
            let mut phones = self.phones.write().unwrap_or_else(|p| p.into_inner());
            for change in &changes {
                match change {
                    Change::Phone(mac) => {
                        phones.remove(mac);
                    }
                    Change::Domain(id) => {
                        phones.retain(|_, e| e.phone.domain.id != *id);
                        self.domains.write().unwrap_or_else(|p| p.into_inner()).remove(id);
                        *self.tokens.write().unwrap_or_else(|p| p.into_inner()) = None;
                    }
                }
            }
        }
        self.last_read_ms.store(started, Ordering::Release);
        self.synced_local.store(local, Ordering::Release);
        Ok(())
    }

    /// Reads the feed when another node's notice comes (PostgreSQL) and
    /// every `interval` regardless (changes from other processes, notices
    /// lost in an outage), and prunes it every minute, until `stop` turns
    /// true. While the database is down it backs off, logging once.
    pub async fn run(self: Arc<Self>, store: Store, interval: Duration, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_prune = Instant::now();
        let mut backoff = Backoff::new("reading the config change feed");
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = store.changes_noticed() => {}
                _ = stop.changed() => return,
            }
            match self.read_feed(&store).await {
                Ok(()) => backoff.succeeded(),
                Err(e) if e.is_outage() => {
                    let wait = backoff.failed(&e);
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = stop.changed() => return,
                    }
                    continue;
                }
                Err(e) => tracing::warn!(error = %e, "could not read the config change feed"),
            }
            if last_prune.elapsed() > Duration::from_secs(60) {
                last_prune = Instant::now();
                self.sweep_rendered();
                if let Err(e) = store.prune_changes(now_ms() - FEED_KEEP_MS).await {
                    tracing::warn!(error = %e, "could not prune the config change feed");
                }
            }
        }
    }
}
