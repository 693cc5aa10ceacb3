//! A small SIP user agent of the tests' own, so that simulated phones can
//! register to a real registrar and answer the NOTIFYs relayed to them,
//! independently of autoprov's own SIP code (a shared bug would hide).
//!
//! A [`Phone`] owns a UDP socket the caller bound (inside a network
//! namespace, say) and one task that receives on it: responses go to the
//! REGISTER transaction waiting for them (by Via branch), requests are
//! answered at once and reported on a channel. REGISTER answers a 401/407
//! digest challenge (RFC 2617/7616 MD5, with or without qop=auth) and
//! retransmits over UDP as RFC 3261's Timer E says.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use md5::{Digest, Md5};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::phone_config::Account;

/// A request the phone received and answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Incoming {
    pub method: String,
    /// The Event header's value ("" where there is none).
    pub event: String,
    pub request_uri: String,
    pub from: SocketAddr,
}

/// RFC 3261 17.1.2.2: Timer E starts at T1 and doubles up to T2.
const T1: Duration = Duration::from_millis(500);
const T2: Duration = Duration::from_secs(4);
/// Sends of one REGISTER before giving up (about 11.5 s in all).
const TRIES: u32 = 5;

type Waiting = Arc<Mutex<HashMap<String, mpsc::UnboundedSender<Message>>>>;

pub struct Phone {
    socket: Arc<UdpSocket>,
    waiting: Waiting,
    /// One Call-ID for all of this phone's registrations, CSeq counting up
    /// (RFC 3261 10.2: a UA keeps both across refreshes).
    call_id: String,
    cseq: Mutex<u32>,
    receiver: tokio::task::JoinHandle<()>,
}

impl Drop for Phone {
    fn drop(&mut self) {
        self.receiver.abort();
    }
}

impl Phone {
    /// Starts serving `socket`: every request is answered (NOTIFY and
    /// OPTIONS with 200, ACK with nothing, anything else with 405) and
    /// reported on the returned channel; responses go to [`Phone::register`].
    pub fn new(socket: UdpSocket) -> (Phone, mpsc::Receiver<Incoming>) {
        let socket = Arc::new(socket);
        let waiting = Waiting::default();
        let (events, incoming) = mpsc::channel(256);
        let receiver = tokio::spawn(receive(socket.clone(), waiting.clone(), events));
        let phone = Phone { socket, waiting, call_id: format!("{}@phone", token()), cseq: Mutex::new(0), receiver };
        (phone, incoming)
    }

    /// Registers `account` at `registrar` for `expires` seconds (0: removes
    /// the binding), answering one digest challenge; the final status code.
    pub async fn register(
        &self,
        registrar: SocketAddr,
        account: &Account,
        user_agent: &str,
        expires: u32,
    ) -> Result<u16, String> {
        let from_tag = token();
        let mut authorization = None;
        loop {
            let request = self.register_request(account, user_agent, expires, &from_tag, authorization.as_deref())?;
            let response = self.transaction(registrar, &request).await?;
            let challenge = match response.status {
                401 if authorization.is_none() => response.header("www-authenticate").map(|c| ("Authorization", c)),
                407 if authorization.is_none() => response.header("proxy-authenticate").map(|c| ("Proxy-Authorization", c)),
                _ => None,
            };
            match challenge {
                Some((name, c)) => authorization = Some(format!("{name}: {}", digest(c, account, "REGISTER")?)),
                None => return Ok(response.status),
            }
        }
    }

    fn register_request(
        &self,
        a: &Account,
        user_agent: &str,
        expires: u32,
        from_tag: &str,
        authorization: Option<&str>,
    ) -> Result<(String, String), String> {
        let local = self.socket.local_addr().map_err(|e| e.to_string())?;
        let branch = format!("z9hG4bK{}", token());
        let cseq = {
            let mut c = self.cseq.lock().unwrap();
            *c += 1;
            *c
        };
        let auth = authorization.map(|h| format!("{h}\r\n")).unwrap_or_default();
        let text = format!(
            "REGISTER sip:{host} SIP/2.0\r\nVia: SIP/2.0/UDP {local};rport;branch={branch}\r\nMax-Forwards: 70\r\n\
             From: <sip:{user}@{host}>;tag={from_tag}\r\nTo: <sip:{user}@{host}>\r\nCall-ID: {call_id}\r\n\
             CSeq: {cseq} REGISTER\r\nContact: <sip:{user}@{local}>\r\nExpires: {expires}\r\nUser-Agent: {user_agent}\r\n\
             {auth}Content-Length: 0\r\n\r\n",
            host = a.host,
            user = a.user,
            call_id = self.call_id,
        );
        Ok((branch, text))
    }

