//! The server's Prometheus metrics: one registry per server (tests run
//! several servers in one process), every family registered at start with
//! every label set it will have, so that recording a fetch is an index into
//! a table and an atomic add: no label string is built, hashed or allocated
//! on the request path. Histograms take one uncontended lock per
//! observation (prometheus-client's). Values that already exist elsewhere
//! (open connections, the database pool) are gauges the monitoring listener
//! sets when it is scraped.
//!
//! Names are `autoprov_*`, with the unit in the name (`_seconds`) and
//! counters ending in `_total` (Prometheus's naming conventions,
//! <https://prometheus.io/docs/practices/naming/>). Encoded in the text
//! format 0.0.4, which Prometheus scrapes and `promtool check metrics`
//! reads.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// The `Content-Type` of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The `family` label of a request no vendor family was identified for
/// (a bad name, a banned source, a name no family serves).
pub const UNIDENTIFIED: &str = "unidentified";

/// How a phone asked for its file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FetchProtocol {
    Http,
    Https,
    Tftp,
}

impl FetchProtocol {
    const ALL: [FetchProtocol; 3] = [FetchProtocol::Http, FetchProtocol::Https, FetchProtocol::Tftp];

    fn label(self) -> &'static str {
        match self {
            FetchProtocol::Http => "http",
            FetchProtocol::Https => "https",
            FetchProtocol::Tftp => "tftp",
        }
    }
}

/// What a fetch came to: the outcomes the provisioner tells apart (its log
/// line's `result`), and HTTP's 304.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FetchResult {
    Ok,
    /// HTTP 304: the phone has the file already.
    NotModified,
    NotFound,
    /// No proof of the device (HTTP 401).
    Unauthorized,
    /// A proof for another phone, or a domain that wants a certificate.
    Forbidden,
    /// Refused by the scan guard.
    Banned,
    BadName,
    Error,
}

impl FetchResult {
    const ALL: [FetchResult; 8] = [
        FetchResult::Ok,
        FetchResult::NotModified,
        FetchResult::NotFound,
        FetchResult::Unauthorized,
        FetchResult::Forbidden,
        FetchResult::Banned,
        FetchResult::BadName,
        FetchResult::Error,
    ];

    fn label(self) -> &'static str {
        match self {
            FetchResult::Ok => "ok",
            FetchResult::NotModified => "not_modified",
            FetchResult::NotFound => "not_found",
            FetchResult::Unauthorized => "unauthorized",
            FetchResult::Forbidden => "forbidden",
            FetchResult::Banned => "banned",
            FetchResult::BadName => "bad_name",
            FetchResult::Error => "error",
        }
    }
}

/// What a push attempt came to (`store::push::PushOutcome`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushResult {
    Sent,
    /// Not reached this time; tried again later.
    Retry,
    /// Not reached after the last attempt.
    Failed,
    /// The phone has neither registered nor fetched: nowhere to send it.
    NoTarget,
}

impl PushResult {
    const ALL: [PushResult; 4] = [PushResult::Sent, PushResult::Retry, PushResult::Failed, PushResult::NoTarget];

    fn label(self) -> &'static str {
        match self {
            PushResult::Sent => "sent",
            PushResult::Retry => "retry",
            PushResult::Failed => "failed",
            PushResult::NoTarget => "no_target",
        }
    }
}

/// One fetch under way: where its count goes and when it started. Made by
/// [`Metrics::fetch_started`], counted by [`Metrics::fetched`].
#[derive(Clone, Copy, Debug)]
pub struct FetchTally {
    /// The first of its (family, protocol)'s result counters.
    slot: usize,
    protocol: FetchProtocol,
    started: Instant,
}

