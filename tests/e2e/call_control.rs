//! Call control (issue 14): Handset Update's call-control parameters reach
//! what can do them. An Asterisk manager peer speaking the real protocol
//! gets `Originate` / `Redirect` / `Atxfer` / `ChanSpy` actions; a webhook
//! gets the signed action; on the direct relay a TCP peer standing in for
//! the phone gets its vendor's remote-control request. Every refusal is
//! answered with its status.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::harness::{Backend, TestServer, ADMIN};
use crate::provisioning::phone as a_phone;

type Block = HashMap<String, String>;

/// An Asterisk manager: logs in with `secret`, records every other action,
/// answers `CoreShowChannels` with the handset 2000 bridged to a trunk (as
/// Asterisk 18+ lists them), and every other action with Success, or with
/// an Error while `fail` is set.
async fn asterisk(secret: &'static str, fail: Arc<AtomicBool>) -> (SocketAddr, UnboundedReceiver<Block>) {
    use tokio::io::{AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (tx, fail) = (tx.clone(), fail.clone());
            tokio::spawn(async move {
                let mut conn = BufReader::new(stream);
                conn.get_mut().write_all(b"Asterisk Call Manager/7.0.3\r\n").await.unwrap();
                loop {
                    let Some(block) = crate::push::read_ami_block(&mut conn).await else { return };
                    if block.is_empty() {
                        continue;
                    }
                    let id = block.get("ActionID").cloned().unwrap_or_default();
                    let action = block.get("Action").cloned().unwrap_or_default();
                    let reply = match action.as_str() {
                        "Login" if block.get("Secret").map(String::as_str) == Some(secret) => {
                            format!("Response: Success\r\nActionID: {id}\r\nMessage: Authentication accepted\r\n\r\nEvent: FullyBooted\r\nPrivilege: system,all\r\nStatus: Fully Booted\r\n\r\n")
                        }
                        "Login" => format!("Response: Error\r\nActionID: {id}\r\nMessage: Authentication failed\r\n\r\n"),
                        "CoreShowChannels" => {
                            let _ = tx.send(block.clone());
                            let channel = |name: &str, num: &str, connected: &str, bridge: &str| {
                                format!(
                                    "Event: CoreShowChannel\r\nActionID: {id}\r\nChannel: {name}\r\nChannelState: 6\r\nChannelStateDesc: Up\r\n\
                                     CallerIDNum: {num}\r\nCallerIDName: <unknown>\r\nConnectedLineNum: {connected}\r\nConnectedLineName: <unknown>\r\n\
                                     Language: en\r\nAccountCode: \r\nContext: from-internal\r\nExten: \r\nPriority: 1\r\nUniqueid: 1700000000.{num}\r\n\
                                     Linkedid: 1700000000.1\r\nApplication: Dial\r\nApplicationData: \r\nDuration: 00:01:02\r\nBridgeId: {bridge}\r\n\r\n"
                                )
                            };
                            format!(
                                "Response: Success\r\nActionID: {id}\r\nEventList: start\r\nMessage: Channels will follow\r\n\r\n{}{}{}\
                                 Event: CoreShowChannelsComplete\r\nActionID: {id}\r\nEventList: Complete\r\nListItems: 3\r\n\r\n",
                                channel("PJSIP/20001-00000007", "20001", "", ""),
                                channel("PJSIP/2000-0000002a", "2000", "0409123456", "6a1b7c3e-bridge"),
                                channel("PJSIP/trunk-0000002b", "0409123456", "2000", "6a1b7c3e-bridge"),
                            )
                        }
                        _ => {
                            let _ = tx.send(block.clone());
                            if fail.load(Ordering::SeqCst) {
                                format!("Response: Error\r\nActionID: {id}\r\nMessage: Originate failed\r\n\r\n")
                            } else {
                                format!("Response: Success\r\nActionID: {id}\r\nMessage: Originate successfully queued\r\n\r\n")
                            }
                        }
                    };
                    conn.get_mut().write_all(reply.as_bytes()).await.unwrap();
                }
            });
        }
    });
    (addr, rx)
}

async fn next(rx: &mut UnboundedReceiver<Block>) -> Block {
    tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.expect("an AMI action").unwrap()
}