    /// Sends a request and waits for its final response, retransmitting
    /// per Timer E (after a provisional response, every T2).
    async fn transaction(&self, to: SocketAddr, (branch, text): &(String, String)) -> Result<Message, String> {
        let (tx, mut rx) = mpsc::unbounded_channel();
        self.waiting.lock().unwrap().insert(branch.clone(), tx);
        let outcome = async {
            let mut interval = T1;
            for _ in 0..TRIES {
                self.socket.send_to(text.as_bytes(), to).await.map_err(|e| format!("send to {to}: {e}"))?;
                let deadline = tokio::time::Instant::now() + interval;
                while let Ok(Some(m)) = tokio::time::timeout_at(deadline, rx.recv()).await {
                    if m.status >= 200 {
                        return Ok(m);
                    }
                    interval = T2;
                }
                interval = (interval * 2).min(T2);
            }
            Err(format!("no final response from {to} after {TRIES} sends"))
        }
        .await;
        self.waiting.lock().unwrap().remove(branch);
        outcome
    }
}

/// The receive loop: the only reader of the socket.
async fn receive(socket: Arc<UdpSocket>, waiting: Waiting, events: mpsc::Sender<Incoming>) {
    let mut buf = vec![0u8; 65535];
    loop {
        let Ok((n, from)) = socket.recv_from(&mut buf).await else { continue };
        let Some(m) = Message::parse(&String::from_utf8_lossy(&buf[..n])) else { continue };
        if m.status != 0 {
            let tx = m.branch().and_then(|b| waiting.lock().unwrap().get(&b).cloned());
            if let Some(tx) = tx {
                let _ = tx.send(m);
            }
            continue;
        }
        if m.method == "ACK" {
            continue;
        }
        let status = if matches!(m.method.as_str(), "NOTIFY" | "OPTIONS") { "200 OK" } else { "405 Method Not Allowed" };
        let _ = socket.send_to(m.response(status).as_bytes(), from).await;
        let event = m.header("event").unwrap_or_default().to_string();
        // A full channel (nobody reading) drops the report, never the answer.
        let _ = events.try_send(Incoming { method: m.method.clone(), event, request_uri: m.uri.clone(), from });
    }
}

/// A parsed request or response: its first line and headers (names in
/// lower case, compact forms expanded; several of a name kept in order).
struct Message {
    /// 0 for a request.
    status: u16,
    method: String,
    uri: String,
    headers: Vec<(String, String)>,
}

impl Message {
    fn parse(text: &str) -> Option<Message> {
        let (head, _) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
        let mut lines = head.split("\r\n");
        let first = lines.next()?;
        let mut parts = first.splitn(3, ' ');
        let (a, b) = (parts.next()?, parts.next()?);
        let (status, method, uri) =
            if a == "SIP/2.0" { (b.parse().ok()?, String::new(), String::new()) } else { (0, a.to_string(), b.to_string()) };
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| {
                let k = k.trim().to_ascii_lowercase();
                let full = match k.as_str() {
                    "v" => "via",
                    "f" => "from",
                    "t" => "to",
                    "i" => "call-id",
                    "o" => "event",
                    "m" => "contact",
                    "l" => "content-length",
                    other => other,
                };
                (full.to_string(), v.trim().to_string())
            })
            .collect();
        Some(Message { status, method, uri, headers })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The top Via's branch parameter.
    fn branch(&self) -> Option<String> {
        let via = self.header("via")?.split(',').next()?;
        via.split(';').find_map(|p| p.trim().strip_prefix("branch=")).map(str::to_string)
    }

    /// Our answer to this request: its Via, From, Call-ID and CSeq, its To
    /// with a tag of ours.
    fn response(&self, status: &str) -> String {
        let mut out = format!("SIP/2.0 {status}\r\n");
        for (k, v) in &self.headers {
            match k.as_str() {
                "via" => out += &format!("Via: {v}\r\n"),
                "from" => out += &format!("From: {v}\r\n"),
                "call-id" => out += &format!("Call-ID: {v}\r\n"),
                "cseq" => out += &format!("CSeq: {v}\r\n"),
                "to" if v.contains(";tag=") => out += &format!("To: {v}\r\n"),
                "to" => out += &format!("To: {v};tag={}\r\n", token()),
                _ => {}
            }
        }
        if status.starts_with("405") {
            out += "Allow: NOTIFY, OPTIONS, ACK\r\n";
        }
        out + "Content-Length: 0\r\n\r\n"
    }
}

