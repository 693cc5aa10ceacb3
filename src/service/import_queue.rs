//! The import queue. An import holds a database transaction, a table of the
//! keys it has seen and, while it writes, the database's write lock (SQLite)
//! for as long as a whole site takes: so imports run at most
//! `concurrency` at once in all, and one at a time per domain, so that
//! each is checked against what the one before it wrote (two files naming
//! the same new extensions would otherwise both be checked as new, and the
//! second would fail at its write, or interleave with the first).
//!
//! An import takes its place ([`ImportQueue::admit`]) before its file is
//! read: the places count files being uploaded and files spooled on disk
//! waiting for their turn, so what waits is bounded (in disk as well as in
//! number), and an import beyond the cap is refused at once (503) instead
//! of being read first. A waiting import holds only its place and its
//! spooled file; its turn ([`Ticket::turn`]) comes when its domain's
//! previous import is done and one of the slots is free, first come first
//! served (tokio's mutex and semaphore are fair).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedMutexGuard, OwnedSemaphorePermit, Semaphore};

/// How many imports run and wait.
#[derive(Clone, Copy, Debug)]
pub struct ImportLimits {
    /// Imports that check or write at once, over all domains (at least 1).
    pub concurrency: usize,
    /// Imports that may wait for their turn (being uploaded, or spooled);
    /// one more is refused.
    pub waiting: usize,
}

impl Default for ImportLimits {
    fn default() -> Self {
        ImportLimits { concurrency: 2, waiting: 16 }
    }
}

/// Shared by every front end of a process (the API and the UI through the
/// one `Service`); cheap to clone.
#[derive(Clone)]
pub struct ImportQueue {
    inner: Arc<Inner>,
}

struct Inner {
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_waiting: usize,
    /// One lock per domain with an import admitted; entries nobody holds
    /// are dropped at the next admission.
    tenants: Mutex<HashMap<i64, Arc<tokio::sync::Mutex<()>>>>,
}

/// A place in the queue, counted as waiting until it becomes a [`Turn`] or
/// is dropped (an upload that failed, a client that went away).
pub struct Ticket {
    inner: Arc<Inner>,
    tenant: Arc<tokio::sync::Mutex<()>>,
    pub domain_id: i64,
}

/// An import's turn: its domain's lock and one slot, until dropped.
pub struct Turn {
    _tenant: OwnedMutexGuard<()>,
    _slot: Option<OwnedSemaphorePermit>,
}

impl ImportQueue {
    pub fn new(limits: ImportLimits) -> Self {
        ImportQueue {
            inner: Arc::new(Inner {
                slots: Arc::new(Semaphore::new(limits.concurrency.max(1))),
                waiting: AtomicUsize::new(0),
                max_waiting: limits.waiting,
                tenants: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// A place for an import into `domain_id`, or `None` when as many
    /// imports as allowed are already waiting.
    pub fn admit(&self, domain_id: i64) -> Option<Ticket> {
        let inner = &self.inner;
        inner.waiting.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < inner.max_waiting).then_some(n + 1)).ok()?;
        let mut tenants = inner.tenants.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        tenants.retain(|_, lock| Arc::strong_count(lock) > 1);
        let tenant = tenants.entry(domain_id).or_default().clone();
        Some(Ticket { inner: inner.clone(), tenant, domain_id })
    }

    /// Imports waiting for their turn now.
    pub fn waiting(&self) -> usize {
        self.inner.waiting.load(Ordering::Acquire)
    }
}

impl Ticket {
    /// Waits until the domain's previous import is done, then for a slot
    /// (in that order, so a domain's second import does not hold a slot
    /// while it waits for its first).
    pub async fn turn(self) -> Turn {
        let tenant = self.tenant.clone().lock_owned().await;
        // The semaphore is never closed, so this is always a permit.
        let slot = self.inner.slots.clone().acquire_owned().await.ok();
        drop(self);
        Turn { _tenant: tenant, _slot: slot }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.inner.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn queue(concurrency: usize, waiting: usize) -> ImportQueue {
        ImportQueue::new(ImportLimits { concurrency, waiting })
    }

    /// Whether `f` is still pending after the runtime has had a chance to run it.
    async fn pending<F: std::future::Future>(f: &mut std::pin::Pin<Box<F>>) -> bool {
        tokio::time::timeout(Duration::from_millis(20), f.as_mut()).await.is_err()
    }

    #[tokio::test]
    async fn places_are_capped_and_given_back() {
        let q = queue(1, 2);
        let (a, b) = (q.admit(1).unwrap(), q.admit(2).unwrap());
        assert!(q.admit(3).is_none(), "two places, both taken");
        drop(a);
        let c = q.admit(3).expect("a dropped ticket gives its place back");
        let turn = b.turn().await;
        assert_eq!(q.waiting(), 1, "a running import no longer waits");
        let d = q.admit(4).unwrap();
        drop((turn, c, d));
        assert_eq!(q.waiting(), 0);
    }

    #[tokio::test]
    async fn one_at_a_time_per_domain_and_a_cap_in_all() {
        let q = queue(2, 16);
        let first = q.admit(1).unwrap().turn().await;
        let mut same = Box::pin(q.admit(1).unwrap().turn());
        assert!(pending(&mut same).await, "the domain's second import waits for its first");
        let other = q.admit(2).unwrap().turn().await;
        let mut third = Box::pin(q.admit(3).unwrap().turn());
        assert!(pending(&mut third).await, "two slots, both taken");
        drop(other);
        let third = third.await;
        assert!(pending(&mut same).await);
        drop(first);
        let _same = same.await;
        drop(third);
        assert_eq!(q.inner.tenants.lock().unwrap().len(), 3, "entries stay until the next admission");
        let _t = q.admit(4).unwrap();
        assert_eq!(q.inner.tenants.lock().unwrap().len(), 2, "domain 1 (still running) and 4");
    }

    #[tokio::test]
    async fn a_cancelled_wait_gives_its_place_back() {
        let q = queue(1, 4);
        let running = q.admit(1).unwrap().turn().await;
        let mut waiting = Box::pin(q.admit(2).unwrap().turn());
        assert!(pending(&mut waiting).await);
        assert_eq!(q.waiting(), 1);
        drop(waiting);
        assert_eq!(q.waiting(), 0);
        drop(running);
        let _next = q.admit(2).unwrap().turn().await;
    }
}
