//! Phones over TFTP: a small read-only TFTP server on the provisioner.
//!
//! Why our own and not async-tftp (which DESIGN.md named): its handler never
//! sees the transfer mode, so netascii files cannot be converted; it answers
//! every request it refuses with an error packet, while a banned scanner
//! must get no answer at all; and it opens files under one global mutex and
//! runs every transfer on one executor thread. Here each transfer is its own
//! tokio task with its own socket (a new TID, as RFC 1350 asks).

pub mod packet;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::Semaphore;

use crate::provision::{names, FetchRequest, Origin, Protocol, Provisioner, Refusal};
use packet::{ErrorCode, Mode, Packet, RequestedOptions};

/// Transfers in flight at once; requests beyond are answered "busy".
const MAX_TRANSFERS: usize = 4096;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
const MAX_RETRIES: u32 = 5;
const MAX_BLKSIZE: u64 = 65_464;
const MAX_WINDOW: u64 = 64;

pub struct TftpServer {
    socket: Arc<UdpSocket>,
    provisioner: Arc<Provisioner>,
    /// Transfers running, by client address and file: a request that
    /// repeats one is the client retransmitting it, and is ignored. (Not by
    /// address alone: a client's next socket may get the port of its last.)
    in_flight: Arc<Mutex<HashSet<(SocketAddr, String)>>>,
    slots: Arc<Semaphore>,
}

impl TftpServer {
    pub fn new(socket: UdpSocket, provisioner: Arc<Provisioner>) -> Self {
        TftpServer {
            socket: Arc::new(socket),
            provisioner,
            in_flight: Arc::default(),
            slots: Arc::new(Semaphore::new(MAX_TRANSFERS)),
        }
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Receives requests until `stop` resolves. Transfers in flight finish
    /// on their own (each is bounded by its retries).
    pub async fn run(self, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let mut buf = vec![0u8; 2048];
        loop {
            let (len, peer) = tokio::select! {
                r = self.socket.recv_from(&mut buf) => match r {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::debug!(error = %e, "tftp receive error");
                        continue;
                    }
                },
                _ = &mut stop => return,
            };
            match Packet::parse(&buf[..len]) {
                Some(Packet::Read { file, mode, options }) => self.start_read(peer, file, mode, options),
                Some(Packet::Write { file }) => {
                    tracing::info!(target: "autoprov::provision", %peer, file = %file.escape_debug(), proto = "tftp", result = "write-refused");
                    let _ = self
                        .socket
                        .send_to(&packet::error(ErrorCode::AccessViolation, "read-only server: write requests are refused"), peer)
                        .await;
                }
                // Stray ACKs, errors and garbage at the listening port are dropped.
                _ => tracing::debug!(%peer, len, "tftp: ignored datagram"),
            }
        }
    }

    fn start_read(&self, peer: SocketAddr, file: String, mode: Mode, options: RequestedOptions) {
        let key = (peer, file.clone());
        if !self.in_flight.lock().unwrap_or_else(|p| p.into_inner()).insert(key.clone()) {
            return;
        }
        let Ok(permit) = self.slots.clone().try_acquire_owned() else {
            self.in_flight.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
            let socket = self.socket.clone();
            tokio::spawn(async move {
                let _ = socket.send_to(&packet::error(ErrorCode::NotDefined, "server busy, try again"), peer).await;
            });
            return;
        };
        let provisioner = self.provisioner.clone();
        let in_flight = self.in_flight.clone();
        let local = self.socket.local_addr().unwrap_or((std::net::Ipv4Addr::UNSPECIFIED, 0).into());
        tokio::spawn(async move {
            let result = serve_read(&provisioner, peer, local, &file, mode, options).await;
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "tftp transfer ended early");
            }
            in_flight.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
            drop(permit);
        });
    }
}

async fn serve_read(
    provisioner: &Provisioner,
    peer: SocketAddr,
    listening: SocketAddr,
    path: &str,
    mode: Mode,
    options: RequestedOptions,
) -> std::io::Result<()> {
    // The transfer's own socket: a new TID, and (once connected) the source
    // address the phone reaches us on, which goes into its config with the
    // port we listen on.
    let socket = UdpSocket::bind(SocketAddr::new(listening.ip(), 0)).await?;
    socket.connect(peer).await?;
    let host = match socket.local_addr() {
        Ok(SocketAddr::V6(a)) => format!("[{}]", a.ip()),
        Ok(a) => a.ip().to_string(),
        Err(_) => "localhost".into(),
    };
    let (token, file) = names::split_token(path);
    let req = FetchRequest {
        peer: peer.ip(),
        file,
        token,
        path,
        user_agent: None,
        protocol: Protocol::Tftp,
        origin: Origin { host, port: listening.port(), prefix: String::new() },
        credentials: None,
        device_cert: None,
    };
    let body = match provisioner.fetch(&req).await {
        Ok(served) => served.body,
        // A banned scanner gets nothing at all.
        Err(Refusal::Banned) => return Ok(()),
        Err(Refusal::Forbidden(_)) => return send_error(&socket, ErrorCode::AccessViolation, "access denied").await,
        Err(Refusal::Internal(_)) => return send_error(&socket, ErrorCode::NotDefined, "internal error").await,
        // TFTP has no challenge: a phone that proves nothing is told what
        // an unknown MAC is told.
        Err(Refusal::NotFound(_) | Refusal::BadName(_) | Refusal::Unauthorized { .. }) => {
            return send_error(&socket, ErrorCode::FileNotFound, "file not found").await
        }
    };
    let body = match mode {
        Mode::Octet => body,
        Mode::Netascii => Bytes::from(packet::to_netascii(&body)),
    };
    let transfer = Transfer::negotiate(socket, body, &options);
    if transfer.run().await? {
        // The peer acknowledged what we sent: the address is really its
        // own, so from now on its misses count.
        provisioner.scan_guard().prove(peer.ip(), std::time::Instant::now());
    }
    Ok(())
}

