//! Rendered files kept in memory (`provision::rendered`): a kept file is
//! never stale and never another phone's. Every change through the API is
//! seen on the very next fetch, over HTTP and TFTP; ETags and 304s follow
//! the bytes; a domain change reaches every phone of the domain; what the
//! request decides (the Host the phone used, the protocol) is never served
//! from another request's file.

use reqwest::StatusCode;
use serde_json::json;

use crate::both_backends;
use crate::harness::{plain_client, Backend, TestServer};
use crate::provisioning::{http_get, phone};

fn colons(mac: &str) -> String {
    mac.as_bytes().chunks(2).map(|c| std::str::from_utf8(c).unwrap()).collect::<Vec<_>>().join(":")
}

/// `ua` (a User-Agent naming `from`'s MAC) naming `to`'s instead.
fn ua_for(ua: &str, from: &str, to: &str) -> String {
    ua.replace(&colons(from), &colons(to))
        .replace(&colons(from).to_uppercase(), &colons(to).to_uppercase())
        .replace(from, to)
        .replace(&from.to_uppercase(), &to.to_uppercase())
}

/// Another MAC of the same maker as `mac`.
fn sibling(mac: &str, last: &str) -> String {
    format!("{}{last}", &mac[..10])
}

/// The value of an unlabelled sample on the monitoring listener.
async fn metric(srv: &TestServer, name: &str) -> f64 {
    let addr = srv.running().metrics_addr.expect("metrics listener");
    let text = plain_client().get(format!("http://{addr}/metrics")).send().await.unwrap().text().await.unwrap();
    let line = text.lines().find(|l| l.split(' ').next() == Some(name)).unwrap_or_else(|| panic!("no {name} in {text}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

async fn tftp_file(srv: &TestServer, file: &str) -> String {
    let path = srv.phone_path(file).await;
    let tftp = srv.running().tftp_addr.expect("the test server has TFTP");
    String::from_utf8(crate::tftp_client::get(tftp, &path[1..]).await.unwrap()).unwrap()
}

async fn a_change_is_served_on_the_next_fetch(b: Backend) {
    let srv = TestServer::start(b).await;
    let p = phone("yealink");
    srv.create_handset(
        json!({"extensionnumber": "4100", "name": "Desk One", "password": "First-pw-4100", "mac": p.mac, "model": p.model}),
    )
    .await;
    let (s, h1, first) = http_get(&srv, &p.file, Some(&p.ua)).await;
    assert_eq!(s, StatusCode::OK);
    assert!(first.contains("Desk One") && first.contains("First-pw-4100"), "{first}");
    let etag = h1["etag"].to_str().unwrap().to_string();
    // Again (kept): the same bytes, the same ETag, and a 304 for it.
    let (_, h2, again) = http_get(&srv, &p.file, Some(&p.ua)).await;
    assert_eq!((again.as_str(), h2["etag"].to_str().unwrap()), (first.as_str(), etag.as_str()));
    let url = srv.plain_url(&srv.phone_path(&p.file).await);
    let conditional = |tag: String| {
        let url = url.clone();
        let ua = p.ua.clone();
        async move { plain_client().get(&url).header("user-agent", ua).header("if-none-match", tag).send().await.unwrap() }
    };
    let resp = conditional(etag.clone()).await;
    assert_eq!((resp.status(), resp.headers()["etag"].to_str().unwrap()), (StatusCode::NOT_MODIFIED, etag.as_str()));
    let tftp_first = tftp_file(&srv, &p.file).await;
    assert!(tftp_first.contains("Desk One") && tftp_first.contains("First-pw-4100"));
    assert_eq!(tftp_file(&srv, &p.file).await, tftp_first, "TFTP again, as kept");

    // Each change through the API is on the very next fetch, both ways.
    for (change, expect, gone) in [
        (json!({"name": "Desk Two"}), "Desk Two", "Desk One"),
        (json!({"password": "Second-pw-4100"}), "Second-pw-4100", "First-pw-4100"),
    ] {
        let (s, _) = srv.put("/api/handset/4100", change).await;
        assert_eq!(s, StatusCode::OK);
        let (_, h, now) = http_get(&srv, &p.file, Some(&p.ua)).await;
        assert!(now.contains(expect) && !now.contains(gone), "HTTP after the change to {expect}: {now}");
        assert_ne!(h["etag"].to_str().unwrap(), etag);
        let resp = conditional(etag.clone()).await;
        assert_eq!(resp.status(), StatusCode::OK, "the old ETag no longer matches");
        let new_etag = h["etag"].to_str().unwrap().to_string();
        assert_eq!(conditional(new_etag).await.status(), StatusCode::NOT_MODIFIED, "the new one does");
        let by_tftp = tftp_file(&srv, &p.file).await;
        assert!(by_tftp.contains(expect) && !by_tftp.contains(gone), "TFTP after the change to {expect}");
    }
    // A handset that is gone has no file, kept or not.
    let (s, _) = srv.call(reqwest::Method::DELETE, "/api/handset/4100", crate::harness::ADMIN, None).await;
    assert!(s.is_success(), "{s}");
    let (s, _, body) = http_get(&srv, &p.file, Some(&p.ua)).await;
    assert_ne!(s, StatusCode::OK, "{body}");
    assert!(!body.contains("Second-pw-4100"));
    srv.stop().await;
}

async fn kept_bytes_are_counted_within_the_budget(b: Backend) {
    let srv = TestServer::start_with(b, |s| s.rendered_cache_mib = 1).await;
    assert_eq!(metric(&srv, "autoprov_rendered_cache_limit_bytes").await, 1024.0 * 1024.0);
    assert_eq!(metric(&srv, "autoprov_rendered_cache_bytes").await, 0.0);
    let p = phone("yealink");
    srv.create_handset(json!({"extensionnumber": "4500", "mac": p.mac, "model": p.model})).await;
    let (s, _, body) = http_get(&srv, &p.file, Some(&p.ua)).await;
    assert_eq!(s, StatusCode::OK);
    let kept = metric(&srv, "autoprov_rendered_cache_bytes").await;
    assert!(kept > body.len() as f64 && kept <= 1024.0 * 1024.0, "{kept} bytes kept for a {}-byte file", body.len());
    // A change drops the phone's file (and gives its bytes back) before
    // the next answer; the template's reference stays.
    let (s, _) = srv.put("/api/handset/4500", json!({"name": "Moved"})).await;
    assert_eq!(s, StatusCode::OK);
    let (_, _, moved) = http_get(&srv, &p.file, Some(&p.ua)).await;
    assert!(moved.contains("Moved"));
    let after = metric(&srv, "autoprov_rendered_cache_bytes").await;
    assert!(after > 0.0 && after < kept + 1024.0, "{after} after the change, {kept} before");
    srv.stop().await;
}

async fn two_phones_never_get_each_others_file(b: Backend) {
    let srv = TestServer::start(b).await;
    let p = phone("yealink");
    let macs = [sibling(&p.mac, "a1"), sibling(&p.mac, "b2")];
    for (i, mac) in macs.iter().enumerate() {
        let body = json!({"extensionnumber": format!("420{i}"), "name": format!("Twin {i}"), "password": format!("Twin-pw-{i}-x"),
            "mac": mac, "model": p.model});
        srv.create_handset(body).await;
    }
    let file = |mac: &str| p.file.replace(&p.mac, mac).replace(&p.mac.to_uppercase(), &mac.to_uppercase());
    // Alternately, many times: each is answered its own, kept or not.
    let mut etags = [None, None];
    for round in 0..4 {
        for (i, mac) in macs.iter().enumerate() {
            let (s, h, body) = http_get(&srv, &file(mac), Some(&ua_for(&p.ua, &p.mac, mac))).await;
            assert_eq!(s, StatusCode::OK, "{}", file(mac));
            let other = 1 - i;
            assert!(body.contains(&format!("Twin-pw-{i}-x")) && body.contains(&format!("Twin {i}")), "round {round}: {body}");
            assert!(
                !body.contains(&format!("Twin-pw-{other}-x")) && !body.contains(&format!("420{other}")),
                "round {round}: {body}"
            );
            let tag = h["etag"].to_str().unwrap().to_string();
            assert_eq!(etags[i].get_or_insert_with(|| tag.clone()), &tag, "stable while nothing changes");
        }
    }
    assert_ne!(etags[0], etags[1]);
    // One's ETag is no 304 for the other.
    let resp = plain_client()
        .get(srv.plain_url(&srv.phone_path(&file(&macs[1])).await))
        .header("user-agent", ua_for(&p.ua, &p.mac, &macs[1]))
        .header("if-none-match", etags[0].clone().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.text().await.unwrap().contains("Twin-pw-1-x"));
    // By TFTP too (no User-Agent: the model the handset names).
    for (i, mac) in macs.iter().enumerate() {
        for _ in 0..2 {
            let body = tftp_file(&srv, &file(mac)).await;
            assert!(body.contains(&format!("Twin-pw-{i}-x")) && !body.contains(&format!("Twin-pw-{}-x", 1 - i)));
        }
    }
    srv.stop().await;
}

async fn a_domain_change_reaches_every_kept_file(b: Backend) {
    let srv = TestServer::start(b).await;
    let p = phone("yealink");
    let (s, _) = srv.put("/api/domain", json!({"sipserver": "sip-one.example.net"})).await;
    assert_eq!(s, StatusCode::OK);
    let macs: Vec<String> = ["c1", "c2", "c3"].iter().map(|l| sibling(&p.mac, l)).collect();
    for (i, mac) in macs.iter().enumerate() {
        srv.create_handset(json!({"extensionnumber": format!("430{i}"), "mac": mac, "model": p.model})).await;
    }
    let file = |mac: &str| p.file.replace(&p.mac, mac).replace(&p.mac.to_uppercase(), &mac.to_uppercase());
    let mut before = Vec::new();
    for mac in &macs {
        let ua = ua_for(&p.ua, &p.mac, mac);
        let (_, h, body) = http_get(&srv, &file(mac), Some(&ua)).await;
        assert!(body.contains("sip-one.example.net"));
        let (_, _, again) = http_get(&srv, &file(mac), Some(&ua)).await;
        assert_eq!(again, body);
        assert!(tftp_file(&srv, &file(mac)).await.contains("sip-one.example.net"));
        before.push(h["etag"].to_str().unwrap().to_string());
    }
    let (s, _) = srv.put("/api/domain", json!({"sipserver": "sip-two.example.net"})).await;
    assert_eq!(s, StatusCode::OK);
    for (mac, old) in macs.iter().zip(&before) {
        let (_, h, body) = http_get(&srv, &file(mac), Some(&ua_for(&p.ua, &p.mac, mac))).await;
        assert!(body.contains("sip-two.example.net") && !body.contains("sip-one.example.net"), "{mac}: {body}");
        assert_ne!(h["etag"].to_str().unwrap(), old);
        let by_tftp = tftp_file(&srv, &file(mac)).await;
        assert!(by_tftp.contains("sip-two.example.net") && !by_tftp.contains("sip-one.example.net"), "{mac} by TFTP");
    }
    srv.stop().await;
}

async fn what_the_request_decides_is_never_another_requests(b: Backend) {
    let srv = TestServer::start(b).await;
    let p = phone("yealink");
    srv.create_handset(json!({"extensionnumber": "4400", "mac": p.mac, "model": p.model})).await;
    let path = srv.phone_path(&p.file).await;
    let port = srv.http().port();
    // The same phone by two names of this server, each twice: each file
    // sends the phone back where it came.
    for _ in 0..2 {
        for host in [format!("127.0.0.1:{port}"), format!("localhost:{port}")] {
            let resp =
                plain_client().get(srv.plain_url(&path)).header("host", &host).header("user-agent", &p.ua).send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            let body = resp.text().await.unwrap();
            assert!(body.contains(&format!("http://{host}/")), "{host}: {body}");
            let other = if host.starts_with("127.") { "localhost" } else { "127.0.0.1" };
            assert!(!body.contains(&format!("http://{other}:{port}/")), "{host}: {body}");
        }
    }
    // TFTP names a TFTP (or HTTPS) root, never the HTTP one kept above.
    let by_tftp = tftp_file(&srv, &p.file).await;
    assert!(!by_tftp.contains(&format!("http://127.0.0.1:{port}/")), "{by_tftp}");
    srv.stop().await;
}

both_backends!(
    a_change_is_served_on_the_next_fetch,
    two_phones_never_get_each_others_file,
    a_domain_change_reaches_every_kept_file,
    what_the_request_decides_is_never_another_requests,
    kept_bytes_are_counted_within_the_budget,
);
