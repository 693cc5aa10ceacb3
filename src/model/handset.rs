//! Handsets: one extension of a domain, the phone (MAC) assigned to it, and
//! what goes into that phone's config.

use super::domain::set;
use super::settings::ExtraSettings;
use super::{validate_extension, validate_text, validate_token, FieldError, Mac, Secret};

/// Fields whose change alters what the phone is configured with: a change to
/// any of them bumps the handset's `revision`. `location` and `notes` are
/// for people, not phones.
pub const CONFIG_FIELDS: &[&str] = &["name", "password", "outgoingcli", "recording", "mac", "model", "settings"];

/// The length of generated SIP passwords.
pub const GENERATED_PASSWORD_LEN: usize = 20;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handset {
    pub id: i64,
    pub domain_id: i64,
    pub extensionnumber: String,
    pub name: String,
    pub password: Secret,
    pub location: String,
    pub outgoingcli: String,
    pub recording: bool,
    pub notes: String,
    pub mac: Option<Mac>,
    pub model: Option<String>,
    pub revision: i64,
    /// Extra vendor settings of this handset (the top layer).
    pub settings: ExtraSettings,
    /// The device-credential password the phone is given in its config
    /// and may fetch with later (user: its MAC). Drawn anew when the MAC
    /// changes, so a replaced phone's credentials open nothing.
    pub device_password: Secret,
}

/// A partial change (Handset Update) or, with `extensionnumber`, a creation.
/// `None` leaves a field alone; `Some(None)` for `mac`/`model` clears it.
#[derive(Clone, Debug, Default)]
pub struct HandsetChanges {
    pub name: Option<String>,
    pub password: Option<Secret>,
    pub location: Option<String>,
    pub outgoingcli: Option<String>,
    pub recording: Option<bool>,
    pub notes: Option<String>,
    pub mac: Option<Option<Mac>>,
    pub model: Option<Option<String>>,
    pub settings: Option<ExtraSettings>,
}

/// A handset to create.
#[derive(Clone, Debug)]
pub struct NewHandset {
    pub extensionnumber: String,
    pub fields: HandsetChanges,
}

impl HandsetChanges {
    pub fn validate(&self) -> Result<(), FieldError> {
        if let Some(v) = &self.name {
            validate_text("name", v, 64)?;
        }
        if let Some(v) = &self.password {
            validate_sip_password(v.expose())?;
        }
        if let Some(v) = &self.location {
            validate_text("location", v, 128)?;
        }
        if let Some(v) = &self.outgoingcli {
            validate_outgoing_cli(v)?;
        }
        if let Some(v) = &self.notes {
            validate_notes(v)?;
        }
        if let Some(Some(v)) = &self.model {
            validate_token("model", v, 64)?;
        }
        if let Some(v) = &self.settings {
            super::settings::validate("settings", v)?;
        }
        Ok(())
    }

    /// Applies the changes to `h`, returning the names of the fields whose
    /// value really changed, and bumps `revision` by one when any of them is
    /// a [`CONFIG_FIELDS`] field.
    pub fn apply(&self, h: &mut Handset) -> Vec<&'static str> {
        let mut changed = Vec::new();
        set(&mut changed, "name", &mut h.name, &self.name);
        set(&mut changed, "password", &mut h.password, &self.password);
        set(&mut changed, "location", &mut h.location, &self.location);
        set(&mut changed, "outgoingcli", &mut h.outgoingcli, &self.outgoingcli);
        set(&mut changed, "recording", &mut h.recording, &self.recording);
        set(&mut changed, "notes", &mut h.notes, &self.notes);
        set(&mut changed, "mac", &mut h.mac, &self.mac);
        set(&mut changed, "model", &mut h.model, &self.model);
        set(&mut changed, "settings", &mut h.settings, &self.settings);
        if changed.contains(&"mac") {
            h.device_password = super::access::new_device_password();
        }
        if changed.iter().any(|f| CONFIG_FIELDS.contains(f)) {
            h.revision += 1;
        }
        changed
    }

    pub fn is_empty(&self) -> bool {
        self.name.is_none()
            && self.password.is_none()
            && self.location.is_none()
            && self.outgoingcli.is_none()
            && self.recording.is_none()
            && self.notes.is_none()
            && self.mac.is_none()
            && self.model.is_none()
            && self.settings.is_none()
    }
}

impl NewHandset {
    /// Validates and fills the defaults of a new handset (a generated SIP
    /// password when none is given).
    pub fn into_handset(self, domain_id: i64) -> Result<Handset, FieldError> {
        validate_extension(&self.extensionnumber)?;
        self.fields.validate()?;
        let f = self.fields;
        Ok(Handset {
            id: 0,
            domain_id,
            extensionnumber: self.extensionnumber,
            name: f.name.unwrap_or_default(),
            password: f.password.unwrap_or_else(|| Secret::generate(GENERATED_PASSWORD_LEN)),
            location: f.location.unwrap_or_default(),
            outgoingcli: f.outgoingcli.unwrap_or_default(),
            recording: f.recording.unwrap_or(false),
            notes: f.notes.unwrap_or_default(),
            mac: f.mac.flatten(),
            model: f.model.flatten(),
            revision: 1,
            settings: f.settings.unwrap_or_default(),
            device_password: super::access::new_device_password(),
        })
    }
}

