//! Handsets: one extension of a domain, the phone (MAC) assigned to it, and
//! what goes into that phone's config.

use super::domain::set;
use super::settings::ExtraSettings;
use super::{validate_extension, validate_text, validate_token, FieldError, Mac, Secret};

/// The length of generated SIP passwords.
pub const GENERATED_PASSWORD_LEN: usize = 20;

/// A handset's fields that can be set (all but its extension number), each
/// named once: the API's and the CSV's field name, and the audit log's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandsetField {
    Name,
    Password,
    Location,
    OutgoingCli,
    Recording,
    Notes,
    Mac,
    Model,
    Settings,
    Timezone,
}

impl HandsetField {
    pub const ALL: [HandsetField; 10] = [
        HandsetField::Name,
        HandsetField::Password,
        HandsetField::Location,
        HandsetField::OutgoingCli,
        HandsetField::Recording,
        HandsetField::Notes,
        HandsetField::Mac,
        HandsetField::Model,
        HandsetField::Settings,
        HandsetField::Timezone,
    ];

    pub fn name(self) -> &'static str {
        match self {
            HandsetField::Name => "name",
            HandsetField::Password => "password",
            HandsetField::Location => "location",
            HandsetField::OutgoingCli => "outgoingcli",
            HandsetField::Recording => "recording",
            HandsetField::Notes => "notes",
            HandsetField::Mac => "mac",
            HandsetField::Model => "model",
            HandsetField::Settings => "settings",
            HandsetField::Timezone => "timezone",
        }
    }

    pub fn parse(name: &str) -> Option<HandsetField> {
        Self::ALL.into_iter().find(|f| f.name() == name)
    }

    /// Whether a change alters what the phone is configured with (and so
    /// bumps the handset's `revision`): `location` and `notes` are for
    /// people, not phones.
    pub fn is_config(self) -> bool {
        !matches!(self, HandsetField::Location | HandsetField::Notes)
    }
}

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
    /// The secret in the action URLs the phone calls to report its calls
    /// (`/ev/<event_token>/<event>`). Not the SIP password nor the device
    /// credentials; drawn anew when the MAC changes, like them. Never logged.
    pub event_token: Secret,
    /// The phone's own IANA time zone; `""` for its domain's.
    pub timezone: String,
}

impl Handset {
    /// A field as text, as CSV and forms write it (`settings` as JSON).
    pub fn text(&self, field: HandsetField) -> String {
        match field {
            HandsetField::Name => self.name.clone(),
            HandsetField::Password => self.password.expose().to_string(),
            HandsetField::Location => self.location.clone(),
            HandsetField::OutgoingCli => self.outgoingcli.clone(),
            HandsetField::Recording => self.recording.to_string(),
            HandsetField::Notes => self.notes.clone(),
            HandsetField::Mac => self.mac.map(|m| m.lower()).unwrap_or_default(),
            HandsetField::Model => self.model.clone().unwrap_or_default(),
            HandsetField::Settings => super::settings::to_text(&self.settings),
            HandsetField::Timezone => self.timezone.clone(),
        }
    }
}

/// A handset's fields as every front end receives them: a JSON body, a CSV
/// row, a web form (the last two turned into a JSON object first, see
/// [`HandsetInput::from_object`]). `None` leaves a field alone; for `mac` and
/// `model`, `Some(None)` (JSON `null` or `""`) clears it. On create,
/// `extensionnumber` is required; on update it may repeat the path's.
#[derive(Clone, Debug, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HandsetInput {
    pub extensionnumber: Option<String>,
    pub name: Option<String>,
    #[serde(default, deserialize_with = "wire::secret")]
    #[schema(value_type = Option<String>)]
    pub password: Option<Secret>,
    pub location: Option<String>,
    /// The number presented on outgoing calls (digits, `+` first allowed).
    pub outgoingcli: Option<String>,
    /// true/false or "true"/"false", as Jingl sends them.
    #[serde(default, deserialize_with = "wire::boolean")]
    #[schema(value_type = Option<bool>)]
    pub recording: Option<bool>,
    pub notes: Option<String>,
    /// Any usual spelling; "" or null clears it.
    #[serde(default, deserialize_with = "wire::clearable_mac")]
    #[schema(value_type = Option<String>)]
    pub mac: Option<Option<Mac>>,
    /// "" or null clears it.
    #[serde(default, deserialize_with = "wire::clearable")]
    #[schema(value_type = Option<String>)]
    pub model: Option<Option<String>>,
    /// Extra vendor settings (key → value; numbers and booleans as text).
    #[serde(default, deserialize_with = "wire::settings")]
    #[schema(value_type = Option<std::collections::BTreeMap<String, String>>)]
    pub settings: Option<ExtraSettings>,
    /// IANA time zone name (`Europe/London`) for this phone; "" for the
    /// domain's.
    pub timezone: Option<String>,
}

