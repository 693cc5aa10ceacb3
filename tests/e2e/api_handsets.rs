//! Handset Search / Select / Update, create and delete.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::both_backends;
use crate::harness::{Backend, TestServer, ADMIN};

both_backends!(
    create_select_update_delete,
    update_validates_and_names_fields,
    conflicts,
    search_pages_and_filters,
    parallel_updates_each_bump_the_revision,
    tenants_are_invisible_to_each_other,
    bodies_are_bounded_and_must_be_json,
);

async fn create_select_update_delete(b: Backend) {
    let srv = TestServer::start(b).await;
    let (s, v) = srv.get("/api/handset").await;
    assert_eq!((s, v), (StatusCode::OK, json!([])));

    let created = srv
        .create_handset(json!({"extensionnumber": "100", "name": "Reception", "mac": "00-15-65-AA-BB-CC", "recording": true}))
        .await;
    assert_eq!(created["mac"], "001565aabbcc");
    assert_eq!(created["recording"], "true");
    assert_eq!(created["revision"], 1);
    let generated = created["password"].as_str().unwrap();
    assert!(generated.len() >= 16, "generated password {generated:?}");

    let (s, v) = srv.get("/api/handset/100").await;
    assert_eq!(s, StatusCode::OK);
    // Jingl's fields, all strings, then ours.
    for field in [
        "extensionnumber",
        "name",
        "password",
        "location",
        "outgoingcli",
        "recording",
        "notes",
        "status",
        "registrationipaddress",
        "mac",
        "model",
    ] {
        assert!(v[field].is_string(), "{field} in {v}");
    }
    assert_eq!(v["status"], "unavailable");
    assert_eq!(v["registrationipaddress"], "");

    // A config change bumps the revision by one; notes and location do not.
    let (s, v) =
        srv.put("/api/handset/100", json!({"name": "Front desk", "outgoingcli": "+61409123456", "recording": "false"})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (v["name"].as_str(), v["recording"].as_str(), v["revision"].as_i64()),
        (Some("Front desk"), Some("false"), Some(2))
    );
    let (_, v) = srv.put("/api/handset/100", json!({"notes": "by the door", "location": "Hall"})).await;
    assert_eq!((v["notes"].as_str(), v["revision"].as_i64()), (Some("by the door"), Some(2)));
    // The same values again change nothing.
    let (_, v) = srv.put("/api/handset/100", json!({"name": "Front desk", "extensionnumber": "100"})).await;
    assert_eq!(v["revision"], 2);
    // MAC and model can be cleared.
    let (_, v) = srv.put("/api/handset/100", json!({"mac": "", "model": null})).await;
    assert_eq!((v["mac"].as_str(), v["revision"].as_i64()), (Some(""), Some(3)));

    let (s, v) = srv.call(Method::DELETE, "/api/handset/100", ADMIN, None).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    let (s, v) = srv.get("/api/handset/100").await;
    assert_eq!((s, v), (StatusCode::NOT_FOUND, json!({"error": "Handset not found"})));
    let (s, _) = srv.call(Method::DELETE, "/api/handset/100", ADMIN, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = srv.put("/api/handset/100", json!({"name": "x"})).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    srv.stop().await;
}

async fn update_validates_and_names_fields(b: Backend) {
    let srv = TestServer::start(b).await;
    srv.create_handset(json!({"extensionnumber": "200"})).await;
    let cases = [
        (json!({"recording": "yes"}), StatusCode::BAD_REQUEST, "recording"),
        (json!({"mac": "00:15:65:aa:bb"}), StatusCode::BAD_REQUEST, "MAC"),
        (json!({"mac": "ff:ff:ff:ff:ff:ff"}), StatusCode::BAD_REQUEST, "broadcast"),
        (json!({"mac": "000000000000"}), StatusCode::BAD_REQUEST, "all-zero"),
        (json!({"mac": "01:00:5e:00:00:01"}), StatusCode::BAD_REQUEST, "multicast"),
        (json!({"name": "two\nlines"}), StatusCode::BAD_REQUEST, "name"),
        (json!({"name": ["a"]}), StatusCode::BAD_REQUEST, "name"),
        (json!({"password": "has space"}), StatusCode::BAD_REQUEST, "password"),
        (json!({"outgoingcli": "call me"}), StatusCode::BAD_REQUEST, "outgoingcli"),
        (json!({"extensionnumber": "201"}), StatusCode::BAD_REQUEST, "extensionnumber"),
        (json!({"colour": "red"}), StatusCode::BAD_REQUEST, "colour"),
        // Call control (tests/e2e/call_control.rs): a phone of no known
        // family on the direct relay, no call, no such supervisor, and an
        // action with other fields.
        (json!({"callcreate": "0409123456"}), StatusCode::NOT_IMPLEMENTED, "callcreate"),
        (json!({"calltransferattended": "1"}), StatusCode::CONFLICT, "calltransferattended"),
        (json!({"calltransferblind": "1"}), StatusCode::CONFLICT, "calltransferblind"),
        (json!({"callmonitor": "1"}), StatusCode::NOT_FOUND, "Supervisor"),
        (json!({"callcoach": "04a9!"}), StatusCode::BAD_REQUEST, "callcoach"),
        (json!({"callbarge": "1", "name": "x"}), StatusCode::BAD_REQUEST, "callbarge"),
    ];
    for (body, want, word) in cases {
        let (s, v) = srv.put("/api/handset/200", body.clone()).await;
        assert_eq!(s, want, "{body} → {v}");
        let msg = v["error"].as_str().unwrap_or_default();
        assert!(msg.contains(word), "{body} → {msg:?} should name {word}");
    }
    // Nothing of the refused updates was written.
    let (_, v) = srv.get("/api/handset/200").await;
    assert_eq!((v["name"].as_str(), v["revision"].as_i64()), (Some(""), Some(1)));

    // Every MAC spelling an installer uses is accepted and normalised.
    for (i, mac) in ["001565AABB01", "00:15:65:aa:bb:02", "00-15-65-AA-BB-03", "0015.65aa.bb04"].iter().enumerate() {
        let (s, v) = srv.put("/api/handset/200", json!({ "mac": mac })).await;
        assert_eq!(s, StatusCode::OK, "{mac}: {v}");
        assert_eq!(v["mac"], format!("001565aabb0{}", i + 1));
    }
    // Create validates too.
    for body in [
        json!({}),
        json!({"extensionnumber": "a b"}),
        json!({"extensionnumber": "x".repeat(33)}),
        json!({"extensionnumber": "300", "bogus": 1}),
    ] {
        let (s, v) = srv.post("/api/handset", body.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body} → {v}");
    }
    srv.stop().await;
}

async fn conflicts(b: Backend) {
    let srv = TestServer::start(b).await;
    srv.add_user("boss@acme", "acme-admin-password", "admin", false).await;
    srv.create_handset(json!({"extensionnumber": "100", "mac": "001565000001"})).await;
    let (s, v) = srv.post("/api/handset", json!({"extensionnumber": "100"})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(v["error"].as_str().unwrap().contains("Extension"), "{v}");
    // The same extension in another domain is fine; the same MAC anywhere is not.
    let acme = ("boss@acme", "acme-admin-password");
    let (s, v) = srv.call(Method::POST, "/api/handset", acme, Some(json!({"extensionnumber": "100"}))).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) =
        srv.call(Method::POST, "/api/handset", acme, Some(json!({"extensionnumber": "101", "mac": "00:15:65:00:00:01"}))).await;
    assert_eq!((s, v["error"].as_str()), (StatusCode::CONFLICT, Some("MAC already in use")));
    let (s, v) = srv.call(Method::PUT, "/api/handset/100", acme, Some(json!({"mac": "001565000001"}))).await;
    assert_eq!((s, v["error"].as_str()), (StatusCode::CONFLICT, Some("MAC already in use")));
    srv.stop().await;
}

async fn search_pages_and_filters(b: Backend) {
    let srv = TestServer::start(b).await;
    for i in 0..25 {
        let model = if i % 5 == 0 { "T46S" } else { "VVX410" };
        let name = if i % 2 == 0 { format!("Sales desk {i}") } else { format!("Support {i}") };
        srv.create_handset(
            json!({"extensionnumber": format!("{}", 1000 + i), "name": name, "model": model, "location": "HQ 50%"}),
        )
        .await;
    }
    srv.create_handset(json!({"extensionnumber": "2000", "mac": "001565abcdef", "location": "Branch"})).await;

    // Walk every page: ordered, no gaps, no repeats.
    let mut seen = Vec::new();
    let mut after = String::new();
    loop {
        let (s, page) = srv.get(&format!("/api/handset?maxresults=10&afterid={after}")).await;
        assert_eq!(s, StatusCode::OK);
        let page = page.as_array().unwrap().clone();
        assert!(page.len() <= 10);
        if page.is_empty() {
            break;
        }
        after = page.last().unwrap()["extensionnumber"].as_str().unwrap().to_string();
        seen.extend(page.iter().map(|h| h["extensionnumber"].as_str().unwrap().to_string()));
    }
    let mut expected: Vec<String> = (1000..1025).map(|i| i.to_string()).collect();
    expected.push("2000".into());
    assert_eq!(seen, expected);

    let exts =
        |v: &Value| v.as_array().unwrap().iter().map(|h| h["extensionnumber"].as_str().unwrap().to_string()).collect::<Vec<_>>();
    let (_, v) = srv.get("/api/handset?extensionnumber=102").await;
    assert_eq!(exts(&v), ["1020", "1021", "1022", "1023", "1024"]);
    let (_, v) = srv.get("/api/handset?name=SUPPORT&maxresults=3").await;
    assert_eq!(exts(&v), ["1001", "1003", "1005"]);
    let (_, v) = srv.get("/api/handset?model=T46S").await;
    assert_eq!(exts(&v), ["1000", "1005", "1010", "1015", "1020"]);
    let (_, v) = srv.get("/api/handset?mac=00:15:65:AB:CD:EF").await;
    assert_eq!(exts(&v), ["2000"]);
    // LIKE wildcards in a filter are taken literally.
    let (_, v) = srv.get("/api/handset?location=50%25").await;
    assert_eq!(exts(&v).len(), 25);
    let (_, v) = srv.get("/api/handset?location=_").await;
    assert!(exts(&v).is_empty(), "{v}");
    let (_, v) = srv.get("/api/handset?maxresults=1000").await;
    assert_eq!(exts(&v).len(), 26);

    for bad in ["maxresults=1001", "maxresults=0", "maxresults=x", "mac=nope", "extensionnumber=a%20b", "sort=name"] {
        let (s, v) = srv.get(&format!("/api/handset?{bad}")).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad} → {v}");
    }
    srv.stop().await;
}