fn fields(block: &Block, names: &[&str]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> =
        names.iter().map(|n| (n.to_string(), block.get(*n).cloned().unwrap_or_else(|| "<missing>".into()))).collect();
    out.sort();
    out
}

fn expect(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    out.sort();
    out
}

/// PUTs one call-control parameter: the 202's action id.
async fn queue(srv: &TestServer, ext: &str, field: &str, target: &str) -> String {
    let (s, v) = srv.put(&format!("/api/handset/{ext}"), json!({ field: target })).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{field}: {v}");
    assert_eq!((v["action"].as_str(), v["state"].as_str(), v["target"].as_str()), (Some(field), Some("queued"), Some(target)));
    v["actionid"].as_str().unwrap().to_string()
}

/// Waits for the action to end; its last `GET`.
async fn outcome(srv: &TestServer, ext: &str, id: &str) -> Value {
    crate::harness::eventually("the call action to end", Duration::from_secs(10), || async {
        let (s, v) = srv.get(&format!("/api/handset/{ext}/action/{id}")).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        matches!(v["state"].as_str(), Some("done" | "failed")).then_some(v)
    })
    .await
}

async fn handset(srv: &TestServer, ext: &str, family: &str) {
    let p = a_phone(family);
    srv.create_handset(json!({"extensionnumber": ext, "name": "Desk", "mac": format!("{}{}", &p.mac[..10], &ext[ext.len() - 2..]), "model": p.model})).await;
}