/// Why a body, row or form is not a handset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error("Unknown field: {0}")]
    Unknown(String),
    #[error(transparent)]
    Field(#[from] FieldError),
}

/// A handset to create.
#[derive(Clone, Debug)]
pub struct NewHandset {
    pub extensionnumber: String,
    pub fields: HandsetInput,
}

impl HandsetInput {
    /// Reads a JSON object, naming an unknown field, or the field whose
    /// value is wrong, in the error; then validates every field.
    pub fn from_object(object: serde_json::Map<String, serde_json::Value>) -> Result<HandsetInput, InputError> {
        if let Some(unknown) = object.keys().find(|k| *k != "extensionnumber" && HandsetField::parse(k).is_none()) {
            return Err(InputError::Unknown(unknown.clone()));
        }
        let input: HandsetInput = serde_path_to_error::deserialize(serde_json::Value::Object(object)).map_err(|e| {
            let field = HandsetField::parse(&e.path().to_string()).map(HandsetField::name).unwrap_or("extensionnumber");
            let reason = e.inner().to_string();
            // Our own deserializers already name their field.
            FieldError::new(field, reason.strip_prefix(&format!("{field}: ")).unwrap_or(&reason))
        })?;
        input.validate()?;
        Ok(input)
    }

    /// This input as a handset to create: its extension number is required.
    pub fn into_new(mut self) -> Result<NewHandset, FieldError> {
        let ext = self.extensionnumber.take().ok_or_else(|| FieldError::new("extensionnumber", "is required"))?;
        validate_extension(&ext)?;
        Ok(NewHandset { extensionnumber: ext, fields: self })
    }

    pub fn validate(&self) -> Result<(), FieldError> {
        if let Some(v) = &self.extensionnumber {
            validate_extension(v)?;
        }
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
        if let Some(v) = self.timezone.as_deref().filter(|v| !v.is_empty()) {
            super::domain::validate_timezone(v)?;
        }
        Ok(())
    }

    /// Whether `field` is given.
    pub fn has(&self, field: HandsetField) -> bool {
        match field {
            HandsetField::Name => self.name.is_some(),
            HandsetField::Password => self.password.is_some(),
            HandsetField::Location => self.location.is_some(),
            HandsetField::OutgoingCli => self.outgoingcli.is_some(),
            HandsetField::Recording => self.recording.is_some(),
            HandsetField::Notes => self.notes.is_some(),
            HandsetField::Mac => self.mac.is_some(),
            HandsetField::Model => self.model.is_some(),
            HandsetField::Settings => self.settings.is_some(),
            HandsetField::Timezone => self.timezone.is_some(),
        }
    }

    /// The names of the fields given (for a create's audit row).
    pub fn given(&self) -> Vec<&'static str> {
        HandsetField::ALL.into_iter().filter(|f| self.has(*f)).map(HandsetField::name).collect()
    }

    /// Applies the changes to `h`, returning the names of the fields whose
    /// value really changed, and bumps `revision` by one when any of them is
    /// a config field ([`HandsetField::is_config`]).
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
        set(&mut changed, "timezone", &mut h.timezone, &self.timezone);
        if changed.contains(&"mac") {
            h.device_password = super::access::new_device_password();
            h.event_token = super::access::new_event_token();
        }
        if changed.iter().any(|f| HandsetField::parse(f).is_some_and(HandsetField::is_config)) {
            h.revision += 1;
        }
        changed
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
            event_token: super::access::new_event_token(),
            timezone: f.timezone.unwrap_or_default(),
        })
    }
}

/// How [`HandsetInput`]'s typed fields are read from JSON values, each error
/// naming its field.
mod wire {
    use serde::de::Error;
    use serde::{Deserialize, Deserializer};
    use serde_json::Value;

    use crate::model::settings::ExtraSettings;
    use crate::model::{Mac, Secret};

