//! Client transactions for our NOTIFYs (RFC 3261 §17.1.2, non-INVITE).
//!
//! UDP: one [`UdpEndpoint`] owns the server's single SIP socket
//! (`AUTOPROV_SIP_LISTEN`, default `0.0.0.0:5070`) and a receive loop that
//! hands each response to the transaction waiting for it, found by the top
//! Via branch and checked against Call-ID and CSeq method ([`Transactions`]).
//! Datagrams that are garbage, oversized, requests or nobody's are dropped
//! and counted ([`EndpointStats`]), never fatal. Each transaction is its own
//! future with its own timers, so a silent phone delays no one else: the
//! request is retransmitted at Timer E (T1 doubling up to T2, or every T2
//! once a 1xx arrived) until a final response or Timer F (64·T1).
//!
//! TCP: connect with a timeout, send once (the transport is reliable), read
//! Content-Length framed messages until the final response; Timer F bounds
//! the wait.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};

use super::message::{frame_stream, parse_response, NotifyRequest, Response, MAX_MESSAGE_LEN};
use super::SipError;

/// RFC 3261 timer values (§17.1.2.2, table 4). Tests shrink them to
/// milliseconds; production keeps [`Timers::default`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// First retransmission interval (Timer E starts here). RFC: 500 ms.
    pub t1: Duration,
    /// Retransmission interval cap, and the interval once a 1xx arrived. RFC: 4 s.
    pub t2: Duration,
    /// Give up after this long without a final response. RFC: 64·T1 = 32 s.
    pub timer_f: Duration,
    /// TCP connect timeout (never longer than `timer_f`).
    pub tcp_connect: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            timer_f: Duration::from_secs(32),
            tcp_connect: Duration::from_secs(5),
        }
    }
}

/// `now + d`, saturating instead of panicking on an absurd configured value.
fn after(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d).unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

/// What the receive loop did with datagrams, for tests and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EndpointStats {
    /// Datagrams read from the socket (or given to [`Transactions::dispatch`]).
    pub received: u64,
    /// Responses handed to a waiting transaction.
    pub dispatched: u64,
    /// Not parseable as SIP (random bytes, truncated, malformed).
    pub garbage: u64,
    /// Larger than [`MAX_MESSAGE_LEN`].
    pub oversized: u64,
    /// SIP requests (OPTIONS pings…): we run no server transactions.
    pub requests: u64,
    /// Well-formed responses that match no waiting transaction (unknown
    /// branch, wrong Call-ID or method, or a late retransmission).
    pub unmatched: u64,
    /// Errors reading the socket.
    pub receive_errors: u64,
}

#[derive(Default)]
struct Counters {
    received: AtomicU64,
    dispatched: AtomicU64,
    garbage: AtomicU64,
    oversized: AtomicU64,
    requests: AtomicU64,
    unmatched: AtomicU64,
    receive_errors: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

struct Waiter {
    call_id: String,
    responses: mpsc::Sender<Response>,
}

/// A few responses per transaction at most (100 Trying, 180, a final, and
/// retransmissions); more are dropped and counted rather than buffered.
const WAITER_QUEUE: usize = 8;

/// The table of transactions waiting for a response, keyed by Via branch:
/// the dispatcher between one socket and many transactions.
#[derive(Default)]
pub struct Transactions {
    waiting: Mutex<HashMap<String, Waiter>>,
    counters: Counters,
}

/// Does `response` answer the NOTIFY with this branch and Call-ID (RFC 3261
/// §17.1.3, plus the Call-ID check as a guard against branch reuse)?
fn answers(response: &Response, branch: &str, call_id: &str) -> bool {
    response.top_via_branch() == Some(branch)
        && response.call_id() == Some(call_id)
        && response.cseq().is_some_and(|(_, method)| method == "NOTIFY")
}

impl Transactions {
    pub fn new() -> Self {
        Self::default()
    }