async fn send_error(socket: &UdpSocket, code: ErrorCode, message: &str) -> std::io::Result<()> {
    socket.send(&packet::error(code, message)).await.map(|_| ())
}

/// One read transfer, after the file is known.
struct Transfer {
    socket: UdpSocket,
    body: Bytes,
    blksize: usize,
    window: u16,
    timeout: Duration,
    /// Options to acknowledge (OACK) before the first data block.
    oack: Vec<(&'static str, u64)>,
}

impl Transfer {
    fn negotiate(socket: UdpSocket, body: Bytes, o: &RequestedOptions) -> Transfer {
        /// An option the client asked for, if at least `min` (clamped to
        /// `max`), acknowledged in the OACK; out of range, it is ignored.
        fn accept(
            oack: &mut Vec<(&'static str, u64)>,
            name: &'static str,
            asked: Option<u64>,
            min: u64,
            max: u64,
        ) -> Option<u64> {
            let n = asked.filter(|n| *n >= min)?.min(max);
            oack.push((name, n));
            Some(n)
        }
        let mut oack = Vec::new();
        let blksize = accept(&mut oack, "blksize", o.blksize, 8, MAX_BLKSIZE).unwrap_or(512) as usize;
        // RFC 2349: 1-255 seconds; a larger value is ignored, not clamped.
        let timeout = accept(&mut oack, "timeout", o.timeout.filter(|n| *n <= 255), 1, 255)
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_TIMEOUT);
        if o.tsize.is_some() {
            oack.push(("tsize", body.len() as u64));
        }
        let window = accept(&mut oack, "windowsize", o.windowsize, 1, MAX_WINDOW).unwrap_or(1) as u16;
        Transfer { socket, body, blksize, window, timeout, oack }
    }

    /// Block `n` (1-based) of the body; the last one may be empty.
    fn block(&self, n: u64) -> &[u8] {
        let start = ((n - 1) as usize * self.blksize).min(self.body.len());
        let end = (start + self.blksize).min(self.body.len());
        &self.body[start..end]
    }

    /// Sends the file; says whether the peer acknowledged anything.
    async fn run(self) -> std::io::Result<bool> {
        // A body of exactly k blocks ends with an empty block k+1.
        let blocks = self.body.len() as u64 / self.blksize as u64 + 1;
        let mut acknowledged = false;
        // The OACK is answered with ACK 0: a window of one "block 0".
        if !self.oack.is_empty() {
            if self.send_window(&[packet::oack(&self.oack)], 0).await?.is_none() {
                return Ok(false);
            }
            acknowledged = true;
        }
        // `next` is the first block not yet acknowledged (absolute number).
        let mut next: u64 = 1;
        while next <= blocks {
            let last = (next + u64::from(self.window) - 1).min(blocks);
            let datagrams: Vec<Bytes> = (next..=last).map(|n| packet::data(n as u16, self.block(n))).collect();
            match self.send_window(&datagrams, next).await? {
                Some(acked) => {
                    acknowledged = true;
                    next = acked + 1;
                }
                None => return Ok(acknowledged),
            }
        }
        Ok(acknowledged)
    }

    /// Sends `datagrams` (blocks `first…`, or the OACK as block 0) until an
    /// ACK moves the window:
    /// returns the highest block acknowledged, or `None` when the client gave
    /// up or went silent.
    async fn send_window(&self, datagrams: &[Bytes], first: u64) -> std::io::Result<Option<u64>> {
        let last = first + datagrams.len() as u64 - 1;
        let mut buf = [0u8; 1024];
        for _ in 0..=MAX_RETRIES {
            for d in datagrams {
                self.socket.send(d).await?;
            }
            let deadline = tokio::time::Instant::now() + self.timeout;
            loop {
                let len = match tokio::time::timeout_at(deadline, self.socket.recv(&mut buf)).await {
                    Err(_) => break, // timeout: resend the window
                    Ok(Err(_)) => return Ok(None),
                    Ok(Ok(len)) => len,
                };
                match Packet::parse(&buf[..len]) {
                    Some(Packet::Ack(n)) => {
                        // Block numbers are 16 bits and wrap; find the
                        // acknowledged block within this window.
                        if let Some(acked) = (first..=last).rev().find(|b| *b as u16 == n) {
                            return Ok(Some(acked));
                        }
                        // An ACK of an older block (duplicate): ignore it, so
                        // a late duplicate cannot start a packet storm.
                    }
                    Some(Packet::Error { .. }) => return Ok(None),
                    _ => {}
                }
            }
        }
        Ok(None)
    }
}
