//! SIP messages: build the out-of-dialog `NOTIFY` we send to a phone, and
//! parse the responses phones send back.
//!
//! Building validates every caller-supplied value (extension, event) so that
//! nothing can smuggle a CR/LF into the request (header injection). Parsing
//! never panics and never trusts the input: anything oversized, truncated or
//! malformed is an error; a request that reaches our socket (a phone's
//! OPTIONS ping, say) is [`SipError::NotAResponse`].

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use rand::Rng;

use super::{SipError, Transport};

/// The largest message we accept, on either transport (a NOTIFY answer is a
/// few hundred bytes; anything near this is hostile or broken).
pub const MAX_MESSAGE_LEN: usize = 64 * 1024;

/// RFC 3261 §8.1.1.7: branches that start with this cookie promise to be
/// unique, which is what lets us match responses by branch alone.
pub const BRANCH_COOKIE: &str = "z9hG4bK";

const MAX_EXTENSION_LEN: usize = 64;
const MAX_EVENT_LEN: usize = 256;

/// Host part of a SIP URI: IPv6 addresses go in brackets (RFC 3261 §25.1).
pub(crate) fn uri_host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// `host:port` for a URI or Via. Not `SocketAddr`'s `Display`, which would add
/// an IPv6 scope id (`%3`) that is not valid in a SIP URI.
pub(crate) fn uri_hostport(addr: SocketAddr) -> String {
    format!("{}:{}", uri_host(addr.ip()), addr.port())
}

pub(crate) fn random_hex(bytes: usize) -> String {
    let mut raw = vec![0u8; bytes];
    rand::thread_rng().fill(raw.as_mut_slice());
    hex::encode(raw)
}

/// A fresh RFC 3261 branch: the magic cookie then 96 random bits.
pub(crate) fn new_branch() -> String {
    format!("{BRANCH_COOKIE}{}", random_hex(12))
}

/// The user part of the request URI is the phone's extension. Only the
/// characters RFC 3261's `user` production allows (unreserved, escaped and
/// user-unreserved) pass, so nothing can break out of the URI or the header.
pub fn validate_extension(extension: &str) -> Result<(), SipError> {
    let invalid = |reason| SipError::InvalidInput { field: "extension", reason };
    if extension.is_empty() {
        return Err(invalid("empty"));
    }
    if extension.len() > MAX_EXTENSION_LEN {
        return Err(invalid("longer than 64 characters"));
    }
    if extension.chars().any(|c| c.is_control()) {
        return Err(invalid("contains control characters (CR, LF, …)"));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-_.!~*'()%&=+$,;?/".contains(c);
    if !extension.chars().all(allowed) {
        return Err(invalid("contains characters not allowed in a SIP user part"));
    }
    Ok(())
}

/// The Event header value comes from a vendor profile (`check-sync;reboot=false`).
/// Printable ASCII only: no CR, LF or other control characters.
pub fn validate_event(event: &str) -> Result<(), SipError> {
    let invalid = |reason| SipError::InvalidInput { field: "event", reason };
    if event.trim().is_empty() {
        return Err(invalid("empty"));
    }
    if event.len() > MAX_EVENT_LEN {
        return Err(invalid("longer than 256 characters"));
    }
    if event.chars().any(|c| c.is_control()) {
        return Err(invalid("contains control characters (CR, LF, …)"));
    }
    if !event.chars().all(|c| c.is_ascii_graphic() || c == ' ') {
        return Err(invalid("contains non-printable or non-ASCII characters"));
    }
    Ok(())
}

/// An `Authorization` (answer to a 401) or `Proxy-Authorization` (answer to
/// a 407) header for a re-sent request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationHeader {
    /// `true` for `Proxy-Authorization`.
    pub proxy: bool,
    /// The header value (`Digest username="…", …`).
    pub value: String,
}

impl AuthorizationHeader {
    pub fn name(&self) -> &'static str {
        if self.proxy {
            "Proxy-Authorization"
        } else {
            "Authorization"
        }
    }
}

