//! Domains (tenants) and their phone-wide settings.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::changes::{self, Change};
use super::{audit, now_ms, Actor, Result, Store, StoreError};
use crate::model::access::{self, ProvisioningAccess};
use crate::model::domain::NON_CONFIG_FIELDS;
use crate::model::relay::RelaySettings;
use crate::model::settings;
use crate::model::{Domain, DomainChanges, Secret, Transport};

/// The domain's columns, in one place: plain here, prefixed where a join
/// reads them beside a handset's (see [`columns_as`]).
const COLUMN_NAMES: &[&str] = &[
    "id",
    "name",
    "sip_server",
    "sip_port",
    "sip_transport",
    "timezone",
    "ntp_server",
    "settings",
    "model_settings",
    "push_backend",
    "ami_host",
    "ami_port",
    "ami_user",
    "ami_secret",
    "ami_context",
    "webhook_url",
    "webhook_secret",
    "registrar_relay",
    "registrar_transport",
    "claim_creates",
    "site_networks",
    "provisioning_token",
    "previous_token",
    "previous_token_until",
    "require_token",
    "require_client_cert",
    "updated_at",
];

static COLUMNS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| COLUMN_NAMES.join(", "));

/// `d.id AS domain_id, d.name AS domain_name, …`: the columns of table
/// alias `table`, named `<prefix><column>` for [`domain_from_row_prefixed`].
pub(crate) fn columns_as(table: &str, prefix: &str) -> String {
    COLUMN_NAMES.iter().map(|c| format!("{table}.{c} AS {prefix}{c}")).collect::<Vec<_>>().join(", ")
}

/// Reads a domain from `row`, whose columns are named `<prefix><column>`
/// (a join aliases them `domain_…`).
pub(crate) fn domain_from_row_prefixed(row: &AnyRow, prefix: &str) -> Result<Domain> {
    let col = |c: &str| format!("{prefix}{c}");
    let port: i64 = row.try_get(col("sip_port").as_str())?;
    let transport: String = row.try_get(col("sip_transport").as_str())?;
    Ok(Domain {
        id: row.try_get(col("id").as_str())?,
        name: row.try_get(col("name").as_str())?,
        sip_server: row.try_get(col("sip_server").as_str())?,
        sip_port: u16::try_from(port).map_err(|_| StoreError::Corrupt(format!("sip_port {port}")))?,
        sip_transport: Transport::parse("sip_transport", &transport).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        timezone: row.try_get(col("timezone").as_str())?,
        ntp_server: row.try_get(col("ntp_server").as_str())?,
        settings: settings::from_text(&row.try_get::<String, _>(col("settings").as_str())?).map_err(StoreError::Corrupt)?,
        model_settings: settings::model_settings_from_text(&row.try_get::<String, _>(col("model_settings").as_str())?)
            .map_err(StoreError::Corrupt)?,
        relay: relay_from_row(row, prefix)?,
        ami_context: row.try_get(col("ami_context").as_str())?,
        claim_creates: row.try_get::<i64, _>(col("claim_creates").as_str())? != 0,
        site_networks: crate::model::domain::stored_site_networks(&row.try_get::<String, _>(col("site_networks").as_str())?)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        access: ProvisioningAccess {
            token: Secret::new(row.try_get::<String, _>(col("provisioning_token").as_str())?),
            previous_token: Secret::new(row.try_get::<String, _>(col("previous_token").as_str())?),
            previous_until: row.try_get(col("previous_token_until").as_str())?,
            require_token: row.try_get::<i64, _>(col("require_token").as_str())? != 0,
            require_client_cert: row.try_get::<i64, _>(col("require_client_cert").as_str())? != 0,
        },
    })
}

/// A domain's push relay settings from `row` (columns `<prefix><column>`):
/// the domain's own, and each push job's.
pub(crate) fn relay_from_row(row: &AnyRow, prefix: &str) -> Result<RelaySettings> {
    let col = |c: &str| format!("{prefix}{c}");
    let transport: String = row.try_get(col("registrar_transport").as_str())?;
    Ok(RelaySettings {
        backend: row.try_get(col("push_backend").as_str())?,
        ami_host: row.try_get(col("ami_host").as_str())?,
        ami_port: u16::try_from(row.try_get::<i64, _>(col("ami_port").as_str())?).unwrap_or(5038),
        ami_user: row.try_get(col("ami_user").as_str())?,
        ami_secret: Secret::new(row.try_get::<String, _>(col("ami_secret").as_str())?),
        webhook_url: row.try_get(col("webhook_url").as_str())?,
        webhook_secret: Secret::new(row.try_get::<String, _>(col("webhook_secret").as_str())?),
        registrar_relay: row.try_get(col("registrar_relay").as_str())?,
        registrar_transport: Transport::parse("registrar_transport", &transport)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
    })
}

fn domain_from_row(row: &AnyRow) -> Result<Domain> {
    domain_from_row_prefixed(row, "")
}

