//! [`send_notify`]: the one call the push worker makes. It sends an
//! out-of-dialog NOTIFY (`Event: check-sync…`) to a phone over UDP or TCP,
//! answers at most one digest challenge (401 or 407) with the handset's own
//! credentials, and reports the final response or a timeout.

use std::fmt;
use std::net::SocketAddr;

use super::digest::Challenge;
use super::message::{random_hex, validate_event, validate_extension, AuthorizationHeader, NotifyRequest, Response};
use super::transaction::{TcpConnection, Timers, UdpEndpoint};
use super::{SipError, Transport};

/// The phone's SIP credentials, used only to answer its challenge. The
/// password is never logged (`Debug` hides it).
#[derive(Clone, Copy)]
pub struct Credentials<'a> {
    /// Usually the extension (the handset's SIP user).
    pub username: &'a str,
    pub password: &'a str,
}

impl fmt::Debug for Credentials<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials").field("username", &self.username).field("password", &"***").finish()
    }
}

/// What to send where.
#[derive(Debug, Clone, Copy)]
pub struct NotifyParams<'a> {
    /// The phone's SIP address (registration address, or its IP with the
    /// profile's SIP port).
    pub target: SocketAddr,
    pub transport: Transport,
    /// The user part of the request URI (and of To).
    pub extension: &'a str,
    /// The Event header value, e.g. `check-sync;reboot=false`.
    pub event: &'a str,
    /// Answer one 401/407 challenge with these; without them a challenge is
    /// reported as the final outcome.
    pub credentials: Option<Credentials<'a>>,
    /// Address the NOTIFY to the phone's address of record at this host
    /// (`sip:<extension>@<host>`): `target` is then its registrar, which
    /// delivers it.
    pub address_of_record: Option<&'a str>,
    /// For [`Transport::Tls`]: the client, and the name the peer's
    /// certificate must carry.
    pub tls: Option<(&'a super::TlsClient, &'a str)>,
    /// The Call-ID to send under (branches and From tag derived from it),
    /// so that the request can be repeated as itself; `None` draws one.
    pub call_id: Option<&'a str>,
}

/// How the NOTIFY ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyOutcome {
    /// The final response: status code and reason phrase.
    Final(u16, String),
    /// No final response before Timer F.
    Timeout,
}

impl NotifyOutcome {
    /// A 2xx: the phone accepted the NOTIFY.
    pub fn is_success(&self) -> bool {
        matches!(self, NotifyOutcome::Final(code, _) if (200..300).contains(code))
    }
}

impl fmt::Display for NotifyOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotifyOutcome::Final(code, reason) => write!(f, "{code} {reason}"),
            NotifyOutcome::Timeout => f.write_str("timeout (no final response)"),
        }
    }
}

fn final_outcome(response: Option<Response>) -> NotifyOutcome {
    match response {
        Some(r) => NotifyOutcome::Final(r.code, r.reason),
        None => NotifyOutcome::Timeout,
    }
}

/// Send one NOTIFY and wait for its outcome. UDP goes through `endpoint`'s
/// shared socket; TCP opens its own connection (the endpoint is not used).
///
/// `Err` means the NOTIFY could not be attempted or completed (invalid
/// input, socket error, unanswerable challenge); a phone that answers with an
/// error code is an `Ok(NotifyOutcome::Final(code, reason))`.
pub async fn send_notify(endpoint: &UdpEndpoint, params: &NotifyParams<'_>, timers: &Timers) -> Result<NotifyOutcome, SipError> {
    // Refuse bad input before any connect or send.
    validate_extension(params.extension)?;
    validate_event(params.event)?;
    let outcome = match params.transport {
        Transport::Udp => send_over_udp(endpoint, params, timers).await,
        Transport::Tcp | Transport::Tls => send_over_tcp(endpoint, params, timers).await,
    };
    match &outcome {
        Ok(o) => {
            tracing::debug!(peer = %params.target, extension = params.extension, outcome = %o, "SIP NOTIFY done")
        }
        Err(e) => {
            tracing::debug!(peer = %params.target, extension = params.extension, error = %e, "SIP NOTIFY failed")
        }
    }
    outcome
}