/// The Authorization value answering `challenge` (a WWW-/Proxy-
/// Authenticate value) for `method` to `sip:<host>`: RFC 2617 MD5, with
/// qop=auth when the challenge offers it.
fn digest(challenge: &str, a: &Account, method: &str) -> Result<String, String> {
    let rest = challenge.trim().strip_prefix("Digest").ok_or_else(|| format!("not a digest challenge: {challenge}"))?;
    let params = auth_params(rest);
    let get = |k: &str| params.get(k).map(String::as_str);
    if !get("algorithm").is_none_or(|alg| alg.eq_ignore_ascii_case("MD5")) {
        return Err(format!("algorithm not MD5: {challenge}"));
    }
    let realm = get("realm").ok_or("no realm")?;
    let nonce = get("nonce").ok_or("no nonce")?;
    let uri = format!("sip:{}", a.host);
    let ha1 = md5_hex(&format!("{}:{realm}:{}", a.auth_user, a.password));
    let ha2 = md5_hex(&format!("{method}:{uri}"));
    let qop_auth = get("qop").is_some_and(|q| q.split(',').any(|q| q.trim() == "auth"));
    let mut value = format!(r#"Digest username="{}", realm="{realm}", nonce="{nonce}", uri="{uri}", algorithm=MD5"#, a.auth_user);
    if qop_auth {
        let (nc, cnonce) = ("00000001", token());
        let response = md5_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"));
        value += &format!(r#", response="{response}", qop=auth, nc={nc}, cnonce="{cnonce}""#);
    } else {
        value += &format!(r#", response="{}""#, md5_hex(&format!("{ha1}:{nonce}:{ha2}")));
    }
    if let Some(opaque) = get("opaque") {
        value += &format!(r#", opaque="{opaque}""#);
    }
    Ok(value)
}

/// `realm="a,b", nonce="x", qop="auth,auth-int", algorithm=MD5` → a map
/// (names in lower case, quotes removed; commas inside quotes kept).
fn auth_params(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let (mut part, mut quoted) = (String::new(), false);
    for c in s.chars().chain(std::iter::once(',')) {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                if let Some((k, v)) = part.split_once('=') {
                    out.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                }
                part.clear();
                continue;
            }
            _ => {}
        }
        if c != '"' {
            part.push(c);
        }
    }
    out
}

fn md5_hex(s: &str) -> String {
    hex::encode(Md5::digest(s.as_bytes()))
}

/// A random token for tags, branches, Call-IDs and cnonces.
fn token() -> String {
    hex::encode(rand::random::<[u8; 8]>())
}

/// A UDP socket on loopback, as the tests' phones use outside a namespace.
async fn loopback_socket() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").await.unwrap()
}

/// A free UDP port on loopback for a peer to take.
fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// sipp on `port` running `scenario`, with `args`; killed when dropped.
async fn sipp(scenario: &str, port: u16, dir: &std::path::Path, args: &[&str]) -> tokio::process::Child {
    let sipp = crate::peers::sipp().expect("sipp (the test needs it)");
    let scenario = format!("{}/tests/sipp/{scenario}", env!("CARGO_MANIFEST_DIR"));
    let child = tokio::process::Command::new(&sipp)
        .args(["-sf", &scenario, "-i", "127.0.0.1", "-p", &port.to_string(), "-timeout", "30s", "-nostdin"])
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", sipp.display()));
    child
}

async fn sipp_done(mut child: tokio::process::Child, what: &str) {
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait()).await.expect("sipp ends").unwrap();
    assert!(status.success(), "{what}: sipp's scenario failed: {status:?}");
}

fn account(password: &str) -> Account {
    Account {
        user: "7001".into(),
        auth_user: "7001".into(),
        password: password.into(),
        host: "registrar.test".into(),
        port: 5060,
    }
}

/// sipp as a registrar that challenges and checks the answer
/// (`<verifyauth>`): the right password is let in (200), a wrong one is
/// refused (403), with and without qop=auth in the challenge.
async fn the_phone_registers_with_digest_auth() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("users.csv"), "SEQUENTIAL\n7001;right-password;\n7001;right-password;\n").unwrap();
    let users = dir.path().join("users.csv");
    for qop in ["", ", qop=\"auth\""] {
        let port = free_port();
        let child =
            sipp("registrar_uas.xml", port, dir.path(), &["-m", "2", "-inf", users.to_str().unwrap(), "-key", "qop", qop]).await;
        crate::harness::eventually("sipp listening", Duration::from_secs(5), || async {
            std::net::UdpSocket::bind(("127.0.0.1", port)).is_err().then_some(())
        })
        .await;
        let registrar: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let (phone, _) = Phone::new(loopback_socket().await);
        assert_eq!(
            phone.register(registrar, &account("right-password"), "autoprov-test-phone", 300).await,
            Ok(200),
            "qop {qop:?}"
        );
        let (phone, _) = Phone::new(loopback_socket().await);
        assert_eq!(
            phone.register(registrar, &account("wrong-password"), "autoprov-test-phone", 300).await,
            Ok(403),
            "qop {qop:?}"
        );
        sipp_done(child, &format!("registrar, qop {qop:?}")).await;
    }
}

