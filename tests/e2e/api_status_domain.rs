//! Handset Status Search / Select / reports, the domain settings and the
//! audit log.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::both_backends;
use crate::harness::{Backend, TestServer, ADMIN};

both_backends!(
    status_reports_and_jingl_status,
    registrars_report_registrations,
    domain_settings_bump_every_handset,
    audit_names_fields_never_values
);

async fn status_reports_and_jingl_status(b: Backend) {
    let srv = TestServer::start(b).await;
    srv.create_handset(json!({"extensionnumber": "100"})).await;
    srv.create_handset(json!({"extensionnumber": "101"})).await;

    let (s, v) = srv.get("/api/handsetstatus/100").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        v,
        json!({"extensionnumber": "100", "state": "Unavailable", "calldirection": "Unknown", "calldurationseconds": 0,
               "otherpartyphonenumber": "", "app": "", "registrationaddress": "", "registeredaddress": "", "registrationtransport": "udp",
               "registered": false, "registereduntil": "", "useragent": "", "dnd": false, "forward": false})
    );
    let report = json!({"state": "OnCall", "calldirection": "Outbound", "calldurationseconds": "42",
                        "otherpartyphonenumber": "0409123456", "app": "softphone", "registrationaddress": "192.0.2.10:5062",
                        "registrationtransport": "tcp"});
    let (s, v) = srv.put("/api/handsetstatus/100", report).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!((v["calldurationseconds"].as_i64(), v["registeredaddress"].as_str()), (Some(42), Some("192.0.2.10:5062")));

    let (_, h) = srv.get("/api/handset/100").await;
    assert_eq!(
        (h["status"].as_str(), h["registrationipaddress"].as_str()),
        (Some("connected to 0409123456"), Some("192.0.2.10"))
    );
    // A partial report keeps the rest; Jingl's example name for the address works too.
    let (_, v) = srv.put("/api/handsetstatus/100", json!({"state": "Idle", "registeredaddress": "[2001:db8::5]:5060"})).await;
    assert_eq!(
        (v["state"].as_str(), v["app"].as_str(), v["registrationaddress"].as_str()),
        (Some("Idle"), Some("softphone"), Some("[2001:db8::5]:5060"))
    );
    let (_, h) = srv.get("/api/handset/100").await;
    assert_eq!((h["status"].as_str(), h["registrationipaddress"].as_str()), (Some("idle"), Some("2001:db8::5")));

    for (body, word) in [
        (json!({"state": "Busy"}), "state"),
        (json!({"calldirection": "Sideways"}), "calldirection"),
        (json!({"calldurationseconds": -1}), "calldurationseconds"),
        (json!({"calldurationseconds": "long"}), "calldurationseconds"),
        (json!({"registrationaddress": "192.0.2.10"}), "registrationaddress"),
        (json!({"registrationtransport": "sctp"}), "registrationtransport"),
        (json!({"mood": "happy"}), "mood"),
    ] {
        let (s, v) = srv.put("/api/handsetstatus/100", body.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
        assert!(v["error"].as_str().unwrap().contains(word), "{body} → {v}");
    }
    let (s, _) = srv.put("/api/handsetstatus/999", json!({"state": "Idle"})).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    let (_, list) = srv.get("/api/handsetstatus?maxresults=1").await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["state"], "Idle");
    let (_, list) = srv.get("/api/handsetstatus?afterid=100").await;
    assert_eq!(
        list,
        json!([{"extensionnumber": "101", "state": "Unavailable", "calldirection": "Unknown", "calldurationseconds": 0,
        "otherpartyphonenumber": "", "app": "", "registrationaddress": "", "registeredaddress": "", "registrationtransport": "udp",
        "registered": false, "registereduntil": "", "useragent": "", "dnd": false, "forward": false}])
    );
    let (s, _) = srv.get("/api/handsetstatus?maxresults=5000").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    srv.stop().await;
}

