//! Phones fetching their files over HTTP, HTTPS and TFTP, for every family.

use std::net::IpAddr;
use std::time::Duration;

use autoprov::profiles::{Clues, Profiles};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::both_backends;
use crate::formats::{has_value, parse};
use crate::harness::{https_client_from, plain_client, Backend, TestServer};
use crate::tftp_client::{self, TftpError};

/// One phone of each family, derived from the data (never a list here):
/// for every built-in profile, a captured phone of that family from
/// `tests/fixtures/phone-requests.tsv` with a MAC of our own. A family
/// without such a row fails every test that uses the phones.
pub struct Phone {
    pub family: String,
    /// The model as the installer sets it on the handset (the profile's
    /// name for the row's model).
    pub model: String,
    /// Its real User-Agent, with its MAC.
    pub ua: String,
    pub mac: String,
    /// Its handset's extension (`2<i>00`, in profile order).
    pub ext: String,
    /// The first per-phone file it asks for at boot.
    pub file: String,
    /// Every per-phone file of its family it may ask for: its boot files,
    /// and the profile's other names that need nothing but the MAC (the
    /// files a master file lists, say). Its account is in one of them.
    pub files: Vec<String>,
    /// A common file it asks for at boot, if its family has any.
    pub common: Option<String>,
}

/// The phones, one per built-in profile, in profile order.
pub fn phones() -> &'static [Phone] {
    static PHONES: std::sync::LazyLock<Vec<Phone>> = std::sync::LazyLock::new(derive_phones);
    &PHONES
}

/// The phone of `family`, for tests of that family's own keys or events.
pub fn phone(family: &str) -> &'static Phone {
    phones().iter().find(|p| p.family == family).unwrap_or_else(|| panic!("no built-in profile {family}"))
}

/// A firmware version as numbers, to pick the newest (`2.12.16.17` →
/// [2, 12, 16, 17]; letters count as nothing).
fn version(firmware: &str) -> Vec<u64> {
    firmware.split(|c: char| !c.is_ascii_digit()).filter(|p| !p.is_empty()).map(|p| p.parse().unwrap_or(0)).collect()
}

/// For each profile, of the fixture rows of its family that are phones we
/// serve over HTTP (a User-Agent the profile identifies, a model it
/// lists, a per-phone file and, if the family has any, a common file it
/// serves), the one with the newest firmware: the tests exercise each
/// family's current generation.
fn derive_phones() -> Vec<Phone> {
    let profiles = Profiles::built_in();
    let rows = crate::fixtures::requests();
    let mut out: Vec<Phone> = Vec::new();
    for (i, profile) in profiles.iter().enumerate() {
        let family = profile.family.as_str();
        let has_common = profile.files.iter().any(|f| !f.per_phone());
        let mut best: Option<(Vec<u64>, Phone)> = None;
        for row in rows.iter().filter(|r| r.family == family && r.protocol == "http" && !r.user_agent.is_empty()) {
            let Some(model) = profile.model(&row.model).map(|(m, _)| m.clone()) else { continue };
            let mac = format!("{}aabb{:02x}", &row.mac[..6], i + 1);
            let (ua, files) = row.with_mac(&mac);
            if profiles.parse_user_agent(&ua).is_none_or(|u| u.family != family) {
                continue;
            }
            let served = |name: &String, per_phone: bool| {
                profiles
                    .identify(name, Some(&ua), Clues::default())
                    .is_ok_and(|id| id.profile.family == family && id.file.per_phone() == per_phone)
            };
            let mut per_phone: Vec<String> = files.iter().filter(|f| served(f, true)).cloned().collect();
            let common = files.iter().find(|f| served(f, false)).cloned();
            if per_phone.is_empty() || (has_common && common.is_none()) {
                continue;
            }
            let file = per_phone[0].clone();
            for spec in
                profile.files.iter().filter(|f| f.per_phone() && !f.name.contains("{model}") && !f.name.contains("{code}"))
            {
                let name = spec.name.replace("{mac}", &mac).replace("{MAC}", &mac.to_uppercase());
                if !per_phone.contains(&name) && served(&name, true) {
                    per_phone.push(name);
                }
            }
            let phone = Phone { family: family.into(), model, ua, mac, ext: format!("2{i}00"), file, files: per_phone, common };
            if best.as_ref().is_none_or(|(v, _)| version(&row.firmware) > *v) {
                best = Some((version(&row.firmware), phone));
            }
        }
        let (_, phone) = best.unwrap_or_else(|| {
            panic!(
                "{family}: no row of tests/fixtures/phone-requests.tsv is a phone of this family served over HTTP \
                 (a User-Agent its profile identifies, a model it lists, a per-phone file and a common file it \
                 serves): add the family's captured requests"
            )
        });
        out.push(phone);
    }
    assert!(!out.is_empty(), "no built-in profiles");
    out
}

