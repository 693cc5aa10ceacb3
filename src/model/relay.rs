//! How a domain's pushes reach its phones: a direct SIP NOTIFY, or relayed
//! through the voice platform (Asterisk AMI, or a signed webhook) for phones
//! that accept a NOTIFY only from their registrar.

use super::{validate_host, validate_token, FieldError, Secret};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PushRelay {
    Direct,
    Ami { host: String, port: u16, user: String, secret: Secret },
    Webhook { url: String, secret: Secret },
}

impl PushRelay {
    pub fn kind(&self) -> &'static str {
        match self {
            PushRelay::Direct => "direct",
            PushRelay::Ami { .. } => "ami",
            PushRelay::Webhook { .. } => "webhook",
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
            _ => Err(FieldError::new("pushbackend", "must be direct, ami or webhook")),
        }
    }
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
    }
}
