//! Who is on the other end of a request: the client's IP and whether the
//! request reached us over TLS, believing `X-Forwarded-*` headers only from
//! the configured trusted proxies.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use ipnet::IpNet;

/// Attached by the server to every request of one listener.
#[derive(Clone, Debug)]
pub struct Listener {
    pub tls: bool,
    pub trusted_proxies: Arc<[IpNet]>,
}

/// The certificate a TLS client presented, already verified against the
/// configured device CAs (attached to every request of its connection).
#[derive(Clone, Debug)]
pub struct ClientCertificate(pub Arc<rustls::pki_types::CertificateDer<'static>>);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientInfo {
    pub ip: IpAddr,
    pub tls: bool,
}

impl ClientInfo {
    pub fn from_parts(peer: SocketAddr, listener: &Listener, headers: &HeaderMap) -> ClientInfo {
        let peer_ip = canonical(peer.ip());
        let trusted = |ip: &IpAddr| listener.trusted_proxies.iter().any(|net| net.contains(ip));
        if !trusted(&peer_ip) {
            return ClientInfo { ip: peer_ip, tls: listener.tls };
        }
        let tls = listener.tls
            || headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"));
        // The client is the right-most address that is not one of our proxies.
        let forwarded = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|s| s.trim().parse::<IpAddr>().ok())
            .map(canonical)
            .collect::<Vec<_>>();
        let ip = forwarded.into_iter().rev().find(|ip| !trusted(ip)).unwrap_or(peer_ip);
        ClientInfo { ip, tls }
    }
}

/// IPv4 peers on a dual-stack socket arrive as `::ffff:a.b.c.d`.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClientInfo {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        if let Some(info) = parts.extensions.get::<ClientInfo>() {
            return Ok(*info);
        }
        let peer =
            parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0).unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        let listener =
            parts.extensions.get::<Listener>().cloned().unwrap_or(Listener { tls: false, trusted_proxies: Arc::from([]) });
        let info = ClientInfo::from_parts(peer, &listener, &parts.headers);
        parts.extensions.insert(info);
        Ok(info)
    }
}

/// A `Host` header parsed as an authority (RFC 9110 §7.2): a DNS name, an
/// IPv4 address or a bracketed IPv6 address, and an optional port 1-65535.
/// Anything else (`[::1`, `x:99999999`, user info, a path) is `None`: such
/// a request is answered 400 before any handler sees it, and what passes
/// may go into a phone's config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostHeader {
    /// As written in a URL: IPv6 in brackets.
    pub host: String,
    pub port: Option<u16>,
}

impl HostHeader {
    pub fn parse(h: &str) -> Option<HostHeader> {
        if h.is_empty() || h.len() > 255 || !h.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b)) {
            return None;
        }
        let (host, port) = match h.strip_prefix('[') {
            Some(v6) => {
                let (addr, rest) = v6.split_once(']')?;
                addr.parse::<std::net::Ipv6Addr>().ok()?;
                let port = if rest.is_empty() { None } else { Some(rest.strip_prefix(':')?) };
                (&h[..addr.len() + 2], port)
            }
            None => match h.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (h, None),
            },
        };
        if !host.starts_with('[') && crate::model::validate_host("host", host).is_err() {
            return None;
        }
        let port = match port {
            Some(p) if p.bytes().all(|b| b.is_ascii_digit()) => Some(p.parse::<u16>().ok().filter(|p| *p != 0)?),
            Some(_) => return None,
            None => None,
        };
        Some(HostHeader { host: host.to_string(), port })
    }

    /// The request's `Host`: `Ok(None)` when there is none (HTTP/1.0),
    /// `Err` when it is not an authority.
    pub fn of(headers: &HeaderMap) -> Result<Option<HostHeader>, BadHost> {
        match headers.get(axum::http::header::HOST) {
            None => Ok(None),
            Some(v) => v.to_str().ok().and_then(HostHeader::parse).map(Some).ok_or(BadHost),
        }
    }
}

/// A `Host` header that is not `host[:port]`.
#[derive(Debug, thiserror::Error)]
#[error("Bad Host header: expected host[:port]")]
pub struct BadHost;

/// The host name a request used (without its port), for the URLs it is
/// shown; `localhost` when the header is missing.
pub fn request_host(headers: &HeaderMap) -> String {
    HostHeader::of(headers).ok().flatten().map(|h| h.host).unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener(tls: bool, proxies: &[&str]) -> Listener {
        Listener { tls, trusted_proxies: proxies.iter().map(|p| p.parse().unwrap()).collect() }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn untrusted_peers_cannot_claim_tls_or_another_ip() {
        let h = headers(&[("x-forwarded-proto", "https"), ("x-forwarded-for", "203.0.113.9")]);
        let info = ClientInfo::from_parts("198.51.100.1:4000".parse().unwrap(), &listener(false, &["10.0.0.0/8"]), &h);
        assert_eq!(info, ClientInfo { ip: "198.51.100.1".parse().unwrap(), tls: false });
    }

    #[test]
    fn trusted_proxies_forward_scheme_and_client() {
        let h = headers(&[("x-forwarded-proto", "https"), ("x-forwarded-for", "1.2.3.4, 203.0.113.9, 10.0.0.2")]);
        let info = ClientInfo::from_parts("10.0.0.1:4000".parse().unwrap(), &listener(false, &["10.0.0.0/8"]), &h);
        assert_eq!(info, ClientInfo { ip: "203.0.113.9".parse().unwrap(), tls: true });
    }

    #[test]
    fn hosts_are_authorities() {
        let h = |s: &str| HostHeader::parse(s).map(|h| (h.host, h.port));
        assert_eq!(h("prov.example.com"), Some(("prov.example.com".into(), None)));
        assert_eq!(h("192.0.2.1:8080"), Some(("192.0.2.1".into(), Some(8080))));
        assert_eq!(h("[2001:db8::1]:8443"), Some(("[2001:db8::1]".into(), Some(8443))));
        assert_eq!(h("[::1]"), Some(("[::1]".into(), None)));
        for bad in [
            "",
            "a b",
            "evil\"/><x",
            "host/path",
            "a\r\nb",
            "[[::1]]",
            "[::1",
            "[::1]x",
            "x:99999999",
            "x:0",
            "x:",
            "x:+80",
            "a]b",
            "[zz]",
            "user@host",
            "-lead.example",
            "a..b",
        ] {
            assert_eq!(h(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn mapped_ipv4_is_plain_ipv4() {
        let info = ClientInfo::from_parts("[::ffff:192.0.2.7]:1".parse().unwrap(), &listener(true, &[]), &HeaderMap::new());
        assert_eq!(info.ip, "192.0.2.7".parse::<IpAddr>().unwrap());
    }
}