const DISPLAY: &str = "Zoë & Co <Desk>";

both_backends!(
    every_family_over_http_https_and_tftp,
    conditional_requests_and_changes,
    unknown_phones_are_recorded_for_installers,
    a_user_agent_for_another_mac_is_refused,
    layered_settings_reach_the_file,
    a_change_on_another_node_reaches_this_nodes_phones,
);
crate::e2e!(a_phone_resumes_its_tls_session_with_the_one_ticket_each_handshake_brings);

/// A phone of the default domain asking for `file` over plain HTTP, under
/// the domain's provisioning URL.
pub async fn http_get(srv: &TestServer, file: &str, ua: Option<&str>) -> (StatusCode, reqwest::header::HeaderMap, String) {
    http_get_path(srv, &srv.phone_path(file).await, ua).await
}

/// The same at a bare `/<file>`, as a phone whose DHCP names no token.
pub async fn http_get_bare(srv: &TestServer, file: &str, ua: Option<&str>) -> (StatusCode, reqwest::header::HeaderMap, String) {
    http_get_path(srv, &format!("/{file}"), ua).await
}

pub async fn http_get_path(srv: &TestServer, path: &str, ua: Option<&str>) -> (StatusCode, reqwest::header::HeaderMap, String) {
    let mut req = plain_client().get(srv.plain_url(path));
    if let Some(ua) = ua {
        req = req.header("user-agent", ua);
    }
    let resp = req.send().await.unwrap();
    let (status, headers) = (resp.status(), resp.headers().clone());
    (status, headers, resp.text().await.unwrap())
}

pub async fn create_phones(srv: &TestServer) {
    let (s, _) = srv.put("/api/domain", json!({"sipserver": "sip.example.net", "sipport": 5062})).await;
    assert_eq!(s, StatusCode::OK);
    for (i, p) in phones().iter().enumerate() {
        srv.create_handset(json!({"extensionnumber": p.ext, "name": DISPLAY, "password": format!("Secret-{i}-pw"), "mac": p.mac, "model": p.model}))
            .await;
    }
}

