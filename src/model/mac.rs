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
        let digits = canonical_digits(s).ok_or(MacError::Syntax)?;
        let mut octets = [0u8; 6];
        hex::decode_to_slice(digits, &mut octets).map_err(|_| MacError::Syntax)?;
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

/// Strips the separators of one of the accepted layouts, and refuses
/// anything else (mixed separators, wrong group sizes, stray characters).
fn canonical_digits(s: &str) -> Option<String> {
    let s = s.trim();
    let groups: Vec<&str> = match s.len() {
        12 => vec![s],
        17 if s.contains(':') => s.split(':').collect(),
        17 if s.contains('-') => s.split('-').collect(),
        14 => s.split('.').collect(),
        _ => return None,
    };
    let sizes_ok = match groups.len() {
        1 => groups[0].len() == 12,
        3 => groups.iter().all(|g| g.len() == 4),
        6 => groups.iter().all(|g| g.len() == 2),
        _ => false,
    };
    let digits: String = groups.concat();
    (sizes_ok && digits.len() == 12 && digits.bytes().all(|b| b.is_ascii_hexdigit())).then(|| digits.to_ascii_lowercase())
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
        for s in ["001565AABBCC", "00:15:65:aa:bb:cc", "00-15-65-AA-BB-CC", "0015.65aa.bbcc"] {
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
