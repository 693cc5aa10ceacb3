//! The built-in vendor profiles and templates against the vendors' formats
//! and the captured phone requests (`tests/fixtures/phone-requests.tsv`, a copy of the team's shared fixture).

use autoprov::profiles::{Clues, Profile, Profiles};
use autoprov::render::templates;
use autoprov::render::{CommonContext, LocalTime, PhoneContext};

use crate::fixtures::{self, Row};
use crate::formats::{has_value, parse};

const EXTENSION: &str = "4201";
const AUTH_USER: &str = "auth4201";
const PASSWORD: &str = "p4ss#w0rd!$%";
const DISPLAY_NAME: &str = "Zoë & \"Bob\" <Desk>";
const LABEL: &str = "Desk & <1> 'front'";
const SERVER: &str = "sip.example.net";
const PROV_URL: &str = "https://prov.example.com/";
const REVISION: i64 = 73519;
const DEVICE_PASSWORD: &str = "dEv1cePassw0rd";

/// How a family's config carries the device credentials, by its guide
/// (`tests/fixtures/vendor-keys.tsv`).
enum DeviceCredentials {
    /// (user key, password key).
    Keys(String, String),
    /// The key whose value starts with the pattern (`{user}`, `{password}`,
    /// `{url}`): Cisco's Profile_Rule options.
    Rule(String, String),
    /// No setting for them is documented where we could read it: the
    /// device password must then not be in the file at all.
    Undocumented,
}

fn device_credentials(family: &str) -> DeviceCredentials {
    let keys = fixtures::vendor_keys();
    let find = |what: &str| keys.iter().find(|k| k.family == family && k.what == what);
    match (find("device_user"), find("device_password"), find("device_rule"), find("device_none")) {
        (Some(u), Some(p), None, None) => DeviceCredentials::Keys(u.key.clone(), p.key.clone()),
        (None, None, Some(r), None) => DeviceCredentials::Rule(r.key.clone(), r.value.clone()),
        (None, None, None, Some(_)) => DeviceCredentials::Undocumented,
        _ => panic!(
            "{family}: tests/fixtures/vendor-keys.tsv needs its device_user and device_password rows, a device_rule, \
             or a device_none row saying why"
        ),
    }
}

/// Whether the family has a line key label of its own (no `no_line_label`
/// row in `tests/fixtures/vendor-keys.tsv`).
fn has_line_label(family: &str) -> bool {
    !fixtures::vendor_keys().iter().any(|k| k.family == family && k.what == "no_line_label")
}

/// Extra settings in each vendor's own key syntax (`tests/fixtures/vendor-keys.tsv`).
fn sample_settings(family: &str) -> Vec<(String, String)> {
    let settings: Vec<(String, String)> = fixtures::vendor_keys()
        .into_iter()
        .filter(|k| k.family == family && k.what == "setting")
        .map(|k| (k.key, k.value))
        .collect();
    assert!(!settings.is_empty(), "{family}: tests/fixtures/vendor-keys.tsv has no sample setting");
    settings
}

fn phone<'a>(profile: &'a Profile, settings: &'a [(String, String)], time: &'a LocalTime) -> PhoneContext<'a> {
    PhoneContext {
        mac: "0c1d2e3f4a5b",
        mac_upper: "0C1D2E3F4A5B",
        model: "",
        variant: "",
        extension: EXTENSION,
        auth_user: AUTH_USER,
        password: PASSWORD,
        display_name: DISPLAY_NAME,
        label: LABEL,
        outgoing_cli: "+441632960000",
        recording: true,
        sip_server: SERVER,
        sip_port: 5062,
        sip_transport: "udp",
        time,
        ntp_server: "ntp.example.org",
        provisioning_url: PROV_URL,
        resync_minutes: 1440,
        resync_jitter_seconds: 600,
        revision: REVISION,
        device_user: "0c1d2e3f4a5b",
        device_password: DEVICE_PASSWORD,
        server_ip: "192.0.2.10".into(),
        notify_event: &profile.notify_event,
        settings,
        // The family's action URLs, as a phone's file has them.
        events: Box::leak(
            autoprov::render::event_lines(&profile.events.settings(), "https://prov.example.com/ev/EvTok3n0123456789abcdef/")
                .into_boxed_slice(),
        ),
    }
}