/// Waits for the write-behind recorder to show a fetch on Handset Select.
pub async fn wait_for_fetch(srv: &TestServer, ext: &str) -> Value {
    for _ in 0..100 {
        let (_, h) = srv.get(&format!("/api/handset/{ext}")).await;
        if h["lastprovisioned"] != "" {
            return h;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no fetch recorded for {ext}");
}

async fn every_family_over_http_https_and_tftp(b: Backend) {
    let srv = TestServer::start(b).await;
    create_phones(&srv).await;
    let profiles = Profiles::built_in();
    let https = https_client_from(&srv.running().tls_cert_path, None, None);
    let tftp = srv.running().tftp_addr.unwrap();
    let http_base = format!("http://127.0.0.1:{}/", srv.http().port());
    let https_base = format!("https://localhost:{}/", srv.https().port());
    for (i, p) in phones().iter().enumerate() {
        let profile = profiles.family(&p.family).unwrap();
        let mut account = Vec::new();
        for file in &p.files {
            let what = format!("{} {file}", p.family);
            let (s, headers, body) = http_get(&srv, file, Some(&p.ua)).await;
            assert_eq!(s, StatusCode::OK, "{what}: {body}");
            assert_eq!(headers["content-type"], &*profile.content_type, "{what}");

            // The same file over HTTPS and TFTP: only the server address
            // differs (with the port TFTP really listens on).
            let resp = https.get(srv.url(&srv.phone_path(file).await)).header("user-agent", &p.ua).send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK, "{what}");
            let over_https = resp.text().await.unwrap();
            assert_eq!(same_but_server(&over_https, &https_base), same_but_server(&body, &http_base), "{what}");
            let tftp_path = srv.phone_path(file).await;
            let over_tftp = String::from_utf8(tftp_client::get(tftp, &tftp_path[1..]).await.unwrap()).unwrap();
            let tftp_base = format!("tftp://127.0.0.1:{}/", tftp.port());
            assert_eq!(same_but_server(&over_tftp, &tftp_base), same_but_server(&body, &http_base), "{what}");
            if body.contains(&format!("Secret-{i}-pw")) {
                account.push((file, body));
            }
        }
        // The account is in its files (one, or several names for one).
        assert!(!account.is_empty(), "{}: no account in any of {:?}", p.family, p.files);
        for (file, body) in account {
            let entries = parse(profile, &body).unwrap_or_else(|e| panic!("{} {file}: {e}\n{body}", p.family));
            for want in [p.ext.clone(), format!("Secret-{i}-pw"), DISPLAY.to_string()] {
                assert!(has_value(&entries, &want), "{} {file}: no value {want:?} in\n{body}", p.family);
            }
            // Some vendors write the server as host:port.
            assert!(
                entries.iter().any(|(_, v)| v.starts_with("sip.example.net")),
                "{} {file}: no SIP server in\n{body}",
                p.family
            );
            assert!(body.contains(&http_base[7..]), "{} {file}: the config sends the phone back where it came from", p.family);
        }

        // The family's common file.
        if let Some(common) = &p.common {
            let (s, _, body) = http_get(&srv, common, Some(&p.ua)).await;
            assert_eq!(s, StatusCode::OK, "{} {common}", p.family);
            parse(profile, &body).unwrap_or_else(|e| panic!("{} {common}: {e}\n{body}", p.family));
        }

        let h = wait_for_fetch(&srv, &p.ext).await;
        assert_eq!(h["revision"], 1);
        assert!(!h["devicemodel"].as_str().unwrap().is_empty(), "{}: {h}", p.family);
    }
    srv.stop().await;
}

/// The file with the server address taken out: the base URL (some vendors
/// write it without its scheme), the keys in which vendors write the
/// protocol of that address (Polycom, Grandstream, Fanvil, Htek, Aastra),
/// and Aastra's server address as host, path and port keys of that protocol.
pub fn same_but_server(body: &str, base: &str) -> String {
    let bare = base.split_once("://").map(|(_, rest)| rest).unwrap_or(base);
    let body = body.replace(base, "BASE").replace(bare, "BASE");
    let protocol_keys = regex::Regex::new(
        r#"(device\.prov\.serverType=")\d|(<P212(?: para="[^"]*")?>)\d|(Flash Protocol\s*:)\d|(download protocol: )[A-Z]+"#,
    )
    .unwrap();
    let body = protocol_keys.replace_all(&body, "${1}${2}${3}${4}PROTO").into_owned();
    let server_keys = regex::Regex::new(r"(?m)^(?:https?|tftp) (?:server|path|port): .*\n").unwrap();
    let body = server_keys.replace_all(&body, "").into_owned();
    // Action URLs (phone_events.rs) are HTTP(S): a phone told to come back
    // over TFTP, with no HTTPS listener of ours to name, is given none.
    let action_urls = regex::Regex::new(r"(?m)^.*BASEev/.*\n").unwrap();
    let body = action_urls.replace_all(&body, "").into_owned();
    // Yealink's Action URI allow list names the server's address as the
    // phone reached it: only where that was an address (call_control.rs).
    let allow_list = regex::Regex::new(r"(?m)^features\.action_uri_limit_ip = .*\n").unwrap();
    allow_list.replace_all(&body, "").into_owned()
}

/// `file` (a path as the phone asks for it) fetched with tftp-hpa's client.
pub fn real_tftp_get(client: &std::path::Path, port: u16, file: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("got");
    let status = std::process::Command::new(client)
        .args(["127.0.0.1", &port.to_string(), "-m", "octet", "-c", "get", file, out.to_str().unwrap()])
        .status()
        .unwrap_or_else(|e| panic!("{}: {e}", client.display()));
    assert!(status.success(), "{} failed for {file}", client.display());
    std::fs::read(&out).unwrap()
}

async fn conditional_requests_and_changes(b: Backend) {
    let srv = TestServer::start(b).await;
    create_phones(&srv).await;
    // Any family would do; Yealink's files carry values as they are.
    let p = phone("yealink");
    let (_, headers, body) = http_get(&srv, &p.file, Some(&p.ua)).await;
    let etag = headers["etag"].to_str().unwrap().to_string();
    let modified = headers["last-modified"].to_str().unwrap().to_string();
    // The phone's own User-Agent on every request: it names the model,
    // which is part of the file.
    let client = reqwest::Client::builder().user_agent(&p.ua).no_proxy().build().unwrap();
    let url = srv.plain_url(&srv.phone_path(&p.file).await);

    let resp = client.get(&url).header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(resp.headers()["etag"], etag.as_str());
    let resp = client.get(&url).header("if-modified-since", &modified).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
    let resp = client.get(&url).header("if-none-match", "\"something-else\"").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = client.head(&url).send().await.unwrap();
    assert_eq!(
        (resp.status(), resp.headers()["content-length"].to_str().unwrap()),
        (StatusCode::OK, body.len().to_string().as_str())
    );
    assert!(resp.text().await.unwrap().is_empty());
    let resp = client.post(&url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);

    // The same bytes give the same ETag; a changed handset changes both.
    let (_, again, same) = http_get(&srv, &p.file, Some(&p.ua)).await;
    assert_eq!((again["etag"].to_str().unwrap(), same.as_str()), (etag.as_str(), body.as_str()));
    // Last-Modified has one-second resolution: make the change land in a later second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    srv.put(&format!("/api/handset/{}", p.ext), json!({"name": "Renamed desk"})).await;
    let (_, changed, new_body) = http_get(&srv, &p.file, Some(&p.ua)).await;
    assert_ne!(changed["etag"].to_str().unwrap(), etag);
    assert_ne!(new_body, body);
    assert!(new_body.contains("Renamed desk"));
    let resp = client.get(&url).header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "the old ETag no longer matches");
    let resp = client.get(&url).header("if-modified-since", &modified).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "modified since the old date");
    srv.stop().await;
}

