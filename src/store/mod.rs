//! The database: one sqlx `Any` pool over SQLite (the embedded default) or
//! PostgreSQL (several nodes, one database), one code path for both.
//!
//! Queries are written once with `$N` placeholders, which both databases
//! accept, and use only types both drivers map the same way (`BIGINT`/
//! `INTEGER` as `i64`, `TEXT`; flags as integers 0/1, since the `Any`
//! driver maps no SQLite boolean). Each table has its own module.

pub mod audit;
pub mod calls;
pub mod changes;
pub mod devices;
pub mod domains;
pub mod handsets;
pub mod keys;
pub mod notices;
pub mod outage;
pub mod push;
pub mod sessions;
pub mod status;
pub mod users;

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, ConnectOptions, Executor};

pub use audit::Actor;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open database {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("database migration failed: {0}")]
    Migration(String),
    #[error("{0}")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(#[from] crate::model::FieldError),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// `rows` parenthesised lists of `columns` placeholders, for a multi-row
/// `VALUES` whose parameters are bound row after row. SQLite gets anonymous
/// `?`: sqlx looks each parameter's name up (`sqlite3_bind_parameter_name`),
/// a scan of the statement's named parameters, so `$n` names make binding
/// grow with the square of their number (a 32-row upsert of phones'
/// fetches was a sixth of a TFTP storm's CPU) while `?` has none to scan.
pub(crate) fn values_rows(backend: Backend, rows: usize, columns: usize) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(rows * columns * 5);
    for r in 0..rows {
        out.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..columns {
            if c > 0 {
                out.push_str(", ");
            }
            match backend {
                Backend::Sqlite => out.push('?'),
                Backend::Postgres => {
                    let _ = write!(out, "${}", r * columns + c + 1);
                }
            }
        }
        out.push(')');
    }
    out
}

/// The handle every other module uses. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// Commits of this process that changed phone configs (see `changes`).
    local_changes: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Woken by this process's commits that queue pushes, and by other
    /// nodes' (`notices`), so the push worker need not poll for them.
    pushes_queued: std::sync::Arc<tokio::sync::Notify>,
    /// Woken when another node recorded config changes (`notices`).
    changes_noticed: std::sync::Arc<tokio::sync::Notify>,
    /// This process's name in push leases (`push.claimed_by`): random,
    /// drawn at each open, so a restarted node never mistakes a dead
    /// predecessor's lease for its own.
    node: std::sync::Arc<str>,
    /// The URL, for the notice listener's own connection (holds the
    /// password: never logged; `redact_url` for messages).
    url: std::sync::Arc<str>,
    db_timeout: Duration,
}

/// How long a request waits for a database connection before it is
/// answered "unavailable" (the `db_timeout` setting's default).
pub const DEFAULT_DB_TIMEOUT: Duration = Duration::from_secs(2);

