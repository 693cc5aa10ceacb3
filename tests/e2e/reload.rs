//! Reloads of the running binary (SIGHUP): a renewed TLS certificate is
//! presented on the next handshake while connections already up keep
//! working; changed vendor profiles are used by the next request; a bad
//! certificate or profile is logged and the one in use stays.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::binary::{autoprov, serve, Served};
use crate::e2e;
use crate::harness::{eventually, plain_client};

e2e!(
    sighup_presents_a_renewed_certificate_and_keeps_connections_up,
    sighup_reloads_the_profiles_and_keeps_good_ones,
    systemd_hears_ready_reloading_and_stopping
);

fn sighup(server: &Served) {
    let ok = Command::new("kill").args(["-HUP", &server.child.id().to_string()]).status().unwrap().success();
    assert!(ok, "kill -HUP");
}

/// A self-signed pair for `localhost`, written over `cert` and `key`;
/// returns the certificate.
fn write_pair(cert: &Path, key: &Path) -> CertificateDer<'static> {
    let pair = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    std::fs::write(cert, pair.cert.pem()).unwrap();
    std::fs::write(key, pair.key_pair.serialize_pem()).unwrap();
    pair.cert.der().clone()
}

/// A TLS connection that trusts `roots` (both the old and the renewed
/// certificate, so the handshake says which one the server presented).
async fn connect(addr: std::net::SocketAddr, roots: &[CertificateDer<'static>]) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut store = rustls::RootCertStore::empty();
    for cert in roots {
        store.add(cert.clone()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(store)
        .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.unwrap()
}

fn presented(stream: &tokio_rustls::client::TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream.get_ref().1.peer_certificates().expect("a server certificate")[0].clone().into_owned()
}

/// `HEAD` on a kept-alive connection: the status line (a HEAD answer ends
/// with its headers, so the connection is ready for the next request).
async fn head(stream: &mut tokio_rustls::client::TlsStream<TcpStream>, path: &str) -> String {
    let request = format!("HEAD {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await.expect("an answer").unwrap();
        assert!(n > 0, "the connection was closed");
        answer.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&answer).lines().next().unwrap_or_default().to_string()
}

async fn sighup_presents_a_renewed_certificate_and_keeps_connections_up() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let old = write_pair(&cert, &key);
    let server = serve(autoprov(&dir.path().join("data")).env("AUTOPROV_TLS_CERT", &cert).env("AUTOPROV_TLS_KEY", &key));
    let addr = server.addr("HTTPS listening on ");

    let mut kept = connect(addr, std::slice::from_ref(&old)).await;
    assert_eq!(presented(&kept), old);
    assert!(head(&mut kept, "/admin/login").await.starts_with("HTTP/1.1 200"));

    // A renewal: the new pair over the old files, then SIGHUP.
    let renewed = write_pair(&cert, &key);
    sighup(&server);
    let roots = [old.clone(), renewed.clone()];
    eventually("the next handshake presents the renewed certificate", Duration::from_secs(10), || async {
        (presented(&connect(addr, &roots).await) == renewed).then_some(())
    })
    .await;
    assert!(server.log().contains("reloaded the TLS certificate"), "{}", server.log());
    // The connection opened before the reload is still up and served.
    assert!(head(&mut kept, "/admin/login").await.starts_with("HTTP/1.1 200"));

    // Half a renewal (a certificate whose key is not there yet) and garbage
    // are refused: the renewed pair stays in use.
    write_pair(&cert, &dir.path().join("other-key.pem"));
    sighup(&server);
    eventually("the mismatched key is reported", Duration::from_secs(10), || async {
        server.log().contains("does not match the certificate").then_some(())
    })
    .await;
    std::fs::write(&cert, "not a certificate").unwrap();
    sighup(&server);
    eventually("the broken certificate is reported", Duration::from_secs(10), || async {
        server.log().contains("no CERTIFICATE block").then_some(())
    })
    .await;
    assert!(server.log().contains("kept the TLS certificate in use"));
    assert_eq!(presented(&connect(addr, &roots).await), renewed);
    assert!(head(&mut kept, "/admin/login").await.starts_with("HTTP/1.1 200"));
}

/// The built-in profile of the family this test overrides, with its
/// `content_type` line replaced: the visible effect of a reload.
fn profile_with_content_type(content_type: &str) -> String {
    let built_in = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/vendor-profiles/yealink.toml")).unwrap();
    let line = built_in.lines().find(|l| l.starts_with("content_type")).expect("a content_type line");
    built_in.replacen(line, &format!("content_type = \"{content_type}\""), 1)
}

async fn sighup_reloads_the_profiles_and_keeps_good_ones() {
    let dir = tempfile::tempdir().unwrap();
    let profiles = dir.path().join("profiles");
    std::fs::create_dir(&profiles).unwrap();
    let file = profiles.join("yealink.toml");
    std::fs::write(&file, profile_with_content_type("text/plain; charset=utf-8")).unwrap();
    let server = serve(autoprov(&dir.path().join("data")).env("AUTOPROV_PROFILES_DIR", &profiles));
    let http = server.addr("HTTP  listening on ");
    // A model's common file (Yealink's y000000000028.cfg, the T46S's
    // device code): no phone record, so no credentials needed.
    let content_type = || async {
        let resp = plain_client()
            .get(format!("http://{http}/y000000000028.cfg"))
            .header("User-Agent", "Yealink SIP-T46S 66.86.0.15 00:15:65:aa:bb:cc")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.headers()["content-type"].to_str().unwrap().to_string()
    };
    assert_eq!(content_type().await, "text/plain; charset=utf-8");

    std::fs::write(&file, profile_with_content_type("text/x-reloaded; charset=utf-8")).unwrap();
    sighup(&server);
    eventually("the reloaded profile is used", Duration::from_secs(10), || async {
        (content_type().await == "text/x-reloaded; charset=utf-8").then_some(())
    })
    .await;

    // A broken profile is named in the log and the last good ones stay.
    std::fs::write(&file, "family = \"yealink\"\n[[files]\n").unwrap();
    sighup(&server);
    eventually("the broken profile is reported", Duration::from_secs(10), || async {
        server.log().contains("kept the vendor profiles in use").then_some(())
    })
    .await;
    assert!(server.log().contains("yealink.toml"), "the log names the file: {}", server.log());
    assert_eq!(content_type().await, "text/x-reloaded; charset=utf-8");
}

/// The messages the server sends to `NOTIFY_SOCKET`, as systemd's
/// `Type=notify` reads them: a datagram of `KEY=value` lines each.
async fn systemd_hears_ready_reloading_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let next = || {
        let mut buf = [0u8; 4096];
        let n = socket.recv(&mut buf).expect("a notification within 20 s");
        String::from_utf8_lossy(&buf[..n]).to_string()
    };
    let mut server = serve(autoprov(&dir.path().join("data")).env("NOTIFY_SOCKET", &path));
    // READY only once the listeners are up: the server has printed where.
    let ready = next();
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready:?}");
    let http = server.addr("HTTP  listening on ");
    assert_eq!(plain_client().get(format!("http://{http}/api/handset")).send().await.unwrap().status(), 406);

    sighup(&server);
    let reloading = next();
    assert!(reloading.lines().any(|l| l == "RELOADING=1"), "{reloading:?}");
    let usec = reloading.lines().find_map(|l| l.strip_prefix("MONOTONIC_USEC=")).expect("MONOTONIC_USEC with RELOADING");
    assert!(usec.parse::<u64>().unwrap() > 0);
    let ready = next();
    assert!(ready.lines().any(|l| l == "READY=1") && ready.contains("STATUS=serving"), "{ready:?}");

    crate::binary::sigterm(&server.child);
    let stopping = next();
    assert!(stopping.lines().any(|l| l == "STOPPING=1"), "{stopping:?}");
    assert!(server.exited_within(Duration::from_secs(10)).is_some_and(|s| s.success()));
}
