//! Devices: every MAC that asked for its per-phone file. Fetches are written
//! in batches (see `provision::recorder`), upserted by MAC; unknown devices
//! are capped, so a scan cannot bloat the database, and evicted fairly: the
//! sources (networks) holding the most give up their oldest first.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::domains::domain_from_row_prefixed;
use super::handsets::handset_from_row;
use super::{Result, Store};
use crate::model::{Device, Domain, Handset, Mac};

/// Everything a phone's own file is rendered from.
#[derive(Clone, Debug)]
pub struct PhoneRecord {
    pub handset: Handset,
    pub domain: std::sync::Arc<Domain>,
    /// When the handset or its domain last changed (Unix ms).
    pub changed_at: i64,
    /// The model the phone reported on an earlier fetch (TFTP requests
    /// carry no User-Agent).
    pub reported_model: Option<String>,
    /// The firmware it reported then.
    pub reported_firmware: Option<String>,
    /// The family that fetch was identified as (a clue for
    /// `Profiles::resolve`).
    pub reported_vendor: Option<String>,
}

/// One coalesced fetch (or several of the same MAC) to record.
#[derive(Clone, Debug)]
pub struct FetchRecord {
    pub mac: Mac,
    /// The handset the file was served as; `None` for an unknown MAC.
    pub handset_id: Option<i64>,
    pub ip: String,
    pub user_agent: String,
    pub vendor: String,
    pub model: String,
    pub firmware: String,
    pub file: String,
    pub protocol: &'static str,
    pub revision: Option<i64>,
    /// The domain whose provisioning token the request carried.
    pub token_domain_id: Option<i64>,
    pub first_seen: i64,
    pub last_seen: i64,
    pub count: i64,
}

/// What a handset's last fetch said, for Handset Select.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LastFetch {
    pub at: i64,
    pub revision: i64,
    pub model: String,
    pub firmware: String,
}

/// Rows per upsert statement (15 parameters each; see `values_rows` for
/// why SQLite's are anonymous).
const UPSERT_ROWS: usize = 128;

impl Store {
    /// The handset that owns `mac`, with its domain: everything a per-phone
    /// file is rendered from, in one indexed query.
    pub async fn handset_for_phone(&self, mac: &Mac) -> Result<Option<PhoneRecord>> {
        let row =
            sqlx::query(&format!("{} WHERE h.mac = $1", *SELECT_PHONE)).bind(mac.lower()).fetch_optional(self.pool()).await?;
        row.as_ref().map(phone_from_row).transpose()
    }

    /// Phones (handsets with a MAC) in MAC order after `after`: for warming
    /// the provisioning cache page by page.
    pub async fn phones_after(&self, after: &str, limit: i64) -> Result<Vec<PhoneRecord>> {
        let rows = sqlx::query(&format!("{} WHERE h.mac > $1 ORDER BY h.mac LIMIT $2", *SELECT_PHONE))
            .bind(after)
            .bind(limit)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(phone_from_row).collect()
    }

