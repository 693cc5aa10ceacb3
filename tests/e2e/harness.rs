//! Starting servers and talking to them.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use autoprov::config::Settings;
use autoprov::server::{self, RunningServer};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tempfile::TempDir;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

pub const ADMIN: (&str, &str) = ("admin@default", "admin-password-for-tests");

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// One registered end-to-end test (see [`e2e!`] and [`both_backends!`]).
pub struct E2e {
    /// `module_path!()` of the test's module.
    pub module: &'static str,
    pub name: &'static str,
    /// The backend variant, for tests that run on both.
    pub backend: Option<Backend>,
    /// What must be installed for it to run.
    pub needs: &'static [crate::peers::Peer],
    pub run: fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>,
}

inventory::collect!(E2e);

impl E2e {
    /// `provisioning::every_family_over_http_https_and_tftp::sqlite`.
    pub fn full_name(&self) -> String {
        let module = self.module.split_once("::").map(|(_, m)| m).unwrap_or(self.module);
        match self.backend {
            None => format!("{module}::{}", self.name),
            Some(Backend::Sqlite) => format!("{module}::{}::sqlite", self.name),
            Some(Backend::Postgres) => format!("{module}::{}::postgres", self.name),
        }
    }
}

/// Registers `async fn NAME()` tests, optionally with the outside programs
/// they need: `e2e!(a, b needs [Sipp])`.
#[macro_export]
macro_rules! e2e {
    ($($name:ident $(needs [$($peer:ident),+])?),+ $(,)?) => {
        $(
            inventory::submit! {
                $crate::harness::E2e {
                    module: module_path!(),
                    name: stringify!($name),
                    backend: None,
                    needs: &[$($($crate::peers::Peer::$peer),+)?],
                    run: || Box::pin($name()),
                }
            }
        )+
    };
}

/// Registers `async fn NAME(backend: Backend)` tests twice: `NAME::sqlite`
/// and `NAME::postgres` (which needs PostgreSQL), optionally with the
/// outside programs both need: `both_backends!(a needs [Kamailio])`.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident $(needs [$($peer:ident),+])?),+ $(,)?) => {
        $(
            inventory::submit! {
                $crate::harness::E2e {
                    module: module_path!(),
                    name: stringify!($name),
                    backend: Some($crate::harness::Backend::Sqlite),
                    needs: &[$($($crate::peers::Peer::$peer),+)?],
                    run: || Box::pin($name($crate::harness::Backend::Sqlite)),
                }
            }
            inventory::submit! {
                $crate::harness::E2e {
                    module: module_path!(),
                    name: stringify!($name),
                    backend: Some($crate::harness::Backend::Postgres),
                    needs: &[$crate::peers::Peer::Postgres $($(, $crate::peers::Peer::$peer)+)?],
                    run: || Box::pin($name($crate::harness::Backend::Postgres)),
                }
            }
        )+
    };
}

/// A fresh, empty database for one test.
pub struct TestDb {
    pub url: String,
    _dir: Option<TempDir>,
}

impl TestDb {
    pub async fn new(backend: Backend, dir: &std::path::Path) -> TestDb {
        match backend {
            Backend::Sqlite => TestDb { url: format!("sqlite://{}", dir.join("autoprov.db").display()), _dir: None },
            Backend::Postgres => {
                use sqlx::Connection;
                let admin_url = crate::peers::postgres_url();
                let name = format!("autoprov_test_{}", hex::encode(rand::random::<[u8; 6]>()));
                let mut conn = sqlx::PgConnection::connect(&admin_url)
                    .await
                    .unwrap_or_else(|e| panic!("PostgreSQL at {admin_url} is unreachable: {e}"));
                sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.expect("create test database");
                conn.close().await.ok();
                let (base, _) = admin_url.rsplit_once('/').expect("database URL ends in /DBNAME");
                TestDb { url: format!("{base}/{name}"), _dir: None }
            }
        }
    }
}

