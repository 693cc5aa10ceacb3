//! The outside programs some tests talk to (PostgreSQL, tftp-hpa, sipp,
//! Chromium, Kamailio, Prometheus's promtool, and root's network
//! namespaces), found where they are installed: a variable names one
//! explicitly (`AUTOPROV_TEST_POSTGRES_URL`, `AUTOPROV_TEST_TFTP_CLIENT`,
//! `AUTOPROV_TEST_SIPP`, `AUTOPROV_TEST_CHROMEDRIVER`,
//! `AUTOPROV_TEST_CHROMIUM`, `AUTOPROV_TEST_KAMAILIO`,
//! `AUTOPROV_TEST_PROMTOOL`), else `PATH` (and Debian's
//! `/usr/lib/postgresql/*/bin`) is searched. PostgreSQL is started as a
//! throw-away cluster of our own on first use and stopped at the end. A
//! test that must stop and start PostgreSQL itself owns a cluster of its
//! own ([`OwnedCluster`], peer [`Peer::PgCluster`]): that needs `initdb`
//! and `pg_ctl`, whatever `AUTOPROV_TEST_POSTGRES_URL` says.
//!
//! A test whose peer is missing is reported as not run (ignored, with the
//! reason in the list `main` prints last); under `AUTOPROV_TEST_REQUIRE_ALL=1`
//! (`.ci/run`) it fails instead.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    Postgres,
    TftpClient,
    Sipp,
    Chromium,
    /// Root with `ip` and `nft`: network namespaces for the NAT test bed.
    NetNs,
    /// Kamailio with the SQLite, PostgreSQL and HTTP client modules.
    Kamailio,
    /// Prometheus's `promtool`, which checks the metrics' text format.
    Promtool,
    /// PostgreSQL's `initdb` and `pg_ctl`: a cluster the test owns, stops
    /// and starts again ([`OwnedCluster`]).
    PgCluster,
}

impl Peer {
    pub fn name(self) -> &'static str {
        match self {
            Peer::Postgres => "PostgreSQL",
            Peer::TftpClient => "tftp-hpa's tftp",
            Peer::Sipp => "sipp",
            Peer::Chromium => "Chromium and chromedriver",
            Peer::NetNs => "root with ip and nft (network namespaces)",
            Peer::Kamailio => "Kamailio",
            Peer::Promtool => "Prometheus's promtool",
            Peer::PgCluster => "PostgreSQL's initdb and pg_ctl",
        }
    }

    /// Why it is not available, or `None` when it is.
    pub fn missing(self) -> Option<String> {
        let found = match self {
            Peer::Postgres => std::env::var("AUTOPROV_TEST_POSTGRES_URL").is_ok_and(|u| !u.is_empty()) || pg_bin().is_some(),
            Peer::TftpClient => tftp_client().is_some(),
            Peer::Sipp => sipp().is_some(),
            Peer::Chromium => chromedriver().is_some() && chromium().is_some(),
            Peer::NetNs => (unsafe { libc_geteuid() } == 0) && on_path("ip").is_some() && on_path("nft").is_some(),
            Peer::Kamailio => kamailio().is_some(),
            Peer::Promtool => promtool().is_some(),
            Peer::PgCluster => pg_bin().is_some(),
        };
        (!found).then(|| {
            let how = match self {
                Peer::Postgres => "install Debian's postgresql (initdb and pg_ctl are used), or set AUTOPROV_TEST_POSTGRES_URL",
                Peer::TftpClient => "install Debian's tftp-hpa, or set AUTOPROV_TEST_TFTP_CLIENT",
                Peer::Sipp => "install Debian's sip-tester, or set AUTOPROV_TEST_SIPP",
                Peer::Chromium => "install Debian's chromium and chromium-driver, or set AUTOPROV_TEST_CHROMEDRIVER",
                Peer::NetNs => "run the tests as root with Debian's iproute2 and nftables installed",
                Peer::Promtool => "install Debian's prometheus (it ships promtool), or set AUTOPROV_TEST_PROMTOOL",
                Peer::PgCluster => "install Debian's postgresql (the test starts and stops a cluster of its own)",
                Peer::Kamailio => {
                    "install Debian's kamailio, kamailio-sqlite-modules, kamailio-postgres-modules and \
                     kamailio-utils-modules, or set AUTOPROV_TEST_KAMAILIO"
                }
            };
            format!("{} not found: {how}", self.name())
        })
    }
}