fn render_phone(template: &str, c: &PhoneContext<'_>) -> String {
    templates::render_phone(template, c)
        .unwrap_or_else(|| panic!("{template} is not a per-phone template"))
        .unwrap_or_else(|e| panic!("{template}: {e}"))
}

/// A Polycom master configuration: it only lists the file with the account.
fn check_master(profile: &Profile, file: &str, body: &str, mac: &str) {
    let doc = roxmltree::Document::parse(body).unwrap_or_else(|e| panic!("{file}: {e}\n{body}"));
    let app = doc.root_element();
    assert_eq!(app.tag_name().name(), "APPLICATION", "{file}");
    let listed = app.attribute("CONFIG_FILES").unwrap_or_else(|| panic!("{file}: no CONFIG_FILES"));
    for name in listed.split(',').map(str::trim) {
        let name = name.replace("[PHONE_MAC_ADDRESS]", mac);
        let served =
            Profiles::built_in().candidates(&name).iter().any(|c| c.profile.family == profile.family && c.file.per_phone());
        assert!(served, "{file} lists {name}, which {} does not serve", profile.family);
    }
}

async fn every_per_phone_file_renders_in_the_vendor_format() {
    let profiles = Profiles::built_in();
    for profile in profiles.iter() {
        let family = profile.family.as_str();
        let settings = sample_settings(family);
        let time = LocalTime::new("Europe/London", &profile.time_zones).unwrap();
        let per_phone: Vec<_> = profile.files.iter().filter(|f| f.per_phone()).collect();
        assert!(!per_phone.is_empty(), "{family} serves no per-phone file");
        for f in per_phone {
            let what = format!("{family} {} ({})", f.name, f.template);
            assert!(templates::is_per_phone(&f.template), "{what}: not a per-phone template");
            let base = phone(profile, &settings, &time);
            let body = render_phone(&f.template, &base);
            assert!(body.contains(&REVISION.to_string()), "{what}: no revision\n{body}");

            if body.contains("<APPLICATION") {
                check_master(profile, &what, &body, base.mac);
                continue;
            }
            // A contact directory (answered empty): no account in it.
            if body.contains("<directory>") {
                roxmltree::Document::parse(&body).unwrap_or_else(|e| panic!("{what}: {e}\n{body}"));
                continue;
            }

            let entries = parse(profile, &body).unwrap_or_else(|e| panic!("{what}: {e}\n{body}"));
            for (name, want) in [
                ("extension", EXTENSION),
                ("auth user", AUTH_USER),
                ("password", PASSWORD),
                ("display name", DISPLAY_NAME),
                ("label", LABEL),
            ] {
                if name == "label" && !has_line_label(family) {
                    continue;
                }
                assert!(has_value(&entries, want), "{what}: the {name} {want:?} is not a value\n{body}");
            }
            assert!(
                entries.iter().any(|(_, v)| v == SERVER || v.starts_with(&format!("{SERVER}:"))),
                "{what}: the SIP server is not a value\n{body}"
            );
            assert!(entries.iter().any(|(_, v)| v.contains("5062")), "{what}: no SIP port\n{body}");
            assert!(entries.iter().any(|(_, v)| v.contains("ntp.example.org")), "{what}: no NTP server\n{body}");
            assert!(body.contains("Europe/London"), "{what}: no time zone\n{body}");
            assert!(entries.iter().any(|(_, v)| v.contains("prov.example.com")), "{what}: no provisioning server\n{body}");
            match device_credentials(family) {
                DeviceCredentials::Keys(user_key, password_key) => {
                    for (k, want) in [(user_key, "0c1d2e3f4a5b"), (password_key, DEVICE_PASSWORD)] {
                        assert!(
                            entries.iter().any(|(ek, ev)| *ek == k && ev.trim() == want),
                            "{what}: the device credentials are not set as {k}\n{body}"
                        );
                    }
                }
                DeviceCredentials::Rule(key, pattern) => {
                    let start = pattern
                        .replace("{user}", "0c1d2e3f4a5b")
                        .replace("{password}", DEVICE_PASSWORD)
                        .replace("{url}", PROV_URL);
                    assert!(
                        entries.iter().any(|(k, v)| *k == key && v.starts_with(&start)),
                        "{what}: the device credentials are not in {key} as {start}\n{body}"
                    );
                }
                DeviceCredentials::Undocumented => {
                    assert!(!body.contains(DEVICE_PASSWORD), "{what}: the device password under no documented key\n{body}")
                }
            }
            for (k, v) in &settings {
                // Fanvil's keys name their module ("MODULE.Key"); the file has the key under it.
                let key = if k.contains(" MODULE.") { k.split_once('.').map_or(k.as_str(), |(_, key)| key) } else { k.as_str() };
                assert!(
                    entries.iter().any(|(ek, ev)| ek == key && ev.trim() == v),
                    "{what}: extra setting {k}={v} missing\n{body}"
                );
            }

            let differs = |label: &str, c: PhoneContext<'_>| {
                let other = render_phone(&f.template, &c);
                assert_ne!(other, body, "{what}: changing the {label} does not change the file");
                parse(profile, &other).unwrap_or_else(|e| panic!("{what} with another {label}: {e}\n{other}"));
            };
            differs("recording", PhoneContext { recording: false, ..phone(profile, &settings, &time) });
            differs("extension", PhoneContext { extension: "4202", ..phone(profile, &settings, &time) });
            differs("password", PhoneContext { password: "other-secret", ..phone(profile, &settings, &time) });
            differs("SIP server", PhoneContext { sip_server: "sip2.example.net", ..phone(profile, &settings, &time) });
            differs("display name", PhoneContext { display_name: "Someone Else", ..phone(profile, &settings, &time) });
            differs("outgoing CLI", PhoneContext { outgoing_cli: "", ..phone(profile, &settings, &time) });
            let tcp = render_phone(&f.template, &PhoneContext { sip_transport: "tcp", ..phone(profile, &settings, &time) });
            let tls = render_phone(&f.template, &PhoneContext { sip_transport: "tls", ..phone(profile, &settings, &time) });
            assert!(body != tcp && tcp != tls && body != tls, "{what}: the transport is not mapped");

            let bare =
                render_phone(&f.template, &PhoneContext { settings: &[], outgoing_cli: "", ..phone(profile, &settings, &time) });
            parse(profile, &bare).unwrap_or_else(|e| panic!("{what} without extras: {e}\n{bare}"));
        }
    }
}