pub struct TestServer {
    pub backend: Backend,
    pub settings: Settings,
    pub server: Option<RunningServer>,
    pub client: reqwest::Client,
    pub dir: TempDir,
    /// The default domain's provisioning token, read once from the API.
    token: tokio::sync::OnceCell<String>,
}

impl TestServer {
    pub async fn start(backend: Backend) -> TestServer {
        Self::start_with(backend, |_| {}).await
    }

    pub async fn start_with(backend: Backend, adjust: impl FnOnce(&mut Settings)) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let db = TestDb::new(backend, dir.path()).await;
        let mut settings = Settings::for_data_dir(dir.path());
        settings.database_url = db.url;
        settings.admin_password = Some(autoprov::model::Secret::new(ADMIN.1));
        // Phones, relays and sinks all live on loopback here.
        settings.allow_internal_targets = true;
        adjust(&mut settings);
        let server = server::start(settings.clone()).await.expect("server starts");
        let client = https_client(&server.tls_cert_path, None);
        TestServer { backend, settings, server: Some(server), client, dir, token: Default::default() }
    }

    /// A second node on the same database (its own data dir and ports).
    pub async fn start_sharing(other: &TestServer) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = Settings::for_data_dir(dir.path());
        settings.database_url = other.settings.database_url.clone();
        settings.allow_internal_targets = true;
        let server = server::start(settings.clone()).await.expect("second node starts");
        let client = https_client(&server.tls_cert_path, None);
        TestServer { backend: other.backend, settings, server: Some(server), client, dir, token: Default::default() }
    }

    /// The default domain's provisioning token (as `GET /api/domain` shows
    /// it to its admin).
    pub async fn token(&self) -> String {
        self.token
            .get_or_init(|| async {
                let (status, d) = self.get("/api/domain").await;
                assert_eq!(status, StatusCode::OK, "{d}");
                d["provisioningtoken"].as_str().expect("provisioningtoken").to_string()
            })
            .await
            .clone()
    }

    /// `/p/<token>/<file>`: where the default domain's phones ask for `file`.
    pub async fn phone_path(&self, file: &str) -> String {
        format!("/p/{}/{file}", self.token().await)
    }

    pub fn running(&self) -> &RunningServer {
        self.server.as_ref().expect("server is running")
    }

    pub fn https(&self) -> SocketAddr {
        self.running().https_addr.unwrap()
    }

    pub fn http(&self) -> SocketAddr {
        self.running().http_addr.unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.https().port())
    }

    pub fn plain_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http().port())
    }

    /// Stops the server gracefully and starts it again on the same data.
    pub async fn restart(&mut self) {
        self.server.take().unwrap().shutdown().await;
        let server = server::start(self.settings.clone()).await.expect("server restarts");
        self.client = https_client(&server.tls_cert_path, None);
        self.server = Some(server);
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
    }

    /// A request as `login:password`, returning status and JSON body
    /// (`Value::Null` when the body is empty).
    pub async fn call(&self, method: Method, path: &str, auth: (&str, &str), body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self.client.request(method, self.url(path)).basic_auth(auth.0, Some(auth.1));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request reaches the server");
        read(resp).await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, ADMIN, None).await
    }

    pub async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PUT, path, ADMIN, Some(body)).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, ADMIN, Some(body)).await
    }

    /// Creates handset `ext` as the superuser; panics unless 201.
    pub async fn create_handset(&self, body: Value) -> Value {
        let (status, v) = self.post("/api/handset", body).await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
        v
    }

    /// Creates a domain and a user in it through the library, as the CLI does.
    pub async fn add_user(&self, login: &str, password: &str, role: &str, superuser: bool) {
        let store = &self.running().store;
        let (name, domain) = autoprov::model::user::parse_login(login).unwrap();
        let actor = autoprov::store::Actor { login: "test".into(), client_ip: None };
        if store.domain_by_name(&domain).await.unwrap().is_none() {
            store.create_domain(&actor, &domain, &Default::default()).await.unwrap();
        }
        let hash = autoprov::auth::password::hash(&autoprov::model::Secret::new(password));
        let role = autoprov::model::Role::parse(role).unwrap();
        store.create_user(&actor, &name, &domain, role, superuser, &hash).await.unwrap();
    }
}

