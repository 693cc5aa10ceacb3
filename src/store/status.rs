//! Handset status rows, written by the voice platform's reports. A handset
//! without a row is `Unavailable`.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{audit, now_ms, Actor, Result, Store, StoreError};
use crate::model::status::parse_registration_address;
use crate::model::status::CallTrack;
use crate::model::{CallDirection, CallState, HandsetStatus, PhoneReport, Transport};

/// The `handset_status` columns [`status_from_row`] reads (the table as `s`
/// is not needed: the names are unique in the joins that use them).
pub(crate) const STATUS_COLUMNS: &str = "state, calldirection, calldurationseconds, otherpartyphonenumber, app, \
    registration_address, registration_transport, user_agent, registered_until, updated_at AS status_updated_at, \
    call_id, call_stage, call_started_at, event_at, ended_calls, dnd, forward";

/// Reads the status columns of a `handset LEFT JOIN handset_status` row.
pub(crate) fn status_from_row(row: &AnyRow) -> Result<HandsetStatus> {
    let Some(state) = row.try_get::<Option<String>, _>("state")? else {
        return Ok(HandsetStatus::default());
    };
    let corrupt = |e: crate::model::FieldError| StoreError::Corrupt(e.to_string());
    let direction: String = row.try_get("calldirection")?;
    let address: String = row.try_get("registration_address")?;
    let transport: String = row.try_get("registration_transport")?;
    let ended: String = row.try_get("ended_calls")?;
    let call = CallTrack {
        call_id: row.try_get("call_id")?,
        stage: row.try_get("call_stage")?,
        started_at: row.try_get("call_started_at")?,
        event_at: row.try_get("event_at")?,
        ended: ended.split(' ').filter(|c| !c.is_empty()).map(str::to_string).collect(),
        dnd: row.try_get::<i64, _>("dnd")? != 0,
        forward: row.try_get::<i64, _>("forward")? != 0,
    };
    let mut status = HandsetStatus {
        state: CallState::parse(&state).map_err(corrupt)?,
        calldirection: CallDirection::parse(&direction).map_err(corrupt)?,
        calldurationseconds: row.try_get("calldurationseconds")?,
        otherpartyphonenumber: row.try_get("otherpartyphonenumber")?,
        app: row.try_get("app")?,
        registration: parse_registration_address(&address).map_err(corrupt)?,
        registration_transport: Transport::parse("registration_transport", &transport).map_err(corrupt)?,
        user_agent: row.try_get("user_agent")?,
        registered_until: row.try_get("registered_until")?,
        updated_at: row.try_get("status_updated_at")?,
        call,
    };
    // While on a call the phone's events report, the duration counts now.
    status.calldurationseconds = status.duration_at(now_ms());
    Ok(status)
}

