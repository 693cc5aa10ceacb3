//! The HTTP and HTTPS listeners: one `SO_REUSEPORT` socket and accept loop
//! per worker thread, as nginx runs one per worker, so accepting new
//! connections (every booting phone opens its own, often with a full TLS
//! handshake) is spread over the cores by the kernel; HTTP/1.1 on hyper.
//! Graceful shutdown: stop accepting, let each connection finish its
//! request in flight, for at most the grace period.
//!
//! Bounded whatever clients do: connections per source and in all
//! ([`connections`]), a deadline for the TLS handshake and for each request
//! header (an idle keep-alive connection included), and a minimum rate for
//! request bodies ([`timed_body`]).

pub mod connections;
pub mod timed_body;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::header::STRICT_TRANSPORT_SECURITY;
use axum::http::HeaderValue;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::client::ClientCertificate;
use connections::{Connection, Registry};
use timed_body::{BodyTimeouts, TimedBody};

/// A TLS handshake that takes longer than this is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// HTTPS answers tell browsers to use nothing else for this host for a
/// year (RFC 6797). Browsers ignore it over a certificate they do not
/// trust (§8.1), so the self-signed start-up certificate is not pinned.
const HSTS: &str = "max-age=31536000";

/// What every connection of both listeners is held to.
#[derive(Clone)]
pub struct HttpLimits {
    pub connections: Arc<Registry>,
    /// For a request header, from the first byte awaited (so also for an
    /// idle keep-alive connection's next request).
    pub header_timeout: Duration,
    pub body: BodyTimeouts,
}

/// Binds `count` sockets to `addr` with `SO_REUSEPORT` (port 0: the first
/// picks the port, the others join it). Returns them and the bound address.
///
/// A probe without `SO_REUSEPORT` goes first: otherwise a second autoprov
/// started by mistake on the same port would silently share it.
pub fn bind(addr: SocketAddr, count: usize) -> std::io::Result<(Vec<std::net::TcpListener>, SocketAddr)> {
    let mut bound = {
        let probe =
            socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
        probe.set_reuse_address(true)?;
        if addr.is_ipv6() {
            probe.set_only_v6(false).ok();
        }
        probe.bind(&addr.into())?;
        probe.listen(1)?;
        probe.local_addr()?.as_socket().unwrap_or(addr)
    };
    let mut listeners = Vec::with_capacity(count);
    for _ in 0..count.max(1) {
        let socket =
            socket2::Socket::new(socket2::Domain::for_address(bound), socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        #[cfg(unix)]
        socket.set_reuse_port(true)?;
        if bound.is_ipv6() {
            socket.set_only_v6(false).ok();
        }
        socket.bind(&bound.into())?;
        socket.listen(4096)?;
        socket.set_nonblocking(true)?;
        let listener: std::net::TcpListener = socket.into();
        bound = listener.local_addr()?;
        listeners.push(listener);
    }
    Ok((listeners, bound))
}

/// Serves `app` on every listener until `stop` turns true, then waits up
/// to `grace` for connections to finish.
pub fn serve(
    listeners: Vec<std::net::TcpListener>,
    app: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: HttpLimits,
    stop: watch::Receiver<bool>,
    grace: Duration,
) -> std::io::Result<Vec<JoinHandle<()>>> {
    let tls = tls.map(TlsAcceptor::from);
    let mut tasks = Vec::new();
    for l in listeners {
        let listener = TcpListener::from_std(l)?;
        tasks.push(tokio::spawn(accept_loop(listener, app.clone(), tls.clone(), limits.clone(), stop.clone(), grace)));
    }
    Ok(tasks)
}

async fn accept_loop(
    listener: TcpListener,
    app: Router,
    tls: Option<TlsAcceptor>,
    limits: HttpLimits,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) {
    let mut refusals = RefusalLog::default();
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: back off, go on.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let conn = match limits.connections.admit(crate::client::canonical(peer.ip())) {
            Ok(conn) => conn,
            Err(why) => {
                // Closed at once: the descriptor is back before the next accept.
                refusals.note(why);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let watcher = graceful.watcher();
        let (app, tls, limits) = (app.clone(), tls.clone(), limits.clone());
        tokio::spawn(async move {
            let closed = conn.clone();
            let serve = async move {
                match tls {
                    None => serve_connection(TokioIo::new(stream), (peer, false, None), app, conn, &limits, watcher).await,
                    Some(acceptor) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls_stream)) => {
                            // Verified against the configured CAs by rustls.
                            let cert = tls_stream
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|chain| chain.first())
                                .map(|leaf| ClientCertificate(Arc::new(leaf.clone().into_owned())));
                            serve_connection(TokioIo::new(tls_stream), (peer, true, cert), app, conn, &limits, watcher).await
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    },
                }
            };
            // Closed for room (it was idle): dropping it closes the socket.
            tokio::select! {
                () = serve => {}
                () = closed.close.notified() => tracing::debug!(%peer, "idle connection closed to make room"),
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
        tracing::warn!("connections still open after the shutdown grace period: closing them");
    }
}

async fn serve_connection<I>(
    io: TokioIo<I>,
    (peer, tls, cert): (SocketAddr, bool, Option<ClientCertificate>),
    app: Router,
    conn: Arc<Connection>,
    limits: &HttpLimits,
    watcher: hyper_util::server::graceful::Watcher,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let body_limits = limits.body;
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        if let Some(cert) = &cert {
            req.extensions_mut().insert(cert.clone());
        }
        conn.busy();
        let (app, conn) = (app.clone(), conn.clone());
        async move {
            let req = req.map(|body| axum::body::Body::new(TimedBody::new(body, body_limits)));
            let mut response = app.oneshot(req).await;
            if let Ok(r) = &mut response {
                if tls {
                    r.headers_mut().insert(STRICT_TRANSPORT_SECURITY, HeaderValue::from_static(HSTS));
                }
            }
            conn.idle();
            response
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        // Over TLS, head and body copied into one buffer make one record
        // (one seal here, one open and one read for the phone) where a
        // vectored write makes two.
        .writev(!tls)
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .serve_connection(io, service);
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// Refused connections, logged at most once a minute (a flood must not
/// flood the log too).
#[derive(Default)]
struct RefusalLog {
    since: Option<std::time::Instant>,
    by_source: u64,
    full: u64,
}

impl RefusalLog {
    fn note(&mut self, why: connections::Refused) {
        match why {
            connections::Refused::Source => self.by_source += 1,
            connections::Refused::Full => self.full += 1,
        }
        let now = std::time::Instant::now();
        if self.since.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(60)) {
            tracing::warn!(
                per_source_cap = self.by_source,
                all_busy = self.full,
                "connections refused (too many from one address, or all busy)"
            );
            (self.since, self.by_source, self.full) = (Some(now), 0, 0);
        }
    }
}
