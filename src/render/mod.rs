//! Rendering a phone's files from its handset record, its domain and the
//! vendor profile: the askama templates in `templates/<family>/`.

pub mod local_time;
pub mod templates;

pub use local_time::{Dst, DstChange, LocalTime};

/// Everything a per-phone template may use. Strings are validated before
/// they get here (one line, no control characters); XML templates escape
/// them, key/value templates write them as they are.
#[derive(Debug)]
pub struct PhoneContext<'a> {
    /// 12 lower-case hex digits, and the same upper-case.
    pub mac: &'a str,
    pub mac_upper: &'a str,
    /// The model from the handset record or the User-Agent; `""` if unknown.
    pub model: &'a str,
    /// The family's key set for this phone's firmware (see the profile's
    /// `variants`); `""` for the default keys.
    pub variant: &'a str,
    pub extension: &'a str,
    /// The SIP authentication user (the extension).
    pub auth_user: &'a str,
    pub password: &'a str,
    /// The handset's name, or the extension when it has none.
    pub display_name: &'a str,
    /// The line key label (as the display name).
    pub label: &'a str,
    /// The caller ID for outgoing calls; `""` for the platform's default.
    pub outgoing_cli: &'a str,
    pub recording: bool,
    pub sip_server: &'a str,
    pub sip_port: u16,
    /// `udp`, `tcp` or `tls`.
    pub sip_transport: &'a str,
    /// The phone's local time: its IANA zone (the handset's, else the
    /// domain's) with the offset and DST rule in vendors' shapes.
    pub time: &'a LocalTime,
    pub ntp_server: &'a str,
    /// Where the phone should fetch its files from, ending in `/`
    /// (as `https://prov.example.com/`).
    pub provisioning_url: &'a str,
    /// Periodic re-check of the config, in minutes.
    pub resync_minutes: u32,
    /// Random delay before a periodic or boot-time check, in seconds, so a
    /// site does not hit the server at once.
    pub resync_jitter_seconds: u32,
    /// The handset's revision, written into the file as a comment so that
    /// admins can see which one a phone has.
    pub revision: i64,
    /// Device credentials: the user (the MAC, lower case) and password the
    /// phone may prove itself with on later fetches.
    pub device_user: &'a str,
    pub device_password: &'a str,
    /// This server's address as the phone reaches it: the host of
    /// `provisioning_url` when it is an IP address, else `""` (a name the
    /// phone resolves; we do not). Remote-control allow lists (Yealink's
    /// `features.action_uri_limit_ip`) take addresses only.
    pub server_ip: String,
    /// The resync NOTIFY event the phone must accept.
    pub notify_event: &'a str,
    /// Extra vendor settings (domain < model < handset), validated for the
    /// vendor's format.
    pub settings: &'a [(String, String)],
    /// The family's action-URL keys, each with the URL of ours the phone
    /// calls on that event (profile `[events]`; empty for a family that has
    /// none): `(vendor key, URL)`, the URL with the vendor's variables in it.
    pub events: &'a [(String, String)],
}

/// Everything a common (per-family or per-model) file may use: the phone
/// is not known yet when it asks for these.
#[derive(Debug)]
pub struct CommonContext<'a> {
    /// The model named by the file (from its code or name); `""` if none.
    pub model: &'a str,
    /// The family's key set for the asking phone's firmware or the model
    /// (see the profile's `variants`); `""` for the default keys.
    pub variant: &'a str,
    /// The model code in the file name; `""` if none.
    pub code: &'a str,
    pub provisioning_url: &'a str,
    pub resync_minutes: u32,
    pub resync_jitter_seconds: u32,
    pub notify_event: &'a str,
}

use crate::model::{Domain, Handset};

/// How a vendor's config format carries values, which decides how extra
/// settings are escaped or refused.
#[derive(Clone, Copy, Debug, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `key = value` lines (Yealink, Fanvil).
    Keyvalue,
    /// XML elements or attributes (Polycom, Cisco, Grandstream, Snom XML).
    Xml,
}

