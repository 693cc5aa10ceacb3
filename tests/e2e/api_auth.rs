//! Transport and authentication rules: HTTPS only, Basic `user@domain`,
//! roles, failed-login bans, and the shape of internal errors.

use std::net::IpAddr;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::both_backends;
use crate::harness::{https_client, https_client_from, plain_client, read, Backend, TestServer, ADMIN};

both_backends!(
    plain_http_is_refused_before_credentials,
    credentials_and_roles,
    failed_logins_are_limited,
    a_distributed_guess_slows_the_attackers_not_the_user,
    parallel_logins_are_counted_before_hashing
);

async fn plain_http_is_refused_before_credentials(b: Backend) {
    let srv = TestServer::start(b).await;
    let plain = plain_client();
    // Wrong credentials over plain HTTP, many times: each is a 406, and none
    // counts as a failed login (they were never read).
    for _ in 0..15 {
        let resp = plain.get(srv.plain_url("/api/handset/100")).basic_auth(ADMIN.0, Some("wrong")).send().await.unwrap();
        let (s, v) = read(resp).await;
        assert_eq!((s, v), (StatusCode::NOT_ACCEPTABLE, json!({"error": "SSL must be used"})));
    }
    for path in ["/api/handset", "/api/nosuchthing", "/api/domain"] {
        let resp = plain.put(srv.plain_url(path)).body("garbage").send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_ACCEPTABLE, "{path}");
    }
    let (s, _) = srv.get("/api/handset").await;
    assert_eq!(s, StatusCode::OK, "the admin is not banned");
    // An untrusted peer cannot claim TLS with X-Forwarded-Proto.
    let resp = plain
        .get(srv.plain_url("/api/handset"))
        .header("x-forwarded-proto", "https")
        .basic_auth(ADMIN.0, Some(ADMIN.1))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_ACCEPTABLE);
    srv.stop().await;

    // A trusted reverse proxy terminating TLS can.
    let srv =
        TestServer::start_with(b, |s| s.trusted_proxies = autoprov::config::Cidrs(vec!["127.0.0.0/8".parse().unwrap()])).await;
    let resp = plain
        .get(srv.plain_url("/api/handset"))
        .header("x-forwarded-proto", "https")
        .basic_auth(ADMIN.0, Some(ADMIN.1))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = plain.get(srv.plain_url("/api/handset")).basic_auth(ADMIN.0, Some(ADMIN.1)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_ACCEPTABLE, "without the header it is still plain HTTP");
    srv.stop().await;
}