/// A plain-HTTP client (reqwest still wants a TLS provider to build).
pub fn plain_client() -> reqwest::Client {
    plain_client_from(None)
}

/// The same, connecting from `local` (any 127/8 address is this machine).
pub fn plain_client_from(local: Option<std::net::IpAddr>) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().no_proxy().local_address(local).build().unwrap()
}

pub async fn read(resp: reqwest::Response) -> (StatusCode, Value) {
    let status = resp.status();
    let text = resp.text().await.expect("body");
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status}: body is not JSON ({e}): {text}"))
    };
    (status, value)
}

/// A client that trusts exactly the server's certificate, over rustls with
/// the ring provider; `versions` restricts the TLS versions it offers.
pub fn https_client(cert: &std::path::Path, versions: Option<&[&'static rustls::SupportedProtocolVersion]>) -> reqwest::Client {
    https_client_from(cert, versions, None)
}

pub fn https_client_from(
    cert: &std::path::Path,
    versions: Option<&[&'static rustls::SupportedProtocolVersion]>,
    local: Option<std::net::IpAddr>,
) -> reqwest::Client {
    let mut b = https_client_builder(cert, versions);
    if let Some(ip) = local {
        b = b.local_address(ip);
    }
    b.build().unwrap()
}

/// Roots holding exactly the certificates of the PEM file `cert` (the
/// server's).
pub fn trusting(cert: &std::path::Path) -> rustls::RootCertStore {
    let pem = std::fs::read(cert).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(c.unwrap()).unwrap();
    }
    roots
}

/// A client builder that trusts exactly the server's certificate.
pub fn https_client_builder(
    cert: &std::path::Path,
    versions: Option<&[&'static rustls::SupportedProtocolVersion]>,
) -> reqwest::ClientBuilder {
    let roots = trusting(cert);
    let versions = versions.unwrap_or(rustls::ALL_VERSIONS);
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder().use_preconfigured_tls(tls).no_proxy()
}

/// Polls `check` every 20 ms until it gives a value; panics naming `what`
/// after `within`. For things the server does in the background (the fetch
/// recorder's flush, a push, a feed read): never a fixed sleep.
pub async fn eventually<T, F, Fut>(what: &str, within: std::time::Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Waits until `mac` is listed among the unknown devices (the recorder
/// writes behind), as the superuser sees them.
pub async fn wait_for_unknown_device(srv: &TestServer, mac: &str) -> Value {
    eventually(&format!("unknown device {mac} recorded"), std::time::Duration::from_secs(5), || async {
        let (_, devices) = srv.get("/api/device?state=unknown&maxresults=1000").await;
        devices.as_array()?.iter().find(|d| d["mac"] == mac).cloned()
    })
    .await
}

/// A TLS connection to the server's HTTPS port from `source`.
pub async fn tls_from(srv: &TestServer, source: &str) -> tokio_rustls::client::TlsStream<TcpStream> {
    let roots = trusting(&srv.running().tls_cert_path);
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = connect_from(source, srv.https()).await;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.unwrap()
}

/// A TCP connection from `source` (any 127/8 address is this machine).
pub async fn connect_from(source: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(source.parse().unwrap(), 0)).unwrap();
    socket.connect(to).await.unwrap()
}

/// Sends `request` and reads the answer's status line.
pub async fn raw_status<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, request: &str) -> String {
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !answer.windows(2).any(|w| w == b"\r\n") {
        let n =
            tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut buf)).await.expect("an answer").unwrap();
        assert!(n > 0, "closed without an answer");
        answer.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&answer).lines().next().unwrap_or_default().to_string()
}