/// How a family's phones report their calls (profile `[events]`): the
/// config key the template writes for each of our event names
/// (`model::PhoneEvent`), and the vendor's spelling of the variables the
/// phone substitutes in the URL; or `none`, why the family has no such keys.
#[derive(Clone, Debug, Default, serde::Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EventKeys {
    /// Why the family reports no events (with the source checked).
    #[serde(default)]
    pub none: Option<String>,
    /// `callid` and `remote`: the vendor's variables for the call id and
    /// the other party (a family without a call id leaves `callid` out).
    #[serde(default)]
    pub url_variables: std::collections::BTreeMap<String, String>,
    /// Our event name → the vendor's config key.
    #[serde(default)]
    pub keys: std::collections::BTreeMap<String, String>,
    /// A family whose phones POST XML notifications to one URL instead
    /// (Polycom's telephony event notification): the keys that set it up
    /// and how its elements map to our events.
    #[serde(default)]
    pub xml: Option<XmlEvents>,
}

/// Phones that POST their events as XML to one URL (`<base>xml`).
#[derive(Clone, Debug, Default, serde::Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct XmlEvents {
    /// The config key that takes our URL.
    pub url_key: String,
    /// Config keys that switch notifications on (written `1`).
    #[serde(default)]
    pub enable_keys: Vec<String>,
    /// The XML the phone posts, each rule tried in order on every element
    /// under the root (and on the root itself).
    pub rules: Vec<XmlRule>,
    /// A notification as the vendor documents it: the example of the
    /// OpenAPI document's XML body (checked at load: XML in which the
    /// rules find an event).
    #[serde(default)]
    pub example: Option<String>,
}

/// One kind of notification: an element (with, if given, an attribute of
/// that value) is our `event`; the other party is the text of the first
/// non-empty `remote` path (child element names joined by `/`).
#[derive(Clone, Debug, Default, serde::Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct XmlRule {
    pub element: String,
    #[serde(default)]
    pub attribute: Option<String>,
    #[serde(default)]
    pub value: Option<String>,
    pub event: String,
    #[serde(default)]
    pub remote: Vec<String>,
}

impl XmlRule {
    /// Whether `node` is this kind of notification.
    pub fn matches(&self, node: roxmltree::Node<'_, '_>) -> bool {
        node.is_element()
            && node.tag_name().name() == self.element
            && match (&self.attribute, &self.value) {
                (Some(a), Some(v)) => node.attribute(a.as_str()) == Some(v.as_str()),
                (Some(a), None) => node.attribute(a.as_str()).is_some(),
                _ => true,
            }
    }

    /// The other party named in `node`, or `""`.
    pub fn remote(&self, node: roxmltree::Node<'_, '_>) -> String {
        for path in &self.remote {
            let mut at = Some(node);
            for name in path.split('/') {
                at = at.and_then(|n| n.children().find(|c| c.is_element() && c.tag_name().name() == name));
            }
            let text = at.and_then(|n| n.text()).unwrap_or("").trim();
            if !text.is_empty() {
                return text.to_string();
            }
        }
        String::new()
    }
}

impl EventKeys {
    /// The config lines the family's phones are given, derived once at
    /// profile load (not on every phone file): for each event its key and
    /// the URL's tail after the base (`ringing?callid=$call_id&remote=…`);
    /// for an XML family its URL key (tail `xml`), then each enabling key
    /// with `1`. In our event order; call events carry the vendor's
    /// variables as `callid` and `remote`.
    pub fn settings(&self) -> Vec<EventSetting> {
        if let Some(xml) = &self.xml {
            let mut out = vec![EventSetting { key: xml.url_key.clone(), value: "xml".into(), under_base: true }];
            out.extend(xml.enable_keys.iter().map(|k| EventSetting { key: k.clone(), value: "1".into(), under_base: false }));
            return out;
        }
        crate::model::PhoneEvent::ALL
            .iter()
            .filter_map(|e| {
                let key = self.keys.get(e.as_str())?;
                let mut tail = e.as_str().to_string();
                if e.is_call() {
                    let vars: Vec<String> = ["callid", "remote"]
                        .iter()
                        .filter_map(|name| self.url_variables.get(*name).map(|v| format!("{name}={v}")))
                        .collect();
                    if !vars.is_empty() {
                        tail = format!("{tail}?{}", vars.join("&"));
                    }
                }
                Some(EventSetting { key: key.clone(), value: tail, under_base: true })
            })
            .collect()
    }