    /// Writes a batch of fetches in one transaction, then evicts the oldest
    /// unknown devices beyond `unknown_cap`.
    pub async fn record_fetches(&self, batch: &[FetchRecord], unknown_cap: i64) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool().begin().await?;
        // Many rows per statement: a boot storm records tens of thousands
        // of fetches a second, and one statement per row would cost more
        // than serving them. Rows are unique by MAC within a batch.
        for chunk in batch.chunks(UPSERT_ROWS) {
            let sql = format!(
                "INSERT INTO device (mac, handset_id, ip, user_agent, vendor, model, firmware, last_file, protocol, revision, \
                 token_domain_id, first_seen, last_seen, fetch_count, source) VALUES {} \
                 ON CONFLICT (mac) DO UPDATE SET handset_id = excluded.handset_id, ip = excluded.ip, source = excluded.source, \
                 user_agent = excluded.user_agent, vendor = excluded.vendor, \
                 model = CASE WHEN excluded.model = '' THEN device.model ELSE excluded.model END, \
                 firmware = CASE WHEN excluded.firmware = '' THEN device.firmware ELSE excluded.firmware END, \
                 last_file = excluded.last_file, protocol = excluded.protocol, revision = excluded.revision, \
                 token_domain_id = COALESCE(excluded.token_domain_id, device.token_domain_id), last_seen = excluded.last_seen, fetch_count = device.fetch_count + excluded.fetch_count",
                super::values_rows(self.backend(), chunk.len(), 15)
            );
            let mut q = sqlx::query(&sql);
            for f in chunk {
                q = q
                    .bind(f.mac.lower())
                    .bind(f.handset_id)
                    .bind(f.ip.as_str())
                    .bind(f.user_agent.as_str())
                    .bind(f.vendor.as_str())
                    .bind(f.model.as_str())
                    .bind(f.firmware.as_str())
                    .bind(f.file.as_str())
                    .bind(f.protocol)
                    .bind(f.revision)
                    .bind(f.token_domain_id)
                    .bind(f.first_seen)
                    .bind(f.last_seen)
                    .bind(f.count)
                    .bind(crate::model::source_network(&f.ip));
            }
            q.execute(&mut *tx).await?;
        }
        if batch.iter().any(|f| f.handset_id.is_none()) {
            evict_unknown(&mut tx, unknown_cap).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Adds fetches that were only counted: (MAC, how many, last seen).
    pub async fn add_fetch_counts(&self, counts: &[(Mac, i64, i64)]) -> Result<()> {
        if counts.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool().begin().await?;
        for (mac, count, last_seen) in counts {
            sqlx::query("UPDATE device SET fetch_count = fetch_count + $1, last_seen = $2 WHERE mac = $3")
                .bind(count)
                .bind(last_seen)
                .bind(mac.lower())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Devices in MAC order after `after`: unknown ones (no handset), those
    /// of them a domain's users may see, or the known ones of one domain.
    pub async fn list_devices(&self, scope: DeviceScope, after: Option<&Mac>, limit: i64) -> Result<Vec<Device>> {
        let mut after = after.map(|m| m.lower()).unwrap_or_default();
        let (domain_id, networks) = match scope {
            DeviceScope::Unknown => return self.page_devices("dv.handset_id IS NULL AND $2 = 0", 0, &after, limit).await,
            DeviceScope::Known(domain_id) => return self.page_devices("h.domain_id = $2", domain_id, &after, limit).await,
            DeviceScope::UnknownFor { domain_id, networks } => (domain_id, networks),
        };
        // Addresses are text in both databases: filter here, a batch at a
        // time. Unknown devices are capped, so this reads a bounded table.
        let mut out = Vec::new();
        loop {
            let batch = self.page_devices("dv.handset_id IS NULL AND $2 = 0", 0, &after, 1000).await?;
            let done = batch.len() < 1000;
            after = batch.last().map(|d| d.mac.clone()).unwrap_or_default();
            for d in batch {
                if d.visible_to(domain_id, &networks) {
                    out.push(d);
                    if out.len() as i64 == limit {
                        return Ok(out);
                    }
                }
            }
            if done {
                return Ok(out);
            }
        }
    }

    async fn page_devices(&self, filter: &str, domain_id: i64, after: &str, limit: i64) -> Result<Vec<Device>> {
        let rows = sqlx::query(&format!("{SELECT_DEVICE} WHERE {filter} AND dv.mac > $1 ORDER BY dv.mac LIMIT $3"))
            .bind(after)
            .bind(domain_id)
            .bind(limit)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(device_from_row).collect()
    }

    /// The device row of one MAC (its last fetch), known or not.
    pub async fn device(&self, mac: &Mac) -> Result<Option<Device>> {
        let row =
            sqlx::query(&format!("{SELECT_DEVICE} WHERE dv.mac = $1")).bind(mac.lower()).fetch_optional(self.pool()).await?;
        row.as_ref().map(device_from_row).transpose()
    }
}

/// A handset with its domain and what its phone reported: everything a
/// per-phone file is rendered from, in one indexed query.
static SELECT_PHONE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT {}, h.updated_at, {}, dv.model AS reported_model, dv.firmware AS reported_firmware, dv.vendor AS reported_vendor FROM handset h JOIN domain d ON d.id = h.domain_id \
         LEFT JOIN device dv ON dv.mac = h.mac AND dv.handset_id = h.id",
        super::handsets::handset_columns!(),
        super::domains::columns_as("d", "domain_"),
    )
});

fn phone_from_row(row: &AnyRow) -> Result<PhoneRecord> {
    let handset = handset_from_row(row)?;
    let domain = domain_from_row_prefixed(row, "domain_")?;
    let changed_at = row.try_get::<i64, _>("updated_at")?.max(row.try_get("domain_updated_at")?);
    let reported_model = row.try_get::<Option<String>, _>("reported_model")?.filter(|m| !m.is_empty());
    let reported_firmware = row.try_get::<Option<String>, _>("reported_firmware")?.filter(|f| !f.is_empty());
    let reported_vendor = row.try_get::<Option<String>, _>("reported_vendor")?.filter(|v| !v.is_empty());
    Ok(PhoneRecord {
        handset,
        domain: std::sync::Arc::new(domain),
        changed_at,
        reported_model,
        reported_firmware,
        reported_vendor,
    })
}