async fn unknown_phones_are_recorded_for_installers(b: Backend) {
    let srv = TestServer::start_with(b, |s| s.unknown_device_cap = 3).await;
    srv.add_user("boss@acme", "boss-password-123", "admin", false).await;
    let macs = ["001565c0ffe1", "001565c0ffe2", "001565c0ffe3", "001565c0ffe4", "001565c0ffe5"];
    for (i, mac) in macs.iter().enumerate() {
        let ua = format!("Yealink SIP-T54W 96.86.0.{i} {}", mac_colons(mac));
        let (s, _, _) = http_get(&srv, &format!("{mac}.cfg"), Some(&ua)).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        // Recorded before the next one, so "oldest" is well defined.
        crate::harness::wait_for_unknown_device(&srv, mac).await;
    }
    http_get(&srv, "001565c0ffe5.cfg", Some("Yealink SIP-T54W 96.86.0.9 00:15:65:c0:ff:e5")).await;
    crate::harness::eventually("the second fetch counted", Duration::from_secs(5), || async {
        let d = crate::harness::wait_for_unknown_device(&srv, "001565c0ffe5").await;
        (d["fetchcount"] == 2).then_some(())
    })
    .await;
    let (s, devices) = srv.get("/api/device?state=unknown").await;
    assert_eq!(s, StatusCode::OK);
    let listed: Vec<&str> = devices.as_array().unwrap().iter().map(|d| d["mac"].as_str().unwrap()).collect();
    assert_eq!(listed, ["001565c0ffe3", "001565c0ffe4", "001565c0ffe5"], "capped at 3, oldest evicted");
    let last = &devices[2];
    assert_eq!(
        (last["vendor"].as_str(), last["model"].as_str(), last["firmware"].as_str()),
        (Some("yealink"), Some("T54W"), Some("96.86.0.9"))
    );
    assert_eq!(
        (last["fetchcount"].as_i64(), last["state"].as_str(), last["ip"].as_str()),
        (Some(2), Some("unknown"), Some("127.0.0.1"))
    );
    assert_eq!(last["lastfile"], "001565c0ffe5.cfg");
    // They came under the default domain's token: another tenant's users
    // see them only when they fetch from its site networks.
    let boss = ("boss@acme", "boss-password-123");
    let (s, none) = srv.call(Method::GET, "/api/device?state=unknown", boss, None).await;
    assert_eq!((s, none), (StatusCode::OK, json!([])));
    for (nets, want) in [(json!(["10.1.0.0/16"]), 0), (json!("192.0.2.1, 127.0.0.0/16"), 3)] {
        let (s, d) = srv.call(Method::PUT, "/api/domain", boss, Some(json!({"sitenetworks": nets}))).await;
        assert_eq!(s, StatusCode::OK, "{d}");
        let (_, seen) = srv.call(Method::GET, "/api/device?state=unknown", boss, None).await;
        assert_eq!(seen.as_array().unwrap().len(), want, "{nets}: {seen}");
    }
    let (_, d) = srv.call(Method::GET, "/api/domain", boss, None).await;
    assert_eq!(d["sitenetworks"], json!(["192.0.2.1/32", "127.0.0.0/16"]));
    let (s, v) = srv.call(Method::PUT, "/api/domain", boss, Some(json!({"sitenetworks": ["office"]}))).await;
    assert!(s == StatusCode::BAD_REQUEST && v["error"].as_str().unwrap().contains("office"), "{v}");
    // Once a handset has the MAC, the phone is known and served.
    srv.create_handset(json!({"extensionnumber": "300", "mac": "001565c0ffe5"})).await;
    let (s, _, _) = http_get(&srv, "001565c0ffe5.cfg", Some("Yealink SIP-T54W 96.86.0.9 00:15:65:c0:ff:e5")).await;
    assert_eq!(s, StatusCode::OK);
    wait_for_fetch(&srv, "300").await;
    let (_, known) = srv.get("/api/device?state=known").await;
    assert_eq!(known[0]["extensionnumber"], "300");
    srv.stop().await;
}

