//! What survives a restart.

use reqwest::StatusCode;
use serde_json::json;

use crate::both_backends;
use crate::harness::{Backend, TestServer};

both_backends!(records_and_certificate_survive_a_restart);

async fn records_and_certificate_survive_a_restart(b: Backend) {
    let mut srv = TestServer::start(b).await;
    let created = srv.create_handset(json!({"extensionnumber": "100", "name": "Kept", "mac": "001565000100"})).await;
    srv.put("/api/handset/100", json!({"recording": true})).await;
    srv.put("/api/handsetstatus/100", json!({"state": "Ringing", "registrationaddress": "192.0.2.1:5060"})).await;
    let fingerprint = srv.running().tls_fingerprint.clone();

    srv.restart().await;
    assert_eq!(srv.running().tls_fingerprint, fingerprint, "the self-signed certificate is reused");
    assert!(srv.running().bootstrapped.is_none(), "bootstrap runs once");
    let (s, v) = srv.get("/api/handset/100").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["password"], created["password"]);
    assert_eq!((v["name"].as_str(), v["recording"].as_str(), v["revision"].as_i64()), (Some("Kept"), Some("true"), Some(2)));
    assert_eq!((v["status"].as_str(), v["registrationipaddress"].as_str()), (Some("ringing"), Some("192.0.2.1")));
    srv.stop().await;
}
