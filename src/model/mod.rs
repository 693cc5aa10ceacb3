//! The records autoprov keeps and the rules their fields obey. No I/O here:
//! the API, the CLI and (later) the CSV importer all validate through these.

pub mod access;
pub mod call;
pub mod device;
pub mod domain;
pub mod handset;
pub mod mac;
pub mod push;
pub mod relay;
pub mod secret;
pub mod settings;
pub mod status;
pub mod user;

pub use access::ProvisioningAccess;
pub use device::{AuditEntry, Device};
pub use domain::{Domain, DomainChanges};
pub use handset::{Handset, HandsetField, HandsetInput, NewHandset};
pub use mac::Mac;
pub use push::PushState;
pub use secret::Secret;
pub use status::{CallDirection, CallState, HandsetStatus, PhoneEvent, PhoneReport, Transport};
pub use user::{ApiUser, Role};

/// The host of a `scheme://[user@]host[:port]/…` URL, an IPv6 address in
/// its brackets; `None` without `://`.
pub fn url_host(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    match authority.strip_prefix('[') {
        Some(v6) => v6.split_once(']').map(|(a, _)| &authority[..a.len() + 2]),
        None => authority.split(':').next(),
    }
}

/// Unix milliseconds (how times are stored) as `2026-11-26T20:43:58Z`.
pub fn rfc3339(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// A field that failed validation, with the reason in words an admin can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    pub field: &'static str,
    pub reason: String,
}

impl FieldError {
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        FieldError { field, reason: reason.into() }
    }
}

/// Extension numbers: 1–32 characters of digits, letters, `.`, `_`, `-`.
pub fn validate_extension(s: &str) -> Result<(), FieldError> {
    let ok = (1..=32).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    ok.then_some(())
        .ok_or_else(|| FieldError::new("extensionnumber", "must be 1-32 characters of digits, letters, '.', '_' or '-'"))
}

/// Free text that ends up in phone configs (names, labels): bounded, one
/// line, and without control characters, which no vendor format can carry
/// safely, nor characters that break a line or turn text around where it
/// is shown (see [`is_line_or_bidi_control`]).
pub fn validate_text(field: &'static str, s: &str, max_chars: usize) -> Result<(), FieldError> {
    if s.chars().count() > max_chars {
        return Err(FieldError::new(field, format!("must be at most {max_chars} characters")));
    }
    if s.chars().any(|c| c.is_control() || is_line_or_bidi_control(c)) {
        return Err(FieldError::new(field, "must be one line without control, line-separator or text-direction characters"));
    }
    Ok(())
}

/// Unicode's line and paragraph separators (U+2028, U+2029: JavaScript and
/// some phone UIs break lines at them) and the bidirectional controls
/// (Unicode TR9: LRM, RLM, ALM, the embeddings, overrides and isolates),
/// which make text display as something else than it is.
pub fn is_line_or_bidi_control(c: char) -> bool {
    matches!(c, '\u{2028}' | '\u{2029}' | '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Short identifiers (user names, domain names, models): ASCII letters,
/// digits and `.`, `_`, `-`, `+`.
pub fn validate_token(field: &'static str, s: &str, max: usize) -> Result<(), FieldError> {
    let ok =
        (1..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+'));
    ok.then_some(())
        .ok_or_else(|| FieldError::new(field, format!("must be 1-{max} characters of letters, digits, '.', '_', '-' or '+'")))
}

/// The network a client address counts under when sources are compared:
/// its IPv4 /24 or IPv6 /64 (what one site or one attacker holds), as text.
/// Text that is not an address is its own source.
pub fn source_network(ip: &str) -> String {
    match ip.parse::<std::net::IpAddr>().map(network_of) {
        Ok(net @ std::net::IpAddr::V4(_)) => format!("{net}/24"),
        Ok(net) => format!("{net}/64"),
        Err(_) => ip.to_string(),
    }
}

/// The network `ip` counts under: its IPv4 /24 or IPv6 /64, as an address.
pub fn network_of(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            std::net::Ipv4Addr::new(a, b, c, 0).into()
        }
        std::net::IpAddr::V6(v6) => {
            let s = v6.segments();
            std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0).into()
        }
    }
}

/// A host name or IP literal (no port).
pub fn validate_host(field: &'static str, s: &str) -> Result<(), FieldError> {
    if s.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let ok = (1..=253).contains(&s.len()) && s.split('.').all(label_ok);
    ok.then_some(()).ok_or_else(|| FieldError::new(field, "must be a host name or an IP address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions() {
        for ok in ["1", "100", "sales.desk_2-b", &"9".repeat(32)] {
            validate_extension(ok).unwrap();
        }
        for bad in ["", "1 2", "ext/1", "é", &"9".repeat(33), "100\n"] {
            assert!(validate_extension(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn text_refuses_control_characters_and_length() {
        validate_text("name", "Zoë Smith", 10).unwrap();
        assert!(validate_text("name", "a\nb", 10).is_err());
        assert!(validate_text("name", "a\u{0}", 10).is_err());
        for sneaky in ["a\u{2028}b", "a\u{2029}b", "evil\u{202e}gpj.exe", "a\u{2066}b\u{2069}", "\u{200f}x"] {
            assert!(validate_text("name", sneaky, 20).is_err(), "{sneaky:?}");
        }
        assert!(validate_text("name", &"x".repeat(11), 10).is_err());
    }

    #[test]
    fn hosts() {
        for ok in ["sip.example.com", "192.0.2.1", "2001:db8::1", "pbx"] {
            validate_host("sipserver", ok).unwrap();
        }
        for bad in ["", "a..b", "-a.com", "a b", "host:5060", "x;y"] {
            assert!(validate_host("sipserver", bad).is_err(), "{bad:?}");
        }
    }
}
