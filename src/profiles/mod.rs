//! Vendor profiles: everything autoprov knows about a vendor family, as data
//! (`vendor-profiles/<family>.toml`). A new model of a known family is a
//! TOML edit; a new family is a TOML file and its templates.
//!
//! The profiles in `vendor-profiles/` are built into the binary; a directory
//! named by `AUTOPROV_PROFILES_DIR` replaces any of them by family name (and
//! may add families whose templates are built in). Every profile is
//! validated at start-up: a bad one stops the server, naming file and fault.
//! A reload (SIGHUP) loads them again into [`LiveProfiles`]; a bad one is
//! then logged and the profiles in use stay.

pub mod device_cert;
pub mod identify;
pub mod resolve;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use regex::{Regex, RegexSet};
use serde::Deserialize;

pub use identify::{Identified, UserAgentInfo};
pub use resolve::Clues;

// `BUILT_IN`: every `vendor-profiles/*.toml` (file name, text), sorted,
// embedded at compile time by build.rs (a new family needs no edit here).
include!(concat!(env!("OUT_DIR"), "/profiles.rs"));

pub use crate::render::Format;

/// Whether the family has a call-recording feature of its own.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Recording {
    /// The template maps `recording` to the vendor's own keys.
    Native,
    /// No such feature: the flag is carried as a documented comment or
    /// custom key, so a change still changes the file.
    Carried,
}

/// One file the phones of a family ask for.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    /// The name with placeholders: `{mac}` (12 lower-case hex digits),
    /// `{MAC}` (upper-case), `{code}` (a model's code), `{model}` (a model
    /// name). A name with a MAC is a per-phone file; any other is common.
    pub name: String,
    /// The built-in template that renders it (see `render::templates`).
    pub template: String,
    #[serde(skip)]
    pub(crate) matcher: Option<Regex>,
}

impl FileSpec {
    pub fn per_phone(&self) -> bool {
        self.name.contains("{mac}") || self.name.contains("{MAC}")
    }
}

/// A set of keys that only some firmware reads (a vendor renamed its keys
/// between releases). Templates test `c.variant` against `name`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    pub name: String,
    /// Matched against the firmware the phone reports (its User-Agent now,
    /// else what it reported before).
    #[serde(default)]
    pub firmware: Option<String>,
    /// Models that get this variant when their firmware is not known.
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(skip)]
    pub(crate) firmware_matcher: Option<Regex>,
}

/// How a generation of the family's phones boots: every file it asks for,
/// in order, and what we answer. It is the contract the boot-sequence test
/// holds the server to, so it is written from captures and guides (its
/// `source`), never from what the server happens to do.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootSequence {
    /// Which phones boot this way (a firmware generation, a series).
    pub generation: String,
    /// A User-Agent those phones send; `{colons}`, `{mac}` and `{MAC}`
    /// stand for the phone's MAC (`00:15:65:…`, `001565…`, `001565…` upper).
    pub user_agent: String,
    /// A model of the generation (one of `models`), or none for phones we
    /// do not serve.
    #[serde(default)]
    pub model: String,
    /// Where the names and their order come from.
    pub source: String,
    pub files: Vec<BootFile>,
}

/// One file of a boot sequence (`{mac}`/`{MAC}` for the phone's MAC).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootFile {
    pub file: String,
    pub answer: BootAnswer,
}

/// What a phone gets for a file it asks for at boot.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BootAnswer {
    /// A file of ours (one of `files`).
    Serve,
    /// 404, never counted as a scan (one of `quiet_files`): firmware,
    /// licences, uploads.
    Quiet,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// The code the family uses for the model in common file names
    /// (Yealink's `y0000000000NN.cfg`).
    pub code: Option<String>,
    /// Line keys, for templates that lay them out.
    #[serde(default)]
    pub lines: Option<u32>,
}

