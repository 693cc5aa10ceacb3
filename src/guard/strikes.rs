//! A bounded table of strike counters with bans.
//!
//! A key (a user, a source IP) that strikes more than `threshold` times
//! within one `window` (counted from its first strike) is banned for `ban`.
//! The table never holds more than `capacity` keys, whatever an attacker
//! sends: when full, expired entries go first, then unbanned ones, then the
//! oldest bans; eviction runs in bulk so its cost is amortised.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug)]
pub struct StrikePolicy {
    /// Strikes allowed in one window; one more bans.
    pub threshold: u32,
    pub window: Duration,
    pub ban: Duration,
    pub capacity: usize,
}

#[derive(Debug)]
struct Entry {
    window_start: Instant,
    strikes: u32,
    banned_until: Option<Instant>,
}

/// What a strike led to.
#[derive(Debug, PartialEq, Eq)]
pub enum Strike {
    Counted,
    /// This strike started a ban (log it once).
    Banned,
}

pub struct StrikeTable<K> {
    policy: StrikePolicy,
    entries: Mutex<HashMap<K, Entry>>,
}

impl<K: Hash + Eq + Clone> StrikeTable<K> {
    pub fn new(policy: StrikePolicy) -> Self {
        StrikeTable { policy, entries: Mutex::new(HashMap::new()) }
    }

    /// The time left on `key`'s ban, if it is banned at `now`.
    pub fn banned(&self, key: &K, now: Instant) -> Option<Duration> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(key)
            .and_then(|e| e.banned_until)
            .and_then(|until| until.checked_duration_since(now))
            .filter(|left| !left.is_zero())
    }

    /// Counts one strike against `key`.
    pub fn strike(&self, key: &K, now: Instant) -> Strike {
        let p = self.policy;
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if !entries.contains_key(key) && entries.len() >= p.capacity {
            evict(&mut entries, now, p);
        }
        let e = entries.entry(key.clone()).or_insert(Entry { window_start: now, strikes: 0, banned_until: None });
        if e.banned_until.is_some_and(|until| until <= now) {
            e.banned_until = None;
            e.strikes = 0;
            e.window_start = now;
        }
        if now.duration_since(e.window_start) > p.window {
            e.window_start = now;
            e.strikes = 0;
        }
        e.strikes = e.strikes.saturating_add(1);
        if e.strikes > p.threshold && e.banned_until.is_none() {
            e.banned_until = Some(now + p.ban);
            Strike::Banned
        } else {
            Strike::Counted
        }
    }

    /// Forgets `key` (a successful login clears the user's count).
    pub fn forgive(&self, key: &K) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.get(key).is_some_and(|e| e.banned_until.is_none()) {
            entries.remove(key);
        }
    }

    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn evict<K: Hash + Eq>(entries: &mut HashMap<K, Entry>, now: Instant, p: StrikePolicy) {
    let live = |e: &Entry| match e.banned_until {
        Some(until) => until > now,
        None => now.duration_since(e.window_start) <= p.window,
    };
    entries.retain(|_, e| live(e));
    if entries.len() >= p.capacity {
        entries.retain(|_, e| e.banned_until.is_some());
    }
    if entries.len() >= p.capacity {
        // Everything left is banned: keep the newer half of the bans.
        let mut untils: Vec<Instant> = entries.values().filter_map(|e| e.banned_until).collect();
        untils.sort_unstable();
        let cut = untils[untils.len() / 2];
        entries.retain(|_, e| e.banned_until.is_some_and(|u| u > cut));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(capacity: usize) -> StrikePolicy {
        StrikePolicy { threshold: 3, window: Duration::from_secs(60), ban: Duration::from_secs(300), capacity }
    }

    #[test]
    fn bans_after_threshold_and_lifts_after_ban() {
        let t = StrikeTable::new(policy(100));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(t.strike(&"u", t0), Strike::Counted);
        }
        assert!(t.banned(&"u", t0).is_none());
        assert_eq!(t.strike(&"u", t0), Strike::Banned);
        assert_eq!(t.strike(&"u", t0), Strike::Counted, "a ban is announced once");
        assert!(t.banned(&"u", t0 + Duration::from_secs(299)).is_some());
        assert!(t.banned(&"u", t0 + Duration::from_secs(300)).is_none());
        assert!(t.banned(&"other", t0).is_none());
    }

    #[test]
    fn strikes_outside_the_window_do_not_add_up() {
        let t = StrikeTable::new(policy(100));
        let t0 = Instant::now();
        for i in 0..10 {
            assert_eq!(t.strike(&"u", t0 + Duration::from_secs(61 * i)), Strike::Counted);
        }
    }

    #[test]
    fn stays_bounded_under_a_flood_of_keys() {
        let t = StrikeTable::new(policy(1000));
        let t0 = Instant::now();
        for i in 0..100_000u32 {
            t.strike(&i, t0);
        }
        assert!(t.len() <= 1000);
        // A flood of banned keys is bounded too.
        for i in 0..5_000u32 {
            for _ in 0..4 {
                t.strike(&(1_000_000 + i), t0);
            }
        }
        assert!(t.len() <= 1000);
    }
}