    fn table(&self) -> MutexGuard<'_, HashMap<String, Waiter>> {
        // No code panics while holding the lock, but if it ever did the map
        // is still consistent: keep serving rather than cascade the panic.
        self.waiting.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Route one datagram to its transaction, or drop and count it.
    pub fn dispatch(&self, datagram: &[u8]) {
        let c = &self.counters;
        bump(&c.received);
        let response = match parse_response(datagram) {
            Ok(response) => response,
            Err(SipError::TooLarge) => return bump(&c.oversized),
            Err(SipError::NotAResponse) => return bump(&c.requests),
            Err(_) => return bump(&c.garbage),
        };
        let sender = response.top_via_branch().and_then(|branch| {
            self.table().get(branch).filter(|w| answers(&response, branch, &w.call_id)).map(|w| w.responses.clone())
        });
        match sender.map(|tx| tx.try_send(response)) {
            Some(Ok(())) => bump(&c.dispatched),
            // Unknown branch, transaction just finished, or a flood.
            _ => bump(&c.unmatched),
        }
    }

    /// Wait for responses to `branch`; dropping the guard unregisters, so a
    /// cancelled transaction leaves nothing behind.
    fn register(self: &Arc<Self>, branch: &str, call_id: &str) -> (Registration, mpsc::Receiver<Response>) {
        let (tx, rx) = mpsc::channel(WAITER_QUEUE);
        self.table().insert(branch.to_owned(), Waiter { call_id: call_id.to_owned(), responses: tx });
        let guard = Registration { transactions: Arc::clone(self), branch: branch.to_owned() };
        (guard, rx)
    }

    /// Transactions currently waiting for a response.
    pub fn waiting(&self) -> usize {
        self.table().len()
    }

    pub fn stats(&self) -> EndpointStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        EndpointStats {
            received: get(&c.received),
            dispatched: get(&c.dispatched),
            garbage: get(&c.garbage),
            oversized: get(&c.oversized),
            requests: get(&c.requests),
            unmatched: get(&c.unmatched),
            receive_errors: get(&c.receive_errors),
        }
    }
}

struct Registration {
    transactions: Arc<Transactions>,
    branch: String,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.transactions.table().remove(&self.branch);
    }
}

/// The server's one SIP UDP socket, its receive loop and its transaction
/// table. Cheap to clone; the receive loop stops when the last clone drops.
#[derive(Clone)]
pub struct UdpEndpoint {
    inner: Arc<EndpointInner>,
}

struct EndpointInner {
    socket: Arc<UdpSocket>,
    transactions: Arc<Transactions>,
    local: SocketAddr,
    advertised_ip: Option<IpAddr>,
    receiver: tokio::task::AbortHandle,
}

impl Drop for EndpointInner {
    fn drop(&mut self) {
        self.receiver.abort();
    }
}

impl UdpEndpoint {
    /// Bind `addr` (e.g. `AUTOPROV_SIP_LISTEN`) and start the receive loop.
    /// Must be called inside a tokio runtime.
    pub async fn bind(addr: SocketAddr) -> io::Result<Self> {
        Self::from_socket(UdpSocket::bind(addr).await?, None)
    }

