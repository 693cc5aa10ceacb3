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
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Transport {
    #[default]
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
    /// The User-Agent the phone registered with, as its registrar reported.
    pub user_agent: String,
    /// Until when its registration holds (Unix ms), as its registrar
    /// reported; 0 when it is not registered (or no registrar reports).
    pub registered_until: i64,
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
            user_agent: String::new(),
            registered_until: 0,
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

    /// Whether the registrar said the phone is registered, and that has not
    /// run out since.
    pub fn registered(&self, now_ms: i64) -> bool {
        self.registered_until > now_ms
    }

    /// What a registrar's report of a registration (or of its end, when
    /// `expires_s` is 0) makes of this status: the address, transport and
    /// User-Agent it registered with; `Idle` when it comes up (a call in
    /// progress is left alone), `Unavailable` and no push address when it
    /// goes.
    pub fn registered_as(mut self, report: &Registration, now_ms: i64) -> Self {
        if report.expires_s == 0 {
            self.registered_until = 0;
            self.state = CallState::Unavailable;
            self.registration = None;
            return self;
        }
        self.registered_until = now_ms.saturating_add(i64::from(report.expires_s).saturating_mul(1000));
        self.registration = Some(report.address);
        self.registration_transport = report.transport;
        self.user_agent = report.user_agent.clone();
        if self.state == CallState::Unavailable {
            self.state = CallState::Idle;
        }
        self
    }

    /// The IP part of the registration address, `""` when unknown.
    pub fn registration_ip(&self) -> String {
        self.registration.map(|a| a.ip().to_string()).unwrap_or_default()
    }

    pub fn registration_address(&self) -> String {
        self.registration.map(|a| a.to_string()).unwrap_or_default()
    }
}

/// A registrar's report: the phone whose address of record is
/// `sip:<user>@<host>` registered from `address` over `transport` for
/// `expires_s` seconds (0: it un-registered, or its registration expired).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registration {
    pub user: String,
    pub host: String,
    pub address: SocketAddr,
    pub transport: Transport,
    pub user_agent: String,
    pub expires_s: u32,
}

impl Registration {
    /// The user and host of `sip:user@host[:port][;params]` (or `sips:`).
    pub fn parse_aor(aor: &str) -> Result<(String, String), FieldError> {
        let err = || FieldError::new("aor", "must be a SIP address of record such as sip:201@sip.example.com");
        let rest = aor.trim().strip_prefix("sip:").or_else(|| aor.trim().strip_prefix("sips:")).ok_or_else(err)?;
        let rest = rest.split([';', '?', '>']).next().unwrap_or_default();
        let (user, hostport) = rest.split_once('@').ok_or_else(err)?;
        let host = match hostport.strip_prefix('[') {
            Some(v6) => v6.split_once(']').map(|(h, _)| h).ok_or_else(err)?,
            None => hostport.split(':').next().unwrap_or_default(),
        };
        if user.is_empty() || host.is_empty() || user.len() > 64 || host.len() > 253 {
            return Err(err());
        }
        Ok((user.to_string(), host.to_ascii_lowercase()))
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
    fn registrations_come_and_go() {
        assert_eq!(
            Registration::parse_aor("sip:201@SIP.example.com:5060;transport=udp").unwrap(),
            ("201".into(), "sip.example.com".into())
        );
        assert_eq!(Registration::parse_aor("sips:201@[2001:db8::1]:5061").unwrap().1, "2001:db8::1");
        for bad in ["201@sip.example.com", "sip:@x", "sip:201", "tel:+441234"] {
            assert!(Registration::parse_aor(bad).is_err(), "{bad}");
        }
        let report = Registration {
            user: "201".into(),
            host: "sip.example.com".into(),
            address: "203.0.113.100:40001".parse().unwrap(),
            transport: Transport::Udp,
            user_agent: "DeskPhone 1.0".into(),
            expires_s: 60,
        };
        let up = HandsetStatus::default().registered_as(&report, 1_000);
        assert!(up.registered(1_000) && !up.registered(61_000));
        assert_eq!((up.state, up.registration, up.user_agent.as_str()), (CallState::Idle, Some(report.address), "DeskPhone 1.0"));
        let on_call = HandsetStatus { state: CallState::OnCall, ..up.clone() }.registered_as(&report, 2_000);
        assert_eq!(on_call.state, CallState::OnCall, "a refresh leaves the call alone");
        let down = up.registered_as(&Registration { expires_s: 0, ..report }, 3_000);
        assert_eq!((down.state, down.registration, down.registered(3_000)), (CallState::Unavailable, None, false));
    }

    #[test]
    fn registration_address_needs_a_port() {
        assert!(parse_registration_address("192.0.2.1").is_err());
        assert_eq!(parse_registration_address("").unwrap(), None);
        let a = parse_registration_address("[2001:db8::1]:5062").unwrap().unwrap();
        assert_eq!(a.port(), 5062);
    }
}
