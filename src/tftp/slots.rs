//! The TFTP transfers in flight, bounded: at most `per_source` from one
//! address and at most `max` in all (what the setting and the descriptor
//! budget allow; each transfer holds its own socket).
//!
//! UDP sources can be forged, and a forged requester never acknowledges
//! what we send it. So a transfer is *unproven* until its peer has
//! acknowledged something (the OACK or a block), and when every slot is
//! taken an unproven transfer is ended to make room: of the source network
//! (IPv4 /24, IPv6 /64) with the most unproven transfers, the one that has
//! waited longest for its first ACK. A real phone acknowledges within
//! milliseconds, and a flood's networks hold many more unproven transfers
//! than a site's, so the one that goes is a forged or dead peer's, not a
//! phone's caught mid-answer by a burst. Only when every transfer is proven
//! is a new request refused.
//!
//! The table is touched three times per transfer (admitted, proven,
//! released) and never per packet.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use crate::model::network_of;

/// A transfer is named by its client's address and the file it asked for
/// (not the address alone: a client's next socket may get the port of its
/// last).
pub type Key = (SocketAddr, Arc<str>);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotLimits {
    /// Transfers in flight in all.
    pub max: usize,
    /// Transfers in flight from one client address.
    pub per_source: usize,
}

/// What becomes of a read request.
#[derive(Debug)]
pub enum Admission {
    /// A new transfer: run it while holding the ticket. `evicted` is the
    /// unproven transfer ended to make room for it, if any.
    Start { ticket: Ticket, evicted: Option<Key> },
    /// The request repeats a transfer still waiting for its first ACK (the
    /// client's first answer was lost, or it is forged): that transfer was
    /// told to send its first answer again, once.
    Repeat,
    /// The request repeats a transfer under way: nothing to do.
    Duplicate,
    /// Its address has `per_source` transfers in flight.
    SourceFull,
    /// Every slot is taken by a transfer whose peer has acknowledged.
    Full,
}

/// A transfer's hold on its slot; dropping it frees the slot.
#[derive(Debug)]
pub struct Ticket {
    slots: Arc<Slots>,
    key: Key,
    id: u64,
    /// Until the transfer is proven: `Some(())` for each repeated request
    /// (at most one waits), and the end of the channel (`None`) when the
    /// transfer was evicted and must end.
    pub signals: mpsc::Receiver<()>,
}

impl Ticket {
    /// The peer acknowledged: never evicted from now on, and repeats of its
    /// request are ignored.
    pub fn prove(&self) {
        let mut table = self.slots.lock();
        if let Some(entry) = table.transfers.get_mut(&self.key).filter(|e| e.id == self.id) {
            entry.signals = None;
            table.forget_unproven(self.id);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut table = self.slots.lock();
        // An evicted transfer's entry is gone already (maybe replaced by a
        // new transfer of the same key, which must stay).
        if table.transfers.get(&self.key).is_some_and(|e| e.id == self.id) {
            table.remove(&self.key);
        }
    }
}

#[derive(Debug)]
pub struct Slots {
    limits: SlotLimits,
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    transfers: HashMap<Key, Entry>,
    by_source: HashMap<IpAddr, usize>,
    /// Unproven transfers by id: ids grow, so the first waited longest.
    unproven: BTreeMap<u64, Key>,
    /// How many of them each source network has.
    unproven_by_network: HashMap<IpAddr, usize>,
    next_id: u64,
}

#[derive(Debug)]
struct Entry {
    id: u64,
    /// The transfer's signals while it is unproven; dropped (which ends an
    /// unproven transfer) when it is evicted.
    signals: Option<mpsc::Sender<()>>,
}

impl Table {
    fn add_unproven(&mut self, id: u64, key: Key) {
        *self.unproven_by_network.entry(network_of(key.0.ip())).or_default() += 1;
        self.unproven.insert(id, key);
    }

    fn forget_unproven(&mut self, id: u64) {
        if let Some(key) = self.unproven.remove(&id) {
            let net = network_of(key.0.ip());
            if let Some(n) = self.unproven_by_network.get_mut(&net) {
                *n -= 1;
                if *n == 0 {
                    self.unproven_by_network.remove(&net);
                }
            }
        }
    }

