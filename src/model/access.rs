//! Who may fetch a domain's phones' files: the domain's provisioning token
//! (and the one it replaced, for a grace period), and what the domain
//! demands of a phone before its per-MAC files are served.

use std::time::Duration;

use super::{FieldError, Secret};

/// Letters and digits from the OS generator: 24 of them are 142 bits, and
/// safe in any URL, TFTP file name or vendor config.
pub const TOKEN_LEN: usize = 24;

/// How long a rotated token keeps working unless the rotation says
/// otherwise: a week covers phones that are off over a weekend or a
/// holiday and then find their new URL at their next daily check.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(7 * 24 * 3600);
/// The longest grace a rotation may give.
pub const MAX_GRACE: Duration = Duration::from_secs(90 * 24 * 3600);

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProvisioningAccess {
    /// The secret phones carry in their provisioning URL (`/p/<token>/`).
    pub token: Secret,
    /// The token before the last rotation, accepted until `previous_until`.
    pub previous_token: Secret,
    /// Unix ms.
    pub previous_until: i64,
    /// Per-MAC files only to requests that prove themselves (token, device
    /// credentials or certificate); `false` also serves bare `/<file>`.
    pub require_token: bool,
    /// Per-MAC files only to phones presenting a device certificate.
    pub require_client_cert: bool,
}

impl ProvisioningAccess {
    /// Whether `token` is this domain's at `now_ms` (the current token, or
    /// the previous one within its grace).
    pub fn accepts(&self, token: &str, now_ms: i64) -> bool {
        constant_time_eq(self.token.expose(), token)
            || (now_ms < self.previous_until && constant_time_eq(self.previous_token.expose(), token))
    }
}

/// A fresh random token.
pub fn new_token() -> Secret {
    Secret::generate(TOKEN_LEN)
}

/// What a token in a request may look like before it is looked up: an
/// over-long or odd one is a miss without touching anything else.
pub fn plausible_token(s: &str) -> bool {
    (16..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The grace period of a rotation, in whole hours (`0` ends the old token
/// at once, for a token that leaked).
pub fn parse_grace_hours(hours: i64) -> Result<Duration, FieldError> {
    let max = MAX_GRACE.as_secs() as i64 / 3600;
    if !(0..=max).contains(&hours) {
        return Err(FieldError::new("gracehours", format!("must be 0 to {max} hours")));
    }
    Ok(Duration::from_secs(hours as u64 * 3600))
}

/// Equal strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The length of a handset's device-credential password.
pub const DEVICE_PASSWORD_LEN: usize = 20;

/// A fresh device-credential password (letters and digits: every vendor's
/// config format carries them verbatim).
pub fn new_device_password() -> Secret {
    Secret::generate(DEVICE_PASSWORD_LEN)
}

/// The length of a handset's event token.
pub const EVENT_TOKEN_LEN: usize = 24;

/// A fresh event token (letters and digits: it sits in a URL path and in
/// every vendor's config format verbatim).
pub fn new_event_token() -> Secret {
    Secret::generate(EVENT_TOKEN_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_url_safe() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert!(plausible_token(a.expose()));
        assert!(a.expose().bytes().all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn the_previous_token_works_only_within_its_grace() {
        let access = ProvisioningAccess {
            token: Secret::new("new-token-0123456789"),
            previous_token: Secret::new("old-token-0123456789"),
            previous_until: 1_000,
            ..Default::default()
        };
        assert!(access.accepts("new-token-0123456789", 5_000));
        assert!(access.accepts("old-token-0123456789", 999));
        assert!(!access.accepts("old-token-0123456789", 1_000));
        assert!(!access.accepts("", 0), "an empty previous token is no token");
        assert!(!access.accepts("new-token-012345678", 0));
    }

    #[test]
    fn implausible_tokens() {
        for bad in ["", "short", "has/slash-0123456789", "dots..0123456789012", &"a".repeat(65)] {
            assert!(!plausible_token(bad), "{bad:?}");
        }
    }

    #[test]
    fn grace_hours() {
        assert_eq!(parse_grace_hours(0).unwrap(), Duration::ZERO);
        assert_eq!(parse_grace_hours(168).unwrap(), DEFAULT_GRACE);
        assert!(parse_grace_hours(-1).is_err());
        assert!(parse_grace_hours(90 * 24 + 1).is_err());
    }
}