    /// What is wrong with the table, if anything (checked at profile load).
    pub fn check(&self) -> Result<(), String> {
        match (&self.none, self.keys.is_empty(), &self.xml) {
            (Some(_), false, _) | (Some(_), _, Some(_)) => return Err("events: `none` excludes `keys` and `xml`".into()),
            (None, false, Some(_)) => return Err("events: `keys` and `xml` exclude each other".into()),
            (None, true, None) => {
                return Err("events: give `keys` (and `url_variables`), `xml`, or `none` with the reason".into())
            }
            _ => {}
        }
        if let Some(xml) = &self.xml {
            let plain = |k: &str| !k.trim().is_empty() && !k.contains(['\n', '\r', '<', '>', '&', '"', ' ']);
            if !plain(&xml.url_key) || !xml.enable_keys.iter().all(|k| plain(k)) {
                return Err("events: xml: keys must be plain config keys".into());
            }
            if xml.rules.is_empty() {
                return Err("events: xml: no rules".into());
            }
            if let Some(r) = xml.rules.iter().find(|r| crate::model::PhoneEvent::parse(&r.event).is_none()) {
                return Err(format!("events: xml: unknown event {:?}", r.event));
            }
            if xml.rules.iter().any(|r| r.value.is_some() && r.attribute.is_none()) {
                return Err("events: xml: a rule's `value` needs its `attribute`".into());
            }
            if let Some(example) = &xml.example {
                let doc = roxmltree::Document::parse(example).map_err(|e| format!("events: xml: example: {e}"))?;
                let root = doc.root_element();
                let mut nodes = std::iter::once(root).chain(root.children().filter(|c| c.is_element()));
                if !nodes.any(|n| xml.rules.iter().any(|r| r.matches(n))) {
                    return Err("events: xml: the example holds no event the rules name".into());
                }
            }
        }
        if let Some(bad) = self.keys.keys().find(|k| crate::model::PhoneEvent::parse(k).is_none()) {
            return Err(format!("events: unknown event {bad:?}"));
        }
        if let Some(bad) = self.url_variables.keys().find(|k| !matches!(k.as_str(), "callid" | "remote")) {
            return Err(format!("events: url_variables: {bad:?} is neither callid nor remote"));
        }
        if let Some((k, _)) = self.keys.iter().find(|(_, v)| v.trim().is_empty() || v.contains(['\n', '\r', '<', '>', '&'])) {
            return Err(format!("events: the key of {k:?} must be a plain config key"));
        }
        Ok(())
    }
}

/// One config line of a family's event reporting (`EventKeys::settings`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventSetting {
    pub key: String,
    /// The URL's tail after the phone's event base, or a literal value.
    pub value: String,
    pub under_base: bool,
}

/// `(vendor key, value)` of each event setting under `base` (ending in `/`,
/// as `https://prov.example.com/ev/<token>/`; `""`: none at all).
pub fn event_lines(settings: &[EventSetting], base: &str) -> Vec<(String, String)> {
    if base.is_empty() {
        return Vec::new();
    }
    settings.iter().map(|s| (s.key.clone(), if s.under_base { format!("{base}{}", s.value) } else { s.value.clone() })).collect()
}

/// What a template needs to know of its vendor family.
#[derive(Clone, Copy, Debug)]
pub struct Vendor<'a> {
    pub format: Format,
    /// How its phones report their calls: the config lines of its
    /// `[events]`, derived at profile load.
    pub events: &'a [EventSetting],
    /// The resync NOTIFY event the family's phones accept.
    pub notify_event: &'a str,
    /// The family's own time-zone codes (profile `time_zones`).
    pub time_zones: &'a std::collections::BTreeMap<String, String>,
}

/// How often phones re-check their config on their own, and how much random
/// delay spreads a site's checks out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResyncPolicy {
    pub minutes: u32,
    pub jitter_seconds: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("template {0} is not a per-phone template")]
    NotPerPhone(String),
    #[error("template {0} is not a common template")]
    NotCommon(String),
    #[error("template {name}: {reason}")]
    Template { name: String, reason: String },
}