impl Store {
    pub async fn domain_by_name(&self, name: &str) -> Result<Option<Domain>> {
        let row = sqlx::query(&format!("SELECT {} FROM domain WHERE name = $1", *COLUMNS))
            .bind(name)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(domain_from_row).transpose()
    }

    pub async fn list_domains(&self) -> Result<Vec<Domain>> {
        let rows = sqlx::query(&format!("SELECT {} FROM domain ORDER BY name", *COLUMNS)).fetch_all(self.pool()).await?;
        rows.iter().map(domain_from_row).collect()
    }

    /// Creates a domain; 409-style `Conflict` when the name is taken.
    pub async fn create_domain(&self, actor: &Actor, name: &str, settings: &DomainChanges) -> Result<Domain> {
        crate::model::domain::validate_domain_name(name)?;
        settings.validate()?;
        let now = now_ms();
        let mut tx = self.pool().begin().await?;
        let inserted = sqlx::query("INSERT INTO domain (name, created_at, updated_at) VALUES ($1, $2, $2) RETURNING id")
            .bind(name)
            .bind(now)
            .fetch_one(&mut *tx)
            .await;
        let id: i64 = match inserted {
            Ok(row) => row.try_get("id")?,
            Err(e) if super::is_unique_violation(&e, "name") => {
                return Err(StoreError::Conflict(format!("domain {name} exists already")))
            }
            Err(e) => return Err(e.into()),
        };
        let mut domain = Domain {
            id,
            name: name.to_string(),
            sip_server: String::new(),
            sip_port: 5060,
            sip_transport: Transport::Udp,
            timezone: "UTC".into(),
            ntp_server: "pool.ntp.org".into(),
            settings: Default::default(),
            model_settings: Default::default(),
            relay: RelaySettings { backend: "direct".into(), ami_port: 5038, ..Default::default() },
            ami_context: crate::model::domain::DEFAULT_AMI_CONTEXT.into(),
            claim_creates: false,
            site_networks: Vec::new(),
            access: ProvisioningAccess { token: access::new_token(), require_token: true, ..Default::default() },
        };
        settings.apply(&mut domain);
        write_settings(&mut tx, &domain, now).await?;
        write_token(&mut tx, &domain).await?;
        audit::record(&mut tx, actor, id, "domain.create", None, &[]).await?;
        // Provisioning caches learn the new token from the feed.
        changes::record(&mut tx, &Change::Domain(id)).await?;
        tx.commit().await?;
        self.note_local_change();
        Ok(domain)
    }

    /// Changes a domain's settings. Every handset of the domain is configured
    /// from them, so a real change bumps every handset's revision in the same
    /// transaction. Returns the domain and the names of the changed fields.
    pub async fn update_domain(&self, actor: &Actor, name: &str, changes: &DomainChanges) -> Result<(Domain, Vec<&'static str>)> {
        changes.validate()?;
        let mut tx = self.pool().begin().await?;
        let mut domain = lock_domain(&mut tx, name).await?;
        let changed = changes.apply(&mut domain);
        domain.relay.relay()?;
        let config_changed = changed.iter().any(|f| !NON_CONFIG_FIELDS.contains(f));
        if !changed.is_empty() {
            let now = now_ms();
            write_settings(&mut tx, &domain, now).await?;
            audit::record(&mut tx, actor, domain.id, "domain.update", None, &changed).await?;
            // Caches hold the whole domain (what it demands of phones too),
            // whether or not the change reaches the phones' files.
            changes::record(&mut tx, &Change::Domain(domain.id)).await?;
        }
        if config_changed {
            bump_domain_phones(&mut tx, domain.id).await?;
        }
        tx.commit().await?;
        if !changed.is_empty() {
            self.note_local_change();
        }
        Ok((domain, changed))
    }

    /// Draws a new provisioning token for the domain; the old one keeps
    /// working for `grace`. Phones' files name the token in the URL they
    /// come back to, so every phone of the domain gets a new revision and a
    /// push, which moves it to the new URL within the grace period.
    pub async fn rotate_provisioning_token(&self, actor: &Actor, name: &str, grace: std::time::Duration) -> Result<Domain> {
        let mut tx = self.pool().begin().await?;
        let mut domain = lock_domain(&mut tx, name).await?;
        let now = now_ms();
        let old = std::mem::replace(&mut domain.access.token, access::new_token());
        domain.access.previous_token = old;
        domain.access.previous_until = now.saturating_add(grace.as_millis() as i64);
        write_token(&mut tx, &domain).await?;
        sqlx::query("UPDATE domain SET updated_at = $1 WHERE id = $2").bind(now).bind(domain.id).execute(&mut *tx).await?;
        audit::record(&mut tx, actor, domain.id, "domain.rotatetoken", None, &["provisioningtoken"]).await?;
        changes::record(&mut tx, &Change::Domain(domain.id)).await?;
        bump_domain_phones(&mut tx, domain.id).await?;
        tx.commit().await?;
        self.note_local_change();
        Ok(domain)
    }

