//! Parsers for the vendors' config formats, to check what the server
//! renders: XML (Polycom, snom, Cisco, Grandstream, Htek; Gigaset's
//! name/value parameters), Yealink CFG, Fanvil's text config, Aastra's
//! `key: value` lines and Panasonic's standard format. Each returns the
//! (key, value) pairs a file sets.

#![allow(dead_code)]

use autoprov::profiles::{Format, Profile};

/// The (key, value) pairs a rendered file sets, parsed in the vendor's
/// format: XML, or the key/value dialect its first line announces (the
/// dialect, not the family, picks the parser: a family writing Yealink's
/// `#!version:1.0.0.1` files needs no parser of its own).
pub fn parse(profile: &Profile, body: &str) -> Result<Vec<(String, String)>, String> {
    match profile.format {
        // Gigaset's bases name each setting in an attribute
        // (`<param name= value=>`, the N510's `<SYMB_ITEM ID= value=>`).
        Format::Xml if body.contains("<param ") || body.contains("<SYMB_ITEM ") => parse_gigaset(body),
        Format::Xml => parse_xml(body),
        Format::Keyvalue if body.starts_with("#!version:") => parse_yealink(body),
        Format::Keyvalue if body.starts_with("<<VOIP CONFIG FILE>>") => parse_fanvil(body),
        Format::Keyvalue if body.starts_with("# Panasonic SIP Phone Standard Format File #") => parse_panasonic(body),
        // The one dialect without a header: `parameter: value` lines (Aastra/Mitel).
        Format::Keyvalue => parse_aastra(body)
            .map_err(|e| format!("{}: no key/value dialect fits (add it to tests/e2e/formats.rs): {e}", profile.family)),
    }
}

/// Every element's text and every attribute, as (name, value). Comments
/// are not entries, so a value only in a comment does not count.
pub fn parse_xml(body: &str) -> Result<Vec<(String, String)>, String> {
    if !body.starts_with("<?xml") {
        return Err("the XML declaration must come first".into());
    }
    let doc = roxmltree::Document::parse(body).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for node in doc.descendants().filter(|n| n.is_element()) {
        let text: String = node.children().filter(|c| c.is_text()).filter_map(|c| c.text()).collect();
        if !text.trim().is_empty() {
            out.push((node.tag_name().name().to_string(), text.trim().to_string()));
        }
        for a in node.attributes() {
            out.push((a.name().to_string(), a.value().to_string()));
        }
    }
    Ok(out)
}

/// Yealink CFG: `#!version:1.0.0.1` first, then `#` comments and
/// `key = value` lines.
pub fn parse_yealink(body: &str) -> Result<Vec<(String, String)>, String> {
    let mut lines = body.lines();
    if lines.next() != Some("#!version:1.0.0.1") {
        return Err("the first line must be #!version:1.0.0.1".into());
    }
    let mut out = Vec::new();
    for (i, line) in lines.enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (k, v) = line.split_once('=').ok_or_else(|| format!("line {}: no '=': {line:?}", i + 2))?;
        let k = k.trim();
        if k.is_empty() || !k.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
            return Err(format!("line {}: bad key {k:?}", i + 2));
        }
        out.push((k.to_string(), v.trim().to_string()));
    }
    Ok(out)
}