const SELECT_DEVICE: &str = "SELECT dv.mac, dv.ip, dv.user_agent, dv.vendor, dv.model, dv.firmware, dv.last_file, \
    dv.protocol, dv.revision, dv.first_seen, dv.last_seen, dv.fetch_count, dv.token_domain_id, h.extensionnumber \
    FROM device dv LEFT JOIN handset h ON h.id = dv.handset_id";

#[derive(Clone, Debug)]
pub enum DeviceScope {
    /// Every unknown device (superusers).
    Unknown,
    /// Unknown devices a domain's users may see: those that came under its
    /// token or from its site networks.
    UnknownFor { domain_id: i64, networks: Vec<ipnet::IpNet> },
    /// The devices of one domain's handsets.
    Known(i64),
}

fn device_from_row(r: &AnyRow) -> Result<Device> {
    Ok(Device {
        mac: r.try_get("mac")?,
        extensionnumber: r.try_get("extensionnumber")?,
        ip: r.try_get("ip")?,
        useragent: r.try_get("user_agent")?,
        vendor: r.try_get("vendor")?,
        model: r.try_get("model")?,
        firmware: r.try_get("firmware")?,
        lastfile: r.try_get("last_file")?,
        protocol: r.try_get("protocol")?,
        revision: r.try_get("revision")?,
        firstseen: r.try_get("first_seen")?,
        lastseen: r.try_get("last_seen")?,
        fetchcount: r.try_get("fetch_count")?,
        token_domain_id: r.try_get("token_domain_id")?,
    })
}

/// Brings the unknown devices down to `cap`, fairly: every source keeps its
/// newest `level` entries, `level` as high as the cap allows, so the sources
/// with the most entries (a scan) lose them and a source with a few (a site
/// booting) keeps them. With more sources than the cap, the newest `cap`
/// devices stay.
async fn evict_unknown(tx: &mut sqlx::Transaction<'_, sqlx::Any>, cap: i64) -> Result<()> {
    let counts: Vec<i64> =
        sqlx::query_scalar("SELECT COUNT(*) FROM device WHERE handset_id IS NULL GROUP BY source").fetch_all(&mut **tx).await?;
    if counts.iter().sum::<i64>() <= cap {
        return Ok(());
    }
    let level = fair_level(&counts, cap);
    let sql = if level > 0 {
        "DELETE FROM device WHERE mac IN (SELECT mac FROM (SELECT mac, ROW_NUMBER() OVER \
         (PARTITION BY source ORDER BY last_seen DESC, mac) AS n FROM device WHERE handset_id IS NULL) ranked WHERE n > $1)"
    } else {
        "DELETE FROM device WHERE mac IN (SELECT mac FROM (SELECT mac, ROW_NUMBER() OVER \
         (ORDER BY last_seen DESC, mac) AS n FROM device WHERE handset_id IS NULL) ranked WHERE n > $1)"
    };
    sqlx::query(sql).bind(if level > 0 { level } else { cap }).execute(&mut **tx).await?;
    Ok(())
}

/// The highest number of entries every source may keep with no more than
/// `cap` in all (0 when even one each is too many).
fn fair_level(counts: &[i64], cap: i64) -> i64 {
    let kept = |level: i64| counts.iter().map(|c| (*c).min(level)).sum::<i64>();
    let (mut lo, mut hi) = (0, counts.iter().copied().max().unwrap_or(0));
    while lo < hi {
        let mid = (lo + hi + 1) / 2;
        if kept(mid) <= cap {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    lo
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_fair_level_trims_the_biggest_sources() {
        // 510 scanning sources with 20 each and one phone: the phone stays.
        let mut counts = vec![20; 510];
        counts.push(1);
        let level = super::fair_level(&counts, 10_000);
        assert_eq!(level, 19);
        assert!(counts.iter().map(|c| (*c).min(level)).sum::<i64>() <= 10_000);
        assert_eq!(super::fair_level(&[3, 3, 3], 2), 0, "more sources than room");
        assert_eq!(super::fair_level(&[5, 1], 100), 5);
    }
}