    /// Use an already bound socket. `advertised_ip` is the address put in Via
    /// and Contact when the socket is bound to a wildcard address and the
    /// phones must answer to a specific (e.g. NATed) one; without it the
    /// source address the kernel picks for each target is used.
    pub fn from_socket(socket: UdpSocket, advertised_ip: Option<IpAddr>) -> io::Result<Self> {
        let local = socket.local_addr()?;
        let socket = Arc::new(socket);
        let transactions = Arc::new(Transactions::new());
        let receiver = tokio::spawn(receive_loop(Arc::clone(&socket), Arc::clone(&transactions)));
        Ok(UdpEndpoint {
            inner: Arc::new(EndpointInner { socket, transactions, local, advertised_ip, receiver: receiver.abort_handle() }),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local
    }

    pub fn stats(&self) -> EndpointStats {
        self.inner.transactions.stats()
    }

    /// Transactions currently waiting for a response.
    pub fn waiting(&self) -> usize {
        self.inner.transactions.waiting()
    }

    /// The address phones should answer to (Via sent-by, Contact). A wildcard
    /// bind (`0.0.0.0`) is no use there, so ask the kernel which source
    /// address it would use towards `target` (a UDP connect sends nothing).
    pub fn via_address(&self, target: SocketAddr) -> SocketAddr {
        let local = self.inner.local;
        if let Some(ip) = self.inner.advertised_ip {
            return SocketAddr::new(ip, local.port());
        }
        if !local.ip().is_unspecified() {
            return local;
        }
        let probe: SocketAddr = match target {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        std::net::UdpSocket::bind(probe)
            .and_then(|s| {
                s.connect(target)?;
                s.local_addr()
            })
            .map(|routed| SocketAddr::new(routed.ip(), local.port()))
            .unwrap_or(local)
    }

    /// Run one client transaction: `Ok(None)` when Timer F fires first.
    /// Provisional responses keep it going; the final one is returned.
    pub async fn transact(&self, request: &NotifyRequest, timers: &Timers) -> Result<Option<Response>, SipError> {
        let target = request.target();
        let bytes = request.to_bytes();
        // Register before sending: a fast phone may answer before send_to returns.
        let (_registration, mut responses) = self.inner.transactions.register(request.branch(), request.call_id());
        let deadline = after(timers.timer_f);
        self.inner.socket.send_to(&bytes, target).await?;
        // A zero T1 or T2 from a bad setting must not turn into a send loop.
        let floor = Duration::from_millis(1);
        let mut interval = timers.t1.max(floor);
        let mut next_send = after(interval);
        let mut proceeding = false;
        loop {
            tokio::select! {
                // A response that is already here wins over a timer firing.
                biased;
                received = responses.recv() => {
                    let Some(response) = received else {
                        return Err(SipError::EndpointClosed);
                    };
                    if !response.is_provisional() {
                        return Ok(Some(response));
                    }
                    // §17.1.2.2: Proceeding state, retransmit every T2 from now on.
                    proceeding = true;
                }
                _ = tokio::time::sleep_until(next_send.min(deadline)) => {
                    if Instant::now() >= deadline {
                        return Ok(None);
                    }
                    self.inner.socket.send_to(&bytes, target).await?;
                    interval = if proceeding {
                        timers.t2
                    } else {
                        interval.saturating_mul(2).min(timers.t2)
                    }
                    .max(floor);
                    // From the scheduled time, so intervals do not drift with
                    // scheduling delays (unless we fell behind entirely).
                    next_send = next_send
                        .checked_add(interval)
                        .filter(|t| *t > Instant::now())
                        .unwrap_or_else(|| after(interval));
                }
            }
        }
    }
}

async fn receive_loop(socket: Arc<UdpSocket>, transactions: Arc<Transactions>) {
    // One byte more than we accept, so an oversized datagram is seen as such
    // instead of silently truncated to an acceptable length.
    let mut buf = vec![0u8; MAX_MESSAGE_LEN + 1];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((len, _from)) => transactions.dispatch(&buf[..len]),
            Err(error) => {
                bump(&transactions.counters.receive_errors);
                tracing::debug!(%error, "SIP socket receive error");
                // Some errors (ICMP unreachable reported late) are one-offs;
                // a short pause keeps a persistent one from spinning a core.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
}

/// One TCP (or TLS) connection to a phone or registrar; reusable for the
/// authenticated retry.
pub struct TcpConnection {
    stream: Stream,
    buf: Vec<u8>,
    local: SocketAddr,
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Stream {
    async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.write_all(bytes).await,
            Stream::Tls(s) => {
                s.write_all(bytes).await?;
                s.flush().await
            }
        }
    }

    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf).await,
            Stream::Tls(s) => s.read(buf).await,
        }
    }
}