/// Fanvil text config: `<<VOIP CONFIG FILE>>Version:…` first,
/// `<… MODULE>` sections, `--List--  :` markers, `#` comments,
/// `Key   :value` lines inside a section, `<<END OF FILE>>` last.
pub fn parse_fanvil(body: &str) -> Result<Vec<(String, String)>, String> {
    let lines: Vec<&str> = body.lines().collect();
    if !lines.first().is_some_and(|l| l.starts_with("<<VOIP CONFIG FILE>>Version:")) {
        return Err("the first line must be <<VOIP CONFIG FILE>>Version:…".into());
    }
    if lines.iter().rev().find(|l| !l.trim().is_empty()).map(|l| l.trim()) != Some("<<END OF FILE>>") {
        return Err("the last line must be <<END OF FILE>>".into());
    }
    let mut out = Vec::new();
    let mut in_section = false;
    for (i, line) in lines[1..lines.len()].iter().enumerate() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') || t == "<<END OF FILE>>" {
            continue;
        }
        if t.starts_with('<') && t.ends_with(" MODULE>") {
            in_section = true;
            continue;
        }
        if t.starts_with("--") && t.trim_end_matches(':').trim_end().ends_with("--") {
            continue;
        }
        let (k, v) = line.split_once(':').ok_or_else(|| format!("line {}: no ':': {line:?}", i + 2))?;
        if !in_section {
            return Err(format!("line {}: {line:?} is outside any module", i + 2));
        }
        let k = k.trim();
        if k.is_empty() || k.starts_with('<') {
            return Err(format!("line {}: bad key {k:?}", i + 2));
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

/// Gigaset: an XML document whose settings are `<param name="…"
/// value="…"/>` (provisioning version 1.1) or `<SYMB_ITEM ID="…"
/// value="…"/>` (the N510's ProviderFrame): each is (name, value); other
/// elements and attributes as [`parse_xml`].
pub fn parse_gigaset(body: &str) -> Result<Vec<(String, String)>, String> {
    if !body.starts_with("<?xml") {
        return Err("the XML declaration must come first".into());
    }
    let doc = roxmltree::Document::parse(body).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for node in doc.descendants().filter(|n| n.is_element()) {
        match (node.tag_name().name(), node.attribute("name").or(node.attribute("ID")), node.attribute("value")) {
            ("param" | "SYMB_ITEM", Some(name), Some(value)) => out.push((name.to_string(), value.to_string())),
            _ => {
                for a in node.attributes() {
                    out.push((a.name().to_string(), a.value().to_string()));
                }
            }
        }
    }
    Ok(out)
}

/// Aastra/Mitel: `#` comments and `parameter: value` lines (the parameter
/// has spaces; the value is everything after the first `: `).
pub fn parse_aastra(body: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (i, line) in body.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let (k, v) = line.split_once(':').ok_or_else(|| format!("line {}: no ':': {line:?}", i + 1))?;
        if k.trim().is_empty() || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b" ._-[]|".contains(&b)) {
            return Err(format!("line {}: bad parameter {k:?}", i + 1));
        }
        out.push((k.trim().to_string(), v.strip_prefix(' ').unwrap_or(v).to_string()));
    }
    Ok(out)
}

/// Panasonic SIP Phone Standard Format: the 44-byte header line first,
/// CR LF line ends, `#` comments, `NAME="value"` lines, an empty line last
/// (Panasonic KX-HDV Administrator Guide 2.4).
pub fn parse_panasonic(body: &str) -> Result<Vec<(String, String)>, String> {
    if !body.starts_with("# Panasonic SIP Phone Standard Format File #") {
        return Err("the first line must start with the standard format header".into());
    }
    if !body.ends_with("\r\n") {
        return Err("the file must end with an empty line (CR LF)".into());
    }
    let mut out = Vec::new();
    for (i, line) in body.split("\r\n").enumerate() {
        if line.contains('\n') || line.contains('\r') {
            return Err(format!("line {}: a line must end with CR LF", i + 1));
        }
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let (k, v) = line.split_once("=\"").ok_or_else(|| format!("line {}: not NAME=\"value\": {line:?}", i + 1))?;
        let v = v.strip_suffix('"').ok_or_else(|| format!("line {}: the value is not closed: {line:?}", i + 1))?;
        if k.is_empty() || !k.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_') {
            return Err(format!("line {}: bad name {k:?}", i + 1));
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

pub fn has_value(entries: &[(String, String)], want: &str) -> bool {
    entries.iter().any(|(_, v)| v == want)
}