    pub fn secret<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
        Ok(Some(Secret::new(String::deserialize(d)?)))
    }

    pub fn boolean<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
        super::parse_bool("recording", &Value::deserialize(d)?).map(Some).map_err(D::Error::custom)
    }

    pub fn clearable<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
        Ok(Some(Option::<String>::deserialize(d)?.filter(|s| !s.is_empty())))
    }

    pub fn clearable_mac<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<Mac>>, D::Error> {
        match clearable(d)? {
            Some(Some(m)) => m.parse::<Mac>().map(|m| Some(Some(m))).map_err(D::Error::custom),
            _ => Ok(Some(None)),
        }
    }

    pub fn settings<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ExtraSettings>, D::Error> {
        crate::model::settings::from_json("settings", &Value::deserialize(d)?).map(Some).map_err(D::Error::custom)
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
        NewHandset { extensionnumber: "100".into(), fields: HandsetInput::default() }.into_handset(1).unwrap()
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
        let notes = HandsetInput { notes: Some("desk by the window".into()), ..Default::default() };
        assert_eq!(notes.apply(&mut h), vec!["notes"]);
        assert_eq!(h.revision, 1);
        let name = HandsetInput { name: Some("Reception".into()), location: Some("Hall".into()), ..Default::default() };
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
        HandsetInput { name: Some("Desk".into()), ..Default::default() }.apply(&mut h);
        assert_eq!(h.device_password, first, "only a MAC change draws new credentials");
        let first_token = h.event_token.clone();
        HandsetInput { mac: Some(Some("001565aabbcc".parse().unwrap())), ..Default::default() }.apply(&mut h);
        assert_ne!(h.device_password, first);
        assert_ne!(h.event_token, first_token, "a new MAC gets a new event token");
        assert_eq!(h.event_token.expose().len(), crate::model::access::EVENT_TOKEN_LEN);
    }

    #[test]
    fn field_rules() {
        let bad = [
            HandsetInput { password: Some(Secret::new("has space")), ..Default::default() },
            HandsetInput { password: Some(Secret::new("")), ..Default::default() },
            HandsetInput { outgoingcli: Some("04-09".into()), ..Default::default() },
            HandsetInput { name: Some("a\r\nsip.server=evil".into()), ..Default::default() },
            HandsetInput { model: Some(Some("T46S; rm".into())), ..Default::default() },
            HandsetInput { notes: Some("\u{1b}[2J".into()), ..Default::default() },
        ];
        for c in bad {
            assert!(c.validate().is_err(), "{c:?}");
        }
        HandsetInput { outgoingcli: Some("+61409123456".into()), notes: Some("a\nb".into()), ..Default::default() }
            .validate()
            .unwrap();
    }

    #[test]
    fn input_from_json_names_the_field() {
        use serde_json::json;
        let object = |v: serde_json::Value| v.as_object().unwrap().clone();
        let i = HandsetInput::from_object(object(
            json!({"name": "Desk", "recording": "true", "mac": "00-15-65-AA-BB-CC", "model": ""}),
        ))
        .unwrap();
        assert_eq!((i.name.as_deref(), i.recording, i.model.clone()), (Some("Desk"), Some(true), Some(None)));
        assert_eq!(i.mac, Some(Some("001565aabbcc".parse().unwrap())));
        assert_eq!(i.given(), ["name", "recording", "mac", "model"]);
        assert_eq!(HandsetInput::from_object(object(json!({"mac": null}))).unwrap().mac, Some(None));
        for (body, want) in [
            (json!({"colour": "red"}), "Unknown field: colour"),
            (json!({"name": 5}), "name: invalid type"),
            (json!({"recording": 1}), "recording: must be true or false"),
            (json!({"mac": "nope"}), "mac: bad MAC address"),
            (json!({"settings": {"k": {"x": 1}}}), "settings: value of k"),
            (json!({"outgoingcli": "04-09"}), "outgoingcli: must be a phone number"),
            (json!({"extensionnumber": "a b"}), "extensionnumber: must be"),
        ] {
            let e = HandsetInput::from_object(object(body.clone())).unwrap_err().to_string();
            assert!(e.starts_with(want), "{body}: {e}");
        }
        assert!(HandsetInput::default().into_new().unwrap_err().to_string().contains("extensionnumber: is required"));
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