async fn on_call(srv: &TestServer, ext: &str) {
    let (s, v) = srv.put(&format!("/api/handsetstatus/{ext}"), json!({"state": "OnCall"})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

crate::e2e!(
    each_call_action_reaches_asterisk_as_its_manager_action,
    call_actions_reach_a_signed_webhook,
    direct_call_control_asks_the_phones_own_api,
    direct_call_control_pushes_to_a_polycom_with_digest,
    call_control_refusals,
    call_actions_are_limited_per_user,
);

async fn each_call_action_reaches_asterisk_as_its_manager_action() {
    let fail = Arc::new(AtomicBool::new(false));
    let (ami, mut actions) = asterisk("ami-secret-2", fail.clone()).await;
    let srv = TestServer::start(Backend::Sqlite).await;
    let (s, d) = srv
        .put("/api/domain", json!({"pushbackend": "ami", "amihost": "127.0.0.1", "amiport": ami.port(), "amiuser": "autoprov", "amisecret": "ami-secret-2"}))
        .await;
    assert_eq!(s, StatusCode::OK, "{d}");
    handset(&srv, "2000", "yealink").await;
    handset(&srv, "2001", "yealink").await;

    // callcreate: the handset's channel rings, then dials the number.
    let id = queue(&srv, "2000", "callcreate", "0409123456").await;
    let block = next(&mut actions).await;
    assert_eq!(
        fields(&block, &["Action", "Channel", "Exten", "Context", "Priority", "Async", "CallerID"]),
        expect(&[
            ("Action", "Originate"),
            ("Channel", "PJSIP/2000"),
            ("Exten", "0409123456"),
            ("Context", "from-internal"),
            ("Priority", "1"),
            ("Async", "true"),
            ("CallerID", "0409123456")
        ])
    );
    assert!(block.get("ActionID").is_some_and(|a| a.starts_with("autoprov-")));
    let v = outcome(&srv, "2000", &id).await;
    assert_eq!((v["state"].as_str(), v["error"].as_str(), v["actor"].as_str()), (Some("done"), Some(""), Some(ADMIN.0)));

    // Transfers find the handset's channel and the one bridged with it.
    on_call(&srv, "2000").await;
    let id = queue(&srv, "2000", "calltransferblind", "0299998888").await;
    assert_eq!(next(&mut actions).await.get("Action").map(String::as_str), Some("CoreShowChannels"));
    assert_eq!(
        fields(&next(&mut actions).await, &["Action", "Channel", "Exten", "Context", "Priority"]),
        expect(&[
            ("Action", "Redirect"),
            ("Channel", "PJSIP/trunk-0000002b"),
            ("Exten", "0299998888"),
            ("Context", "from-internal"),
            ("Priority", "1")
        ])
    );
    assert_eq!(outcome(&srv, "2000", &id).await["state"], "done");
    let id = queue(&srv, "2000", "calltransferattended", "2005").await;
    assert_eq!(next(&mut actions).await.get("Action").map(String::as_str), Some("CoreShowChannels"));
    assert_eq!(
        fields(&next(&mut actions).await, &["Action", "Channel", "Exten", "Context"]),
        expect(&[("Action", "Atxfer"), ("Channel", "PJSIP/2000-0000002a"), ("Exten", "2005"), ("Context", "from-internal")])
    );
    assert_eq!(outcome(&srv, "2000", &id).await["state"], "done");

    // The supervisor's phone is called into ChanSpy on the handset's channel.
    for (field, options) in [("callmonitor", "qE"), ("callcoach", "qwE"), ("callbarge", "qBE")] {
        let id = queue(&srv, "2000", field, "2001").await;
        assert_eq!(
            fields(&next(&mut actions).await, &["Action", "Channel", "Application", "Data", "Async"]),
            expect(&[
                ("Action", "Originate"),
                ("Channel", "PJSIP/2001"),
                ("Application", "ChanSpy"),
                ("Data", &format!("PJSIP/2000,{options}")),
                ("Async", "true")
            ]),
            "{field}"
        );
        assert_eq!(outcome(&srv, "2000", &id).await["state"], "done", "{field}");
    }

    // The domain's dialplan context: shown, validated, and what the
    // actions dial in.
    assert_eq!(d["amicontext"], "from-internal", "the default: {d}");
    for bad in ["", "from internal", "ctx\r\nAction: Originate", &"a".repeat(80)] {
        let (s, v) = srv.put("/api/domain", json!({"amicontext": bad})).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad:?}: {v}");
        assert!(v["error"].as_str().unwrap().starts_with("amicontext: must be a dialplan context"), "{v}");
    }
    let (s, d) = srv.put("/api/domain", json!({"amicontext": "autoprov-calls_2"})).await;
    assert_eq!((s, d["amicontext"].as_str()), (StatusCode::OK, Some("autoprov-calls_2")), "{d}");
    assert_eq!(srv.get("/api/domain").await.1["amicontext"], "autoprov-calls_2");
    let (_, doc) = srv.get("/api/openapi.json").await;
    assert!(doc["components"]["schemas"]["DomainJson"]["properties"]["amicontext"].is_object(), "OpenAPI documents amicontext");
    let id = queue(&srv, "2000", "callcreate", "0409123456").await;
    assert_eq!(
        fields(&next(&mut actions).await, &["Action", "Channel", "Exten", "Context"]),
        expect(&[("Action", "Originate"), ("Channel", "PJSIP/2000"), ("Exten", "0409123456"), ("Context", "autoprov-calls_2")])
    );
    assert_eq!(outcome(&srv, "2000", &id).await["state"], "done");
    let id = queue(&srv, "2000", "calltransferblind", "0299998888").await;
    assert_eq!(next(&mut actions).await.get("Action").map(String::as_str), Some("CoreShowChannels"));
    assert_eq!(next(&mut actions).await.get("Context").map(String::as_str), Some("autoprov-calls_2"));
    assert_eq!(outcome(&srv, "2000", &id).await["state"], "done");

    // Asterisk's refusal is the action's error, in its words.
    fail.store(true, Ordering::SeqCst);
    let id = queue(&srv, "2000", "callcreate", "0409123456").await;
    next(&mut actions).await;
    let v = outcome(&srv, "2000", &id).await;
    assert_eq!((v["state"].as_str(), v["error"].as_str()), (Some("failed"), Some("AMI Originate: Originate failed")), "{v}");
    srv.stop().await;
}

/// A webhook receiver answering `status`: what it got.
async fn hook(status: Arc<AtomicU16>) -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<(axum::http::HeaderMap, Vec<u8>)>) {
    use axum::http::HeaderMap;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<(HeaderMap, Vec<u8>)>();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let (tx, status) = (tx.clone(), status.clone());
            async move {
                let _ = tx.send((headers, body.to_vec()));
                axum::http::StatusCode::from_u16(status.load(Ordering::SeqCst)).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, rx)
}