/// A family's HTTP remote-control API, as its vendor documents it: the
/// phone is asked over plain HTTP on port 80 at its registration (else last
/// fetch) address, proving us with its device credentials. Everything the
/// request is comes from here, so the caller needs no family name.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteControl {
    /// Where the vendor documents it.
    pub source: String,
    /// `GET` (the default) or `POST`.
    #[serde(default = "RemoteControl::default_method")]
    pub method: String,
    /// The path (and query) that makes the phone dial; `{number}` is
    /// replaced by the (validated, URL-encoded) dial string.
    pub dial: String,
    /// The request's `Content-Type`, for a `POST`.
    #[serde(default)]
    pub content_type: String,
    /// The request's body, for a `POST`; `{number}` is replaced by the dial
    /// string as it is (1–32 of `0-9 * # +`: nothing XML or a URL escapes).
    #[serde(default)]
    pub body: String,
    /// How the request proves us, with the phone's device credentials
    /// (which its template provisions for the API): `basic` (HTTP Basic) or
    /// `digest` (HTTP Digest, RFC 7616, answering the phone's 401).
    pub auth: String,
    /// Why the API cannot transfer the phone's call to a number (the
    /// 501's words); empty when it can (not yet any family).
    pub no_transfer: String,
}

impl RemoteControl {
    fn default_method() -> String {
        "GET".into()
    }

    /// The request is one we know how to send.
    fn check(&self) -> Result<(), String> {
        if !matches!(self.method.as_str(), "GET" | "POST") {
            return Err(format!("remote_control.method {:?}: GET or POST", self.method));
        }
        if !matches!(self.auth.as_str(), "basic" | "digest") {
            return Err(format!("remote_control.auth {:?}: basic or digest", self.auth));
        }
        if !self.dial.starts_with('/') {
            return Err("remote_control.dial: a path, starting with /".into());
        }
        let post = self.method == "POST";
        if post == self.body.is_empty() || post == self.content_type.is_empty() {
            return Err("remote_control: a POST has a body and a content_type, a GET neither".into());
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub family: String,
    pub vendor: String,
    /// The administrator guide(s) the key names come from.
    pub guide: String,
    /// Shared by every file served from the profile (no copy per body).
    pub content_type: Arc<str>,
    pub format: Format,
    pub recording: Recording,
    /// OUIs (first 6 hex digits of the MAC) the vendor ships with.
    pub mac_ouis: Vec<String>,
    /// The port the phone listens on for SIP by default (push target when
    /// only its fetch address is known).
    pub sip_port: u16,
    /// `Event:` of the resync NOTIFY, and its rebooting variant.
    pub notify_event: String,
    pub notify_reboot_event: String,
    /// Regexes over the User-Agent, tried in order, with named groups
    /// `model`, `firmware` and (only where the phone really sends its MAC
    /// there) `mac`.
    pub user_agents: Vec<String>,
    pub files: Vec<FileSpec>,
    /// Names (with the same placeholders, and `{*}` for any run of letters,
    /// digits, `.`, `_`, `-`) the family's phones ask for at boot that we do
    /// not serve: firmware, licences, directories. They 404 quietly and
    /// never count as a scan.
    #[serde(default)]
    pub quiet_files: Vec<String>,
    /// How the family's factory device certificates name the phone's MAC:
    /// `ATTRIBUTE=regex` with a `mac` group (see `profiles::device_cert`).
    /// Empty where the family has no such certificate we know of.
    #[serde(default)]
    pub device_cert_macs: Vec<String>,
    /// How the family's config gives a phone its device credentials (the
    /// keys, as documentation: the templates write them), or why it cannot.
    pub device_credentials: String,
    #[serde(default)]
    pub models: BTreeMap<String, ModelSpec>,
    /// How its phones boot, per generation.
    #[serde(default)]
    pub boot: Vec<BootSequence>,
    /// Key sets chosen by firmware or model (first match wins; none: `""`).
    #[serde(default)]
    pub variants: Vec<Variant>,
    /// Where the family's time-zone setting is a fixed list of its own
    /// codes: IANA name → the vendor's code (`render::LocalTime::vendor_zone`).
    #[serde(default)]
    pub time_zones: BTreeMap<String, String>,
    /// The phone's own remote-control API (call control on the `direct`
    /// relay); none where the family has none we could confirm.
    #[serde(default)]
    pub remote_control: Option<RemoteControl>,
    /// How the family's phones report their calls: the action-URL keys
    /// per event and the vendor's variables, or `none` with the reason.
    pub events: crate::render::EventKeys,
    /// `events` as the config lines templates write (derived at load).
    #[serde(skip)]
    pub(crate) event_settings: Vec<crate::render::EventSetting>,
    #[serde(skip)]
    pub(crate) ua_matchers: Vec<Regex>,
    #[serde(skip)]
    pub(crate) cert_mac_patterns: Vec<device_cert::CertMacPattern>,
    #[serde(skip)]
    pub source: String,
}

impl Profile {
    pub fn model(&self, name: &str) -> Option<(&String, &ModelSpec)> {
        self.models.get_key_value(name).or_else(|| self.models.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)))
    }

