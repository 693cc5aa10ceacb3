//! Where a tenant may make this server connect: the hosts of its push
//! relays (webhook URL, AMI) and the phones' reported registration
//! addresses. Loopback, link-local (cloud metadata at 169.254.169.254),
//! multicast, broadcast, unspecified and this server's own addresses are
//! refused unless the operator allows them (`allow_internal_targets`):
//! otherwise a tenant admin could reach services that listen only inside
//! the server. Private networks stay allowed: the voice platform's AMI
//! usually lives on one.
//!
//! Names are checked after they resolve, every time (a name can be made to
//! resolve to 127.0.0.1 after it was saved), and the connection goes to an
//! address that was checked.

use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long the list of this server's own addresses is trusted.
const OWN_ADDRESSES_TTL: Duration = Duration::from_secs(60);

#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetError {
    #[error("{host}: {kind} addresses are not allowed as push targets")]
    NotAllowed { host: String, kind: &'static str },
    #[error("{host}: the name does not resolve")]
    Unresolved { host: String },
}

pub struct TargetPolicy {
    allow_internal: bool,
    own: Mutex<Option<(Instant, Vec<IpAddr>)>>,
}

impl TargetPolicy {
    pub fn new(allow_internal: bool) -> Self {
        TargetPolicy { allow_internal, own: Mutex::new(None) }
    }

    /// Whether `ip` may be connected to (IPv4-mapped IPv6 is judged as the
    /// IPv4 address it carries).
    pub fn check(&self, host: &str, ip: IpAddr) -> Result<(), TargetError> {
        if self.allow_internal {
            return Ok(());
        }
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        let kind = internal_kind(ip).or_else(|| self.is_own(ip).then_some("this server's own"));
        match kind {
            Some(kind) => Err(TargetError::NotAllowed { host: host.to_string(), kind }),
            None => Ok(()),
        }
    }

    /// `host` (a name or an IP literal, IPv6 with or without brackets)
    /// resolved, keeping only allowed addresses; refused if none is.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, TargetError> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let found: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((bare, port)).await.map(|a| a.collect()).unwrap_or_default(),
        };
        if found.is_empty() {
            return Err(TargetError::Unresolved { host: host.to_string() });
        }
        let mut refused = None;
        let allowed: Vec<SocketAddr> =
            found.into_iter().filter(|a| self.check(host, a.ip()).map_err(|e| refused = Some(e)).is_ok()).collect();
        match (allowed.is_empty(), refused) {
            (true, Some(e)) => Err(e),
            _ => Ok(allowed),
        }
    }

    fn is_own(&self, ip: IpAddr) -> bool {
        let mut own = self.own.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = own.as_ref().is_some_and(|(at, _)| at.elapsed() < OWN_ADDRESSES_TTL);
        if !fresh {
            let addrs = if_addrs::get_if_addrs().map(|list| list.iter().map(|i| i.ip()).collect()).unwrap_or_default();
            *own = Some((Instant::now(), addrs));
        }
        own.as_ref().is_some_and(|(_, addrs)| addrs.contains(&ip))
    }
}

/// The kind of address that is never a tenant's to reach, if `ip` is one.
fn internal_kind(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            if v4.is_loopback() {
                Some("loopback")
            } else if v4.is_link_local() {
                Some("link-local")
            } else if v4.is_multicast() {
                Some("multicast")
            } else if v4.is_broadcast() || o[0] >= 240 {
                Some("broadcast or reserved")
            } else if v4.is_unspecified() || o[0] == 0 {
                Some("unspecified")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            if v6.is_loopback() {
                Some("loopback")
            } else if first & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else if v6.is_multicast() {
                Some("multicast")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else {
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_refused_unless_allowed() {
        let strict = TargetPolicy::new(false);
        for bad in [
            "127.0.0.1",
            "127.1.2.3",
            "169.254.169.254",
            "224.0.0.1",
            "255.255.255.255",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "ff02::1",
            "::",
            "::ffff:127.0.0.1",
        ] {
            let ip: IpAddr = bad.parse().unwrap();
            assert!(strict.check(bad, ip).is_err(), "{bad}");
            assert!(TargetPolicy::new(true).check(bad, ip).is_ok(), "{bad} when allowed");
        }
        for ok in ["10.0.0.1", "192.168.1.10", "172.16.0.5", "203.0.113.7", "2001:db8::5", "fd00::1"] {
            assert!(strict.check(ok, ok.parse().unwrap()).is_ok(), "{ok}");
        }
    }

    #[test]
    fn this_servers_own_addresses_are_refused() {
        let strict = TargetPolicy::new(false);
        let own: Vec<IpAddr> = if_addrs::get_if_addrs().unwrap().iter().map(|i| i.ip()).filter(|ip| !ip.is_loopback()).collect();
        for ip in own {
            assert!(
                matches!(strict.check("x", ip), Err(TargetError::NotAllowed { kind: "this server's own" | "link-local", .. })),
                "{ip}"
            );
        }
    }

    #[tokio::test]
    async fn names_are_judged_by_what_they_resolve_to() {
        let strict = TargetPolicy::new(false);
        assert!(matches!(strict.resolve("localhost", 5038).await, Err(TargetError::NotAllowed { kind: "loopback", .. })));
        assert!(matches!(strict.resolve("[::1]", 5038).await, Err(TargetError::NotAllowed { .. })));
        assert_eq!(strict.resolve("192.0.2.1", 5038).await.unwrap(), vec!["192.0.2.1:5038".parse().unwrap()]);
        assert!(matches!(strict.resolve("no-such-host.invalid", 1).await, Err(TargetError::Unresolved { .. })));
    }
}