/// sipp as a server sending NOTIFY then OPTIONS: the phone answers both
/// with 200 (sipp checks) and reports both.
async fn the_phone_answers_notify_and_options() {
    let dir = tempfile::tempdir().unwrap();
    let socket = loopback_socket().await;
    let phone_addr = socket.local_addr().unwrap();
    let (_phone, mut incoming) = Phone::new(socket);
    let port = free_port();
    let child = sipp("notify_uac.xml", port, dir.path(), &[&phone_addr.to_string(), "-m", "1", "-s", "7001"]).await;
    let mut got = Vec::new();
    for _ in 0..2 {
        got.push(tokio::time::timeout(Duration::from_secs(10), incoming.recv()).await.expect("a request").unwrap());
    }
    sipp_done(child, "NOTIFY and OPTIONS").await;
    let sipp_addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let uri = format!("sip:7001@{phone_addr}");
    assert_eq!(
        got,
        [
            Incoming { method: "NOTIFY".into(), event: "check-sync".into(), request_uri: uri.clone(), from: sipp_addr },
            Incoming { method: "OPTIONS".into(), event: String::new(), request_uri: uri, from: sipp_addr },
        ]
    );
}

/// No answer: the REGISTER is sent again at Timer E's intervals, with the
/// same branch, then the phone gives up.
async fn an_unanswered_register_is_retransmitted_then_fails() {
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let to = silent.local_addr().unwrap();
    let (phone, _) = Phone::new(loopback_socket().await);
    let started = tokio::time::Instant::now();
    let outcome = phone.register(to, &account("pw"), "autoprov-test-phone", 60).await;
    assert!(outcome.is_err(), "{outcome:?}");
    let mut sends = Vec::new();
    let mut buf = vec![0u8; 65535];
    while let Ok(Ok((n, _))) = tokio::time::timeout(Duration::from_millis(100), silent.recv_from(&mut buf)).await {
        sends.push(Message::parse(&String::from_utf8_lossy(&buf[..n])).unwrap().branch().unwrap());
    }
    assert_eq!(sends.len(), TRIES as usize);
    assert!(sends.iter().all(|b| b == &sends[0] && b.starts_with("z9hG4bK")), "{sends:?}");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(11_000) && took < Duration::from_secs(14), "gave up after {took:?}");
}

/// The digest of RFC 2617 3.5's example (qop=auth, its cnonce and nc),
/// and of RFC 2069's form without qop, computed as `digest` does.
async fn digest_responses_match_rfc_2617() {
    let ha1 = md5_hex("Mufasa:testrealm@host.com:Circle Of Life");
    let ha2 = md5_hex("GET:/dir/index.html");
    let with_qop = md5_hex(&format!("{ha1}:dcd98b7102dd2f0e8b11d0f600bfb0c093:00000001:0a4f113b:auth:{ha2}"));
    assert_eq!(with_qop, "6629fae49393a05397450978507c4ef1");
    let a =
        Account { user: "u".into(), auth_user: "Mufasa".into(), password: "Circle Of Life".into(), host: "h".into(), port: 5060 };
    let without = digest(r#"Digest realm="testrealm@host.com", nonce="abc", opaque="xyz""#, &a, "REGISTER").unwrap();
    let expected = md5_hex(&format!("{ha1}:abc:{}", md5_hex("REGISTER:sip:h")));
    assert!(without.contains(&format!(r#"response="{expected}""#)) && without.contains(r#"opaque="xyz""#), "{without}");
    assert!(!without.contains("qop"), "{without}");
    let with = digest(r#"Digest realm="testrealm@host.com", nonce="abc", qop="auth,auth-int""#, &a, "REGISTER").unwrap();
    assert!(with.contains("qop=auth, nc=00000001, cnonce="), "{with}");
    assert!(digest(r#"Digest realm="r", nonce="n", algorithm=SHA-256"#, &a, "REGISTER").is_err());
}

crate::e2e!(
    the_phone_registers_with_digest_auth needs [Sipp],
    the_phone_answers_notify_and_options needs [Sipp],
    an_unanswered_register_is_retransmitted_then_fails,
    digest_responses_match_rfc_2617,
);