/// One out-of-dialog NOTIFY, ready to serialise. Identifiers (Call-ID, From
/// tag, branch) are random; [`NotifyRequest::authorized`] derives the re-sent
/// request of a digest exchange.
#[derive(Debug, Clone)]
pub struct NotifyRequest {
    extension: String,
    event: String,
    target: SocketAddr,
    local: SocketAddr,
    transport: Transport,
    call_id: String,
    from_tag: String,
    cseq: u32,
    branch: String,
    authorization: Option<AuthorizationHeader>,
    /// The host of the phone's address of record, when the request goes to
    /// its registrar rather than to the phone.
    aor_host: Option<String>,
    /// Identifiers derived from a given Call-ID ([`NotifyRequest::with_call_id`])
    /// rather than drawn: branches then follow from it and the CSeq.
    stable: bool,
}

/// A branch (or tag) derived from a given Call-ID and what tells the
/// requests of one exchange apart: the same on every node.
fn derived(call_id: &str, what: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{call_id}\n{what}").as_bytes());
    hex::encode(&digest[..12])
}

impl NotifyRequest {
    /// A NOTIFY to `extension` at `target`, sent from `local` (the address the
    /// phone should answer to: it goes into Via and Contact).
    pub fn new(
        extension: &str,
        event: &str,
        target: SocketAddr,
        local: SocketAddr,
        transport: Transport,
    ) -> Result<Self, SipError> {
        validate_extension(extension)?;
        validate_event(event)?;
        Ok(NotifyRequest {
            extension: extension.to_owned(),
            event: event.trim().to_owned(),
            target,
            local,
            transport,
            call_id: format!("{}@{}", random_hex(16), uri_host(local.ip())),
            from_tag: random_hex(8),
            cseq: 1,
            branch: new_branch(),
            authorization: None,
            aor_host: None,
            stable: false,
        })
    }

    /// The same request under a given Call-ID, with its From tag and
    /// branches derived from it: sent again (by this node or another, after
    /// a crash), it is the same request, which the phone's transaction
    /// layer answers as a retransmission. `call_id` is a Call-ID `word`
    /// (RFC 3261 §25.1) of at most 128 characters.
    pub fn with_call_id(mut self, call_id: &str) -> Result<Self, SipError> {
        let ok = (1..=128).contains(&call_id.len())
            && call_id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~@:".contains(&b));
        if !ok {
            return Err(SipError::InvalidInput { field: "call-id", reason: "must be 1-128 Call-ID characters" });
        }
        self.call_id = call_id.to_owned();
        self.from_tag = derived(call_id, "from-tag");
        self.branch = format!("{BRANCH_COOKIE}{}", derived(call_id, &self.cseq.to_string()));
        self.stable = true;
        Ok(self)
    }

    /// The same request addressed to the phone's address of record
    /// `sip:<extension>@<host>` (Request-URI and To) instead of its contact
    /// address, for a registrar to deliver over the phone's registration
    /// (its NAT binding) while `target` is the registrar.
    pub fn to_address_of_record(mut self, host: &str) -> Result<Self, SipError> {
        let ok = (1..=253).contains(&host.len())
            && host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
        if !ok {
            return Err(SipError::InvalidInput { field: "address of record host", reason: "must be a host name or address" });
        }
        // A bare IPv6 address goes into a URI in brackets (RFC 3261 §25.1).
        self.aor_host = Some(match host.parse::<std::net::Ipv6Addr>() {
            Ok(v6) => format!("[{v6}]"),
            Err(_) => host.to_owned(),
        });
        Ok(self)
    }

    /// The same request re-sent with credentials: CSeq + 1, same Call-ID and
    /// From tag, a new branch (it is a new transaction, RFC 3261 §22.2).
    pub fn authorized(&self, header: AuthorizationHeader) -> Result<Self, SipError> {
        // The value is built from a parsed challenge; refuse it anyway if it
        // could end the header line (defence in depth against injection).
        if header.value.chars().any(|c| c.is_control()) {
            return Err(SipError::InvalidInput { field: "authorization", reason: "contains control characters" });
        }
        let mut next = self.clone();
        next.cseq = self.cseq.wrapping_add(1);
        next.branch = match self.stable {
            true => format!("{BRANCH_COOKIE}{}", derived(&self.call_id, &next.cseq.to_string())),
            false => new_branch(),
        };
        next.authorization = Some(header);
        Ok(next)
    }