/// Writes a handset's whole status row.
async fn write_status(tx: &mut sqlx::Transaction<'_, sqlx::Any>, handset_id: i64, new: &HandsetStatus) -> Result<()> {
    sqlx::query(
        "INSERT INTO handset_status (handset_id, state, calldirection, calldurationseconds, otherpartyphonenumber, app, \
         registration_address, registration_transport, user_agent, registered_until, updated_at, \
         call_id, call_stage, call_started_at, event_at, ended_calls, dnd, forward) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18) \
         ON CONFLICT (handset_id) DO UPDATE SET state = excluded.state, calldirection = excluded.calldirection, \
         calldurationseconds = excluded.calldurationseconds, otherpartyphonenumber = excluded.otherpartyphonenumber, \
         app = excluded.app, registration_address = excluded.registration_address, \
         registration_transport = excluded.registration_transport, user_agent = excluded.user_agent, \
         registered_until = excluded.registered_until, updated_at = excluded.updated_at, \
         call_id = excluded.call_id, call_stage = excluded.call_stage, call_started_at = excluded.call_started_at, \
         event_at = excluded.event_at, ended_calls = excluded.ended_calls, dnd = excluded.dnd, forward = excluded.forward",
    )
    .bind(handset_id)
    .bind(new.state.as_str())
    .bind(new.calldirection.as_str())
    .bind(new.calldurationseconds)
    .bind(&new.otherpartyphonenumber)
    .bind(&new.app)
    .bind(new.registration_address())
    .bind(new.registration_transport.as_str())
    .bind(&new.user_agent)
    .bind(new.registered_until)
    .bind(new.updated_at)
    .bind(&new.call.call_id)
    .bind(new.call.stage)
    .bind(new.call.started_at)
    .bind(new.call.event_at)
    .bind(new.call.ended.join(" "))
    .bind(i64::from(new.call.dnd))
    .bind(i64::from(new.call.forward))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn read_status(tx: &mut sqlx::Transaction<'_, sqlx::Any>, handset_id: i64) -> Result<HandsetStatus> {
    let row = sqlx::query(&format!("SELECT {STATUS_COLUMNS} FROM handset_status WHERE handset_id = $1"))
        .bind(handset_id)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(row.as_ref().map(status_from_row).transpose()?.unwrap_or_default())
}

impl Store {
    /// Stores a handset's status as reported. `merge` receives the current
    /// status (or the default) and returns the new one, so partial reports
    /// keep what they do not mention. A change of registration address is
    /// audited: it decides where pushes go.
    pub async fn report_status(
        &self,
        actor: &Actor,
        domain_id: i64,
        ext: &str,
        merge: impl FnOnce(HandsetStatus) -> HandsetStatus,
    ) -> Result<HandsetStatus> {
        let mut tx = self.pool().begin().await?;
        let handset = super::handsets::lock_handset(&mut tx, domain_id, ext).await?;
        let current = read_status(&mut tx, handset.id).await?;
        let mut new = merge(current.clone());
        new.updated_at = now_ms();
        write_status(&mut tx, handset.id, &new).await?;
        if (new.registration, new.registration_transport) != (current.registration, current.registration_transport) {
            audit::record(&mut tx, actor, domain_id, "status.registration", Some(ext), &["registrationaddress"]).await?;
        }
        tx.commit().await?;
        Ok(new)
    }

    /// Applies an event a phone reported under its event token, in one
    /// transaction under the handset's row lock. `report` gets the
    /// handset's domain id and whether the other party (`remote`) is an
    /// extension of it, and returns the report. `None` when no handset has
    /// the token; else the status now and whether the event changed it
    /// (one that came too late is ignored).
    pub async fn phone_event(
        &self,
        token: &str,
        remote: &str,
        report: impl FnOnce(bool) -> PhoneReport,
    ) -> Result<Option<(i64, HandsetStatus, bool)>> {
        if token.is_empty() {
            return Ok(None);
        }
        let mut tx = self.pool().begin().await?;
        // The row lock first (see handsets::lock_handset), then the row.
        let locked =
            sqlx::query("UPDATE handset SET revision = revision WHERE event_token = $1").bind(token).execute(&mut *tx).await?;
        if locked.rows_affected() == 0 {
            return Ok(None);
        }
        let row = sqlx::query("SELECT id, domain_id FROM handset WHERE event_token = $1").bind(token).fetch_one(&mut *tx).await?;
        let (id, domain_id): (i64, i64) = (row.try_get("id")?, row.try_get("domain_id")?);
        let internal = !remote.is_empty()
            && sqlx::query("SELECT id FROM handset WHERE domain_id = $1 AND extensionnumber = $2 AND id <> $3")
                .bind(domain_id)
                .bind(remote)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
        let current = read_status(&mut tx, id).await?;
        let (mut new, changed) = current.apply_event(&report(internal));
        if changed {
            new.updated_at = now_ms();
            write_status(&mut tx, id, &new).await?;
            tx.commit().await?;
        }
        Ok(Some((domain_id, new, changed)))
    }

    /// Whether a handset has this event token.
    pub async fn handset_by_event_token(&self, token: &str) -> Result<bool> {
        if token.is_empty() {
            return Ok(false);
        }
        let row = sqlx::query("SELECT id FROM handset WHERE event_token = $1").bind(token).fetch_optional(self.pool()).await?;
        Ok(row.is_some())
    }

    /// The domain of the handset a registrar's report is about: extension `user` in the
    /// domain whose SIP server is `host`, among the domains `scope` allows
    /// (one, or all for a superuser). `None` when there is none, or more
    /// than one (tenants sharing a SIP server name cannot be told apart by
    /// an address of record).
    pub async fn domain_of_address_of_record(&self, scope: Option<i64>, user: &str, host: &str) -> Result<Option<i64>> {
        let rows = sqlx::query(
            "SELECT h.domain_id FROM handset h JOIN domain d ON d.id = h.domain_id \
             WHERE h.extensionnumber = $1 AND lower(d.sip_server) = $2 AND ($3 = 0 OR d.id = $4) LIMIT 2",
        )
        .bind(user)
        .bind(host)
        .bind(i64::from(scope.is_some()))
        .bind(scope.unwrap_or(0))
        .fetch_all(self.pool())
        .await?;
        match rows.as_slice() {
            [one] => Ok(Some(one.try_get("domain_id")?)),
            _ => Ok(None),
        }
    }
}