async fn every_common_file_renders_in_the_vendor_format() {
    let profiles = Profiles::built_in();
    for profile in profiles.iter() {
        let family = profile.family.as_str();
        for f in profile.files.iter().filter(|f| !f.per_phone()) {
            let what = format!("{family} {} ({})", f.name, f.template);
            assert!(!templates::is_per_phone(&f.template), "{what}: a common file needs a common template");
            let (model, code) = if f.name.contains("{code}") {
                let (m, spec) = profile.models.iter().find(|(_, m)| m.code.is_some()).unwrap();
                (m.as_str(), spec.code.as_deref().unwrap())
            } else if f.name.contains("{model}") {
                (profile.models.keys().next().map(String::as_str).unwrap_or("X1"), "")
            } else {
                ("", "")
            };
            let c = CommonContext {
                model,
                variant: "",
                code,
                provisioning_url: PROV_URL,
                resync_minutes: 1440,
                resync_jitter_seconds: 600,
                notify_event: &profile.notify_event,
            };
            let body = templates::render_common(&f.template, &c)
                .unwrap_or_else(|| panic!("{what}: not a common template"))
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            if body.contains("<APPLICATION") {
                check_master(profile, &what, &body, "0004f2aabbcc");
                continue;
            }
            if body.contains("<directory>") {
                roxmltree::Document::parse(&body).unwrap_or_else(|e| panic!("{what}: {e}\n{body}"));
                continue;
            }
            let entries = parse(profile, &body).unwrap_or_else(|e| panic!("{what}: {e}\n{body}"));
            assert!(entries.iter().any(|(_, v)| v.contains("prov.example.com")), "{what}: no provisioning server\n{body}");
            let slower = templates::render_common(&f.template, &CommonContext { resync_minutes: 60, ..c }).unwrap().unwrap();
            assert_ne!(slower, body, "{what}: the periodic check is not written");
        }
    }
}