    /// The request with another local address (a new TCP connection has a new
    /// local port) and a new branch.
    pub(crate) fn with_local(&self, local: SocketAddr) -> Self {
        let mut next = self.clone();
        next.local = local;
        next.branch = new_branch();
        next
    }

    /// `sip:<extension>@<target ip>:<port>`, or the address of record
    /// `sip:<extension>@<host>`; also the digest `uri`.
    pub fn request_uri(&self) -> String {
        match &self.aor_host {
            Some(host) => format!("sip:{}@{host}", self.extension),
            None => format!("sip:{}@{}", self.extension, uri_hostport(self.target)),
        }
    }

    pub fn branch(&self) -> &str {
        &self.branch
    }

    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    pub fn from_tag(&self) -> &str {
        &self.from_tag
    }

    pub fn cseq(&self) -> u32 {
        self.cseq
    }

    pub fn extension(&self) -> &str {
        &self.extension
    }

    pub fn target(&self) -> SocketAddr {
        self.target
    }

    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// The request on the wire: CRLF line ends, no body.
    pub fn to_bytes(&self) -> Vec<u8> {
        let local_host = uri_host(self.local.ip());
        let local_hostport = uri_hostport(self.local);
        let contact_transport = match self.transport {
            Transport::Udp => "",
            Transport::Tcp => ";transport=tcp",
            Transport::Tls => ";transport=tls",
        };
        let mut out = String::with_capacity(512);
        // `write!` into a String cannot fail; the results are ignored for that reason.
        let _ = write!(out, "NOTIFY {} SIP/2.0\r\n", self.request_uri());
        let _ = write!(out, "Via: SIP/2.0/{} {};branch={};rport\r\n", self.transport.via_token(), local_hostport, self.branch);
        out.push_str("Max-Forwards: 70\r\n");
        let _ = write!(out, "From: <sip:autoprov@{local_host}>;tag={}\r\n", self.from_tag);
        match &self.aor_host {
            Some(host) => _ = write!(out, "To: <sip:{}@{host}>\r\n", self.extension),
            None => _ = write!(out, "To: <sip:{}@{}>\r\n", self.extension, uri_host(self.target.ip())),
        }
        let _ = write!(out, "Call-ID: {}\r\n", self.call_id);
        let _ = write!(out, "CSeq: {} NOTIFY\r\n", self.cseq);
        let _ = write!(out, "Contact: <sip:autoprov@{local_hostport}{contact_transport}>\r\n");
        let _ = write!(out, "Event: {}\r\n", self.event);
        out.push_str("Subscription-State: terminated\r\n");
        out.push_str("User-Agent: autoprov\r\n");
        if let Some(auth) = &self.authorization {
            let _ = write!(out, "{}: {}\r\n", auth.name(), auth.value);
        }
        out.push_str("Content-Length: 0\r\n\r\n");
        out.into_bytes()
    }
}

/// A parsed SIP response. Header names are stored in their long lower-case
/// form (compact `v` becomes `via`), values trimmed, folded lines joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub code: u16,
    pub reason: String,
    headers: Vec<(String, String)>,
    /// Bytes of body (we never need its content).
    pub body_len: usize,
}

impl Response {
    /// 1xx: the phone is working on it; the transaction goes on.
    pub fn is_provisional(&self) -> bool {
        self.code < 200
    }

    /// The first value of header `name` (any case, compact or long form).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers_named(name).next()
    }

    /// Every header line named `name`, in order (not split at commas: an
    /// authentication challenge contains commas).
    pub fn headers_named<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a str> + 'a {
        let wanted = canonical_name(name);
        self.headers.iter().filter(move |(n, _)| *n == wanted).map(|(_, v)| v.as_str())
    }

    /// The branch parameter of the topmost Via (first value of the first Via
    /// line: one line may carry several comma-separated Vias).
    pub fn top_via_branch(&self) -> Option<&str> {
        let via = self.header("via")?;
        let top = split_top_level(via, ',').into_iter().next()?;
        top.split(';').skip(1).find_map(|param| {
            let (name, value) = param.split_once('=')?;
            name.trim().eq_ignore_ascii_case("branch").then(|| value.trim())
        })
    }

    pub fn call_id(&self) -> Option<&str> {
        self.header("call-id")
    }

    /// `CSeq: 2 NOTIFY` → `(2, "NOTIFY")`.
    pub fn cseq(&self) -> Option<(u32, &str)> {
        let mut parts = self.header("cseq")?.split_whitespace();
        let number = parts.next()?.parse().ok()?;
        let method = parts.next()?;
        Some((number, method))
    }
}

