//! What each family's real phones need, through the real server: every
//! profile's boot sequences (the files a phone asks for at boot, in order,
//! and what each gets), a factory-new Cisco getting its account in one
//! boot, Polycom's and Yealink's keys, the push each family must accept,
//! and files that stay well-formed whatever the values.

use std::collections::BTreeMap;

use autoprov::profiles::{BootAnswer, Profiles};
use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{plain_client, Backend, TestServer};
use crate::provisioning::http_get;

/// A phone's MAC for a family: its first OUI and a serial.
pub(crate) fn mac_in(ouis: &[String], serial: u32) -> String {
    format!("{}{:06x}", ouis[0].to_ascii_lowercase(), serial)
}

/// A User-Agent of a boot sequence with the phone's MAC in it: `{colons}`
/// (`00:15:65:…`), `{DASHES}` (`00-08-5D-…`, Aastra's), `{MAC}`, `{mac}`.
pub(crate) fn user_agent(template: &str, mac: &str) -> String {
    let pairs: Vec<&str> = (0..6).map(|i| &mac[i * 2..i * 2 + 2]).collect();
    template
        .replace("{colons}", &pairs.join(":"))
        .replace("{DASHES}", &pairs.join("-").to_ascii_uppercase())
        .replace("{MAC}", &mac.to_ascii_uppercase())
        .replace("{mac}", mac)
}

/// Every family's every boot generation, as its profile writes it: a phone
/// with a handset asks for each file in order and gets what the profile
/// says (a file of ours, or a quiet 404), its account among them, and is
/// never taken for a scanner.
async fn every_familys_phones_boot_through_their_sequence(b: Backend) {
    let srv = TestServer::start(b).await;
    let profiles = Profiles::built_in();
    for (i, (profile, seq)) in profiles.iter().flat_map(|p| p.boot.iter().map(move |s| (p, s))).enumerate() {
        let what = format!("{} {}", profile.family, seq.generation);
        let mac = mac_in(&profile.mac_ouis, 0xb0_0000 + i as u32);
        let ext = format!("{}", 7000 + i);
        let mut handset = json!({"extensionnumber": ext, "mac": mac, "password": format!("Boot-secret-{i}")});
        if !seq.model.is_empty() {
            handset["model"] = json!(seq.model);
        }
        srv.create_handset(handset).await;
        let ua = user_agent(&seq.user_agent, &mac);
        let ua = (!ua.is_empty()).then_some(ua.as_str());
        let mut account = false;
        for f in &seq.files {
            let file = f.file.replace("{MAC}", &mac.to_ascii_uppercase()).replace("{mac}", &mac);
            let (status, _, body) = http_get(&srv, &file, ua).await;
            match f.answer {
                BootAnswer::Serve => {
                    assert_eq!(status, StatusCode::OK, "{what}: {file}\n{body}");
                    assert!(!body.trim().is_empty(), "{what}: {file} is empty");
                    account |= body.contains(&format!("Boot-secret-{i}"));
                }
                BootAnswer::Quiet => assert_eq!(status, StatusCode::NOT_FOUND, "{what}: {file} (quietly not served)\n{body}"),
            }
        }
        let serves_phone = seq.files.iter().any(|f| f.answer == BootAnswer::Serve && f.file.to_lowercase().contains("{mac}"));
        assert_eq!(account, serves_phone, "{what}: the phone got its account in its boot sequence");
    }
    for p in profiles.iter() {
        assert!(!p.boot.is_empty(), "{}: no boot sequence in its profile", p.family);
    }
    // Hundreds of files from one address, quiet 404s among them: no ban.
    let (seq, common) = profiles
        .iter()
        .flat_map(|p| &p.boot)
        .find_map(|s| {
            s.files.iter().find(|f| f.answer == BootAnswer::Serve && !f.file.to_lowercase().contains("{mac}")).map(|f| (s, f))
        })
        .expect("a boot sequence asks for a common file");
    let ua = user_agent(&seq.user_agent, "000000000001");
    let (status, _, _) = http_get(&srv, &common.file, (!ua.is_empty()).then_some(ua.as_str())).await;
    assert_eq!(status, StatusCode::OK, "the booting address is not banned");
    srv.stop().await;
}

/// XML elements by name (the last one of each name wins, as on the phone).
fn xml_values(body: &str) -> BTreeMap<String, String> {
    let doc = roxmltree::Document::parse(body).unwrap_or_else(|e| panic!("{e}\n{body}"));
    doc.descendants()
        .filter(|n| n.is_element())
        .map(|n| (n.tag_name().name().to_string(), n.text().unwrap_or("").to_string()))
        .collect()
}

