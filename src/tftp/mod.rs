//! Phones over TFTP: a small read-only TFTP server on the provisioner.
//!
//! Why our own and not async-tftp (which DESIGN.md named): its handler never
//! sees the transfer mode, so netascii files cannot be converted; it answers
//! every request it refuses with an error packet, while a banned scanner
//! must get no answer at all; and it opens files under one global mutex and
//! runs every transfer on one executor thread. Here each transfer is its own
//! tokio task with its own socket (its own TID, as RFC 1350 asks; kept for
//! a later transfer to another peer: [`sockets`]).
//!
//! UDP sources can be forged, so until a peer has acknowledged something
//! it is sent exactly one datagram per request it sent (no retransmission
//! on a timeout: no amplifier), it may not negotiate a timeout above
//! `tftp_max_timeout`, and its transfer is the first ended when every slot
//! is taken ([`slots`]); one address holds at most `tftp_transfers_per_source`
//! transfers. Once it has acknowledged, a transfer runs as RFC 1350 says,
//! with retransmissions, and nothing on its data path takes a lock.

pub mod packet;
mod slots;
mod sockets;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::provision::{names, FetchRequest, Origin, Protocol, Provisioner, Refusal};
use packet::{ErrorCode, Mode, Packet, RequestedOptions};
use slots::{Admission, SlotLimits, Slots, Ticket};
use sockets::TransferSockets;

/// Retransmissions of a window to a peer that has acknowledged before.
const MAX_RETRIES: u32 = 5;

/// What bounds the TFTP front end (settings, within the descriptor budget).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TftpLimits {
    /// Transfers in flight at once; each holds a socket.
    pub max_transfers: usize,
    /// Transfers in flight from one client address.
    pub per_source: usize,
    /// The longest timeout a client may negotiate (RFC 2349); whole seconds.
    pub max_timeout: Duration,
    /// The timeout when the client negotiates none.
    pub default_timeout: Duration,
}

#[derive(Clone, Copy, Debug)]
struct Timeouts {
    max_secs: u64,
    default: Duration,
}

pub struct TftpServer {
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    provisioner: Arc<Provisioner>,
    /// Transfers in flight (see [`slots`]): a request that repeats one is
    /// the client retransmitting it, or a forger.
    slots: Arc<Slots>,
    sockets: Arc<TransferSockets>,
    timeouts: Timeouts,
}

impl TftpServer {
    pub fn new(socket: UdpSocket, provisioner: Arc<Provisioner>, limits: TftpLimits) -> Self {
        let local = socket.local_addr().unwrap_or((std::net::Ipv4Addr::UNSPECIFIED, 0).into());
        let slots = Slots::new(SlotLimits { max: limits.max_transfers, per_source: limits.per_source });
        TftpServer {
            socket: Arc::new(socket),
            local,
            provisioner,
            sockets: Arc::new(TransferSockets::new(local.ip(), slots.clone(), limits.max_transfers)),
            slots,
            timeouts: Timeouts { max_secs: limits.max_timeout.as_secs(), default: limits.default_timeout },
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
        let key: slots::Key = (peer, Arc::from(file));
        let ticket = match self.slots.admit(key.clone()) {
            Admission::Start { ticket, evicted } => {
                if let Some((victim, file)) = evicted {
                    tracing::debug!(peer = %victim, file = %file.escape_debug(), "tftp: unacknowledged transfer ended to make room");
                }
                ticket
            }
            // The transfer itself answers a repeat, or not.
            Admission::Repeat | Admission::Duplicate => return,
            // Silence rather than "busy": a source over its share is most
            // likely a flood, forged or not, and is sent nothing; a real
            // phone behind a busy NAT resends its request after its timeout
            // (RFC 1350) and by then the office's transfers, milliseconds
            // each, have made room, where an error would end its attempt and
            // many firmwares then wait minutes before the next.
            Admission::SourceFull => {
                tracing::debug!(%peer, "tftp: transfers per source reached, request dropped");
                return;
            }
            // Every transfer is under way with a peer that acknowledged: one
            // datagram in, one out, from the listening socket.
            Admission::Full => {
                let socket = self.socket.clone();
                tokio::spawn(async move {
                    let _ = socket.send_to(&packet::error(ErrorCode::NotDefined, "server busy, try again"), peer).await;
                });
                return;
            }
        };
        let (provisioner, sockets) = (self.provisioner.clone(), self.sockets.clone());
        let (local, timeouts) = (self.local, self.timeouts);
        let in_flight = provisioner.metrics().tftp_transfer();
        tokio::spawn(async move {
            let _in_flight = in_flight;
            let result = serve_read(&provisioner, &sockets, peer, local, &key.1, mode, options, timeouts, ticket).await;
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "tftp transfer ended early");
            }
        });
    }
}

