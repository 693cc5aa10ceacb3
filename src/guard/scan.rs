//! The provisioning scan guard: tells a scanner from a site.
//!
//! What counts is *distinct* things a source failed to prove, not requests:
//! unknown MACs asked for without a token, wrong tokens, wrong device
//! credentials, hostile names. A phone asking for the same file again, the
//! files a family's phones ask for at every boot (the profiles' quiet
//! files), and anything under a valid token, device credential or
//! certificate never count, so an office of booting phones behind one NAT
//! is never banned. A ban refuses only requests that prove nothing.
//!
//! UDP sources can be forged: a TFTP miss counts only once the source has
//! acknowledged a block of ours (it really receives at that address), so
//! forged requests cannot get a victim banned on HTTP(S).

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::strikes::Strike;
use super::{StrikePolicy, StrikeTable};
use crate::metrics::Metrics;
use crate::model::Mac;

/// Something a source failed to prove.
#[derive(Clone, Copy, Debug, Hash)]
pub enum Miss<'a> {
    /// A MAC's file asked for without proof, or under no valid token.
    Mac(Mac),
    /// A token no domain has (or had within its grace).
    Token(&'a str),
    /// Device credentials that are wrong for the MAC.
    Credentials(Mac),
    /// A name no phone sends (a path, control characters, …).
    Name(&'a str),
    /// An event token no handset has (a phone's action URL, `/ev/<token>/…`).
    EventToken(&'a str),
}

pub struct ScanGuard {
    policy: StrikePolicy,
    misses: StrikeTable<IpAddr>,
    /// TFTP sources that acknowledged a block of ours, and until when that
    /// proof is good.
    proven: Mutex<HashMap<IpAddr, Instant>>,
    /// Keyed hashing of misses: fingerprints an attacker cannot collide.
    hasher: std::collections::hash_map::RandomState,
    /// Where bans are counted, if anywhere.
    metrics: Option<Arc<Metrics>>,
}

impl ScanGuard {
    pub fn new(policy: StrikePolicy) -> Self {
        ScanGuard {
            policy,
            misses: StrikeTable::new(policy),
            proven: Mutex::default(),
            hasher: Default::default(),
            metrics: None,
        }
    }

    /// The same guard, counting its bans in `metrics`.
    pub fn counting_bans(self, metrics: Arc<Metrics>) -> Self {
        ScanGuard { metrics: Some(metrics), ..self }
    }

    pub fn policy(&self) -> StrikePolicy {
        self.policy
    }

    pub fn banned(&self, ip: &IpAddr, now: Instant) -> bool {
        self.misses.banned(ip, now).is_some()
    }

    /// Counts `miss` against `ip`; over TFTP only for a proven source.
    pub fn miss(&self, ip: IpAddr, miss: Miss<'_>, over_udp: bool, now: Instant) {
        if over_udp && !self.is_proven(&ip, now) {
            return;
        }
        if self.misses.strike_distinct(&ip, self.hasher.hash_one(miss), now) == Strike::Banned {
            if let Some(m) = &self.metrics {
                m.scan_ban();
            }
            // One fail2ban-friendly line per ban.
            tracing::warn!(
                target: "autoprov::guard",
                "scan-guard ban ip={ip} misses>{} window={}s ban={}s",
                self.policy.threshold,
                self.policy.window.as_secs(),
                self.policy.ban.as_secs()
            );
        }
    }

    /// `miss` proved itself after all (a phone that was challenged came
    /// back with its credentials): its strike is taken back.
    pub fn forgive(&self, ip: IpAddr, miss: Miss<'_>) {
        self.misses.forgive_item(&ip, self.hasher.hash_one(miss));
    }

    /// `ip` acknowledged a TFTP block of ours.
    pub fn prove(&self, ip: IpAddr, now: Instant) {
        let mut proven = self.proven.lock().unwrap_or_else(|p| p.into_inner());
        if proven.len() >= self.policy.capacity && !proven.contains_key(&ip) {
            proven.retain(|_, until| *until > now);
            if proven.len() >= self.policy.capacity {
                proven.clear();
            }
        }
        proven.insert(ip, now + self.policy.window.max(Duration::from_secs(60)));
    }

    fn is_proven(&self, ip: &IpAddr, now: Instant) -> bool {
        self.proven.lock().unwrap_or_else(|p| p.into_inner()).get(ip).is_some_and(|until| *until > now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> ScanGuard {
        ScanGuard::new(StrikePolicy {
            threshold: 3,
            window: Duration::from_secs(60),
            ban: Duration::from_secs(60),
            capacity: 100,
        })
    }

    fn mac(n: u8) -> Mac {
        format!("0015650000{n:02x}").parse().unwrap()
    }

    #[test]
    fn distinct_macs_ban_and_repeats_do_not() {
        let g = guard();
        let (ip, t0) = ("192.0.2.1".parse().unwrap(), Instant::now());
        for _ in 0..50 {
            g.miss(ip, Miss::Mac(mac(1)), false, t0);
        }
        assert!(!g.banned(&ip, t0), "one phone asking again and again is not a scan");
        for n in 2..=4 {
            g.miss(ip, Miss::Mac(mac(n)), false, t0);
        }
        assert!(g.banned(&ip, t0));
    }

    #[test]
    fn a_challenged_phone_that_proves_itself_is_forgiven() {
        let g = guard();
        let (ip, t0) = ("192.0.2.2".parse().unwrap(), Instant::now());
        for n in 1..=10 {
            g.miss(ip, Miss::Mac(mac(n)), false, t0);
            g.forgive(ip, Miss::Mac(mac(n)));
        }
        assert!(!g.banned(&ip, t0));
    }

    #[test]
    fn udp_misses_count_only_from_proven_sources() {
        let g = guard();
        let (victim, t0) = ("192.0.2.3".parse().unwrap(), Instant::now());
        for n in 1..=21 {
            g.miss(victim, Miss::Mac(mac(n)), true, t0);
        }
        assert!(!g.banned(&victim, t0), "forged UDP sources ban nobody");
        g.prove(victim, t0);
        for n in 1..=4 {
            g.miss(victim, Miss::Mac(mac(n)), true, t0);
        }
        assert!(g.banned(&victim, t0));
    }
}