impl FetchTally {
    /// The same fetch, counted for `family` (a name from the list given to
    /// [`Metrics::new`]; any other name counts as [`UNIDENTIFIED`]).
    pub fn of_family(self, metrics: &Metrics, family: &str) -> FetchTally {
        FetchTally { slot: metrics.slot(metrics.family_index(family), self.protocol), ..self }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FetchLabels {
    family: String,
    protocol: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProtocolLabel {
    protocol: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

/// Pushes waiting for their phone's fetch, at most this many (a push whose
/// phone never fetches is forgotten after [`AWAITING_MAX_AGE`]).
const AWAITING_CAP: usize = 100_000;
const AWAITING_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// Every metric of one server.
pub struct Metrics {
    registry: Registry,
    /// Family names, in the order of `fetches`; [`UNIDENTIFIED`] last.
    families: Vec<String>,
    /// Indexed by `slot(family, protocol) + result`.
    fetches: Vec<Counter>,
    fetch_seconds: [Histogram; 3],
    pushes: [Counter; 4],
    push_applied_seconds: Histogram,
    /// Handset id → (revision pushed, when its first NOTIFY went out), until
    /// the phone fetches that revision.
    awaiting: Mutex<HashMap<i64, (i64, Instant)>>,
    /// `awaiting`'s length, read without its lock on every phone fetch.
    awaiting_len: AtomicUsize,
    scan_bans: Counter,
    unknown_device_requests: Counter,
    tftp_transfers: Counter,
    tftp_in_flight: Gauge,
    /// Set at scrape time by the monitoring listener.
    pub http_connections: Gauge,
    pub db_pool_connections: Gauge,
    pub db_pool_idle_connections: Gauge,
    pub db_pool_max_connections: Gauge,
    pub rendered_cache_bytes: Gauge,
    pub rendered_cache_limit_bytes: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").field("families", &self.families).finish_non_exhaustive()
    }
}

impl Metrics {
    /// A registry with every metric, fetches counted for `families` (the
    /// vendor profiles' names) and [`UNIDENTIFIED`].
    pub fn new<'a>(families: impl IntoIterator<Item = &'a str>) -> Metrics {
        let mut registry = Registry::with_prefix("autoprov");
        let mut names: Vec<String> = families.into_iter().map(str::to_string).collect();
        names.retain(|n| n != UNIDENTIFIED);
        names.push(UNIDENTIFIED.to_string());

        let fetch_family = Family::<FetchLabels, Counter>::default();
        let mut fetches = Vec::with_capacity(names.len() * FetchProtocol::ALL.len() * FetchResult::ALL.len());
        for family in &names {
            for protocol in FetchProtocol::ALL {
                for result in FetchResult::ALL {
                    let labels = FetchLabels { family: family.clone(), protocol: protocol.label(), result: result.label() };
                    fetches.push(fetch_family.get_or_create(&labels).clone());
                }
            }
        }
        registry.register(
            "fetches",
            "Phones' requests for files (HTTP, HTTPS, TFTP) by vendor family, protocol and result",
            fetch_family,
        );

        // From a cached common file (~100 µs) to a slow database (seconds).
        let fetch_hist = Family::<ProtocolLabel, Histogram>::new_with_constructor(|| {
            Histogram::new([0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0])
        });
        let fetch_seconds = FetchProtocol::ALL.map(|p| fetch_hist.get_or_create(&ProtocolLabel { protocol: p.label() }).clone());
        registry.register_with_unit(
            "fetch_duration",
            "Time to answer a phone's request for a file, by protocol (TFTP: until the first answer, not the transfer)",
            Unit::Seconds,
            fetch_hist,
        );

        let push_family = Family::<ResultLabel, Counter>::default();
        let pushes = PushResult::ALL.map(|r| push_family.get_or_create(&ResultLabel { result: r.label() }).clone());
        registry.register("push_attempts", "Push attempts (NOTIFY or relay request) by outcome", push_family);

        // A phone that resyncs at once takes well under a second; one that
        // waits for its call to end, minutes.
        let push_applied_seconds = Histogram::new([0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0]);
        registry.register_with_unit(
            "push_applied",
            "Time from a push's first NOTIFY (or relay request) to its phone's fetch of the pushed revision, \
             when this node did both",
            Unit::Seconds,
            push_applied_seconds.clone(),
        );

        let scan_bans = Counter::default();
        registry.register("scan_guard_bans", "Source addresses banned by the provisioning scan guard", scan_bans.clone());
        let unknown_device_requests = Counter::default();
        registry.register(
            "unknown_device_requests",
            "Requests for the file of a MAC no handset has, recorded for installers to claim",
            unknown_device_requests.clone(),
        );
        let tftp_transfers = Counter::default();
        registry.register("tftp_transfers", "TFTP read transfers started", tftp_transfers.clone());
        let tftp_in_flight = Gauge::default();
        registry.register("tftp_transfers_in_flight", "TFTP read transfers under way", tftp_in_flight.clone());
        let http_connections = Gauge::default();
        registry.register(
            "http_connections_open",
            "Open HTTP and HTTPS connections of phones, the API and the UI",
            http_connections.clone(),
        );
        let db_pool_connections = Gauge::default();
        registry.register("db_pool_connections", "Database connections open in the pool", db_pool_connections.clone());
        let db_pool_idle_connections = Gauge::default();
        registry.register(
            "db_pool_idle_connections",
            "Database connections open in the pool and idle",
            db_pool_idle_connections.clone(),
        );
        let db_pool_max_connections = Gauge::default();
        registry.register("db_pool_max_connections", "Database connections the pool may open", db_pool_max_connections.clone());
        let rendered_cache_bytes = Gauge::default();
        registry.register(
            "rendered_cache_bytes",
            "Bytes held by phones' files kept as rendered, with their ETags",
            rendered_cache_bytes.clone(),
        );
        let rendered_cache_limit_bytes = Gauge::default();
        registry.register(
            "rendered_cache_limit_bytes",
            "The budget of files kept as rendered (rendered_cache_mib)",
            rendered_cache_limit_bytes.clone(),
        );

        Metrics {
            registry,
            families: names,
            fetches,
            fetch_seconds,
            pushes,
            push_applied_seconds,
            awaiting: Mutex::default(),
            awaiting_len: AtomicUsize::new(0),
            scan_bans,
            unknown_device_requests,
            tftp_transfers,
            tftp_in_flight,
            http_connections,
            db_pool_connections,
            db_pool_idle_connections,
            db_pool_max_connections,
            rendered_cache_bytes,
            rendered_cache_limit_bytes,
        }
    }

    /// Everything, in the Prometheus text format 0.0.4 ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(32 * 1024);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }

    fn family_index(&self, name: &str) -> usize {
        // A dozen short names: a scan is quicker than hashing.
        self.families.iter().position(|f| f == name).unwrap_or(self.families.len() - 1)
    }

    fn slot(&self, family: usize, protocol: FetchProtocol) -> usize {
        let p = FetchProtocol::ALL.iter().position(|x| *x == protocol).unwrap_or(0);
        (family * FetchProtocol::ALL.len() + p) * FetchResult::ALL.len()
    }

    /// A fetch starts (its family not known yet: [`FetchTally::of_family`]).
    pub fn fetch_started(&self, protocol: FetchProtocol) -> FetchTally {
        FetchTally { slot: self.slot(self.families.len() - 1, protocol), protocol, started: Instant::now() }
    }

    /// A fetch is answered: counted, and its time observed.
    pub fn fetched(&self, tally: FetchTally, result: FetchResult) {
        let r = FetchResult::ALL.iter().position(|x| *x == result).unwrap_or(0);
        self.fetches[tally.slot + r].inc();
        let p = FetchProtocol::ALL.iter().position(|x| *x == tally.protocol).unwrap_or(0);
        self.fetch_seconds[p].observe(tally.started.elapsed().as_secs_f64());
    }

    /// A push attempt for `handset_id`'s `revision` starts now: the clock
    /// of its time to applied starts with the first attempt of a revision.
    pub fn push_attempt(&self, handset_id: i64, revision: i64) {
        let now = Instant::now();
        let mut awaiting = self.awaiting.lock().unwrap_or_else(|p| p.into_inner());
        if awaiting.get(&handset_id).is_some_and(|(r, _)| *r == revision) {
            return;
        }
        if awaiting.len() >= AWAITING_CAP && !awaiting.contains_key(&handset_id) {
            awaiting.retain(|_, (_, at)| now.duration_since(*at) < AWAITING_MAX_AGE);
            if awaiting.len() >= AWAITING_CAP {
                return;
            }
        }
        awaiting.insert(handset_id, (revision, now));
        self.awaiting_len.store(awaiting.len(), Ordering::Relaxed);
    }

    /// A push attempt ended with `result`; one that will not be tried
    /// again stops its clock.
    pub fn push_result(&self, handset_id: i64, revision: i64, result: PushResult) {
        let i = PushResult::ALL.iter().position(|x| *x == result).unwrap_or(0);
        self.pushes[i].inc();
        if matches!(result, PushResult::Failed | PushResult::NoTarget) {
            let mut awaiting = self.awaiting.lock().unwrap_or_else(|p| p.into_inner());
            if awaiting.get(&handset_id).is_some_and(|(r, _)| *r == revision) {
                awaiting.remove(&handset_id);
            }
            self.awaiting_len.store(awaiting.len(), Ordering::Relaxed);
        }
    }

    /// A phone fetched `handset_id`'s file at `revision`: a push of that
    /// revision (or an older one) is applied.
    pub fn phone_fetched(&self, handset_id: i64, revision: i64) {
        if self.awaiting_len.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut awaiting = self.awaiting.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((pushed, at)) = awaiting.get(&handset_id).copied() {
            if pushed <= revision {
                awaiting.remove(&handset_id);
                self.awaiting_len.store(awaiting.len(), Ordering::Relaxed);
                drop(awaiting);
                self.push_applied_seconds.observe(at.elapsed().as_secs_f64());
            }
        }
    }

    /// The scan guard banned a source.
    pub fn scan_ban(&self) {
        self.scan_bans.inc();
    }

    /// A request for an unknown MAC's file was recorded.
    pub fn unknown_device_request(&self) {
        self.unknown_device_requests.inc();
    }

    /// A TFTP transfer starts; it is in flight until the guard is dropped.
    pub fn tftp_transfer(&self) -> InFlight {
        self.tftp_transfers.inc();
        self.tftp_in_flight.inc();
        InFlight(self.tftp_in_flight.clone())
    }
}

/// Counts one thing in flight until dropped.
#[derive(Debug)]
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the sample whose name and labels start `prefix`.
    fn sample(text: &str, prefix: &str) -> f64 {
        let line = text.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("no {prefix} in:\n{text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    }

    #[test]
    fn every_label_set_is_there_from_the_start_and_counts_where_it_should() {
        let m = Metrics::new(["acme", "zeta"]);
        let text = m.encode();
        // 3 families (with unidentified) × 3 protocols × 8 results.
        assert_eq!(text.lines().filter(|l| l.starts_with("autoprov_fetches_total{")).count(), 72, "{text}");
        let t = m.fetch_started(FetchProtocol::Https).of_family(&m, "zeta");
        m.fetched(t, FetchResult::NotModified);
        m.fetched(m.fetch_started(FetchProtocol::Tftp).of_family(&m, "nobody's"), FetchResult::BadName);
        m.fetched(m.fetch_started(FetchProtocol::Http), FetchResult::Banned);
        let text = m.encode();
        let f = |family: &str, protocol: &str, result: &str| {
            sample(&text, &format!("autoprov_fetches_total{{family=\"{family}\",protocol=\"{protocol}\",result=\"{result}\"}}"))
        };
        assert_eq!(f("zeta", "https", "not_modified"), 1.0);
        assert_eq!(f("zeta", "https", "ok"), 0.0);
        assert_eq!(f("acme", "https", "not_modified"), 0.0);
        assert_eq!(f(UNIDENTIFIED, "tftp", "bad_name"), 1.0);
        assert_eq!(f(UNIDENTIFIED, "http", "banned"), 1.0);
        assert_eq!(sample(&text, "autoprov_fetch_duration_seconds_count{protocol=\"https\"}"), 1.0);
        assert_eq!(sample(&text, "autoprov_fetch_duration_seconds_count{protocol=\"tftp\"}"), 1.0);
        assert!(text.contains("# TYPE autoprov_fetches_total counter"), "{text}");
    }

    #[test]
    fn a_push_is_applied_when_its_phone_fetches_its_revision() {
        let m = Metrics::new([]);
        m.phone_fetched(1, 5);
        m.push_attempt(1, 6);
        m.push_result(1, 6, PushResult::Retry);
        m.push_attempt(1, 6);
        m.push_result(1, 6, PushResult::Sent);
        m.phone_fetched(1, 5);
        assert_eq!(sample(&m.encode(), "autoprov_push_applied_seconds_count"), 0.0, "an older revision applies nothing");
        m.phone_fetched(1, 6);
        m.phone_fetched(1, 6);
        let text = m.encode();
        assert_eq!(sample(&text, "autoprov_push_applied_seconds_count"), 1.0, "once per push");
        assert_eq!(sample(&text, "autoprov_push_attempts_total{result=\"retry\"}"), 1.0);
        assert_eq!(sample(&text, "autoprov_push_attempts_total{result=\"sent\"}"), 1.0);
        // A push that gives up stops its clock.
        m.push_attempt(2, 1);
        m.push_result(2, 1, PushResult::Failed);
        m.phone_fetched(2, 1);
        assert_eq!(sample(&m.encode(), "autoprov_push_applied_seconds_count"), 1.0);
    }

    #[test]
    fn tftp_transfers_are_in_flight_until_they_end() {
        let m = Metrics::new([]);
        let a = m.tftp_transfer();
        let b = m.tftp_transfer();
        drop(a);
        let text = m.encode();
        assert_eq!(sample(&text, "autoprov_tftp_transfers_total"), 2.0);
        assert_eq!(sample(&text, "autoprov_tftp_transfers_in_flight"), 1.0);
        drop(b);
        assert_eq!(sample(&m.encode(), "autoprov_tftp_transfers_in_flight"), 0.0);
    }
}