/// Unix time in milliseconds, the one time format in the database.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl Store {
    /// Opens the database and applies pending migrations. Errors carry a
    /// one-line reason fit for the start-up message (the URL's password is
    /// never in it).
    pub async fn open(url: &str) -> Result<Store> {
        Store::open_with(url, DEFAULT_DB_TIMEOUT).await
    }

    /// [`Store::open`] with `db_timeout` as the longest wait for a pooled
    /// connection: while the database is down, a query fails with an
    /// outage error (`StoreError::is_outage`) after that long instead of
    /// hanging, and front ends answer 503.
    pub async fn open_with(url: &str, db_timeout: Duration) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(StoreError::Unreachable {
                url: redact_url(url),
                reason: "the URL must start with sqlite:// or postgres://".into(),
            });
        };
        let unreachable = |e: &dyn std::fmt::Display| StoreError::Unreachable { url: redact_url(url), reason: e.to_string() };
        let url = match backend {
            Backend::Sqlite => sqlite_url_creating_parent(url).map_err(|e| unreachable(&e))?,
            Backend::Postgres => url.to_string(),
        };
        let options = AnyConnectOptions::from_str(&url)
            .map_err(|e| unreachable(&e))?
            .log_statements(tracing::log::LevelFilter::Trace)
            .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_millis(500));
        let pool = AnyPoolOptions::new()
            .max_connections(match backend {
                // One writer at a time anyway; readers are quick.
                Backend::Sqlite => 4,
                Backend::Postgres => 16,
            })
            .acquire_timeout(db_timeout.max(Duration::from_millis(100)))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers run beside the one writer; writers
                        // queue for up to 5 s instead of failing at once. A
                        // 16 MiB page cache (SQLite's default is 2 MiB): the
                        // handset table's indexes on random keys (MAC, event
                        // token) outgrow the default, and a million-row
                        // import took 30 s instead of 24.
                        conn.execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000; PRAGMA cache_size = -16384;")
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(|e| unreachable(&e))?;
        let store = Store {
            pool,
            backend,
            local_changes: Default::default(),
            pushes_queued: Default::default(),
            changes_noticed: Default::default(),
            node: hex::encode(rand::random::<[u8; 8]>()).into(),
            url: url.as_str().into(),
            db_timeout,
        };
        store.migrate().await?;
        store.fill_missing_tokens().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<()> {
        let migrator = match self.backend {
            Backend::Sqlite => sqlx::migrate!("migrations/sqlite"),
            Backend::Postgres => sqlx::migrate!("migrations/postgres"),
        };
        migrator.run(&self.pool).await.map_err(|e| StoreError::Migration(e.to_string()))
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Copies the SQLite database into `path`, an empty file the caller
    /// made private: `VACUUM INTO` reads one consistent snapshot while the
    /// server goes on writing. PostgreSQL has its own tool (pg_dump).
    pub async fn backup_into(&self, path: &str) -> Result<()> {
        if self.backend == Backend::Postgres {
            return Err(StoreError::Conflict(
                "autoprov backup copies SQLite databases; for PostgreSQL use pg_dump (e.g. pg_dump -Fc DBNAME > FILE)".into(),
            ));
        }
        sqlx::query("VACUUM INTO $1").bind(path).execute(&self.pool).await?;
        Ok(())
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// This process's node id in push leases.
    pub fn node_id(&self) -> &str {
        &self.node
    }

    /// The longest wait for a database connection.
    pub fn db_timeout(&self) -> Duration {
        self.db_timeout
    }

    /// Whether the database answers (`SELECT 1`), for readiness checks.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Waits for the connections in use and closes them all (on SQLite this
    /// also checkpoints the WAL).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// `sqlite://path` with the directory and the file created, both the
/// owner's only (the database holds SIP passwords), and `mode=rwc`.
fn sqlite_url_creating_parent(url: &str) -> std::io::Result<String> {
    let rest = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path != ":memory:" && !path.is_empty() {
        let file = std::path::Path::new(path);
        if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
            crate::files::private_dir(parent)?;
        }
        crate::files::private_file(file)?;
        for suffix in ["-wal", "-shm"] {
            let side = std::path::PathBuf::from(format!("{path}{suffix}"));
            if side.exists() {
                crate::files::private_file(&side)?;
            }
        }
    }
    Ok(if query.contains("mode=") {
        url.to_string()
    } else if query.is_empty() {
        format!("sqlite://{path}?mode=rwc")
    } else {
        format!("sqlite://{path}?{query}&mode=rwc")
    })
}

/// The URL with any password replaced by `***`, for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}://{user}:***{}", &url[..scheme_end], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// True when `e` is a unique-constraint violation whose constraint or
/// message names `what` (SQLite names columns, PostgreSQL constraints).
pub(crate) fn is_unique_violation(e: &sqlx::Error, what: &str) -> bool {
    match e.as_database_error() {
        Some(db) if db.is_unique_violation() => db.constraint().is_some_and(|c| c.contains(what)) || db.message().contains(what),
        _ => false,
    }
}

/// Escapes `%`, `_` and `\` for a `LIKE … ESCAPE '\'` pattern.
pub(crate) fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_row_values_number_postgres_parameters_and_leave_sqlite_ones_anonymous() {
        assert_eq!(values_rows(Backend::Postgres, 2, 3), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(values_rows(Backend::Sqlite, 2, 3), "(?, ?, ?), (?, ?, ?)");
    }

    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(redact_url("postgres://app:s3cret@db:5432/prov"), "postgres://app:***@db:5432/prov");
        assert_eq!(redact_url("sqlite://./x.db"), "sqlite://./x.db");
    }

    #[test]
    fn sqlite_urls_get_create_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/x.db");
        let url = sqlite_url_creating_parent(&format!("sqlite://{}", p.display())).unwrap();
        assert!(url.ends_with("x.db?mode=rwc"));
        assert!(p.parent().unwrap().is_dir());
    }

    #[test]
    fn like_patterns_are_escaped() {
        assert_eq!(like_escape("50%_a\\"), "50\\%\\_a\\\\");
    }
}
