//! Call actions (migration 0016): each call-control request, queued with its
//! audit row in one transaction, and its outcome written back.

use std::net::IpAddr;

use sqlx::Row;

use super::{audit, now_ms, Actor, Result, Store, StoreError};
use crate::model::call::{CallAction, CallActionState};

/// One call action as its `GET` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallActionRow {
    pub id: String,
    pub extension: String,
    pub action: CallAction,
    pub target: String,
    pub state: CallActionState,
    pub error: String,
    pub actor: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What the phone's own remote control needs beyond the handset record:
/// where it last fetched from, and as which family.
#[derive(Clone, Debug, Default)]
pub struct LastFetchPlace {
    pub ip: Option<IpAddr>,
    pub vendor: Option<String>,
}

impl Store {
    /// Queues a call action and audits it (who, which action, the number or
    /// supervisor: numbers are not secrets) in one transaction.
    #[allow(clippy::too_many_arguments)]
    pub async fn queue_call_action(
        &self,
        actor: &Actor,
        domain_id: i64,
        handset_id: i64,
        ext: &str,
        id: &str,
        action: CallAction,
        target: &str,
    ) -> Result<CallActionRow> {
        let now = now_ms();
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "INSERT INTO call_action (id, domain_id, handset_id, action, target, state, error, actor, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, 'queued', '', $6, $7, $7)",
        )
        .bind(id)
        .bind(domain_id)
        .bind(handset_id)
        .bind(action.as_str())
        .bind(target)
        .bind(&actor.login)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let target_field = format!("target:{target}");
        audit::record(&mut tx, actor, domain_id, action.as_str(), Some(ext), &[target_field.as_str(), &format!("action:{id}")])
            .await?;
        tx.commit().await?;
        Ok(CallActionRow {
            id: id.to_string(),
            extension: ext.to_string(),
            action,
            target: target.to_string(),
            state: CallActionState::Queued,
            error: String::new(),
            actor: actor.login.clone(),
            created_at: now,
            updated_at: now,
        })
    }

    /// Writes where an action stands (`error` empty but for `failed`).
    pub async fn set_call_action_state(&self, id: &str, state: CallActionState, error: &str) -> Result<()> {
        sqlx::query("UPDATE call_action SET state = $1, error = $2, updated_at = $3 WHERE id = $4")
            .bind(state.as_str())
            .bind(error)
            .bind(now_ms())
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// A call action of `domain_id` (another domain's is not found).
    pub async fn call_action(&self, domain_id: i64, id: &str) -> Result<Option<CallActionRow>> {
        let row = sqlx::query(
            "SELECT c.id, h.extensionnumber, c.action, c.target, c.state, c.error, c.actor, c.created_at, c.updated_at \
             FROM call_action c JOIN handset h ON h.id = c.handset_id WHERE c.domain_id = $1 AND c.id = $2",
        )
        .bind(domain_id)
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        let Some(r) = row else { return Ok(None) };
        let action: String = r.try_get("action")?;
        let state: String = r.try_get("state")?;
        Ok(Some(CallActionRow {
            id: r.try_get("id")?,
            extension: r.try_get("extensionnumber")?,
            action: CallAction::parse(&action).ok_or_else(|| StoreError::Corrupt(format!("call action {action:?}")))?,
            target: r.try_get("target")?,
            state: CallActionState::parse(&state).ok_or_else(|| StoreError::Corrupt(format!("call state {state:?}")))?,
            error: r.try_get("error")?,
            actor: r.try_get("actor")?,
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
        }))
    }

    /// Where and as what the handset's phone last fetched its file.
    pub async fn last_fetch_place(&self, handset_id: i64) -> Result<LastFetchPlace> {
        let row = sqlx::query(
            "SELECT dv.ip, dv.vendor FROM device dv JOIN handset h ON dv.mac = h.mac AND dv.handset_id = h.id WHERE h.id = $1",
        )
        .bind(handset_id)
        .fetch_optional(self.pool())
        .await?;
        let Some(r) = row else { return Ok(LastFetchPlace::default()) };
        let ip: Option<String> = r.try_get("ip")?;
        Ok(LastFetchPlace { ip: ip.and_then(|s| s.parse().ok()), vendor: r.try_get("vendor")? })
    }
}
