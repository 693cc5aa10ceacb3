//! `autoprov serve`: start, say where we listen, tell systemd we are ready
//! (`Type=notify`), reload on SIGHUP, and on SIGTERM/SIGINT shut down
//! gracefully.

use sd_notify::NotifyState;

use crate::config::Settings;
use crate::server;

pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    // Signal handlers first: a SIGTERM that arrives while we start up must
    // stop us gracefully too, not kill us.
    let stop = shutdown_signal()?;
    #[cfg(unix)]
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    // Every connection and TFTP transfer holds a descriptor: take all the
    // hard limit allows (the budget of `limits` shares them out).
    match crate::limits::raise_nofile() {
        Ok(n) => tracing::debug!(open_files = n, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "could not raise the open-file limit"),
    }
    let running = server::start(settings.clone()).await?;
    if let Some(b) = &running.bootstrapped {
        match (&b.generated_password, &b.password_file) {
            (Some(p), Some(file)) => {
                println!("Created superuser admin@default with password: {}", p.expose());
                println!("(shown once; also written to {})", file.display());
            }
            _ => println!("Created superuser admin@default with the password from AUTOPROV_ADMIN_PASSWORD"),
        }
    }
    println!("Database: {}", crate::store::redact_url(&settings.database_url));
    if let Some(a) = running.http_addr {
        println!("HTTP  listening on {a}");
    }
    if let Some(a) = running.https_addr {
        println!("HTTPS listening on {a}");
    }
    if let Some(a) = running.tftp_addr {
        println!("TFTP  listening on {a}");
    }
    if let Some(a) = running.sip_addr {
        println!("SIP   pushes from {a}");
    }
    if let Some(a) = running.metrics_addr {
        println!("Metrics listening on {a}");
    }
    println!("TLS certificate {} SHA-256 fingerprint {}", running.tls_cert_path.display(), running.tls_fingerprint);
    notify_systemd(&[NotifyState::Ready, NotifyState::Status("serving")]);
    tokio::pin!(stop);
    loop {
        #[cfg(unix)]
        tokio::select! {
            _ = &mut stop => break,
            _ = hangup.recv() => {
                // systemd's reload protocol: RELOADING with the time, then READY.
                let reloading = NotifyState::monotonic_usec_now().ok();
                notify_systemd(&[NotifyState::Reloading].into_iter().chain(reloading).collect::<Vec<_>>());
                let status = if running.reload() { "serving" } else { "serving; the last reload failed (see the log)" };
                notify_systemd(&[NotifyState::Ready, NotifyState::Status(status)]);
            }
        }
        #[cfg(not(unix))]
        {
            (&mut stop).await;
            break;
        }
    }
    notify_systemd(&[NotifyState::Stopping]);
    tracing::info!("shutting down: no new connections, up to {:?} for requests in flight", server::SHUTDOWN_GRACE);
    running.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

/// Tells systemd (when it started us with `NOTIFY_SOCKET`; otherwise a
/// no-op) how the service is.
fn notify_systemd(state: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(false, state) {
        tracing::warn!(error = %e, "could not notify systemd");
    }
}

fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    #[cfg(unix)]
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    Ok(async move {
        #[cfg(unix)]
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    })
}
