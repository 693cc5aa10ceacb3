//! Push: an API change reaches the phone as a SIP NOTIFY, sent to real UDP
//! sockets acting as phones, and convergence is tracked to `applied`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use autoprov::config::Settings;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::net::UdpSocket;

use crate::both_backends;
use crate::harness::{Backend, TestServer, ADMIN};
use crate::provisioning::{http_get, phone as a_phone, phones};

/// Short SIP timers and retries, so failures show within seconds.
pub fn quick_push(s: &mut Settings) {
    s.tuning.sip_timers = autoprov::sip::Timers {
        t1: Duration::from_millis(50),
        t2: Duration::from_millis(400),
        timer_f: Duration::from_millis(1600),
        tcp_connect: Duration::from_millis(500),
    };
    s.tuning.push_retry_base = Duration::from_millis(100);
    s.push_attempts = 3;
}

/// A phone: a UDP socket that receives NOTIFYs and answers them.
pub struct Phone {
    pub socket: UdpSocket,
}

/// One received SIP request.
#[derive(Debug, Clone)]
pub struct Received {
    pub text: String,
    pub from: SocketAddr,
}

impl Received {
    pub fn request_line(&self) -> &str {
        self.text.lines().next().unwrap_or("")
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.text.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }

    /// A response echoing the request's Via, From, To, Call-ID and CSeq.
    pub fn response(&self, status: &str, extra: &str) -> String {
        let mut out = format!("SIP/2.0 {status}\r\n");
        for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
            if let Some(v) = self.header(name) {
                let to_tag = if name == "To" { ";tag=phone1" } else { "" };
                out.push_str(&format!("{name}: {v}{to_tag}\r\n"));
            }
        }
        out.push_str(extra);
        out.push_str("Content-Length: 0\r\n\r\n");
        out
    }
}

impl Phone {
    pub async fn new() -> Phone {
        Phone { socket: UdpSocket::bind("127.0.0.1:0").await.unwrap() }
    }

    pub fn addr(&self) -> SocketAddr {
        self.socket.local_addr().unwrap()
    }

    /// The next request, or `None` after `wait`.
    pub async fn next(&self, wait: Duration) -> Option<Received> {
        let mut buf = vec![0u8; 65_536];
        let (n, from) = tokio::time::timeout(wait, self.socket.recv_from(&mut buf)).await.ok()?.ok()?;
        Some(Received { text: String::from_utf8_lossy(&buf[..n]).into_owned(), from })
    }

    pub async fn answer(&self, req: &Received, status: &str, extra: &str) {
        self.socket.send_to(req.response(status, extra).as_bytes(), req.from).await.unwrap();
    }
}

