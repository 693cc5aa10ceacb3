//! Push: every change reaches the phone. The worker leases due rows of the
//! outbox (`store::push`, written in the transaction of each change), finds
//! where the phone is, sends it its vendor's resync NOTIFY (`crate::sip`),
//! answering a digest challenge with the handset's own credentials, and
//! records the outcome: `sent` on a 2xx, a retry with exponential backoff
//! otherwise, `failed` after the last attempt, `no-target` when the phone has
//! neither registered nor fetched. "Applied" is not stored: a handset is
//! applied once its phone fetched the current revision (Handset Select).
//!
//! Sends are paced (a site's phones are not all told to resync at once) and
//! run concurrently, so a silent phone never delays the others.
//!
//! A domain may relay its pushes instead, for phones that accept a NOTIFY
//! only from their registrar and phones behind NAT (which drops what a
//! phone did not ask for): through the registrar (`registrar`: a NOTIFY to
//! the phone's address of record, which the registrar delivers over the
//! phone's registration), or through the voice platform: Asterisk AMI
//! (`ami`) or a signed webhook (`webhook`).

pub mod ami;
pub mod calls;
pub mod target;
pub mod webhook;

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::metrics::{Metrics, PushResult};
use crate::model::relay::PushRelay;
use crate::model::Transport;
use crate::profiles::{LiveProfiles, Profile, Profiles};
use crate::sip::{self, Credentials, NotifyParams, UdpEndpoint};
use crate::store::outage::Backoff;
use crate::store::push::{PushJob, PushOutcome};
use crate::store::{now_ms, Store};

/// How pushes are paced and retried.
#[derive(Clone, Debug)]
pub struct PushPolicy {
    /// NOTIFYs per second at most; 0 lifts the limit.
    pub rate_per_second: u32,
    /// Attempts before a push is `failed`.
    pub max_attempts: u32,
    /// The first retry waits this long; each next one twice as long (at most
    /// ten minutes).
    pub retry_base: Duration,
    /// SIP timers (Timer E/F).
    pub timers: sip::Timers,
    /// Hold every push (nothing is sent while true): for maintenance, and
    /// for the crash test.
    pub hold: bool,
    /// Let pushes go to loopback, link-local, multicast and this server's
    /// own addresses (see [`target`]).
    pub allow_internal_targets: bool,
    /// PEM CA certificates trusted for SIP over TLS to registrars, beside
    /// the public roots.
    pub sip_tls_ca: Option<std::path::PathBuf>,
    /// How long a lease lasts unrenewed: the holder renews it every third
    /// of this while it works, so this is how soon another node takes over
    /// the pushes of a node that died.
    pub lease: Duration,
}

impl Default for PushPolicy {
    fn default() -> Self {
        PushPolicy {
            rate_per_second: 200,
            max_attempts: 5,
            retry_base: Duration::from_secs(2),
            timers: sip::Timers::default(),
            hold: false,
            allow_internal_targets: false,
            sip_tls_ca: None,
            lease: Duration::from_secs(10),
        }
    }
}

/// Why a push attempt did not reach the phone. The text is the push's
/// `lasterror`, which the tenant sees: a relay that could not be reached
/// or logged into is told in one sentence whatever the reason (refused,
/// silent, not Asterisk, TLS, an HTTP error), so that relay settings do not
/// make a port scanner; [`PushError::detail`] goes to the server log.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("{target}: {outcome}")]
    Refused { target: SocketAddr, outcome: sip::NotifyOutcome },
    #[error("{target}: {error}")]
    Sip { target: SocketAddr, error: sip::SipError },
    #[error("the phone registered over TLS: use a relay (registrar, ami or webhook)")]
    OverTls,
    #[error("registrar relay: SIP over TLS could not be set up (see the start-up log)")]
    TlsUnavailable,
    #[error("registrar relay: the domain has no SIP server, so its phones have no address of record")]
    NoSipServer,
    #[error("AMI relay: no answer or no login (the server log has the details)")]
    AmiUnreachable(ami::AmiError),
    /// Asterisk, logged in, refused this push: its own words.
    #[error("AMI PJSIPNotify: {0}")]
    AmiRefused(String),
    #[error("webhook relay: the event was not taken (the server log has the details)")]
    Webhook(webhook::WebhookError),
    #[error("the webhook relay could not be set up (see the start-up log)")]
    WebhookUnavailable,
    #[error(transparent)]
    Target(#[from] target::TargetError),
}

impl From<ami::AmiError> for PushError {
    fn from(e: ami::AmiError) -> Self {
        match e {
            ami::AmiError::Refused(message) => PushError::AmiRefused(message),
            other => PushError::AmiUnreachable(other),
        }
    }
}