fn mac_colons(mac: &str) -> String {
    mac.as_bytes().chunks(2).map(|c| std::str::from_utf8(c).unwrap()).collect::<Vec<_>>().join(":")
}

async fn a_user_agent_for_another_mac_is_refused(b: Backend) {
    let srv = TestServer::start(b).await;
    create_phones(&srv).await;
    // Every phone that says its MAC in its User-Agent, saying another.
    let profiles = Profiles::built_in();
    let mut refused = 0;
    for p in phones() {
        if profiles.parse_user_agent(&p.ua).and_then(|u| u.mac).is_none() {
            continue;
        }
        let row = crate::fixtures::Row { user_agent: p.ua.clone(), mac: p.mac.clone(), ..Default::default() };
        let (ua, _) = row.with_mac(&format!("{}ccdd99", &p.mac[..6]));
        assert_ne!(ua, p.ua);
        let (s, _, body) = http_get(&srv, &p.file, Some(&ua)).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{} {}", p.family, p.file);
        assert!(!body.contains("Secret"), "no config in a refusal");
        refused += 1;
    }
    assert!(refused > 0, "no family's User-Agent carries a MAC");
    // The Linksys serial-number trap: a 12-hex serial is not a MAC.
    srv.create_handset(json!({"extensionnumber": "942", "mac": "000e08d41b7a"})).await;
    let (s, _, _) = http_get(&srv, "000e08d41b7a.xml", Some("Linksys/SPA-942-6.1.5(a) (88019FA42805)")).await;
    assert_eq!(s, StatusCode::OK);
    srv.stop().await;
}

