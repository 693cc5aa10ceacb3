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
    /// What the phone's own events need for their order (see
    /// [`HandsetStatus::apply_event`]).
    pub call: CallTrack,
}

/// The phone's current call as its events tell it, and what ordering them
/// needs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallTrack {
    /// The call id the phone names the current call by (`""`: none, or a
    /// family whose events carry no call id).
    pub call_id: String,
    /// How far the current call got: 0 none, 1 ringing/calling,
    /// 2 established (held and resumed stay at 2).
    pub stage: i64,
    /// When the call was established (Unix ms; 0 before): the duration
    /// counts from here.
    pub started_at: i64,
    /// When the last event was received (Unix ms).
    pub event_at: i64,
    /// Ids of recently ended calls, newest first (at most
    /// [`ENDED_CALLS_KEPT`]): a late event of one of them is ignored.
    pub ended: Vec<String>,
    pub dnd: bool,
    pub forward: bool,
}

/// How many ended call ids are remembered per handset.
pub const ENDED_CALLS_KEPT: usize = 8;

/// An event a phone reports through its action URL, by our names (the
/// profiles map each family's keys to these).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PhoneEvent {
    Registered,
    Unregistered,
    /// An incoming call rings.
    Ringing,
    /// An outgoing call is being placed.
    Calling,
    Established,
    Held,
    Resumed,
    Ended,
    /// An incoming call ended unanswered: ends it as `Ended` does (for
    /// phones that report a missed call instead of, or besides, its end).
    Missed,
    DndOn,
    DndOff,
    ForwardOn,
    ForwardOff,
}

impl PhoneEvent {
    pub const ALL: &'static [PhoneEvent] = &[
        PhoneEvent::Registered,
        PhoneEvent::Unregistered,
        PhoneEvent::Ringing,
        PhoneEvent::Calling,
        PhoneEvent::Established,
        PhoneEvent::Held,
        PhoneEvent::Resumed,
        PhoneEvent::Ended,
        PhoneEvent::Missed,
        PhoneEvent::DndOn,
        PhoneEvent::DndOff,
        PhoneEvent::ForwardOn,
        PhoneEvent::ForwardOff,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PhoneEvent::Registered => "registered",
            PhoneEvent::Unregistered => "unregistered",
            PhoneEvent::Ringing => "ringing",
            PhoneEvent::Calling => "calling",
            PhoneEvent::Established => "established",
            PhoneEvent::Held => "held",
            PhoneEvent::Resumed => "resumed",
            PhoneEvent::Ended => "ended",
            PhoneEvent::Missed => "missed",
            PhoneEvent::DndOn => "dnd-on",
            PhoneEvent::DndOff => "dnd-off",
            PhoneEvent::ForwardOn => "forward-on",
            PhoneEvent::ForwardOff => "forward-off",
        }
    }

    /// Our name (exactly, as the URLs we provision spell it).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|e| e.as_str() == s)
    }

    /// Whether the event is about a call (its URL carries the call id and
    /// the other party).
    pub fn is_call(self) -> bool {
        self.stage().is_some()
    }

    /// The stage a call event brings its call to (ended: 3).
    fn stage(self) -> Option<i64> {
        match self {
            PhoneEvent::Ringing | PhoneEvent::Calling => Some(1),
            PhoneEvent::Established | PhoneEvent::Held | PhoneEvent::Resumed => Some(2),
            PhoneEvent::Ended | PhoneEvent::Missed => Some(3),
            _ => None,
        }
    }
}

/// One event as a phone reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PhoneReport {
    pub event: PhoneEvent,
    /// The phone's call id (`""` when its family sends none).
    pub call_id: String,
    /// The other party: the user part of a SIP URI, or a number (`""`
    /// when not sent).
    pub remote: String,
    /// Whether the other party is an extension of the handset's own domain.
    pub internal: bool,
    /// When we received it (Unix ms).
    pub at: i64,
}

