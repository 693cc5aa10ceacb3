//! Phones report their calls: every family whose profile has action URLs
//! gets them in its config under the keys its vendor documents
//! (`tests/fixtures/event-keys.tsv`, never our templates), and a phone
//! simulated by a real HTTP client calls them as the vendor formats them
//! (its variables substituted as the phone does), in the order a real call
//! produces; Handset Status and Handset Select follow, late and forged
//! events change nothing, and forging tokens gets a source banned.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use autoprov::profiles::Profiles;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::both_backends;
use crate::formats::parse;
use crate::harness::{plain_client_from, Backend, TestServer};
use crate::provisioning::{phone, Phone};

both_backends!(
    every_family_reports_a_call_through_its_action_urls,
    late_events_are_ignored_and_forged_ones_refused,
    status_search_filters_by_state,
    polycom_reports_a_call_through_xml_notifications,
);

/// The call id and other party a simulated phone substitutes.
const CALL_ID: &str = "a1b2@192.168.1.5";
const REMOTE: &str = "0409123456";

/// One event's row: (vendor key, call-id variable or none, other-party
/// variable).
type EventRow = (String, Option<String>, String);

/// event-keys.tsv: family → our event → its row.
fn event_keys() -> BTreeMap<String, BTreeMap<String, EventRow>> {
    let mut out: BTreeMap<String, BTreeMap<_, _>> = BTreeMap::new();
    for (line, c) in crate::fixtures::tsv("event-keys.tsv") {
        assert!(c.len() >= 6, "event-keys.tsv line {line}: a short row");
        let callid = (c[3] != "-").then(|| c[3].clone());
        out.entry(c[0].clone()).or_default().insert(c[1].clone(), (c[2].clone(), callid, c[4].clone()));
    }
    out
}

/// A phone of the family: its handset, and the action URLs its config
/// gives it, by vendor key.
async fn provision(srv: &TestServer, p: &Phone) -> BTreeMap<String, String> {
    srv.create_handset(json!({"extensionnumber": p.ext, "mac": p.mac, "model": p.model})).await;
    let profiles = Profiles::built_in();
    let profile = profiles.family(&p.family).unwrap_or_else(|| panic!("profile {}", p.family));
    let mut values = BTreeMap::new();
    for file in &p.files {
        let resp = srv.client.get(srv.url(&srv.phone_path(file).await)).header("user-agent", &p.ua).send().await.unwrap();
        if resp.status() != StatusCode::OK {
            continue;
        }
        let body = resp.text().await.unwrap();
        for (k, v) in parse(profile, &body).unwrap_or_else(|e| panic!("{} {file}: {e}\n{body}", p.family)) {
            values.insert(k, v);
        }
    }
    values
}

/// The URL a phone calls for `event`: the configured one, with the
/// vendor's variables replaced as the phone does (verbatim).
fn as_phone_calls(
    urls: &BTreeMap<String, String>,
    keys: &BTreeMap<String, EventRow>,
    event: &str,
    call_id: &str,
) -> Option<String> {
    let (key, callid_var, remote_var) = keys.get(event)?;
    let url = urls.get(key).unwrap_or_else(|| panic!("no {key:?} in the config (event {event})"));
    let mut url = url.clone();
    if let Some(var) = callid_var {
        url = url.replace(var.as_str(), call_id);
    }
    Some(url.replace(remote_var.as_str(), REMOTE))
}

async fn call(srv: &TestServer, url: &str) -> StatusCode {
    srv.client.get(url).send().await.unwrap().status()
}

