//! Wiring: open the store, bootstrap, load TLS, bind the listeners, serve,
//! and shut down quickly (stop accepting and pushing, let requests in
//! flight finish for at most 5 s, close the database).

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinHandle};

use crate::api::{self, ApiState};
use crate::bootstrap::{bootstrap_if_empty, Bootstrapped};
use crate::client::{ClientInfo, HostHeader, Listener};
use crate::config::Settings;
use crate::http_listener::connections::{ConnectionLimits, Registry};
use crate::http_listener::timed_body::BodyTimeouts;
use crate::http_listener::{self, HttpLimits};
use crate::limits::{self, FdBudget};
use crate::metrics::Metrics;
use crate::monitoring::Monitored;
use crate::profiles::Profiles;
use crate::provision::{ComeBack, ProvisionPolicy, Provisioner};
use crate::push::PushWorker;
use crate::service::Service;
use crate::store::Store;
use crate::tftp::{TftpLimits, TftpServer};

/// How long requests in flight may take to finish when we stop. Everything
/// else stops at once (pushes in flight are left for the next start), so a
/// stop takes well under the 10 s a service manager gives before SIGKILL.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Bootstrap(#[from] crate::bootstrap::BootstrapError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error(transparent)]
    Profiles(#[from] crate::profiles::ProfileError),
    #[error("data directory {path}: {reason}")]
    DataDir { path: std::path::PathBuf, reason: String },
    #[error("cannot make the upload spool {}: {reason}", dir.display())]
    Spool { dir: std::path::PathBuf, reason: std::io::Error },
    #[error("cannot listen on {addr} ({what}): {reason}")]
    Bind { what: &'static str, addr: SocketAddr, reason: String },
}

/// A server that is up. Drop it and the listeners stay up; call
/// [`RunningServer::shutdown`] to stop it cleanly.
pub struct RunningServer {
    pub http_addr: Option<SocketAddr>,
    pub https_addr: Option<SocketAddr>,
    pub tftp_addr: Option<SocketAddr>,
    pub sip_addr: Option<SocketAddr>,
    /// The monitoring listener (`/metrics`, `/healthz`, `/readyz`).
    pub metrics_addr: Option<SocketAddr>,
    pub tls_fingerprint: String,
    pub tls_cert_path: std::path::PathBuf,
    pub bootstrapped: Option<Bootstrapped>,
    pub store: Store,
    pub provisioner: Arc<Provisioner>,
    /// What [`RunningServer::reload`] reads again.
    live_cert: Arc<crate::tls::LiveCert>,
    profiles_dir: Option<std::path::PathBuf>,
    /// Accept loops (HTTP, HTTPS, TFTP) and the push worker, stopped first.
    stop_listeners: watch::Sender<bool>,
    listeners: Vec<JoinHandle<()>>,
    /// Background workers (the fetch recorder, the cache), stopped after
    /// the listeners.
    stop_workers: watch::Sender<bool>,
    workers: Vec<JoinHandle<()>>,
}

pub async fn start(settings: Settings) -> Result<RunningServer, StartError> {
    let profiles = Profiles::load(settings.profiles_dir.as_deref())?;
    // Every socket is bound before anything is spawned: a port in use stops
    // start-up cleanly, with nothing left running.
    let loops = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let http = settings.http_listen.addr().map(|a| bind_tcp("HTTP", a, loops)).transpose()?;
    let https = settings.https_listen.addr().map(|a| bind_tcp("HTTPS", a, loops)).transpose()?;
    let tftp = settings.tftp_listen.addr().map(|a| bind_udp("TFTP", a)).transpose()?;
    let sip = settings.sip_listen.addr().map(|a| bind_udp("SIP", a)).transpose()?;
    let monitor = settings.metrics_listen.addr().map(|a| bind_tcp("metrics", a, 1)).transpose()?;
    // The data directory holds the database, keys and passwords: the
    // owner's only, before anything is written into it.
    crate::files::private_dir(&settings.data_dir)
        .map_err(|e| StartError::DataDir { path: settings.data_dir.clone(), reason: e.to_string() })?;
    let store = Store::open_with(&settings.database_url, settings.db_timeout.0).await?;
    let bootstrapped = bootstrap_if_empty(&store, settings.admin_password.as_ref(), &settings.data_dir).await?;
    let tls = crate::tls::load_or_create(&settings)?;
    let upgrade = settings.sends_phones_to_https();
    let come_back = ComeBack {
        public_url: settings.public_base(),
        https_port: https.as_ref().map(|(_, a)| a.port()).filter(|_| upgrade),
        https_host: tls.dns_name.clone(),
    };
    let policy = ProvisionPolicy {
        scan: settings.scan_policy(),
        resync_minutes: settings.resync_minutes,
        come_back,
        rendered_budget_bytes: settings.rendered_cache_mib as usize * 1024 * 1024,
    };
    let digest_key = store.shared_key("device-digest-nonce").await?;
    let metrics = Arc::new(Metrics::new(profiles.iter().map(|p| p.family.as_str())));
    let provisioner = Arc::new(Provisioner::new(store.clone(), profiles, policy, digest_key, metrics.clone()));
    let rendered = provisioner.cache.rendered_budget().clone();
    let urls = crate::service::domains::ProvisioningUrls {
        public_url: settings.public_base(),
        http_port: http.as_ref().map(|(_, a)| a.port()),
        https_port: https.as_ref().map(|(_, a)| a.port()),
        tftp_port: tftp.as_ref().map(|(_, a)| a.port()),
        prefix: settings.prefix(),
        prefer_https: upgrade,
    };
    let spool_dir = settings.spool_dir();
    crate::handset_csv::clear_spool(&spool_dir).map_err(|reason| StartError::Spool { dir: spool_dir.clone(), reason })?;
    let service = Service::new(store.clone())
        .allowing_internal_targets(settings.allow_internal_targets)
        .with_import_limits(settings.import_limits())
        .with_call_control(Arc::new(crate::push::calls::CallControl::new(
            provisioner.live_profiles().clone(),
            settings.allow_internal_targets,
        )));
    let app = router(ApiState::new(store.clone(), service, urls, &spool_dir), provisioner.clone(), settings.prefix());
    let proxies: Arc<[ipnet::IpNet]> = settings.trusted_proxies.0.clone().into();
    let (stop_workers, stop) = watch::channel(false);
    let (stop_listeners, _) = watch::channel(false);
    let mut server = RunningServer {
        http_addr: http.as_ref().map(|(_, a)| *a),
        https_addr: https.as_ref().map(|(_, a)| *a),
        tftp_addr: tftp.as_ref().map(|(_, a)| *a),
        sip_addr: sip.as_ref().map(|(_, a)| *a),
        metrics_addr: monitor.as_ref().map(|(_, a)| *a),
        tls_fingerprint: tls.fingerprint.clone(),
        tls_cert_path: tls.cert_path.clone(),
        bootstrapped,
        store: store.clone(),
        provisioner: provisioner.clone(),
        live_cert: tls.live.clone(),
        profiles_dir: settings.profiles_dir.clone(),
        stop_listeners,
        listeners: Vec::new(),
        stop_workers,
        workers: Vec::new(),
    };
    server.workers.push(tokio::spawn(provisioner.recorder.clone().run(
        store,
        settings.tuning.fetch_flush_interval,
        i64::from(settings.unknown_device_cap),
        stop,
    )));
    let (cache, warm_store) = (provisioner.cache.clone(), server.store.clone());
    server.workers.push(tokio::spawn(async move {
        if let Err(e) = cache.warm(&warm_store).await {
            tracing::warn!(error = %e, "could not warm the provisioning cache");
        }
    }));
    // Other nodes' notices (PostgreSQL): feed reads and pushes at once.
    server.workers.push(tokio::spawn(crate::store::notices::listen(server.store.clone(), server.stop_workers.subscribe())));
    server.workers.push(tokio::spawn(provisioner.cache.clone().run(
        server.store.clone(),
        settings.tuning.change_poll_interval,
        server.stop_workers.subscribe(),
    )));
    let limits = http_limits(&settings);
    let connections = (http.is_some() || https.is_some()).then(|| limits.connections.clone());
    // The loops that must be running for the server to be ready.
    let mut loops: Vec<(&'static str, AbortHandle)> = Vec::new();
    for (bound, tls_config) in [(http, None), (https, Some(tls.config.clone()))] {
        let Some((sockets, addr)) = bound else { continue };
        let app = app.clone().layer(Extension(Listener { tls: tls_config.is_some(), trusted_proxies: proxies.clone() }));
        let what = if tls_config.is_some() { "HTTPS" } else { "HTTP" };
        let stop = server.stop_listeners.subscribe();
        let accepting = http_listener::serve(sockets, app, tls_config, limits.clone(), stop, SHUTDOWN_GRACE)
            .map_err(|e| StartError::Bind { what, addr, reason: e.to_string() })?;
        loops.extend(accepting.iter().map(|t| (what, t.abort_handle())));
        server.listeners.extend(accepting);
    }
    if let Some((socket, addr)) = sip {
        let err = |e: std::io::Error| StartError::Bind { what: "SIP", addr, reason: e.to_string() };
        let endpoint =
            Arc::new(crate::sip::UdpEndpoint::from_socket(UdpSocket::from_std(socket).map_err(err)?, None).map_err(err)?);
        let worker = Arc::new(PushWorker::new(
            server.store.clone(),
            provisioner.live_profiles().clone(),
            endpoint,
            settings.push_policy(),
            metrics.clone(),
        ));
        // Stopped with the listeners: it gives its leases back at once.
        let pushing = tokio::spawn(worker.run(server.stop_listeners.subscribe()));
        loops.push(("SIP push worker", pushing.abort_handle()));
        server.listeners.push(pushing);
    }
    if let Some((socket, addr)) = tftp {
        let socket = UdpSocket::from_std(socket).map_err(|e| StartError::Bind { what: "TFTP", addr, reason: e.to_string() })?;
        let tftp = TftpServer::new(socket, provisioner, tftp_limits(&settings));
        let mut stop = server.stop_listeners.subscribe();
        let serving = tokio::spawn(tftp.run(async move {
            let _ = stop.changed().await;
        }));
        loops.push(("TFTP", serving.abort_handle()));
        server.listeners.push(serving);
    }
    if let Some((sockets, addr)) = monitor {
        let monitored = Monitored { metrics, store: server.store.clone(), connections, loops: loops.into(), rendered };
        // Stopped with the workers, after the listeners: while requests in
        // flight finish, /readyz says the listeners are not serving.
        let stop = server.stop_workers.subscribe();
        let serving =
            http_listener::serve(sockets, crate::monitoring::router(monitored), None, monitoring_limits(), stop, SHUTDOWN_GRACE)
                .map_err(|e| StartError::Bind { what: "metrics", addr, reason: e.to_string() })?;
        server.workers.extend(serving);
    }
    Ok(server)
}

/// The connection limits of both HTTP listeners: the settings, within what
/// the open-file limit allows.
fn http_limits(settings: &Settings) -> HttpLimits {
    let budget = FdBudget::for_limit(limits::nofile());
    let max = settings.max_connections.map_or(budget.connections, |n| (n as usize).clamp(1, budget.connections));
    let per_source = (settings.connections_per_source as usize).max(1);
    HttpLimits {
        connections: Registry::new(ConnectionLimits { max, per_source }),
        header_timeout: settings.header_timeout.0,
        body: BodyTimeouts { initial: settings.body_timeout.0, min_rate: 500, max: Duration::from_secs(600) },
    }
}

/// The monitoring listener's limits: a few scrapers and probes, on
/// loopback or a management network.
fn monitoring_limits() -> HttpLimits {
    HttpLimits {
        connections: Registry::new(ConnectionLimits { max: 64, per_source: 32 }),
        header_timeout: Duration::from_secs(10),
        body: BodyTimeouts { initial: Duration::from_secs(10), min_rate: 500, max: Duration::from_secs(60) },
    }
}

/// The TFTP front end's limits: the settings, within what the open-file
/// limit allows.
fn tftp_limits(settings: &Settings) -> TftpLimits {
    let budget = FdBudget::for_limit(limits::nofile());
    TftpLimits {
        max_transfers: (settings.tftp_max_transfers as usize).clamp(1, budget.tftp_transfers),
        per_source: (settings.tftp_transfers_per_source as usize).max(1),
        max_timeout: settings.tftp_max_timeout.0,
        default_timeout: settings.tuning.tftp_timeout,
    }
}

fn router(api: ApiState, provisioner: Arc<Provisioner>, prefix: Option<String>) -> Router {
    let admin = crate::admin::router(crate::admin::AdminState::new(api.clone(), provisioner.clone()));
    api::router(api)
        .merge(admin)
        .layer(middleware::from_fn(access_log))
        .merge(crate::provision::http::router(provisioner, prefix))
        .layer(middleware::from_fn(check_host))
}

/// A `Host` that is not an authority is refused before any handler: it
/// would otherwise end up in URLs shown to users and in phones' configs.
async fn check_host(request: Request, next: Next) -> Response {
    if HostHeader::of(request.headers()).is_err() {
        return (StatusCode::BAD_REQUEST, "Bad Host header: expected host[:port]\n").into_response();
    }
    next.run(request).await
}

/// One line per API request: client, method, path, status, µs. Never
/// headers (they carry credentials) and never the query string. Phones'
/// requests are logged by the provisioner, with what it identified.
async fn access_log(client: ClientInfo, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let response = next.run(request).await;
    tracing::info!(
        target: "autoprov::access",
        client = %client.ip,
        tls = client.tls,
        %method,
        path = %path,
        status = response.status().as_u16(),
        us = started.elapsed().as_micros() as u64,
    );
    response
}

fn bind_tcp(what: &'static str, addr: SocketAddr, count: usize) -> Result<(Vec<TcpListener>, SocketAddr), StartError> {
    http_listener::bind(addr, count).map_err(|e| StartError::Bind { what, addr, reason: e.to_string() })
}

fn bind_udp(what: &'static str, addr: SocketAddr) -> Result<(std::net::UdpSocket, SocketAddr), StartError> {
    let err = |e: std::io::Error| StartError::Bind { what, addr, reason: e.to_string() };
    let socket = std::net::UdpSocket::bind(addr).map_err(err)?;
    socket.set_nonblocking(true).map_err(err)?;
    // Bursts (a site's phones answering a domain-wide push, a boot storm's
    // requests) must not overflow the kernel's default buffer.
    let _ = socket2::SockRef::from(&socket).set_recv_buffer_size(4 << 20);
    let local = socket.local_addr().map_err(err)?;
    Ok((socket, local))
}

impl RunningServer {
    /// Reads the TLS certificate and key and the profiles again (SIGHUP):
    /// new handshakes present the new certificate and new requests are
    /// identified with the new profiles; connections and requests in
    /// flight are untouched. What fails to load is logged and the version
    /// in use stays. True when everything was reloaded.
    pub fn reload(&self) -> bool {
        let mut all = true;
        match self.live_cert.reload() {
            Ok(fingerprint) => tracing::info!(%fingerprint, "reloaded the TLS certificate"),
            Err(e) => {
                tracing::warn!(error = %e, "kept the TLS certificate in use: the new one did not load");
                all = false;
            }
        }
        match Profiles::load(self.profiles_dir.as_deref()) {
            Ok(profiles) => {
                let families = profiles.iter().count();
                self.provisioner.replace_profiles(profiles);
                tracing::info!(families, "reloaded the vendor profiles");
            }
            Err(e) => {
                tracing::warn!(error = %e, "kept the vendor profiles in use: the new ones did not load");
                all = false;
            }
        }
        all
    }

    /// Stops accepting and pushing at once (pushes in flight go back to the
    /// queue), gives requests in flight up to [`SHUTDOWN_GRACE`], stops the
    /// workers, then closes the database.
    pub async fn shutdown(self) {
        let _ = self.stop_listeners.send(true);
        for t in self.listeners {
            if let Err(e) = t.await {
                tracing::warn!(error = %e, "a listener task failed");
            }
        }
        // The fetch recorder last: it writes what the listeners served.
        let _ = self.stop_workers.send(true);
        for w in self.workers {
            let _ = w.await;
        }
        self.store.close().await;
    }
}