async fn call_actions_reach_a_signed_webhook() {
    use hmac::{Hmac, Mac};
    let status = Arc::new(AtomicU16::new(200));
    let (hook_addr, mut hooks) = hook(status.clone()).await;
    let srv = TestServer::start(Backend::Sqlite).await;
    let (s, d) = srv
        .put(
            "/api/domain",
            json!({"pushbackend": "webhook", "webhookurl": format!("http://{hook_addr}/hook"), "webhooksecret": "call-hook-secret"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{d}");
    handset(&srv, "2000", "snom").await;
    handset(&srv, "2001", "snom").await;
    for (field, key, target) in [("callcreate", "number", "+61409123456"), ("callbarge", "supervisor", "2001")] {
        let id = queue(&srv, "2000", field, target).await;
        let (headers, body) = tokio::time::timeout(Duration::from_secs(5), hooks.recv()).await.expect("a webhook call").unwrap();
        let event: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            event,
            json!({"type": "callcontrol", "action": field, "domain": "default", "extensionnumber": "2000", key: target, "actionid": id})
        );
        let timestamp = headers["x-autoprov-timestamp"].to_str().unwrap();
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"call-hook-secret").unwrap();
        mac.update(format!("{timestamp}.").as_bytes());
        mac.update(&body);
        assert_eq!(
            headers["x-autoprov-signature"].to_str().unwrap(),
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        );
        assert_eq!(outcome(&srv, "2000", &id).await["state"], "done");
    }
    // The platform refusing it: failed, without its status code.
    status.store(503, Ordering::SeqCst);
    let id = queue(&srv, "2000", "callcreate", "0409123456").await;
    let v = outcome(&srv, "2000", &id).await;
    assert_eq!(v["state"], "failed");
    assert!(v["error"].as_str().unwrap().contains("not taken"), "{v}");
    srv.stop().await;
}

/// One request a phone's HTTP server got.
struct PhoneRequest {
    /// `METHOD /path?query`
    line: String,
    authorization: String,
    /// The address it came from.
    peer: std::net::IpAddr,
}

/// A phone's HTTP server on `ip`:80: each request it got.
async fn phone_http(ip: &str) -> tokio::sync::mpsc::UnboundedReceiver<PhoneRequest> {
    use axum::extract::ConnectInfo;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let app = axum::Router::new().fallback(move |ConnectInfo(peer): ConnectInfo<SocketAddr>, req: axum::extract::Request| {
        let tx = tx.clone();
        async move {
            let authorization = req.headers().get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
            let _ = tx.send(PhoneRequest { line: format!("{} {}", req.method(), req.uri()), authorization, peer: peer.ip() });
            "OK"
        }
    });
    let listener = tokio::net::TcpListener::bind((ip, 80)).await.expect("port 80 on a loopback address (tests run as root)");
    tokio::spawn(async move { axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await });
    rx
}

/// `key = value` lines of a Yealink-style file.
fn cfg_lines(body: &str) -> HashMap<String, String> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(" = "))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// The handset's device credentials as an admin reads them in Handset
/// Select: its MAC (lower case) and `devicepassword`.
async fn device_credentials(srv: &TestServer, ext: &str) -> (String, String) {
    let (s, h) = srv.get(&format!("/api/handset/{ext}")).await;
    assert_eq!(s, StatusCode::OK, "{h}");
    (h["mac"].as_str().unwrap().to_string(), h["devicepassword"].as_str().unwrap().to_string())
}

/// A `remote_*` fixture value with its placeholders filled in.
fn remote_value(pattern: &str, user: &str, password: &str, server: &str) -> String {
    pattern.replace("{user}", user).replace("{password}", password).replace("{server}", server)
}

