//! Admin web UI sessions. The cookie's token is random; the table holds its
//! SHA-256 only. A session ends at its expiry, at logout, or when the user's
//! password changes (see `users`).

use sqlx::Row;

use super::users::{user_from_row, USER_COLUMNS};
use super::{now_ms, Result, Store};
use crate::model::ApiUser;

/// A live session: who, in which domain, and the token its forms must carry.
#[derive(Clone, Debug)]
pub struct SessionRow {
    pub user: ApiUser,
    /// The domain the session acts in: the user's own, or for a superuser
    /// the one chosen in the UI.
    pub domain_id: i64,
    pub domain: String,
    pub csrf: String,
    pub expires_at: i64,
}

impl Store {
    pub async fn create_session(&self, token_hash: &str, user: &ApiUser, csrf: &str, lifetime_ms: i64) -> Result<()> {
        let now = now_ms();
        let mut tx = self.pool().begin().await?;
        // Expired sessions are swept here, where sessions are made: no timer needed.
        sqlx::query("DELETE FROM admin_session WHERE expires_at < $1").bind(now).execute(&mut *tx).await?;
        sqlx::query(
            "INSERT INTO admin_session (token_hash, user_id, domain_id, csrf, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(token_hash)
        .bind(user.id)
        .bind(user.domain_id)
        .bind(csrf)
        .bind(now)
        .bind(now + lifetime_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The live session of `token_hash`, if any.
    pub async fn session(&self, token_hash: &str) -> Result<Option<SessionRow>> {
        let sql = format!(
            "SELECT {USER_COLUMNS}, s.domain_id AS session_domain_id, sd.name AS session_domain, s.csrf, s.expires_at \
             FROM admin_session s JOIN api_user u ON u.id = s.user_id JOIN domain d ON d.id = u.domain_id \
             JOIN domain sd ON sd.id = s.domain_id WHERE s.token_hash = $1 AND s.expires_at > $2"
        );
        let Some(row) = sqlx::query(&sql).bind(token_hash).bind(now_ms()).fetch_optional(self.pool()).await? else {
            return Ok(None);
        };
        Ok(Some(SessionRow {
            user: user_from_row(&row)?,
            domain_id: row.try_get("session_domain_id")?,
            domain: row.try_get("session_domain")?,
            csrf: row.try_get("csrf")?,
            expires_at: row.try_get("expires_at")?,
        }))
    }

    /// A superuser's session switches to acting in another domain.
    pub async fn set_session_domain(&self, token_hash: &str, domain_id: i64) -> Result<()> {
        sqlx::query("UPDATE admin_session SET domain_id = $1 WHERE token_hash = $2")
            .bind(domain_id)
            .bind(token_hash)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    pub async fn delete_session(&self, token_hash: &str) -> Result<()> {
        sqlx::query("DELETE FROM admin_session WHERE token_hash = $1").bind(token_hash).execute(self.pool()).await?;
        Ok(())
    }
}
