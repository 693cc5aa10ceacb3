//! The HTTP and HTTPS listeners: one `SO_REUSEPORT` socket and accept loop
//! per worker thread, as nginx runs one per worker, so accepting new
//! connections (every booting phone opens its own, often with a full TLS
//! handshake) is spread over the cores by the kernel; HTTP/1.1 on hyper.
//! Graceful shutdown: stop accepting, let each connection finish its
//! request in flight, for at most the grace period.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
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

/// A TLS handshake that takes longer than this is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle keep-alive connections waiting for a request header longer than
/// this are closed.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

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
    stop: watch::Receiver<bool>,
    grace: Duration,
) -> std::io::Result<Vec<JoinHandle<()>>> {
    let tls = tls.map(TlsAcceptor::from);
    let mut tasks = Vec::new();
    for l in listeners {
        let listener = TcpListener::from_std(l)?;
        tasks.push(tokio::spawn(accept_loop(listener, app.clone(), tls.clone(), stop.clone(), grace)));
    }
    Ok(tasks)
}

async fn accept_loop(
    listener: TcpListener,
    app: Router,
    tls: Option<TlsAcceptor>,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) {
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
        let _ = stream.set_nodelay(true);
        let watcher = graceful.watcher();
        let app = app.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => serve_connection(TokioIo::new(stream), peer, None, app, watcher).await,
                Some(acceptor) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(tls_stream)) => {
                        // Verified against the configured CAs by rustls.
                        let cert = tls_stream
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|chain| chain.first())
                            .map(|leaf| ClientCertificate(Arc::new(leaf.clone().into_owned())));
                        serve_connection(TokioIo::new(tls_stream), peer, cert, app, watcher).await
                    }
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                },
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
    peer: SocketAddr,
    cert: Option<ClientCertificate>,
    app: Router,
    watcher: hyper_util::server::graceful::Watcher,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        if let Some(cert) = &cert {
            req.extensions_mut().insert(cert.clone());
        }
        app.clone().oneshot(req.map(axum::body::Body::new))
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(io, service);
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}
