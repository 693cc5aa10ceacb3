//! The transfers' own sockets, kept for the next transfer.
//!
//! Each transfer sends from its own port (its TID, RFC 1350). Opening a
//! socket, registering it with the reactor, and closing it again was an
//! eighth of the server's CPU at 20,000 transfers a second, so a finished
//! transfer's socket is kept for the next one. Reuse must not let one
//! transfer's datagrams reach another:
//! - a kept socket is connected to its next peer before anything is sent,
//!   so the kernel drops datagrams from any other source (the last peer's
//!   late duplicates among them);
//! - what reached it before that is read and dropped, with any ICMP error
//!   left pending;
//! - it is never given to the peer (address and port) it served last: a
//!   late duplicate from that same pair of TIDs could not be told apart.
//!
//! A socket is bound to a port of its own choosing. Bound to the
//! unspecified address, it is disconnected before its next connect, which
//! keeps such a port but forgets the source address the last route chose:
//! the next peer may be reached by another route, and its config carries
//! the address it reached us on. Bound to one address, connecting it anew
//! is enough.
//!
//! Kept sockets count against the TFTP descriptor budget: a socket is kept
//! only while the transfers in flight and the kept sockets together are
//! fewer than `max_transfers`.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use rand::Rng;
use socket2::{Domain, Socket, Type};
use tokio::net::UdpSocket;

use super::slots::Slots;

/// Kept sockets at most, whatever the budget: enough for the transfers a
/// busy site runs at once.
const KEPT_MAX: usize = 256;

/// The ports a kept socket is bound to: the dynamic range (RFC 6335).
const PORTS: std::ops::RangeInclusive<u16> = 49152..=65535;

/// Datagrams read and dropped at most when a kept socket is taken: only
/// its new peer can reach it once connected, and it has sent nothing yet.
const DRAIN_MAX: usize = 64;

pub struct TransferSockets {
    /// The address the server listens on: each socket is bound to it.
    ip: IpAddr,
    /// It, as a config names it, when it is one address (not "any").
    host: Option<Arc<str>>,
    kept: Mutex<Vec<Kept>>,
    slots: Arc<Slots>,
    max_transfers: usize,
}

struct Kept {
    socket: UdpSocket,
    last_peer: SocketAddr,
}

/// A socket connected to one transfer's peer; back to the pool when dropped.
pub struct Lease<'a> {
    socket: Option<UdpSocket>,
    peer: SocketAddr,
    pool: &'a TransferSockets,
    /// Bound to a port of its own: only such a socket can be disconnected
    /// and keep its port.
    keepable: bool,
}

impl TransferSockets {
    pub fn new(ip: IpAddr, slots: Arc<Slots>, max_transfers: usize) -> Self {
        let host = (!ip.is_unspecified()).then(|| host_of(ip).into());
        TransferSockets { ip, host, kept: Mutex::new(Vec::new()), slots, max_transfers }
    }

    /// A socket connected to `peer`, kept or new.
    pub async fn take(&self, peer: SocketAddr) -> io::Result<Lease<'_>> {
        let kept = {
            let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
            // The most recently used first: its cache lines are warm.
            let at = kept.iter().rposition(|k| k.last_peer != peer);
            at.map(|i| kept.swap_remove(i).socket)
        };
        let (socket, keepable) = match kept {
            Some(socket) => {
                // Bound to the unspecified address, it must forget the
                // source address the last peer's route chose; bound to one
                // address, connecting it anew is enough.
                if self.host.is_none() {
                    rustix::net::connect_unspec(&socket)?;
                }
                (socket, true)
            }
            None => self.open()?,
        };
        socket.connect(peer).await?;
        drain(&socket);
        Ok(Lease { socket: Some(socket), peer, pool: self, keepable })
    }

    /// A new socket on a port of its own choosing; on the rare host where
    /// a few random ports are all taken, on one the kernel chooses (and
    /// then it is not kept).
    fn open(&self) -> io::Result<(UdpSocket, bool)> {
        let socket = Socket::new(Domain::for_address(SocketAddr::new(self.ip, 0)), Type::DGRAM, None)?;
        socket.set_nonblocking(true)?;
        let mut rng = rand::thread_rng();
        let mut keepable = false;
        for _ in 0..8 {
            match socket.bind(&SocketAddr::new(self.ip, rng.gen_range(PORTS)).into()) {
                Ok(()) => {
                    keepable = true;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => continue,
                Err(e) => return Err(e),
            }
        }
        if !keepable {
            socket.bind(&SocketAddr::new(self.ip, 0).into())?;
        }
        Ok((UdpSocket::from_std(socket.into())?, keepable))
    }

    fn keep(&self, socket: UdpSocket, last_peer: SocketAddr) {
        let in_flight = self.slots.in_flight();
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() < KEPT_MAX && in_flight + kept.len() < self.max_transfers {
            kept.push(Kept { socket, last_peer });
        }
    }

    #[cfg(test)]
    fn kept(&self) -> usize {
        self.kept.lock().unwrap().len()
    }
}

/// Reads and drops what is queued, and clears a pending error. These are
/// real system calls: tokio's cached readiness may not know yet of a
/// datagram that came while the socket was kept.
fn drain(socket: &UdpSocket) {
    let raw = socket2::SockRef::from(socket);
    let _ = raw.take_error();
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 64];
    for _ in 0..DRAIN_MAX {
        match raw.recv(&mut buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            // A datagram (or an error it left) is dropped: read on.
            _ => {}
        }
    }
}