/// Registers handset `ext` at `addr` through the platform's status report.
pub async fn register(srv: &TestServer, ext: &str, addr: SocketAddr) {
    let (s, v) =
        srv.put(&format!("/api/handsetstatus/{ext}"), json!({"state": "Idle", "registrationaddress": addr.to_string()})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

/// Polls Handset Select until `provisioning.pushstate` is `want`.
pub async fn wait_for_push_state(srv: &TestServer, ext: &str, want: &str, within: Duration) -> Value {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let (_, h) = srv.get(&format!("/api/handset/{ext}")).await;
        if h["provisioning"]["pushstate"] == want {
            return h;
        }
        assert!(tokio::time::Instant::now() < deadline, "{ext}: pushstate is not {want} after {within:?}: {}", h["provisioning"]);
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

async fn phone_handset(srv: &TestServer, ext: &str, mac: &str) {
    srv.create_handset(json!({"extensionnumber": ext, "name": "Desk", "mac": mac, "model": "T46S"})).await;
}

both_backends!(an_update_reaches_the_phone_and_converges, each_push_is_sent_once_by_two_nodes);

async fn an_update_reaches_the_phone_and_converges(b: Backend) {
    let srv = TestServer::start_with(b, quick_push).await;
    let phone = Phone::new().await;
    phone_handset(&srv, "2000", &a_phone("yealink").mac).await;
    register(&srv, "2000", phone.addr()).await;

    let started = std::time::Instant::now();
    let (s, h) = srv.put("/api/handset/2000", json!({"name": "Front desk"})).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h["provisioning"]["revision"], 2);
    let notify = phone.next(Duration::from_secs(5)).await.expect("the phone gets a NOTIFY");
    assert!(started.elapsed() < Duration::from_secs(1), "NOTIFY took {:?}", started.elapsed());
    assert_eq!(notify.request_line(), format!("NOTIFY sip:2000@{} SIP/2.0", phone.addr()));
    assert_eq!(notify.header("Event").as_deref(), Some("check-sync;reboot=false"), "Yealink's event");
    assert_eq!(notify.header("Subscription-State").as_deref(), Some("terminated"));
    assert!(notify.header("Via").unwrap().contains(";branch=z9hG4bK"), "{}", notify.text);
    assert!(notify.text.contains("\r\n\r\n"));
    phone.answer(&notify, "200 OK", "").await;
    let h = wait_for_push_state(&srv, "2000", "sent", Duration::from_secs(5)).await;
    assert_eq!(h["provisioning"]["fetchedrevision"], 0);
    assert_ne!(h["provisioning"]["lastpushat"], "");

    // The phone fetches its file: applied.
    let (s, _, body) = http_get(&srv, &a_phone("yealink").file, Some(&a_phone("yealink").ua)).await;
    assert_eq!(s, StatusCode::OK);
    assert!(body.contains("Front desk"));
    let h = wait_for_push_state(&srv, "2000", "applied", Duration::from_secs(5)).await;
    assert_eq!((h["provisioning"]["fetchedrevision"].as_i64(), h["provisioning"]["revision"].as_i64()), (Some(2), Some(2)));
    let (_, applied) = srv.get("/api/handset?provisioning=applied").await;
    assert_eq!(applied.as_array().unwrap().len(), 1);
    let (_, pending) = srv.get("/api/handset?provisioning=pending").await;
    assert_eq!(pending, json!([]));

    // A manual resync with reboot uses the reboot event.
    let (s, _) = srv.call(Method::POST, "/api/handset/2000/resync", ADMIN, Some(json!({"reboot": true}))).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let notify = phone.next(Duration::from_secs(5)).await.expect("a resync NOTIFY");
    assert_eq!(notify.header("Event").as_deref(), Some("check-sync;reboot=true"));
    phone.answer(&notify, "200 OK", "").await;
    let (s, _) = srv.call(Method::POST, "/api/handset/9999/resync", ADMIN, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    srv.stop().await;
}

async fn each_push_is_sent_once_by_two_nodes(b: Backend) {
    let a = TestServer::start_with(b, quick_push).await;
    let phone = Phone::new().await;
    let exts: Vec<String> = (0..20).map(|i| format!("30{i:02}")).collect();
    for (i, ext) in exts.iter().enumerate() {
        phone_handset(&a, ext, &format!("001565ab{i:04x}")).await;
        register(&a, ext, phone.addr()).await;
    }
    let node_b = TestServer::start_sharing(&a).await;
    // One domain-wide change: a push for every phone, worked by both nodes.
    let (s, _) = a.put("/api/domain", json!({"sipserver": "sip.example.net"})).await;
    assert_eq!(s, StatusCode::OK);
    let mut per_ext: HashMap<String, HashMap<String, u32>> = HashMap::new();
    while let Some(req) = phone.next(Duration::from_secs(2)).await {
        let ext = req.request_line().split(['@', ':']).nth(1).unwrap_or_default().to_string();
        *per_ext.entry(ext).or_default().entry(req.header("Call-ID").unwrap_or_default()).or_default() += 1;
        phone.answer(&req, "200 OK", "").await;
    }
    for ext in &exts {
        let calls = per_ext.get(ext).unwrap_or_else(|| panic!("{ext} got no NOTIFY: {per_ext:?}"));
        assert_eq!(calls.len(), 1, "{ext} got {} NOTIFYs", calls.len());
        wait_for_push_state(&a, ext, "sent", Duration::from_secs(5)).await;
    }
    node_b.stop().await;
    a.stop().await;
}

async fn a_challenge_is_answered_with_the_handsets_own_credentials() {
    use md5::{Digest, Md5};
    let srv = TestServer::start_with(Backend::Sqlite, quick_push).await;
    let phone = Phone::new().await;
    srv.create_handset(
        json!({"extensionnumber": "2000", "password": "Phone-Secret-1", "mac": a_phone("yealink").mac, "model": "T46S"}),
    )
    .await;
    register(&srv, "2000", phone.addr()).await;
    srv.put("/api/handset/2000", json!({"name": "Challenged"})).await;

    let first = phone.next(Duration::from_secs(5)).await.expect("NOTIFY");
    assert!(first.header("Authorization").is_none());
    phone
        .answer(
            &first,
            "401 Unauthorized",
            "WWW-Authenticate: Digest realm=\"phone\", nonce=\"n0nce\", qop=\"auth\", algorithm=MD5\r\n",
        )
        .await;
    let second = phone.next(Duration::from_secs(5)).await.expect("the NOTIFY again, authorised");
    let auth = second.header("Authorization").expect("an Authorization header");
    let param = |name: &str| {
        auth.split(',')
            .map(str::trim)
            .map(|p| p.trim_start_matches("Digest").trim())
            .find_map(|p| p.strip_prefix(&format!("{name}=")))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_else(|| panic!("no {name} in {auth}"))
    };
    let hex = |s: String| hex::encode(Md5::digest(s.as_bytes()));
    let ha1 = hex("2000:phone:Phone-Secret-1".to_string());
    let ha2 = hex(format!("NOTIFY:{}", param("uri")));
    let expected = hex(format!("{ha1}:n0nce:{}:{}:auth:{ha2}", param("nc"), param("cnonce")));
    assert_eq!(param("username"), "2000");
    assert_eq!(param("response"), expected, "the digest is computed from the handset's SIP password");
    assert_ne!(second.header("Via"), first.header("Via"), "a new transaction (branch)");
    phone.answer(&second, "200 OK", "").await;
    wait_for_push_state(&srv, "2000", "sent", Duration::from_secs(5)).await;
    srv.stop().await;
}

async fn silent_and_busy_phones_fail_without_delaying_the_others() {
    let srv = TestServer::start_with(Backend::Sqlite, quick_push).await;
    let (silent, busy, good) = (Phone::new().await, Phone::new().await, Phone::new().await);
    for (ext, mac, phone) in [("2001", "001565000a01", &silent), ("2002", "001565000a02", &busy), ("2003", "001565000a03", &good)]
    {
        phone_handset(&srv, ext, mac).await;
        register(&srv, ext, phone.addr()).await;
    }
    srv.create_handset(json!({"extensionnumber": "2004", "mac": "001565000a04"})).await;
    let (s, _) = srv.put("/api/domain", json!({"sipserver": "sip.example.net"})).await;
    assert_eq!(s, StatusCode::OK);

    // The good phone is served at once, whatever the silent one does.
    let n = good.next(Duration::from_secs(2)).await.expect("the good phone's NOTIFY");
    good.answer(&n, "200 OK", "").await;
    wait_for_push_state(&srv, "2003", "sent", Duration::from_secs(2)).await;
    // The busy phone answers 486 every time.
    let busy_task = tokio::spawn(async move {
        let mut seen = 0;
        while let Some(req) = busy.next(Duration::from_secs(3)).await {
            busy.answer(&req, "486 Busy Here", "").await;
            seen += 1;
        }
        seen
    });
    // The silent phone gets retransmissions (Timer E) on each attempt.
    let mut silent_requests = 0;
    while silent.next(Duration::from_secs(3)).await.is_some() {
        silent_requests += 1;
    }
    let h = wait_for_push_state(&srv, "2001", "failed", Duration::from_secs(15)).await;
    assert!(h["provisioning"]["lasterror"].as_str().unwrap().contains("timeout"), "{}", h["provisioning"]);
    assert!(silent_requests >= 3 * 3, "3 attempts with retransmissions each, got {silent_requests}");
    let h = wait_for_push_state(&srv, "2002", "failed", Duration::from_secs(15)).await;
    assert!(h["provisioning"]["lasterror"].as_str().unwrap().contains("486"), "{}", h["provisioning"]);
    assert_eq!(busy_task.await.unwrap(), 3, "one NOTIFY per attempt, no retransmission after a final answer");
    // A phone that never registered nor fetched: no target, not retried.
    wait_for_push_state(&srv, "2004", "no-target", Duration::from_secs(5)).await;
    let (_, failed) = srv.get("/api/handset?provisioning=failed").await;
    let failed: Vec<&str> = failed.as_array().unwrap().iter().map(|h| h["extensionnumber"].as_str().unwrap()).collect();
    assert_eq!(failed, ["2001", "2002", "2004"]);
    srv.stop().await;
}

/// The "done when": a sipp phone registered through the status API
/// gets its vendor's NOTIFY within a second of a name change, answers 200,
/// fetches its file, and Handset Select says applied. Runs when
/// sipp (Debian's sip-tester) as the phone.
async fn a_sipp_phone_gets_the_notify() {
    let sipp = crate::peers::sipp().expect("sipp (the test needs it)");
    let srv = TestServer::start_with(Backend::Sqlite, quick_push).await;
    phone_handset(&srv, "2000", &a_phone("yealink").mac).await;
    let port = {
        let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let scenario = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sipp/notify_uas.xml");
    let mut child = tokio::process::Command::new(&sipp)
        .args(["-sf", scenario, "-i", "127.0.0.1", "-p", &port.to_string(), "-m", "1", "-timeout", "20s", "-nostdin"])
        .current_dir(srv.dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", sipp.display()));
    // sipp is ready once it holds its port.
    crate::harness::eventually("sipp listening", Duration::from_secs(5), || async {
        std::net::UdpSocket::bind(("127.0.0.1", port)).is_err().then_some(())
    })
    .await;
    register(&srv, "2000", format!("127.0.0.1:{port}").parse().unwrap()).await;
    let started = std::time::Instant::now();
    srv.put("/api/handset/2000", json!({"name": "Changed for sipp"})).await;
    wait_for_push_state(&srv, "2000", "sent", Duration::from_secs(5)).await;
    assert!(started.elapsed() < Duration::from_secs(1), "sent (200 OK from sipp) after {:?}", started.elapsed());
    http_get(&srv, &a_phone("yealink").file, Some(&a_phone("yealink").ua)).await;
    wait_for_push_state(&srv, "2000", "applied", Duration::from_secs(5)).await;
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait()).await.expect("sipp ends after one call").unwrap();
    assert!(status.success(), "sipp's scenario failed (Event not check-sync?): {status:?}");
    srv.stop().await;
}

/// One manager message (`Key: value` lines up to a blank line), as a map;
/// `None` when the connection ends.
pub async fn read_ami_block<R: tokio::io::AsyncBufRead + Unpin>(conn: &mut R) -> Option<HashMap<String, String>> {
    use tokio::io::AsyncBufReadExt;
    let mut block = HashMap::new();
    loop {
        let mut line = String::new();
        if conn.read_line(&mut line).await.unwrap_or(0) == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            return Some(block);
        }
        if let Some((k, v)) = line.split_once(':') {
            block.insert(k.trim().to_string(), v.trim().to_string());
        }
    }
}

/// An Asterisk manager interface as far as autoprov uses it: banner, Login,
/// PJSIPNotify. It closes the connection after each PJSIPNotify, so every
/// second push has to reconnect.
async fn ami_peer(secret: &'static str) -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<HashMap<String, String>>) {
    use tokio::io::{AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut conn = BufReader::new(stream);
                conn.get_mut().write_all(b"Asterisk Call Manager/5.0.1\r\n").await.unwrap();
                loop {
                    let Some(block) = read_ami_block(&mut conn).await else { return };
                    let id = block.get("ActionID").cloned().unwrap_or_default();
                    let reply = match block.get("Action").map(String::as_str) {
                        Some("Login") if block.get("Secret").map(String::as_str) == Some(secret) => {
                            // An unsolicited event first: the client must skip it.
                            format!("Event: FullyBooted\r\nPrivilege: system,all\r\n\r\nResponse: Success\r\nActionID: {id}\r\nMessage: Authentication accepted\r\n\r\n")
                        }
                        Some("Login") => format!("Response: Error\r\nActionID: {id}\r\nMessage: Authentication failed\r\n\r\n"),
                        Some("PJSIPNotify") => {
                            let _ = tx.send(block.clone());
                            format!("Response: Success\r\nActionID: {id}\r\nMessage: NOTIFY sent\r\n\r\n")
                        }
                        _ => format!("Response: Error\r\nActionID: {id}\r\nMessage: Invalid/unknown command\r\n\r\n"),
                    };
                    conn.get_mut().write_all(reply.as_bytes()).await.unwrap();
                    if block.get("Action").map(String::as_str) == Some("PJSIPNotify") {
                        return; // connection lost
                    }
                }
            });
        }
    });
    (addr, rx)
}