async fn credentials_and_roles(b: Backend) {
    let srv = TestServer::start(b).await;
    srv.add_user("reader@acme", "reader-password-1", "readonly", false).await;
    srv.add_user("pbx@acme", "platform-password-1", "platform", false).await;
    srv.add_user("boss@acme", "boss-password-123", "admin", false).await;

    // No or bad credentials: 401 with the Basic challenge.
    let resp = srv.client.get(srv.url("/api/handset")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(resp.headers()["www-authenticate"], "Basic realm=\"autoprov\"");
    for (user, pass) in [("admin@default", "wrong"), ("nobody@default", "x"), ("admin", ADMIN.1), ("admin@nosuch", ADMIN.1)] {
        let (s, v) = srv.call(Method::GET, "/api/handset", (user, pass), None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{user}");
        assert!(v["error"].is_string());
    }
    for header in ["Bearer abc", "Basic !!!", "Basic", "Basic YWRtaW5AZGVmYXVsdA=="] {
        let resp = srv.client.get(srv.url("/api/handset")).header("authorization", header).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{header}");
    }
    // The domain may be given as a full host name.
    let (s, _) = srv.call(Method::GET, "/api/handset", ("admin@default.example.com", ADMIN.1), None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = srv.call(Method::GET, "/api/handset", ("Boss@ACME.voice.example.net", "boss-password-123"), None).await;
    assert_eq!(s, StatusCode::OK);

    // readonly: reads yes, writes 403.
    let reader = ("reader@acme", "reader-password-1");
    let boss = ("boss@acme", "boss-password-123");
    let pbx = ("pbx@acme", "platform-password-1");
    let (s, _) = srv.call(Method::POST, "/api/handset", boss, Some(json!({"extensionnumber": "100"}))).await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = srv.call(Method::GET, "/api/handset/100", reader, None).await;
    assert_eq!(s, StatusCode::OK);
    for (m, path, body) in [
        (Method::PUT, "/api/handset/100", json!({"name": "x"})),
        (Method::POST, "/api/handset", json!({"extensionnumber": "101"})),
        (Method::DELETE, "/api/handset/100", json!(null)),
        (Method::PUT, "/api/handsetstatus/100", json!({"state": "Idle"})),
        (Method::PUT, "/api/domain", json!({"timezone": "Europe/London"})),
    ] {
        let (s, v) = srv.call(m.clone(), path, reader, Some(body)).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{m} {path}: {v}");
    }
    // platform: handsets and status yes, domain settings and audit no.
    let (s, _) = srv.call(Method::PUT, "/api/handsetstatus/100", pbx, Some(json!({"state": "Idle"}))).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = srv.call(Method::PUT, "/api/handset/100", pbx, Some(json!({"name": "Desk"}))).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = srv.call(Method::PUT, "/api/domain", pbx, Some(json!({"timezone": "Europe/London"}))).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = srv.call(Method::GET, "/api/audit", pbx, None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = srv.call(Method::GET, "/api/audit", boss, None).await;
    assert_eq!(s, StatusCode::OK);

    // Unknown API paths are a JSON 404.
    let (s, v) = srv.get("/api/nosuchthing").await;
    assert_eq!((s, v), (StatusCode::NOT_FOUND, json!({"error": "Not found"})));
    srv.stop().await;
}

async fn failed_logins_are_limited(b: Backend) {
    let srv = TestServer::start(b).await;
    srv.add_user("victim@acme", "victim-password-1", "admin", false).await;
    srv.add_user("other@acme", "other-password-12", "admin", false).await;
    let cert = srv.running().tls_cert_path.clone();
    let from = |ip: &str| https_client_from(&cert, None, Some(ip.parse::<IpAddr>().unwrap()));
    let call = |client: reqwest::Client, user: &'static str, pass: &'static str| {
        let url = srv.url("/api/handset");
        async move { client.get(url).basic_auth(user, Some(pass)).send().await.unwrap().status() }
    };

    // Ten wrong passwords from one address are 401, the eleventh 429 with
    // Retry-After: that address is banned...
    let attacker = from("127.0.1.1");
    for i in 0..10 {
        assert_eq!(call(attacker.clone(), "victim@acme", "guess").await, StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    let resp = attacker.get(srv.url("/api/handset")).basic_auth("victim@acme", Some("guess")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = resp.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=300).contains(&retry), "{retry}");
    // ...but the user is not locked out: its own office still logs in.
    assert_eq!(call(from("127.0.1.200"), "victim@acme", "victim-password-1").await, StatusCode::OK, "no lockout from elsewhere");
    assert_eq!(call(srv.client.clone(), "other@acme", "other-password-12").await, StatusCode::OK, "other users are unaffected");

    // Per IP: eleven failures with different user names ban the address,
    // even for a correct login from it; other addresses are unaffected.
    let attacker = from("127.0.2.1");
    for i in 0..11 {
        let user: &'static str = Box::leak(format!("user{i}@acme").into_boxed_str());
        let want = if i < 10 { StatusCode::UNAUTHORIZED } else { StatusCode::TOO_MANY_REQUESTS };
        assert_eq!(call(attacker.clone(), user, "guess").await, want, "attempt {i}");
    }
    assert_eq!(call(attacker.clone(), "other@acme", "other-password-12").await, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(call(from("127.0.2.2"), "other@acme", "other-password-12").await, StatusCode::OK);
    srv.stop().await;
}

/// A user guessed at from many addresses, under many spellings of its
/// domain, is slowed down for the addresses that failed, never for a clean
/// one with the right password.
async fn a_distributed_guess_slows_the_attackers_not_the_user(b: Backend) {
    let srv = TestServer::start(b).await;
    srv.add_user("plat@acme", "plat-password-12", "admin", false).await;
    let cert = srv.running().tls_cert_path.clone();
    let from = |ip: &str| https_client_from(&cert, None, Some(ip.parse::<IpAddr>().unwrap()));
    let call = |client: reqwest::Client, user: String, pass: &'static str| {
        let url = srv.url("/api/handset");
        async move { client.get(url).basic_auth(user, Some(pass)).send().await.unwrap().status() }
    };
    // Eleven addresses, one guess each, each under another spelling of the
    // domain (all log into acme): one user, eleven failures.
    for i in 0..11 {
        let login = format!("plat@ACME.v{i}.example");
        assert_eq!(call(from(&format!("127.0.3.{}", i + 1)), login, "guess").await, StatusCode::UNAUTHORIZED, "guess {i}");
    }
    // An address that failed before now gets one guess per slow-down period.
    let again = |i: u32| call(from("127.0.3.1"), format!("plat@acme.x{i}.example"), "guess-again");
    let (first, second) = (again(1).await, again(2).await);
    assert_eq!((first, second), (StatusCode::UNAUTHORIZED, StatusCode::TOO_MANY_REQUESTS), "slowed down");
    // The user's clean office is heard at once, every time.
    for _ in 0..3 {
        assert_eq!(call(from("127.0.3.200"), "plat@acme".into(), "plat-password-12").await, StatusCode::OK);
    }
    srv.stop().await;
}

/// 200 wrong passwords at once from one address: counted before they are
/// hashed, so all but the first few are refused without a hash (the
/// memory this saves is measured by benches/hostile.sh). 30 right ones at
/// once (an integration's parallel calls, cold cache) all pass: one check.
async fn parallel_logins_are_counted_before_hashing(b: Backend) {
    let srv = TestServer::start(b).await;
    srv.add_user("bot@acme", "bot-password-123", "admin", false).await;
    let cert = srv.running().tls_cert_path.clone();
    let attacker = https_client_from(&cert, None, Some("127.0.4.1".parse().unwrap()));
    let url = srv.url("/api/handset");
    let guesses = (0..200).map(|i| {
        let (client, url) = (attacker.clone(), url.clone());
        async move { client.get(url).basic_auth("bot@acme", Some(format!("guess-{i}"))).send().await.unwrap().status() }
    });
    let statuses = futures::future::join_all(guesses).await;
    let hashed = statuses.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count();
    let refused = statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
    assert_eq!(hashed + refused, 200, "{statuses:?}");
    assert!(hashed <= 10, "only the guesses under the limit are hashed: {hashed}");

    let office = https_client_from(&cert, None, Some("127.0.4.2".parse().unwrap()));
    let logins = (0..30).map(|_| {
        let (client, url) = (office.clone(), url.clone());
        async move { client.get(url).basic_auth("bot@acme", Some("bot-password-123")).send().await.unwrap().status() }
    });
    let statuses = futures::future::join_all(logins).await;
    assert!(statuses.iter().all(|s| *s == StatusCode::OK), "{statuses:?}");
    srv.stop().await;
}

async fn tls_12_and_13_are_both_served() {
    let srv = TestServer::start(Backend::Sqlite).await;
    let cert = srv.running().tls_cert_path.clone();
    for (name, versions) in [("1.2", &[&rustls::version::TLS12][..]), ("1.3", &[&rustls::version::TLS13][..])] {
        let client = https_client(&cert, Some(versions));
        let resp = client.get(srv.url("/api/handset")).basic_auth(ADMIN.0, Some(ADMIN.1)).send().await;
        assert_eq!(resp.map(|r| r.status()).unwrap_or_else(|e| panic!("TLS {name}: {e:?}")), StatusCode::OK, "TLS {name}");
    }
    srv.stop().await;
}

async fn internal_errors_carry_an_id_and_no_internals() {
    let srv = TestServer::start(Backend::Sqlite).await;
    srv.create_handset(json!({"extensionnumber": "100"})).await;
    // Corrupt the row behind the server's back.
    sqlx::query("UPDATE handset SET mac = 'not-a-mac' WHERE extensionnumber = '100'")
        .execute(srv.running().store.pool())
        .await
        .unwrap();
    let (s, v) = srv.get("/api/handset/100").await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(v["error"], "Internal server error");
    assert_eq!(v["requestid"].as_str().unwrap().len(), 16);
    assert!(!v.to_string().contains("not-a-mac"), "{v}");
    srv.stop().await;
}

async fn the_api_is_described_in_openapi_with_a_built_in_swagger_ui() {
    let srv = TestServer::start(Backend::Sqlite).await;
    let resp = srv.client.get(srv.url("/api/openapi.json")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let doc: serde_json::Value = resp.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/api/handset", "get"),
        ("/api/handset", "post"),
        ("/api/handset/{extensionnumber}", "get"),
        ("/api/handset/{extensionnumber}", "put"),
        ("/api/handset/{extensionnumber}", "delete"),
        ("/api/handset/{extensionnumber}/resync", "post"),
        ("/api/handset/import", "post"),
        ("/api/handsetstatus", "get"),
        ("/api/handsetstatus/{extensionnumber}", "get"),
        ("/api/handsetstatus/{extensionnumber}", "put"),
        ("/api/domain", "get"),
        ("/api/domain", "put"),
        ("/api/audit", "get"),
        ("/api/device", "get"),
        ("/api/device/{mac}/claim", "post"),
    ] {
        assert!(paths.get(path).and_then(|p| p.get(method)).is_some(), "{method} {path} is not described");
    }
    assert_eq!(doc["components"]["securitySchemes"]["basic"]["scheme"], "basic");
    assert!(doc["components"]["schemas"]["HandsetJson"]["properties"]["registrationipaddress"].is_object());
    let resp = srv.client.get(srv.url("/api/docs/")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let html = resp.text().await.unwrap();
    assert!(html.contains("swagger-ui") && !html.contains("https://unpkg") && !html.contains("cdn."), "served from the binary");
    let resp = srv.client.get(srv.url("/api/docs/swagger-ui-bundle.js")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // Plain HTTP: 406 like the rest of the API.
    let resp = plain_client().get(srv.plain_url("/api/openapi.json")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_ACCEPTABLE);
    srv.stop().await;
}

crate::e2e!(
    tls_12_and_13_are_both_served,
    internal_errors_carry_an_id_and_no_internals,
    the_api_is_described_in_openapi_with_a_built_in_swagger_ui,
);