    pub fn model_by_code(&self, code: &str) -> Option<(&String, &ModelSpec)> {
        self.models.iter().find(|(_, m)| m.code.as_deref() == Some(code))
    }

    /// What its templates need to know of the family.
    pub fn vendor(&self) -> crate::render::Vendor<'_> {
        crate::render::Vendor {
            format: self.format,
            events: &self.event_settings,
            notify_event: &self.notify_event,
            time_zones: &self.time_zones,
        }
    }

    /// The key set for a phone with `firmware` (if known) and `model`: the
    /// first variant whose firmware pattern matches, or, when the firmware
    /// is not known, the first that lists the model; `""` for the family's
    /// default keys.
    pub fn variant(&self, firmware: Option<&str>, model: &str) -> &str {
        let chosen = match firmware.filter(|f| !f.is_empty()) {
            Some(fw) => self.variants.iter().find(|v| v.firmware_matcher.as_ref().is_some_and(|m| m.is_match(fw))),
            None => self.variants.iter().find(|v| v.models.iter().any(|m| m.eq_ignore_ascii_case(model))),
        };
        chosen.map_or("", |v| v.name.as_str())
    }

    pub fn owns_oui(&self, mac: &crate::model::Mac) -> bool {
        let oui = &mac.lower()[..6];
        self.mac_ouis.iter().any(|o| o.eq_ignore_ascii_case(oui))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("vendor profile {file}: {reason}")]
pub struct ProfileError {
    pub file: String,
    pub reason: String,
}

/// All profiles, validated. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Profiles {
    families: Arc<Vec<Profile>>,
    /// Every file pattern of every family in one automaton, so a request
    /// runs one match instead of one per pattern; `file_index` maps a set
    /// index to (family, file).
    file_set: Arc<RegexSet>,
    file_index: Arc<Vec<(usize, usize)>>,
    /// The same for User-Agent patterns: (family, pattern).
    ua_set: Arc<RegexSet>,
    ua_index: Arc<Vec<(usize, usize)>>,
    /// Lower-cased model name → family index (the first family wins).
    model_index: Arc<std::collections::HashMap<String, usize>>,
    /// Every family's quiet files, consulted only for names nothing serves.
    quiet_set: Arc<RegexSet>,
}

/// The profiles in use, shared by everything that identifies phones and
/// replaced whole by a reload: each request works with the snapshot it
/// started with, so a reload never mixes two versions in one answer.
#[derive(Clone)]
pub struct LiveProfiles(Arc<ArcSwap<Profiles>>);

impl LiveProfiles {
    pub fn new(profiles: Profiles) -> Self {
        LiveProfiles(Arc::new(ArcSwap::from_pointee(profiles)))
    }

    pub fn current(&self) -> Arc<Profiles> {
        self.0.load_full()
    }

    pub fn replace(&self, profiles: Profiles) {
        self.0.store(Arc::new(profiles));
    }
}