impl TcpConnection {
    /// Connects to `target`, from `bind` (an address of ours, any port) when
    /// given and of the target's family; with `tls`, TLS on top, the peer's
    /// certificate checked for the name given.
    pub async fn connect(
        target: SocketAddr,
        bind: Option<IpAddr>,
        tls: Option<(&super::TlsClient, &str)>,
        timers: &Timers,
    ) -> Result<Self, SipError> {
        let wait = timers.tcp_connect.min(timers.timer_f);
        let socket = if target.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
        if let Some(ip) = bind.filter(|ip| ip.is_ipv4() == target.is_ipv4()) {
            socket.bind(SocketAddr::new(ip, 0))?;
        }
        let stream = timeout(wait, socket.connect(target)).await.map_err(|_| SipError::ConnectTimeout(target))??;
        // Requests are one small write each: do not let Nagle hold them.
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr()?;
        let stream = match tls {
            None => Stream::Plain(stream),
            Some((client, name)) => {
                let session =
                    timeout(wait, client.connect(stream, name)).await.map_err(|_| SipError::ConnectTimeout(target))??;
                Stream::Tls(Box::new(session))
            }
        };
        Ok(TcpConnection { stream, buf: Vec::new(), local })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Whether the phone already closed its side (many answer a 401 and
    /// hang up). Reads nothing that matters: stray bytes are kept for later.
    /// Over TLS it cannot look without reading records: it says no, and a
    /// closed connection shows when the retry is sent.
    pub fn peer_has_closed(&mut self) -> bool {
        let Stream::Plain(stream) = &self.stream else { return false };
        let mut chunk = [0u8; 1024];
        loop {
            match stream.try_read(&mut chunk) {
                Ok(0) => return true,
                Ok(n) => {
                    if self.buf.len() + n > MAX_MESSAGE_LEN {
                        return true;
                    }
                    self.buf.extend_from_slice(&chunk[..n]);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(_) => return true,
            }
        }
    }

    /// Send `request` and wait for its final response; `Ok(None)` when
    /// Timer F fires first. No retransmission: TCP is reliable.
    pub async fn transact(&mut self, request: &NotifyRequest, timers: &Timers) -> Result<Option<Response>, SipError> {
        match timeout(timers.timer_f, self.exchange(request)).await {
            Ok(result) => result.map(Some),
            Err(_) => Ok(None),
        }
    }

    async fn exchange(&mut self, request: &NotifyRequest) -> Result<Response, SipError> {
        self.stream.write_all(&request.to_bytes()).await?;
        let mut chunk = vec![0u8; 8192];
        loop {
            while let Some(len) = frame_stream(&self.buf)? {
                let frame: Vec<u8> = self.buf.drain(..len).collect();
                match parse_response(&frame) {
                    Ok(response) if answers(&response, request.branch(), request.call_id()) => {
                        if !response.is_provisional() {
                            return Ok(response);
                        }
                    }
                    // A response to an earlier request, or a request from the
                    // phone: framing is intact, so skip it.
                    Ok(_) | Err(SipError::NotAResponse) => {}
                    // Framing is lost: this connection is useless.
                    Err(e) => return Err(e),
                }
            }
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(SipError::ConnectionClosed);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, Rng, SeedableRng};

    fn response_for(branch: &str, call_id: &str, method: &str) -> Vec<u8> {
        format!(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch={branch};rport=5070\r\n\
             Call-ID: {call_id}\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
        )
        .into_bytes()
    }

    #[tokio::test]
    async fn dispatch_routes_by_branch_call_id_and_method_and_counts_the_rest() {
        let table = Arc::new(Transactions::new());
        let (guard, mut rx) = table.register("z9hG4bKone", "c1@h");
        table.dispatch(&response_for("z9hG4bKone", "other@h", "NOTIFY"));
        table.dispatch(&response_for("z9hG4bKone", "c1@h", "OPTIONS"));
        table.dispatch(&response_for("z9hG4bKnobody", "c1@h", "NOTIFY"));
        table.dispatch(&vec![b'x'; MAX_MESSAGE_LEN + 1]);
        table.dispatch(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 0\r\n\r\n");
        table.dispatch(b"\x00\x01garbage\r\n\r\n");
        table.dispatch(&response_for("z9hG4bKone", "c1@h", "NOTIFY"));
        assert_eq!(rx.try_recv().map(|r| r.code).ok(), Some(200));
        assert!(rx.try_recv().is_err(), "only the matching response is delivered");
        let stats = table.stats();
        assert_eq!(
            stats,
            EndpointStats { received: 7, dispatched: 1, garbage: 1, oversized: 1, requests: 1, unmatched: 3, receive_errors: 0 }
        );
        drop(guard);
        assert_eq!(table.waiting(), 0);
        table.dispatch(&response_for("z9hG4bKone", "c1@h", "NOTIFY"));
        assert_eq!(table.stats().unmatched, 4, "late response after the transaction ended");
    }

    #[tokio::test]
    async fn random_datagrams_are_counted_never_fatal() {
        let table = Arc::new(Transactions::new());
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..2_000 {
            let mut bytes = vec![0u8; rng.gen_range(0..1500)];
            rng.fill(bytes.as_mut_slice());
            table.dispatch(&bytes);
        }
        let s = table.stats();
        assert_eq!(s.received, 2_000);
        assert_eq!(s.garbage + s.requests + s.unmatched + s.oversized, 2_000);
    }
}