/// Lower-case long form of a header name; compact forms per RFC 3261 §7.3.3
/// (and RFC 3265 for `o`/`u`).
fn canonical_name(name: &str) -> String {
    let lower = name.trim().to_ascii_lowercase();
    let long = match lower.as_str() {
        "v" => "via",
        "i" => "call-id",
        "f" => "from",
        "t" => "to",
        "l" => "content-length",
        "m" => "contact",
        "c" => "content-type",
        "e" => "content-encoding",
        "k" => "supported",
        "s" => "subject",
        "o" => "event",
        "u" => "allow-events",
        _ => return lower,
    };
    long.to_owned()
}

/// Split at `sep` outside double quotes and angle brackets.
fn split_top_level(value: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut in_quotes = false;
    let mut escaped = false;
    let mut angle = 0u32;
    let mut start = 0;
    for (i, c) in value.char_indices() {
        if in_quotes {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_quotes = false;
            }
            continue;
        }
        match c {
            '"' => in_quotes = true,
            '<' => angle += 1,
            '>' => angle = angle.saturating_sub(1),
            c if c == sep && angle == 0 => {
                parts.push(value[start..i].trim());
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(value[start..].trim());
    parts
}

/// Leading CRLFs before a start line are allowed (RFC 3261 §7.5) and are what
/// keep-alives look like (RFC 5626): skip them.
fn skip_leading_newlines(bytes: &[u8]) -> usize {
    bytes.iter().take_while(|b| **b == b'\r' || **b == b'\n').count()
}

/// Where the header section ends: `(end of headers, start of body)`. Bare-LF
/// line ends are tolerated.
fn find_head_end(bytes: &[u8]) -> Option<(usize, usize)> {
    let crlf = bytes.windows(4).position(|w| w == b"\r\n\r\n");
    let lf = bytes.windows(2).position(|w| w == b"\n\n");
    match (crlf, lf) {
        (Some(c), Some(l)) if l < c + 2 => Some((l, l + 2)),
        (Some(c), _) => Some((c, c + 4)),
        (None, Some(l)) => Some((l, l + 2)),
        (None, None) => None,
    }
}

enum StartLine {
    Response { code: u16, reason: String },
    Request,
}

fn parse_start_line(line: &str) -> Result<StartLine, SipError> {
    let line = line.trim_end_matches('\r');
    if let Some(rest) = line.get(..8).filter(|v| v.eq_ignore_ascii_case("SIP/2.0 ")).and_then(|_| line.get(8..)) {
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SipError::Malformed("status code is not three digits"));
        }
        let code: u16 = code.parse().map_err(|_| SipError::Malformed("status code is not a number"))?;
        if !(100..=699).contains(&code) {
            return Err(SipError::Malformed("status code out of range"));
        }
        if reason.chars().any(|c| c.is_control() && c != '\t') {
            return Err(SipError::Malformed("control character in reason phrase"));
        }
        return Ok(StartLine::Response { code, reason: reason.trim().to_owned() });
    }
    // Request-Line = Method SP Request-URI SP SIP-Version
    let mut parts = line.split(' ');
    let (method, uri, version) = (parts.next(), parts.next(), parts.next());
    if let (Some(method), Some(uri), Some(version), None) = (method, uri, version, parts.next()) {
        let is_token = !method.is_empty() && method.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b));
        if is_token && !uri.is_empty() && version.eq_ignore_ascii_case("SIP/2.0") {
            return Ok(StartLine::Request);
        }
    }
    Err(SipError::Malformed("not a SIP start line"))
}

