//! Hostile clients: each attack found against a release build, reproduced
//! against the real server, and what it gets now. (Logins are in
//! `api_auth`, TFTP floods in `tftp`, CSV floods in `csv`; the figures under
//! load are `benches/hostile.sh`'s.)

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket};

use crate::binary::{autoprov, serve, sigterm};
use crate::harness::{connect_from, https_client, plain_client, plain_client_from, raw_status, Backend, TestServer, ADMIN};
use crate::push::{quick_push, wait_for_push_state, Phone};

const YEALINK: &str = "Yealink SIP-T46S 66.86.0.15";

/// Whether the server closes `stream` within `within` (whatever it says
/// first).
async fn closed_within<S: AsyncRead + Unpin>(stream: &mut S, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

/// One address holds at most its share of connections; an office
/// elsewhere is served meanwhile.
async fn one_address_cannot_hold_every_connection() {
    let srv = TestServer::start_with(Backend::Sqlite, |s| s.connections_per_source = 20).await;
    // 21 connections from one address: the server closes one of them at
    // once (which one depends on the order its accept loops take them in).
    let mut idle = Vec::new();
    for _ in 0..21 {
        idle.push(connect_from("127.0.6.1", srv.http()).await);
    }
    let mut closed = 0;
    for (i, conn) in idle.iter_mut().enumerate() {
        if closed_within(conn, Duration::from_millis(if i == 0 { 2000 } else { 100 })).await {
            closed += 1;
        }
    }
    assert_eq!(closed, 1, "one connection over the share of 20 is closed");
    let (s, _) = srv.get("/api/handset").await;
    assert_eq!(s, StatusCode::OK, "another address is served");
    drop(idle);
    // Once the server has seen them close (it may take a moment), the
    // address is served again.
    crate::harness::eventually("the address's share comes back", Duration::from_secs(5), || async {
        let mut again = connect_from("127.0.6.1", srv.http()).await;
        again.write_all(b"GET /nothing.cfg HTTP/1.1\r\nHost: localhost\r\n\r\n").await.ok()?;
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(2), again.read(&mut buf)).await.ok()?.ok()?;
        buf[..n].starts_with(b"HTTP/1.1").then_some(())
    })
    .await;
    srv.stop().await;
}

/// When every connection is taken by idle clients from many addresses, a
/// new client still gets in: the longest-idle connection makes room.
async fn idle_connections_make_room_for_phones() {
    let srv = TestServer::start_with(Backend::Sqlite, |s| s.max_connections = Some(30)).await;
    let mut idle = Vec::new();
    for i in 0..30 {
        idle.push(connect_from(&format!("127.0.7.{}", i + 1), srv.http()).await);
    }
    for attempt in 0..5 {
        let client = https_client(&srv.running().tls_cert_path, None);
        // Bounded: a server that neither answers nor closes must fail the
        // test, not hang the suite.
        let resp = tokio::time::timeout(
            Duration::from_secs(20),
            client.get(srv.url("/api/handset")).basic_auth(ADMIN.0, Some(ADMIN.1)).send(),
        )
        .await
        .unwrap_or_else(|_| panic!("request {attempt} with every connection taken: no answer in 20 s"));
        assert_eq!(resp.map(|r| r.status()).ok(), Some(StatusCode::OK), "request {attempt} with every connection taken");
    }
    let mut closed = 0;
    for conn in &mut idle {
        if closed_within(conn, Duration::from_millis(50)).await {
            closed += 1;
        }
    }
    assert!((1..=10).contains(&closed), "idle connections closed for room: {closed}");
    srv.stop().await;
}