/// The captured requests of the built-in families; every family has some
/// (a new family comes with its captures).
fn fixture_rows() -> Vec<Row> {
    let profiles = Profiles::built_in();
    let rows: Vec<Row> = fixtures::requests().into_iter().filter(|r| profiles.family(&r.family).is_some()).collect();
    for p in profiles.iter() {
        let n = rows.iter().filter(|r| r.family == p.family && !r.user_agent.is_empty()).count();
        assert!(n > 0, "{}: no row with a User-Agent in tests/fixtures/phone-requests.tsv", p.family);
    }
    rows
}

fn squash(s: &str) -> String {
    s.chars().filter(|c| !matches!(c, '-' | '_' | ' ')).flat_map(char::to_lowercase).collect()
}

async fn every_fixture_user_agent_is_identified() {
    let profiles = Profiles::built_in();
    let rows = fixture_rows();
    assert!(rows.len() > 90, "only {} rows for the built-in families", rows.len());
    for r in rows.iter().filter(|r| !r.user_agent.is_empty()) {
        let ua = &r.user_agent;
        let info = profiles.parse_user_agent(ua).unwrap_or_else(|| panic!("{ua:?} is not identified"));
        assert_eq!(info.family, r.family, "{ua:?}");
        assert!(info.firmware.eq_ignore_ascii_case(&r.firmware), "{ua:?}: firmware {:?}, want {:?}", info.firmware, r.firmware);
        // The fixture writes some models differently from the phone
        // ("SPA-942" vs SPA942, "VVX_400" vs VVX400): then what the phone
        // says is what counts.
        assert!(
            info.model.eq_ignore_ascii_case(&r.model) || (ua.contains(&info.model) && squash(&info.model) == squash(&r.model)),
            "{ua:?}: model {:?}, want {:?}",
            info.model,
            r.model
        );
        // Written plain, with colons or with dashes (Aastra's "MAC:00-08-5D-…").
        let carries_mac = ua.to_lowercase().replace([':', '-'], "").contains(&r.mac);
        let got = info.mac.map(|m| m.lower());
        if carries_mac {
            assert_eq!(got.as_deref(), Some(r.mac.as_str()), "{ua:?}: the MAC is not taken");
        } else {
            assert_eq!(got, None, "{ua:?}: something that is not the MAC is taken as one");
        }
    }
    // The trap: a serial number that looks like a MAC.
    let linksys = profiles.parse_user_agent("Linksys/SPA-942-6.1.5(a) (88019FA42805)").unwrap();
    assert_eq!((linksys.family.as_str(), linksys.mac), ("cisco", None));
}

async fn every_fixture_file_name_is_identified() {
    let profiles = Profiles::built_in();
    let mut per_mac_served = 0;
    for r in fixture_rows() {
        let ua = (!r.user_agent.is_empty()).then_some(r.user_agent.as_str());
        let mut served_here = 0;
        for file in &r.files {
            let candidates = profiles.candidates(file);
            let ours: Vec<_> = candidates.iter().filter(|c| c.profile.family == r.family).collect();
            if ours.is_empty() {
                continue;
            }
            let id =
                profiles.identify(file, ua, Clues::default()).unwrap_or_else(|e| panic!("{file} for {:?}: {e}", r.user_agent));
            assert_eq!(id.profile.family, r.family, "{file} for {:?}", r.user_agent);
            if ours.iter().any(|c| c.file.per_phone()) {
                served_here += 1;
                assert!(id.file.per_phone(), "{file}: taken as a common file");
                assert_eq!(id.mac.map(|m| m.lower()).as_deref(), Some(r.mac.as_str()), "{file}");
                // Over TFTP, or when the User-Agent is unknown, the name
                // (and the OUI) must do.
                let by_name = profiles.identify(file, None, Clues::default()).unwrap();
                assert_eq!(by_name.profile.family, r.family, "{file} without a User-Agent");
                assert_eq!(by_name.mac.map(|m| m.lower()).as_deref(), Some(r.mac.as_str()), "{file}");
            } else {
                assert!(!id.file.per_phone(), "{file}: taken as a per-phone file");
            }
        }
        // A phone whose every file is quietly not served (the GXP2000's
        // binary-only 1.2.x firmware) is one we do not serve.
        if ua.is_some() && !r.files.iter().all(|f| profiles.is_quiet(f)) {
            assert!(served_here > 0, "no per-phone file served to {:?} ({:?})", r.user_agent, r.files);
        }
        per_mac_served += served_here;
    }
    assert!(per_mac_served > 90, "{per_mac_served}");
}