/// A registrar (contrib/kamailio) reports each registration, un-registration
/// and expiry by address of record; Handset Status shows it and direct
/// pushes go where the phone registered from. One registrar serves every
/// tenant, so its user is a superuser; a tenant's own platform user reports
/// only its phones, and an address of record nobody has is 404 whoever has
/// the extension elsewhere.
async fn registrars_report_registrations(b: Backend) {
    let srv = TestServer::start(b).await;
    srv.add_user("registrar@default", "registrar-password-1", "platform", true).await;
    srv.add_user("pbx@acme", "pbx-password-123", "platform", false).await;
    srv.add_user("viewer@acme", "viewer-password-1", "readonly", false).await;
    let registrar = ("registrar@default", "registrar-password-1");
    let (s, _) = srv.put("/api/domain", json!({"sipserver": "sip.default.example"})).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = srv.call(Method::PUT, "/api/domain?domain=acme", ADMIN, Some(json!({"sipserver": "SIP.acme.example"}))).await;
    assert_eq!(s, StatusCode::OK);
    srv.create_handset(json!({"extensionnumber": "201"})).await;
    let (s, _) = srv.call(Method::POST, "/api/handset?domain=acme", ADMIN, Some(json!({"extensionnumber": "201"}))).await;
    assert_eq!(s, StatusCode::CREATED);

    let report = |aor: &str, expires: u32| {
        json!({"aor": aor, "address": "203.0.113.100:40001", "transport": "udp", "expires": expires,
               "useragent": "Yealink SIP-T46S 66.86.0.15 \"quoted\"\u{7}"})
    };
    let (s, v) = srv.call(Method::POST, "/api/registration", registrar, Some(report("sip:201@sip.acme.example:5060", 60))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (v["state"].as_str(), v["registered"].as_bool(), v["registrationaddress"].as_str(), v["useragent"].as_str()),
        (Some("Idle"), Some(true), Some("203.0.113.100:40001"), Some("Yealink SIP-T46S 66.86.0.15 \"quoted\"?"))
    );
    assert!(!v["registereduntil"].as_str().unwrap().is_empty());
    // acme's phone, not default's 201.
    let (_, mine) = srv.get("/api/handsetstatus/201").await;
    assert_eq!(mine["registered"], false);
    let (_, theirs) = srv.call(Method::GET, "/api/handsetstatus/201?domain=acme", ADMIN, None).await;
    assert_eq!((theirs["registered"].as_bool(), theirs["state"].as_str()), (Some(true), Some("Idle")));

    // A tenant's platform user: its own phones only; the other tenant's is 404 like a missing one.
    let pbx = ("pbx@acme", "pbx-password-123");
    let (s, _) = srv.call(Method::POST, "/api/registration", pbx, Some(report("sip:201@sip.acme.example", 60))).await;
    assert_eq!(s, StatusCode::OK);
    for aor in ["sip:201@sip.default.example", "sip:999@sip.acme.example", "sip:201@elsewhere.example"] {
        let (s, _) = srv.call(Method::POST, "/api/registration", pbx, Some(report(aor, 60))).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{aor}");
    }
    let (s, _) = srv
        .call(
            Method::POST,
            "/api/registration",
            ("viewer@acme", "viewer-password-1"),
            Some(report("sip:201@sip.acme.example", 60)),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    for (body, field) in [
        (json!({"aor": "201@sip.acme.example", "expires": 60, "address": "203.0.113.100:1"}), "aor"),
        (json!({"aor": "sip:201@sip.acme.example", "expires": 60}), "address"),
        (json!({"aor": "sip:201@sip.acme.example", "address": "203.0.113.100:1"}), "expires"),
        (json!({"aor": "sip:201@sip.acme.example", "expires": -1}), "expires"),
        (json!({"aor": "sip:201@sip.acme.example", "expires": 60, "address": "203.0.113.100"}), "address"),
        (json!({"aor": "sip:201@sip.acme.example", "expires": 0, "transport": "sctp"}), "transport"),
        (json!({"aor": "sip:201@sip.acme.example", "expires": 0, "contact": "x"}), "contact"),
    ] {
        let (s, v) = srv.call(Method::POST, "/api/registration", registrar, Some(body.clone())).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
        assert!(v["error"].as_str().unwrap().contains(field), "{body}: {v}");
    }

    // Un-registered (or expired): unavailable, and no push address any more.
    let (s, v) = srv
        .call(Method::POST, "/api/registration", registrar, Some(json!({"aor": "sip:201@sip.acme.example", "expires": 0})))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (v["state"].as_str(), v["registered"].as_bool(), v["registrationaddress"].as_str()),
        (Some("Unavailable"), Some(false), Some(""))
    );
    srv.stop().await;
}