async fn send_over_udp(endpoint: &UdpEndpoint, params: &NotifyParams<'_>, timers: &Timers) -> Result<NotifyOutcome, SipError> {
    let local = endpoint.via_address(params.target);
    let request = new_request(params, local, Transport::Udp)?;
    let Some(response) = endpoint.transact(&request, timers).await? else {
        return Ok(NotifyOutcome::Timeout);
    };
    let Some(retry) = answer_challenge(&request, &response, params.credentials)? else {
        return Ok(final_outcome(Some(response)));
    };
    Ok(final_outcome(endpoint.transact(&retry, timers).await?))
}

/// The NOTIFY of `params`, sent from `local`.
fn new_request(params: &NotifyParams<'_>, local: SocketAddr, transport: Transport) -> Result<NotifyRequest, SipError> {
    let request = NotifyRequest::new(params.extension, params.event, params.target, local, transport)?;
    let request = match params.call_id {
        Some(id) => request.with_call_id(id)?,
        None => request,
    };
    match params.address_of_record {
        Some(host) => request.to_address_of_record(host),
        None => Ok(request),
    }
}

/// TCP (and TLS) connects from the UDP endpoint's address when it is bound
/// to one, so that every NOTIFY comes from the address a registrar trusts.
async fn send_over_tcp(endpoint: &UdpEndpoint, params: &NotifyParams<'_>, timers: &Timers) -> Result<NotifyOutcome, SipError> {
    let bind = Some(endpoint.local_addr().ip()).filter(|ip| !ip.is_unspecified());
    let tls = match params.transport {
        Transport::Tls => {
            Some(params.tls.ok_or(SipError::InvalidInput { field: "tls", reason: "TLS needs a client and a server name" })?)
        }
        _ => None,
    };
    let mut connection = TcpConnection::connect(params.target, bind, tls, timers).await?;
    let request = new_request(params, connection.local_addr(), params.transport)?;
    let Some(response) = connection.transact(&request, timers).await? else {
        return Ok(NotifyOutcome::Timeout);
    };
    let Some(retry) = answer_challenge(&request, &response, params.credentials)? else {
        return Ok(final_outcome(Some(response)));
    };
    // Many phones hang up after a 401; then, or if the reused connection dies
    // before answering, send the authorised request on a fresh connection.
    if !connection.peer_has_closed() {
        match connection.transact(&retry, timers).await {
            Ok(response) => return Ok(final_outcome(response)),
            Err(SipError::ConnectionClosed | SipError::Io(_)) => {}
            Err(e) => return Err(e),
        }
    }
    let mut fresh = TcpConnection::connect(params.target, bind, tls, timers).await?;
    let retry = retry.with_local(fresh.local_addr());
    Ok(final_outcome(fresh.transact(&retry, timers).await?))
}

/// For a 401/407 and given credentials, the re-sent request carrying the
/// answer to the first challenge we support (the phone lists its preferred
/// one first, RFC 7616 §3.7). `None` when there is nothing to answer.
fn answer_challenge(
    request: &NotifyRequest,
    response: &Response,
    credentials: Option<Credentials<'_>>,
) -> Result<Option<NotifyRequest>, SipError> {
    let (challenge_header, proxy) = match response.code {
        401 => ("www-authenticate", false),
        407 => ("proxy-authenticate", true),
        _ => return Ok(None),
    };
    let Some(credentials) = credentials else {
        return Ok(None);
    };
    if credentials.username.chars().any(|c| c.is_control()) {
        return Err(SipError::InvalidInput { field: "username", reason: "contains control characters" });
    }
    let mut last_error = None;
    let challenge =
        response.headers_named(challenge_header).find_map(|value| Challenge::parse(value).map_err(|e| last_error = Some(e)).ok());
    let Some(challenge) = challenge else {
        return Err(
            last_error.unwrap_or_else(|| SipError::Challenge(format!("{} without a {challenge_header} header", response.code)))
        );
    };
    let value =
        challenge.authorization("NOTIFY", &request.request_uri(), credentials.username, credentials.password, &random_hex(16), 1);
    request.authorized(AuthorizationHeader { proxy, value }).map(Some)
}

#[cfg(test)]
mod tests {
    //! Real sockets on 127.0.0.1 playing the phone.

