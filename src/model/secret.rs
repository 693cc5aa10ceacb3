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

    /// A random password of `len` letters and digits from the OS generator.
    pub fn generate(len: usize) -> Self {
        use rand::{distributions::Alphanumeric, rngs::OsRng, Rng};
        Secret(OsRng.sample_iter(&Alphanumeric).take(len).map(char::from).collect())
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
    }
}