async fn model_codes_resolve_to_the_fixture_models() {
    let profiles = Profiles::built_in();
    for (file, family, model) in [
        ("y000000000066.cfg", "yealink", "T46S"),
        ("y000000000065.cfg", "yealink", "T48S"),
        ("y000000000096.cfg", "yealink", "T54W"),
        ("y000000000028.cfg", "yealink", "T46G"),
        ("y000000000000.cfg", "yealink", "T28P"),
        ("y000000000124.cfg", "yealink", "T33G"),
        ("F0V0V6700000.cfg", "fanvil", "V67"),
        ("spa504G.cfg", "cisco", "504G"),
        // Grandstream's model files by the model's lower-case name (its code).
        ("cfggrp2614.xml", "grandstream", "GRP2614"),
        ("cfggxp2135.xml", "grandstream", "GXP2135"),
        // Panasonic's pre-provisioning file {MODEL}.cfg (KX-HDV Administrator Guide 2.1.5).
        ("KX-HDV230.cfg", "panasonic", "KX-HDV230"),
        ("KX-TGP600.cfg", "panasonic", "KX-TGP600"),
        ("snomD785.htm", "snom", "D785"),
    ] {
        let id = profiles.identify(file, None, Clues::default()).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!((id.profile.family.as_str(), id.model.as_deref()), (family, Some(model)), "{file}");
        assert!(!id.file.per_phone(), "{file}");
    }
    assert!(profiles.identify("y000000000999.cfg", None, Clues::default()).is_err());
    // An Htek's device-code file (cfg0016.xml, UC903) is no Grandstream
    // model file: nothing serves it, and it 404s quietly (Htek UC900
    // Series IP Phones Provisioning 2.1: the phone stops at the first file
    // it gets, so this one must not be answered).
    let htek = Some("Htek UC903 2.0.4.2 00:1f:c1:1c:22:a9");
    assert!(profiles.identify("cfg0016.xml", htek, Clues::default()).is_err());
    assert!(profiles.is_quiet("cfg0016.xml"));
}

/// Every common file a captured phone asks for that names a model (by its
/// code or its name) is taken for that phone's model, in every family.
async fn every_fixture_model_file_names_the_phones_model() {
    let profiles = Profiles::built_in();
    let mut checked = 0;
    for r in fixture_rows() {
        for file in &r.files {
            let Ok(id) = profiles.identify(file, None, Clues::default()) else { continue };
            if id.profile.family != r.family || id.file.per_phone() || id.model.is_none() {
                continue;
            }
            let model = id.model.as_deref().unwrap();
            match id.code.as_deref() {
                // Several models may share a code (VP530, VP530P): the
                // phone's own model has the file's code.
                Some(code) => {
                    let own = id.profile.model(&r.model).and_then(|(_, m)| m.code.as_deref());
                    assert_eq!(own, Some(code), "{file}: {} has another code", r.model);
                }
                // The name carries the model as the phone writes it there
                // (spa508G.cfg for an SPA508G, 8841-3PCC.xml for a CP-8841-3PCC).
                None => assert!(squash(&r.model).contains(&squash(model)), "{file}: {model:?} is not {}", r.model),
            }
            checked += 1;
        }
    }
    assert!(checked > 50, "{checked}");
}

crate::e2e!(
    every_fixture_model_file_names_the_phones_model,
    every_per_phone_file_renders_in_the_vendor_format,
    every_common_file_renders_in_the_vendor_format,
    every_fixture_user_agent_is_identified,
    every_fixture_file_name_is_identified,
    model_codes_resolve_to_the_fixture_models,
);
