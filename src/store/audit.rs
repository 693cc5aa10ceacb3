//! The audit log: who changed what, when and from where. Rows are written in
//! the same transaction as the change they describe. Field *names* only:
//! values (passwords above all) never reach this table.

use std::net::IpAddr;

use sqlx::{Any, Row, Transaction};

use super::{now_ms, Result, Store};
use crate::model::AuditEntry;

/// Who is making a change, for the audit row.
#[derive(Clone, Debug)]
pub struct Actor {
    /// `name@domain` of an API user, or `cli` for the command line.
    pub login: String,
    pub client_ip: Option<IpAddr>,
}

impl Actor {
    pub fn cli() -> Self {
        Actor { login: format!("cli:{}", whoami()), client_ip: None }
    }
}

fn whoami() -> String {
    std::env::var("USER").unwrap_or_else(|_| "unknown".into())
}

const SELECT_AUDIT: &str = "SELECT id, at, actor, action, extensionnumber, client_ip, fields FROM audit";

fn entry_from_row(r: &sqlx::any::AnyRow) -> Result<AuditEntry> {
    Ok(AuditEntry {
        id: r.try_get("id")?,
        at: r.try_get("at")?,
        actor: r.try_get("actor")?,
        action: r.try_get("action")?,
        extensionnumber: r.try_get("extensionnumber")?,
        client_ip: r.try_get("client_ip")?,
        fields: r.try_get("fields")?,
    })
}

pub(crate) async fn record(
    tx: &mut Transaction<'_, Any>,
    actor: &Actor,
    domain_id: i64,
    action: &str,
    extensionnumber: Option<&str>,
    fields: &[&str],
) -> Result<()> {
    sqlx::query(
        "INSERT INTO audit (at, actor, domain_id, action, extensionnumber, client_ip, fields) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(now_ms())
    .bind(&actor.login)
    .bind(domain_id)
    .bind(action)
    .bind(extensionnumber)
    .bind(actor.client_ip.map(|ip| ip.to_string()).unwrap_or_default())
    .bind(fields.join(","))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl Store {
    /// Audits something that changed nothing (a refused request worth
    /// knowing about), in a transaction of its own.
    pub async fn record_audit(
        &self,
        actor: &Actor,
        domain_id: i64,
        action: &str,
        ext: Option<&str>,
        fields: &[&str],
    ) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        record(&mut tx, actor, domain_id, action, ext, fields).await?;
        tx.commit().await?;
        Ok(())
    }

    /// A domain's audit rows in id order, after `after_id`.
    pub async fn list_audit(&self, domain_id: i64, after_id: i64, limit: i64) -> Result<Vec<AuditEntry>> {
        let rows = sqlx::query(&format!("{SELECT_AUDIT} WHERE domain_id = $1 AND id > $2 ORDER BY id LIMIT $3"))
            .bind(domain_id)
            .bind(after_id)
            .bind(limit)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(entry_from_row).collect()
    }

    /// The newest `limit` audit rows of one handset, newest first.
    pub async fn handset_audit(&self, domain_id: i64, ext: &str, limit: i64) -> Result<Vec<AuditEntry>> {
        let rows =
            sqlx::query(&format!("{SELECT_AUDIT} WHERE domain_id = $1 AND extensionnumber = $2 ORDER BY id DESC LIMIT $3"))
                .bind(domain_id)
                .bind(ext)
                .bind(limit)
                .fetch_all(self.pool())
                .await?;
        rows.iter().map(entry_from_row).collect()
    }
}
