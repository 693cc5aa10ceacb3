//! The open connections of the HTTP and HTTPS listeners, bounded: at most
//! `per_source` from one address, at most `max` in all (what the
//! descriptor budget allows). A connection counts from accept to close,
//! TLS handshake included.
//!
//! When all `max` are taken, a new connection is not simply refused (then
//! an attacker holding idle connections from many addresses would lock
//! every phone out): an *idle* connection — no request in flight, waiting
//! for a header or the next keep-alive request — is closed to make room,
//! the one idle longest of a random sample. A real phone sends its request
//! within milliseconds of connecting and is busy while it is served, so
//! the connections that go are the ones that hold a socket and do nothing.
//! Sampling (as Redis's approximated LRU) keeps the request path free of
//! any shared bookkeeping: a request only stores two atomics of its own
//! connection.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rand::Rng;
use tokio::sync::Notify;

/// How many open connections a closing candidate is chosen from.
const SAMPLE: usize = 16;

#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// Open connections in all (HTTP and HTTPS together).
    pub max: usize,
    /// Open connections from one client address.
    pub per_source: usize,
}

/// One open connection, as its own task and the registry see it.
pub struct Connection {
    source: IpAddr,
    /// Its place in the registry's list, kept current on swap-removal.
    slot: AtomicU64,
    busy: AtomicBool,
    /// Already told to close: not picked again.
    closing: AtomicBool,
    /// When it last went idle (ms since the registry's epoch).
    idle_since: AtomicU64,
    /// Told to close (it was idle when room was needed).
    pub close: Notify,
    registry: Arc<Registry>,
}

impl Connection {
    /// A request has arrived: this connection is not to be closed for room.
    pub fn busy(&self) {
        self.busy.store(true, Ordering::Relaxed);
    }

    /// Its response has gone out: idle from now.
    pub fn idle(&self) {
        self.idle_since.store(self.registry.now_ms(), Ordering::Relaxed);
        self.busy.store(false, Ordering::Relaxed);
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.registry.remove(self);
    }
}

pub struct Registry {
    limits: ConnectionLimits,
    epoch: Instant,
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    list: Vec<std::sync::Weak<Connection>>,
    by_source: HashMap<IpAddr, usize>,
}

/// Why a connection was not let in.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// Its address has `per_source` open already.
    Source,
    /// All `max` are open and none of those sampled is idle.
    Full,
}

impl Registry {
    pub fn new(limits: ConnectionLimits) -> Arc<Registry> {
        Arc::new(Registry { limits, epoch: Instant::now(), open: Mutex::default() })
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Lets a connection from `source` in (closing an idle one for it when
    /// all are taken), or says why not.
    pub fn admit(self: &Arc<Self>, source: IpAddr) -> Result<Arc<Connection>, Refused> {
        // Connections upgraded while the lock is held are dropped after it
        // (declared first, dropped last): if one's task ended meanwhile, ours
        // is its last reference, and dropping it removes it, which takes the
        // lock: dropped under the lock, that was a deadlock of every accept.
        let sampled: Vec<Arc<Connection>>;
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let from_source = open.by_source.get(&source).copied().unwrap_or(0);
        if from_source >= self.limits.per_source {
            return Err(Refused::Source);
        }
        if open.list.len() >= self.limits.max {
            sampled = Self::sample(&open);
            let victim = sampled
                .iter()
                .filter(|c| !c.busy.load(Ordering::Relaxed) && !c.closing.load(Ordering::Relaxed))
                .min_by_key(|c| c.idle_since.load(Ordering::Relaxed))
                .ok_or(Refused::Full)?;
            // It leaves the list when its task drops it; until then we are
            // one over, which the descriptor reserve absorbs.
            victim.closing.store(true, Ordering::Relaxed);
            victim.close.notify_one();
        }
        let conn = Arc::new(Connection {
            source,
            slot: AtomicU64::new(open.list.len() as u64),
            busy: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            idle_since: AtomicU64::new(self.now_ms()),
            close: Notify::new(),
            registry: self.clone(),
        });
        open.list.push(Arc::downgrade(&conn));
        *open.by_source.entry(source).or_default() += 1;
        Ok(conn)
    }

    /// The open connections to choose a victim from: all of them when there
    /// are few, else a random sample. The caller drops them after the lock.
    fn sample(open: &Open) -> Vec<Arc<Connection>> {
        let mut rng = rand::thread_rng();
        let n = open.list.len();
        let picks: Vec<usize> = if n <= SAMPLE { (0..n).collect() } else { (0..SAMPLE).map(|_| rng.gen_range(0..n)).collect() };
        picks.into_iter().filter_map(|i| open.list[i].upgrade()).collect()
    }

    fn remove(&self, conn: &Connection) {
        // Dropped after the lock, for the reason `admit` gives.
        let moved_here: Option<Arc<Connection>>;
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        // Its slot is right unless the connection moved into it was itself
        // being dropped at that moment (it cannot be upgraded to be told):
        // then it is found by address, so no dead entry stays behind to
        // hold a place for ever.
        let me: *const Connection = conn;
        let hint = conn.slot.load(Ordering::Relaxed) as usize;
        let at = if open.list.get(hint).is_some_and(|w| std::ptr::eq(w.as_ptr(), me)) {
            Some(hint)
        } else {
            open.list.iter().position(|w| std::ptr::eq(w.as_ptr(), me))
        };
        if let Some(slot) = at {
            open.list.swap_remove(slot);
            moved_here = open.list.get(slot).and_then(|w| w.upgrade());
            if let Some(moved) = &moved_here {
                moved.slot.store(slot as u64, Ordering::Relaxed);
            }
        }
        if let Some(n) = open.by_source.get_mut(&conn.source) {
            *n -= 1;
            if *n == 0 {
                open.by_source.remove(&conn.source);
            }
        }
    }

    /// Connections open now.
    pub fn len(&self) -> usize {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, n])
    }