/// SIP passwords go verbatim into every vendor's config format, so they are
/// printable ASCII without spaces, quotes, `<`, `>`, `&` or `\`: characters
/// that some vendors' parsers mangle however they are escaped.
fn validate_sip_password(s: &str) -> Result<(), FieldError> {
    let ok = (1..=64).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b'\'' | b'<' | b'>' | b'&' | b'\\'));
    ok.then_some(()).ok_or_else(|| {
        FieldError::new("password", "must be 1-64 printable ASCII characters without spaces, quotes, '<', '>', '&' or '\\'")
    })
}

/// The caller ID presented on outgoing calls: a phone number, `+` allowed
/// first, or empty for the platform's default.
fn validate_outgoing_cli(s: &str) -> Result<(), FieldError> {
    let digits = s.strip_prefix('+').unwrap_or(s);
    let ok = s.is_empty() || ((1..=20).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()));
    ok.then_some(())
        .ok_or_else(|| FieldError::new("outgoingcli", "must be a phone number of up to 20 digits, optionally starting with '+'"))
}

/// Notes are for people: line breaks and tabs are fine, other control
/// characters are not.
fn validate_notes(s: &str) -> Result<(), FieldError> {
    if s.chars().count() > 2000 {
        return Err(FieldError::new("notes", "must be at most 2000 characters"));
    }
    if s.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) {
        return Err(FieldError::new("notes", "must not contain control characters other than line breaks and tabs"));
    }
    Ok(())
}

/// A model as a phone reported it (`X6U Pro` in a Fanvil User-Agent) as a
/// handset's model (`X6U-Pro`, as the profiles name it); `None` when it
/// cannot be one.
pub fn model_from_report(reported: &str) -> Option<String> {
    let model = reported.trim().replace(' ', "-");
    validate_token("model", &model, 64).is_ok().then_some(model)
}

/// Jingl sends booleans as `true`/`false` or as the strings `"true"`/`"false"`.
pub fn parse_bool(field: &'static str, v: &serde_json::Value) -> Result<bool, FieldError> {
    match v {
        serde_json::Value::Bool(b) => Ok(*b),
        serde_json::Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        serde_json::Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        _ => Err(FieldError::new(field, "must be true or false")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handset() -> Handset {
        NewHandset { extensionnumber: "100".into(), fields: HandsetChanges::default() }.into_handset(1).unwrap()
    }

    #[test]
    fn new_handsets_get_a_generated_password() {
        let h = handset();
        assert!(h.password.expose().len() >= 16);
        assert_eq!(h.revision, 1);
    }

    #[test]
    fn only_config_changes_bump_the_revision() {
        let mut h = handset();
        let notes = HandsetChanges { notes: Some("desk by the window".into()), ..Default::default() };
        assert_eq!(notes.apply(&mut h), vec!["notes"]);
        assert_eq!(h.revision, 1);
        let name = HandsetChanges { name: Some("Reception".into()), location: Some("Hall".into()), ..Default::default() };
        assert_eq!(name.apply(&mut h), vec!["name", "location"]);
        assert_eq!(h.revision, 2);
        // The same value again is no change at all.
        assert!(name.apply(&mut h).is_empty());
        assert_eq!(h.revision, 2);
    }

    #[test]
    fn a_new_mac_gets_new_device_credentials() {
        let mut h = handset();
        let first = h.device_password.clone();
        assert_eq!(first.expose().len(), crate::model::access::DEVICE_PASSWORD_LEN);
        HandsetChanges { name: Some("Desk".into()), ..Default::default() }.apply(&mut h);
        assert_eq!(h.device_password, first, "only a MAC change draws new credentials");
        HandsetChanges { mac: Some(Some("001565aabbcc".parse().unwrap())), ..Default::default() }.apply(&mut h);
        assert_ne!(h.device_password, first);
    }

    #[test]
    fn field_rules() {
        let bad = [
            HandsetChanges { password: Some(Secret::new("has space")), ..Default::default() },
            HandsetChanges { password: Some(Secret::new("")), ..Default::default() },
            HandsetChanges { outgoingcli: Some("04-09".into()), ..Default::default() },
            HandsetChanges { name: Some("a\r\nsip.server=evil".into()), ..Default::default() },
            HandsetChanges { model: Some(Some("T46S; rm".into())), ..Default::default() },
            HandsetChanges { notes: Some("\u{1b}[2J".into()), ..Default::default() },
        ];
        for c in bad {
            assert!(c.validate().is_err(), "{c:?}");
        }
        HandsetChanges { outgoingcli: Some("+61409123456".into()), notes: Some("a\nb".into()), ..Default::default() }
            .validate()
            .unwrap();
    }

    #[test]
    fn reported_models() {
        assert_eq!(model_from_report("X6U Pro").as_deref(), Some("X6U-Pro"));
        assert_eq!(model_from_report("T46S").as_deref(), Some("T46S"));
        assert_eq!(model_from_report(""), None);
        assert_eq!(model_from_report("a;b"), None);
    }

    #[test]
    fn booleans_as_jingl_sends_them() {
        use serde_json::json;
        assert!(parse_bool("recording", &json!(true)).unwrap());
        assert!(!parse_bool("recording", &json!("false")).unwrap());
        assert!(parse_bool("recording", &json!("yes")).is_err());
        assert!(parse_bool("recording", &json!(1)).is_err());
    }
}