#[allow(clippy::too_many_arguments)]
async fn serve_read(
    provisioner: &Provisioner,
    sockets: &TransferSockets,
    peer: SocketAddr,
    listening: SocketAddr,
    path: &str,
    mode: Mode,
    options: RequestedOptions,
    timeouts: Timeouts,
    mut ticket: Ticket,
) -> std::io::Result<()> {
    // The transfer's own socket: its TID, and (connected) the source
    // address the phone reaches us on, which goes into its config with the
    // port we listen on.
    let socket = sockets.take(peer).await?;
    let host = socket.host();
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
    let fetch = provisioner.fetch(&req);
    tokio::pin!(fetch);
    let fetched = loop {
        tokio::select! {
            r = &mut fetch => break r,
            // Evicted before it could answer: it ends here. A repeat of the
            // request meanwhile is answered by the first answer itself.
            signal = ticket.signals.recv() => if signal.is_none() {
                return Ok(());
            },
        }
    };
    let answer = match fetched {
        Ok(served) => {
            provisioner.answered(&served, false);
            Ok(served.body)
        }
        // A banned scanner gets nothing at all.
        Err(Refusal::Banned) => return Ok(()),
        Err(Refusal::Forbidden(_)) => Err((ErrorCode::AccessViolation, "access denied")),
        Err(Refusal::Internal(_)) => Err((ErrorCode::NotDefined, "internal error")),
        Err(Refusal::Unavailable) => Err((ErrorCode::NotDefined, "service unavailable, try again")),
        // TFTP has no challenge: a phone that proves nothing is told what
        // an unknown MAC is told.
        Err(Refusal::NotFound(_) | Refusal::BadName(_) | Refusal::Unauthorized { .. }) => {
            Err((ErrorCode::FileNotFound, "file not found"))
        }
    };
    let body = match answer {
        Ok(body) => body,
        Err((code, message)) => {
            // An error is the first answer too, sent once. The slot is
            // freed first, so a repeat of the request is a new transfer
            // with its own one answer.
            drop(ticket);
            return send_error(&socket, code, message).await;
        }
    };
    let body = match mode {
        Mode::Octet => body,
        Mode::Netascii => Bytes::from(packet::to_netascii(&body)),
    };
    let transfer = Transfer::negotiate(&socket, body, &options, timeouts);
    // Once the peer acknowledges our first answer, its address is really
    // its own: from then on its misses count (at once, not when this
    // transfer ends: its next request may come before our last ACK is read).
    transfer.run(&mut ticket, || provisioner.scan_guard().prove(peer.ip(), std::time::Instant::now())).await?;
    Ok(())
}

async fn send_error(socket: &UdpSocket, code: ErrorCode, message: &str) -> std::io::Result<()> {
    socket.send(&packet::error(code, message)).await.map(|_| ())
}

/// One read transfer, after the file is known.
struct Transfer<'a> {
    socket: &'a UdpSocket,
    body: Bytes,
    blksize: usize,
    window: u16,
    timeout: Duration,
    /// Options to acknowledge (OACK) before the first data block.
    oack: Vec<(&'static str, u64)>,
}

impl<'a> Transfer<'a> {
    fn negotiate(socket: &'a UdpSocket, body: Bytes, asked: &RequestedOptions, timeouts: Timeouts) -> Self {
        let n = packet::negotiate(asked, body.len() as u64, timeouts.max_secs);
        let timeout = n.timeout.map_or(timeouts.default, Duration::from_secs);
        Transfer { socket, body, blksize: n.blksize, window: n.window, timeout, oack: n.oack }
    }

    /// Block `n` (1-based) of the body; the last one may be empty.
    fn block(&self, n: u64) -> &[u8] {
        let start = ((n - 1) as usize * self.blksize).min(self.body.len());
        let end = (start + self.blksize).min(self.body.len());
        &self.body[start..end]
    }

