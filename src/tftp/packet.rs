//! TFTP packets (RFC 1350) with options (RFC 2347: blksize RFC 2348,
//! timeout and tsize RFC 2349, windowsize RFC 7440). Parsing never panics:
//! anything malformed is `None`.

use bytes::{BufMut, Bytes, BytesMut};

pub const RRQ: u16 = 1;
pub const WRQ: u16 = 2;
pub const DATA: u16 = 3;
pub const ACK: u16 = 4;
pub const ERROR: u16 = 5;
pub const OACK: u16 = 6;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Octet,
    Netascii,
}

/// Options a client asked for; values are checked in [`negotiate`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestedOptions {
    pub blksize: Option<u64>,
    pub timeout: Option<u64>,
    pub tsize: Option<u64>,
    pub windowsize: Option<u64>,
}

/// Largest block: what fits a UDP datagram (RFC 2348 allows 65,464).
pub const MAX_BLKSIZE: u64 = 65_464;
/// Largest window we grant (RFC 7440 allows 65,535).
pub const MAX_WINDOW: u64 = 64;

/// What a transfer runs with, and the options to acknowledge (OACK)
/// before the first data block (none: no OACK, DATA 1 answers).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Negotiated {
    pub blksize: usize,
    pub window: u16,
    /// The client's timeout in seconds, when acknowledged.
    pub timeout: Option<u64>,
    pub oack: Vec<(&'static str, u64)>,
}