/// The longest call id kept.
pub const CALL_ID_MAX: usize = 128;
/// The longest other party kept.
pub const REMOTE_MAX: usize = 64;

/// The other party as a phone's variable gives it: `sip:0409@host`,
/// `"Name" <sip:0409@host;user=phone>`, `tel:+441234`, or a bare number.
/// Returns its user part, at most [`REMOTE_MAX`] printable characters;
/// `""` for nothing usable (an unsubstituted `$variable` included).
pub fn clean_remote(raw: &str) -> String {
    let mut s = raw.trim();
    if let (Some(open), Some(close)) = (s.find('<'), s.rfind('>')) {
        if open < close {
            s = &s[open + 1..close];
        }
    }
    for scheme in ["sips:", "sip:", "tel:"] {
        if s.len() >= scheme.len() && s[..scheme.len()].eq_ignore_ascii_case(scheme) {
            s = &s[scheme.len()..];
            break;
        }
    }
    let user = s.split(['@', ';', '?']).next().unwrap_or_default().trim();
    if user.contains('$')
        || user.chars().count() > REMOTE_MAX
        || user.chars().any(|c| c.is_control() || !c.is_ascii_graphic() && c != ' ')
    {
        return String::new();
    }
    user.to_string()
}

/// The phone's call id: printable ASCII, at most [`CALL_ID_MAX`]; `""`
/// for nothing usable (an unsubstituted `$variable` included).
pub fn clean_call_id(raw: &str) -> String {
    let s = raw.trim();
    if s.is_empty() || s.len() > CALL_ID_MAX || s.contains('$') || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return String::new();
    }
    s.to_string()
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
            call: CallTrack::default(),
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

    /// What a phone's own event makes of this status, and whether it
    /// changed anything (an event that arrives too late is ignored).
    ///
    /// Order comes from the phone's call id and our receive order: an
    /// event of a call already ended, or of a stage below the one its call
    /// reached (`ringing` after `established`), is ignored; held and
    /// resumed follow receive order. A call id other than the current
    /// call's starts tracking that call instead: a phone reports the call
    /// its user is busy with now, so the newest active one is shown (the
    /// older one comes back with its next event, e.g. `resumed`), except
    /// that the end of a call that is not the current one only remembers
    /// it as ended. Families whose events carry no call id (`""`) are
    /// ordered by receive order alone.
    pub fn apply_event(mut self, r: &PhoneReport) -> (Self, bool) {
        let Some(stage) = r.event.stage() else {
            match r.event {
                PhoneEvent::Registered if self.state == CallState::Unavailable => self.state = CallState::Idle,
                PhoneEvent::Registered => {}
                PhoneEvent::Unregistered => {
                    self.end_call(None);
                    self.state = CallState::Unavailable;
                }
                PhoneEvent::DndOn | PhoneEvent::DndOff => self.call.dnd = r.event == PhoneEvent::DndOn,
                _ => self.call.forward = r.event == PhoneEvent::ForwardOn,
            }
            self.call.event_at = r.at;
            return (self, true);
        };
        if !r.call_id.is_empty() && self.call.ended.contains(&r.call_id) {
            return (self, false);
        }
        let current = self.call.stage > 0 && (r.call_id.is_empty() || r.call_id == self.call.call_id);
        if current && stage < self.call.stage {
            return (self, false);
        }
        self.call.event_at = r.at;
        if matches!(r.event, PhoneEvent::Ended | PhoneEvent::Missed) {
            if current || self.call.stage == 0 || r.call_id.is_empty() {
                self.end_call(Some(&r.call_id));
            } else {
                remember_ended(&mut self.call.ended, &r.call_id);
            }
            return (self, true);
        }
        if !current {
            // A new call (or one we had not heard of): it is the one shown.
            self.call.call_id = r.call_id.clone();
            self.call.stage = 0;
            self.call.started_at = 0;
            self.calldirection = CallDirection::Unknown;
            self.otherpartyphonenumber.clear();
        }
        if !r.remote.is_empty() {
            self.otherpartyphonenumber = r.remote.clone();
        }
        let direction = |d| if r.internal { CallDirection::Internal } else { d };
        match r.event {
            PhoneEvent::Ringing => {
                self.state = CallState::Ringing;
                self.calldirection = direction(CallDirection::Inbound);
            }
            PhoneEvent::Calling => {
                self.state = CallState::Calling;
                self.calldirection = direction(CallDirection::Outbound);
            }
            PhoneEvent::Held => self.state = CallState::OnHold,
            _ => self.state = CallState::OnCall,
        }
        if stage == 2 && self.call.started_at == 0 {
            self.call.started_at = r.at;
        }
        self.call.stage = self.call.stage.max(stage);
        (self, true)
    }

    /// Back to idle, remembering `call_id` (if any) as ended.
    fn end_call(&mut self, call_id: Option<&str>) {
        let id = call_id.filter(|c| !c.is_empty()).map(str::to_string).unwrap_or_else(|| self.call.call_id.clone());
        if !id.is_empty() {
            remember_ended(&mut self.call.ended, &id);
        }
        self.call.call_id.clear();
        self.call.stage = 0;
        self.call.started_at = 0;
        if self.state != CallState::Unavailable {
            self.state = CallState::Idle;
        }
        self.calldirection = CallDirection::Unknown;
        self.calldurationseconds = 0;
        self.otherpartyphonenumber.clear();
    }

    /// The call's duration at `now_ms`: counted from its establishment
    /// while on a call (or on hold), else what was reported.
    pub fn duration_at(&self, now_ms: i64) -> i64 {
        match self.state {
            CallState::OnCall | CallState::OnHold if self.call.started_at > 0 => {
                (now_ms.saturating_sub(self.call.started_at) / 1000).max(0)
            }
            _ => self.calldurationseconds,
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

fn remember_ended(ended: &mut Vec<String>, id: &str) {
    ended.retain(|e| e != id);
    ended.insert(0, id.to_string());
    ended.truncate(ENDED_CALLS_KEPT);
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

    fn report(event: &str, call_id: &str, at: i64) -> PhoneReport {
        PhoneReport {
            event: PhoneEvent::parse(event).unwrap(),
            call_id: call_id.into(),
            remote: clean_remote("sip:0409123456@pbx.example.com;user=phone"),
            internal: false,
            at,
        }
    }

    fn apply(s: HandsetStatus, event: &str, call_id: &str, at: i64) -> (HandsetStatus, bool) {
        s.apply_event(&report(event, call_id, at))
    }

    #[test]
    fn a_call_goes_through_its_states() {
        let (s, _) = apply(HandsetStatus::default(), "registered", "", 1_000);
        assert_eq!(s.state, CallState::Idle);
        let (s, _) = apply(s, "ringing", "c1", 2_000);
        assert_eq!(
            (s.state, s.calldirection, s.summary().as_str()),
            (CallState::Ringing, CallDirection::Inbound, "ringing from 0409123456")
        );
        let (s, _) = apply(s, "established", "c1", 3_000);
        assert_eq!((s.state, s.summary().as_str()), (CallState::OnCall, "connected to 0409123456"));
        assert_eq!(s.duration_at(10_500), 7);
        let (s, _) = apply(s, "held", "c1", 4_000);
        assert_eq!(s.state, CallState::OnHold);
        let (s, _) = apply(s, "resumed", "c1", 5_000);
        assert_eq!(s.state, CallState::OnCall);
        let (s, changed) = apply(s, "ringing", "c1", 6_000);
        assert!(!changed, "a late ringing is ignored");
        assert_eq!(s.state, CallState::OnCall);
        let (s, _) = apply(s, "ended", "c1", 7_000);
        assert_eq!((s.state, s.summary().as_str(), s.duration_at(8_000)), (CallState::Idle, "idle", 0));
        let (s, changed) = apply(s, "established", "c1", 8_000);
        assert!(!changed, "an ended call stays ended");
        assert_eq!(s.state, CallState::Idle);
        let (s, _) = apply(s, "unregistered", "", 9_000);
        assert_eq!(s.state, CallState::Unavailable);
    }

    #[test]
    fn a_missed_call_ends_as_an_ended_one() {
        let idle = apply(HandsetStatus::default(), "registered", "", 1).0;
        let (s, _) = apply(idle, "ringing", "m1", 2);
        let (s, changed) = apply(s, "missed", "m1", 3);
        assert!(changed);
        assert_eq!((s.state, s.calldirection, s.summary().as_str()), (CallState::Idle, CallDirection::Unknown, "idle"));
        // A phone that also reports the end: nothing more happens.
        let (s, changed) = apply(s, "ended", "m1", 4);
        assert!(!changed);
        let (s, changed) = apply(s, "ringing", "m1", 5);
        assert!(!changed, "a missed call stays over");
        assert_eq!(s.state, CallState::Idle);
    }

    #[test]
    fn out_of_order_and_other_calls() {
        let idle = apply(HandsetStatus::default(), "registered", "", 1).0;
        // The end overtakes the establishment of the same call.
        let (s, _) = apply(idle.clone(), "calling", "c2", 2);
        assert_eq!((s.state, s.calldirection), (CallState::Calling, CallDirection::Outbound));
        let (s, _) = apply(s, "ended", "c2", 3);
        let (s, changed) = apply(s, "established", "c2", 4);
        assert!(!changed);
        assert_eq!(s.state, CallState::Idle);
        // A second call while on the first: the newest is shown; the end of
        // the first only remembers it.
        let (s, _) = apply(idle, "established", "a", 10);
        let (s, _) = apply(s, "ringing", "b", 11);
        assert_eq!((s.state, s.call.call_id.as_str()), (CallState::Ringing, "b"));
        let (s, _) = apply(s, "ended", "a", 12);
        assert_eq!(s.state, CallState::Ringing);
        let (s, changed) = apply(s, "resumed", "a", 13);
        assert!(!changed, "a is over");
        assert_eq!(s.state, CallState::Ringing);
        // DND and forward are flags beside the call.
        let (s, _) = apply(s, "dnd-on", "", 14);
        let (s, _) = apply(s, "forward-on", "", 15);
        assert!(s.call.dnd && s.call.forward && s.state == CallState::Ringing);
    }

    #[test]
    fn remote_parties_are_cleaned() {
        assert_eq!(clean_remote("sip:0409@host"), "0409");
        assert_eq!(clean_remote("\"Bob\" <sips:201@pbx:5061;transport=tls>"), "201");
        assert_eq!(clean_remote("tel:+441632960000"), "+441632960000");
        assert_eq!(clean_remote("0409123456"), "0409123456");
        assert_eq!(clean_remote("$remote"), "");
        assert_eq!(clean_remote("$$REMOTENUMBER$$"), "");
        assert_eq!(clean_remote(&"9".repeat(65)), "");
        assert_eq!(clean_remote("12\u{7}3"), "");
        assert_eq!(clean_call_id("a1b2@192.168.1.5"), "a1b2@192.168.1.5");
        assert_eq!(clean_call_id("$call_id"), "");
        assert_eq!(clean_call_id(&"x".repeat(129)), "");
    }

    #[test]
    fn registration_address_needs_a_port() {
        assert!(parse_registration_address("192.0.2.1").is_err());
        assert_eq!(parse_registration_address("").unwrap(), None);
        let a = parse_registration_address("[2001:db8::1]:5062").unwrap().unwrap();
        assert_eq!(a.port(), 5062);
    }
}