async fn status(srv: &TestServer, ext: &str) -> Value {
    let (s, v) = srv.get(&format!("/api/handsetstatus/{ext}")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v
}

async fn select_status(srv: &TestServer, ext: &str) -> String {
    let (s, v) = srv.get(&format!("/api/handset/{ext}")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["status"].as_str().unwrap_or_default().to_string()
}

/// Asserts the handset's state (Status) and `status` text (Select).
async fn expect(srv: &TestServer, ext: &str, what: &str, state: &str, text: &str) -> Value {
    let v = status(srv, ext).await;
    assert_eq!(v["state"], state, "{what}: {v}");
    assert_eq!(select_status(srv, ext).await, text, "{what}");
    v
}

async fn every_family_reports_a_call_through_its_action_urls(b: Backend) {
    let srv = TestServer::start(b).await;
    let all = event_keys();
    for profile in Profiles::built_in().iter() {
        // Every family says: keys, or none with the reason.
        let has = profile.events.none.is_none();
        let listed = all.contains_key(&profile.family) || event_xml().contains_key(&profile.family);
        assert_eq!(has, listed, "{}: profile [events] and event-keys.tsv / event-xml.tsv disagree", profile.family);
    }
    for (family, keys) in &all {
        let p = phone(family);
        let urls = provision(&srv, p).await;
        let what = |e: &str| format!("{family} {e}");
        for (event, (key, _, _)) in keys {
            let url = urls.get(key).unwrap_or_else(|| panic!("{family}: no {key:?} in its config"));
            assert!(url.starts_with(&srv.url("/ev/")), "{family} {key}: {url}");
            assert!(url.contains(&format!("/{event}")), "{family} {key}: {url}");
        }
        let url = |event: &str, id: &str| as_phone_calls(&urls, keys, event, id);
        let ext = p.ext.as_str();
        if let Some(u) = url("registered", "") {
            assert_eq!(call(&srv, &u).await, StatusCode::OK);
            expect(&srv, ext, &what("registered"), "Idle", "idle").await;
        }
        // An incoming call.
        assert_eq!(call(&srv, &url("ringing", CALL_ID).unwrap()).await, StatusCode::OK);
        let v = expect(&srv, ext, &what("ringing"), "Ringing", &format!("ringing from {REMOTE}")).await;
        assert_eq!((v["calldirection"].as_str(), v["otherpartyphonenumber"].as_str()), (Some("Inbound"), Some(REMOTE)));
        assert_eq!(call(&srv, &url("established", CALL_ID).unwrap()).await, StatusCode::OK);
        expect(&srv, ext, &what("established"), "OnCall", &format!("connected to {REMOTE}")).await;
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let first = status(&srv, ext).await["calldurationseconds"].as_i64().unwrap();
        assert!(first >= 1, "{family}: the duration counts ({first})");
        if let (Some(held), Some(resumed)) = (url("held", CALL_ID), url("resumed", CALL_ID)) {
            assert_eq!(call(&srv, &held).await, StatusCode::OK);
            expect(&srv, ext, &what("held"), "OnHold", &format!("on hold with {REMOTE}")).await;
            assert_eq!(call(&srv, &resumed).await, StatusCode::OK);
            expect(&srv, ext, &what("resumed"), "OnCall", &format!("connected to {REMOTE}")).await;
        }
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let later = status(&srv, ext).await["calldurationseconds"].as_i64().unwrap();
        assert!(later > first, "{family}: the duration grows ({first} then {later})");
        assert_eq!(call(&srv, &url("ended", CALL_ID).unwrap()).await, StatusCode::OK);
        let v = expect(&srv, ext, &what("ended"), "Idle", "idle").await;
        assert_eq!((v["calldurationseconds"].as_i64(), v["calldirection"].as_str()), (Some(0), Some("Unknown")));
        // An outgoing call.
        let second = "c2d3@192.168.1.5";
        assert_eq!(call(&srv, &url("calling", second).unwrap()).await, StatusCode::OK);
        let v = expect(&srv, ext, &what("calling"), "Calling", &format!("calling {REMOTE}")).await;
        assert_eq!(v["calldirection"], "Outbound", "{family}");
        assert_eq!(call(&srv, &url("ended", second).unwrap()).await, StatusCode::OK);
        expect(&srv, ext, &what("ended"), "Idle", "idle").await;
        // An outgoing call answered, (held,) and hung up where it is.
        let third = "e4f5@192.168.1.5";
        assert_eq!(call(&srv, &url("calling", third).unwrap()).await, StatusCode::OK);
        assert_eq!(call(&srv, &url("established", third).unwrap()).await, StatusCode::OK);
        let v = expect(&srv, ext, &what("outgoing established"), "OnCall", &format!("connected to {REMOTE}")).await;
        assert_eq!(v["calldirection"], "Outbound", "{family}: still the direction of the call");
        if let Some(held) = url("held", third) {
            assert_eq!(call(&srv, &held).await, StatusCode::OK);
            expect(&srv, ext, &what("outgoing held"), "OnHold", &format!("on hold with {REMOTE}")).await;
        }
        assert_eq!(call(&srv, &url("ended", third).unwrap()).await, StatusCode::OK);
        expect(&srv, ext, &what("ended from on hold"), "Idle", "idle").await;
        // An incoming call nobody answers, reported as missed.
        if let Some(missed) = url("missed", "g6h7@192.168.1.5") {
            assert_eq!(call(&srv, &url("ringing", "g6h7@192.168.1.5").unwrap()).await, StatusCode::OK);
            expect(&srv, ext, &what("ringing again"), "Ringing", &format!("ringing from {REMOTE}")).await;
            assert_eq!(call(&srv, &missed).await, StatusCode::OK);
            let v = expect(&srv, ext, &what("missed"), "Idle", "idle").await;
            assert_eq!((v["calldirection"].as_str(), v["otherpartyphonenumber"].as_str()), (Some("Unknown"), Some("")));
        }
        for (flag, field, on) in [
            ("dnd-on", "dnd", true),
            ("dnd-off", "dnd", false),
            ("forward-on", "forward", true),
            ("forward-off", "forward", false),
        ] {
            if let Some(u) = url(flag, "") {
                assert_eq!(call(&srv, &u).await, StatusCode::OK, "{family} {flag}");
                let v = expect(&srv, ext, &what(flag), "Idle", "idle").await;
                assert_eq!(v[field], on, "{family} {flag}: {v}");
            }
        }
        if let Some(u) = url("unregistered", "") {
            // Un-registering in the middle of a call ends it.
            assert_eq!(call(&srv, &url("ringing", "i8j9@192.168.1.5").unwrap()).await, StatusCode::OK);
            assert_eq!(call(&srv, &u).await, StatusCode::OK);
            let v = expect(&srv, ext, &what("unregistered"), "Unavailable", "unavailable").await;
            assert_eq!(v["otherpartyphonenumber"], "", "{family}: the call is gone");
        }
    }
    srv.stop().await;
}

/// The Yealink phone's action URLs with its token, and the token.
async fn yealink_urls(srv: &TestServer) -> (BTreeMap<String, EventRow>, BTreeMap<String, String>, String) {
    let keys = event_keys().remove("yealink").expect("yealink rows");
    let urls = provision(srv, phone("yealink")).await;
    let ringing = &urls[&keys["ringing"].0];
    let token = ringing.split("/ev/").nth(1).and_then(|r| r.split('/').next()).unwrap().to_string();
    (keys, urls, token)
}

async fn late_events_are_ignored_and_forged_ones_refused(b: Backend) {
    let srv = TestServer::start_with(b, |s| s.scan_threshold = 5).await;
    let (keys, urls, token) = yealink_urls(&srv).await;
    let ext = phone("yealink").ext.as_str();
    let url = |event: &str, id: &str| as_phone_calls(&urls, &keys, event, id).unwrap();
    assert_eq!(call(&srv, &url("registered", "")).await, StatusCode::OK);
    // The end overtakes the establishment of the same call: it stays idle.
    assert_eq!(call(&srv, &url("ringing", "late-1")).await, StatusCode::OK);
    assert_eq!(call(&srv, &url("ended", "late-1")).await, StatusCode::OK);
    assert_eq!(call(&srv, &url("established", "late-1")).await, StatusCode::OK, "a late event is still answered 200");
    expect(&srv, ext, "established after ended", "Idle", "idle").await;
    // A ringing that comes after the establishment is ignored.
    assert_eq!(call(&srv, &url("established", "late-2")).await, StatusCode::OK);
    assert_eq!(call(&srv, &url("ringing", "late-2")).await, StatusCode::OK);
    expect(&srv, ext, "ringing after established", "OnCall", &format!("connected to {REMOTE}")).await;
    // An extension of the same domain is an internal call.
    srv.create_handset(json!({"extensionnumber": "4711"})).await;
    let internal = url("ringing", "int-1").replace(REMOTE, "sip:4711@sip.example.net");
    assert_eq!(call(&srv, &internal).await, StatusCode::OK);
    let v = expect(&srv, ext, "internal call", "Ringing", "ringing from 4711").await;
    assert_eq!(v["calldirection"], "Internal");
    assert_eq!(call(&srv, &url("ended", "int-1")).await, StatusCode::OK);
    assert_eq!(call(&srv, &url("ended", "late-2")).await, StatusCode::OK);
    expect(&srv, ext, "both ended", "Idle", "idle").await;

    // Forged and broken events change nothing.
    let ringing = url("ringing", "forged-1");
    let wrong = ringing.replace(&token, "WrongToken0123456789abcd");
    assert_eq!(call(&srv, &wrong).await, StatusCode::NOT_FOUND, "a wrong token");
    let missing = ringing.replace(&format!("/{token}/"), "/");
    assert_eq!(call(&srv, &missing).await, StatusCode::NOT_FOUND, "a missing token");
    let empty = ringing.replace(&format!("/{token}/"), "//");
    assert_eq!(call(&srv, &empty).await, StatusCode::NOT_FOUND, "an empty token");
    let unknown = ringing.replace("/ringing?", "/exploded?");
    assert_eq!(call(&srv, &unknown).await, StatusCode::BAD_REQUEST, "an unknown event");
    let long = format!("{ringing}&pad={}", "x".repeat(2100));
    assert_eq!(call(&srv, &long).await, StatusCode::BAD_REQUEST, "an overlong query");
    let resp = srv.client.post(ringing.replace("/ringing?", "/ended?")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "phones that POST are heard too");
    let resp = srv.client.delete(&ringing).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    expect(&srv, ext, "after forgeries", "Idle", "idle").await;

    // Guessing tokens bans the source, as guessing MACs does: five distinct
    // wrong tokens are misses, the sixth request is refused as banned.
    let path = |t: &str| format!("/ev/{t}/ringing?callid=x&remote=1");
    let scanner = plain_client_from(Some("127.0.0.61".parse::<IpAddr>().unwrap()));
    for i in 0..6 {
        let resp = scanner.get(srv.plain_url(&path(&format!("Guess{i:019}")))).send().await.unwrap();
        let want = if i < 5 { StatusCode::NOT_FOUND } else { StatusCode::FORBIDDEN };
        assert_eq!(resp.status(), want, "guess {}", i + 1);
    }
    let resp = scanner.get(srv.plain_url("/y000000000066.cfg")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN, "banned for phones' files too");
    // A banned source that proves itself (the real token) is still heard;
    // the phone's own address never was at risk.
    let resp = scanner.get(srv.plain_url(&path(&token))).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    expect(&srv, ext, "the real token from a banned source", "Ringing", "ringing from 1").await;
    assert_eq!(call(&srv, &url("ended", "x")).await, StatusCode::OK);

    // A new MAC draws a new token: the old phone's URLs open nothing.
    let (s, v) = srv.put(&format!("/api/handset/{ext}"), json!({"mac": "001565ff0001"})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(call(&srv, &url("ringing", "after-swap")).await, StatusCode::NOT_FOUND);
    srv.stop().await;
}

async fn status_search_filters_by_state(b: Backend) {
    let srv = TestServer::start(b).await;
    let (keys, urls, _) = yealink_urls(&srv).await;
    let ext = phone("yealink").ext.clone();
    srv.create_handset(json!({"extensionnumber": "4800"})).await;
    let on_call = as_phone_calls(&urls, &keys, "established", CALL_ID).unwrap();
    assert_eq!(call(&srv, &on_call).await, StatusCode::OK);
    let exts = |v: &Value| -> Vec<String> {
        v.as_array().unwrap().iter().map(|s| s["extensionnumber"].as_str().unwrap().to_string()).collect()
    };
    let (s, v) = srv.get("/api/handsetstatus?state=OnCall").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(exts(&v), std::slice::from_ref(&ext));
    assert_eq!(v[0]["state"], "OnCall");
    let (s, v) = srv.get("/api/handsetstatus?state=Unavailable").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(exts(&v), ["4800"], "a handset nobody reported on is Unavailable");
    let (s, v) = srv.get("/api/handsetstatus?state=Idle").await;
    assert_eq!((s, exts(&v).len()), (StatusCode::OK, 0));
    let (s, v) = srv.get("/api/handsetstatus?state=Busy").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    // The OpenAPI document describes the filter and the phones' endpoint.
    let doc: Value = srv.client.get(srv.url("/api/openapi.json")).send().await.unwrap().json().await.unwrap();
    let params = doc["paths"]["/api/handsetstatus"]["get"]["parameters"].as_array().cloned().unwrap_or_default();
    assert!(params.iter().any(|p| p["name"] == "state"), "state filter: {params:?}");
    let ev = &doc["paths"]["/ev/{eventtoken}/{event}"];
    for method in ["get", "post"] {
        let names: Vec<&str> = ev[method]["parameters"].as_array().unwrap().iter().filter_map(|p| p["name"].as_str()).collect();
        assert_eq!(names, ["eventtoken", "event", "callid", "remote"], "{method}");
        for code in ["200", "400", "403", "404"] {
            assert!(ev[method]["responses"][code].is_object(), "{method} {code}");
        }
    }
    // …and the XML notifications' body.
    let xml = &doc["paths"]["/ev/{eventtoken}/xml"]["post"];
    let body = &xml["requestBody"]["content"]["application/xml"];
    assert!(body["schema"].is_object(), "the XML body is described: {xml}");
    assert!(body["example"].as_str().is_some_and(|e| e.contains("<IncomingCallEvent>")), "with an example: {xml}");
    for code in ["200", "400", "403", "404", "413"] {
        assert!(xml["responses"][code].is_object(), "xml {code}");
    }
    srv.stop().await;
}

/// event-xml.tsv: family → (role, config key) rows.
fn event_xml() -> BTreeMap<String, Vec<(String, String)>> {
    let mut out: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for (line, c) in crate::fixtures::tsv("event-xml.tsv") {
        assert!(c.len() >= 4, "event-xml.tsv line {line}: a short row");
        out.entry(c[0].clone()).or_default().push((c[1].clone(), c[2].clone()));
    }
    out
}

/// What a Polycom phone POSTs, as the Web Application Developer's Guide
/// (UC Software 5.0.0, Tables 17, 19 and 24) and the SIP 3.1 Developer's
/// Guide (the `<PolycomIPPhone>` wrapper, p. 2-24) show it.
fn polycom_incoming(from: &str) -> String {
    format!(
        "<PolycomIPPhone>\n<IncomingCallEvent>\n<PhoneIP>172.24.132.135</PhoneIP>\n<MACAddress>0004f214b89e</MACAddress>\n\
         <CallingPartyName>{from}</CallingPartyName>\n<CallingPartyNumber>{from}@172.18.186.94</CallingPartyNumber>\n\
         <CalledPartyName>20300</CalledPartyName>\n<CalledPartyNumber>20300</CalledPartyNumber>\n\
         <TimeStamp>2008-07-11T13:19:53-08:00</TimeStamp>\n</IncomingCallEvent>\n</PolycomIPPhone>\n"
    )
}

fn polycom_outgoing(to: &str) -> String {
    format!(
        "<PolycomIPPhone>\n<OutgoingCallEvent>\n<PhoneIP>172.24.132.135</PhoneIP>\n<MACAddress>0004f214b89e</MACAddress>\n\
         <CallingPartyName>20300</CallingPartyName>\n<CallingPartyNumber>20300</CallingPartyNumber>\n\
         <CalledPartyName>{to}</CalledPartyName>\n<CalledPartyNumber>{to}@172.18.186.94</CalledPartyNumber>\n\
         <TimeStamp>2008-07-11T13:20:01-08:00</TimeStamp>\n</OutgoingCallEvent>\n</PolycomIPPhone>\n"
    )
}

fn polycom_state(state: &str, call_type: &str) -> String {
    format!(
        "<PolycomIPPhone>\n<CallStateChangeEvent CallReference=\"0\" CallState=\"{state}\">\n<PhoneIP>172.24.132.135</PhoneIP>\n\
         <MACAddress>0004f214b89e</MACAddress>\n<LineNumber>1</LineNumber>\n<TimeStamp>2008-07-11T13:20:05-08:00</TimeStamp>\n\
         <CallLineInfo>\n<LineKeyNum>1</LineKeyNum>\n<LineDirNum>20300</LineDirNum>\n<LineState>Active</LineState>\n<CallInfo>\n\
         <CallState>{state}</CallState>\n<CallType>{call_type}</CallType>\n<UIAppearanceIndex>1*</UIAppearanceIndex>\n\
         <CalledPartyName>20300</CalledPartyName>\n<CalledPartyDirNum>20300</CalledPartyDirNum>\n\
         <CallingPartyName>{REMOTE}</CallingPartyName>\n<CallingPartyDirNum>{REMOTE}</CallingPartyDirNum>\n\
         <CallReference>0</CallReference>\n<CallDuration>0</CallDuration>\n</CallInfo>\n</CallLineInfo>\n\
         </CallStateChangeEvent>\n</PolycomIPPhone>\n"
    )
}

async fn post(srv: &TestServer, url: &str, body: String) -> StatusCode {
    srv.client.post(url).header("content-type", "application/xml").body(body).send().await.unwrap().status()
}

async fn polycom_reports_a_call_through_xml_notifications(b: Backend) {
    let srv = TestServer::start_with(b, |s| s.scan_threshold = 5).await;
    let rows = event_xml().remove("polycom").expect("polycom rows");
    let p = phone("polycom");
    let config = provision(&srv, p).await;
    let ext = p.ext.as_str();
    let mut url = String::new();
    for (role, key) in &rows {
        let value = config.get(key).unwrap_or_else(|| panic!("polycom: no {key:?} in its config"));
        match role.as_str() {
            "url" => url = value.clone(),
            "enable" => assert_eq!(value, "1", "{key}"),
            other => panic!("event-xml.tsv: role {other:?}"),
        }
    }
    assert!(url.starts_with(&srv.url("/ev/")) && url.ends_with("/xml"), "{url}");
    // An incoming call, answered, held, resumed, hung up.
    assert_eq!(post(&srv, &url, polycom_incoming(REMOTE)).await, StatusCode::OK);
    let v = expect(&srv, ext, "IncomingCallEvent", "Ringing", &format!("ringing from {REMOTE}")).await;
    assert_eq!((v["calldirection"].as_str(), v["otherpartyphonenumber"].as_str()), (Some("Inbound"), Some(REMOTE)));
    assert_eq!(post(&srv, &url, polycom_state("Connected", "Incoming")).await, StatusCode::OK);
    expect(&srv, ext, "Connected", "OnCall", &format!("connected to {REMOTE}")).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(status(&srv, ext).await["calldurationseconds"].as_i64().unwrap() >= 1, "the duration counts");
    assert_eq!(post(&srv, &url, polycom_state("Hold", "Incoming")).await, StatusCode::OK);
    expect(&srv, ext, "Hold", "OnHold", &format!("on hold with {REMOTE}")).await;
    assert_eq!(post(&srv, &url, polycom_state("Connected", "Incoming")).await, StatusCode::OK);
    expect(&srv, ext, "Connected after Hold", "OnCall", &format!("connected to {REMOTE}")).await;
    assert_eq!(post(&srv, &url, polycom_state("Disconnected", "Incoming")).await, StatusCode::OK);
    let v = expect(&srv, ext, "Disconnected", "Idle", "idle").await;
    assert_eq!((v["calldurationseconds"].as_i64(), v["calldirection"].as_str()), (Some(0), Some("Unknown")));
    // A state we do not map (Free follows Disconnected) changes nothing.
    assert_eq!(post(&srv, &url, polycom_state("Free", "Incoming")).await, StatusCode::OK);
    expect(&srv, ext, "Free", "Idle", "idle").await;
    // An outgoing call: the same CallReference (0) again is a new call.
    assert_eq!(post(&srv, &url, polycom_outgoing(REMOTE)).await, StatusCode::OK);
    let v = expect(&srv, ext, "OutgoingCallEvent", "Calling", &format!("calling {REMOTE}")).await;
    assert_eq!(v["calldirection"], "Outbound");
    assert_eq!(post(&srv, &url, polycom_state("Connected", "Outgoing")).await, StatusCode::OK);
    expect(&srv, ext, "outgoing Connected", "OnCall", &format!("connected to {REMOTE}")).await;
    assert_eq!(post(&srv, &url, polycom_state("Disconnected", "Outgoing")).await, StatusCode::OK);
    expect(&srv, ext, "outgoing Disconnected", "Idle", "idle").await;

    // Broken and forged notifications change nothing.
    assert_eq!(post(&srv, &url, "not <xml".into()).await, StatusCode::BAD_REQUEST, "no XML");
    let big = format!("<PolycomIPPhone>{}</PolycomIPPhone>", " ".repeat(17 * 1024));
    assert_eq!(post(&srv, &url, big).await, StatusCode::PAYLOAD_TOO_LARGE, "over 16 KiB");
    let token = url.split("/ev/").nth(1).and_then(|r| r.split('/').next()).unwrap().to_string();
    let wrong = url.replace(&token, "WrongToken0123456789abcd");
    assert_eq!(post(&srv, &wrong, polycom_incoming("666")).await, StatusCode::NOT_FOUND, "a wrong token");
    assert_eq!(post(&srv, &wrong, "garbage".into()).await, StatusCode::NOT_FOUND, "garbage under a wrong token");
    assert_eq!(call(&srv, &url).await, StatusCode::BAD_REQUEST, "xml is no event to GET");
    expect(&srv, ext, "after forgeries", "Idle", "idle").await;
    srv.stop().await;
}
