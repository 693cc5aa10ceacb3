//! Secrets (SIP passwords, API passwords) that must never reach a log line.

use std::fmt;

/// A secret string. `Debug` and `Display` print `***`; the value is reachable
/// only through [`Secret::expose`], so every place that uses it is greppable.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A random password of `len` letters and digits from the OS generator:
    /// its bytes in one read (sampling a character at a time made a system
    /// call per character, most of a million-row import's time), each byte
    /// below 248 (4 × 62) taken modulo 62, so every character is equally
    /// likely.
    pub fn generate(len: usize) -> Self {
        use rand::RngCore;
        const CHARS: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let mut out = String::with_capacity(len);
        // About 3% of bytes are rejected: a read of 5/4 `len` nearly always
        // suffices, and another is made when it does not.
        let mut bytes = vec![0u8; len + len / 4 + 8];
        while out.len() < len {
            rand::rngs::OsRng.fill_bytes(&mut bytes);
            out.extend(bytes.iter().filter(|&&b| b < 248).map(|&b| char::from(CHARS[usize::from(b) % 62])).take(len - out.len()));
        }
        Secret(out)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_its_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** ***");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn generated_passwords_are_long_and_distinct() {
        let (a, b) = (Secret::generate(20), Secret::generate(20));
        assert_eq!(a.expose().len(), 20);
        assert_ne!(a, b);
        assert!(a.expose().bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_eq!(Secret::generate(0).expose(), "");
        // Every character of the alphabet turns up (62 of them, 62,000 draws).
        let many: std::collections::HashSet<char> = Secret::generate(62_000).expose().chars().collect();
        assert_eq!(many.len(), 62);
    }
}