    /// The unproven transfer to end for room: the longest-waiting one of
    /// the network with the most.
    fn victim(&self) -> Option<Key> {
        let most = self.unproven_by_network.values().max()?;
        let of_most = |k: &&Key| self.unproven_by_network.get(&network_of(k.0.ip())) == Some(most);
        self.unproven.values().find(of_most).cloned()
    }

    fn remove(&mut self, key: &Key) {
        let Some(entry) = self.transfers.remove(key) else { return };
        self.forget_unproven(entry.id);
        if let Some(n) = self.by_source.get_mut(&key.0.ip()) {
            *n -= 1;
            if *n == 0 {
                self.by_source.remove(&key.0.ip());
            }
        }
    }
}

impl Slots {
    pub fn new(limits: SlotLimits) -> Arc<Slots> {
        let limits = SlotLimits { max: limits.max.max(1), per_source: limits.per_source.max(1) };
        Arc::new(Slots { limits, table: Mutex::default() })
    }

    /// Transfers holding a slot now.
    pub fn in_flight(&self) -> usize {
        self.lock().transfers.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Decides what becomes of a read request for `key`.
    pub fn admit(self: &Arc<Self>, key: Key) -> Admission {
        let mut table = self.lock();
        if let Some(entry) = table.transfers.get(&key) {
            return match &entry.signals {
                Some(signals) => {
                    // One waiting resend at most: one datagram out per
                    // request in, never more.
                    let _ = signals.try_send(());
                    Admission::Repeat
                }
                None => Admission::Duplicate,
            };
        }
        if table.by_source.get(&key.0.ip()).copied().unwrap_or(0) >= self.limits.per_source {
            return Admission::SourceFull;
        }
        let mut evicted = None;
        if table.transfers.len() >= self.limits.max {
            let Some(victim) = table.victim() else { return Admission::Full };
            // Dropping its entry drops its signal sender: its task ends.
            table.remove(&victim);
            evicted = Some(victim);
        }
        let id = table.next_id;
        table.next_id += 1;
        let (tx, rx) = mpsc::channel(1);
        table.transfers.insert(key.clone(), Entry { id, signals: Some(tx) });
        table.add_unproven(id, key.clone());
        *table.by_source.entry(key.0.ip()).or_default() += 1;
        Admission::Start { ticket: Ticket { slots: self.clone(), key, id, signals: rx }, evicted }
    }

    /// Transfers in flight.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().transfers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc::error::TryRecvError;

    fn key(ip: [u8; 4], port: u16, file: &str) -> Key {
        (SocketAddr::from((ip, port)), Arc::from(file))
    }

    fn start(slots: &Arc<Slots>, k: Key) -> (Ticket, Option<Key>) {
        match slots.admit(k) {
            Admission::Start { ticket, evicted } => (ticket, evicted),
            other => panic!("not started: {other:?}"),
        }
    }

    #[test]
    fn the_oldest_unproven_transfer_makes_room() {
        let slots = Slots::new(SlotLimits { max: 3, per_source: 10 });
        let (mut a, _) = start(&slots, key([10, 0, 0, 1], 1000, "a"));
        let (mut b, _) = start(&slots, key([10, 0, 0, 2], 1000, "b"));
        let (mut c, _) = start(&slots, key([10, 0, 0, 3], 1000, "c"));
        // The oldest, a, has acknowledged: b is now the one waiting longest.
        a.prove();
        let (d, evicted) = start(&slots, key([10, 0, 0, 4], 1000, "d"));
        assert_eq!(evicted, Some(key([10, 0, 0, 2], 1000, "b")));
        assert_eq!(slots.len(), 3);
        // b's task learns it must end; its ticket's drop then frees nothing
        // of anyone else's.
        assert_eq!(b.signals.try_recv(), Err(TryRecvError::Disconnected));
        drop(b);
        assert_eq!(slots.len(), 3);
        let (e, evicted) = start(&slots, key([10, 0, 0, 5], 1000, "e"));
        assert_eq!(evicted, Some(key([10, 0, 0, 3], 1000, "c")));
        assert_eq!(c.signals.try_recv(), Err(TryRecvError::Disconnected));
        // Proven transfers are never evicted: with a, d and e proven, a new
        // request is refused.
        d.prove();
        e.prove();
        assert!(matches!(slots.admit(key([10, 0, 0, 6], 1000, "f")), Admission::Full));
        assert_eq!(a.signals.try_recv(), Err(TryRecvError::Disconnected), "a proven transfer's signals are dropped");
    }

    #[test]
    fn a_flood_loses_its_own_transfers_before_a_phones() {
        let slots = Slots::new(SlotLimits { max: 4, per_source: 10 });
        let (_phone, _) = start(&slots, key([192, 0, 2, 10], 1000, "phone"));
        let flood = |i: u8| key([198, 51, 100, i], 1000, "x");
        let mut held = vec![start(&slots, flood(1)).0, start(&slots, flood(2)).0, start(&slots, flood(3)).0];
        // The phone waited longest, but the flood's network has three.
        for i in 4..10 {
            let (t, evicted) = start(&slots, flood(i));
            assert_eq!(evicted.map(|k| k.0.ip()), Some(IpAddr::from([198, 51, 100, i - 3])), "request {i}");
            held.push(t);
        }
    }

    #[test]
    fn full_of_proven_transfers_refuses() {
        let slots = Slots::new(SlotLimits { max: 2, per_source: 10 });
        let (a, _) = start(&slots, key([10, 0, 0, 1], 1, "a"));
        let (b, _) = start(&slots, key([10, 0, 0, 2], 1, "b"));
        a.prove();
        b.prove();
        assert!(matches!(slots.admit(key([10, 0, 0, 3], 1, "c")), Admission::Full));
        drop(a);
        let (_c, evicted) = start(&slots, key([10, 0, 0, 3], 1, "c"));
        assert_eq!(evicted, None);
    }

    #[test]
    fn repeats_signal_an_unproven_transfer_once_and_are_ignored_once_proven() {
        let slots = Slots::new(SlotLimits { max: 8, per_source: 8 });
        let k = key([10, 0, 0, 1], 1000, "a");
        let (mut t, _) = start(&slots, k.clone());
        for _ in 0..3 {
            assert!(matches!(slots.admit(k.clone()), Admission::Repeat));
        }
        // Three repeats, one resend waiting: never more out than in.
        assert_eq!(t.signals.try_recv(), Ok(()));
        assert_eq!(t.signals.try_recv(), Err(TryRecvError::Empty));
        t.prove();
        assert!(matches!(slots.admit(k.clone()), Admission::Duplicate));
        // Another file, or another port, is another transfer.
        let (_other_file, _) = start(&slots, key([10, 0, 0, 1], 1000, "b"));
        let (_other_port, _) = start(&slots, key([10, 0, 0, 1], 1001, "a"));
        drop(t);
        let (_again, _) = start(&slots, k);
    }

    #[test]
    fn one_source_has_its_share_and_gets_it_back() {
        let slots = Slots::new(SlotLimits { max: 100, per_source: 2 });
        let (a, _) = start(&slots, key([10, 0, 0, 1], 1, "a"));
        let (_b, _) = start(&slots, key([10, 0, 0, 1], 2, "a"));
        assert!(matches!(slots.admit(key([10, 0, 0, 1], 3, "a")), Admission::SourceFull));
        let (_other, _) = start(&slots, key([10, 0, 0, 2], 3, "a"));
        drop(a);
        let (_c, _) = start(&slots, key([10, 0, 0, 1], 3, "a"));
        assert_eq!(slots.len(), 3);
    }

    #[test]
    fn an_evicted_key_can_start_again_without_its_old_ticket_freeing_the_new_one() {
        let slots = Slots::new(SlotLimits { max: 1, per_source: 10 });
        let k = key([10, 0, 0, 1], 1, "a");
        let (old, _) = start(&slots, k.clone());
        let (_other, evicted) = start(&slots, key([10, 0, 0, 2], 1, "b"));
        assert_eq!(evicted, Some(k.clone()));
        let (new, evicted) = start(&slots, k.clone());
        assert!(evicted.is_some());
        drop(old);
        assert_eq!(slots.len(), 1);
        assert!(matches!(slots.admit(k), Admission::Repeat));
        drop(new);
        assert_eq!(slots.len(), 0);
    }
}