/// Every test must run (`.ci/run`): a missing peer fails the test.
pub fn require_all() -> bool {
    std::env::var("AUTOPROV_TEST_REQUIRE_ALL").is_ok_and(|v| v == "1")
}

fn from_env(var: &str) -> Option<PathBuf> {
    std::env::var_os(var).filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// `program` in `PATH`, or in the sbin directories a non-login root shell
/// may leave out of it (where Debian puts ip, nft and kamailio).
fn on_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join(program)).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(["/usr/sbin", "/sbin"].iter().map(|d| Path::new(d).join(program)))
        .find(|p| p.is_file())
}

/// tftp-hpa's client (other `tftp`s take other arguments).
pub fn tftp_client() -> Option<PathBuf> {
    static FOUND: OnceLock<Option<PathBuf>> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            from_env("AUTOPROV_TEST_TFTP_CLIENT").or_else(|| {
                let tftp = on_path("tftp")?;
                let version = Command::new(&tftp).arg("-V").output().ok()?;
                String::from_utf8_lossy(&[version.stdout, version.stderr].concat()).contains("tftp-hpa").then_some(tftp)
            })
        })
        .clone()
}

/// Prometheus's `promtool` (`promtool check metrics` reads the text format).
pub fn promtool() -> Option<PathBuf> {
    from_env("AUTOPROV_TEST_PROMTOOL").or_else(|| on_path("promtool"))
}

pub fn sipp() -> Option<PathBuf> {
    from_env("AUTOPROV_TEST_SIPP").or_else(|| on_path("sipp"))
}

/// Kamailio, when the modules contrib/kamailio/kamailio.cfg loads are
/// installed beside it (Debian ships them in separate packages).
pub fn kamailio() -> Option<PathBuf> {
    let binary = from_env("AUTOPROV_TEST_KAMAILIO").or_else(|| on_path("kamailio"))?;
    let module_dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib")
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path().join("kamailio/modules")).collect())
        .unwrap_or_default();
    let has =
        |m: &str| module_dirs.iter().chain([PathBuf::from("/usr/lib/kamailio/modules")].iter()).any(|d| d.join(m).is_file());
    ["db_sqlite.so", "db_postgres.so", "http_client.so"].iter().all(|m| has(m)).then_some(binary)
}

pub fn chromedriver() -> Option<PathBuf> {
    from_env("AUTOPROV_TEST_CHROMEDRIVER").or_else(|| on_path("chromedriver"))
}

pub fn chromium() -> Option<PathBuf> {
    from_env("AUTOPROV_TEST_CHROMIUM").or_else(|| on_path("chromium")).or_else(|| on_path("chromium-browser"))
}

/// The directory with `initdb` and `pg_ctl`: Debian keeps them out of
/// `PATH`, one directory per major version (the newest is used).
fn pg_bin() -> Option<PathBuf> {
    let mut debian: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    debian.sort_by_key(|p| p.parent().and_then(|v| v.file_name()).and_then(|v| v.to_str()).and_then(|v| v.parse::<u32>().ok()));
    debian
        .into_iter()
        .rev()
        .chain(on_path("initdb").and_then(|p| p.parent().map(Path::to_path_buf)))
        .find(|d| d.join("initdb").is_file() && d.join("pg_ctl").is_file())
}

/// A cluster this test run started, stopped by [`shutdown`].
struct Cluster {
    bin: PathBuf,
    data: PathBuf,
    as_postgres: bool,
}

static CLUSTER: Mutex<Option<Cluster>> = Mutex::new(None);
static POSTGRES_URL: OnceLock<Result<String, String>> = OnceLock::new();

