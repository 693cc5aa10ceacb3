//! Local time in every family's own format, from the IANA zone of the
//! domain or of the handset: each family's per-phone files, fetched from a
//! real server, carry the offset and DST keys that `tests/fixtures/
//! time-zones.tsv` expects (values worked out from the vendors' guides and
//! the IANA rules, each row citing its source). Every loaded profile must
//! have rows there, so a new family cannot skip its time zone.

use std::collections::{BTreeMap, BTreeSet};

use autoprov::profiles::{BootAnswer, Profile, Profiles};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::admin_ui::Ui;
use crate::formats;
use crate::harness::{Backend, TestServer, ADMIN};
use crate::provisioning::http_get;

/// The zones the fixture covers for every family: a whole-hour zone with
/// the EU rule, one with the US rule, a half-hour zone without DST, and a
/// half-hour zone whose DST is 30 minutes.
const ZONES: [&str; 4] = ["Europe/London", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"];

/// (family, zone) → [(key, expected value, source)].
type Expected = BTreeMap<(String, String), Vec<(String, String, String)>>;

/// The expected value of a key a family leaves out for the zone (its own
/// list of zones has no entry for it).
const ABSENT: &str = "(absent)";

fn expected() -> Expected {
    let mut out = Expected::new();
    for (line, cols) in crate::fixtures::tsv("time-zones.tsv") {
        assert_eq!(cols.len(), 5, "time-zones.tsv line {line}: family, zone, key, expected, source");
        assert!(!cols[4].trim().is_empty(), "time-zones.tsv line {line}: no source");
        out.entry((cols[0].clone(), cols[1].clone())).or_default().push((cols[2].clone(), cols[3].clone(), cols[4].clone()));
    }
    out
}

fn mac_in(profile: &Profile, serial: u32) -> String {
    format!("{}{:06x}", profile.mac_ouis[0].to_ascii_lowercase(), serial)
}

/// A phone of the family as its first boot sequence has it: model,
/// User-Agent, and the per-phone files it is served.
struct Phone {
    mac: String,
    model: String,
    ua: String,
    files: Vec<String>,
}

fn phone_of(profile: &Profile, serial: u32) -> Phone {
    let seq = profile.boot.first().unwrap_or_else(|| panic!("{}: no boot sequence", profile.family));
    let mac = mac_in(profile, serial);
    let colons: Vec<&str> = (0..6).map(|i| &mac[i * 2..i * 2 + 2]).collect();
    let fill = |s: &str| {
        s.replace("{colons}", &colons.join(":"))
            .replace("{DASHES}", &colons.join("-").to_ascii_uppercase())
            .replace("{MAC}", &mac.to_ascii_uppercase())
            .replace("{mac}", &mac)
    };
    let files = seq
        .files
        .iter()
        .filter(|f| f.answer == BootAnswer::Serve && f.file.to_lowercase().contains("{mac}"))
        .map(|f| fill(&f.file))
        .collect();
    Phone { model: seq.model.clone(), ua: fill(&seq.user_agent), files, mac }
}

/// Every (key, value) the phone's own files set.
async fn entries(srv: &TestServer, profile: &Profile, phone: &Phone) -> Vec<(String, String)> {
    let ua = (!phone.ua.is_empty()).then_some(phone.ua.as_str());
    let mut out = Vec::new();
    for file in &phone.files {
        let (status, _, body) = http_get(srv, file, ua).await;
        assert_eq!(status, StatusCode::OK, "{} {file}\n{body}", profile.family);
        out.extend(formats::parse(profile, &body).unwrap_or_else(|e| panic!("{} {file}: {e}\n{body}", profile.family)));
    }
    out
}

/// For each zone set on the domain, every family's files carry the rows
/// of the fixture; a family with no rows (or missing a zone) fails.
async fn every_familys_files_carry_the_zones_offset_and_dst_rule() {
    let srv = TestServer::start(Backend::Sqlite).await;
    let profiles = Profiles::built_in();
    let expected = expected();
    let families: BTreeSet<&str> = profiles.iter().map(|p| p.family.as_str()).collect();
    for (family, zone) in expected.keys() {
        assert!(families.contains(family.as_str()), "time-zones.tsv names {family}, which no profile is");
        assert!(ZONES.contains(&zone.as_str()), "time-zones.tsv: {zone} is not one of the tested zones");
    }
    let mut phones = Vec::new();
    for (i, profile) in profiles.iter().enumerate() {
        for zone in ZONES {
            assert!(
                expected.contains_key(&(profile.family.clone(), zone.to_string())),
                "{}: tests/fixtures/time-zones.tsv has no rows for {zone}: add the family's time keys with their source",
                profile.family
            );
        }
        let phone = phone_of(profile, 0xe0_0000 + i as u32);
        assert!(!phone.files.is_empty(), "{}: its boot sequence serves no per-phone file", profile.family);
        let mut body = json!({"extensionnumber": format!("{}", 5100 + i), "mac": phone.mac});
        if !phone.model.is_empty() {
            body["model"] = json!(phone.model);
        }
        srv.create_handset(body).await;
        phones.push((profile, phone));
    }
    for zone in ZONES {
        let (s, v) = srv.put("/api/domain", json!({"timezone": zone})).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        for (profile, phone) in &phones {
            let got = entries(&srv, profile, phone).await;
            for (key, want, source) in &expected[&(profile.family.clone(), zone.to_string())] {
                let found: Vec<&String> = got.iter().filter(|(k, _)| k == key).map(|(_, v)| v).collect();
                if want == ABSENT {
                    // The vendor's list has no entry for the zone: the key is left out.
                    assert!(found.is_empty(), "{} in {zone}: {key} should be absent ({source}), is {found:?}", profile.family);
                    continue;
                }
                assert!(found.contains(&want), "{} in {zone}: {key} should be {want:?} ({source}), is {found:?}", profile.family);
            }
        }
    }
    srv.stop().await;
}

/// A handset's own zone wins over its domain's, "" gives the domain's
/// back, and a change of either zone changes the file and its ETag.
async fn a_handsets_zone_wins_and_changes_the_etag(b: Backend) {
    let srv = TestServer::start(b).await;
    let (s, _) = srv.put("/api/domain", json!({"timezone": "Europe/London"})).await;
    assert_eq!(s, StatusCode::OK);
    srv.create_handset(json!({"extensionnumber": "700", "mac": "805ec0d57d72", "timezone": "Asia/Kolkata"})).await;
    srv.create_handset(json!({"extensionnumber": "701", "mac": "805ec0d57d73"})).await;
    let (_, v) = srv.get("/api/handset/700").await;
    assert_eq!(v["timezone"], "Asia/Kolkata", "{v}");
    let (_, v) = srv.get("/api/handset/701").await;
    assert_eq!(v["timezone"], "", "{v}");

    // Yealink's local_time.time_zone is the offset in hours (Yealink
    // Administrator Guide, Time and Date): +05:30 is +5.5, UTC+0 is 0.
    let zone_of =
        |body: &str| formats::parse_yealink(body).unwrap().into_iter().find(|(k, _)| k == "local_time.time_zone").map(|(_, v)| v);
    let fetch = |file: &'static str| {
        let srv = &srv;
        async move {
            let (s, h, body) = http_get(srv, file, None).await;
            assert_eq!(s, StatusCode::OK, "{body}");
            (h["etag"].to_str().unwrap().to_string(), body)
        }
    };
    let (own_tag, own) = fetch("805ec0d57d72.cfg").await;
    let (dom_tag, dom) = fetch("805ec0d57d73.cfg").await;
    assert_eq!(zone_of(&own).as_deref(), Some("+5.5"), "{own}");
    assert_eq!(zone_of(&dom).as_deref(), Some("0"), "{dom}");

    // The handset's zone changes: its file and ETag follow.
    let (s, v) = srv.put("/api/handset/700", json!({"timezone": "America/New_York"})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (tag, body) = fetch("805ec0d57d72.cfg").await;
    assert_eq!(zone_of(&body).as_deref(), Some("-5"), "{body}");
    assert_ne!(tag, own_tag, "a new zone is a new ETag");
    // Cleared: the domain's zone again.
    let (s, _) = srv.put("/api/handset/700", json!({"timezone": ""})).await;
    assert_eq!(s, StatusCode::OK);
    let (_, body) = fetch("805ec0d57d72.cfg").await;
    assert_eq!(zone_of(&body).as_deref(), Some("0"), "{body}");

    // The domain's zone changes: the phone without its own follows.
    let (s, _) = srv.put("/api/domain", json!({"timezone": "Australia/Lord_Howe"})).await;
    assert_eq!(s, StatusCode::OK);
    let (tag, body) = fetch("805ec0d57d73.cfg").await;
    assert_eq!(zone_of(&body).as_deref(), Some("+10.5"), "{body}");
    assert_ne!(tag, dom_tag, "a new domain zone is a new ETag");
    srv.stop().await;
}

/// A zone the IANA database does not have is a 400 naming `timezone`: on
/// the domain, on Handset Update and create, and in a CSV row.
async fn an_unknown_zone_is_a_400_naming_the_field() {
    let srv = TestServer::start(Backend::Sqlite).await;
    srv.create_handset(json!({"extensionnumber": "710"})).await;
    for zone in ["Europe/Atlantis", "Mars/Olympus_Mons", "GMT+5:30", "Europe/London "] {
        let (s, v) = srv.put("/api/domain", json!({"timezone": zone})).await;
        assert!(s == StatusCode::BAD_REQUEST && v["error"].as_str().unwrap().contains("timezone"), "{zone}: {v}");
        let (s, v) = srv.put("/api/handset/710", json!({"timezone": zone})).await;
        assert!(s == StatusCode::BAD_REQUEST && v["error"].as_str().unwrap().contains("timezone"), "{zone}: {v}");
        let (s, v) = srv.post("/api/handset", json!({"extensionnumber": "711", "timezone": zone})).await;
        assert!(s == StatusCode::BAD_REQUEST && v["error"].as_str().unwrap().contains("timezone"), "{zone}: {v}");
    }
    let (_, v) = srv.get("/api/handset/710").await;
    assert_eq!(v["timezone"], "", "{v}");

    // The admin UI's handset form: the same 400 with the form kept, and a
    // good zone saved.
    let (ui, csrf) = Ui::logged_in(&srv, ADMIN).await;
    let page = ui.post("/admin/handsets/710", &[("csrf", &csrf), ("timezone", "Europe/Atlantis")]).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{}", page.body);
    assert!(
        page.body.contains("timezone: must be an IANA time zone name") && page.body.contains("value=\"Europe/Atlantis\""),
        "{}",
        page.body
    );
    ui.post("/admin/handsets/710", &[("csrf", &csrf), ("timezone", "Asia/Kolkata")])
        .await
        .assert_redirect("/admin/handsets/710?done=saved");
    let (_, v) = srv.get("/api/handset/710").await;
    assert_eq!(v["timezone"], "Asia/Kolkata", "{v}");

    let csv = "extensionnumber,timezone\n720,Asia/Kolkata\n721,Europe/Atlantis\n";
    let (s, v) = crate::csv::post_csv(&srv, "", csv).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["errors"][0]["line"], 3, "{v}");
    assert!(v["errors"][0]["error"].as_str().unwrap().contains("timezone"), "{v}");
    let (s, _) = srv.call(Method::GET, "/api/handset/720", ADMIN, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "a bad row writes nothing");
    srv.stop().await;
}

crate::both_backends!(a_handsets_zone_wins_and_changes_the_etag);

crate::e2e!(every_familys_files_carry_the_zones_offset_and_dst_rule, an_unknown_zone_is_a_400_naming_the_field);