impl Profiles {
    /// The built-in profiles, replaced or extended by `dir`'s `*.toml`.
    pub fn load(dir: Option<&Path>) -> Result<Profiles, ProfileError> {
        let mut sources: BTreeMap<String, (String, String)> = BUILT_IN
            .iter()
            .map(|(file, text)| (file.to_string(), (format!("vendor-profiles/{file} (built in)"), text.to_string())))
            .collect();
        if let Some(dir) = dir {
            let err = |reason: String| ProfileError { file: dir.display().to_string(), reason };
            let entries = std::fs::read_dir(dir).map_err(|e| err(e.to_string()))?;
            let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
            paths.sort();
            for path in paths.into_iter().filter(|p| p.extension().is_some_and(|e| e == "toml")) {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| ProfileError { file: path.display().to_string(), reason: e.to_string() })?;
                let file = path.file_name().unwrap_or_default().to_string_lossy().to_string();
                sources.insert(file, (path.display().to_string(), text));
            }
        }
        let mut families = Vec::new();
        for (file, (source, text)) in sources {
            let profile = parse(&file, &source, &text)?;
            if families.iter().any(|p: &Profile| p.family == profile.family) {
                return Err(ProfileError { file: source, reason: format!("family {} is defined twice", profile.family) });
            }
            families.push(profile);
        }
        let build = |patterns: Vec<String>| {
            RegexSet::new(patterns).map_err(|e| ProfileError { file: "vendor-profiles".into(), reason: e.to_string() })
        };
        let mut file_patterns = Vec::new();
        let mut file_index = Vec::new();
        let mut ua_patterns = Vec::new();
        let mut ua_index = Vec::new();
        let mut quiet_patterns = Vec::new();
        for (pi, p) in families.iter().enumerate() {
            for name in &p.quiet_files {
                let m = file_matcher(name).map_err(|reason| ProfileError {
                    file: p.source.clone(),
                    reason: format!("quiet_files: {name:?}: {reason}"),
                })?;
                quiet_patterns.push(m.as_str().to_string());
            }
            for (fi, f) in p.files.iter().enumerate() {
                file_patterns.push(f.matcher.as_ref().map(|m| m.as_str().to_string()).unwrap_or_default());
                file_index.push((pi, fi));
            }
            for (ui, u) in p.ua_matchers.iter().enumerate() {
                ua_patterns.push(u.as_str().to_string());
                ua_index.push((pi, ui));
            }
        }
        let mut model_index = std::collections::HashMap::new();
        for (pi, p) in families.iter().enumerate() {
            for name in p.models.keys() {
                model_index.entry(name.to_ascii_lowercase()).or_insert(pi);
            }
        }
        Ok(Profiles {
            model_index: Arc::new(model_index),
            file_set: Arc::new(build(file_patterns)?),
            file_index: Arc::new(file_index),
            ua_set: Arc::new(build(ua_patterns)?),
            ua_index: Arc::new(ua_index),
            quiet_set: Arc::new(build(quiet_patterns)?),
            families: Arc::new(families),
        })
    }

    pub fn built_in() -> Profiles {
        Profiles::load(None).expect("built-in vendor profiles are valid (checked by tests)")
    }

    pub fn iter(&self) -> impl Iterator<Item = &Profile> {
        self.families.iter()
    }

    /// Whether some family's phones ask for `name` at boot although no
    /// profile serves it.
    pub fn is_quiet(&self, name: &str) -> bool {
        self.quiet_set.is_match(name)
    }

    pub fn family(&self, name: &str) -> Option<&Profile> {
        self.families.iter().find(|p| p.family == name)
    }

    /// Finds the family of a model name, written `T46S` or `yealink/T46S`.
    pub fn family_of_model(&self, model: &str) -> Option<&Profile> {
        if let Some((family, m)) = model.split_once('/') {
            return self.family(family).filter(|p| p.model(m).is_some());
        }
        self.model_index.get(&model.to_ascii_lowercase()).map(|&i| &self.families[i])
    }
}