impl Lease<'_> {
    /// The address the peer reaches us on, as its config names it: the
    /// listening address, or the one the route to the peer chose.
    pub fn host(&self) -> String {
        if let Some(host) = &self.pool.host {
            return host.to_string();
        }
        self.local_addr().map_or_else(|_| "localhost".into(), |a| host_of(a.ip()))
    }
}

/// An address as a URL's host: IPv6 in brackets.
fn host_of(ip: IpAddr) -> String {
    match ip {
        IpAddr::V6(ip) => format!("[{ip}]"),
        IpAddr::V4(ip) => ip.to_string(),
    }
}

impl std::ops::Deref for Lease<'_> {
    type Target = UdpSocket;
    fn deref(&self) -> &UdpSocket {
        self.socket.as_ref().expect("a lease holds its socket until dropped")
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(socket) = self.socket.take().filter(|_| self.keepable) {
            self.pool.keep(socket, self.peer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::slots::SlotLimits;
    use super::*;
    use std::net::Ipv4Addr;

    fn pool(max_transfers: usize) -> TransferSockets {
        let slots = Slots::new(SlotLimits { max: max_transfers, per_source: max_transfers });
        TransferSockets::new(Ipv4Addr::LOCALHOST.into(), slots, max_transfers)
    }

    async fn peer() -> UdpSocket {
        UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap()
    }

    #[tokio::test]
    async fn a_kept_socket_serves_another_peer_and_drops_what_its_last_peer_sent() {
        let pool = pool(16);
        let (a, b) = (peer().await, peer().await);
        let port = {
            let lease = pool.take(a.local_addr().unwrap()).await.unwrap();
            lease.send(b"to a").await.unwrap();
            let mut buf = [0u8; 16];
            let (n, from) = a.recv_from(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], b"to a");
            from.port()
        };
        assert_eq!(pool.kept(), 1);
        // A late duplicate from the last peer, after its transfer ended.
        a.send_to(b"late", ("127.0.0.1", port)).await.unwrap();
        let lease = pool.take(b.local_addr().unwrap()).await.unwrap();
        assert_eq!(lease.local_addr().unwrap().port(), port, "the kept socket is reused");
        // And one more, now that the socket is connected to `b`.
        a.send_to(b"later", ("127.0.0.1", port)).await.unwrap();
        b.send_to(b"from b", ("127.0.0.1", port)).await.unwrap();
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), lease.recv(&mut buf)).await.unwrap().unwrap();
        assert_eq!(&buf[..n], b"from b", "only the new peer's datagram reaches the transfer");
    }

    #[tokio::test]
    async fn disconnected_a_kept_socket_forgets_its_source_address_and_keeps_its_port() {
        let slots = Slots::new(SlotLimits { max: 4, per_source: 4 });
        let pool = TransferSockets::new(Ipv4Addr::UNSPECIFIED.into(), slots, 4);
        let a = peer().await;
        let used = pool.take(a.local_addr().unwrap()).await.unwrap().local_addr().unwrap();
        assert_eq!(used.ip(), Ipv4Addr::LOCALHOST, "connected, it had the route's source address");
        let kept = pool.kept.lock().unwrap().pop().unwrap().socket;
        rustix::net::connect_unspec(&kept).unwrap();
        assert_eq!(kept.local_addr().unwrap(), SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), used.port()));
    }

    #[tokio::test]
    async fn bound_to_any_address_a_kept_socket_serves_the_next_peer_from_its_route() {
        let slots = Slots::new(SlotLimits { max: 4, per_source: 4 });
        let pool = TransferSockets::new(Ipv4Addr::UNSPECIFIED.into(), slots, 4);
        let (a, b) = (peer().await, peer().await);
        let first = pool.take(a.local_addr().unwrap()).await.unwrap().local_addr().unwrap();
        let lease = pool.take(b.local_addr().unwrap()).await.unwrap();
        assert_eq!(lease.local_addr().unwrap(), first, "the kept socket, connected from its route's address");
        assert_eq!(lease.host(), "127.0.0.1");
        b.send_to(b"ack", first).await.unwrap();
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), lease.recv(&mut buf)).await.unwrap().unwrap();
        assert_eq!(&buf[..n], b"ack");
    }

    #[tokio::test]
    async fn a_peer_never_gets_the_socket_it_was_served_from_last() {
        let pool = pool(16);
        let a = peer().await;
        let first = pool.take(a.local_addr().unwrap()).await.unwrap().local_addr().unwrap();
        let second = pool.take(a.local_addr().unwrap()).await.unwrap().local_addr().unwrap();
        assert_ne!(first.port(), second.port());
    }

    #[tokio::test]
    async fn kept_sockets_stay_within_the_transfer_budget() {
        let pool = pool(2);
        let (a, b, c) = (peer().await, peer().await, peer().await);
        let leases = [
            pool.take(a.local_addr().unwrap()).await.unwrap(),
            pool.take(b.local_addr().unwrap()).await.unwrap(),
            pool.take(c.local_addr().unwrap()).await.unwrap(),
        ];
        drop(leases);
        assert_eq!(pool.kept(), 2);
    }

    #[tokio::test]
    async fn a_pending_error_from_the_last_peer_does_not_reach_the_next_transfer() {
        let pool = pool(16);
        let gone = peer().await.local_addr().unwrap(); // closed: its port answers ICMP unreachable
        {
            let lease = pool.take(gone).await.unwrap();
            lease.send(b"x").await.unwrap();
            // Let the ICMP error arrive and be left pending on the socket.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let b = peer().await;
        let lease = pool.take(b.local_addr().unwrap()).await.unwrap();
        b.send_to(b"ack", lease.local_addr().unwrap()).await.unwrap();
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), lease.recv(&mut buf)).await.unwrap().unwrap();
        assert_eq!(&buf[..n], b"ack");
    }
}
