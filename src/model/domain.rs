//! Domains (tenants) and the settings every phone of the domain is given.

use std::collections::BTreeMap;

use super::access::ProvisioningAccess;
use super::relay::RelaySettings;
use super::settings::ExtraSettings;
use super::status::Transport;
use super::Secret;
use super::{validate_host, FieldError};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Domain {
    pub id: i64,
    pub name: String,
    pub sip_server: String,
    pub sip_port: u16,
    pub sip_transport: Transport,
    pub timezone: String,
    pub ntp_server: String,
    /// Extra vendor settings for every phone of the domain (bottom layer).
    pub settings: ExtraSettings,
    /// Extra settings per model name (middle layer).
    pub model_settings: BTreeMap<String, ExtraSettings>,
    /// How pushes reach the domain's phones.
    pub relay: RelaySettings,
    /// The dialplan context of the domain's AMI call actions (`Originate`,
    /// `Redirect`, `Atxfer`): where the number dialled is looked up.
    pub ami_context: String,
    /// Claiming a phone for an extension the domain lacks creates it.
    pub claim_creates: bool,
    /// Where the domain's phones fetch from: its users see the unknown
    /// phones seen last from these networks.
    pub site_networks: Vec<ipnet::IpNet>,
    /// The provisioning token and what the domain demands of phones.
    pub access: ProvisioningAccess,
}

/// A partial change of a domain's settings; `None` leaves a field alone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DomainChanges {
    pub sip_server: Option<String>,
    pub sip_port: Option<u16>,
    pub sip_transport: Option<Transport>,
    pub timezone: Option<String>,
    pub ntp_server: Option<String>,
    pub settings: Option<ExtraSettings>,
    pub model_settings: Option<BTreeMap<String, ExtraSettings>>,
    pub push_backend: Option<String>,
    pub ami_host: Option<String>,
    pub ami_port: Option<u16>,
    pub ami_user: Option<String>,
    pub ami_secret: Option<Secret>,
    pub ami_context: Option<String>,
    pub webhook_url: Option<String>,
    pub webhook_secret: Option<Secret>,
    pub registrar_relay: Option<String>,
    pub registrar_transport: Option<Transport>,
    pub claim_creates: Option<bool>,
    pub site_networks: Option<Vec<ipnet::IpNet>>,
    pub require_token: Option<bool>,
    pub require_client_cert: Option<bool>,
}

/// Domain fields that are not what phones are told (how pushes travel, what
/// claims may do): a change to them bumps no revision.
pub const NON_CONFIG_FIELDS: &[&str] = &[
    "pushbackend",
    "amihost",
    "amiport",
    "amiuser",
    "amisecret",
    "amicontext",
    "webhookurl",
    "webhooksecret",
    "registrarrelay",
    "registrartransport",
    "claimcreates",
    "sitenetworks",
    "requiretoken",
    "requireclientcert",
];

/// Domain names are one DNS label: a user may log in as
/// `name@mycompany.example.com` and we look up `mycompany`.
pub fn validate_domain_name(s: &str) -> Result<(), FieldError> {
    let ok = (1..=63).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-');
    ok.then_some(()).ok_or_else(|| FieldError::new("domain", "must be 1-63 lower-case letters, digits or '-' (one DNS label)"))
}

/// `HOST[:PORT]` as given to `autoprov domain add --sip-server`.
pub fn parse_sip_server(s: &str) -> Result<(String, Option<u16>), FieldError> {
    let s = s.trim();
    if let Ok(addr) = s.parse::<std::net::SocketAddr>() {
        return Ok((addr.ip().to_string(), Some(addr.port())));
    }
    match s.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => {
            let port = parse_port(port)?;
            validate_host("sipserver", host)?;
            Ok((host.to_string(), Some(port)))
        }
        _ => {
            let host = s.trim_start_matches('[').trim_end_matches(']');
            validate_host("sipserver", host)?;
            Ok((host.to_string(), None))
        }
    }
}

pub fn parse_port(s: &str) -> Result<u16, FieldError> {
    match s.trim().parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(FieldError::new("sipport", "must be a port number from 1 to 65535")),
    }
}

/// A zone of the IANA database bundled in `jiff` (`Europe/London`,
/// `Etc/GMT+5`, `UTC`): phones get its offset and DST rule from there.
pub fn validate_timezone(s: &str) -> Result<(), FieldError> {
    let ok = (1..=64).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-' | b'+'))
        && jiff::tz::db().get(s).is_ok();
    ok.then_some(()).ok_or_else(|| FieldError::new("timezone", "must be an IANA time zone name such as Europe/London"))
}

