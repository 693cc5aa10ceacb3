//! Keys the server draws once and every node shares, kept in the database
//! (which holds the secrets they protect anyway).

use super::{Result, Store};
use crate::model::Secret;

impl Store {
    /// The key named `name`: drawn at random on first use; on several nodes
    /// at once the first insert wins and every node reads that one.
    pub async fn shared_key(&self, name: &str) -> Result<Secret> {
        sqlx::query("INSERT INTO server_key (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .bind(Secret::generate(43).expose())
            .execute(self.pool())
            .await?;
        let value: String =
            sqlx::query_scalar("SELECT value FROM server_key WHERE name = $1").bind(name).fetch_one(self.pool()).await?;
        Ok(Secret::new(value))
    }
}