/// Header lines → `(canonical name, value)`, joining folded lines (a line
/// starting with SP/HT continues the previous header, RFC 3261 §7.3.1).
fn parse_headers<'a>(lines: impl Iterator<Item = &'a str>) -> Result<Vec<(String, String)>, SipError> {
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in lines {
        let line = line.trim_end_matches('\r');
        if line.starts_with(' ') || line.starts_with('\t') {
            let last = headers.last_mut().ok_or(SipError::Malformed("continuation line before any header"))?;
            last.1.push(' ');
            last.1.push_str(line.trim());
            continue;
        }
        let (name, value) = line.split_once(':').ok_or(SipError::Malformed("header line without a colon"))?;
        let name = name.trim();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(SipError::Malformed("bad header name"));
        }
        headers.push((canonical_name(name), value.trim().to_owned()));
    }
    for (_, value) in &headers {
        if value.chars().any(|c| c.is_control() && c != '\t') {
            return Err(SipError::Malformed("control character in a header value"));
        }
    }
    Ok(headers)
}

fn content_length(headers: &[(String, String)]) -> Result<Option<usize>, SipError> {
    let mut found = None;
    for (name, value) in headers {
        if name == "content-length" {
            let len: usize = value.parse().map_err(|_| SipError::Malformed("bad Content-Length"))?;
            if found.is_some_and(|prev| prev != len) {
                return Err(SipError::Malformed("conflicting Content-Length headers"));
            }
            found = Some(len);
        }
    }
    Ok(found)
}

/// Parse one whole message: a UDP datagram, or one frame cut from a TCP
/// stream by [`frame_stream`]. Bytes after the Content-Length body are
/// ignored (RFC 3261 §18.3 says to discard them).
pub fn parse_response(bytes: &[u8]) -> Result<Response, SipError> {
    if bytes.len() > MAX_MESSAGE_LEN {
        return Err(SipError::TooLarge);
    }
    let bytes = &bytes[skip_leading_newlines(bytes)..];
    if bytes.is_empty() {
        return Err(SipError::Malformed("empty message"));
    }
    // Classify the start line first, so a request is recognised as such even
    // if the rest of it is odd.
    let first_end = bytes.iter().position(|b| *b == b'\n').ok_or(SipError::Incomplete)?;
    let first = String::from_utf8_lossy(&bytes[..first_end]);
    let (code, reason) = match parse_start_line(&first)? {
        StartLine::Request => return Err(SipError::NotAResponse),
        StartLine::Response { code, reason } => (code, reason),
    };
    let (head_end, body_start) = find_head_end(bytes).ok_or(SipError::Incomplete)?;
    // Lossy: a stray non-UTF-8 byte in some header we do not use must not
    // make the whole response unreadable (and cannot panic).
    let head = String::from_utf8_lossy(&bytes[..head_end]);
    let headers = parse_headers(head.split('\n').skip(1))?;
    let available = bytes.len() - body_start;
    let body_len = match content_length(&headers)? {
        Some(len) if len > available => return Err(SipError::Incomplete),
        Some(len) => len,
        // Optional on UDP: the body is the rest of the datagram.
        None => available,
    };
    Ok(Response { code, reason, headers, body_len })
}