/// A factory-new Cisco asks for its model's common file (its factory
/// Profile_Rule); that file's Profile_Rule_B, evaluated in the same resync
/// (Cisco IP Phone 8800 MPP Administration Guide, "Profile Rules"), names
/// the phone's own profile, so its account arrives in that one boot. The
/// common file does not rewrite Profile_Rule (a change to the rule being
/// evaluated takes effect at the next resync only).
async fn a_factory_new_cisco_gets_its_account_in_one_boot() {
    let srv = TestServer::start(Backend::Sqlite).await;
    let token = srv.token().await;
    for (common, ua, mac, ext) in [
        ("spa508G.cfg", "Cisco/SPA508G-7.4.4 (0002FDFF2103)(CBT141400UK)", "0002fdff2103", "300"),
        ("8841-3PCC.xml", "Cisco-CP-8841-3PCC/11.0 (00562b043615)", "00562b043615", "301"),
    ] {
        srv.create_handset(json!({"extensionnumber": ext, "mac": mac})).await;
        let (status, _, body) = http_get(&srv, common, Some(ua)).await;
        assert_eq!(status, StatusCode::OK, "{common}");
        let c = xml_values(&body);
        assert!(!c.contains_key("Profile_Rule"), "{common} leaves the factory Profile_Rule alone\n{body}");
        let rule = c.get("Profile_Rule_B").unwrap_or_else(|| panic!("{common}: no Profile_Rule_B\n{body}"));
        let url = rule.replace("$MA", mac);
        assert!(url.ends_with(&format!("/p/{token}/{mac}.xml")), "{url}");
        // What the phone does next, in the same resync: fetch that URL.
        let path = &url[url.find("/p/").expect("a token path")..];
        let (status, _, own) = crate::provisioning::http_get_path(&srv, path, Some(ua)).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        let own = xml_values(&own);
        assert_eq!(own.get("User_ID_1_").map(String::as_str), Some(ext), "the account, in the first boot");
        assert!(own["Profile_Rule"].ends_with(&format!("/p/{token}/$MA.xml")), "from now on its own profile first");
        assert_eq!(own.get("Profile_Rule_B").map(String::as_str), Some(""), "and only once per resync");
    }
    srv.stop().await;
}

