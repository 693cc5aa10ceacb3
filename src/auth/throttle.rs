//! Failed-login limits, decided before any password is hashed.
//!
//! argon2 is made to be expensive (tens of milliseconds and ~19 MiB per
//! check), so an attacker must not be able to make us run many: every
//! guess is counted as a failure *before* it is hashed (and taken back if
//! it was right), so a source over its limit is refused without hashing,
//! and at most a few hashes run at once whatever arrives.
//!
//! Who gets refused is chosen so that an attacker elsewhere cannot lock a
//! user out:
//! - a source that fails too often (any users) is banned;
//! - a (user, source) pair that fails too often is banned, for that pair
//!   only;
//! - a user failing from many sources is *slowed down*: guesses from
//!   sources that have failed before are let through one per
//!   [`SLOW_DOWN_PERIOD`], while a clean source (no failure in the window)
//!   is always heard, so the right password from the user's own office
//!   still works during a distributed attack.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::guard::strikes::Strike;
use crate::guard::{StrikePolicy, StrikeTable};

/// More than 10 failed logins within 5 minutes bans the source, or the
/// (user, source) pair, for 5 minutes; a user with more than 10 from
/// anywhere is slowed down for as long.
pub const LOGIN_POLICY: StrikePolicy =
    StrikePolicy { threshold: 10, window: Duration::from_secs(5 * 60), ban: Duration::from_secs(5 * 60), capacity: 100_000 };

/// A user under attack is guessed at no faster than this from sources that
/// have failed before.
pub const SLOW_DOWN_PERIOD: Duration = Duration::from_secs(2);

/// A login waits at most this long for a free hashing slot, then is told
/// to come back (503): queueing without bound would only move the flood
/// into memory.
const HASH_WAIT: Duration = Duration::from_secs(10);

/// Who a login is for: a user that exists, or a name that does not (all
/// unknown names from one source count together).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct Pair {
    pub user: Option<i64>,
    pub source: IpAddr,
}

/// Why a login is refused before its password is checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Too many failures: come back after this long.
    Banned(Duration),
    /// Every hashing slot stayed busy.
    Busy,
}

pub struct LoginThrottle {
    by_source: StrikeTable<IpAddr>,
    by_pair: StrikeTable<Pair>,
    by_user: StrikeTable<i64>,
    slow_down: DefaultKeyedRateLimiter<i64>,
    hash_slots: Arc<Semaphore>,
}

/// A guess counted against its source and pair; [`Charged::refund`] takes
/// it back when the password was right.
#[must_use]
pub struct Charged {
    pair: Pair,
}

impl LoginThrottle {
    /// `hash_slots`: how many argon2 checks may run at once (the cores).
    pub fn new(hash_slots: usize) -> Self {
        let period = Quota::with_period(SLOW_DOWN_PERIOD).expect("a non-zero period");
        LoginThrottle {
            by_source: StrikeTable::new(LOGIN_POLICY),
            by_pair: StrikeTable::new(LOGIN_POLICY),
            by_user: StrikeTable::new(LOGIN_POLICY),
            slow_down: RateLimiter::keyed(period.allow_burst(NonZeroU32::MIN)),
            hash_slots: Arc::new(Semaphore::new(hash_slots.max(1))),
        }
    }

    /// Refuses at once a source that is banned.
    pub fn check_source(&self, source: IpAddr) -> Result<(), Refused> {
        self.by_source.banned(&source, Instant::now()).map_or(Ok(()), |left| Err(Refused::Banned(left)))
    }

    /// Counts a guess for `pair` before it is checked, or refuses it: the
    /// source or the pair is banned (or this guess bans it), or the user is
    /// under attack and this source has failed before and it is not yet
    /// its turn.
    pub fn charge(&self, pair: Pair) -> Result<Charged, Refused> {
        let now = Instant::now();
        self.check_source(pair.source)?;
        if let Some(left) = self.by_pair.banned(&pair, now) {
            return Err(Refused::Banned(left));
        }
        if let Some(user) = pair.user {
            let clean = self.by_source.remaining(&pair.source, now) == LOGIN_POLICY.threshold;
            let under_attack = self.by_user.banned(&user, now).is_some();
            if under_attack && !clean && self.slow_down.check_key(&user).is_err() {
                return Err(Refused::Banned(SLOW_DOWN_PERIOD));
            }
        }
        let source = self.by_source.strike(&pair.source, now);
        let paired = self.by_pair.strike(&pair, now);
        if source == Strike::Banned || paired == Strike::Banned {
            // One line per ban, for fail2ban and people alike.
            tracing::warn!(client_ip = %pair.source, user_id = ?pair.user, "api login ban: too many failed logins");
            return Err(Refused::Banned(LOGIN_POLICY.ban));
        }
        Ok(Charged { pair })
    }

    /// A free hashing slot, waited for at most [`HASH_WAIT`].
    pub async fn hash_slot(&self) -> Result<OwnedSemaphorePermit, Refused> {
        match tokio::time::timeout(HASH_WAIT, self.hash_slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(Refused::Busy),
        }
    }

    /// The password was right: the guess is taken back.
    pub fn refund(&self, charged: Charged) {
        self.by_source.unstrike(&charged.pair.source);
        self.by_pair.unstrike(&charged.pair);
    }

    /// The password was wrong: the guess stays counted, and counts against
    /// the user from anywhere (which only ever slows it down).
    pub fn failed(&self, charged: Charged) {
        if let Some(user) = charged.pair.user {
            if self.by_user.strike(&user, Instant::now()) == Strike::Banned {
                tracing::warn!(user_id = user, "api login slow-down: a user failing from many addresses");
            }
        }
        if self.slow_down.len() > LOGIN_POLICY.capacity {
            self.slow_down.retain_recent();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(user: i64, source: [u8; 4]) -> Pair {
        Pair { user: Some(user), source: IpAddr::from(source) }
    }

    #[test]
    fn a_source_is_refused_before_hashing_once_over_its_limit() {
        let t = LoginThrottle::new(2);
        let p = pair(1, [192, 0, 2, 1]);
        for _ in 0..LOGIN_POLICY.threshold {
            let c = t.charge(p).expect("under the limit");
            t.failed(c);
        }
        assert!(matches!(t.charge(p), Err(Refused::Banned(_))), "the next guess bans without a hash");
        assert!(matches!(t.charge(pair(2, [192, 0, 2, 1])), Err(Refused::Banned(_))), "the source is banned for every user");
    }

    #[test]
    fn right_passwords_are_taken_back() {
        let t = LoginThrottle::new(2);
        let p = pair(1, [192, 0, 2, 1]);
        for _ in 0..100 {
            let c = t.charge(p).expect("right passwords never add up");
            t.refund(c);
        }
    }

    #[test]
    fn an_attack_from_elsewhere_only_slows_the_user_for_dirty_sources() {
        let t = LoginThrottle::new(2);
        // Eleven attackers, one guess each: the user is now under attack.
        for i in 0..=LOGIN_POLICY.threshold {
            let c = t.charge(pair(7, [198, 51, 100, i as u8])).expect("one guess per source");
            t.failed(c);
        }
        // An attacker that failed before is let through once per period...
        let dirty = pair(7, [198, 51, 100, 0]);
        let first = t.charge(dirty);
        let second = t.charge(dirty);
        assert!(first.is_ok() && matches!(second, Err(Refused::Banned(SLOW_DOWN_PERIOD))));
        // ...while the user's own clean office is always heard.
        let office = pair(7, [203, 0, 113, 5]);
        for _ in 0..5 {
            let c = t.charge(office).expect("a clean source is never slowed down");
            t.refund(c);
        }
    }
}
