//! Handset status as the voice platform reports it, in Jingl's vocabulary.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::FieldError;

macro_rules! jingl_enum {
    ($(#[$meta:meta])* $name:ident, $field:literal { $($variant:ident),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => stringify!($variant)),+ }
            }

            /// Parses Jingl's spelling; case is forgiven, other words are refused
            /// with the list of accepted ones.
            pub fn parse(s: &str) -> Result<Self, FieldError> {
                Self::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str().eq_ignore_ascii_case(s.trim()))
                    .ok_or_else(|| FieldError::new($field, format!(
                        "must be one of {}",
                        Self::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", ")
                    )))
            }
        }
    };
}

jingl_enum!(
    /// What the handset is doing right now.
    CallState, "state" { Idle, OnCall, Ringing, Calling, OnHold, Unavailable }
);

jingl_enum!(
    /// Which way the current call goes.
    CallDirection, "calldirection" { Unknown, Inbound, Outbound, Internal }
);

/// The SIP transport a phone registered over; the push issue sends its
/// NOTIFY the same way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }

    pub fn parse(field: &'static str, s: &str) -> Result<Self, FieldError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "udp" => Ok(Transport::Udp),
            "tcp" => Ok(Transport::Tcp),
            "tls" => Ok(Transport::Tls),
            _ => Err(FieldError::new(field, "must be udp, tcp or tls")),
        }
    }
}

/// The last known status of one handset. `Default` is what we say when the
/// platform has told us nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandsetStatus {
    pub state: CallState,
    pub calldirection: CallDirection,
    pub calldurationseconds: i64,
    pub otherpartyphonenumber: String,
    pub app: String,
    pub registration: Option<SocketAddr>,
    pub registration_transport: Transport,
    pub updated_at: i64,
}

impl Default for HandsetStatus {
    fn default() -> Self {
        HandsetStatus {
            state: CallState::Unavailable,
            calldirection: CallDirection::Unknown,
            calldurationseconds: 0,
            otherpartyphonenumber: String::new(),
            app: String::new(),
            registration: None,
            registration_transport: Transport::Udp,
            updated_at: 0,
        }
    }
}

impl HandsetStatus {
    /// Jingl's one-line `status` of Handset Select: `idle`, `ringing`,
    /// `connected to 0409123456`, `unavailable`, …
    pub fn summary(&self) -> String {
        // (alone, followed by the other party's number)
        let (alone, with) = match self.state {
            CallState::Idle => return "idle".into(),
            CallState::Unavailable => return "unavailable".into(),
            CallState::Ringing => ("ringing", "ringing from"),
            CallState::Calling => ("calling", "calling"),
            CallState::OnCall => ("connected", "connected to"),
            CallState::OnHold => ("on hold", "on hold with"),
        };
        match self.otherpartyphonenumber.as_str() {
            "" => alone.into(),
            other => format!("{with} {other}"),
        }
    }

    /// The IP part of the registration address, `""` when unknown.
    pub fn registration_ip(&self) -> String {
        self.registration.map(|a| a.ip().to_string()).unwrap_or_default()
    }

    pub fn registration_address(&self) -> String {
        self.registration.map(|a| a.to_string()).unwrap_or_default()
    }
}

/// Parses `ip:port` (IPv6 as `[::1]:5060`); `""` clears the address.
pub fn parse_registration_address(s: &str) -> Result<Option<SocketAddr>, FieldError> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    s.parse::<SocketAddr>()
        .map(Some)
        .map_err(|_| FieldError::new("registrationaddress", "must be ip:port, as 192.0.2.10:5060 or [2001:db8::1]:5060"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_parse_jingl_words_and_refuse_others() {
        assert_eq!(CallState::parse("OnCall").unwrap(), CallState::OnCall);
        assert_eq!(CallState::parse("oncall").unwrap(), CallState::OnCall);
        let err = CallState::parse("Busy").unwrap_err();
        assert!(err.to_string().contains("Idle, OnCall"), "{err}");
        assert_eq!(CallDirection::parse("Internal").unwrap(), CallDirection::Internal);
    }

    #[test]
    fn summary_reads_like_jingl() {
        let mut s = HandsetStatus::default();
        assert_eq!(s.summary(), "unavailable");
        s.state = CallState::OnCall;
        s.otherpartyphonenumber = "0409123456".into();
        assert_eq!(s.summary(), "connected to 0409123456");
        s.state = CallState::Idle;
        assert_eq!(s.summary(), "idle");
    }

    #[test]
    fn registration_address_needs_a_port() {
        assert!(parse_registration_address("192.0.2.1").is_err());
        assert_eq!(parse_registration_address("").unwrap(), None);
        let a = parse_registration_address("[2001:db8::1]:5062").unwrap().unwrap();
        assert_eq!(a.port(), 5062);
    }
}