    /// Sends the file; says whether the peer acknowledged anything, and
    /// calls `proven` when it first does.
    async fn run(self, ticket: &mut Ticket, proven: impl FnOnce()) -> std::io::Result<bool> {
        // A body of exactly k blocks ends with an empty block k+1.
        let blocks = self.body.len() as u64 / self.blksize as u64 + 1;
        // One send buffer and one timer for the whole transfer: a block
        // costs no allocation, and moving a timer's deadline later takes no
        // lock, where a new timer per window took two.
        let mut out = Vec::with_capacity(4 + self.blksize);
        let timer = tokio::time::sleep(self.timeout * (MAX_RETRIES + 1));
        tokio::pin!(timer);
        // The first answer is the OACK (acknowledged by ACK 0), or DATA 1
        // when no option is acknowledged: one datagram either way, since a
        // window of more than one block is only ever granted by an OACK.
        let first_block = if self.oack.is_empty() {
            packet::write_data(&mut out, 1, self.block(1));
            1
        } else {
            out = packet::oack(&self.oack).into();
            0
        };
        if !self.first_answer(&out, first_block, &mut ticket.signals, timer.as_mut()).await? {
            return Ok(false);
        }
        // The peer receives at its address: from now on it is a real
        // client, with the usual retransmissions, and never evicted.
        ticket.prove();
        proven();
        // `next` is the first block not yet acknowledged (absolute number).
        let mut next: u64 = first_block + 1;
        while next <= blocks {
            let last = (next + u64::from(self.window) - 1).min(blocks);
            match self.send_window(next..=last, &mut out, timer.as_mut()).await? {
                Some(acked) => next = acked + 1,
                None => break,
            }
        }
        Ok(true)
    }

    /// Sends the first answer to a peer that has acknowledged nothing yet.
    /// Its source may be forged, so it is never retransmitted on a timeout
    /// (that would make us an amplifier: one small forged request, six
    /// datagrams to a victim); it is sent again only for each repeat of the
    /// request (`signals`: one datagram out per request in), which is what
    /// an RFC 1350 client whose answer was lost does. Waits for its ACK as
    /// long as retransmissions would have lasted, timeout × (retries + 1);
    /// says whether it came (`deadline` is set to that). An evicted
    /// transfer (its signals ended) stops.
    async fn first_answer(
        &self,
        datagram: &[u8],
        block: u64,
        signals: &mut mpsc::Receiver<()>,
        mut deadline: std::pin::Pin<&mut tokio::time::Sleep>,
    ) -> std::io::Result<bool> {
        self.socket.send(datagram).await?;
        let mut buf = [0u8; 1024];
        loop {
            tokio::select! {
                r = self.socket.recv(&mut buf) => {
                    let Ok(len) = r else { return Ok(false) };
                    match Packet::parse(&buf[..len]) {
                        Some(Packet::Ack(n)) if u64::from(n) == block => return Ok(true),
                        Some(Packet::Error { .. }) => return Ok(false),
                        _ => {}
                    }
                }
                signal = signals.recv() => match signal {
                    Some(()) => {
                        self.socket.send(datagram).await?;
                    }
                    None => return Ok(false),
                },
                () = deadline.as_mut() => return Ok(false),
            }
        }
    }

    /// Sends blocks `window` until an ACK moves the window, resending them
    /// on each timeout, at most [`MAX_RETRIES`] times: returns the highest
    /// block acknowledged, or `None` when the client gave up or went silent.
    async fn send_window(
        &self,
        window: std::ops::RangeInclusive<u64>,
        out: &mut Vec<u8>,
        mut timer: std::pin::Pin<&mut tokio::time::Sleep>,
    ) -> std::io::Result<Option<u64>> {
        let mut buf = [0u8; 1024];
        for _ in 0..=MAX_RETRIES {
            for n in window.clone() {
                packet::write_data(out, n as u16, self.block(n));
                self.socket.send(out).await?;
            }
            timer.as_mut().reset(tokio::time::Instant::now() + self.timeout);
            loop {
                let len = tokio::select! {
                    r = self.socket.recv(&mut buf) => match r {
                        Ok(len) => len,
                        Err(_) => return Ok(None),
                    },
                    () = timer.as_mut() => break, // timeout: resend the window
                };
                match Packet::parse(&buf[..len]) {
                    Some(Packet::Ack(n)) => {
                        // Block numbers are 16 bits and wrap; find the
                        // acknowledged block within this window.
                        if let Some(acked) = window.clone().rev().find(|b| *b as u16 == n) {
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