/// Answers the options a client asked for, for a body of `size` bytes,
/// granting a timeout of at most `max_timeout` seconds.
pub fn negotiate(o: &RequestedOptions, size: u64, max_timeout: u64) -> Negotiated {
    /// An option the client asked for, if at least `min` (clamped to
    /// `max`), acknowledged in the OACK; below `min`, it is ignored.
    fn accept(oack: &mut Vec<(&'static str, u64)>, name: &'static str, asked: Option<u64>, min: u64, max: u64) -> Option<u64> {
        let n = asked.filter(|n| *n >= min)?.min(max);
        oack.push((name, n));
        Some(n)
    }
    let mut oack = Vec::new();
    let blksize = accept(&mut oack, "blksize", o.blksize, 8, MAX_BLKSIZE).unwrap_or(512) as usize;
    // RFC 2349: the timeout is 1-255 seconds and the server must answer
    // with the client's own value, or not acknowledge the option at all (it
    // may not offer a smaller one). A timeout above our cap would let one
    // never-acknowledging request hold its slot and socket for minutes, so
    // it is ignored, as an out-of-range one is, and our default applies.
    let timeout = o.timeout.filter(|n| (1..=max_timeout.min(255)).contains(n));
    if let Some(n) = timeout {
        oack.push(("timeout", n));
    }
    if o.tsize.is_some() {
        oack.push(("tsize", size));
    }
    let window = accept(&mut oack, "windowsize", o.windowsize, 1, MAX_WINDOW).unwrap_or(1) as u16;
    Negotiated { blksize, window, timeout, oack }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Packet {
    Read { file: String, mode: Mode, options: RequestedOptions },
    Write { file: String },
    Ack(u16),
    Error { code: u16, message: String },
}

/// TFTP error codes used here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    NotDefined = 0,
    FileNotFound = 1,
    AccessViolation = 2,
    IllegalOperation = 4,
    OptionRefused = 8,
}

impl Packet {
    pub fn parse(data: &[u8]) -> Option<Packet> {
        if data.len() < 4 {
            return None;
        }
        let opcode = u16::from_be_bytes([data[0], data[1]]);
        let rest = &data[2..];
        match opcode {
            RRQ | WRQ => {
                let mut fields = rest.split(|&b| b == 0);
                let file = String::from_utf8(fields.next()?.to_vec()).ok()?;
                let mode = std::str::from_utf8(fields.next()?).ok()?;
                // The request must end with a NUL: a truncated one is refused.
                if rest.last() != Some(&0) {
                    return None;
                }
                if opcode == WRQ {
                    return Some(Packet::Write { file });
                }
                let mode = if mode.eq_ignore_ascii_case("octet") {
                    Mode::Octet
                } else if mode.eq_ignore_ascii_case("netascii") {
                    Mode::Netascii
                } else {
                    return None;
                };
                let mut options = RequestedOptions::default();
                let mut parts = fields.filter(|f| !f.is_empty());
                while let (Some(name), Some(value)) = (parts.next(), parts.next()) {
                    let name = std::str::from_utf8(name).ok()?.to_ascii_lowercase();
                    let value = std::str::from_utf8(value).ok()?.parse::<u64>().ok();
                    match name.as_str() {
                        "blksize" => options.blksize = value,
                        "timeout" => options.timeout = value,
                        "tsize" => options.tsize = value,
                        "windowsize" => options.windowsize = value,
                        _ => {} // unknown options are ignored (RFC 2347)
                    }
                }
                Some(Packet::Read { file, mode, options })
            }
            ACK if data.len() == 4 => Some(Packet::Ack(u16::from_be_bytes([rest[0], rest[1]]))),
            ERROR => {
                let code = u16::from_be_bytes([rest[0], rest[1]]);
                let message = String::from_utf8_lossy(rest[2..].split(|&b| b == 0).next().unwrap_or(&[])).into_owned();
                Some(Packet::Error { code, message })
            }
            _ => None,
        }
    }
}

/// A DATA packet written over `out` (a transfer's one send buffer).
pub fn write_data(out: &mut Vec<u8>, block: u16, payload: &[u8]) {
    out.clear();
    out.extend_from_slice(&DATA.to_be_bytes());
    out.extend_from_slice(&block.to_be_bytes());
    out.extend_from_slice(payload);
}

pub fn error(code: ErrorCode, message: &str) -> Bytes {
    let mut b = BytesMut::with_capacity(5 + message.len());
    b.put_u16(ERROR);
    b.put_u16(code as u16);
    b.put_slice(message.as_bytes());
    b.put_u8(0);
    b.freeze()
}

pub fn oack(options: &[(&str, u64)]) -> Bytes {
    let mut b = BytesMut::with_capacity(64);
    b.put_u16(OACK);
    for (name, value) in options {
        b.put_slice(name.as_bytes());
        b.put_u8(0);
        b.put_slice(value.to_string().as_bytes());
        b.put_u8(0);
    }
    b.freeze()
}

/// netascii: every LF becomes CR LF and every bare CR becomes CR NUL.
pub fn to_netascii(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + text.len() / 16);
    for &b in text {
        match b {
            b'\n' => out.extend_from_slice(b"\r\n"),
            b'\r' => out.extend_from_slice(b"\r\0"),
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_requests_with_options() {
        let p = Packet::parse(
            b"\x00\x01001565aabbcc.cfg\x00octet\x00blksize\x001428\x00tsize\x000\x00windowsize\x004\x00timeout\x002\x00",
        );
        assert_eq!(
            p,
            Some(Packet::Read {
                file: "001565aabbcc.cfg".into(),
                mode: Mode::Octet,
                options: RequestedOptions { blksize: Some(1428), timeout: Some(2), tsize: Some(0), windowsize: Some(4) }
            })
        );
        let p = Packet::parse(b"\x00\x01a\x00NETASCII\x00").unwrap();
        assert!(matches!(p, Packet::Read { mode: Mode::Netascii, .. }));
    }

    #[test]
    fn garbage_is_none() {
        for bad in [
            &b""[..],
            b"\x00",
            b"\x00\x01",
            b"\x00\x01abc",
            b"\x00\x01abc\x00octet",
            b"\x00\x01abc\x00mail\x00",
            b"\x00\x09xx",
            b"\xff\xff\x00\x00",
            b"\x00\x04\x00",
        ] {
            assert_eq!(Packet::parse(bad), None, "{bad:?}");
        }
        assert_eq!(Packet::parse(b"\x00\x02up.cfg\x00octet\x00"), Some(Packet::Write { file: "up.cfg".into() }));
    }

    #[test]
    fn options_are_granted_clamped_or_ignored() {
        let asked = RequestedOptions { blksize: Some(1428), timeout: Some(2), tsize: Some(0), windowsize: Some(4) };
        let n = negotiate(&asked, 3000, 5);
        assert_eq!((n.blksize, n.window, n.timeout), (1428, 4, Some(2)));
        assert_eq!(n.oack, [("blksize", 1428), ("timeout", 2), ("tsize", 3000), ("windowsize", 4)]);
        // Too large: blksize and windowsize are clamped (the client takes
        // what the OACK says), tiny ones ignored.
        let n = negotiate(&RequestedOptions { blksize: Some(1 << 20), windowsize: Some(1000), ..Default::default() }, 1, 5);
        assert_eq!(n.oack, [("blksize", MAX_BLKSIZE), ("windowsize", MAX_WINDOW)]);
        let n =
            negotiate(&RequestedOptions { blksize: Some(4), windowsize: Some(0), timeout: Some(0), ..Default::default() }, 1, 5);
        assert_eq!((n.blksize, n.window, n.timeout, n.oack.is_empty()), (512, 1, None, true));
    }

    #[test]
    fn a_timeout_above_the_cap_is_not_acknowledged() {
        let asked = |t| RequestedOptions { timeout: Some(t), tsize: Some(0), ..Default::default() };
        // RFC 2349: the client's value exactly, or nothing; never a smaller one.
        assert_eq!(negotiate(&asked(5), 10, 5).oack, [("timeout", 5), ("tsize", 10)]);
        assert_eq!(negotiate(&asked(6), 10, 5).oack, [("tsize", 10)]);
        assert_eq!(negotiate(&asked(255), 10, 5).timeout, None);
        assert_eq!(negotiate(&asked(255), 10, 1000).timeout, Some(255));
        assert_eq!(negotiate(&asked(256), 10, 1000).timeout, None);
        // A cap under a second grants no timeout at all.
        assert_eq!(negotiate(&asked(1), 10, 0).timeout, None);
        // Only the timeout asked for, and refused: no OACK, DATA 1 answers.
        assert!(negotiate(&RequestedOptions { timeout: Some(255), ..Default::default() }, 10, 5).oack.is_empty());
    }

    #[test]
    fn netascii_conversion() {
        assert_eq!(to_netascii(b"a\nb\rc"), b"a\r\nb\r\0c");
    }
}
