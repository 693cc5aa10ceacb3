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
    /// For distinct counting: fingerprints of what struck in this window
    /// (at most `threshold + 1`: the ban needs no more).
    seen: Vec<u64>,
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
        self.strike_n(key, 1, now)
    }

    /// Counts `n` strikes against `key` at once (a file with `n` refused rows).
    pub fn strike_n(&self, key: &K, n: u32, now: Instant) -> Strike {
        self.with_entry(key, now, |e| {
            e.strikes = e.strikes.saturating_add(n);
            true
        })
    }

    /// Counts a strike for `item` against `key` unless `item` struck in
    /// this window already: what is counted is distinct items (unknown
    /// MACs from one address), not requests.
    pub fn strike_distinct(&self, key: &K, item: u64, now: Instant) -> Strike {
        let cap = self.policy.threshold as usize + 1;
        self.with_entry(key, now, |e| {
            if e.seen.contains(&item) {
                return false;
            }
            if e.seen.len() < cap {
                e.seen.push(item);
            }
            e.strikes = e.strikes.saturating_add(1);
            true
        })
    }

    /// Takes back `item`'s strike (it proved itself after all), unless the
    /// ban has already fallen.
    pub fn forgive_item(&self, key: &K, item: u64) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = entries.get_mut(key).filter(|e| e.banned_until.is_none()) {
            if let Some(i) = e.seen.iter().position(|s| *s == item) {
                e.seen.swap_remove(i);
                e.strikes = e.strikes.saturating_sub(1);
            }
        }
    }

    /// Takes back one strike from `key` (it was counted before it was
    /// known to be good), unless the ban has already fallen.
    pub fn unstrike(&self, key: &K) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = entries.get_mut(key).filter(|e| e.banned_until.is_none()) {
            e.strikes = e.strikes.saturating_sub(1);
        }
    }

    /// How many more strikes `key` may take in this window before a ban
    /// (0 while banned).
    pub fn remaining(&self, key: &K, now: Instant) -> u32 {
        let p = self.policy;
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        match entries.get(key) {
            None => p.threshold,
            Some(e) if e.banned_until.is_some_and(|until| until > now) => 0,
            Some(e) if e.banned_until.is_some() || now.duration_since(e.window_start) > p.window => p.threshold,
            Some(e) => p.threshold.saturating_sub(e.strikes),
        }
    }

    /// Runs `count` on `key`'s entry (its window and an expired ban reset
    /// first); bans when the count passes the threshold.
    fn with_entry(&self, key: &K, now: Instant, count: impl FnOnce(&mut Entry) -> bool) -> Strike {
        let p = self.policy;
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if !entries.contains_key(key) && entries.len() >= p.capacity {
            evict(&mut entries, now, p);
        }
        let e =
            entries.entry(key.clone()).or_insert(Entry { window_start: now, strikes: 0, banned_until: None, seen: Vec::new() });
        if e.banned_until.is_some_and(|until| until <= now) {
            e.banned_until = None;
            e.strikes = 0;
            e.window_start = now;
            e.seen.clear();
        }
        if now.duration_since(e.window_start) > p.window {
            e.window_start = now;
            e.strikes = 0;
            e.seen.clear();
        }
        if !count(e) {
            return Strike::Counted;
        }
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
    fn distinct_items_strike_once_and_can_be_forgiven() {
        let t = StrikeTable::new(policy(100));
        let t0 = Instant::now();
        for _ in 0..10 {
            assert_eq!(t.strike_distinct(&"ip", 1, t0), Strike::Counted, "the same item again is not a new strike");
        }
        assert_eq!(t.remaining(&"ip", t0), 2);
        t.forgive_item(&"ip", 1);
        assert_eq!(t.remaining(&"ip", t0), 3);
        for item in 2..5 {
            assert_eq!(t.strike_distinct(&"ip", item, t0), Strike::Counted);
        }
        assert_eq!(t.strike_distinct(&"ip", 5, t0), Strike::Banned);
        assert_eq!(t.remaining(&"ip", t0), 0);
        t.forgive_item(&"ip", 5);
        assert!(t.banned(&"ip", t0).is_some(), "a ban is not taken back");
    }

    #[test]
    fn several_strikes_at_once() {
        let t = StrikeTable::new(policy(100));
        let t0 = Instant::now();
        assert_eq!(t.strike_n(&"user", 3, t0), Strike::Counted);
        assert_eq!(t.remaining(&"user", t0), 0);
        assert_eq!(t.strike_n(&"user", 1, t0), Strike::Banned);
        assert_eq!(t.remaining(&"user", t0 + Duration::from_secs(301)), 3, "after the ban the window starts over");
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