impl From<webhook::WebhookError> for PushError {
    fn from(e: webhook::WebhookError) -> Self {
        match e {
            webhook::WebhookError::Target(t) => PushError::Target(t),
            other => PushError::Webhook(other),
        }
    }
}

impl PushError {
    /// Everything about the failure, for the server's operator.
    pub fn detail(&self) -> String {
        match self {
            PushError::AmiUnreachable(e) => e.to_string(),
            PushError::Webhook(e) => e.to_string(),
            other => other.to_string(),
        }
    }
}

/// Leased rows per claim, and pushes in flight at once.
const CLAIM_BATCH: i64 = 500;
/// How often an idle worker looks for pushes other nodes queued.
const IDLE_POLL_MS: i64 = 1000;
const MAX_IN_FLIGHT: usize = 4096;

pub struct PushWorker {
    store: Store,
    profiles: LiveProfiles,
    endpoint: Arc<UdpEndpoint>,
    policy: PushPolicy,
    limiter: Option<DefaultDirectRateLimiter>,
    in_flight: Arc<Semaphore>,
    /// Handsets whose push this worker leased and has not finished.
    leased: std::sync::Mutex<std::collections::HashSet<i64>>,
    ami: ami::AmiRelays,
    webhook: Option<webhook::WebhookRelay>,
    /// SIP over TLS to registrars; `None` when its CA file is unusable
    /// (said at start).
    tls: Option<sip::TlsClient>,
    targets: Arc<target::TargetPolicy>,
    metrics: Arc<Metrics>,
}

impl PushWorker {
    /// Outcomes, and the time from a push to its phone's fetch, are
    /// counted in `metrics`.
    pub fn new(
        store: Store,
        profiles: LiveProfiles,
        endpoint: Arc<UdpEndpoint>,
        policy: PushPolicy,
        metrics: Arc<Metrics>,
    ) -> Self {
        let limiter = NonZeroU32::new(policy.rate_per_second).map(|r| RateLimiter::direct(Quota::per_second(r)));
        let targets = Arc::new(target::TargetPolicy::new(policy.allow_internal_targets));
        let webhook = webhook::WebhookRelay::new(targets.clone())
            .map_err(|e| tracing::error!(error = %e, "webhook relay unavailable"))
            .ok();
        let tls = sip::TlsClient::new(policy.sip_tls_ca.as_deref())
            .map_err(|e| tracing::error!(error = %e, "SIP over TLS to registrars unavailable"))
            .ok();
        PushWorker {
            tls,
            store,
            profiles,
            endpoint,
            policy,
            limiter,
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            leased: Default::default(),
            ami: ami::AmiRelays::new(targets.clone()),
            webhook,
            targets,
            metrics,
        }
    }

