//! Knowing that a MAC is in use in another domain must not be cheap: a 409
//! on create, update or claim, or a refused CSV row, would otherwise let a
//! tenant map every other tenant's phones. Such answers are counted per
//! user (one per row), limited to [`MAC_PROBE_POLICY`], and audited in the
//! caller's domain. A user over the limit gets 429 for anything that names
//! a MAC, conflicting or not, so the 429 itself tells nothing. Superusers
//! see every domain anyway and are not counted.

use std::time::{Duration, Instant};

use super::{Result, ServiceError};
use crate::auth::Caller;
use crate::guard::strikes::Strike;
use crate::guard::{StrikePolicy, StrikeTable};
use crate::model::Mac;
use crate::store::{Store, StoreError};

/// 20 answers naming another domain's MAC per user per hour; one more and
/// the user's MAC-naming requests answer 429 for an hour.
pub const MAC_PROBE_POLICY: StrikePolicy =
    StrikePolicy { threshold: 20, window: Duration::from_secs(3600), ban: Duration::from_secs(3600), capacity: 100_000 };

pub(super) struct MacProbes {
    by_user: StrikeTable<i64>,
}

impl Default for MacProbes {
    fn default() -> Self {
        MacProbes { by_user: StrikeTable::new(MAC_PROBE_POLICY) }
    }
}

impl MacProbes {
    /// Before a request that names MACs: 429 while the user is over.
    pub fn check(&self, caller: &Caller) -> Result<()> {
        match self.by_user.banned(&caller.user.id, Instant::now()) {
            Some(left) if !caller.user.superuser => Err(ServiceError::TooManyMacConflicts(left)),
            _ => Ok(()),
        }
    }

    /// How many more answers naming another domain's MAC the user may get.
    pub fn remaining(&self, caller: &Caller) -> u32 {
        if caller.user.superuser {
            return u32::MAX;
        }
        self.by_user.remaining(&caller.user.id, Instant::now())
    }

    /// Counts `count` answers naming another domain's MAC and audits them
    /// (`action` on `ext`); `Err(429)` when that puts the user over.
    pub async fn count(&self, store: &Store, caller: &Caller, count: u32, action: &str, ext: Option<&str>) -> Result<()> {
        if count == 0 || caller.user.superuser {
            return Ok(());
        }
        let rows = format!("rows:{count}");
        store.record_audit(&caller.actor, caller.domain_id, action, ext, &["mac", rows.as_str()]).await?;
        tracing::warn!(user = %caller.user.login(), domain = %caller.domain, count, "answers naming MACs of other domains");
        let now = Instant::now();
        match self.by_user.strike_n(&caller.user.id, count, now) {
            Strike::Banned => Err(ServiceError::TooManyMacConflicts(MAC_PROBE_POLICY.ban)),
            Strike::Counted if self.by_user.banned(&caller.user.id, now).is_some() => {
                Err(ServiceError::TooManyMacConflicts(MAC_PROBE_POLICY.ban))
            }
            Strike::Counted => Ok(()),
        }
    }

    /// Turns a store error of a write that set `mac` into the answer: a 409
    /// for a MAC of another domain is counted, audited and may become 429.
    pub async fn answer(
        &self,
        store: &Store,
        caller: &Caller,
        mac: Option<Mac>,
        ext: Option<&str>,
        e: StoreError,
    ) -> ServiceError {
        let StoreError::Conflict(what) = &e else { return e.into() };
        let Some(mac) = mac.filter(|_| what.contains("MAC")) else { return e.into() };
        match store.mac_owner_domain(&mac).await {
            Ok(Some(owner)) if owner != caller.domain_id => {
                match self.count(store, caller, 1, "handset.macconflict", ext).await {
                    Ok(()) => e.into(),
                    Err(too_many) => too_many,
                }
            }
            Ok(_) => e.into(),
            Err(lookup) => lookup.into(),
        }
    }
}
