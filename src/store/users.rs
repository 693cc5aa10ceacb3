//! API users (`name@domain`), their roles and password hashes.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{audit, now_ms, Actor, Result, Store, StoreError};
use crate::model::{ApiUser, Role};

/// A user's columns (`u`, with its domain `d`), for `user_from_row`.
macro_rules! user_columns {
    () => {
        "u.id, u.name, u.domain_id, d.name AS domain, u.role, u.superuser, u.password_hash"
    };
}
pub(crate) const USER_COLUMNS: &str = user_columns!();
const SELECT: &str = concat!("SELECT ", user_columns!(), " FROM api_user u JOIN domain d ON d.id = u.domain_id");

pub(crate) fn user_from_row(row: &AnyRow) -> Result<ApiUser> {
    let role: String = row.try_get("role")?;
    Ok(ApiUser {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        domain_id: row.try_get("domain_id")?,
        domain: row.try_get("domain")?,
        role: Role::parse(&role).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        superuser: row.try_get::<i64, _>("superuser")? != 0,
        password_hash: row.try_get("password_hash")?,
    })
}

impl Store {
    pub async fn user_by_login(&self, name: &str, domain: &str) -> Result<Option<ApiUser>> {
        let row = sqlx::query(&format!("{SELECT} WHERE u.name = $1 AND d.name = $2"))
            .bind(name)
            .bind(domain)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    pub async fn list_users(&self) -> Result<Vec<ApiUser>> {
        let rows = sqlx::query(&format!("{SELECT} ORDER BY d.name, u.name")).fetch_all(self.pool()).await?;
        rows.iter().map(user_from_row).collect()
    }

    pub async fn count_users(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM api_user").fetch_one(self.pool()).await?)
    }

    /// Creates a user with an already computed password hash.
    pub async fn create_user(
        &self,
        actor: &Actor,
        name: &str,
        domain: &str,
        role: Role,
        superuser: bool,
        password_hash: &str,
    ) -> Result<ApiUser> {
        let d = self.domain_by_name(domain).await?.ok_or(StoreError::NotFound("Domain not found"))?;
        let now = now_ms();
        let mut tx = self.pool().begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO api_user (domain_id, name, password_hash, role, superuser, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING id",
        )
        .bind(d.id)
        .bind(name)
        .bind(password_hash)
        .bind(role.as_str())
        .bind(i64::from(superuser))
        .bind(now)
        .fetch_one(&mut *tx)
        .await;
        let id: i64 = match inserted {
            Ok(row) => row.try_get("id")?,
            Err(e) if e.as_database_error().is_some_and(|d| d.is_unique_violation()) => {
                return Err(StoreError::Conflict(format!("user {name}@{domain} exists already")))
            }
            Err(e) => return Err(e.into()),
        };
        audit::record(&mut tx, actor, d.id, "user.create", None, &["name", "role"]).await?;
        tx.commit().await?;
        Ok(ApiUser {
            id,
            name: name.into(),
            domain_id: d.id,
            domain: d.name,
            role,
            superuser,
            password_hash: password_hash.into(),
        })
    }

    pub async fn set_user_password(&self, actor: &Actor, name: &str, domain: &str, password_hash: &str) -> Result<()> {
        let user = self.user_by_login(name, domain).await?.ok_or(StoreError::NotFound("User not found"))?;
        let mut tx = self.pool().begin().await?;
        sqlx::query("UPDATE api_user SET password_hash = $1, updated_at = $2 WHERE id = $3")
            .bind(password_hash)
            .bind(now_ms())
            .bind(user.id)
            .execute(&mut *tx)
            .await?;
        // A new password ends the user's web sessions, as it ends Basic auth.
        sqlx::query("DELETE FROM admin_session WHERE user_id = $1").bind(user.id).execute(&mut *tx).await?;
        audit::record(&mut tx, actor, user.domain_id, "user.passwd", None, &["password"]).await?;
        tx.commit().await?;
        Ok(())
    }
}