/// Cut a stream (TCP) into messages: `Ok(Some(n))` when `buf[..n]` holds one
/// whole message (leading keep-alive CRLFs included), `Ok(None)` when more
/// bytes are needed, an error when the stream cannot be a SIP stream.
pub fn frame_stream(buf: &[u8]) -> Result<Option<usize>, SipError> {
    let skip = skip_leading_newlines(buf);
    let rest = &buf[skip..];
    let Some((head_end, body_start)) = find_head_end(rest) else {
        return if buf.len() > MAX_MESSAGE_LEN { Err(SipError::TooLarge) } else { Ok(None) };
    };
    let head = String::from_utf8_lossy(&rest[..head_end]);
    // The start line is checked by the parser later; here only the framing.
    let headers = parse_headers(head.split('\n').skip(1))?;
    // Content-Length is mandatory on streams (RFC 3261 §18.3); a phone that
    // omits it on a bodiless response is treated as sending no body.
    let body = content_length(&headers)?.unwrap_or(0);
    let total = skip.checked_add(body_start).and_then(|n| n.checked_add(body)).ok_or(SipError::TooLarge)?;
    if total - skip > MAX_MESSAGE_LEN {
        return Err(SipError::TooLarge);
    }
    Ok((buf.len() >= total).then_some(total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, SeedableRng};

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("test address")
    }

    const OK: &[u8] = b"SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bKabc;rport=5070;received=10.0.0.1\r\n\
Via: SIP/2.0/UDP 10.0.0.9;branch=z9hG4bKlower\r\n\
From: <sip:autoprov@10.0.0.1>;tag=1234\r\n\
To: <sip:201@10.0.0.2>;tag=99\r\n\
Call-ID: deadbeef@10.0.0.1\r\n\
CSeq: 1 NOTIFY\r\n\
Content-Length: 5\r\n\
\r\n\
hello";

    #[test]
    fn builds_notify_with_all_headers_and_crlf() {
        let req =
            NotifyRequest::new("201", "check-sync;reboot=false", addr("192.0.2.10:5062"), addr("192.0.2.1:5070"), Transport::Udp)
                .expect("valid request");
        let text = String::from_utf8(req.to_bytes()).expect("utf8");
        assert!(text.starts_with("NOTIFY sip:201@192.0.2.10:5062 SIP/2.0\r\n"));
        assert!(text.ends_with("Content-Length: 0\r\n\r\n"));
        // Every line ends in CRLF: no bare LF anywhere.
        assert_eq!(text.matches('\n').count(), text.matches("\r\n").count());
        let branch = format!("Via: SIP/2.0/UDP 192.0.2.1:5070;branch={};rport\r\n", req.branch());
        assert!(text.contains(&branch), "{text}");
        assert!(req.branch().starts_with("z9hG4bK") && req.branch().len() > 20);
        for line in [
            "Max-Forwards: 70\r\n",
            "To: <sip:201@192.0.2.10>\r\n",
            "CSeq: 1 NOTIFY\r\n",
            "Contact: <sip:autoprov@192.0.2.1:5070>\r\n",
            "Event: check-sync;reboot=false\r\n",
            "Subscription-State: terminated\r\n",
            "User-Agent: autoprov\r\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in {text}");
        }
        assert!(text.contains(&format!("From: <sip:autoprov@192.0.2.1>;tag={}\r\n", req.from_tag())));
        assert!(text.contains(&format!("Call-ID: {}\r\n", req.call_id())));
        assert!(req.call_id().ends_with("@192.0.2.1"));
    }

    #[test]
    fn ipv6_targets_go_in_brackets_and_tcp_says_so() {
        let req =
            NotifyRequest::new("201", "check-sync", addr("[2001:db8::10]:5060"), addr("[2001:db8::1]:5070"), Transport::Tcp)
                .expect("valid request");
        let text = String::from_utf8(req.to_bytes()).expect("utf8");
        assert!(text.starts_with("NOTIFY sip:201@[2001:db8::10]:5060 SIP/2.0\r\n"), "{text}");
        assert!(text.contains("Via: SIP/2.0/TCP [2001:db8::1]:5070;branch="));
        assert!(text.contains("To: <sip:201@[2001:db8::10]>\r\n"));
        assert!(text.contains("Contact: <sip:autoprov@[2001:db8::1]:5070;transport=tcp>\r\n"));
    }

    #[test]
    fn refuses_header_injection() {
        let t = addr("192.0.2.10:5060");
        let l = addr("192.0.2.1:5070");
        for ext in ["", "201\r\nX: y", "201 x", "20<1>", "a@b", "201\0", "2:01"] {
            assert!(
                matches!(
                    NotifyRequest::new(ext, "check-sync", t, l, Transport::Udp),
                    Err(SipError::InvalidInput { field: "extension", .. })
                ),
                "{ext:?}"
            );
        }
        for ev in ["", "  ", "check-sync\r\nEvil: 1", "check-sync\n", "a\tb", "résync", "x\u{7f}"] {
            assert!(
                matches!(NotifyRequest::new("201", ev, t, l, Transport::Udp), Err(SipError::InvalidInput { field: "event", .. })),
                "{ev:?}"
            );
        }
        let req = NotifyRequest::new("201", "check-sync", t, l, Transport::Udp).expect("valid");
        let bad = AuthorizationHeader { proxy: false, value: "Digest x\r\nEvil: 1".into() };
        assert!(req.authorized(bad).is_err());
    }

    #[test]
    fn a_given_call_id_makes_the_same_request_on_every_node() {
        let t = addr("192.0.2.10:5060");
        let made = |local| {
            NotifyRequest::new("201", "check-sync", t, addr(local), Transport::Udp).unwrap().with_call_id("abc-17").unwrap()
        };
        let (a, b) = (made("192.0.2.1:5070"), made("192.0.2.2:5070"));
        assert_eq!(a.call_id(), "abc-17");
        assert_eq!((a.branch(), a.from_tag()), (b.branch(), b.from_tag()));
        assert!(a.branch().starts_with("z9hG4bK") && a.branch().len() == 31);
        let header = || AuthorizationHeader { proxy: false, value: "Digest x".into() };
        let (a2, b2) = (a.authorized(header()).unwrap(), b.authorized(header()).unwrap());
        assert_eq!(a2.branch(), b2.branch());
        assert_ne!(a2.branch(), a.branch());
        let other = NotifyRequest::new("201", "check-sync", t, addr("192.0.2.1:5070"), Transport::Udp).unwrap();
        assert_ne!(other.with_call_id("abc-18").unwrap().branch(), a.branch());
        for bad in ["", "a b", "x\r\nVia: y", &"a".repeat(129)] {
            let req = NotifyRequest::new("201", "check-sync", t, addr("192.0.2.1:5070"), Transport::Udp).unwrap();
            assert!(req.with_call_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn authorized_request_bumps_cseq_keeps_dialog_ids_new_branch() {
        let req = NotifyRequest::new("201", "check-sync", addr("192.0.2.10:5060"), addr("192.0.2.1:5070"), Transport::Udp)
            .expect("valid");
        let next =
            req.authorized(AuthorizationHeader { proxy: true, value: "Digest username=\"201\"".into() }).expect("valid header");
        assert_eq!(next.cseq(), 2);
        assert_eq!(next.call_id(), req.call_id());
        assert_eq!(next.from_tag(), req.from_tag());
        assert_ne!(next.branch(), req.branch());
        let text = String::from_utf8(next.to_bytes()).expect("utf8");
        assert!(text.contains("Proxy-Authorization: Digest username=\"201\"\r\nContent-Length: 0\r\n"));
        assert!(text.contains("CSeq: 2 NOTIFY\r\n"));
    }

    #[test]
    fn parses_a_response() {
        let r = parse_response(OK).expect("valid");
        assert_eq!((r.code, r.reason.as_str()), (200, "OK"));
        assert_eq!(r.top_via_branch(), Some("z9hG4bKabc"));
        assert_eq!(r.call_id(), Some("deadbeef@10.0.0.1"));
        assert_eq!(r.cseq(), Some((1, "NOTIFY")));
        assert_eq!(r.headers_named("VIA").count(), 2);
        assert_eq!(r.body_len, 5);
    }

    #[test]
    fn compact_forms_folding_bare_lf_and_comma_vias() {
        let raw = b"\r\nSIP/2.0 486 Busy Here\n\
v: SIP/2.0/UDP 10.0.0.1:5070;rport;branch=z9hG4bKtop , SIP/2.0/UDP 10.0.0.5;branch=z9hG4bKx\n\
i: abc@host\n\
f: <sip:autoprov@10.0.0.1>\n\t ;tag=1\n\
t: <sip:201@10.0.0.2>\n\
CSEQ:   7   NOTIFY\n\
l: 0\n\n";
        let r = parse_response(raw).expect("valid");
        assert_eq!(r.code, 486);
        assert_eq!(r.reason, "Busy Here");
        assert_eq!(r.top_via_branch(), Some("z9hG4bKtop"));
        assert_eq!(r.call_id(), Some("abc@host"));
        assert_eq!(r.header("From"), Some("<sip:autoprov@10.0.0.1> ;tag=1"));
        assert_eq!(r.cseq(), Some((7, "NOTIFY")));
        assert_eq!(r.header("content-length"), Some("0"));
    }

    #[test]
    fn challenge_headers_keep_their_commas() {
        let raw = b"SIP/2.0 401 Unauthorized\r\n\
Via: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bKa\r\n\
WWW-Authenticate: Digest realm=\"a, b\", nonce=\"n\", algorithm=SHA-256, qop=\"auth\"\r\n\
www-authenticate: Digest realm=\"a\", nonce=\"n\"\r\n\
Content-Length: 0\r\n\r\n";
        let r = parse_response(raw).expect("valid");
        let all: Vec<&str> = r.headers_named("WWW-Authenticate").collect();
        assert_eq!(all.len(), 2);
        assert!(all[0].ends_with("qop=\"auth\""));
    }

    #[test]
    fn requests_are_not_responses() {
        let options = b"OPTIONS sip:autoprov@10.0.0.1:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2\r\nContent-Length: 0\r\n\r\n";
        assert!(matches!(parse_response(options), Err(SipError::NotAResponse)));
    }

    #[test]
    fn rejects_bad_input() {
        let too_big = vec![b'a'; MAX_MESSAGE_LEN + 1];
        assert!(matches!(parse_response(&too_big), Err(SipError::TooLarge)));
        for bad in [
            &b""[..],
            b"\r\n\r\n",
            b"HTTP/1.1 200 OK\r\n\r\n",
            b"SIP/2.0 20 OK\r\n\r\n",
            b"SIP/2.0 999 Nope\r\n\r\n",
            b"SIP/2.0 2x0 OK\r\n\r\n",
            b"SIP/2.0 200 OK\r\nno colon here\r\n\r\n",
            b"SIP/2.0 200 OK\r\n folded first\r\n\r\n",
            b"SIP/2.0 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"SIP/2.0 200 OK\r\nContent-Length: 1\r\nl: 2\r\n\r\nxx",
            b"SIP/2.0 200 OK\r\nX: a\x01b\r\n\r\n",
        ] {
            assert!(parse_response(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn every_truncation_of_a_valid_response_is_an_error() {
        for cut in 0..OK.len() {
            assert!(parse_response(&OK[..cut]).is_err(), "prefix of {cut} bytes parsed");
            assert_eq!(frame_stream(&OK[..cut]).ok().flatten(), None, "prefix {cut} framed");
        }
        assert!(parse_response(OK).is_ok());
    }

    #[test]
    fn random_bytes_and_mutations_never_panic() {
        let mut rng = StdRng::seed_from_u64(0x5eed);
        for _ in 0..5_000 {
            let len = rng.gen_range(0..600);
            let mut bytes = vec![0u8; len];
            rng.fill(bytes.as_mut_slice());
            if rng.gen_bool(0.5) {
                // Make some of them look like SIP so the deeper code runs.
                let mut with_head = b"SIP/2.0 200 OK\r\n".to_vec();
                with_head.extend_from_slice(&bytes);
                bytes = with_head;
            }
            let _ = parse_response(&bytes);
            let _ = frame_stream(&bytes);
        }
        for _ in 0..5_000 {
            let mut bytes = OK.to_vec();
            for _ in 0..rng.gen_range(1..8) {
                let i = rng.gen_range(0..bytes.len());
                bytes[i] = rng.gen();
            }
            if let Ok(r) = parse_response(&bytes) {
                let _ = (r.top_via_branch(), r.call_id(), r.cseq());
            }
            let _ = frame_stream(&bytes);
        }
    }

    #[test]
    fn frames_a_stream_by_content_length() {
        let mut stream = b"\r\n\r\n".to_vec(); // keep-alive first
        stream.extend_from_slice(OK);
        stream.extend_from_slice(b"SIP/2.0 100 Trying\r\nContent-Length: 0\r\n\r\n");
        let first = frame_stream(&stream).expect("framing").expect("complete");
        assert_eq!(first, 4 + OK.len());
        assert_eq!(parse_response(&stream[..first]).expect("valid").code, 200);
        let rest = &stream[first..];
        let second = frame_stream(rest).expect("framing").expect("complete");
        assert_eq!(parse_response(&rest[..second]).expect("valid").code, 100);
        assert_eq!(frame_stream(b"SIP/2.0 200 OK\r\nContent-Length: 3\r\n\r\nab").expect("ok"), None);
        let huge = b"SIP/2.0 200 OK\r\nContent-Length: 999999\r\n\r\n";
        assert!(matches!(frame_stream(huge), Err(SipError::TooLarge)));
        let endless = vec![b'x'; MAX_MESSAGE_LEN + 10];
        assert!(matches!(frame_stream(&endless), Err(SipError::TooLarge)));
    }
}