async fn layered_settings_reach_the_file(b: Backend) {
    let srv = TestServer::start(b).await;
    create_phones(&srv).await;
    let (s, v) = srv
        .put(
            "/api/domain",
            json!({"settings": {"lang.gui": "English", "features.dnd.enable": "0", "phone_setting.backlight_time": "60"},
                   "modelsettings": {&phone("yealink").model: {"features.dnd.enable": "1", "lang.wui": "French"}}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let p = phone("yealink");
    let (s, v) =
        srv.put(&format!("/api/handset/{}", p.ext), json!({"settings": {"lang.wui": "German", "custom.key": "x & <y>"}})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, _, body) = http_get(&srv, &p.file, Some(&p.ua)).await;
    let entries = parse(Profiles::built_in().family("yealink").unwrap(), &body).unwrap();
    let value = |k: &str| entries.iter().rev().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    assert_eq!(value("lang.gui"), Some("English"), "domain layer");
    assert_eq!(value("features.dnd.enable"), Some("1"), "model over domain");
    assert_eq!(value("lang.wui"), Some("German"), "handset over model");
    assert_eq!(value("custom.key"), Some("x & <y>"));
    // XML vendors get the same values escaped, never raw.
    let profiles = Profiles::built_in();
    for p in phones().iter().filter(|p| profiles.family(&p.family).unwrap().format == autoprov::render::Format::Xml) {
        for file in &p.files {
            let (_, _, xml) = http_get(&srv, file, Some(&p.ua)).await;
            roxmltree::Document::parse(&xml).unwrap_or_else(|e| panic!("{} {file}: {e}\n{xml}", p.family));
        }
    }

    // Values that could break a format are refused with the reason.
    let handset = format!("/api/handset/{}", p.ext);
    for bad in [
        json!({"settings": {"a": "1\nadmin.password = x"}}),
        json!({"settings": {"bad key!": "1"}}),
        json!({"settings": {"k": {"nested": 1}}}),
    ] {
        let (s, v) = srv.put(&handset, bad.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}");
        assert!(v["error"].as_str().unwrap().contains("settings"), "{v}");
    }
    let (s, _) = srv.put("/api/domain", json!({"modelsettings": {&p.model: {"x": "a\rb"}}})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    srv.stop().await;
}

async fn a_change_on_another_node_reaches_this_nodes_phones(b: Backend) {
    let a = TestServer::start(b).await;
    create_phones(&a).await;
    let node_b = TestServer::start_sharing(&a).await;
    // Any family would do; Yealink's files carry values as they are.
    let p = phone("yealink");
    let (s, _, before) = http_get(&node_b, &p.file, Some(&p.ua)).await;
    assert_eq!(s, StatusCode::OK);
    assert!(before.contains(DISPLAY));
    // Node B has the phone cached now; node A changes it, then the domain.
    let served_soon = |needle: &'static str| {
        let node_b = &node_b;
        async move {
            for _ in 0..50 {
                let (_, _, now) = http_get(node_b, &p.file, Some(&p.ua)).await;
                if now.contains(needle) {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            false
        }
    };
    a.put(&format!("/api/handset/{}", p.ext), json!({"name": "Changed on A"})).await;
    assert!(served_soon("Changed on A").await, "node B still serves the old name after 2.5 s");
    a.put("/api/domain", json!({"sipserver": "sip2.example.net"})).await;
    assert!(served_soon("sip2.example.net").await, "node B still serves the old SIP server after 2.5 s");
    // On the node that made the change it is immediate (A has it cached).
    http_get(&a, &p.file, Some(&p.ua)).await;
    a.put(&format!("/api/handset/{}", p.ext), json!({"name": "Immediate"})).await;
    let (_, _, now) = http_get(&a, &p.file, Some(&p.ua)).await;
    assert!(now.contains("Immediate"));
    node_b.stop().await;
    a.stop().await;
}

async fn the_scan_guard_bans_and_lifts() {
    let srv = TestServer::start_with(Backend::Sqlite, |s| {
        s.scan_ban = autoprov::config::HumanDuration(Duration::from_secs(2));
    })
    .await;
    create_phones(&srv).await;
    let scanner: IpAddr = "127.0.0.7".parse().unwrap();
    let from_scanner = https_client_from(&srv.running().tls_cert_path, None, Some(scanner));
    let url = |f: &str| srv.url(&format!("/{f}"));
    // Without a token every MAC's file is challenged alike; asking again
    // for the same one is no new miss.
    for _ in 0..30 {
        let resp = from_scanner.get(url("001565000000.cfg")).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    }
    for i in 1..20 {
        let resp = from_scanner.get(url(&format!("001565{i:06x}.cfg"))).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "miss {i}");
    }
    // The 21st distinct MAC bans: bare requests get nothing, over HTTP(S)
    // and TFTP.
    let resp = from_scanner.get(url("001565ffffff.cfg")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let p = phone("yealink");
    let resp = from_scanner.get(url(&p.file)).header("user-agent", &p.ua).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let common = p.common.as_deref().expect("a common file");
    let resp = from_scanner.get(url(common)).header("user-agent", &p.ua).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let tftp = srv.running().tftp_addr.unwrap();
    let silent = tftp_client::get_raw(tftp, scanner, &tftp_client::rrq(&p.file, "octet", &[]), 512, 1).await;
    assert_eq!(silent.err(), Some(TftpError::Silent), "a banned address gets no TFTP answer");
    // A request that proves itself is served even from a banned address.
    let resp = from_scanner.get(srv.url(&srv.phone_path(&p.file).await)).header("user-agent", &p.ua).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // Phones elsewhere are unaffected.
    let (s, _, _) = http_get(&srv, &p.file, Some(&p.ua)).await;
    assert_eq!(s, StatusCode::OK);
    // The ban lifts.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let resp = from_scanner.get(url(&p.file)).header("user-agent", &p.ua).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    srv.stop().await;
}

async fn files_are_served_under_the_prefix_too() {
    let srv = TestServer::start_with(Backend::Sqlite, |s| s.provision_prefix = Some("/prov".parse().unwrap())).await;
    create_phones(&srv).await;
    // Any family would do; Yealink's files carry values as they are.
    let p = phone("yealink");
    let get = |path: String| plain_client().get(srv.plain_url(&path)).header("user-agent", &p.ua).send();
    let path = srv.phone_path(&p.file).await;
    let root = get(path.clone()).await.unwrap().text().await.unwrap();
    let prefixed = get(format!("/prov{path}")).await.unwrap();
    assert_eq!(prefixed.status(), StatusCode::OK);
    let prefixed = prefixed.text().await.unwrap();
    assert!(prefixed.contains(&format!("127.0.0.1:{}/prov/", srv.http().port())), "the phone comes back under the prefix");
    assert_eq!(prefixed.replace("/prov/", "/"), root);
    assert_eq!(get(format!("/other{path}")).await.unwrap().status(), StatusCode::BAD_REQUEST);
    srv.stop().await;
}

async fn hostile_names_are_refused_cleanly() {
    let srv = TestServer::start(Backend::Sqlite).await;
    create_phones(&srv).await;
    let long = "a".repeat(4096);
    let p = phone("yealink");
    for (path, want) in [
        ("/../../etc/passwd", StatusCode::BAD_REQUEST),
        ("/..%2f..%2fetc%2fpasswd", StatusCode::BAD_REQUEST),
        (&format!("/{}%00", p.file), StatusCode::BAD_REQUEST),
        ("/%ff%fe.cfg", StatusCode::BAD_REQUEST),
        (&format!("/{long}.cfg"), StatusCode::BAD_REQUEST),
        ("/000000000000.cfg.bak", StatusCode::NOT_FOUND),
        (&format!("/{}", p.file.to_uppercase()), StatusCode::NOT_FOUND),
        ("/ffffffffffff.cfg", StatusCode::NOT_FOUND),
    ] {
        let resp = plain_client().get(srv.plain_url(path)).send().await.unwrap();
        // A client may normalise "/../" away; either way nothing is served.
        assert!(
            resp.status() == want || resp.status() == StatusCode::NOT_FOUND,
            "{}: {}",
            &path[..path.len().min(40)],
            resp.status()
        );
        assert!(!resp.text().await.unwrap().contains("Secret"));
    }
    // The server still serves real phones.
    let (s, _, _) = http_get(&srv, &p.file, Some(&p.ua)).await;
    assert_eq!(s, StatusCode::OK);
    srv.stop().await;
}

crate::e2e!(the_scan_guard_bans_and_lifts, files_are_served_under_the_prefix_too, hostile_names_are_refused_cleanly,);

/// A client's TLS 1.3 tickets, counted as the server sends them.
#[derive(Debug)]
struct CountedTickets {
    store: rustls::client::ClientSessionMemoryCache,
    tickets: std::sync::atomic::AtomicUsize,
}

impl CountedTickets {
    fn new() -> Self {
        CountedTickets { store: rustls::client::ClientSessionMemoryCache::new(16), tickets: Default::default() }
    }
}

impl rustls::client::ClientSessionStore for CountedTickets {
    fn set_kx_hint(&self, server: rustls::pki_types::ServerName<'static>, group: rustls::NamedGroup) {
        self.store.set_kx_hint(server, group)
    }
    fn kx_hint(&self, server: &rustls::pki_types::ServerName<'_>) -> Option<rustls::NamedGroup> {
        self.store.kx_hint(server)
    }
    fn set_tls12_session(&self, server: rustls::pki_types::ServerName<'static>, value: rustls::client::Tls12ClientSessionValue) {
        self.store.set_tls12_session(server, value)
    }
    fn tls12_session(&self, server: &rustls::pki_types::ServerName<'_>) -> Option<rustls::client::Tls12ClientSessionValue> {
        self.store.tls12_session(server)
    }
    fn remove_tls12_session(&self, server: &rustls::pki_types::ServerName<'static>) {
        self.store.remove_tls12_session(server)
    }
    fn insert_tls13_ticket(
        &self,
        server: rustls::pki_types::ServerName<'static>,
        value: rustls::client::Tls13ClientSessionValue,
    ) {
        self.tickets.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.store.insert_tls13_ticket(server, value)
    }
    fn take_tls13_ticket(
        &self,
        server: &rustls::pki_types::ServerName<'static>,
    ) -> Option<rustls::client::Tls13ClientSessionValue> {
        self.store.take_tls13_ticket(server)
    }
}

/// A phone opens a connection per file: every connection after its first
/// resumes the session (no certificate, no signature), and each handshake
/// brings it exactly one ticket for the next (rustls would send two).
async fn a_phone_resumes_its_tls_session_with_the_one_ticket_each_handshake_brings() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let srv = TestServer::start(Backend::Sqlite).await;
    let roots = crate::harness::trusting(&srv.running().tls_cert_path);
    let tickets = std::sync::Arc::new(CountedTickets::new());
    let mut config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.resumption = rustls::client::Resumption::store(tickets.clone());
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let mut kinds = Vec::new();
    for _ in 0..3 {
        let tcp = tokio::net::TcpStream::connect(srv.https()).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        kinds.push(tls.get_ref().1.handshake_kind());
        // The file request a phone makes, to the end of the answer: the
        // ticket comes before it.
        tls.write_all(b"GET /001565000001.cfg HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.unwrap();
        let mut answer = Vec::new();
        let _ = tls.read_to_end(&mut answer).await;
        assert!(answer.starts_with(b"HTTP/1.1 "), "{}", String::from_utf8_lossy(&answer));
    }
    use rustls::HandshakeKind::{Full, Resumed};
    assert_eq!(kinds, [Some(Full), Some(Resumed), Some(Resumed)]);
    assert_eq!(tickets.tickets.load(std::sync::atomic::Ordering::Relaxed), 3, "one ticket a handshake");
    srv.stop().await;
}
