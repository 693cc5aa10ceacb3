//! Installers claiming phones that booted unknown.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::both_backends;
use crate::harness::{Backend, TestServer, ADMIN};
use crate::provisioning::{http_get, phone as a_phone, wait_for_fetch};
use crate::push::{quick_push, register, wait_for_push_state, Phone};

both_backends!(an_unknown_phone_is_claimed_and_converges);

async fn an_unknown_phone_is_claimed_and_converges(b: Backend) {
    let srv = TestServer::start_with(b, quick_push).await;
    srv.add_user("boss@acme", "boss-password-123", "admin", false).await;
    let p = a_phone("yealink");
    // The phone boots before anyone knows it.
    let (s, _, _) = http_get(&srv, &p.file, Some(&p.ua)).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    crate::harness::wait_for_unknown_device(&srv, &p.mac).await;
    let (_, unknown) = srv.get("/api/device?state=unknown").await;
    assert_eq!(unknown[0]["mac"], p.mac.as_str());

    // Claiming for an extension the domain lacks: 404 unless the domain allows it.
    let claim = json!({"extensionnumber": "2000"});
    let (s, v) = srv.call(Method::POST, &format!("/api/device/{}/claim", &p.mac), ADMIN, Some(claim.clone())).await;
    assert_eq!((s, v["error"].as_str()), (StatusCode::NOT_FOUND, Some("Handset not found")));
    let (s, _) = srv.put("/api/domain", json!({"claimcreates": true})).await;
    assert_eq!(s, StatusCode::OK);
    // The MAC as an installer may type it: upper case, with colons.
    let typed =
        p.mac.to_uppercase().as_bytes().chunks(2).map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>().join(":");
    let (s, h) = srv.call(Method::POST, &format!("/api/device/{typed}/claim"), ADMIN, Some(claim)).await;
    assert_eq!(s, StatusCode::OK, "{h}");
    assert_eq!(
        (h["mac"].as_str(), h["model"].as_str()),
        (Some(p.mac.as_str()), Some(p.model.as_str())),
        "the model the phone reported"
    );
    let (_, unknown) = srv.get("/api/device?state=unknown").await;
    assert_eq!(unknown, json!([]), "no longer unknown");

    // The phone (registered with the platform) gets a push, fetches, converges.
    let phone = Phone::new().await;
    register(&srv, "2000", phone.addr()).await;
    let (s, _) = srv.call(Method::POST, "/api/handset/2000/resync", ADMIN, None).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let notify = phone.next(Duration::from_secs(5)).await.expect("a NOTIFY");
    phone.answer(&notify, "200 OK", "").await;
    let (s, _, body) = http_get(&srv, &p.file, Some(&p.ua)).await;
    assert_eq!(s, StatusCode::OK);
    assert!(body.contains("account.1.user_name = 2000"));
    wait_for_fetch(&srv, "2000").await;
    wait_for_push_state(&srv, "2000", "applied", Duration::from_secs(5)).await;

    // Claiming it again for the same extension changes nothing; for another
    // handset, or from another tenant, it is a conflict.
    let (s, again) =
        srv.call(Method::POST, &format!("/api/device/{}/claim", &p.mac), ADMIN, Some(json!({"extensionnumber": "2000"}))).await;
    assert_eq!((s, again["revision"].as_i64()), (StatusCode::OK, h["revision"].as_i64()));
    srv.create_handset(json!({"extensionnumber": "2001"})).await;
    let (s, v) =
        srv.call(Method::POST, &format!("/api/device/{}/claim", &p.mac), ADMIN, Some(json!({"extensionnumber": "2001"}))).await;
    assert_eq!((s, v["error"].as_str()), (StatusCode::CONFLICT, Some("MAC already in use")));
    // Another tenant never saw it under its token or from its site
    // networks: as far as it can tell, there is no such device.
    let boss = ("boss@acme", "boss-password-123");
    let (s, _) =
        srv.call(Method::POST, &format!("/api/device/{}/claim", &p.mac), boss, Some(json!({"extensionnumber": "100"}))).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    for (body, want) in [
        (json!({}), StatusCode::BAD_REQUEST),
        (json!({"extensionnumber": "a b"}), StatusCode::BAD_REQUEST),
        (json!({"extensionnumber": "2001", "colour": "red"}), StatusCode::BAD_REQUEST),
    ] {
        let (s, _) = srv.call(Method::POST, "/api/device/001565999999/claim", ADMIN, Some(body.clone())).await;
        assert_eq!(s, want, "{body}");
    }
    let (s, _) = srv.call(Method::POST, "/api/device/not-a-mac/claim", ADMIN, Some(json!({"extensionnumber": "2001"}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    srv.stop().await;
}