async fn device_basic_auth(srv: &TestServer, ext: &str) -> String {
    use base64::Engine;
    let (user, password) = device_credentials(srv, ext).await;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

async fn direct_call_control_asks_the_phones_own_api() {
    let srv = TestServer::start(Backend::Sqlite).await;
    for (ext, family, ip, number, request) in [
        ("2000", "yealink", "127.77.0.1", "+61409123456", "GET /servlet?key=number=%2B61409123456"),
        ("2100", "snom", "127.77.0.2", "*97#1", "GET /command.htm?number=%2A97%231"),
    ] {
        let mut phone = phone_http(ip).await;
        handset(&srv, ext, family).await;
        let (s, v) = srv
            .put(&format!("/api/handsetstatus/{ext}"), json!({"registrationaddress": format!("{ip}:5060"), "state": "Idle"}))
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let id = queue(&srv, ext, "callcreate", number).await;
        let got = tokio::time::timeout(Duration::from_secs(5), phone.recv()).await.expect("the phone's request").unwrap();
        assert_eq!(got.line, request, "{family}");
        assert_eq!(got.authorization, device_basic_auth(&srv, ext).await, "{family}: the device credentials");
        assert_eq!(outcome(&srv, ext, &id).await["state"], "done", "{family}");
        // What the family's file gives its remote-control API
        // (tests/fixtures/vendor-keys.tsv remote_*): the login the request
        // carries, and the address it came from allowed.
        let rows: Vec<_> =
            crate::fixtures::vendor_keys().into_iter().filter(|k| k.family == family && k.what.starts_with("remote_")).collect();
        if family == "yealink" {
            assert_eq!(rows.len(), 5, "yealink's remote_* rows");
            let (user, password) = device_credentials(&srv, ext).await;
            let (s, _, body) = crate::provisioning::http_get(&srv, &format!("{user}.cfg"), None).await;
            assert_eq!(s, StatusCode::OK, "{body}");
            let cfg = cfg_lines(&body);
            for row in &rows {
                let want = remote_value(&row.value, &user, &password, &got.peer.to_string());
                assert_eq!(cfg.get(&row.key), Some(&want), "{family}: {} ({})\n{body}", row.key, row.what);
            }
            use base64::Engine;
            let remote = |what: &str| rows.iter().find(|r| r.what == what).map(|r| cfg[&r.key].clone()).unwrap();
            let login = format!("{}:{}", remote("remote_user"), remote("remote_password").split_once(':').unwrap().1);
            assert_eq!(
                got.authorization,
                format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(login)),
                "the request logs in as the admin the file names"
            );
        }
        if family == "snom" {
            // Its template makes those credentials the phone's web login,
            // which command.htm then requires.
            let store = &srv.running().store;
            let domain = store.domain_by_name("default").await.unwrap().unwrap();
            let h = store.handset(domain.id, ext).await.unwrap().unwrap().handset;
            let mac = h.mac.unwrap();
            let (s, _, body) = crate::provisioning::http_get(&srv, &format!("{}.xml", mac.lower().to_uppercase()), None).await;
            assert_eq!(s, StatusCode::OK, "{body}");
            assert!(body.contains(&format!("<http_user perm=\"R\">{}</http_user>", mac.lower())), "{body}");
            assert!(body.contains(&format!("<http_pass perm=\"R\">{}</http_pass>", h.device_password.expose())), "{body}");
        }
        // A transfer to a number is not in the API, a supervisor never is.
        on_call(&srv, ext).await;
        let (s, v) = srv.put(&format!("/api/handset/{ext}"), json!({"calltransferblind": "0409123456"})).await;
        assert_eq!(s, StatusCode::NOT_IMPLEMENTED, "{v}");
        assert!(v["error"].as_str().unwrap().contains("cannot name the number"), "{v}");
        let (s, v) = srv.put(&format!("/api/handset/{ext}"), json!({"callmonitor": "2000"})).await;
        assert_eq!(s, StatusCode::NOT_IMPLEMENTED, "{v}");
        assert!(v["error"].as_str().unwrap().contains("callmonitor needs the platform"), "{v}");
    }
    // A family without a remote-control API.
    handset(&srv, "2200", "cisco").await;
    srv.put("/api/handsetstatus/2200", json!({"registrationaddress": "127.77.0.3:5060"})).await;
    let (s, v) = srv.put("/api/handset/2200", json!({"callcreate": "0409123456"})).await;
    assert_eq!(s, StatusCode::NOT_IMPLEMENTED, "{v}");
    assert!(v["error"].as_str().unwrap().contains("no remote-control API"), "{v}");
    // Through the registrar: not supported, and said why.
    let (s, d) = srv.put("/api/domain", json!({"pushbackend": "registrar", "sipserver": "sip.example.com"})).await;
    assert_eq!(s, StatusCode::OK, "{d}");
    let (s, v) = srv.put("/api/handset/2000", json!({"callcreate": "0409123456"})).await;
    assert_eq!(s, StatusCode::NOT_IMPLEMENTED, "{v}");
    assert!(v["error"].as_str().unwrap().contains("registrar relay is not supported"), "{v}");
    srv.stop().await;
}

