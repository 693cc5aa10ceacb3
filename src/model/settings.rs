//! Extra vendor settings: key → value pairs an admin adds on top of what the
//! templates write, at domain < model < handset level.
//!
//! The same keys reach key/value files (`key = value` lines) and XML files
//! (element or attribute names), so keys are restricted to letters, digits,
//! `.`, `_`, `-` and single inner spaces (Fanvil's keys have them; XML
//! formats skip such keys when rendering), and values to one line: no value
//! can end its line or element and start another. XML templates escape
//! values; key/value templates need not.

use std::collections::BTreeMap;

use super::FieldError;

pub type ExtraSettings = BTreeMap<String, String>;

pub const MAX_SETTINGS: usize = 200;

/// Checks a settings object from the API or a file.
pub fn validate(field: &'static str, settings: &ExtraSettings) -> Result<(), FieldError> {
    if settings.len() > MAX_SETTINGS {
        return Err(FieldError::new(field, format!("at most {MAX_SETTINGS} settings")));
    }
    for (k, v) in settings {
        let key_ok = (1..=128).contains(&k.len())
            && k.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && !k.ends_with(' ')
            && !k.contains("  ")
            && k.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b' '));
        if !key_ok {
            return Err(FieldError::new(
                field,
                format!("key {k:?} must start with a letter or '_' and have only letters, digits, '.', '_', '-' or single inner spaces (at most 128)"),
            ));
        }
        if v.chars().count() > 1024 {
            return Err(FieldError::new(field, format!("value of {k} must be at most 1024 characters")));
        }
        if v.chars().any(|c| c.is_control() || super::is_line_or_bidi_control(c)) {
            return Err(FieldError::new(
                field,
                format!("value of {k} must be one line without control, line-separator or text-direction characters"),
            ));
        }
    }
    Ok(())
}

/// Reads a JSON object of strings (numbers and booleans are written as
/// their text).
pub fn from_json(field: &'static str, v: &serde_json::Value) -> Result<ExtraSettings, FieldError> {
    let obj = v.as_object().ok_or_else(|| FieldError::new(field, "must be an object of key → value"))?;
    let mut out = ExtraSettings::new();
    for (k, v) in obj {
        let text = match v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::Bool(b) => if *b { "1" } else { "0" }.to_string(),
            _ => return Err(FieldError::new(field, format!("value of {k} must be a string, number or boolean"))),
        };
        out.insert(k.clone(), text);
    }
    validate(field, &out)?;
    Ok(out)
}

/// Stored form: a JSON object.
pub fn to_text(s: &ExtraSettings) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "{}".into())
}

pub fn from_text(text: &str) -> Result<ExtraSettings, String> {
    serde_json::from_str(text).map_err(|e| e.to_string())
}

/// Stored form of settings per model: a JSON object of objects.
pub fn model_settings_to_text(s: &BTreeMap<String, ExtraSettings>) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "{}".into())
}

pub fn model_settings_from_text(text: &str) -> Result<BTreeMap<String, ExtraSettings>, String> {
    serde_json::from_str(text).map_err(|e| e.to_string())
}

/// As people edit them: one `key = value` line each.
pub fn to_lines(s: &ExtraSettings) -> String {
    s.iter().map(|(k, v)| format!("{k} = {v}\n")).collect()
}

/// `key = value` lines (blank lines skipped), validated.
pub fn from_lines(field: &'static str, text: &str) -> Result<ExtraSettings, FieldError> {
    let mut out = ExtraSettings::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let (k, v) = line.split_once('=').ok_or_else(|| FieldError::new(field, format!("line {} must be key = value", i + 1)))?;
        out.insert(k.trim().to_string(), v.trim().to_string());
    }
    validate(field, &out)?;
    Ok(out)
}

/// domain < model < handset: later layers win, key by key.
pub fn layered(layers: &[&ExtraSettings]) -> Vec<(String, String)> {
    let mut merged = ExtraSettings::new();
    for layer in layers {
        merged.extend(layer.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    merged.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn refuses_what_could_break_a_format() {
        for bad in [
            json!({"a\nb": "1"}),
            json!({"x": "1\nadmin.password = x"}),
            json!({"<x>": "1"}),
            json!({"a  b": "1"}),
            json!({"a ": "1"}),
            json!({"1abc": "1"}),
            json!({"": "1"}),
            json!({"k": ["list"]}),
            json!({"k": "v\u{0}"}),
        ] {
            assert!(from_json("settings", &bad).is_err(), "{bad}");
        }
        let ok = from_json("settings", &json!({"features.dnd.enable": 1, "P8": "x & <y>", "Resync_On_Reset": true})).unwrap();
        assert_eq!(ok["features.dnd.enable"], "1");
        assert_eq!(ok["Resync_On_Reset"], "1");
        assert!(from_json("settings", &json!("flat")).is_err());
    }

    #[test]
    fn layers_override_key_by_key() {
        let d = ExtraSettings::from([("a".into(), "domain".into()), ("b".into(), "domain".into())]);
        let m = ExtraSettings::from([("b".into(), "model".into())]);
        let h = ExtraSettings::from([("c".into(), "handset".into())]);
        assert_eq!(
            layered(&[&d, &m, &h]),
            vec![("a".into(), "domain".into()), ("b".into(), "model".into()), ("c".into(), "handset".into())]
        );
    }
}
