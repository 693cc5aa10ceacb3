//! The push outbox: which handsets need a NOTIFY for which revision, and
//! how the last push went. Rows are written in the transactions that bump
//! revisions; push workers lease due rows, so on PostgreSQL several nodes
//! can work the same table and each push is sent by one of them.
//!
//! A lease names its holder (`claimed_by`, the store's node id) and the
//! attempt's Call-ID (`call_id`, drawn at the attempt's first lease). The
//! holder renews its leases while it works (`renew_push_leases`), so a
//! short lease (`push_lease`) is enough for a live node and a dead node's
//! pushes come back soon; a node that takes one over sends the same
//! Call-ID, and only the holder may record an outcome. ARCHITECTURE.md
//! ("Every push is sent once") says what this guarantees and what not.

use std::net::SocketAddr;

use sqlx::{Any, Row, Transaction};

use super::{now_ms, Backend, Result, Store};
use crate::model::relay::PushRelay;
use crate::model::status::parse_registration_address;
use crate::model::{Mac, PushState, Secret, Transport};

pub(crate) const UPSERT: &str = "ON CONFLICT (handset_id) DO UPDATE SET revision = excluded.revision, \
    reboot = excluded.reboot, state = 'pending', attempts = 0, next_attempt = excluded.next_attempt, \
    claimed_until = 0, claimed_by = '', call_id = '', last_error = '', updated_at = excluded.updated_at";

