//! MAC addresses as phones and installers write them, normalised to the one
//! form we store and put in file names: 12 lowercase hex digits.

use std::fmt;
use std::str::FromStr;

/// A unicast, non-zero MAC address. Construct it with [`Mac::from_str`], which
/// accepts the four spellings installers and phones use.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mac([u8; 6]);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MacError {
    #[error("bad MAC address: expected 12 hex digits as 001565AABBCC, 00:15:65:aa:bb:cc, 00-15-65-AA-BB-CC or 0015.65aa.bbcc")]
    Syntax,
    #[error("bad MAC address: the all-zero address is not a device")]
    Zero,
    #[error("bad MAC address: broadcast and multicast addresses are not devices")]
    Multicast,
}

impl Mac {
    /// The six octets.
    pub fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// `001565aabbcc`: the stored form and the vendors' `<mac>`.
    pub fn lower(&self) -> String {
        hex::encode(self.0)
    }

    /// `001565AABBCC`: the vendors' `<MAC>`.
    pub fn upper(&self) -> String {
        hex::encode_upper(self.0)
    }
}

impl FromStr for Mac {
    type Err = MacError;

    fn from_str(s: &str) -> Result<Self, MacError> {
        let octets = octets_of(s).ok_or(MacError::Syntax)?;
        if octets == [0; 6] {
            return Err(MacError::Zero);
        }
        // The group bit (least significant bit of the first octet) covers
        // broadcast too.
        if octets[0] & 1 == 1 {
            return Err(MacError::Multicast);
        }
        Ok(Mac(octets))
    }
}

/// The octets of one of the accepted layouts (12 digits; six groups of two
/// joined by `:` or `-`; three groups of four joined by `.`), refusing
/// anything else: mixed separators, wrong group sizes, stray characters.
/// Every phone request parses one or two MACs: no allocation.
fn octets_of(s: &str) -> Option<[u8; 6]> {
    let s = s.trim().as_bytes();
    let (group, separator) = match s.len() {
        12 => (12, None),
        17 if s.contains(&b':') => (2, Some(b':')),
        17 if s.contains(&b'-') => (2, Some(b'-')),
        14 => (4, Some(b'.')),
        _ => return None,
    };
    let mut octets = [0u8; 6];
    let (mut digits, mut in_group) = (0, 0);
    for &b in s {
        if Some(b) == separator {
            if in_group != group {
                return None;
            }
            in_group = 0;
            continue;
        }
        let nibble = (b as char).to_digit(16)? as u8;
        if digits == 12 || in_group == group {
            return None;
        }
        octets[digits / 2] |= nibble << if digits % 2 == 0 { 4 } else { 0 };
        digits += 1;
        in_group += 1;
    }
    (digits == 12 && in_group == group).then_some(octets)
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.lower())
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mac({})", self.lower())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_four_spellings() {
        for s in ["001565AABBCC", "00:15:65:aa:bb:cc", "00-15-65-AA-BB-CC", "0015.65aa.bbcc", " 001565aabbcc\n"] {
            assert_eq!(s.parse::<Mac>().unwrap().lower(), "001565aabbcc", "{s}");
        }
    }

    #[test]
    fn refuses_malformed_and_non_device_addresses() {
        for s in [
            "",
            "001565AABBC",
            "001565AABBCCD",
            "00:15:65:aa:bb-cc",
            "0015:65aa:bbcc",
            "00156-5AABBCC",
            "0015.65aa.bbcg",
            "00:15:65:aa:bbc:c",
            "0015..65aabbcc",
            "00:15:65::aabbcc",
            "００1565AABBCC",
        ] {
            assert_eq!(s.parse::<Mac>(), Err(MacError::Syntax), "{s}");
        }
        assert_eq!("000000000000".parse::<Mac>(), Err(MacError::Zero));
        assert_eq!("ffffffffffff".parse::<Mac>(), Err(MacError::Multicast));
        assert_eq!("01:00:5e:00:00:01".parse::<Mac>(), Err(MacError::Multicast));
    }

    #[test]
    fn upper_case_form_for_file_names() {
        assert_eq!("00:04:13:aa:bb:cc".parse::<Mac>().unwrap().upper(), "000413AABBCC");
    }
}