    /// Works the outbox until `stop` turns true. Then whatever is in flight
    /// is abandoned, not waited for (a NOTIFY may wait 32 s for its answer,
    /// and a stop must be quick): its leases are given back, so the next
    /// start sends it at once. A push interrupted by a crash is leased
    /// again when its lease runs out.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        if self.policy.hold {
            tracing::warn!("pushes are held (push hold is set): nothing will be sent");
            let _ = stop.changed().await;
            return;
        }
        // Short leases, renewed while this node lives (see `store::push`).
        let lease_ms = (self.policy.lease.as_millis() as i64).max(300);
        let renewing = tokio::spawn(renew_leases(self.store.clone(), lease_ms));
        let mut backoff = Backoff::new("leasing pushes");
        let mut tasks = JoinSet::new();
        while !*stop.borrow() {
            let jobs = match self.store.claim_pushes(CLAIM_BATCH, lease_ms).await {
                Ok(jobs) => {
                    backoff.succeeded();
                    jobs
                }
                Err(e) if e.is_outage() => {
                    let wait = backoff.failed(&e);
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => continue,
                        _ = stop.changed() => break,
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not lease pushes");
                    Vec::new()
                }
            };
            if jobs.is_empty() {
                // Idle: wake for this process's own changes and other nodes'
                // notices at once, for the next retry when it falls due, and
                // every second for what other nodes queued (no notices on
                // SQLite, or a notice lost in an outage).
                let due = match self.store.next_push_due().await {
                    Ok(Some(at)) => Duration::from_millis((at - now_ms()).clamp(0, IDLE_POLL_MS) as u64),
                    _ => Duration::from_millis(IDLE_POLL_MS as u64),
                };
                tokio::select! {
                    _ = self.store.pushes_queued() => continue,
                    _ = tokio::time::sleep(due) => continue,
                    _ = stop.changed() => break,
                }
            }
            self.leased.lock().unwrap_or_else(|p| p.into_inner()).extend(jobs.iter().map(|j| j.handset_id));
            for job in jobs {
                let turn = async {
                    if let Some(limiter) = &self.limiter {
                        limiter.until_ready().await;
                    }
                    self.in_flight.clone().acquire_owned().await
                };
                let permit = tokio::select! {
                    permit = turn => permit,
                    _ = stop.changed() => break,
                };
                let Ok(permit) = permit else { break };
                let worker = self.clone();
                tasks.spawn(async move {
                    worker.deliver(job).await;
                    drop(permit);
                });
                while tasks.try_join_next().is_some() {}
            }
        }
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        renewing.abort();
        let unfinished: Vec<i64> = self.leased.lock().unwrap_or_else(|p| p.into_inner()).drain().collect();
        if !unfinished.is_empty() {
            tracing::info!(pushes = unfinished.len(), "stopping: unsent pushes are left for the next start");
            if let Err(e) = self.store.release_pushes(&unfinished).await {
                tracing::warn!(error = %e, "could not give back leased pushes; they come back when their lease runs out");
            }
        }
    }

    async fn deliver(&self, job: PushJob) {
        self.metrics.push_attempt(job.handset_id, job.revision);
        let outcome = self.attempt(&job).await;
        let result = match &outcome {
            PushOutcome::Sent => PushResult::Sent,
            PushOutcome::Retry { .. } => PushResult::Retry,
            PushOutcome::Failed(_) => PushResult::Failed,
            PushOutcome::NoTarget => PushResult::NoTarget,
        };
        self.metrics.push_result(job.handset_id, job.revision, result);
        match &outcome {
            PushOutcome::Sent => {
                tracing::info!(handset = job.handset_id, ext = %job.extension, revision = job.revision, "push sent")
            }
            other => {
                tracing::info!(handset = job.handset_id, ext = %job.extension, revision = job.revision, outcome = ?other, "push not sent")
            }
        }
        // The outcome is known: through an outage, keep trying to record it
        // (the lease is renewed meanwhile, once the database is back). The
        // leasing loop says the database is gone; each push says nothing.
        let mut wait = Duration::from_millis(125);
        loop {
            match self.store.finish_push(job.handset_id, job.revision, &outcome).await {
                Ok(true) => {}
                Ok(false) => tracing::debug!(
                    handset = job.handset_id,
                    revision = job.revision,
                    "push outcome not recorded: a newer revision was queued, or another node took the lease over"
                ),
                Err(e) if e.is_outage() => {
                    tracing::debug!(error = %e, handset = job.handset_id, "push outcome waits for the database");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(1));
                    continue;
                }
                Err(e) => tracing::error!(error = %e, handset = job.handset_id, "could not record a push outcome"),
            }
            break;
        }
        self.leased.lock().unwrap_or_else(|p| p.into_inner()).remove(&job.handset_id);
        // A retry was queued, or a newer revision waits: look again.
        self.store.wake_pushes();
    }

    async fn attempt(&self, job: &PushJob) -> PushOutcome {
        let event = self.event(job);
        let result = match &job.relay {
            PushRelay::Direct => match self.notify_directly(job, &event).await {
                Some(result) => result,
                None => return PushOutcome::NoTarget,
            },
            PushRelay::Ami { host, port, user, secret } => {
                self.ami.notify(host, *port, user, secret, &job.extension, &event).await.map_err(PushError::from)
            }
            PushRelay::Registrar { relay, transport } => self.notify_via_registrar(job, relay.as_ref(), *transport, &event).await,
            PushRelay::Webhook { url, secret } => match &self.webhook {
                Some(relay) => relay.post(url, secret, &webhook_event(job, &event)).await.map_err(PushError::from),
                None => Err(PushError::WebhookUnavailable),
            },
        };
        let error = match result {
            Ok(()) => return PushOutcome::Sent,
            Err(e) => e,
        };
        tracing::debug!(handset = job.handset_id, error = %error.detail(), "push attempt failed");
        let attempts = job.attempts + 1;
        if attempts >= i64::from(self.policy.max_attempts) {
            PushOutcome::Failed(format!("{error} (after {attempts} attempts)"))
        } else {
            let wait =
                self.policy.retry_base.saturating_mul(1 << (job.attempts.clamp(0, 16) as u32)).min(Duration::from_secs(600));
            PushOutcome::Retry { error: error.to_string(), next_attempt: now_ms() + wait.as_millis() as i64 }
        }
    }

    /// Our own SIP NOTIFY to the phone; `None` when there is nowhere to send it.
    async fn notify_directly(&self, job: &PushJob, event: &str) -> Option<Result<(), PushError>> {
        let (target, transport) = self.target(job)?;
        if let Err(e) = self.targets.check(&target.ip().to_string(), target.ip()) {
            return Some(Err(e.into()));
        }
        let transport = match transport {
            Transport::Udp => sip::Transport::Udp,
            Transport::Tcp => sip::Transport::Tcp,
            Transport::Tls => return Some(Err(PushError::OverTls)),
        };
        Some(self.send(job, event, (target, transport, None), None).await)
    }

    /// The NOTIFY to the phone's address of record, sent to its registrar
    /// (`relay`, else the domain's SIP server), which delivers it to the
    /// registered contact over the phone's own NAT binding: the one path
    /// into an office whose NAT drops what its phones did not ask for.
    async fn notify_via_registrar(
        &self,
        job: &PushJob,
        relay: Option<&(String, u16)>,
        transport: Transport,
        event: &str,
    ) -> Result<(), PushError> {
        if job.sip_server.is_empty() {
            return Err(PushError::NoSipServer);
        }
        let (host, port) = relay.map_or((job.sip_server.as_str(), job.sip_port), |(h, p)| (h.as_str(), *p));
        let (transport, tls) = match transport {
            Transport::Udp => (sip::Transport::Udp, None),
            Transport::Tcp => (sip::Transport::Tcp, None),
            // The registrar's certificate is checked for the name it is
            // configured by.
            Transport::Tls => (sip::Transport::Tls, Some((self.tls.as_ref().ok_or(PushError::TlsUnavailable)?, host))),
        };
        let target = self.targets.resolve(host, port).await?[0];
        self.send(job, event, (target, transport, tls), Some(&job.sip_server)).await
    }

    /// One NOTIFY for `job` to `to` (address, transport, TLS client and
    /// name), answering a challenge with the handset's own credentials.
    async fn send(
        &self,
        job: &PushJob,
        event: &str,
        to: (SocketAddr, sip::Transport, Option<(&sip::TlsClient, &str)>),
        address_of_record: Option<&str>,
    ) -> Result<(), PushError> {
        let (target, transport, tls) = to;
        let params = NotifyParams {
            target,
            transport,
            extension: &job.extension,
            event,
            credentials: Some(Credentials { username: &job.extension, password: job.password.expose() }),
            address_of_record,
            tls,
            call_id: Some(&job.call_id).filter(|id| !id.is_empty()).map(|id| id.as_str()),
        };
        match sip::send_notify(&self.endpoint, &params, &self.policy.timers).await {
            Ok(outcome) if outcome.is_success() => Ok(()),
            Ok(outcome) => Err(PushError::Refused { target, outcome }),
            Err(error) => Err(PushError::Sip { target, error }),
        }
    }

    /// The registration address the platform reported, else the address of
    /// the phone's last fetch on its family's SIP port.
    fn target(&self, job: &PushJob) -> Option<(SocketAddr, Transport)> {
        if let Some(reg) = job.registration {
            return Some(reg);
        }
        let ip = job.fetch_ip?;
        let port = family(&self.profiles.current(), job).map(|p| p.sip_port).unwrap_or(5060);
        Some((SocketAddr::new(ip, port), Transport::Udp))
    }

    /// The family's resync event (or its rebooting variant).
    fn event(&self, job: &PushJob) -> String {
        match family(&self.profiles.current(), job) {
            Some(p) if job.reboot => p.notify_reboot_event.clone(),
            Some(p) => p.notify_event.clone(),
            None => "check-sync".into(),
        }
    }
}