/// A Polycom's push server on `ip`:80 (Web Application Developer's Guide,
/// Push Requests): a request without credentials is challenged with
/// `401 WWW-Authenticate: Digest` (MD5, qop=auth, the nonce given), one
/// with credentials is checked against `login` (recomputing the MD5 answer)
/// and answered 200 or 401; each request it got, with its Authorization,
/// Content-Type and body.
async fn polycom_push_server(
    ip: &str,
    nonce: &'static str,
    login: Arc<std::sync::Mutex<(String, String)>>,
) -> UnboundedReceiver<PushRequest> {
    use axum::http::{header, HeaderMap, StatusCode as S};
    use axum::response::IntoResponse;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let app = axum::Router::new().fallback(
        move |method: axum::http::Method, uri: axum::http::Uri, headers: HeaderMap, body: String| {
            let (tx, login) = (tx.clone(), login.clone());
            async move {
                let get = |h: header::HeaderName| headers.get(h).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
                let authorization = get(header::AUTHORIZATION);
                let _ = tx.send((format!("{method} {uri}"), authorization.clone(), get(header::CONTENT_TYPE), body));
                let (user, password) = login.lock().unwrap().clone();
                let good = !authorization.is_empty() && {
                    let p = digest_params(&authorization);
                    p.get("username") == Some(&user)
                        && p.get("nonce").map(String::as_str) == Some(nonce)
                        && p.get("response") == Some(&digest_md5(&user, &password, method.as_str(), &uri.to_string(), nonce, &p))
                };
                if good {
                    (S::OK, "").into_response()
                } else {
                    let challenge = format!("Digest realm=\"PolycomSPIP\", nonce=\"{nonce}\", qop=\"auth\", algorithm=MD5");
                    (S::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, challenge)]).into_response()
                }
            }
        },
    );
    let listener = tokio::net::TcpListener::bind((ip, 80)).await.expect("port 80 on a loopback address (tests run as root)");
    tokio::spawn(async move { axum::serve(listener, app).await });
    rx
}

/// RFC 7616's MD5 answer with qop=auth, recomputed here: the `response`
/// a client knowing `user`/`password` sends with the other parameters `p`.
fn digest_md5(user: &str, password: &str, method: &str, uri: &str, nonce: &str, p: &HashMap<String, String>) -> String {
    use md5::{Digest, Md5};
    let md5 = |s: String| hex::encode(Md5::digest(s.as_bytes()));
    let ha1 = md5(format!("{user}:PolycomSPIP:{password}"));
    let ha2 = md5(format!("{method}:{uri}"));
    let field = |k: &str| p.get(k).cloned().unwrap_or_default();
    md5(format!("{ha1}:{nonce}:{}:{}:{}:{ha2}", field("nc"), field("cnonce"), field("qop")))
}

type PushRequest = (String, String, String, String);

async fn push_request(phone: &mut UnboundedReceiver<PushRequest>) -> PushRequest {
    tokio::time::timeout(Duration::from_secs(5), phone.recv()).await.expect("a push request").unwrap()
}

/// The parameters of a `Digest …` Authorization.
fn digest_params(value: &str) -> HashMap<String, String> {
    let rest = value.strip_prefix("Digest ").expect("a Digest answer");
    rest.split(", ")
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().trim_matches('"').to_string()))
        .collect()
}