async fn parallel_updates_each_bump_the_revision(b: Backend) {
    let srv = TestServer::start(b).await;
    srv.create_handset(json!({"extensionnumber": "500"})).await;
    let updates = (0..50).map(|i| {
        let srv = &srv;
        async move { srv.put("/api/handset/500", json!({ "name": format!("Name {i}") })).await }
    });
    for (s, v) in futures::future::join_all(updates).await {
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    let (_, v) = srv.get("/api/handset/500").await;
    assert_eq!(v["revision"], 51, "50 changes on top of revision 1");
    let (_, audit) = srv.get("/api/audit?maxresults=1000").await;
    let updates = audit.as_array().unwrap().iter().filter(|r| r["action"] == "handset.update").count();
    assert_eq!(updates, 50);
    srv.stop().await;
}

async fn tenants_are_invisible_to_each_other(b: Backend) {
    let srv = TestServer::start(b).await;
    srv.add_user("ann@acme", "acme-password-123", "admin", false).await;
    srv.add_user("bob@globex", "globex-password-123", "admin", false).await;
    let ann = ("ann@acme", "acme-password-123");
    let bob = ("bob@globex", "globex-password-123");
    let (s, _) =
        srv.call(Method::POST, "/api/handset", ann, Some(json!({"extensionnumber": "100", "name": "Acme reception"}))).await;
    assert_eq!(s, StatusCode::CREATED);

    // Bob cannot see, change, delete or find Acme's handset: 404, never 403.
    for (m, body) in [(Method::GET, None), (Method::PUT, Some(json!({"name": "pwned"}))), (Method::DELETE, None)] {
        let (s, v) = srv.call(m.clone(), "/api/handset/100", bob, body).await;
        assert_eq!((s, v), (StatusCode::NOT_FOUND, json!({"error": "Handset not found"})), "{m}");
    }
    let (_, v) = srv.call(Method::GET, "/api/handsetstatus/100", bob, None).await;
    assert_eq!(v, json!({"error": "Handset not found"}));
    let (_, v) = srv.call(Method::GET, "/api/handset", bob, None).await;
    assert_eq!(v, json!([]));
    // Naming the other domain does not help a non-superuser.
    let (s, v) = srv.call(Method::GET, "/api/handset/100?domain=acme", bob, None).await;
    assert_eq!((s, v["error"].as_str()), (StatusCode::NOT_FOUND, Some("Domain not found")));
    let (s, _) = srv.call(Method::GET, "/api/handset?domain=nosuchdomain", bob, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // The superuser may act in any domain by naming it.
    let (s, v) = srv.get("/api/handset/100").await;
    assert_eq!(s, StatusCode::NOT_FOUND, "default domain has no 100: {v}");
    let (s, v) = srv.get("/api/handset/100?domain=acme").await;
    assert_eq!((s, v["name"].as_str()), (StatusCode::OK, Some("Acme reception")));
    let (s, v) = srv.call(Method::PUT, "/api/handset/100?domain=acme", ADMIN, Some(json!({"name": "Renamed"}))).await;
    assert_eq!((s, v["revision"].as_i64()), (StatusCode::OK, Some(2)));
    // Ann's view is unchanged by Bob's attempts.
    let (_, v) = srv.call(Method::GET, "/api/handset/100", ann, None).await;
    assert_eq!(v["name"], "Renamed");
    srv.stop().await;
}

async fn bodies_are_bounded_and_must_be_json(b: Backend) {
    let srv = TestServer::start(b).await;
    srv.create_handset(json!({"extensionnumber": "100"})).await;
    let big = json!({"notes": "x".repeat(70 * 1024)});
    let (s, v) = srv.put("/api/handset/100", big).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert!(v["error"].as_str().unwrap().contains("65536"));
    // Also when the client does not say how large the body is (chunked).
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..80).map(|_| Ok(vec![b' '; 1024])).collect();
    let resp = srv
        .client
        .put(srv.url("/api/handset/100"))
        .basic_auth(ADMIN.0, Some(ADMIN.1))
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    for raw in ["{", "[1,2]", "\"name\"", "", "{\"name\": \"a\",}"] {
        let resp = srv
            .client
            .put(srv.url("/api/handset/100"))
            .basic_auth(ADMIN.0, Some(ADMIN.1))
            .header("content-type", "application/json")
            .body(raw)
            .send()
            .await
            .unwrap();
        let (s, v) = crate::harness::read(resp).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{raw:?}");
        assert!(v["error"].as_str().unwrap().starts_with("Bad JSON"), "{raw:?} → {v}");
    }
    srv.stop().await;
}