    #[test]
    fn one_source_cannot_take_more_than_its_share() {
        let r = Registry::new(ConnectionLimits { max: 100, per_source: 3 });
        let held: Vec<_> = (0..3).map(|_| r.admit(ip(1)).unwrap()).collect();
        assert_eq!(r.admit(ip(1)).err(), Some(Refused::Source));
        assert!(r.admit(ip(2)).is_ok(), "another source is let in");
        drop(held);
        assert!(r.admit(ip(1)).is_ok(), "closed connections free their source's share");
    }

    #[test]
    fn when_full_an_idle_connection_makes_room_and_a_busy_one_does_not() {
        let r = Registry::new(ConnectionLimits { max: 2, per_source: 10 });
        let a = r.admit(ip(1)).unwrap();
        let b = r.admit(ip(2)).unwrap();
        a.busy();
        b.busy();
        assert_eq!(r.admit(ip(3)).err(), Some(Refused::Full), "nothing idle to close");
        b.idle();
        let c = r.admit(ip(3)).expect("the idle one makes room");
        // `b` was told to close; the busy `a` was not.
        assert!(futures_lite::future::block_on(futures_lite::future::poll_once(b.close.notified())).is_some());
        assert!(futures_lite::future::block_on(futures_lite::future::poll_once(a.close.notified())).is_none());
        drop(b);
        assert_eq!(r.len(), 2);
        drop((a, c));
        assert!(r.is_empty());
    }

    /// Connections closing on several threads at once: a connection moved
    /// into a freed slot may be closing itself at that moment, and the
    /// registry must still end empty (a dead entry would hold a place for
    /// ever, and enough of them would refuse every new connection).
    #[test]
    fn concurrent_closes_leave_no_dead_entries() {
        let r = Registry::new(ConnectionLimits { max: 100_000, per_source: 100_000 });
        std::thread::scope(|s| {
            for t in 0..4u8 {
                let r = &r;
                s.spawn(move || {
                    for _ in 0..20_000 {
                        let held: Vec<_> = (0..4).map(|i| r.admit(ip(t * 4 + i)).unwrap()).collect();
                        drop(held);
                    }
                });
            }
        });
        assert!(r.is_empty(), "{} dead entries left", r.len());
    }

    #[test]
    fn slots_stay_right_through_swap_removal() {
        let r = Registry::new(ConnectionLimits { max: 1000, per_source: 1000 });
        let mut held: Vec<_> = (0..50).map(|i| r.admit(ip(i)).unwrap()).collect();
        for i in (0..50).step_by(3).rev() {
            held.swap_remove(i);
        }
        assert_eq!(r.len(), held.len());
        drop(held);
        assert!(r.is_empty());
    }
}