/// The phone's family by `Profiles::resolve` (no file or User-Agent here:
/// its handset's model, its last fetch's vendor, its OUI).
fn family<'p>(profiles: &'p Profiles, job: &PushJob) -> Option<&'p Profile> {
    profiles.resolve(&crate::profiles::Clues {
        model: job.model.as_deref(),
        last_vendor: job.fetch_vendor.as_deref(),
        mac: job.mac,
        ..Default::default()
    })
}

/// Renews this node's leases every third of a lease, for as long as the
/// worker runs (it aborts this task when it stops).
async fn renew_leases(store: Store, lease_ms: i64) {
    let mut tick = tokio::time::interval(Duration::from_millis((lease_ms / 3).max(100) as u64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut backoff = Backoff::new("renewing push leases");
    loop {
        tick.tick().await;
        match store.renew_push_leases(lease_ms).await {
            Ok(_) => backoff.succeeded(),
            Err(e) => {
                tokio::time::sleep(backoff.failed(&e)).await;
            }
        }
    }
}

/// The JSON event a webhook relay receives.
fn webhook_event(job: &PushJob, event: &str) -> serde_json::Value {
    serde_json::json!({
        "type": if job.reboot { "reboot" } else { "resync" },
        "domain": job.domain,
        "extensionnumber": job.extension,
        "mac": job.mac.map(|m| m.lower()).unwrap_or_default(),
        "revision": job.revision,
        // The same for a repeat of this attempt (by another node after a
        // crash): the receiver's key to take it once.
        "pushid": job.call_id,
        "event": event,
        "registrationaddress": job.registration.map(|(a, _)| a.to_string()).unwrap_or_default(),
    })
}