async fn pushes_relayed_through_asterisk_ami_reconnect_after_a_loss() {
    let srv = TestServer::start_with(Backend::Sqlite, quick_push).await;
    let (ami, mut notifies) = ami_peer("ami-secret-1").await;
    let (s, d) = srv
        .put("/api/domain", json!({"pushbackend": "ami", "amihost": "127.0.0.1", "amiport": ami.port(), "amiuser": "autoprov", "amisecret": "ami-secret-1"}))
        .await;
    assert_eq!(s, StatusCode::OK, "{d}");
    assert_eq!((d["pushbackend"].as_str(), d["amisecret"].as_str()), (Some("ami"), Some("***")), "the secret is never shown");
    phone_handset(&srv, "2000", &a_phone("yealink").mac).await;
    for (round, name) in ["First", "Second"].iter().enumerate() {
        srv.put("/api/handset/2000", json!({ "name": name })).await;
        let block = tokio::time::timeout(Duration::from_secs(5), notifies.recv()).await.expect("a PJSIPNotify").unwrap();
        assert_eq!(block.get("Endpoint").map(String::as_str), Some("2000"), "round {round}");
        assert_eq!(block.get("Variable").map(String::as_str), Some("Event=check-sync;reboot=false"));
        wait_for_push_state(&srv, "2000", "sent", Duration::from_secs(5)).await;
    }
    // A wrong secret: the push fails, saying no more than a dead relay
    // would (hostile::relay_failures_do_not_tell_ports_apart).
    srv.put("/api/domain", json!({"amisecret": "wrong"})).await;
    srv.put("/api/handset/2000", json!({"name": "Third"})).await;
    let h = wait_for_push_state(&srv, "2000", "failed", Duration::from_secs(10)).await;
    assert!(h["provisioning"]["lasterror"].as_str().unwrap().contains("no answer or no login"), "{}", h["provisioning"]);
    // Refused relay settings are refused with the reason.
    let (s, v) = srv.put("/api/domain", json!({"amisecret": "two\r\nlines"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, _) = srv.put("/api/domain", json!({"pushbackend": "pigeon"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    srv.stop().await;
}

/// A dead Asterisk (it accepts the connection, then says nothing) holds up
/// only its own domain's pushes, not another domain's on a healthy one.
async fn a_hung_asterisk_does_not_stall_another_domains_pushes() {
    let srv = TestServer::start_with(Backend::Sqlite, quick_push).await;
    let hung = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hung_port = hung.local_addr().unwrap().port();
    let (connected, mut stuck) = tokio::sync::mpsc::unbounded_channel();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = hung.accept().await {
            open.push(stream);
            let _ = connected.send(());
        }
    });
    let (ami, mut notifies) = ami_peer("ami-secret-2").await;
    srv.add_user("boss@other", "other-password-12", "admin", false).await;
    let other = ("boss@other", "other-password-12");
    let relay = |port: u16, secret: &str| json!({"pushbackend": "ami", "amihost": "127.0.0.1", "amiport": port, "amiuser": "autoprov", "amisecret": secret});
    assert_eq!(srv.put("/api/domain", relay(hung_port, "whatever")).await.0, StatusCode::OK);
    assert_eq!(
        srv.call(reqwest::Method::PUT, "/api/domain", other, Some(relay(ami.port(), "ami-secret-2"))).await.0,
        StatusCode::OK
    );
    phone_handset(&srv, "2000", &a_phone("yealink").mac).await;
    let another = phones().iter().find(|p| p.family != "yealink").unwrap();
    let h = json!({"extensionnumber": "3000", "name": "Desk", "mac": another.mac, "model": another.model});
    assert_eq!(srv.call(reqwest::Method::POST, "/api/handset", other, Some(h)).await.0, StatusCode::CREATED);
    // The hung server's push is stuck waiting for its banner; the healthy
    // one's goes through at once.
    srv.put("/api/handset/2000", json!({"name": "Stuck"})).await;
    tokio::time::timeout(Duration::from_secs(5), stuck.recv()).await.expect("the push reaches the hung server");
    let started = std::time::Instant::now();
    srv.call(reqwest::Method::PUT, "/api/handset/3000", other, Some(json!({"name": "Through"}))).await;
    let block = tokio::time::timeout(Duration::from_secs(5), notifies.recv()).await.expect("a PJSIPNotify").unwrap();
    assert_eq!(block.get("Endpoint").map(String::as_str), Some("3000"));
    assert!(started.elapsed() < Duration::from_secs(3), "the healthy relay waited {:?}", started.elapsed());
    held.abort(); // its connections close: the stuck push ends before shutdown
    srv.stop().await;
}

async fn pushes_relayed_through_a_signed_webhook() {
    use axum::http::HeaderMap;
    use hmac::{Hmac, Mac};
    let (tx, mut hooks) = tokio::sync::mpsc::unbounded_channel::<(HeaderMap, Vec<u8>)>();
    let status = std::sync::Arc::new(std::sync::atomic::AtomicU16::new(200));
    let answer = status.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let tx = tx.clone();
            let answer = answer.clone();
            async move {
                let _ = tx.send((headers, body.to_vec()));
                axum::http::StatusCode::from_u16(answer.load(std::sync::atomic::Ordering::SeqCst)).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let srv = TestServer::start_with(Backend::Sqlite, quick_push).await;
    let (s, d) = srv
        .put(
            "/api/domain",
            json!({"pushbackend": "webhook", "webhookurl": format!("http://{hook_addr}/hook"), "webhooksecret": "hook-secret"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{d}");
    phone_handset(&srv, "2000", &a_phone("yealink").mac).await;
    srv.put("/api/handset/2000", json!({"name": "Hooked"})).await;
    let (headers, body) = tokio::time::timeout(Duration::from_secs(5), hooks.recv()).await.expect("a webhook call").unwrap();
    let event: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (
            event["type"].as_str(),
            event["extensionnumber"].as_str(),
            event["mac"].as_str(),
            event["event"].as_str(),
            event["revision"].as_i64()
        ),
        (Some("resync"), Some("2000"), Some(a_phone("yealink").mac.as_str()), Some("check-sync;reboot=false"), Some(2))
    );
    let timestamp = headers["x-autoprov-timestamp"].to_str().unwrap();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"hook-secret").unwrap();
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(&body);
    assert_eq!(headers["x-autoprov-signature"].to_str().unwrap(), format!("sha256={}", hex::encode(mac.finalize().into_bytes())));
    wait_for_push_state(&srv, "2000", "sent", Duration::from_secs(5)).await;

    // A failing relay is retried, then the push fails (the status is in
    // the server's log, not shown to the tenant).
    status.store(503, std::sync::atomic::Ordering::SeqCst);
    srv.put("/api/handset/2000", json!({"name": "Hooked again"})).await;
    let h = wait_for_push_state(&srv, "2000", "failed", Duration::from_secs(10)).await;
    let error = h["provisioning"]["lasterror"].as_str().unwrap();
    assert!(error.contains("the event was not taken") && !error.contains("503"), "{}", h["provisioning"]);
    let mut calls = 0;
    while hooks.try_recv().is_ok() {
        calls += 1;
    }
    assert_eq!(calls, 3, "three attempts");
    // Plain HTTP is for a relay on this machine only.
    let (s, _) = srv.put("/api/domain", json!({"webhookurl": "http://hooks.example.com/x"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    srv.stop().await;
}

/// A phone registered over TCP gets its NOTIFY over TCP.
async fn a_phone_registered_over_tcp_gets_the_notify_over_tcp() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let srv = TestServer::start_with(Backend::Sqlite, quick_push).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    phone_handset(&srv, "2000", &a_phone("yealink").mac).await;
    let (s, _) = srv
        .put("/api/handsetstatus/2000", json!({"registrationaddress": addr.to_string(), "registrationtransport": "tcp"}))
        .await;
    assert_eq!(s, StatusCode::OK);
    srv.put("/api/handset/2000", json!({"name": "Over TCP"})).await;
    let (mut stream, from) =
        tokio::time::timeout(Duration::from_secs(5), listener.accept()).await.expect("a TCP connection").unwrap();
    let mut buf = vec![0u8; 4096];
    let mut text = String::new();
    while !text.contains("\r\n\r\n") {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0);
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let req = Received { text, from };
    assert!(req.request_line().starts_with("NOTIFY sip:2000@"));
    assert!(req.header("Via").unwrap().starts_with("SIP/2.0/TCP"), "{}", req.text);
    stream.write_all(req.response("200 OK", "").as_bytes()).await.unwrap();
    wait_for_push_state(&srv, "2000", "sent", Duration::from_secs(5)).await;
    srv.stop().await;
}

/// A domain-wide change is paced: at 20 NOTIFYs a second, 30 phones take
/// about a second and a half, not one burst.
async fn a_domain_wide_change_is_paced() {
    let srv = TestServer::start_with(Backend::Sqlite, |s| {
        quick_push(s);
        s.push_rate = 20;
    })
    .await;
    let phone = Phone::new().await;
    for i in 0..30 {
        let ext = format!("40{i:02}");
        phone_handset(&srv, &ext, &format!("001565cd{i:04x}")).await;
        register(&srv, &ext, phone.addr()).await;
    }
    srv.put("/api/domain", json!({"sipserver": "sip.example.net"})).await;
    let mut arrivals = Vec::new();
    while let Some(req) = phone.next(Duration::from_secs(2)).await {
        arrivals.push(std::time::Instant::now());
        phone.answer(&req, "200 OK", "").await;
    }
    assert_eq!(arrivals.len(), 30);
    let spread = arrivals[29].duration_since(arrivals[0]);
    // The limiter lets a burst of up to one second's worth through at once;
    // the other ten wait their turn at 20 a second.
    assert!(spread >= Duration::from_millis(400), "30 NOTIFYs within {spread:?}");
    assert!(spread < Duration::from_secs(3), "{spread:?}");
    srv.stop().await;
}

crate::e2e!(
    a_challenge_is_answered_with_the_handsets_own_credentials,
    silent_and_busy_phones_fail_without_delaying_the_others,
    a_sipp_phone_gets_the_notify needs [Sipp],
    pushes_relayed_through_asterisk_ami_reconnect_after_a_loss,
    a_hung_asterisk_does_not_stall_another_domains_pushes,
    pushes_relayed_through_a_signed_webhook,
    a_phone_registered_over_tcp_gets_the_notify_over_tcp,
    a_domain_wide_change_is_paced,
    pushes_relayed_through_the_registrar,
    a_registrar_relay_needs_the_sip_server,
    pushes_reach_a_registrar_over_tls,
);

/// `registrar`: the NOTIFY goes to the registrar (the domain's SIP server,
/// or `registrarrelay`), addressed to the phone's address of record, and
/// the registrar's answer (here a challenge, then 200) is the push's
/// outcome; a phone the registrar does not know is a failed push with the
/// registrar's words.
async fn pushes_relayed_through_the_registrar() {
    let srv = TestServer::start_with(Backend::Sqlite, quick_push).await;
    let registrar = Phone::new().await;
    let (s, v) = srv
        .put(
            "/api/domain",
            json!({"sipserver": "pbx.example.com", "pushbackend": "registrar", "registrarrelay": registrar.addr().to_string()}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!((v["pushbackend"].as_str(), v["registrartransport"].as_str()), (Some("registrar"), Some("udp")));
    srv.create_handset(json!({"extensionnumber": "2100", "password": "Relay-secret-1", "mac": a_phone("yealink").mac})).await;
    srv.put("/api/handset/2100", json!({"name": "Through the registrar"})).await;
    let first = registrar.next(Duration::from_secs(5)).await.expect("the registrar gets the NOTIFY");
    assert_eq!(first.request_line(), "NOTIFY sip:2100@pbx.example.com SIP/2.0", "{}", first.text);
    assert_eq!(first.header("To").as_deref(), Some("<sip:2100@pbx.example.com>"));
    // The phone (through the registrar) challenges; the answer is the handset's own.
    registrar.answer(&first, "401 Unauthorized", "WWW-Authenticate: Digest realm=\"pbx.example.com\", nonce=\"n1\"\r\n").await;
    let second = registrar.next(Duration::from_secs(5)).await.expect("the answered NOTIFY");
    let auth = second.header("Authorization").expect("credentials");
    assert!(auth.contains("username=\"2100\"") && auth.contains("uri=\"sip:2100@pbx.example.com\""), "{auth}");
    registrar.answer(&second, "200 OK", "").await;
    wait_for_push_state(&srv, "2100", "sent", Duration::from_secs(5)).await;

    // Not registered there: the registrar's 404 is the push's error, retried, then failed.
    srv.put("/api/handset/2100", json!({"name": "Gone"})).await;
    for _ in 0..3 {
        let req = registrar.next(Duration::from_secs(5)).await.expect("each attempt reaches the registrar");
        registrar.answer(&req, "404 Not Found", "").await;
    }
    let h = wait_for_push_state(&srv, "2100", "failed", Duration::from_secs(10)).await;
    assert!(h["provisioning"]["lasterror"].as_str().unwrap().contains("404 Not Found"), "{}", h["provisioning"]);

    for (body, field) in [
        (json!({"pushbackend": "registrar", "registrarrelay": "bad host"}), "registrarrelay"),
        (json!({"registrartransport": "sctp"}), "registrartransport"),
        (json!({"pushbackend": "pigeon"}), "pushbackend"),
    ] {
        let (s, v) = srv.put("/api/domain", body.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
        assert!(v["error"].as_str().unwrap().contains(field), "{body}: {v}");
    }
    srv.stop().await;
}

/// With no SIP server the phones have no address of record: the push
/// fails saying so, without sending anything.
async fn a_registrar_relay_needs_the_sip_server() {
    let srv = TestServer::start_with(Backend::Sqlite, quick_push).await;
    let (s, _) = srv.put("/api/domain", json!({"sipserver": "", "pushbackend": "registrar"})).await;
    assert_eq!(s, StatusCode::OK);
    phone_handset(&srv, "2101", &a_phone("yealink").mac).await;
    srv.put("/api/handset/2101", json!({"name": "Nowhere"})).await;
    let h = wait_for_push_state(&srv, "2101", "failed", Duration::from_secs(10)).await;
    assert!(h["provisioning"]["lasterror"].as_str().unwrap().contains("no SIP server"), "{}", h["provisioning"]);
    srv.stop().await;
}

/// `registrartransport: tls`: the NOTIFY reaches the registrar over TLS,
/// whose certificate is checked against the operator's CA (`sip_tls_ca`)
/// for the name the relay is configured by.
async fn pushes_reach_a_registrar_over_tls() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("registrar-ca.pem");
    std::fs::write(&ca, cert.cert.pem()).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::try_from(cert.key_pair.serialize_der()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let registrar = listener.local_addr().unwrap();

    let srv = TestServer::start_with(Backend::Sqlite, |s| {
        quick_push(s);
        s.sip_tls_ca = Some(ca.clone());
    })
    .await;
    let (s, v) = srv
        .put(
            "/api/domain",
            json!({"sipserver": "pbx.example.com", "pushbackend": "registrar", "registrarrelay": registrar.to_string(), "registrartransport": "tls"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    phone_handset(&srv, "2102", &a_phone("yealink").mac).await;
    srv.put("/api/handset/2102", json!({"name": "Over TLS"})).await;
    let (tcp, from) = tokio::time::timeout(Duration::from_secs(5), listener.accept()).await.expect("a connection").unwrap();
    let mut tls = acceptor.accept(tcp).await.expect("the TLS handshake");
    let mut buf = vec![0u8; 4096];
    let mut text = String::new();
    while !text.contains("\r\n\r\n") {
        let n = tls.read(&mut buf).await.unwrap();
        assert!(n > 0);
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let req = Received { text, from };
    assert_eq!(req.request_line(), "NOTIFY sip:2102@pbx.example.com SIP/2.0", "{}", req.text);
    assert!(req.header("Via").unwrap().starts_with("SIP/2.0/TLS"), "{}", req.text);
    tls.write_all(req.response("200 OK", "").as_bytes()).await.unwrap();
    tls.flush().await.unwrap();
    wait_for_push_state(&srv, "2102", "sent", Duration::from_secs(5)).await;
    srv.stop().await;
}