/// A client that says nothing is closed after the header deadline; one
/// that trickles a body is answered 408 and closed; one that sends its
/// body slowly but honestly is served.
async fn silent_and_trickling_clients_are_cut_off() {
    use autoprov::config::HumanDuration;
    let srv = TestServer::start_with(Backend::Sqlite, |s| {
        s.header_timeout = HumanDuration(Duration::from_secs(1));
        s.body_timeout = HumanDuration(Duration::from_secs(1));
    })
    .await;
    let started = Instant::now();
    let mut silent = connect_from("127.0.8.1", srv.http()).await;
    assert!(closed_within(&mut silent, Duration::from_secs(5)).await);
    assert!(started.elapsed() < Duration::from_secs(4), "closed after {:?}", started.elapsed());

    let mut tls = crate::harness::tls_from(&srv, "127.0.8.2").await;
    let head = format!(
        "POST /api/handset HTTP/1.1\r\nHost: localhost\r\nAuthorization: Basic {}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{",
        basic(ADMIN.0, ADMIN.1)
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let trickle = async {
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if tls.write_all(b" ").await.is_err() {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(3), trickle).await;
    let mut answer = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut answer)).await.expect("an answer").unwrap_or(0);
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(6), "{:?}", started.elapsed());

    // 40 KB at 20 KB/s: slower than a LAN, far faster than the minimum rate.
    let mut tls = crate::harness::tls_from(&srv, "127.0.8.3").await;
    let name = "x".repeat(40);
    let notes = "n".repeat(1000);
    let body = json!({"extensionnumber": "100", "name": name, "notes": notes}).to_string();
    let padded = format!("{body}{}", " ".repeat(40_000));
    let head = format!(
        "POST /api/handset HTTP/1.1\r\nHost: localhost\r\nAuthorization: Basic {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        basic(ADMIN.0, ADMIN.1),
        padded.len()
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    for chunk in padded.as_bytes().chunks(2_000) {
        tls.write_all(chunk).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut answer)).await.expect("an answer").unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    srv.stop().await;
}