    /// Every domain's tokens, for the provisioners' token map.
    pub async fn domain_tokens(&self) -> Result<Vec<(i64, ProvisioningAccess)>> {
        let rows = sqlx::query(
            "SELECT id, provisioning_token, previous_token, previous_token_until, require_token, require_client_cert FROM domain",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("id")?,
                    ProvisioningAccess {
                        token: Secret::new(r.try_get::<String, _>("provisioning_token")?),
                        previous_token: Secret::new(r.try_get::<String, _>("previous_token")?),
                        previous_until: r.try_get("previous_token_until")?,
                        require_token: r.try_get::<i64, _>("require_token")? != 0,
                        require_client_cert: r.try_get::<i64, _>("require_client_cert")? != 0,
                    },
                ))
            })
            .collect()
    }

    /// Gives every domain without a provisioning token (those made before
    /// tokens existed) a random one. Run at every open; a no-op after the
    /// first. On several nodes at once, the first write wins.
    pub(crate) async fn fill_missing_tokens(&self) -> Result<()> {
        let ids: Vec<i64> =
            sqlx::query_scalar("SELECT id FROM domain WHERE provisioning_token = ''").fetch_all(self.pool()).await?;
        for id in ids {
            sqlx::query("UPDATE domain SET provisioning_token = $1 WHERE id = $2 AND provisioning_token = ''")
                .bind(access::new_token().expose())
                .bind(id)
                .execute(self.pool())
                .await?;
        }
        Ok(())
    }
}

/// Takes the domain's row lock, then reads it (see
/// `handsets::lock_handset` for why the lock comes first).
async fn lock_domain(tx: &mut sqlx::Transaction<'_, sqlx::Any>, name: &str) -> Result<Domain> {
    let locked = sqlx::query("UPDATE domain SET updated_at = updated_at WHERE name = $1").bind(name).execute(&mut **tx).await?;
    if locked.rows_affected() == 0 {
        return Err(StoreError::NotFound("Domain not found"));
    }
    let row = sqlx::query(&format!("SELECT {} FROM domain WHERE name = $1", *COLUMNS)).bind(name).fetch_one(&mut **tx).await?;
    domain_from_row(&row)
}

/// A change every phone of the domain is configured from: each handset's
/// revision rises by one, the caches drop the domain, and pushes go out.
async fn bump_domain_phones(tx: &mut sqlx::Transaction<'_, sqlx::Any>, domain_id: i64) -> Result<()> {
    sqlx::query("UPDATE handset SET revision = revision + 1, updated_at = $1 WHERE domain_id = $2")
        .bind(now_ms())
        .bind(domain_id)
        .execute(&mut **tx)
        .await?;
    changes::record(tx, &Change::Domain(domain_id)).await?;
    super::push::enqueue_domain(tx, domain_id).await?;
    Ok(())
}

async fn write_token(tx: &mut sqlx::Transaction<'_, sqlx::Any>, d: &Domain) -> Result<()> {
    sqlx::query("UPDATE domain SET provisioning_token = $1, previous_token = $2, previous_token_until = $3 WHERE id = $4")
        .bind(d.access.token.expose())
        .bind(d.access.previous_token.expose())
        .bind(d.access.previous_until)
        .bind(d.id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn write_settings(tx: &mut sqlx::Transaction<'_, sqlx::Any>, d: &Domain, now: i64) -> Result<()> {
    sqlx::query(
        "UPDATE domain SET sip_server = $1, sip_port = $2, sip_transport = $3, timezone = $4, ntp_server = $5, updated_at = $6, \
         settings = $8, model_settings = $9, push_backend = $10, ami_host = $11, ami_port = $12, ami_user = $13, \
         ami_secret = $14, webhook_url = $15, webhook_secret = $16, claim_creates = $17, site_networks = $18, \
         require_token = $19, require_client_cert = $20, registrar_relay = $21, registrar_transport = $22, \
         ami_context = $23 WHERE id = $7",
    )
    .bind(&d.sip_server)
    .bind(i64::from(d.sip_port))
    .bind(d.sip_transport.as_str())
    .bind(&d.timezone)
    .bind(&d.ntp_server)
    .bind(now)
    .bind(d.id)
    .bind(settings::to_text(&d.settings))
    .bind(settings::model_settings_to_text(&d.model_settings))
    .bind(d.relay.backend.as_str())
    .bind(d.relay.ami_host.as_str())
    .bind(i64::from(d.relay.ami_port))
    .bind(d.relay.ami_user.as_str())
    .bind(d.relay.ami_secret.expose())
    .bind(d.relay.webhook_url.as_str())
    .bind(d.relay.webhook_secret.expose())
    .bind(i64::from(d.claim_creates))
    .bind(crate::model::domain::site_networks_text(&d.site_networks))
    .bind(i64::from(d.access.require_token))
    .bind(i64::from(d.access.require_client_cert))
    .bind(d.relay.registrar_relay.as_str())
    .bind(d.relay.registrar_transport.as_str())
    .bind(d.ami_context.as_str())
    .execute(&mut **tx)
    .await?;
    Ok(())
}