/// Polycom: the account is in a file of ours, not in UC Software's own
/// override file; `recording` does not turn on the phone's USB recording;
/// the directories it asks for are answered empty.
async fn polycom_files_are_ours_and_recording_is_the_platforms() {
    let srv = TestServer::start(Backend::Sqlite).await;
    let ua = "FileTransport PolycomVVX-VVX_500-UA/5.9.7.4477 Type/Application";
    srv.create_handset(json!({"extensionnumber": "400", "mac": "0004f282e824", "model": "VVX500", "recording": "true"})).await;
    for master in ["000000000000.cfg", "0004f282e824.cfg"] {
        let (_, _, body) = http_get(&srv, master, Some(ua)).await;
        let doc = roxmltree::Document::parse(&body).unwrap();
        let listed = doc.root_element().attribute("CONFIG_FILES").unwrap();
        assert!(listed.ends_with("-autoprov.cfg") && !listed.contains("-phone.cfg"), "{master}: {listed}");
    }
    let (status, _, config) = http_get(&srv, "0004f282e824-autoprov.cfg", Some(ua)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(config.contains("reg.1.address=\"400\""), "{config}");
    let doc = roxmltree::Document::parse(&config).unwrap();
    let usb = doc.descendants().any(|n| n.attribute("feature.callRecording.enabled").is_some());
    assert!(!usb, "no USB recording switch\n{config}");
    let (status, _, _) = http_get(&srv, "0004f282e824-phone.cfg", Some(ua)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "the phone's own override file is its own");
    for dir in ["0004f282e824-directory.xml", "000000000000-directory.xml"] {
        let (status, _, body) = http_get(&srv, dir, Some(ua)).await;
        assert_eq!(status, StatusCode::OK, "{dir}");
        let doc = roxmltree::Document::parse(&body).unwrap();
        assert_eq!(doc.root_element().tag_name().name(), "directory");
        assert!(doc.descendants().any(|n| n.has_tag_name("item_list")), "{body}");
    }
    srv.stop().await;
}

/// Yealink renamed keys between firmware releases: a phone gets the keys its
/// firmware reads (V7x: account.X.transport and unprefixed auto_provision.*;
/// V80: transport_type and unprefixed; V81+: static.*), from what it
/// reports now or reported before, else from its model. Its record key
/// (BroadWorks') is never written for the platform's recording.
async fn yealink_keys_follow_the_firmware() {
    let srv = TestServer::start(Backend::Sqlite).await;
    srv.create_handset(json!({"extensionnumber": "500", "mac": "0015654aa937", "model": "T46G", "recording": "true"})).await;
    srv.create_handset(json!({"extensionnumber": "501", "mac": "0015653931fc", "model": "T22P"})).await;
    srv.create_handset(json!({"extensionnumber": "502", "mac": "001565b86005", "model": "W52P"})).await;
    let keys = |body: &str| -> BTreeMap<String, String> {
        crate::formats::parse_yealink(body).unwrap().into_iter().map(|(k, v)| (k, v.trim().to_string())).collect()
    };
    for (file, ua, transport, provisioning) in [
        (
            "0015654aa937.cfg",
            Some("Yealink SIP-T46G 28.72.0.1 00:15:65:4a:a9:37"),
            "account.1.transport",
            "auto_provision.server.url",
        ),
        (
            "0015654aa937.cfg",
            Some("Yealink SIP-T46G 28.83.0.120 00:15:65:4a:a9:37"),
            "account.1.sip_server.1.transport_type",
            "static.auto_provision.server.url",
        ),
        ("0015653931fc.cfg", None, "account.1.transport", "auto_provision.server.url"),
        (
            "001565b86005.cfg",
            Some("Yealink W52P 25.80.0.15 00:15:65:b8:60:05"),
            "account.1.sip_server.1.transport_type",
            "auto_provision.server.url",
        ),
    ] {
        let (status, _, body) = http_get(&srv, file, ua).await;
        assert_eq!(status, StatusCode::OK, "{file} {ua:?}");
        let k = keys(&body);
        assert!(k.contains_key(transport) && k.contains_key(provisioning), "{file} {ua:?}: {transport}, {provisioning}\n{body}");
        let other_transport =
            if transport == "account.1.transport" { "account.1.sip_server.1.transport_type" } else { "account.1.transport" };
        assert!(!k.contains_key(other_transport), "{file} {ua:?}: one transport key\n{body}");
        assert!(!k.keys().any(|key| key.contains("call_recording")), "{file}: no record key\n{body}");
    }
    srv.stop().await;
}

/// The push we send must be accepted: snom drops a NOTIFY that is not from
/// its registrar unless filter_registrar is off; Grandstream acts on one
/// only with "Allow SIP Reset".
async fn phones_accept_the_push_we_send() {
    let srv = TestServer::start(Backend::Sqlite).await;
    srv.create_handset(json!({"extensionnumber": "600", "mac": "000413922d24", "model": "D785"})).await;
    srv.create_handset(json!({"extensionnumber": "601", "mac": "000b828aa872", "model": "GXP2135"})).await;
    let (_, _, snom) = http_get(&srv, "snomD785-000413922D24.htm", None).await;
    assert_eq!(xml_values(&snom).get("filter_registrar").map(String::as_str), Some("off"), "{snom}");
    let (_, _, gs) = http_get(&srv, "cfg000b828aa872.xml", None).await;
    assert_eq!(xml_values(&gs).get("P26015").map(String::as_str), Some("1"), "{gs}");
    // Panasonic acts on a NOTIFY whose Event is the text of
    // CFG_RESYNC_FROM_SIP (KX-HDV Administrator Guide 2.4.5, "When
    // directed"): it must be the event we send.
    srv.create_handset(json!({"extensionnumber": "602", "mac": "0080f08aa873", "model": "KX-HDV230"})).await;
    let (_, _, pana) = http_get(&srv, "Config0080F08AA873.cfg", None).await;
    let event = Profiles::built_in().family("panasonic").unwrap().notify_event.clone();
    assert!(pana.contains(&format!("CFG_RESYNC_FROM_SIP=\"{event}\"\r\n")), "{pana}");
    srv.stop().await;
}

/// An IDN SIP server and provisioning host (`xn--…`) put `--` into every
/// value that carries them: no XML file may break for it (a comment may not
/// hold `--`). Every XML family's every file, common and per phone.
async fn xml_files_stay_well_formed_with_idn_names() {
    let srv = TestServer::start(Backend::Sqlite).await;
    let (s, _) = srv.put("/api/domain", json!({"sipserver": "xn--bcher-kva.example"})).await;
    assert_eq!(s, StatusCode::OK);
    let token = srv.token().await;
    let profiles = Profiles::built_in();
    let host = format!("xn--prov-9ra.example:{}", srv.http().port());
    for (i, profile) in profiles.iter().filter(|p| p.format == autoprov::render::Format::Xml).enumerate() {
        let mac = mac_in(&profile.mac_ouis, 0xd0_0000 + i as u32);
        let model = profile.boot.iter().map(|b| b.model.as_str()).find(|m| !m.is_empty()).unwrap_or_default();
        srv.create_handset(json!({"extensionnumber": format!("80{i}"), "mac": mac, "model": model, "name": "A--B"})).await;
        let mut used = false;
        for seq in &profile.boot {
            for f in seq.files.iter().filter(|f| f.answer == BootAnswer::Serve) {
                let file = f.file.replace("{MAC}", &mac.to_ascii_uppercase()).replace("{mac}", &mac);
                let url = format!("http://{}/p/{token}/{file}", srv.http());
                let resp = plain_client().get(url).header("host", &host).send().await.unwrap();
                let status = resp.status();
                let body = resp.text().await.unwrap();
                assert_eq!(status, StatusCode::OK, "{} {file}", profile.family);
                used |= body.contains("xn--");
                roxmltree::Document::parse(&body).unwrap_or_else(|e| panic!("{} {file}: {e}\n{body}", profile.family));
            }
        }
        assert!(used, "{}: the IDN names are in its files", profile.family);
    }
    srv.stop().await;
}

/// Grandstream's cfg<mac> names the binary configuration: never XML.
async fn a_grandstream_binary_name_is_not_answered_with_xml() {
    let srv = TestServer::start(Backend::Sqlite).await;
    srv.create_handset(json!({"extensionnumber": "610", "mac": "000b828aa872"})).await;
    let ua = Some("Grandstream Model HW GXP2135 SW 1.0.7.97 DevId 000b828aa872");
    let (status, _, body) = http_get(&srv, "cfg000b828aa872", ua).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(http_get(&srv, "cfg000b828aa872.xml", ua).await.0, StatusCode::OK);
    srv.stop().await;
}

/// A Fanvil extra setting goes under the module it names, never into
/// whatever module the file happens to end with.
async fn fanvil_extra_settings_go_under_their_module() {
    let srv = TestServer::start(Backend::Sqlite).await;
    let settings = json!({"PHONE FEATURE MODULE.Default Language": "11", "Orphan Key": "x"});
    srv.create_handset(json!({"extensionnumber": "620", "mac": "0c383e2b29e6", "model": "V67", "settings": settings})).await;
    let (status, _, body) = http_get(&srv, "0c383e2b29e6.cfg", Some("Fanvil V67 2.6.6.187 0c383e2b29e6")).await;
    assert_eq!(status, StatusCode::OK);
    crate::formats::parse_fanvil(&body).unwrap_or_else(|e| panic!("{e}\n{body}"));
    let mut module = "";
    let mut placed = BTreeMap::new();
    for line in body.lines().map(str::trim) {
        if line.starts_with('<') && line.ends_with(" MODULE>") {
            module = line;
        } else if let Some((k, v)) = line.split_once(':').filter(|_| !line.starts_with('#')) {
            placed.insert(k.trim().to_string(), (module.to_string(), v.to_string()));
        }
    }
    assert_eq!(placed.get("Default Language"), Some(&("<PHONE FEATURE MODULE>".to_string(), "11".to_string())), "{body}");
    assert!(!placed.contains_key("Orphan Key"), "a key that names no module is not written\n{body}");
    assert_eq!(placed.get("Download Username").map(|(m, _)| m.as_str()), Some("<AUTOUPDATE CONFIG MODULE>"));
    srv.stop().await;
}

crate::both_backends!(every_familys_phones_boot_through_their_sequence);

crate::e2e!(
    a_factory_new_cisco_gets_its_account_in_one_boot,
    polycom_files_are_ours_and_recording_is_the_platforms,
    yealink_keys_follow_the_firmware,
    phones_accept_the_push_we_send,
    xml_files_stay_well_formed_with_idn_names,
    a_grandstream_binary_name_is_not_answered_with_xml,
    fanvil_extra_settings_go_under_their_module,
);