/// HTTPS answers pin HTTPS; API answers (which carry SIP passwords) are
/// never stored, errors included.
async fn https_is_pinned_and_api_answers_are_not_stored() {
    let srv = TestServer::start(Backend::Sqlite).await;
    let resp = srv.client.get(srv.url("/api/handset")).basic_auth(ADMIN.0, Some(ADMIN.1)).send().await.unwrap();
    assert_eq!(resp.headers()["strict-transport-security"], "max-age=31536000");
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let resp = srv.client.get(srv.url("/api/handset/100")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(resp.headers()["cache-control"], "no-store", "errors too");
    let resp = plain_client().get(srv.plain_url("/001565000001.cfg")).send().await.unwrap();
    assert!(resp.headers().get("strict-transport-security").is_none(), "not over plain HTTP");
    srv.stop().await;
}

/// A `Host` that is not `host[:port]` is refused before anything reads it.
async fn hosts_that_are_not_authorities_are_refused() {
    let srv = TestServer::start(Backend::Sqlite).await;
    let path = srv.phone_path("001565000001.cfg").await;
    for host in ["[::1", "x:99999999", "a b", "evil.example/path"] {
        let mut conn = connect_from("127.0.0.1", srv.http()).await;
        let status =
            raw_status(&mut conn, &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {YEALINK}\r\n\r\n")).await;
        assert!(status.starts_with("HTTP/1.1 400"), "Host {host:?}: {status}");
        let mut tls = crate::harness::tls_from(&srv, "127.0.0.1").await;
        let status = raw_status(&mut tls, &format!("GET /api/domain HTTP/1.1\r\nHost: {host}\r\n\r\n")).await;
        assert!(status.starts_with("HTTP/1.1 400"), "Host {host:?} on the API: {status}");
    }
    srv.stop().await;
}

/// A key given twice, a line separator or a bidi control in a one-line
/// field: 400 with the reason, nothing written.
async fn ambiguous_json_and_sneaky_characters_are_refused() {
    let srv = TestServer::start(Backend::Sqlite).await;
    let post = |body: String| {
        srv.client
            .post(srv.url("/api/handset"))
            .basic_auth(ADMIN.0, Some(ADMIN.1))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let (s, v) =
        crate::harness::read(post(r#"{"extensionnumber":"100","name":"Alice","name":"Mallory"}"#.into()).await.unwrap()).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["error"].as_str().unwrap().contains("\"name\" appears twice"), "{v}");
    for (field, value) in [
        ("name", "Reception\u{2028}Line two"),
        ("name", "Evil\u{202e}gpj.exe"),
        ("location", "Floor\u{2029}1"),
        ("name", "\u{2066}isolated\u{2069}"),
    ] {
        let (s, v) = crate::harness::read(post(json!({"extensionnumber": "101", field: value}).to_string()).await.unwrap()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{field} {value:?}: {v}");
        assert!(v["error"].as_str().unwrap().contains(field), "{v}");
    }
    let body = json!({"extensionnumber": "102", "settings": {"account.1.label": "A\u{202e}B"}}).to_string();
    let (s, _) = crate::harness::read(post(body).await.unwrap()).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(srv.get("/api/handset").await.1, json!([]), "nothing was written");
    srv.stop().await;
}

/// A `readonly` user reads the directory, not the phones' credentials.
async fn readonly_users_see_sip_passwords_masked(b: Backend) {
    let srv = TestServer::start(b).await;
    srv.create_handset(json!({"extensionnumber": "100", "password": "Real-Secret-123"})).await;
    srv.add_user("reader@default", "reader-password-1", "readonly", false).await;
    let reader = ("reader@default", "reader-password-1");
    let (s, one) = srv.call(reqwest::Method::GET, "/api/handset/100", reader, None).await;
    let (_, all) = srv.call(reqwest::Method::GET, "/api/handset", reader, None).await;
    assert_eq!((s, one["password"].as_str(), all[0]["password"].as_str()), (StatusCode::OK, Some("***"), Some("***")));
    assert!(!one.to_string().contains("Real-Secret-123") && !all.to_string().contains("Real-Secret-123"));
    assert_eq!(srv.get("/api/handset/100").await.1["password"], "Real-Secret-123", "an admin sees it");
    // The device password (the phone's fetch credential and, on some
    // families, its web login) likewise.
    assert_eq!(one["devicepassword"], "***");
    let device = srv.get("/api/handset/100").await.1["devicepassword"].as_str().unwrap().to_string();
    assert!(device.len() >= 16 && device != "***", "an admin sees it: {device}");
    srv.stop().await;
}

/// Probes from many networks fill the unknown-device list; a real phone
/// that booted before them stays listed (the biggest sources give up
/// their entries first).
async fn a_scan_cannot_push_a_booting_phone_off_the_unknown_list() {
    let srv = TestServer::start_with(Backend::Sqlite, |s| s.unknown_device_cap = 50).await;
    let token = srv.token().await;
    let fetch = |source: &str, mac: String| {
        let client = plain_client_from(Some(source.parse().unwrap()));
        let url = srv.plain_url(&format!("/p/{token}/{mac}.cfg"));
        async move { client.get(url).header("user-agent", YEALINK).send().await.unwrap().status() }
    };
    assert_eq!(fetch("127.0.9.1", "001565a0b0c0".into()).await, StatusCode::NOT_FOUND);
    crate::harness::wait_for_unknown_device(&srv, "001565a0b0c0").await;
    for net in 10..20 {
        for i in 0..10 {
            let status = fetch(&format!("127.0.{net}.1"), format!("001565ee{net:02x}{i:02x}")).await;
            assert_eq!(status, StatusCode::NOT_FOUND);
        }
    }
    crate::harness::wait_for_unknown_device(&srv, "001565ee1309").await;
    let (_, devices) = srv.get("/api/device?state=unknown&maxresults=1000").await;
    let macs: Vec<&str> = devices.as_array().unwrap().iter().filter_map(|d| d["mac"].as_str()).collect();
    assert!(macs.len() <= 50, "capped: {}", macs.len());
    assert!(macs.contains(&"001565a0b0c0"), "the booting phone is still listed: {macs:?}");
    srv.stop().await;
}

/// Tenants cannot point their relays inside the server: addresses are
/// refused when set, names when they resolve.
async fn relay_targets_inside_the_server_are_refused() {
    let srv = TestServer::start_with(Backend::Sqlite, |s| {
        quick_push(s);
        s.allow_internal_targets = false;
    })
    .await;
    let ami = |host: &str| json!({"pushbackend": "ami", "amihost": host, "amiport": 5038, "amiuser": "u", "amisecret": "s"});
    let hook = |url: &str| json!({"pushbackend": "webhook", "webhookurl": url, "webhooksecret": "s"});
    for (body, word) in [
        (hook("http://127.0.0.1:9/hook"), "loopback"),
        (hook("https://169.254.169.254/latest/meta-data/"), "link-local"),
        (hook("https://[::1]:8443/x"), "loopback"),
        (ami("127.0.0.1"), "loopback"),
        (ami("0.0.0.0"), "unspecified"),
        (ami("224.0.0.1"), "multicast"),
        (ami("::ffff:127.0.0.1"), "loopback"),
    ] {
        let (s, v) = srv.put("/api/domain", body.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert!(v["error"].as_str().unwrap().contains(word), "{body}: {v}");
    }
    let (s, v) = srv.put("/api/domain", hook("https://localhost:9/hook")).await;
    assert_eq!(s, StatusCode::OK, "a name is judged when it resolves: {v}");
    srv.create_handset(json!({"extensionnumber": "100", "mac": "001565000100"})).await;
    srv.put("/api/handset/100", json!({"name": "Changed"})).await;
    let h = wait_for_push_state(&srv, "100", "failed", Duration::from_secs(10)).await;
    assert!(h["provisioning"]["lasterror"].as_str().unwrap().contains("loopback addresses are not allowed"), "{h}");
    srv.stop().await;
}

/// Whatever is at the relay's address (nothing, something else, an HTTP
/// server that says 404, an Asterisk that refuses the login), the tenant
/// reads the same error: relay settings are no port scanner.
async fn relay_failures_do_not_tell_ports_apart() {
    let srv = TestServer::start_with(Backend::Sqlite, quick_push).await;
    srv.create_handset(json!({"extensionnumber": "100", "mac": "001565000100"})).await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    // Says something that is neither HTTP nor AMI, then hangs up.
    let chatty = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let chatty_addr = chatty.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = chatty.accept().await {
            let _ = s.write_all(b"SSH-2.0-OpenSSH_9.2\r\n").await;
        }
    });
    let web = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let web_addr = web.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(web, axum::Router::new()).await });
    // An Asterisk that refuses the login.
    let pbx = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let pbx_addr = pbx.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = pbx.accept().await {
            tokio::spawn(async move {
                let _ = s.write_all(b"Asterisk Call Manager/7.0.3\r\n").await;
                let mut buf = vec![0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
                        _ => return,
                    }
                }
                let _ =
                    s.write_all(b"Response: Error\r\nActionID: autoprov-login\r\nMessage: Authentication failed\r\n\r\n").await;
            });
        }
    });
    let mut errors = std::collections::BTreeMap::new();
    let mut revision_name = 0;
    for (kind, targets) in [("webhook", [closed, chatty_addr, web_addr]), ("ami", [closed, chatty_addr, pbx_addr])] {
        for addr in targets {
            let relay = match kind {
                "webhook" => json!({"pushbackend": "webhook", "webhookurl": format!("http://{addr}/hook"), "webhooksecret": "s"}),
                _ => {
                    json!({"pushbackend": "ami", "amihost": "127.0.0.1", "amiport": addr.port(), "amiuser": "u", "amisecret": "s"})
                }
            };
            let (s, v) = srv.put("/api/domain", relay).await;
            assert_eq!(s, StatusCode::OK, "{v}");
            revision_name += 1;
            srv.put("/api/handset/100", json!({"name": format!("Try {revision_name}")})).await;
            let h = wait_for_push_state(&srv, "100", "failed", Duration::from_secs(15)).await;
            errors.entry(kind).or_insert_with(Vec::new).push(h["provisioning"]["lasterror"].as_str().unwrap().to_string());
        }
    }
    for (kind, seen) in &errors {
        assert!(seen.iter().all(|e| e == &seen[0]), "{kind}: the tenant can tell the targets apart: {seen:?}");
        assert!(!seen[0].contains(&closed.port().to_string()), "{seen:?}");
    }
    srv.stop().await;
}