async fn domain_settings_bump_every_handset(b: Backend) {
    let srv = TestServer::start(b).await;
    srv.add_user("boss@acme", "boss-password-123", "admin", false).await;
    for ext in ["100", "101", "102"] {
        srv.create_handset(json!({ "extensionnumber": ext })).await;
    }
    let (s, d) = srv.get("/api/domain").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(d["name"], "default");
    let change = json!({"sipserver": "sip.example.com", "sipport": 5080, "siptransport": "TLS", "timezone": "Australia/Sydney", "ntpserver": "ntp.example.com"});
    let (s, mut d) = srv.put("/api/domain", change.clone()).await;
    assert_eq!(s, StatusCode::OK, "{d}");
    // The provisioning URL names the token on each listener.
    let token = d["provisioningtoken"].as_str().unwrap().to_string();
    assert!(token.len() >= 22 && token.bytes().all(|b| b.is_ascii_alphanumeric()), "{token}");
    let http = format!("http://localhost:{}/p/{token}/", srv.http().port());
    assert_eq!(d["provisioningurl"], http.as_str(), "HTTP while the certificate is self-signed");
    assert_eq!(d["provisioningurls"]["https"], format!("https://localhost:{}/p/{token}/", srv.https().port()));
    let tftp = srv.running().tftp_addr.unwrap().port();
    assert_eq!(d["provisioningurls"]["tftp"], format!("tftp://localhost:{tftp}/p/{token}/"));
    assert_eq!((d["requiretoken"].as_bool(), d["requireclientcert"].as_bool()), (Some(true), Some(false)));
    for shown in ["provisioningtoken", "provisioningurl", "provisioningurls", "requiretoken", "requireclientcert"] {
        d.as_object_mut().unwrap().remove(shown);
    }
    assert_eq!(
        d,
        json!({"name": "default", "sipserver": "sip.example.com", "sipport": 5080, "siptransport": "tls", "timezone": "Australia/Sydney", "ntpserver": "ntp.example.com", "settings": {}, "modelsettings": {},
               "pushbackend": "direct", "amihost": "", "amiport": 5038, "amiuser": "", "amisecret": "", "amicontext": "from-internal", "webhookurl": "", "webhooksecret": "", "registrarrelay": "", "registrartransport": "udp", "claimcreates": false, "sitenetworks": []})
    );
    for ext in ["100", "101", "102"] {
        let (_, h) = srv.get(&format!("/api/handset/{ext}")).await;
        assert_eq!(h["revision"], 2, "{ext}");
    }
    // The same settings again are no change.
    srv.put("/api/domain", change).await;
    let (_, h) = srv.get("/api/handset/100").await;
    assert_eq!(h["revision"], 2);

    for (body, word) in [
        (json!({"sipport": 70000}), "sipport"),
        (json!({"sipport": 0}), "sipport"),
        (json!({"siptransport": "sctp"}), "siptransport"),
        (json!({"sipserver": "bad host"}), "sipserver"),
        (json!({"timezone": "Mars/Olympus Mons"}), "timezone"),
        (json!({"name": "renamed"}), "name"),
        (json!({"colour": "red"}), "colour"),
    ] {
        let (s, v) = srv.put("/api/domain", body.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
        assert!(v["error"].as_str().unwrap().contains(word), "{body} → {v}");
    }

    // A domain admin sees only its own domain; the superuser may name one.
    let boss = ("boss@acme", "boss-password-123");
    let (_, d) = srv.call(Method::GET, "/api/domain", boss, None).await;
    assert_eq!(d["name"], "acme");
    let (s, _) = srv.call(Method::GET, "/api/domain?domain=default", boss, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, d) = srv.put("/api/domain?domain=acme", json!({"sipserver": "192.0.2.50"})).await;
    assert_eq!((s, d["name"].as_str(), d["sipserver"].as_str()), (StatusCode::OK, Some("acme"), Some("192.0.2.50")));
    let (_, d) = srv.get("/api/domain").await;
    assert_eq!(d["sipserver"], "sip.example.com", "the superuser's own domain is untouched");
    srv.stop().await;
}

async fn audit_names_fields_never_values(b: Backend) {
    let srv = TestServer::start(b).await;
    srv.create_handset(json!({"extensionnumber": "100", "password": "FirstSecret99"})).await;
    srv.put("/api/handset/100", json!({"password": "SecondSecret77", "notes": "n"})).await;
    srv.call(Method::DELETE, "/api/handset/100", crate::harness::ADMIN, None).await;
    let (s, rows) = srv.get("/api/audit").await;
    assert_eq!(s, StatusCode::OK);
    let text = rows.to_string();
    assert!(!text.contains("FirstSecret99") && !text.contains("SecondSecret77"), "{text}");
    let mine: Vec<_> = rows.as_array().unwrap().iter().filter(|r| r["actor"] == "admin@default").collect();
    assert_eq!(mine.len(), 3, "{text}");
    assert_eq!((mine[0]["action"].as_str(), mine[0]["fields"].as_str()), (Some("handset.create"), Some("password")));
    assert_eq!((mine[1]["action"].as_str(), mine[1]["fields"].as_str()), (Some("handset.update"), Some("password,notes")));
    assert_eq!(mine[2]["action"], "handset.delete");
    assert_eq!(mine[1]["client_ip"], "127.0.0.1");
    assert_eq!(mine[1]["extensionnumber"], "100");
    // Paging by id.
    let first = mine[0]["id"].as_i64().unwrap();
    let (_, after) = srv.get(&format!("/api/audit?afterid={first}&maxresults=1")).await;
    assert_eq!(after[0]["id"].as_i64(), mine[1]["id"].as_i64());
    srv.stop().await;
}