/// Queues a push of `revision` for a handset (replacing any older one).
pub(crate) async fn enqueue(tx: &mut Transaction<'_, Any>, handset_id: i64, revision: i64, reboot: bool) -> Result<()> {
    let now = now_ms();
    sqlx::query(&format!(
        "INSERT INTO push (handset_id, revision, reboot, state, attempts, next_attempt, claimed_until, updated_at) \
         VALUES ($1, $2, $3, 'pending', 0, $4, 0, $4) {UPSERT}"
    ))
    .bind(handset_id)
    .bind(revision)
    .bind(i64::from(reboot))
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Queues a push for every phone (handset with a MAC) of a domain.
pub(crate) async fn enqueue_domain(tx: &mut Transaction<'_, Any>, domain_id: i64) -> Result<()> {
    let now = now_ms();
    sqlx::query(&format!(
        "INSERT INTO push (handset_id, revision, reboot, state, attempts, next_attempt, claimed_until, updated_at) \
         SELECT id, revision, 0, 'pending', 0, $1, 0, $1 FROM handset WHERE domain_id = $2 AND mac IS NOT NULL {UPSERT}"
    ))
    .bind(now)
    .bind(domain_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A leased push, with what sending it needs.
#[derive(Clone, Debug)]
pub struct PushJob {
    pub handset_id: i64,
    pub revision: i64,
    pub reboot: bool,
    pub attempts: i64,
    pub domain_id: i64,
    pub extension: String,
    pub password: Secret,
    pub mac: Option<Mac>,
    pub model: Option<String>,
    /// Where the platform says the phone registered from.
    pub registration: Option<(SocketAddr, Transport)>,
    /// The address of the phone's last config fetch.
    pub fetch_ip: Option<std::net::IpAddr>,
    /// The family the phone's last fetch was identified as.
    pub fetch_vendor: Option<String>,
    /// How the domain's pushes travel.
    pub relay: PushRelay,
    pub domain: String,
    /// The domain's SIP server: the host part of the phone's address of
    /// record, and the registrar relay's default.
    pub sip_server: String,
    pub sip_port: u16,
    /// The Call-ID of this attempt's NOTIFY: the same whichever node sends
    /// it, so a node taking over from one that died repeats its request.
    pub call_id: String,
}

/// How a push attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PushOutcome {
    Sent,
    /// Try again at `next_attempt` (Unix ms).
    Retry {
        error: String,
        next_attempt: i64,
    },
    Failed(String),
    NoTarget,
}

/// A leased push's row with what sending it needs, by handset.
const SELECT_JOB: &str =
    "SELECT p.handset_id, p.revision, p.reboot, p.attempts, p.call_id, h.domain_id, h.extensionnumber, h.password, \
    h.mac, h.model, s.registration_address, s.registration_transport, dv.ip AS fetch_ip, dv.vendor AS fetch_vendor, \
    d.name AS domain, d.sip_server, d.sip_port, d.push_backend, d.ami_host, d.ami_port, d.ami_user, d.ami_secret, \
    d.webhook_url, d.webhook_secret, d.registrar_relay, d.registrar_transport \
    FROM push p JOIN handset h ON h.id = p.handset_id JOIN domain d ON d.id = h.domain_id \
    LEFT JOIN handset_status s ON s.handset_id = h.id \
    LEFT JOIN device dv ON dv.mac = h.mac AND dv.handset_id = h.id";

impl Store {
    /// Leases up to `limit` due pushes for `lease_ms` to this node and
    /// reads them, in two statements whatever the count. On PostgreSQL rows
    /// another node holds are skipped (`FOR UPDATE SKIP LOCKED`); SQLite has
    /// one writer, so one statement is enough there. A row without a Call-ID
    /// gets a fresh one; a row taken over from a node whose lease ran out
    /// keeps the one that node may have sent.
    pub async fn claim_pushes(&self, limit: i64, lease_ms: i64) -> Result<Vec<PushJob>> {
        let now = now_ms();
        let lock = match self.backend() {
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        // 96 random bits per lease, then the handset: unique per attempt.
        let call_id_prefix = format!("{}-", hex::encode(rand::random::<[u8; 12]>()));
        let claimed: Vec<i64> = sqlx::query_scalar(&format!(
            "UPDATE push SET claimed_until = $1, claimed_by = $4, \
             call_id = CASE WHEN call_id = '' THEN CAST($5 AS TEXT) || CAST(handset_id AS TEXT) ELSE call_id END \
             WHERE handset_id IN (SELECT handset_id FROM push \
             WHERE state = 'pending' AND next_attempt <= $2 AND claimed_until < $2 ORDER BY next_attempt LIMIT $3 {lock}) \
             RETURNING handset_id"
        ))
        .bind(now + lease_ms)
        .bind(now)
        .bind(limit)
        .bind(self.node_id())
        .bind(call_id_prefix)
        .fetch_all(self.pool())
        .await?;
        if claimed.is_empty() {
            return Ok(Vec::new());
        }
        let ids = (1..=claimed.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
        let sql = format!("{SELECT_JOB} WHERE p.handset_id IN ({ids})");
        let mut q = sqlx::query(&sql);
        for id in &claimed {
            q = q.bind(id);
        }
        q.fetch_all(self.pool()).await?.iter().map(push_job).collect()
    }

    /// Extends this node's leases of pushes it has not finished to `lease_ms`
    /// from now: a live node keeps what it holds however long a NOTIFY
    /// takes, and only a dead node's leases run out. Returns how many.
    pub async fn renew_push_leases(&self, lease_ms: i64) -> Result<u64> {
        let done =
            sqlx::query("UPDATE push SET claimed_until = $1 WHERE claimed_by = $2 AND claimed_until > 0 AND state = 'pending'")
                .bind(now_ms() + lease_ms)
                .bind(self.node_id())
                .execute(self.pool())
                .await?;
        Ok(done.rows_affected())
    }

    /// When the next pending push that nobody holds falls due (Unix ms),
    /// if any is queued.
    pub async fn next_push_due(&self) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar("SELECT MIN(next_attempt) FROM push WHERE state = 'pending' AND claimed_until < $1")
            .bind(now_ms())
            .fetch_one(self.pool())
            .await?)
    }

    /// Records how a push of `revision` ended, unless a newer revision was
    /// queued meanwhile (that one is still pending and must be sent) or
    /// this node no longer holds the lease (another node took it over and
    /// records its own outcome). False when nothing was recorded.
    pub async fn finish_push(&self, handset_id: i64, revision: i64, outcome: &PushOutcome) -> Result<bool> {
        let now = now_ms();
        let (state, error, next, attempt) = match outcome {
            PushOutcome::Sent => (PushState::Sent, String::new(), now, 1),
            PushOutcome::Retry { error, next_attempt } => (PushState::Pending, error.clone(), *next_attempt, 1),
            PushOutcome::Failed(error) => (PushState::Failed, error.clone(), now, 1),
            PushOutcome::NoTarget => (PushState::NoTarget, "no registration address and no config fetch yet".to_string(), now, 0),
        };
        let done = sqlx::query(
            "UPDATE push SET state = $1, last_error = $2, next_attempt = $3, attempts = attempts + $4, claimed_until = 0, \
             call_id = '', last_push_at = CASE WHEN $5 = 1 THEN $6 ELSE last_push_at END, updated_at = $6 \
             WHERE handset_id = $7 AND revision = $8 AND claimed_by = $9",
        )
        .bind(state.as_str())
        .bind(error)
        .bind(next)
        .bind(attempt)
        .bind(i64::from(attempt == 1))
        .bind(now)
        .bind(handset_id)
        .bind(revision)
        .bind(self.node_id())
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Gives back the leases of pushes this node will not finish (it is
    /// stopping), so the next start, or another node, sends them at once
    /// (with the same Call-ID: the NOTIFY may have gone out).
    pub async fn release_pushes(&self, handset_ids: &[i64]) -> Result<()> {
        for chunk in handset_ids.chunks(500) {
            let ids = (2..=chunk.len() + 1).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
            let sql = format!(
                "UPDATE push SET claimed_until = 0 WHERE state = 'pending' AND claimed_by = $1 AND handset_id IN ({ids})"
            );
            let mut q = sqlx::query(&sql).bind(self.node_id());
            for id in chunk {
                q = q.bind(id);
            }
            q.execute(self.pool()).await?;
        }
        Ok(())
    }

    /// Queues a manual resync of a handset at its current revision.
    pub async fn request_resync(&self, actor: &super::Actor, domain_id: i64, ext: &str, reboot: bool) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        let h = super::handsets::lock_handset(&mut tx, domain_id, ext).await?;
        enqueue(&mut tx, h.id, h.revision, reboot).await?;
        super::audit::record(&mut tx, actor, domain_id, if reboot { "handset.reboot" } else { "handset.resync" }, Some(ext), &[])
            .await?;
        tx.commit().await?;
        self.wake_pushes();
        Ok(())
    }
}

fn push_job(r: &sqlx::any::AnyRow) -> Result<PushJob> {
    let registration = match r.try_get::<Option<String>, _>("registration_address")? {
        Some(a) => parse_registration_address(&a).ok().flatten().map(|addr| {
            let t = r.try_get::<Option<String>, _>("registration_transport").ok().flatten().unwrap_or_default();
            (addr, Transport::parse("transport", &t).unwrap_or(Transport::Udp))
        }),
        None => None,
    };
    Ok(PushJob {
        handset_id: r.try_get("handset_id")?,
        revision: r.try_get("revision")?,
        reboot: r.try_get::<i64, _>("reboot")? != 0,
        attempts: r.try_get("attempts")?,
        domain_id: r.try_get("domain_id")?,
        extension: r.try_get("extensionnumber")?,
        password: Secret::new(r.try_get::<String, _>("password")?),
        mac: r.try_get::<Option<String>, _>("mac")?.and_then(|m| m.parse().ok()),
        model: r.try_get("model")?,
        registration,
        fetch_ip: r.try_get::<Option<String>, _>("fetch_ip")?.and_then(|ip| ip.parse().ok()),
        fetch_vendor: r.try_get("fetch_vendor")?,
        relay: super::domains::relay_from_row(r, "")?.relay().map_err(|e| super::StoreError::Corrupt(e.to_string()))?,
        sip_server: r.try_get("sip_server")?,
        sip_port: u16::try_from(r.try_get::<i64, _>("sip_port")?).unwrap_or(5060),
        domain: r.try_get("domain")?,
        call_id: r.try_get("call_id")?,
    })
}
