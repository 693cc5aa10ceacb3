//! How a domain's pushes reach its phones: a direct SIP NOTIFY, or relayed
//! for phones that accept a NOTIFY only from their registrar (phones behind
//! NAT can be reached only through it): through the registrar itself (a
//! NOTIFY to the phone's address of record, which the registrar delivers
//! over the phone's NAT binding), or through the voice platform (Asterisk
//! AMI, or a signed webhook).

use super::domain::parse_sip_server;
use super::status::Transport;
use super::{validate_host, validate_token, FieldError, Secret};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PushRelay {
    Direct,
    Ami {
        host: String,
        port: u16,
        user: String,
        secret: Secret,
    },
    Webhook {
        url: String,
        secret: Secret,
    },
    /// `relay` is `host:port`, or `None` for the domain's SIP server.
    Registrar {
        relay: Option<(String, u16)>,
        transport: Transport,
    },
}

impl PushRelay {
    pub fn kind(&self) -> &'static str {
        match self {
            PushRelay::Direct => "direct",
            PushRelay::Ami { .. } => "ami",
            PushRelay::Webhook { .. } => "webhook",
            PushRelay::Registrar { .. } => "registrar",
        }
    }
}

/// The relay settings as stored and as the API takes them, field by field.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RelaySettings {
    pub backend: String,
    pub ami_host: String,
    pub ami_port: u16,
    pub ami_user: String,
    pub ami_secret: Secret,
    pub webhook_url: String,
    pub webhook_secret: Secret,
    /// `host:port` of the registrar; `""` means the domain's SIP server.
    pub registrar_relay: String,
    pub registrar_transport: Transport,
}

impl RelaySettings {
    /// The relay these settings describe, or why they describe none.
    pub fn relay(&self) -> Result<PushRelay, FieldError> {
        match self.backend.as_str() {
            "" | "direct" => Ok(PushRelay::Direct),
            "ami" => {
                validate_host("amihost", &self.ami_host)?;
                validate_token("amiuser", &self.ami_user, 64)?;
                validate_line("amisecret", self.ami_secret.expose())?;
                if self.ami_port == 0 {
                    return Err(FieldError::new("amiport", "must be a port number from 1 to 65535"));
                }
                Ok(PushRelay::Ami {
                    host: self.ami_host.clone(),
                    port: self.ami_port,
                    user: self.ami_user.clone(),
                    secret: self.ami_secret.clone(),
                })
            }
            "webhook" => {
                validate_webhook_url(&self.webhook_url)?;
                validate_line("webhooksecret", self.webhook_secret.expose())?;
                Ok(PushRelay::Webhook { url: self.webhook_url.clone(), secret: self.webhook_secret.clone() })
            }
            "registrar" => Ok(PushRelay::Registrar {
                relay: parse_registrar_relay(&self.registrar_relay, self.registrar_transport)?,
                transport: self.registrar_transport,
            }),
            _ => Err(FieldError::new("pushbackend", "must be direct, registrar, ami or webhook")),
        }
    }
}

/// `host[:port]` (port 5060, 5061 over TLS, when left out), or `""` for
/// the domain's SIP server.
pub fn parse_registrar_relay(s: &str, transport: Transport) -> Result<Option<(String, u16)>, FieldError> {
    if s.trim().is_empty() {
        return Ok(None);
    }
    let (host, port) = parse_sip_server(s).map_err(|e| FieldError::new("registrarrelay", e.reason))?;
    let default = if transport == Transport::Tls { 5061 } else { 5060 };
    Ok(Some((host, port.unwrap_or(default))))
}

/// A secret that goes into a protocol line: 1–128 printable characters.
fn validate_line(field: &'static str, s: &str) -> Result<(), FieldError> {
    let ok = (1..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic());
    ok.then_some(()).ok_or_else(|| FieldError::new(field, "must be 1-128 printable ASCII characters without spaces"))
}

/// HTTPS, except to a relay on this machine (loopback) where plain HTTP is
/// allowed.
pub fn validate_webhook_url(url: &str) -> Result<(), FieldError> {
    let err = || FieldError::new("webhookurl", "must be an https:// URL (http:// only to 127.0.0.1 or [::1])");
    let rest = if let Some(r) = url.strip_prefix("https://") {
        r
    } else if let Some(r) = url.strip_prefix("http://") {
        if !(r.starts_with("127.0.0.1:") || r.starts_with("127.0.0.1/") || r.starts_with("[::1]")) {
            return Err(err());
        }
        r
    } else {
        return Err(err());
    };
    let ok = url.len() <= 500 && !rest.is_empty() && url.bytes().all(|b| b.is_ascii_graphic());
    ok.then_some(()).ok_or_else(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relays() {
        let mut r = RelaySettings {
            backend: "ami".into(),
            ami_host: "pbx.example.com".into(),
            ami_port: 5038,
            ami_user: "autoprov".into(),
            ami_secret: Secret::new("s3cret"),
            ..Default::default()
        };
        assert_eq!(r.relay().unwrap().kind(), "ami");
        r.ami_secret = Secret::new("bad\r\nAction: Originate");
        assert!(r.relay().is_err());
        assert!(validate_webhook_url("https://hooks.example.com/autoprov").is_ok());
        assert!(validate_webhook_url("http://127.0.0.1:9000/hook").is_ok());
        assert!(validate_webhook_url("http://hooks.example.com/").is_err());
        assert!(validate_webhook_url("ftp://x").is_err());
        assert!(RelaySettings { backend: "carrier-pigeon".into(), ..Default::default() }.relay().is_err());
        let registrar = |relay: &str| {
            RelaySettings { backend: "registrar".into(), registrar_relay: relay.into(), ..Default::default() }.relay()
        };
        assert_eq!(registrar("").unwrap(), PushRelay::Registrar { relay: None, transport: Transport::Udp });
        assert_eq!(
            registrar("sip.example.com").unwrap(),
            PushRelay::Registrar { relay: Some(("sip.example.com".into(), 5060)), transport: Transport::Udp }
        );
        assert_eq!(
            registrar("192.0.2.5:5080").unwrap(),
            PushRelay::Registrar { relay: Some(("192.0.2.5".into(), 5080)), transport: Transport::Udp }
        );
        assert!(registrar("bad host:5060").is_err());
        let tls = RelaySettings {
            backend: "registrar".into(),
            registrar_relay: "sip.example.com".into(),
            registrar_transport: Transport::Tls,
            ..Default::default()
        };
        assert_eq!(
            tls.relay().unwrap(),
            PushRelay::Registrar { relay: Some(("sip.example.com".into(), 5061)), transport: Transport::Tls }
        );
    }
}