    use super::*;
    use crate::sip::digest::parse_params;
    use md5::{Digest, Md5};
    use sha2::Sha256;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, UdpSocket};
    use tokio::time::{timeout, Instant};

    const WAIT: Duration = Duration::from_secs(5);

    fn fast_timers() -> Timers {
        Timers {
            t1: Duration::from_millis(40),
            t2: Duration::from_millis(320),
            timer_f: Duration::from_millis(2560),
            tcp_connect: Duration::from_secs(2),
        }
    }

    async fn endpoint() -> UdpEndpoint {
        UdpEndpoint::bind("127.0.0.1:0".parse().expect("addr")).await.expect("bind endpoint")
    }

    async fn phone() -> (UdpSocket, SocketAddr) {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind phone");
        let addr = socket.local_addr().expect("phone addr");
        (socket, addr)
    }

    fn params(target: SocketAddr, transport: Transport) -> NotifyParams<'static> {
        NotifyParams {
            target,
            transport,
            extension: "201",
            event: "check-sync;reboot=false",
            credentials: None,
            address_of_record: None,
            tls: None,
            call_id: None,
        }
    }

    async fn recv_request(socket: &UdpSocket) -> (String, SocketAddr) {
        let mut buf = vec![0u8; 70_000];
        let (n, from) = timeout(WAIT, socket.recv_from(&mut buf)).await.expect("phone got no request in time").expect("recv");
        (String::from_utf8(buf[..n].to_vec()).expect("utf8 request"), from)
    }

    /// The value of the first header `name` (case-insensitive) of a request.
    fn header<'a>(request: &'a str, name: &str) -> Option<&'a str> {
        request.split("\r\n").skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// A response as a phone builds it: Via, From, Call-ID, CSeq copied, To tagged.
    fn reply(request: &str, code: u16, reason: &str, extra: &str) -> String {
        let mut out = format!("SIP/2.0 {code} {reason}\r\n");
        for line in request.split("\r\n").filter(|l| l.starts_with("Via:")) {
            out.push_str(&format!("{line};received=127.0.0.1\r\n"));
        }
        for name in ["From", "Call-ID", "CSeq"] {
            out.push_str(&format!("{name}: {}\r\n", header(request, name).unwrap_or("")));
        }
        out.push_str(&format!("To: {};tag=phone1\r\n", header(request, "To").unwrap_or("")));
        out.push_str(extra);
        out.push_str("Content-Length: 0\r\n\r\n");
        out
    }

    fn branch_of(request: &str) -> String {
        header(request, "Via").and_then(|via| via.split(';').find_map(|p| p.strip_prefix("branch="))).unwrap_or("").to_owned()
    }

    #[tokio::test]
    async fn udp_phone_answering_200() {
        let ep = endpoint().await;
        let (socket, addr) = phone().await;
        let ep_addr = ep.local_addr();
        let phone_task = tokio::spawn(async move {
            let (req, from) = recv_request(&socket).await;
            assert_eq!(from, ep_addr);
            assert!(req.starts_with(&format!("NOTIFY sip:201@{addr} SIP/2.0\r\n")), "{req}");
            assert!(req.ends_with("\r\n\r\n"));
            assert_eq!(req.matches('\n').count(), req.matches("\r\n").count(), "bare LF");
            assert_eq!(header(&req, "Event"), Some("check-sync;reboot=false"));
            assert_eq!(header(&req, "Content-Length"), Some("0"));
            assert_eq!(header(&req, "Max-Forwards"), Some("70"));
            assert_eq!(header(&req, "Subscription-State"), Some("terminated"));
            assert_eq!(header(&req, "CSeq"), Some("1 NOTIFY"));
            assert_eq!(header(&req, "To"), Some("<sip:201@127.0.0.1>"));
            let via = header(&req, "Via").unwrap_or("");
            assert!(via.starts_with(&format!("SIP/2.0/UDP {ep_addr};branch=z9hG4bK")), "{via}");
            assert!(via.ends_with(";rport"));
            assert!(header(&req, "Authorization").is_none());
            socket.send_to(reply(&req, 200, "OK", "").as_bytes(), from).await.expect("send 200");
        });
        let outcome = send_notify(&ep, &params(addr, Transport::Udp), &fast_timers()).await;
        phone_task.await.expect("phone assertions");
        let outcome = outcome.expect("notify");
        assert_eq!(outcome, NotifyOutcome::Final(200, "OK".into()));
        assert!(outcome.is_success());
        assert_eq!(ep.waiting(), 0, "transaction unregistered");
        assert_eq!(ep.stats().dispatched, 1);
    }

    /// The phone challenges, then checks the answer by recomputing the digest
    /// from the password itself (not with our digest module).
    async fn digest_phone(algorithm: &'static str, proxy: bool) {
        let ep = endpoint().await;
        let (socket, addr) = phone().await;
        let (code, reason, challenge_name, answer_name) = if proxy {
            (407, "Proxy Authentication Required", "Proxy-Authenticate", "Proxy-Authorization")
        } else {
            (401, "Unauthorized", "WWW-Authenticate", "Authorization")
        };
        let phone_task = tokio::spawn(async move {
            let (first, from) = recv_request(&socket).await;
            let challenge = format!(
                "{challenge_name}: Digest realm=\"phone\", nonce=\"n0nce/+=\", qop=\"auth\", \
                 algorithm={algorithm}, opaque=\"op4que\"\r\n"
            );
            socket.send_to(reply(&first, code, reason, &challenge).as_bytes(), from).await.expect("send challenge");
            let (second, from) = recv_request(&socket).await;
            assert_eq!(header(&second, "Call-ID"), header(&first, "Call-ID"));
            assert_eq!(header(&second, "From"), header(&first, "From"), "same From tag");
            assert_eq!(header(&second, "CSeq"), Some("2 NOTIFY"));
            assert_ne!(branch_of(&second), branch_of(&first), "a new transaction");
            let auth = header(&second, answer_name).expect("answer header");
            let p: std::collections::HashMap<String, String> =
                parse_params(auth.strip_prefix("Digest ").expect("Digest scheme")).expect("params").into_iter().collect();
            let get = |k: &str| p.get(k).map(String::as_str).unwrap_or("");
            let uri = first.split(' ').nth(1).unwrap_or("");
            assert_eq!(get("username"), "201");
            assert_eq!(get("realm"), "phone");
            assert_eq!(get("nonce"), "n0nce/+=");
            assert_eq!(get("opaque"), "op4que");
            assert_eq!(get("uri"), uri);
            assert_eq!(get("qop"), "auth");
            assert_eq!(get("nc"), "00000001");
            assert_eq!(get("algorithm"), algorithm);
            let h = |s: String| match algorithm {
                "MD5" => hex::encode(Md5::digest(s.as_bytes())),
                _ => hex::encode(Sha256::digest(s.as_bytes())),
            };
            let ha1 = h("201:phone:s3cret pass".to_owned());
            let ha2 = h(format!("NOTIFY:{uri}"));
            let want = h(format!("{ha1}:n0nce/+=:00000001:{}:auth:{ha2}", get("cnonce")));
            assert!(!get("cnonce").is_empty());
            assert_eq!(get("response"), want, "digest response");
            socket.send_to(reply(&second, 200, "OK", "").as_bytes(), from).await.expect("send 200");
        });
        let mut p = params(addr, Transport::Udp);
        p.credentials = Some(Credentials { username: "201", password: "s3cret pass" });
        let outcome = send_notify(&ep, &p, &fast_timers()).await;
        phone_task.await.expect("phone assertions");
        assert_eq!(outcome.expect("notify"), NotifyOutcome::Final(200, "OK".into()));
    }

    #[tokio::test]
    async fn udp_401_md5_then_200() {
        digest_phone("MD5", false).await;
    }

    #[tokio::test]
    async fn udp_401_sha256_then_200() {
        digest_phone("SHA-256", false).await;
    }

    #[tokio::test]
    async fn udp_407_proxy_challenge_then_200() {
        digest_phone("SHA-256", true).await;
    }

    #[tokio::test]
    async fn only_one_challenge_is_answered_and_none_without_credentials() {
        let ep = endpoint().await;
        let (socket, addr) = phone().await;
        let phone_task = tokio::spawn(async move {
            let challenge = "WWW-Authenticate: Digest realm=\"r\", nonce=\"n\", qop=\"auth\"\r\n";
            // Always challenge: first call (with credentials) twice, second call once.
            for _ in 0..3 {
                let (req, from) = recv_request(&socket).await;
                socket.send_to(reply(&req, 401, "Unauthorized", challenge).as_bytes(), from).await.expect("send 401");
            }
        });
        let mut p = params(addr, Transport::Udp);
        p.credentials = Some(Credentials { username: "201", password: "wrong" });
        let with = send_notify(&ep, &p, &fast_timers()).await.expect("notify");
        assert_eq!(with, NotifyOutcome::Final(401, "Unauthorized".into()));
        let without = send_notify(&ep, &params(addr, Transport::Udp), &fast_timers()).await.expect("notify");
        assert_eq!(without, NotifyOutcome::Final(401, "Unauthorized".into()));
        phone_task.await.expect("phone");
    }

    #[tokio::test]
    async fn udp_486_busy_is_a_final_failure() {
        let ep = endpoint().await;
        let (socket, addr) = phone().await;
        let phone_task = tokio::spawn(async move {
            let (req, from) = recv_request(&socket).await;
            socket.send_to(reply(&req, 486, "Busy Here", "").as_bytes(), from).await.expect("send 486");
        });
        let outcome = send_notify(&ep, &params(addr, Transport::Udp), &fast_timers()).await.expect("notify");
        phone_task.await.expect("phone");
        assert_eq!(outcome, NotifyOutcome::Final(486, "Busy Here".into()));
        assert!(!outcome.is_success());
    }

    #[tokio::test]
    async fn udp_100_trying_then_200_retransmits_at_t2_meanwhile() {
        let ep = endpoint().await;
        let (socket, addr) = phone().await;
        let timers = Timers {
            t1: Duration::from_millis(30),
            t2: Duration::from_millis(250),
            timer_f: Duration::from_secs(3),
            tcp_connect: Duration::from_secs(1),
        };
        let phone_task = tokio::spawn(async move {
            let (req, from) = recv_request(&socket).await;
            socket.send_to(reply(&req, 100, "Trying", "").as_bytes(), from).await.expect("send 100");
            // Collect retransmissions for a while: after the 100 they come
            // every T2 (one may still come at T1, armed before the 100).
            let mut times = Vec::new();
            let start = Instant::now();
            let mut buf = vec![0u8; 4096];
            while let Ok(Ok((n, _))) =
                timeout(Duration::from_millis(700).saturating_sub(start.elapsed()), socket.recv_from(&mut buf)).await
            {
                assert_eq!(&buf[..n], req.as_bytes(), "retransmissions are identical");
                times.push(start.elapsed());
            }
            socket.send_to(reply(&req, 200, "OK", "").as_bytes(), from).await.expect("send 200");
            times
        });
        let outcome = send_notify(&ep, &params(addr, Transport::Udp), &timers).await.expect("notify");
        let times = phone_task.await.expect("phone");
        assert_eq!(outcome, NotifyOutcome::Final(200, "OK".into()));
        // Without the 100 there would be ~6 retransmissions in 700 ms.
        assert!((2..=4).contains(&times.len()), "retransmissions at {times:?}");
        for pair in times.windows(2).skip(1) {
            assert!(pair[1] - pair[0] >= Duration::from_millis(200), "T2 spacing: {times:?}");
        }
    }

    #[tokio::test]
    async fn silent_phone_retransmits_doubling_then_times_out_without_delaying_others() {
        let ep = endpoint().await;
        let timers = fast_timers();
        let (silent, silent_addr) = phone().await;
        let listener = tokio::spawn(async move {
            let mut arrivals = Vec::new();
            let mut first: Option<Vec<u8>> = None;
            let mut buf = vec![0u8; 4096];
            let start = Instant::now();
            while let Ok(Ok((n, _))) = timeout(Duration::from_secs(1), silent.recv_from(&mut buf)).await {
                arrivals.push(start.elapsed());
                match &first {
                    None => first = Some(buf[..n].to_vec()),
                    Some(f) => assert_eq!(f.as_slice(), &buf[..n], "identical retransmission"),
                }
                if arrivals.len() > 40 {
                    break;
                }
            }
            arrivals
        });
        let started = Instant::now();
        let silent_ep = ep.clone();
        let silent_notify =
            tokio::spawn(async move { send_notify(&silent_ep, &params(silent_addr, Transport::Udp), &timers).await });

        // Meanwhile a responsive phone is served at once.
        let (socket, addr) = phone().await;
        let quick_phone = tokio::spawn(async move {
            let (req, from) = recv_request(&socket).await;
            socket.send_to(reply(&req, 200, "OK", "").as_bytes(), from).await.expect("send 200");
        });
        let quick = send_notify(&ep, &params(addr, Transport::Udp), &timers).await.expect("notify");
        assert!(quick.is_success());
        assert!(started.elapsed() < Duration::from_millis(1000), "quick phone was delayed");
        quick_phone.await.expect("phone");

        let outcome = silent_notify.await.expect("task").expect("notify");
        let elapsed = started.elapsed();
        assert_eq!(outcome, NotifyOutcome::Timeout);
        assert!(elapsed >= timers.timer_f, "gave up early: {elapsed:?}");
        assert!(elapsed < timers.timer_f + Duration::from_millis(500), "gave up late: {elapsed:?}");
        let arrivals = listener.await.expect("listener");
        // Sends at 0, 40, 120, 280, 600, then every 320 ms until 2560: 11.
        assert!((9..=11).contains(&arrivals.len()), "{} sends: {arrivals:?}", arrivals.len());
        // Compare with the schedule itself rather than gap by gap: the next
        // send is computed from the scheduled time, so a late send (a busy
        // CI machine) does not shift the ones after it.
        let schedule = [0u64, 40, 120, 280, 600, 920, 1240];
        for (i, (arrival, due)) in arrivals.iter().zip(schedule).enumerate() {
            let since_first = *arrival - arrivals[0];
            let due = Duration::from_millis(due);
            assert!(
                since_first + Duration::from_millis(30) >= due && since_first <= due + Duration::from_millis(250),
                "send {i} at {since_first:?}, due at {due:?}; all sends {arrivals:?}"
            );
        }
        assert_eq!(ep.waiting(), 0);
    }

    #[tokio::test]
    async fn garbage_and_strangers_are_dropped_and_counted_while_a_real_transaction_succeeds() {
        let ep = endpoint().await;
        let noise = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let target = ep.local_addr();
        let stranger = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKnobody\r\n\
                        Call-ID: x@y\r\nCSeq: 1 NOTIFY\r\nContent-Length: 0\r\n\r\n";
        let options = "OPTIONS sip:autoprov@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1\r\n\
                       Call-ID: o@p\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
        let truncated = &stranger[..40];
        let datagrams: [&[u8]; 6] =
            [b"\x00\xff\x13garbage", b"", stranger.as_bytes(), options.as_bytes(), truncated.as_bytes(), &[0xAB; 60_000]];
        for d in datagrams {
            noise.send_to(d, target).await.expect("send noise");
        }
        // The receive loop is a separate task: wait until it has read them all.
        let deadline = Instant::now() + WAIT;
        while ep.stats().received < 6 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let stats = ep.stats();
        assert_eq!((stats.garbage, stats.unmatched, stats.requests), (4, 1, 1), "{stats:?}");
        assert_eq!(stats.received, 6);
        let _ = stats.oversized; // 64 KiB+ cannot travel in one UDP datagram: see transaction tests

        let (socket, addr) = phone().await;
        let phone_task = tokio::spawn(async move {
            let (req, from) = recv_request(&socket).await;
            // Noise first, then the real answer.
            socket.send_to(b"SIP/2.0 200", from).await.expect("send");
            socket.send_to(reply(&req, 200, "OK", "").as_bytes(), from).await.expect("send 200");
        });
        let outcome = send_notify(&ep, &params(addr, Transport::Udp), &fast_timers()).await.expect("notify");
        phone_task.await.expect("phone");
        assert!(outcome.is_success());
        assert_eq!(ep.stats().dispatched, 1);
    }

    #[tokio::test]
    async fn invalid_input_is_refused_before_sending() {
        let ep = endpoint().await;
        let (_socket, addr) = phone().await;
        let mut p = params(addr, Transport::Udp);
        p.event = "check-sync\r\nX-Evil: 1";
        assert!(matches!(send_notify(&ep, &p, &fast_timers()).await, Err(SipError::InvalidInput { field: "event", .. })));
        p.event = "check-sync";
        p.extension = "201\r\n";
        assert!(matches!(send_notify(&ep, &p, &fast_timers()).await, Err(SipError::InvalidInput { field: "extension", .. })));
        assert_eq!(ep.stats().received, 0);
    }

    async fn read_tcp_request<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> Option<String> {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 2048];
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                return String::from_utf8(buf[..end + 4].to_vec()).ok();
            }
            let n = timeout(WAIT, stream.read(&mut chunk)).await.ok()?.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    }

    #[tokio::test]
    async fn tcp_phone_answering_200() {
        let ep = endpoint().await;
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("listen");
        let addr = listener.local_addr().expect("addr");
        let phone_task = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.expect("accept");
            let req = read_tcp_request(&mut stream).await.expect("request");
            assert!(req.starts_with(&format!("NOTIFY sip:201@{addr} SIP/2.0\r\n")));
            assert!(header(&req, "Via").unwrap_or("").starts_with("SIP/2.0/TCP 127.0.0.1:"));
            assert!(header(&req, "Contact").unwrap_or("").ends_with(";transport=tcp>"));
            // A 100 and the 200 in one write: framing must split them.
            let both = reply(&req, 100, "Trying", "") + &reply(&req, 200, "OK", "");
            stream.write_all(both.as_bytes()).await.expect("write");
        });
        let outcome = send_notify(&ep, &params(addr, Transport::Tcp), &fast_timers()).await.expect("notify");
        phone_task.await.expect("phone");
        assert_eq!(outcome, NotifyOutcome::Final(200, "OK".into()));
    }

    /// Through a registrar: the NOTIFY names the phone's address of record
    /// (Request-URI, To, and the digest `uri` of the challenged retry), while
    /// it travels to the registrar.
    #[tokio::test]
    async fn udp_through_a_registrar_names_the_address_of_record() {
        let ep = endpoint().await;
        let (registrar, addr) = phone().await;
        let task = tokio::spawn(async move {
            let (first, from) = recv_request(&registrar).await;
            assert!(first.starts_with("NOTIFY sip:201@pbx.example.com SIP/2.0\r\n"), "{first}");
            assert_eq!(header(&first, "To"), Some("<sip:201@pbx.example.com>"));
            let challenge = "WWW-Authenticate: Digest realm=\"pbx.example.com\", nonce=\"abc\", algorithm=MD5\r\n";
            registrar.send_to(reply(&first, 401, "Unauthorized", challenge).as_bytes(), from).await.expect("send 401");
            let (second, from) = recv_request(&registrar).await;
            assert!(second.starts_with("NOTIFY sip:201@pbx.example.com SIP/2.0\r\n"), "{second}");
            let auth = header(&second, "Authorization").expect("answered").to_string();
            assert!(auth.contains("uri=\"sip:201@pbx.example.com\""), "{auth}");
            registrar.send_to(reply(&second, 200, "OK", "").as_bytes(), from).await.expect("send 200");
        });
        let params = NotifyParams {
            credentials: Some(Credentials { username: "201", password: "pw" }),
            address_of_record: Some("pbx.example.com"),
            ..params(addr, Transport::Udp)
        };
        let outcome = send_notify(&ep, &params, &fast_timers()).await.expect("notify");
        task.await.expect("registrar assertions");
        assert_eq!(outcome, NotifyOutcome::Final(200, "OK".into()));
        let bad = NotifyParams { address_of_record: Some("pbx.example.com\r\nX: y"), ..params };
        assert!(matches!(send_notify(&ep, &bad, &fast_timers()).await, Err(SipError::InvalidInput { .. })));
    }

    /// A registrar over TLS: the session is set up against the CA given
    /// (the registrar's certificate names it), the NOTIFY says TLS in its Via
    /// and Contact; a registrar whose certificate does not carry the name
    /// the relay is configured by is refused before anything is sent.
    #[tokio::test]
    async fn tls_to_a_registrar_checks_its_certificate() {
        let cert = rcgen::generate_simple_self_signed(vec!["registrar.test".to_string()]).expect("cert");
        let dir = tempfile::tempdir().expect("dir");
        let ca = dir.path().join("registrar.pem");
        std::fs::write(&ca, cert.cert.pem()).expect("write ca");
        let key = rustls::pki_types::PrivateKeyDer::try_from(cert.key_pair.serialize_der()).expect("key");
        let server = rustls::ServerConfig::builder_with_provider(crate::crypto::provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert.cert.der().clone()], key)
            .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(server));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("listen");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.expect("accept");
            let mut tls = acceptor.accept(tcp).await.expect("handshake");
            let req = read_tcp_request(&mut tls).await.expect("request");
            assert!(req.starts_with("NOTIFY sip:201@pbx.example.com SIP/2.0\r\n"), "{req}");
            assert!(header(&req, "Via").unwrap_or("").starts_with("SIP/2.0/TLS 127.0.0.1:"), "{req}");
            assert!(header(&req, "Contact").unwrap_or("").ends_with(";transport=tls>"), "{req}");
            tls.write_all(reply(&req, 200, "OK", "").as_bytes()).await.expect("write");
            tls.flush().await.expect("flush");
            // The wrong name: the handshake fails on the client's side.
            let (tcp, _) = listener.accept().await.expect("accept");
            assert!(acceptor.accept(tcp).await.is_err());
        });
        let ep = endpoint().await;
        let client = crate::sip::TlsClient::new(Some(&ca)).expect("client");
        let params = NotifyParams {
            address_of_record: Some("pbx.example.com"),
            tls: Some((&client, "registrar.test")),
            ..params(addr, Transport::Tls)
        };
        let outcome = send_notify(&ep, &params, &fast_timers()).await.expect("notify over TLS");
        assert_eq!(outcome, NotifyOutcome::Final(200, "OK".into()));
        let wrong = NotifyParams { tls: Some((&client, "other.test")), ..params };
        assert!(matches!(send_notify(&ep, &wrong, &fast_timers()).await, Err(SipError::Tls(_))));
        task.await.expect("registrar");
        assert!(crate::sip::TlsClient::new(Some(&dir.path().join("missing.pem"))).is_err());
    }

    /// Over TCP the NOTIFY leaves from the address the UDP endpoint is bound
    /// to, the one a registrar trusts, not whatever the route picks.
    #[tokio::test]
    async fn tcp_leaves_from_the_endpoints_address() {
        let ep = UdpEndpoint::bind("127.0.0.2:0".parse().expect("addr")).await.expect("bind endpoint");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("listen");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let (mut stream, from) = listener.accept().await.expect("accept");
            assert_eq!(from.ip().to_string(), "127.0.0.2");
            let req = read_tcp_request(&mut stream).await.expect("request");
            stream.write_all(reply(&req, 200, "OK", "").as_bytes()).await.expect("write");
        });
        let outcome = send_notify(&ep, &params(addr, Transport::Tcp), &fast_timers()).await.expect("notify");
        task.await.expect("peer");
        assert_eq!(outcome, NotifyOutcome::Final(200, "OK".into()));
    }

    /// 401 then 200, with the phone keeping or closing the connection after its 401.
    async fn tcp_digest_phone(close_after_challenge: bool) {
        let ep = endpoint().await;
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("listen");
        let addr = listener.local_addr().expect("addr");
        let phone_task = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.expect("accept");
            let first = read_tcp_request(&mut stream).await.expect("request");
            let challenge = "WWW-Authenticate: Digest realm=\"tcp\", nonce=\"abc\", qop=\"auth\", algorithm=MD5\r\n";
            stream.write_all(reply(&first, 401, "Unauthorized", challenge).as_bytes()).await.expect("write 401");
            if close_after_challenge {
                drop(stream);
                stream = listener.accept().await.expect("second accept").0;
            }
            let second = read_tcp_request(&mut stream).await.expect("authorised request");
            assert_eq!(header(&second, "CSeq"), Some("2 NOTIFY"));
            assert_eq!(header(&second, "Call-ID"), header(&first, "Call-ID"));
            assert!(header(&second, "Authorization").unwrap_or("").contains("username=\"201\""));
            stream.write_all(reply(&second, 200, "OK", "").as_bytes()).await.expect("write 200");
        });
        let mut p = params(addr, Transport::Tcp);
        p.credentials = Some(Credentials { username: "201", password: "pw" });
        let outcome = send_notify(&ep, &p, &fast_timers()).await.expect("notify");
        phone_task.await.expect("phone");
        assert_eq!(outcome, NotifyOutcome::Final(200, "OK".into()));
    }

    #[tokio::test]
    async fn tcp_401_then_200_on_the_same_connection() {
        tcp_digest_phone(false).await;
    }

    #[tokio::test]
    async fn tcp_401_then_200_on_a_new_connection() {
        tcp_digest_phone(true).await;
    }

    #[tokio::test]
    async fn tcp_silent_phone_times_out_and_refused_connect_is_an_error() {
        let ep = endpoint().await;
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("listen");
        let addr = listener.local_addr().expect("addr");
        let holder = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.expect("accept");
            let _ = read_tcp_request(&mut stream).await;
            tokio::time::sleep(Duration::from_secs(2)).await;
        });
        let timers = Timers { timer_f: Duration::from_millis(300), ..fast_timers() };
        let outcome = send_notify(&ep, &params(addr, Transport::Tcp), &timers).await.expect("notify");
        assert_eq!(outcome, NotifyOutcome::Timeout);
        holder.abort();

        // Nobody listens on this port any more.
        let closed = TcpListener::bind("127.0.0.1:0").await.expect("listen");
        let closed_addr = closed.local_addr().expect("addr");
        drop(closed);
        assert!(matches!(send_notify(&ep, &params(closed_addr, Transport::Tcp), &timers).await, Err(SipError::Io(_))));
    }
}
