//! Handset status rows, written by the voice platform's reports. A handset
//! without a row is `Unavailable`.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{audit, now_ms, Actor, Result, Store, StoreError};
use crate::model::status::parse_registration_address;
use crate::model::{CallDirection, CallState, HandsetStatus, Transport};

/// Reads the status columns of a `handset LEFT JOIN handset_status` row.
pub(crate) fn status_from_row(row: &AnyRow) -> Result<HandsetStatus> {
    let Some(state) = row.try_get::<Option<String>, _>("state")? else {
        return Ok(HandsetStatus::default());
    };
    let corrupt = |e: crate::model::FieldError| StoreError::Corrupt(e.to_string());
    let direction: String = row.try_get("calldirection")?;
    let address: String = row.try_get("registration_address")?;
    let transport: String = row.try_get("registration_transport")?;
    Ok(HandsetStatus {
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
    })
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
        let row = sqlx::query(
            "SELECT state, calldirection, calldurationseconds, otherpartyphonenumber, app, registration_address, \
             registration_transport, user_agent, registered_until, updated_at AS status_updated_at \
             FROM handset_status WHERE handset_id = $1",
        )
        .bind(handset.id)
        .fetch_optional(&mut *tx)
        .await?;
        let current = row.as_ref().map(status_from_row).transpose()?.unwrap_or_default();
        let mut new = merge(current.clone());
        new.updated_at = now_ms();
        sqlx::query(
            "INSERT INTO handset_status (handset_id, state, calldirection, calldurationseconds, otherpartyphonenumber, app, \
             registration_address, registration_transport, user_agent, registered_until, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (handset_id) DO UPDATE SET state = excluded.state, calldirection = excluded.calldirection, \
             calldurationseconds = excluded.calldurationseconds, otherpartyphonenumber = excluded.otherpartyphonenumber, \
             app = excluded.app, registration_address = excluded.registration_address, \
             registration_transport = excluded.registration_transport, user_agent = excluded.user_agent, \
             registered_until = excluded.registered_until, updated_at = excluded.updated_at",
        )
        .bind(handset.id)
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
        .execute(&mut *tx)
        .await?;
        if (new.registration, new.registration_transport) != (current.registration, current.registration_transport) {
            audit::record(&mut tx, actor, domain_id, "status.registration", Some(ext), &["registrationaddress"]).await?;
        }
        tx.commit().await?;
        Ok(new)
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