/// The context AMI call actions dial in when none is set (FreePBX's, and
/// the one Asterisk's sample `extensions.conf` gives internal phones).
pub const DEFAULT_AMI_CONTEXT: &str = "from-internal";

/// An Asterisk dialplan context name: 1–79 of `A-Z a-z 0-9 _ -` (Asterisk's
/// `AST_MAX_CONTEXT` is 80 with the NUL; nothing that could end an AMI line
/// or name another context).
pub fn validate_dialplan_context(s: &str) -> Result<(), FieldError> {
    let ok = (1..=79).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    ok.then_some(()).ok_or_else(|| {
        FieldError::new("amicontext", "must be a dialplan context: 1-79 of the letters A-Z, a-z, digits, '_' and '-'")
    })
}

impl DomainChanges {
    pub fn validate(&self) -> Result<(), FieldError> {
        if let Some(s) = &self.sip_server {
            if !s.is_empty() {
                validate_host("sipserver", s)?;
            }
        }
        if let Some(t) = &self.timezone {
            validate_timezone(t)?;
        }
        if let Some(n) = &self.ntp_server {
            if !n.is_empty() {
                validate_host("ntpserver", n)?;
            }
        }
        if let Some(c) = &self.ami_context {
            validate_dialplan_context(c)?;
        }
        if let Some(r) = &self.registrar_relay {
            super::relay::parse_registrar_relay(r, self.registrar_transport.unwrap_or_default())?;
        }
        if let Some(s) = &self.settings {
            super::settings::validate("settings", s)?;
        }
        for (model, s) in self.model_settings.iter().flatten() {
            super::validate_token("modelsettings", model, 64)?;
            super::settings::validate("modelsettings", s)?;
        }
        Ok(())
    }

    /// Applies the changes to `d` and names the fields whose value changed.
    pub fn apply(&self, d: &mut Domain) -> Vec<&'static str> {
        let mut changed = Vec::new();
        set(&mut changed, "sipserver", &mut d.sip_server, &self.sip_server);
        set(&mut changed, "sipport", &mut d.sip_port, &self.sip_port);
        set(&mut changed, "siptransport", &mut d.sip_transport, &self.sip_transport);
        set(&mut changed, "timezone", &mut d.timezone, &self.timezone);
        set(&mut changed, "ntpserver", &mut d.ntp_server, &self.ntp_server);
        set(&mut changed, "settings", &mut d.settings, &self.settings);
        set(&mut changed, "modelsettings", &mut d.model_settings, &self.model_settings);
        let r = &mut d.relay;
        set(&mut changed, "pushbackend", &mut r.backend, &self.push_backend);
        set(&mut changed, "amihost", &mut r.ami_host, &self.ami_host);
        set(&mut changed, "amiport", &mut r.ami_port, &self.ami_port);
        set(&mut changed, "amiuser", &mut r.ami_user, &self.ami_user);
        set(&mut changed, "amisecret", &mut r.ami_secret, &self.ami_secret);
        set(&mut changed, "amicontext", &mut d.ami_context, &self.ami_context);
        set(&mut changed, "webhookurl", &mut r.webhook_url, &self.webhook_url);
        set(&mut changed, "webhooksecret", &mut r.webhook_secret, &self.webhook_secret);
        set(&mut changed, "registrarrelay", &mut r.registrar_relay, &self.registrar_relay);
        set(&mut changed, "registrartransport", &mut r.registrar_transport, &self.registrar_transport);
        set(&mut changed, "claimcreates", &mut d.claim_creates, &self.claim_creates);
        set(&mut changed, "sitenetworks", &mut d.site_networks, &self.site_networks);
        set(&mut changed, "requiretoken", &mut d.access.require_token, &self.require_token);
        set(&mut changed, "requireclientcert", &mut d.access.require_client_cert, &self.require_client_cert);
        changed
    }
}

/// The most networks a domain may name.
pub const MAX_SITE_NETWORKS: usize = 64;

/// The broadest site network a domain may name: a site's public addresses
/// fit in these, and anything wider would claim other tenants' phones.
pub const WIDEST_SITE_NETWORK_V4: u8 = 16;
pub const WIDEST_SITE_NETWORK_V6: u8 = 48;