/// Renders a per-phone file for `handset` in `domain`, and until when (Unix
/// seconds) the file holds as rendered: the phone's local time (the only input read from the clock)
/// holds until its zone's next transition, or a day.
#[allow(clippy::too_many_arguments)]
pub fn render_phone_until(
    vendor: Vendor<'_>,
    template: &str,
    handset: &Handset,
    domain: &Domain,
    (model, variant): (&str, &str),
    base_url: &str,
    events_base: &str,
    resync: ResyncPolicy,
    settings: &[(String, String)],
) -> Result<(String, i64), RenderError> {
    let events = event_lines(vendor.events, events_base);
    let mac = handset.mac.map(|m| (m.lower(), m.upper())).unwrap_or_default();
    // XML names cannot hold spaces: such keys (Fanvil's) are not for XML
    // vendors, and are skipped rather than written broken.
    let xml_safe: Vec<(String, String)>;
    let settings = if vendor.format == Format::Xml && settings.iter().any(|(k, _)| k.contains(' ')) {
        xml_safe = settings.iter().filter(|(k, _)| !k.contains(' ')).cloned().collect();
        &xml_safe[..]
    } else {
        settings
    };
    // The handset's own zone, else its domain's.
    let zone = if handset.timezone.is_empty() { &domain.timezone } else { &handset.timezone };
    let (time, until) = local_time(vendor, zone);
    let display_name = if handset.name.is_empty() { handset.extensionnumber.as_str() } else { handset.name.as_str() };
    let c = PhoneContext {
        mac: &mac.0,
        mac_upper: &mac.1,
        model,
        variant,
        extension: &handset.extensionnumber,
        auth_user: &handset.extensionnumber,
        password: handset.password.expose(),
        display_name,
        label: display_name,
        outgoing_cli: &handset.outgoingcli,
        recording: handset.recording,
        sip_server: &domain.sip_server,
        sip_port: domain.sip_port,
        sip_transport: domain.sip_transport.as_str(),
        time: &time,
        ntp_server: &domain.ntp_server,
        provisioning_url: base_url,
        resync_minutes: resync.minutes,
        resync_jitter_seconds: resync.jitter_seconds,
        revision: handset.revision,
        device_user: &mac.0,
        device_password: handset.device_password.expose(),
        server_ip: server_ip(base_url),
        notify_event: vendor.notify_event,
        settings,
        events: &events,
    };
    match templates::render_phone(template, &c) {
        Some(r) => {
            r.map(|text| (text, until)).map_err(|e| RenderError::Template { name: template.into(), reason: e.to_string() })
        }
        None => Err(RenderError::NotPerPhone(template.into())),
    }
}

/// The host of `url` when it is an IP address (IPv6 without brackets).
fn server_ip(url: &str) -> String {
    let host = crate::model::url_host(url).unwrap_or_default();
    host.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>().map(|ip| ip.to_string()).unwrap_or_default()
}

/// The local time of `zone`. A zone stored before zones were checked
/// against the IANA database may be unknown: the phone then gets UTC
/// rather than no file, and the log says why.
fn local_time(vendor: Vendor<'_>, zone: &str) -> (LocalTime, i64) {
    LocalTime::new_until(zone, vendor.time_zones).unwrap_or_else(|e| {
        tracing::warn!(zone, "time zone: {e}; the phone is given UTC");
        LocalTime::new_until("UTC", vendor.time_zones).expect("UTC is in the bundled IANA database")
    })
}

/// Renders a common file (the phone is not identified yet).
pub fn render_common(
    vendor: Vendor<'_>,
    template: &str,
    (model, variant): (&str, &str),
    code: &str,
    base_url: &str,
    resync: ResyncPolicy,
) -> Result<String, RenderError> {
    let c = CommonContext {
        model,
        variant,
        code,
        provisioning_url: base_url,
        resync_minutes: resync.minutes,
        resync_jitter_seconds: resync.jitter_seconds,
        notify_event: vendor.notify_event,
    };
    match templates::render_common(template, &c) {
        Some(r) => r.map_err(|e| RenderError::Template { name: template.into(), reason: e.to_string() }),
        None => Err(RenderError::NotCommon(template.into())),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn server_ip_of_the_provisioning_url() {
        assert_eq!(super::server_ip("http://192.0.2.7:8080/p/tok/"), "192.0.2.7");
        assert_eq!(super::server_ip("https://[2001:db8::1]:8443/"), "2001:db8::1");
        assert_eq!(super::server_ip("https://prov.example.com/p/tok/"), "");
        assert_eq!(super::server_ip("tftp://10.0.0.5/"), "10.0.0.5");
    }
}