fn parse(file: &str, source: &str, text: &str) -> Result<Profile, ProfileError> {
    let err = |reason: String| ProfileError { file: source.to_string(), reason };
    let mut p: Profile = toml::from_str(text).map_err(|e| err(e.to_string().trim().replace('\n', " ")))?;
    p.source = source.to_string();
    if format!("{}.toml", p.family) != file {
        return Err(err(format!("family {:?} must be defined in {}.toml", p.family, p.family)));
    }
    if !p.family.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) || p.family.is_empty() {
        return Err(err("family must be lower-case letters and digits".into()));
    }
    for oui in &p.mac_ouis {
        if oui.len() != 6 || !oui.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(err(format!("mac_ouis: {oui:?} is not 6 hex digits")));
        }
    }
    for (what, v) in
        [("notify_event", &*p.notify_event), ("notify_reboot_event", &*p.notify_reboot_event), ("content_type", &*p.content_type)]
    {
        if v.is_empty() || v.chars().any(|c| c.is_control()) {
            return Err(err(format!("{what} must be a non-empty single line")));
        }
    }
    if p.user_agents.is_empty() {
        return Err(err("user_agents: at least one pattern is needed".into()));
    }
    for (i, pattern) in p.user_agents.iter().enumerate() {
        let ua = Regex::new(pattern).map_err(|e| err(format!("user_agents[{i}]: {e}")))?;
        for group in ["model", "firmware"] {
            if !ua.capture_names().flatten().any(|n| n == group) {
                return Err(err(format!("user_agents[{i}]: the pattern has no (?P<{group}>…) group")));
            }
        }
        p.ua_matchers.push(ua);
    }
    if p.files.is_empty() {
        return Err(err("files: at least one file is needed".into()));
    }
    for f in &mut p.files {
        if !crate::render::templates::exists(&f.template) {
            return Err(err(format!("files: template {:?} for {:?} is not built in", f.template, f.name)));
        }
        if crate::render::templates::is_per_phone(&f.template) != f.per_phone() {
            let (t, n) = if f.per_phone() { ("a common", "a phone's") } else { ("a per-phone", "a common") };
            return Err(err(format!("files: template {:?} is {t} template but {:?} is {n} file", f.template, f.name)));
        }
        f.matcher = Some(file_matcher(&f.name).map_err(|reason| err(format!("files: {:?}: {reason}", f.name)))?);
        if f.name.contains("{code}") && !p.models.values().any(|m| m.code.is_some()) {
            return Err(err(format!("files: {:?} uses {{code}} but no model has a code", f.name)));
        }
    }
    for name in p.models.keys() {
        crate::model::validate_token("model", name, 64).map_err(|e| err(format!("models.{name}: {e}")))?;
    }
    for (zone, code) in &p.time_zones {
        if !crate::render::local_time::is_known_zone(zone) {
            return Err(err(format!("time_zones: {zone:?} is not an IANA time zone name")));
        }
        if code.is_empty() || code.chars().any(|c| c.is_control()) {
            return Err(err(format!("time_zones.{zone:?}: the code must be a non-empty single line")));
        }
    }
    p.cert_mac_patterns = device_cert::compile(source, &p.device_cert_macs)?;
    check_boot(&p).map_err(err)?;
    if let Some(rc) = &p.remote_control {
        rc.check().map_err(err)?;
    }
    p.events.check().map_err(err)?;
    p.event_settings = p.events.settings();
    for v in &mut p.variants {
        if let Some(pattern) = &v.firmware {
            v.firmware_matcher = Some(Regex::new(pattern).map_err(|e| err(format!("variants.{}: firmware: {e}", v.name)))?);
        }
        if let Some(m) = v.models.iter().find(|m| !p.models.keys().any(|k| k.eq_ignore_ascii_case(m))) {
            return Err(err(format!("variants.{}: model {m:?} is not in models", v.name)));
        }
    }
    Ok(p)
}

