//! What a verified device certificate says: the MAC(s) of the phone it was
//! issued to, read by each family's conventions (`device_cert_macs` in its
//! profile: `ATTRIBUTE=regex` with a `mac` group, over the subject's `CN`,
//! `ST`, `L`, `O`, `OU` or `serialNumber`, or `SAN` for its DNS names).

use regex::Regex;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::*;

use super::{ProfileError, Profiles};
use crate::model::Mac;

/// One compiled `device_cert_macs` entry.
#[derive(Clone, Debug)]
pub struct CertMacPattern {
    attribute: Attribute,
    pattern: Regex,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Attribute {
    Subject(&'static str),
    SubjectAltName,
}

const SUBJECT_ATTRIBUTES: &[(&str, &str)] =
    &[("CN", "2.5.4.3"), ("serialNumber", "2.5.4.5"), ("L", "2.5.4.7"), ("ST", "2.5.4.8"), ("O", "2.5.4.10"), ("OU", "2.5.4.11")];

impl CertMacPattern {
    pub fn parse(text: &str) -> Result<CertMacPattern, String> {
        let (attr, pattern) = text.split_once('=').ok_or("must be ATTRIBUTE=regex, as CN=^(?P<mac>[0-9a-f]{12})$")?;
        let attribute = match attr {
            "SAN" => Attribute::SubjectAltName,
            a => Attribute::Subject(
                SUBJECT_ATTRIBUTES
                    .iter()
                    .find(|(name, _)| *name == a)
                    .map(|(_, oid)| *oid)
                    .ok_or_else(|| format!("unknown attribute {a:?} (CN, ST, L, O, OU, serialNumber or SAN)"))?,
            ),
        };
        let pattern = Regex::new(pattern).map_err(|e| e.to_string())?;
        if !pattern.capture_names().flatten().any(|n| n == "mac") {
            return Err("the pattern has no (?P<mac>…) group".into());
        }
        Ok(CertMacPattern { attribute, pattern })
    }
}

/// Compiles a profile's `device_cert_macs`.
pub(super) fn compile(source: &str, patterns: &[String]) -> Result<Vec<CertMacPattern>, ProfileError> {
    patterns
        .iter()
        .map(|p| {
            CertMacPattern::parse(p)
                .map_err(|reason| ProfileError { file: source.to_string(), reason: format!("device_cert_macs: {p:?}: {reason}") })
        })
        .collect()
}

impl Profiles {
    /// The MACs a (verified) device certificate names, by any family's
    /// conventions; empty when it names none we know how to read.
    pub fn macs_in_certificate(&self, der: &[u8]) -> Vec<Mac> {
        let Ok((_, cert)) = parse_x509_certificate(der) else { return Vec::new() };
        let mut values: Vec<(Attribute, String)> = Vec::new();
        for attr in cert.subject().iter_attributes() {
            let oid = attr.attr_type().to_id_string();
            if let (Some((_, known)), Ok(value)) = (SUBJECT_ATTRIBUTES.iter().find(|(_, o)| *o == oid), attr.as_str()) {
                values.push((Attribute::Subject(known), value.to_string()));
            }
        }
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                if let GeneralName::DNSName(n) | GeneralName::URI(n) = name {
                    values.push((Attribute::SubjectAltName, n.to_string()));
                }
            }
        }
        let mut macs = Vec::new();
        for p in self.iter().flat_map(|p| &p.cert_mac_patterns) {
            for (attr, value) in &values {
                if *attr != p.attribute {
                    continue;
                }
                let mac = p.pattern.captures(value).and_then(|c| c.name("mac")).and_then(|m| m.as_str().parse::<Mac>().ok());
                if let Some(mac) = mac.filter(|m| !macs.contains(m)) {
                    macs.push(mac);
                }
            }
        }
        macs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_name_a_known_attribute_and_a_mac_group() {
        CertMacPattern::parse("ST=^(?P<mac>[0-9a-f]{12})$").unwrap();
        CertMacPattern::parse("SAN=^(?P<mac>[0-9a-f]{12})\\.phones$").unwrap();
        assert!(CertMacPattern::parse("XX=(?P<mac>.*)").unwrap_err().contains("unknown attribute"));
        assert!(CertMacPattern::parse("CN=^[0-9a-f]{12}$").unwrap_err().contains("mac"));
        assert!(CertMacPattern::parse("CN").is_err());
    }

    /// Certificates made with rcgen the way the vendors' guides describe
    /// theirs (Cisco MPP: subject `OU=<product>, L=<serial>, S=<mac>`).
    #[test]
    fn the_built_in_conventions_read_the_mac() {
        let profiles = Profiles::built_in();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(rcgen::DnType::OrganizationalUnitName, "CP-8841-3PCC");
        params.distinguished_name.push(rcgen::DnType::LocalityName, "FCH1234ABCD");
        params.distinguished_name.push(rcgen::DnType::StateOrProvinceName, "00562b043615");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(profiles.macs_in_certificate(cert.der()), vec!["00562b043615".parse::<Mac>().unwrap()]);

        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, "somebody else");
        let cert = params.self_signed(&key).unwrap();
        assert!(profiles.macs_in_certificate(cert.der()).is_empty());
        assert!(profiles.macs_in_certificate(b"not a certificate").is_empty());
    }
}