/// The data directory, the database and its WAL, the keys: the owner's
/// only, also when an older version left the database readable by all.
async fn data_files_are_the_owners_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut settings = autoprov::config::Settings::for_data_dir(&data);
    settings.admin_password = Some(autoprov::model::Secret::new(ADMIN.1));
    let srv = autoprov::server::start(settings.clone()).await.unwrap();
    let client = https_client(&srv.tls_cert_path, None);
    let url = format!("https://localhost:{}/api/handset", srv.https_addr.unwrap().port());
    let resp = client.post(&url).basic_auth(ADMIN.0, Some(ADMIN.1)).json(&json!({"extensionnumber": "100"})).send().await;
    assert_eq!(resp.unwrap().status(), StatusCode::CREATED);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700, "the data directory");
    for file in ["autoprov.db", "autoprov.db-wal", "autoprov.db-shm", "tls/key.pem"] {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}");
    }
    srv.shutdown().await;
    std::fs::set_permissions(data.join("autoprov.db"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let srv = autoprov::server::start(settings).await.unwrap();
    assert_eq!(mode(&data.join("autoprov.db")), 0o600, "tightened at start");
    srv.shutdown().await;
}

/// Nothing a client sends can forge a log line: a login name with a
/// newline and a fake ban, a bidi override in a login form, a file name
/// with a line break.
async fn log_lines_cannot_be_forged() {
    let dir = tempfile::tempdir().unwrap();
    let mut served = serve(autoprov(dir.path()).env("AUTOPROV_ADMIN_PASSWORD", ADMIN.1).env("AUTOPROV_LOG", "debug,sqlx=warn"));
    let https = served.addr("HTTPS listening on ");
    let http = served.addr("HTTP  listening on ");
    let client = https_client(&dir.path().join("tls/cert.pem"), None);
    let forged = "evil\nscan-guard ban ip=192.0.2.66 \u{1b}[2J";
    let resp = client.get(format!("https://localhost:{}/api/handset", https.port())).basic_auth(forged, Some("x")).send();
    assert_eq!(resp.await.unwrap().status(), StatusCode::UNAUTHORIZED);
    let form = [("login", "admin@default\nscan-guard ban ip=192.0.2.67"), ("password", "x\u{202e}y"), ("csrf", "")];
    let _ = client.post(format!("https://localhost:{}/admin/login", https.port())).form(&form).send().await.unwrap();
    let _ = plain_client().get(format!("http://{http}/p/bad%0ascan-guard%20ban%20ip=192.0.2.68/x%0d%0a.cfg")).send().await;
    sigterm(&served.child);
    assert!(served.exited_within(Duration::from_secs(10)).is_some());
    let log = served.log();
    assert!(!log.is_empty());
    for line in log.lines() {
        assert!(line.starts_with("20"), "every line is one event, stamped: {line:?}");
        assert!(!line.starts_with("scan-guard"), "{line:?}");
        assert!(!line.chars().any(|c| c.is_control() || autoprov::model::is_line_or_bidi_control(c)), "{line:?}");
    }
}

/// SIGTERM with a NOTIFY in flight (its phone never answers) stops the
/// server within 10 s; a restart at once takes the same SIP port and sends
/// the push again.
async fn sigterm_with_a_push_in_flight_stops_within_ten_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let phone = Phone::new().await;
    let start = |sip: &str| {
        let mut cmd = autoprov(dir.path());
        cmd.env("AUTOPROV_ADMIN_PASSWORD", ADMIN.1).env("AUTOPROV_SIP_LISTEN", sip);
        serve(&mut cmd)
    };
    let mut served = start("127.0.0.1:0");
    let sip = served.addr("SIP   pushes from ");
    let client = https_client(&dir.path().join("tls/cert.pem"), None);
    let api = |path: &str| format!("https://localhost:{}{path}", served.addr("HTTPS listening on ").port());
    let call = |m: reqwest::Method, path: String, body: Value| {
        client.request(m, path).basic_auth(ADMIN.0, Some(ADMIN.1)).json(&body).send()
    };
    let r = call(reqwest::Method::POST, api("/api/handset"), json!({"extensionnumber": "100", "mac": "001565aabb78"})).await;
    assert_eq!(r.unwrap().status(), StatusCode::CREATED);
    let r =
        call(reqwest::Method::PUT, api("/api/handsetstatus/100"), json!({"registrationaddress": phone.addr().to_string()})).await;
    assert_eq!(r.unwrap().status(), StatusCode::OK);
    let r = call(reqwest::Method::PUT, api("/api/handset/100"), json!({"name": "In flight"})).await;
    assert_eq!(r.unwrap().status(), StatusCode::OK);
    assert!(phone.next(Duration::from_secs(5)).await.is_some(), "the NOTIFY went out (and is never answered)");

    let started = Instant::now();
    sigterm(&served.child);
    let status = served.exited_within(Duration::from_secs(10)).expect("stopped within 10 s");
    assert!(status.success(), "{status:?}");
    let took = started.elapsed();
    let mut again = start(&sip.to_string());
    assert_eq!(again.addr("SIP   pushes from "), sip, "the same SIP port, at once");
    let notify = loop {
        let n = phone.next(Duration::from_secs(10)).await.expect("the push is sent again after the restart");
        if n.request_line().starts_with("NOTIFY") {
            break n;
        }
    };
    phone.answer(&notify, "200 OK", "").await;
    sigterm(&again.child);
    assert!(again.exited_within(Duration::from_secs(10)).is_some());
    eprintln!("SIGTERM to exit with a NOTIFY in flight: {took:?}");
}