async fn direct_call_control_pushes_to_a_polycom_with_digest() {
    let srv = TestServer::start(Backend::Sqlite).await;
    let (ext, ip, nonce) = ("2300", "127.77.0.4", "bm9uY2UtcG9seWNvbS0x");
    let login = Arc::new(std::sync::Mutex::new((String::new(), String::new())));
    let mut phone = polycom_push_server(ip, nonce, login.clone()).await;
    handset(&srv, ext, "polycom").await;
    let (s, v) = srv.put(&format!("/api/handsetstatus/{ext}"), json!({"registrationaddress": format!("{ip}:5060")})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (user, password) = device_credentials(&srv, ext).await;
    *login.lock().unwrap() = (user.clone(), password.clone());

    // The phone is given the credentials the push server asks for.
    let rows: Vec<_> =
        crate::fixtures::vendor_keys().into_iter().filter(|k| k.family == "polycom" && k.what.starts_with("remote_")).collect();
    assert_eq!(rows.len(), 3, "polycom's remote_* rows");
    let (s, _, file) = crate::provisioning::http_get(&srv, &format!("{user}-autoprov.cfg"), None).await;
    assert_eq!(s, StatusCode::OK, "{file}");
    for row in &rows {
        let want = format!("{}=\"{}\"", row.key, remote_value(&row.value, &user, &password, ""));
        assert!(file.contains(&want), "{want} in\n{file}");
    }

    let id = queue(&srv, ext, "callcreate", "+61409123456").await;
    let push_xml = "<PolycomIPPhone><Data priority=\"Critical\">tel:\\\\+61409123456</Data></PolycomIPPhone>";
    // First without credentials: challenged.
    let (line, authorization, content_type, body) = push_request(&mut phone).await;
    assert_eq!((line.as_str(), authorization.as_str()), ("POST /push", ""));
    // Then with the digest answer, which the phone's side recomputes.
    let (line, authorization, content_type2, body2) = push_request(&mut phone).await;
    assert_eq!(line, "POST /push");
    for (ct, b) in [(&content_type, &body), (&content_type2, &body2)] {
        assert_eq!(ct, "application/x-com-polycom-spipx");
        assert_eq!(b, push_xml);
    }
    let p = digest_params(&authorization);
    assert_eq!(
        (
            p["username"].as_str(),
            p["realm"].as_str(),
            p["nonce"].as_str(),
            p["uri"].as_str(),
            p["qop"].as_str(),
            p["nc"].as_str()
        ),
        (user.as_str(), "PolycomSPIP", nonce, "/push", "auth", "00000001"),
        "{authorization}"
    );
    assert_eq!(p["response"], digest_md5(&user, &password, "POST", "/push", nonce, &p), "the digest of the device credentials");
    assert_eq!(outcome(&srv, ext, &id).await["state"], "done");

    // A phone that does not take the answer (other credentials): failed,
    // after one answer, not a loop.
    login.lock().unwrap().1 = "not-the-device-password".into();
    let id = queue(&srv, ext, "callcreate", "0409123456").await;
    assert_eq!(push_request(&mut phone).await.1, "", "challenged first");
    assert!(push_request(&mut phone).await.1.starts_with("Digest "));
    let v = outcome(&srv, ext, &id).await;
    assert_eq!((v["state"].as_str(), v["error"].as_str()), (Some("failed"), Some("the phone answered HTTP 401")), "{v}");
    assert!(tokio::time::timeout(Duration::from_millis(300), phone.recv()).await.is_err(), "no third request");

    // Transfers and supervision are not in the Push API.
    on_call(&srv, ext).await;
    let (s, v) = srv.put(&format!("/api/handset/{ext}"), json!({"calltransferblind": "0409123456"})).await;
    assert_eq!(s, StatusCode::NOT_IMPLEMENTED, "{v}");
    assert!(v["error"].as_str().unwrap().contains("cannot name the number"), "{v}");
    srv.stop().await;
}

async fn call_control_refusals() {
    let srv = TestServer::start(Backend::Sqlite).await;
    let (hook_addr, _hooks) = hook(Arc::new(AtomicU16::new(200))).await;
    srv.put(
        "/api/domain",
        json!({"pushbackend": "webhook", "webhookurl": format!("http://{hook_addr}/hook"), "webhooksecret": "s3cret"}),
    )
    .await;
    handset(&srv, "2000", "yealink").await;
    // Not a dial string.
    for bad in ["04a9", "", &"1".repeat(40), "0409\r\nAction: Originate"] {
        let (s, v) = srv.put("/api/handset/2000", json!({ "callcreate": bad })).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad:?}: {v}");
        assert!(v["error"].as_str().unwrap().starts_with("callcreate: must be a dial string"), "{v}");
    }
    let (s, _) = srv.put("/api/handset/2000", json!({ "callcreate": 409123456 })).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "a number, not a string");
    // Supervisors: of another domain, or nobody, look the same.
    srv.add_user("boss@other", "boss-password-123", "admin", false).await;
    let (s, v) = srv
        .call(Method::POST, "/api/handset", ("boss@other", "boss-password-123"), Some(json!({"extensionnumber": "2999"})))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, elsewhere) = srv.put("/api/handset/2000", json!({"callmonitor": "2999"})).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, nowhere) = srv.put("/api/handset/2000", json!({"callmonitor": "2998"})).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(elsewhere, nowhere, "no hint that 2999 exists elsewhere");
    let (s, _) = srv.put("/api/handset/4242", json!({"callcreate": "0409123456"})).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "an unknown handset");
    // No call to transfer.
    for field in ["calltransferblind", "calltransferattended"] {
        let (s, v) = srv.put("/api/handset/2000", json!({ field: "0409123456" })).await;
        assert_eq!(s, StatusCode::CONFLICT, "{v}");
        assert!(v["error"].as_str().unwrap().contains("no call to transfer"), "{v}");
    }
    // One action at a time, and nothing else with it.
    for body in [json!({"callcreate": "1", "callbarge": "2000"}), json!({"callcreate": "1", "name": "x"})] {
        let (s, v) = srv.put("/api/handset/2000", body).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        assert!(v["error"].as_str().unwrap().contains("must be the only field"), "{v}");
    }
    // Read-only users read, but do not act.
    srv.add_user("reader@default", "reader-password-1", "readonly", false).await;
    let (s, _) = srv
        .call(
            Method::PUT,
            "/api/handset/2000",
            ("reader@default", "reader-password-1"),
            Some(json!({"callcreate": "0409123456"})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // An action of the domain is seen; another domain's, or none, is not.
    let id = queue(&srv, "2000", "callcreate", "0409123456").await;
    assert_eq!(outcome(&srv, "2000", &id).await["state"], "done");
    let (s, _) =
        srv.call(Method::GET, &format!("/api/handset/2000/action/{id}"), ("boss@other", "boss-password-123"), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = srv.get("/api/handset/2000/action/0123456789abcdef01234567").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // Audited: who, what, the number.
    let (_, audit) = srv.get("/api/audit").await;
    let row = audit.as_array().unwrap().iter().find(|r| r["action"] == "callcreate").expect("an audit row");
    assert_eq!(row["actor"], ADMIN.0);
    assert_eq!(row["extensionnumber"], "2000");
    assert!(row["fields"].as_str().unwrap().contains("target:0409123456"), "{row}");
    // Jingl's call pages belong to the platform.
    for (method, path) in [
        (Method::GET, "/api/call"),
        (Method::GET, "/api/call/1234"),
        (Method::POST, "/api/call"),
        (Method::GET, "/api/callrecording"),
        (Method::GET, "/api/callrecording/1234"),
    ] {
        let (s, v) = srv.call(method.clone(), path, ADMIN, if method == Method::POST { Some(json!({})) } else { None }).await;
        assert_eq!(s, StatusCode::NOT_IMPLEMENTED, "{method} {path}");
        assert!(
            v["error"].as_str().unwrap().contains("belong to the voice platform")
                && v["error"].as_str().unwrap().contains("README, Call control")
        );
    }
    // The OpenAPI document describes the 202, the action's GET and the 501s.
    let (_, doc) = srv.get("/api/openapi.json").await;
    let update = &doc["paths"]["/api/handset/{extensionnumber}"]["put"]["responses"];
    for code in ["202", "409", "429", "501"] {
        assert!(update[code].is_object(), "Handset Update documents {code}");
    }
    assert!(update["202"]["content"]["application/json"]["schema"]["$ref"].as_str().unwrap().ends_with("CallActionJson"));
    assert!(doc["paths"]["/api/handset/{extensionnumber}/action/{actionid}"]["get"]["responses"]["200"].is_object());
    assert!(doc["paths"]["/api/call"]["get"]["responses"]["501"].is_object());
    assert!(doc["components"]["schemas"]["CallActionJson"]["properties"]["state"].is_object());
    srv.stop().await;
}

async fn call_actions_are_limited_per_user() {
    let srv = TestServer::start(Backend::Sqlite).await;
    handset(&srv, "2000", "yealink").await;
    for _ in 0..30 {
        let (s, _) = srv.put("/api/handset/2000", json!({"callcreate": "04a9"})).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
    }
    let resp = srv
        .client
        .put(srv.url("/api/handset/2000"))
        .basic_auth(ADMIN.0, Some(ADMIN.1))
        .json(&json!({"callcreate": "0409123456"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = resp.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    // Another user has a limit of their own.
    srv.add_user("second@default", "second-password-1", "admin", false).await;
    let (s, _) = srv
        .call(Method::PUT, "/api/handset/2000", ("second@default", "second-password-1"), Some(json!({"callcreate": "04a9"})))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    srv.stop().await;
}