/// Site networks as people write them: CIDRs or single addresses, separated
/// by commas, spaces or lines. Host bits are cleared (`192.0.2.7/24` is
/// `192.0.2.0/24`); networks broader than /16 (IPv4) or /48 (IPv6) are
/// refused.
pub fn parse_site_networks<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<Vec<ipnet::IpNet>, FieldError> {
    let mut nets = Vec::new();
    for item in items.into_iter().flat_map(|s| s.split(|c: char| c == ',' || c.is_whitespace())).filter(|s| !s.is_empty()) {
        let net = item
            .parse::<ipnet::IpNet>()
            .or_else(|_| item.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
            .map_err(|_| FieldError::new("sitenetworks", format!("{item:?} is not an address or a CIDR such as 203.0.113.0/24")))?
            .trunc();
        if !narrow_enough(&net) {
            return Err(FieldError::new(
                "sitenetworks",
                format!("{net} is too broad: a site network is at most a /{WIDEST_SITE_NETWORK_V4} (IPv4) or /{WIDEST_SITE_NETWORK_V6} (IPv6)"),
            ));
        }
        if !nets.contains(&net) {
            nets.push(net);
        }
    }
    if nets.len() > MAX_SITE_NETWORKS {
        return Err(FieldError::new("sitenetworks", format!("at most {MAX_SITE_NETWORKS} networks")));
    }
    Ok(nets)
}

/// Site networks as stored. Networks written before the breadth rule are
/// dropped (they grant nothing) rather than failing every read of the domain.
pub fn stored_site_networks(text: &str) -> Result<Vec<ipnet::IpNet>, FieldError> {
    let all = text.split(',').map(str::trim).filter(|s| !s.is_empty());
    let narrow: Vec<&str> = all.filter(|s| s.parse::<ipnet::IpNet>().map_or(true, |n| narrow_enough(&n))).collect();
    parse_site_networks(narrow)
}

fn narrow_enough(net: &ipnet::IpNet) -> bool {
    match net {
        ipnet::IpNet::V4(n) => n.prefix_len() >= WIDEST_SITE_NETWORK_V4,
        ipnet::IpNet::V6(n) => n.prefix_len() >= WIDEST_SITE_NETWORK_V6,
    }
}

/// Site networks as they are shown and stored: `203.0.113.7/32, 192.0.2.0/24`.
pub fn site_networks_text(nets: &[ipnet::IpNet]) -> String {
    nets.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", ")
}

/// Sets `slot` to `new` when given and different, recording the field name.
pub(crate) fn set<T: PartialEq + Clone>(changed: &mut Vec<&'static str>, name: &'static str, slot: &mut T, new: &Option<T>) {
    if let Some(v) = new {
        if slot != v {
            *slot = v.clone();
            changed.push(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sip_server_with_and_without_port() {
        assert_eq!(parse_sip_server("sip.example.com").unwrap(), ("sip.example.com".into(), None));
        assert_eq!(parse_sip_server("sip.example.com:5080").unwrap(), ("sip.example.com".into(), Some(5080)));
        assert_eq!(parse_sip_server("192.0.2.1:5060").unwrap(), ("192.0.2.1".into(), Some(5060)));
        assert_eq!(parse_sip_server("[2001:db8::1]:5060").unwrap(), ("2001:db8::1".into(), Some(5060)));
        assert_eq!(parse_sip_server("2001:db8::1").unwrap(), ("2001:db8::1".into(), None));
        assert!(parse_sip_server("sip.example.com:0").is_err());
        assert!(parse_sip_server("bad host").is_err());
    }

    #[test]
    fn site_networks_as_written() {
        let nets = parse_site_networks(["203.0.113.7, 192.0.2.9/24\n2001:db8:5::/48 192.0.2.0/24"]).unwrap();
        let shown: Vec<String> = nets.iter().map(|n| n.to_string()).collect();
        assert_eq!(shown, ["203.0.113.7/32", "192.0.2.0/24", "2001:db8:5::/48"]);
        assert_eq!(parse_site_networks([""]).unwrap(), []);
        assert!(parse_site_networks(["10.0.0.0/33"]).is_err());
        assert!(parse_site_networks(["office"]).unwrap_err().to_string().contains("office"));
        assert!(parse_site_networks(["10.0.0.0/15"]).unwrap_err().to_string().contains("too broad"));
        assert!(parse_site_networks(["2001:db8::/47"]).is_err());
        parse_site_networks(["10.1.0.0/16, 2001:db8:1::/48"]).unwrap();
        let kept = stored_site_networks("0.0.0.0/0, 203.0.113.7/32").unwrap();
        assert_eq!(site_networks_text(&kept), "203.0.113.7/32");
    }

    #[test]
    fn dialplan_contexts() {
        for good in ["from-internal", "ctx_2", &"a".repeat(79)] {
            validate_dialplan_context(good).unwrap();
        }
        for bad in ["", "from internal", "a,b", "ctx\r\nAction: Originate", &"a".repeat(80), "kontext-ü"] {
            assert!(validate_dialplan_context(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn domain_names() {
        validate_domain_name("mycompany").unwrap();
        assert!(validate_domain_name("MyCompany").is_err());
        assert!(validate_domain_name("my.company").is_err());
    }
}