/// Under a 1,024-descriptor limit, 1,100 idle connections from a few
/// addresses do not stop phones from being served.
async fn a_low_open_file_limit_still_serves_phones() {
    autoprov::limits::raise_nofile().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = crate::binary::autoprov_with_nofile(dir.path(), 1024);
    cmd.env("AUTOPROV_ADMIN_PASSWORD", ADMIN.1);
    let served = serve(&mut cmd);
    let http = served.addr("HTTP  listening on ");
    let https = served.addr("HTTPS listening on ");
    let mut idle = Vec::new();
    for i in 0..1100 {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(format!("127.0.30.{}", i % 5 + 1).parse().unwrap(), 0)).unwrap();
        if let Ok(conn) = socket.connect(http).await {
            idle.push(conn);
        }
    }
    let client = https_client(&dir.path().join("tls/cert.pem"), None);
    for i in 0..20 {
        let fresh = plain_client();
        let status = fresh.get(format!("http://{http}/001565000001.cfg")).send().await.map(|r| r.status());
        assert!(status.is_ok(), "phone fetch {i}: {status:?}");
        let status =
            client.get(format!("https://localhost:{}/api/handset", https.port())).basic_auth(ADMIN.0, Some(ADMIN.1)).send().await;
        assert_eq!(status.map(|r| r.status()).ok(), Some(StatusCode::OK), "API call {i}");
    }
    drop(idle);
}

crate::both_backends!(readonly_users_see_sip_passwords_masked);

crate::e2e!(
    one_address_cannot_hold_every_connection,
    idle_connections_make_room_for_phones,
    silent_and_trickling_clients_are_cut_off,
    https_is_pinned_and_api_answers_are_not_stored,
    hosts_that_are_not_authorities_are_refused,
    ambiguous_json_and_sneaky_characters_are_refused,
    a_scan_cannot_push_a_booting_phone_off_the_unknown_list,
    relay_targets_inside_the_server_are_refused,
    relay_failures_do_not_tell_ports_apart,
    data_files_are_the_owners_only,
    log_lines_cannot_be_forged,
    sigterm_with_a_push_in_flight_stops_within_ten_seconds,
    a_low_open_file_limit_still_serves_phones,
);