/// Every boot file answered `serve` is one of the profile's files, every
/// `quiet` one of its quiet files, and every sequence names a model.
fn check_boot(p: &Profile) -> Result<(), String> {
    let quiet: Vec<Regex> = p.quiet_files.iter().filter_map(|q| file_matcher(q).ok()).collect();
    for b in &p.boot {
        if !b.model.is_empty() && p.model(&b.model).is_none() {
            return Err(format!("boot {:?}: model {:?} is not in models", b.generation, b.model));
        }
        for f in &b.files {
            let name = f.file.replace("{mac}", "001122aabbcc").replace("{MAC}", "001122AABBCC");
            let served = p.files.iter().any(|s| s.matcher.as_ref().is_some_and(|m| m.is_match(&name)));
            let ok = match f.answer {
                BootAnswer::Serve => served,
                BootAnswer::Quiet => !served && quiet.iter().any(|q| q.is_match(&name)),
            };
            if !ok {
                return Err(format!(
                    "boot {:?}: {:?} is answered {:?} but the profile says otherwise",
                    b.generation, f.file, f.answer
                ));
            }
        }
    }
    Ok(())
}

/// `{mac}.cfg` → `^(?P<mac>[0-9a-fA-F]{12})\.cfg$`. Phones are not always
/// consistent about the case of the MAC, so both cases are accepted.
fn file_matcher(name: &str) -> Result<Regex, String> {
    let mut re = String::from("^");
    let mut rest = name;
    while let Some(start) = rest.find('{') {
        re.push_str(&regex::escape(&rest[..start]));
        let end = rest[start..].find('}').ok_or("unclosed {")? + start;
        re.push_str(match &rest[start + 1..end] {
            "mac" | "MAC" => "(?P<mac>[0-9a-fA-F]{12})",
            "code" => "(?P<code>[0-9A-Za-z]{1,16})",
            "model" => "(?P<model>[A-Za-z0-9_+-]{1,64})",
            "*" => "[A-Za-z0-9._-]{1,64}",
            other => return Err(format!("unknown placeholder {{{other}}}")),
        });
        rest = &rest[end + 1..];
    }
    re.push_str(&regex::escape(rest));
    re.push('$');
    if re.matches("(?P<mac>").count() > 1 {
        return Err("more than one MAC placeholder".into());
    }
    Regex::new(&re).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_control_requests_are_whole() {
        let rc = |method: &str, content_type: &str, body: &str, auth: &str| RemoteControl {
            source: "guide".into(),
            method: method.into(),
            dial: "/push".into(),
            content_type: content_type.into(),
            body: body.into(),
            auth: auth.into(),
            no_transfer: String::new(),
        };
        rc("GET", "", "", "basic").check().unwrap();
        rc("POST", "text/xml", "<x>{number}</x>", "digest").check().unwrap();
        assert!(rc("POST", "", "<x/>", "digest").check().is_err(), "a body without its type");
        assert!(rc("POST", "text/xml", "", "digest").check().is_err(), "a POST without a body");
        assert!(rc("GET", "text/xml", "<x/>", "basic").check().is_err(), "a GET with a body");
        assert!(rc("PUT", "", "", "basic").check().is_err());
        assert!(rc("GET", "", "", "ntlm").check().is_err());
        // Every built-in profile's request is whole (they load), and one
        // of them posts with Digest.
        let built_in = Profiles::built_in();
        assert!(built_in.iter().filter_map(|p| p.remote_control.as_ref()).any(|rc| rc.method == "POST" && rc.auth == "digest"));
    }

    /// A built-in profile with models, and its text: the tests below need
    /// one, whichever family it is.
    fn some_profile() -> (Profile, &'static str) {
        let p = Profiles::built_in();
        let profile = p.iter().find(|p| !p.models.is_empty()).expect("a built-in profile has models").clone();
        let text = BUILT_IN.iter().find(|(f, _)| *f == format!("{}.toml", profile.family)).unwrap().1;
        (profile, text)
    }

    #[test]
    fn built_in_profiles_are_valid() {
        let p = Profiles::built_in();
        let families: Vec<_> = p.iter().map(|p| p.family.as_str()).collect();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("vendor-profiles");
        let mut files = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let family = path.file_stem().unwrap().to_string_lossy().to_string();
                assert!(families.contains(&family.as_str()), "{family} missing from {families:?}");
                files += 1;
            }
        }
        assert_eq!(files, families.len(), "{families:?}");
    }

    #[test]
    fn every_vendor_template_is_built_in_with_the_context_its_files_need() {
        let p = Profiles::built_in();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
        let mut found = 0;
        for family in std::fs::read_dir(&dir).unwrap() {
            let family = family.unwrap();
            if family.file_name() == "admin" || !family.path().is_dir() {
                continue;
            }
            for file in std::fs::read_dir(family.path()).unwrap() {
                let file = file.unwrap().file_name().to_string_lossy().to_string();
                if file.starts_with('_') {
                    continue;
                }
                let name = format!("{}/{file}", family.file_name().to_string_lossy());
                assert!(crate::render::templates::exists(&name), "{name} is not built in");
                found += 1;
            }
        }
        assert_eq!(found, crate::render::templates::NAMES.len());
        for f in p.iter().flat_map(|p| &p.files) {
            assert_eq!(crate::render::templates::is_per_phone(&f.template), f.per_phone(), "{}", f.name);
        }
    }

    #[test]
    fn file_patterns() {
        let m = file_matcher("y0000000000{code}.cfg").unwrap();
        assert_eq!(&m.captures("y000000000028.cfg").unwrap()["code"], "28");
        let m = file_matcher("abc{model}-{MAC}.htm").unwrap();
        let c = m.captures("abcD785-000413AABBCC.htm").unwrap();
        assert_eq!((&c["model"], &c["mac"]), ("D785", "000413AABBCC"));
        assert!(file_matcher("{*}.sip.ld").unwrap().is_match("2345-12375-001.sip.ld"));
        assert!(!file_matcher("{*}.sip.ld").unwrap().is_match("a/b.sip.ld"));
        assert!(file_matcher("{mac}{mac}").is_err());
        assert!(file_matcher("{serial}.cfg").is_err());
    }

    #[test]
    fn a_bad_override_stops_loading_and_names_the_file() {
        let (profile, good) = some_profile();
        let file = format!("{}.toml", profile.family);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(&file), good.replace("notify_event = ", "notify_evnt = ")).unwrap();
        let e = Profiles::load(Some(dir.path())).unwrap_err().to_string();
        assert!(e.contains(&file) && e.contains("notify_evnt"), "{e}");

        std::fs::write(dir.path().join(&file), good.replacen("[models.", "[models.\"bad model\"]\n[models.", 1)).unwrap();
        assert!(Profiles::load(Some(dir.path())).is_err());

        let ours = format!("template = \"{}/", profile.family);
        assert!(good.contains(&ours), "{file} names its templates as {ours}…");
        std::fs::write(dir.path().join(&file), good.replacen(&ours, "template = \"nosuch/", 1)).unwrap();
        let e = Profiles::load(Some(dir.path())).unwrap_err().to_string();
        assert!(e.contains("not built in") && e.contains("nosuch/"), "{e}");

        // A phone's template cannot render a common file.
        let phone = profile.files.iter().find(|f| f.per_phone()).unwrap();
        let extra = format!("{good}\n[[files]]\nname = \"common-test.cfg\"\ntemplate = {:?}\n", phone.template);
        std::fs::write(dir.path().join(&file), extra).unwrap();
        let e = Profiles::load(Some(dir.path())).unwrap_err().to_string();
        assert!(e.contains("per-phone template") && e.contains("common-test.cfg"), "{e}");
    }

    #[test]
    fn an_override_can_add_a_model_without_code_changes() {
        let (profile, good) = some_profile();
        let family = profile.family.as_str();
        let other = Profiles::built_in().iter().find(|p| p.family != family).unwrap().family.clone();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(format!("{family}.toml")), format!("{good}\n[models.T99X]\ncode = \"99\"\n")).unwrap();
        let p = Profiles::load(Some(dir.path())).unwrap();
        assert_eq!(p.family_of_model("T99X").unwrap().family, family);
        assert_eq!(p.family_of_model(&format!("{family}/T99X")).unwrap().family, family);
        assert!(p.family_of_model(&format!("{other}/T99X")).is_none());
    }
}