/// A PostgreSQL server URL whose role may `CREATE DATABASE`: the variable's,
/// else a throw-away cluster started now (once per test run).
pub fn postgres_url() -> String {
    POSTGRES_URL
        .get_or_init(|| match std::env::var("AUTOPROV_TEST_POSTGRES_URL") {
            Ok(url) if !url.is_empty() => Ok(url),
            _ => start_cluster(),
        })
        .clone()
        .unwrap_or_else(|e| panic!("PostgreSQL is installed but could not be started: {e}"))
}

fn start_cluster() -> Result<String, String> {
    let cluster = OwnedCluster::init()?;
    let url = cluster.admin_url();
    *CLUSTER.lock().unwrap() =
        Some(Cluster { bin: cluster.bin.clone(), data: cluster.data.clone(), as_postgres: cluster.as_postgres });
    // The run's shared cluster outlives this handle: `shutdown` stops it.
    std::mem::forget(cluster);
    Ok(url)
}

/// A throw-away PostgreSQL cluster one test owns: it may stop it (an
/// outage) and start it again on the same port and data. Stopped and
/// removed when dropped.
pub struct OwnedCluster {
    bin: PathBuf,
    data: PathBuf,
    as_postgres: bool,
    pub port: u16,
}

impl OwnedCluster {
    /// `initdb` and `pg_ctl start` on a free loopback port (trust
    /// authentication, no fsync, 400 connections).
    pub fn init() -> Result<OwnedCluster, String> {
        let bin = pg_bin().ok_or("initdb and pg_ctl not found")?;
        let data = tempfile::Builder::new().prefix("autoprov-test-pg.").tempdir().map_err(|e| e.to_string())?.keep();
        // initdb refuses to run as root: run the cluster as the postgres user.
        let as_postgres = unsafe { libc_geteuid() } == 0;
        if as_postgres {
            run(Command::new("chown").args(["postgres:", data.to_str().unwrap()]))?;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port();
        let cluster = OwnedCluster { bin, data, as_postgres, port };
        run(cluster.pg("initdb").args(["-D", cluster.data.to_str().unwrap(), "-U", "postgres", "-A", "trust", "-E", "UTF8"]))?;
        cluster.start()?;
        Ok(cluster)
    }

    fn pg(&self, tool: &str) -> Command {
        let mut c = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(self.bin.join(tool));
            c
        } else {
            Command::new(self.bin.join(tool))
        };
        c.env_remove("PGDATA");
        c
    }

    /// Starts the server and waits until it accepts connections.
    pub fn start(&self) -> Result<(), String> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=400 -c fsync=off",
            self.port,
            self.data.display()
        );
        let log = self.data.join("server.log");
        run(self.pg("pg_ctl").args([
            "-D",
            self.data.to_str().unwrap(),
            "-w",
            "-l",
            log.to_str().unwrap(),
            "-o",
            &options,
            "start",
        ]))
    }

    /// `pg_ctl stop -m fast`: sessions are ended, the server goes down.
    pub fn stop(&self) -> Result<(), String> {
        run(self.pg("pg_ctl").args(["-D", self.data.to_str().unwrap(), "-w", "-m", "fast", "stop"]))
    }

    /// The superuser's URL of database `postgres`.
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Makes database `name` and gives its URL.
    pub async fn database(&self, name: &str) -> String {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&self.admin_url()).await.expect("connect to the owned cluster");
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.expect("create database");
        conn.close().await.ok();
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for OwnedCluster {
    fn drop(&mut self) {
        let _ = self.stop();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

fn run(c: &mut Command) -> Result<(), String> {
    let out = c.output().map_err(|e| format!("{c:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{c:?}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    }
}

/// Stops the cluster this run started, if any, and removes its files.
pub fn shutdown() {
    if let Some(c) = CLUSTER.lock().unwrap().take() {
        let pg_ctl = c.bin.join("pg_ctl");
        let data = c.data.to_str().unwrap().to_string();
        let _ = if c.as_postgres {
            Command::new("runuser").args(["-u", "postgres", "--"]).arg(&pg_ctl).args(["-D", &data, "-m", "fast", "stop"]).output()
        } else {
            Command::new(&pg_ctl).args(["-D", &data, "-m", "fast", "stop"]).output()
        };
        let _ = std::fs::remove_dir_all(&c.data);
    }
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}
