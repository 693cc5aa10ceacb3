//! Who gets a config: a tenant's token in the URL, device credentials,
//! device certificates, and the scan guard, tried as a booting site and as
//! an attacker would.

use std::collections::HashSet;
use std::net::IpAddr;
use std::time::Duration;

use futures::StreamExt;
use md5::{Digest, Md5};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::both_backends;
use crate::fixtures;
use crate::formats::parse;
use crate::harness::{https_client_builder, Backend, TestServer, ADMIN};
use crate::provisioning::{http_get, http_get_bare, phone, phones};
use crate::tftp_client::{self, TftpError};
use autoprov::profiles::Profiles;

both_backends!(
    a_site_of_new_phones_boots_under_its_token,
    a_scanner_gets_nothing_and_is_banned,
    device_credentials_fetch_without_the_token,
    a_device_certificate_opens_only_its_own_files,
    answers_naming_another_tenants_mac_are_limited_and_audited,
    a_rotated_token_moves_the_phones,
);

const INSTALLER: (&str, &str) = ("installer@acme", "installer-password-1");
const SITE: &str = "127.0.0.42";

/// A plain-HTTP client whose requests come from `ip`.
fn http_from(ip: &str) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().no_proxy().local_address(ip.parse::<IpAddr>().unwrap()).build().unwrap()
}

/// `GET /api/domain` as `who`: the domain's provisioning token.
async fn token_of(srv: &TestServer, who: (&str, &str), domain: Option<&str>) -> String {
    let path = match domain {
        Some(d) => format!("/api/domain?domain={d}"),
        None => "/api/domain".into(),
    };
    let (s, d) = srv.call(Method::GET, &path, who, None).await;
    assert_eq!(s, StatusCode::OK, "{d}");
    d["provisioningtoken"].as_str().unwrap().to_string()
}

/// One phone of a site: a fixture row's model with its own MAC.
struct SitePhone {
    mac: String,
    user_agent: String,
    files: Vec<String>,
    ext: String,
}

/// 200 new phones of every served family, from the captured requests: each
/// asks for what its model asks for at boot.
fn site_phones(n: usize) -> Vec<SitePhone> {
    let profiles = autoprov::profiles::Profiles::built_in();
    let rows: Vec<fixtures::Row> = fixtures::requests()
        .into_iter()
        .filter(|r| profiles.family(&r.family).is_some() && r.protocol == "http" && !r.user_agent.is_empty())
        // A model that asks only for names we answer quietly (the GXP2000's
        // 1.2.x asks only for the binary cfg<mac>) is not one we provision.
        .filter(|r| !r.files.iter().all(|f| profiles.is_quiet(f)))
        .collect();
    (0..n)
        .map(|i| {
            let row = &rows[i % rows.len()];
            let mac = format!("{}{:06x}", &row.mac[..6], 0xa00000 + i);
            let (user_agent, files) = row.with_mac(&mac);
            SitePhone { mac, user_agent, files, ext: format!("desk-{i:03}") }
        })
        .collect()
}

/// A phone walks its boot sequence under `base` (`/p/<token>/`), as Polycom
/// phones do also fetching the files their master file lists. Returns each
/// file's status and body.
async fn boot(client: &reqwest::Client, srv: &TestServer, base: &str, phone: &SitePhone) -> Vec<(String, StatusCode, String)> {
    let mut files = phone.files.clone();
    let mut out = Vec::new();
    let mut i = 0;
    while i < files.len() {
        let file = files[i].clone();
        i += 1;
        let resp =
            client.get(srv.plain_url(&format!("{base}{file}"))).header("user-agent", &phone.user_agent).send().await.unwrap();
        let status = resp.status();
        let body = resp.text().await.unwrap();
        if let Some(listed) = body.split("CONFIG_FILES=\"").nth(1).and_then(|r| r.split('"').next()) {
            for f in listed.split(',').map(|f| f.trim().replace("[PHONE_MAC_ADDRESS]", &phone.mac)) {
                if !f.is_empty() && !files.contains(&f) {
                    files.push(f);
                }
            }
        }
        out.push((file, status, body));
    }
    out
}

async fn a_site_of_new_phones_boots_under_its_token(b: Backend) {
    let srv = TestServer::start_with(b, |s| s.push_hold = true).await;
    srv.add_user(INSTALLER.0, INSTALLER.1, "platform", false).await;
    let (s, _) = srv.call(Method::PUT, "/api/domain?domain=acme", ADMIN, Some(json!({"claimcreates": true}))).await;
    assert_eq!(s, StatusCode::OK);
    let base = format!("/p/{}/", token_of(&srv, INSTALLER, None).await);
    let phones = site_phones(200);
    // The whole site behind one address, booting twice.
    let site = http_from(SITE);
    for round in 0..2 {
        let results: Vec<_> =
            futures::stream::iter(&phones).map(|p| boot(&site, &srv, &base, p)).buffer_unordered(16).collect().await;
        for (file, status, _) in results.iter().flatten() {
            // A name with directories (a Gigaset N510's 42/2/master.bin) is
            // refused as malformed for every requester (provision::names).
            if file.contains('/') {
                assert_eq!(status, &StatusCode::BAD_REQUEST, "boot {round}: {file}");
                continue;
            }
            assert!(
                status == &StatusCode::OK || status == &StatusCode::NOT_FOUND,
                "boot {round}: {file}: {status} (a new phone under its token is never refused or challenged)"
            );
        }
    }
    // Not banned: a bare request from the site is challenged, not refused.
    let resp = site.get(srv.plain_url("/001565123456.cfg")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "the site's address is not banned");

    // Every phone is the tenant's unknown device, without site networks.
    let want: HashSet<&str> = phones.iter().map(|p| p.mac.as_str()).collect();
    let mut listed = HashSet::new();
    for _ in 0..100 {
        let (s, devices) = srv.call(Method::GET, "/api/device?state=unknown&maxresults=1000", INSTALLER, None).await;
        assert_eq!(s, StatusCode::OK);
        listed = devices.as_array().unwrap().iter().map(|d| d["mac"].as_str().unwrap().to_string()).collect::<HashSet<_>>();
        if want.iter().all(|m| listed.contains(*m)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let missing: Vec<_> = want.iter().filter(|m| !listed.contains(**m)).collect();
    assert!(missing.is_empty(), "not listed for the tenant: {missing:?}");
    let (_, theirs) = srv.call(Method::GET, "/api/device?state=unknown&maxresults=1000", ADMIN, None).await;
    let theirs: HashSet<&str> = theirs.as_array().unwrap().iter().map(|d| d["mac"].as_str().unwrap()).collect();
    assert!(want.is_subset(&theirs), "the superuser sees them too");
    srv.add_user("boss@bravo", "bravo-password-12", "admin", false).await;
    let (_, none) = srv.call(Method::GET, "/api/device?state=unknown", ("boss@bravo", "bravo-password-12"), None).await;
    assert_eq!(none, json!([]), "another tenant sees none of them");

    // The installer claims each; its next fetch gets its config.
    for p in &phones {
        let (s, v) = srv
            .call(Method::POST, &format!("/api/device/{}/claim", p.mac), INSTALLER, Some(json!({"extensionnumber": p.ext})))
            .await;
        assert_eq!(s, StatusCode::OK, "{}: {v}", p.mac);
    }
    let results: Vec<_> = futures::stream::iter(&phones).map(|p| boot(&site, &srv, &base, p)).buffered(16).collect().await;
    for (p, fetched) in phones.iter().zip(&results) {
        assert!(
            fetched.iter().any(|(_, s, body)| *s == StatusCode::OK && body.contains(&p.ext) && body.contains(&base)),
            "{} ({}) did not get its config: {:?}",
            p.mac,
            p.user_agent,
            fetched.iter().map(|(f, s, _)| (f, s)).collect::<Vec<_>>()
        );
    }
    srv.stop().await;
}

/// Two tenants with one phone of each family.
async fn two_tenants(srv: &TestServer) {
    srv.add_user("boss@acme", "acme-password-123", "admin", false).await;
    srv.add_user("boss@bravo", "bravo-password-12", "admin", false).await;
    for (i, p) in phones().iter().enumerate() {
        let h =
            json!({"extensionnumber": format!("5{i}"), "password": format!("Bravo-secret-{i}"), "mac": p.mac, "model": p.model});
        let (s, v) = srv.call(Method::POST, "/api/handset", ("boss@bravo", "bravo-password-12"), Some(h)).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
}

async fn a_scanner_gets_nothing_and_is_banned(b: Backend) {
    let srv = TestServer::start_with(b, |s| {
        s.scan_threshold = 5;
        s.push_hold = true;
    })
    .await;
    two_tenants(&srv).await;
    let acme = token_of(&srv, ("boss@acme", "acme-password-123"), None).await;
    // With tenant A's token and tenant B's MACs: nothing, and no ban (a
    // token is a proof of tenancy, and A's phones must keep booting).
    let scanner = http_from("127.0.0.51");
    for _ in 0..3 {
        for p in phones() {
            let resp =
                scanner.get(srv.plain_url(&format!("/p/{acme}/{}", p.file))).header("user-agent", &p.ua).send().await.unwrap();
            let status = resp.status();
            let body = resp.text().await.unwrap();
            assert_eq!(status, StatusCode::NOT_FOUND, "{}", &p.file);
            assert!(!body.contains("Bravo-secret"));
        }
    }
    // Without a token, over HTTP and HTTPS: challenged, then banned after
    // the configured number of distinct MACs.
    let https_scanner = https_client_builder(&srv.running().tls_cert_path, None)
        .local_address("127.0.0.52".parse::<IpAddr>().unwrap())
        .build()
        .unwrap();
    for (client, base) in [(&scanner, srv.plain_url("/")), (&https_scanner, srv.url("/"))] {
        for (i, p) in phones().iter().enumerate() {
            let resp = client.get(format!("{base}{}", p.file)).header("user-agent", &p.ua).send().await.unwrap();
            let status = resp.status();
            let body = resp.text().await.unwrap();
            assert!(!body.contains("Bravo-secret"), "{}", &p.file);
            let want = if i < 5 { StatusCode::UNAUTHORIZED } else { StatusCode::FORBIDDEN };
            assert_eq!(status, want, "{base}{} (distinct MAC {})", &p.file, i + 1);
        }
        let resp = client.get(format!("{base}y000000000066.cfg")).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "banned: not even common files");
    }
    // Over TFTP a source's misses count once it has acknowledged an answer
    // (its address is its own): fetch a common file, then probe. (With an
    // option, so our ACK of the OACK is read before the data comes back.)
    let tftp = srv.running().tftp_addr.unwrap();
    let tftp_scanner: IpAddr = "127.0.0.53".parse().unwrap();
    let rrq = tftp_client::rrq("000000000000.cfg", "octet", &[("blksize", "1024")]);
    let common = tftp_client::get_raw(tftp, tftp_scanner, &rrq, 1024, 1).await;
    assert!(common.is_ok(), "{common:?}");
    for (i, p) in phones().iter().enumerate() {
        let got = tftp_client::get_raw(tftp, tftp_scanner, &tftp_client::rrq(&p.file, "octet", &[]), 512, 1).await;
        match i {
            0..5 => assert!(matches!(got, Err(TftpError::Error(1, _))), "{}: {got:?}", &p.file),
            _ => assert_eq!(got.err(), Some(TftpError::Silent), "{}: banned", &p.file),
        }
    }
    // 21 forged datagrams (the "sender" never acknowledges anything) ban
    // nobody: the victim's own requests are still answered.
    let victim = tokio::net::UdpSocket::bind("127.0.0.54:0").await.unwrap();
    for i in 0..21 {
        victim.send_to(&tftp_client::rrq(&format!("001565ee{i:04x}.cfg"), "octet", &[]), tftp).await.unwrap();
    }
    // Every one was answered (the answers go where the forger cannot see).
    let mut buf = [0u8; 512];
    for _ in 0..21 {
        tokio::time::timeout(Duration::from_secs(5), victim.recv_from(&mut buf)).await.expect("an answer").unwrap();
    }
    let from_victim = http_from("127.0.0.54");
    let resp = from_victim.get(srv.plain_url(&format!("/{}", phone("yealink").file))).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "challenged, not banned");
    let resp = from_victim.get(srv.plain_url("/y000000000066.cfg")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    srv.stop().await;
}

/// Digest (RFC 7616, MD5, qop=auth) computed here, as a phone would.
fn digest_authorization(challenge: &str, user: &str, password: &str, uri: &str) -> String {
    let param = |name: &str| {
        let start = challenge.find(&format!("{name}=\"")).unwrap_or_else(|| panic!("no {name} in {challenge}")) + name.len() + 2;
        challenge[start..].split('"').next().unwrap().to_string()
    };
    let (realm, nonce) = (param("realm"), param("nonce"));
    let md5 = |s: String| hex::encode(Md5::digest(s.as_bytes()));
    let ha1 = md5(format!("{user}:{realm}:{password}"));
    let ha2 = md5(format!("GET:{uri}"));
    let response = md5(format!("{ha1}:{nonce}:00000001:c0ffee:auth:{ha2}"));
    format!(
        "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{response}\", \
         algorithm=MD5, qop=auth, nc=00000001, cnonce=\"c0ffee\""
    )
}

async fn device_credentials_fetch_without_the_token(b: Backend) {
    let srv = TestServer::start_with(b, |s| s.push_hold = true).await;
    for (i, p) in phones().iter().enumerate() {
        srv.create_handset(json!({"extensionnumber": format!("6{i}"), "mac": p.mac, "model": p.model})).await;
    }
    let profiles = Profiles::built_in();
    // Its first config (under the token) gives the phone its credentials.
    let yealink = phone("yealink");
    let ext = format!("6{}", phones().iter().position(|p| p.family == "yealink").unwrap());
    let another = phones().iter().find(|p| p.family != "yealink").unwrap();
    let (s, _, body) = http_get(&srv, &yealink.file, Some(&yealink.ua)).await;
    assert_eq!(s, StatusCode::OK);
    let entries = parse(profiles.family("yealink").unwrap(), &body).unwrap();
    let key = |k: &str| entries.iter().find(|(name, _)| name == k).map(|(_, v)| v.clone()).unwrap_or_else(|| panic!("no {k}"));
    // Yealink Auto Provisioning Guide: static.auto_provision.server.*
    let (user, password) = (key("static.auto_provision.server.username"), key("static.auto_provision.server.password"));
    assert_eq!(user, yealink.mac);
    let sip_password = key("account.1.password");
    assert!(password.len() >= 16 && password != sip_password, "its own password, not the SIP password");

    let client = crate::harness::plain_client();
    let bare = srv.plain_url(&format!("/{}", yealink.file));
    // HTTP Basic.
    let resp = client.get(&bare).header("user-agent", &yealink.ua).basic_auth(&user, Some(&password)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let over_basic = resp.text().await.unwrap();
    assert!(over_basic.contains(&sip_password));
    // HTTP Digest, answering our challenge.
    let resp = client.get(&bare).header("user-agent", &yealink.ua).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let challenges: Vec<String> =
        resp.headers().get_all("www-authenticate").iter().map(|v| v.to_str().unwrap().to_string()).collect();
    let digest = challenges.iter().find(|c| c.starts_with("Digest ")).expect("a Digest challenge");
    assert!(challenges.iter().any(|c| c.starts_with("Basic ")), "{challenges:?}");
    let uri = format!("/{}", yealink.file);
    let answer = digest_authorization(digest, &user, &password, &uri);
    let resp = client.get(&bare).header("user-agent", &yealink.ua).header("authorization", &answer).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.text().await.unwrap(), over_basic);
    // Wrong credentials, or another phone's file: 401, and counted.
    let resp = client.get(&bare).header("user-agent", &yealink.ua).basic_auth(&user, Some("guess")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let other = srv.plain_url(&format!("/{}", another.file));
    let resp = client.get(&other).header("user-agent", &another.ua).basic_auth(&user, Some(&password)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let stolen = digest_authorization(digest, &user, &password, &format!("/{}", another.file));
    let resp = client.get(&other).header("authorization", stolen).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    // A new phone on the handset: new credentials, the old ones open nothing.
    srv.put(&format!("/api/handset/{ext}"), json!({"mac": "001565aabbef"})).await;
    let moved = srv.plain_url("/001565aabbef.cfg");
    let resp = client.get(&moved).basic_auth("001565aabbef", Some(&password)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    srv.stop().await;
}

/// A CA standing in for a vendor's device-issuing CA, and a phone
/// certificate from it the way Cisco's MPP guide describes theirs: subject
/// `OU=<product>, L=<serial>, S=<mac>` ("Multiplatform Phone CA Client Root
/// Certificate", Cisco IP Phone 8800 MPP Administration Guide).
struct DeviceCa {
    ca: rcgen::Certificate,
    key: rcgen::KeyPair,
}

impl DeviceCa {
    fn new(name: &str) -> DeviceCa {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::DigitalSignature];
        DeviceCa { ca: params.self_signed(&key).unwrap(), key }
    }

    fn phone(&self, mac: &str) -> (rustls::pki_types::CertificateDer<'static>, rustls::pki_types::PrivateKeyDer<'static>) {
        self.issue(&[
            (rcgen::DnType::OrganizationalUnitName, "CP-8841-3PCC"),
            (rcgen::DnType::LocalityName, "FCH2233A1BC"),
            (rcgen::DnType::StateOrProvinceName, mac),
        ])
    }

    fn issue(
        &self,
        subject: &[(rcgen::DnType, &str)],
    ) -> (rustls::pki_types::CertificateDer<'static>, rustls::pki_types::PrivateKeyDer<'static>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        for (t, v) in subject {
            params.distinguished_name.push(t.clone(), *v);
        }
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.ca, &self.key).unwrap();
        (cert.der().clone(), rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap())
    }
}

/// An HTTPS client presenting `identity`.
fn https_with_cert(
    srv: &TestServer,
    identity: (rustls::pki_types::CertificateDer<'static>, rustls::pki_types::PrivateKeyDer<'static>),
) -> reqwest::Client {
    let roots = crate::harness::trusting(&srv.running().tls_cert_path);
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![identity.0], identity.1)
        .unwrap();
    reqwest::Client::builder().use_preconfigured_tls(tls).no_proxy().build().unwrap()
}

async fn a_device_certificate_opens_only_its_own_files(b: Backend) {
    let ca = DeviceCa::new("Test Multiplatform Phone Client Root");
    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("vendor-ca.pem");
    std::fs::write(&ca_path, ca.ca.pem()).unwrap();
    let srv = TestServer::start_with(b, |s| {
        s.client_ca = Some(ca_path.clone());
        s.push_hold = true;
    })
    .await;
    for (i, p) in phones().iter().enumerate() {
        srv.create_handset(
            json!({"extensionnumber": format!("7{i}"), "password": format!("Cert-secret-{i}"), "mac": p.mac, "model": p.model}),
        )
        .await;
    }
    let cisco = phone("cisco");
    let secret = format!("Cert-secret-{}", phones().iter().position(|p| p.family == "cisco").unwrap());
    let another = phones().iter().find(|p| p.family != "cisco").unwrap();
    let phone = https_with_cert(&srv, ca.phone(&cisco.mac));
    // Its own file, without a token: served.
    let resp = phone.get(srv.url(&format!("/{}", cisco.file))).header("user-agent", &cisco.ua).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.text().await.unwrap().contains(&secret));
    // Another phone's file on the same certificate: 403, with or without
    // the token.
    for path in [format!("/{}", another.file), srv.phone_path(&another.file).await] {
        let resp = phone.get(srv.url(&path)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{path}");
    }
    // A certificate from the CA that names no MAC earns nothing, nor
    // costs anything: the token still serves.
    let unnamed = https_with_cert(&srv, ca.issue(&[(rcgen::DnType::CommonName, "lab tool")]));
    let resp = unnamed.get(srv.url(&srv.phone_path(&cisco.file).await)).header("user-agent", &cisco.ua).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = unnamed.get(srv.url(&format!("/{}", cisco.file))).header("user-agent", &cisco.ua).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    // Under another tenant's token even its own certificate gets nothing.
    srv.add_user("boss@other", "other-password-12", "admin", false).await;
    let other = token_of(&srv, ("boss@other", "other-password-12"), None).await;
    let resp = phone.get(srv.url(&format!("/p/{other}/{}", cisco.file))).header("user-agent", &cisco.ua).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    // The API and the admin UI still take clients without a certificate.
    assert_eq!(srv.get("/api/domain").await.0, StatusCode::OK);
    // A certificate from another CA gets no connection at all.
    let stranger = https_with_cert(&srv, DeviceCa::new("Somebody else").phone(&cisco.mac));
    assert!(stranger.get(srv.url(&format!("/{}", cisco.file))).send().await.is_err());

    // requireclientcert: the token is no longer enough.
    let (s, d) = srv.put("/api/domain", json!({"requireclientcert": true})).await;
    assert_eq!((s, d["requireclientcert"].as_bool()), (StatusCode::OK, Some(true)));
    let (s, _, _) = http_get(&srv, &cisco.file, Some(&cisco.ua)).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let resp = phone.get(srv.url(&format!("/{}", cisco.file))).header("user-agent", &cisco.ua).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    srv.stop().await;
}

async fn answers_naming_another_tenants_mac_are_limited_and_audited(b: Backend) {
    let srv = TestServer::start_with(b, |s| s.push_hold = true).await;
    srv.add_user("boss@bravo", "bravo-password-12", "admin", false).await;
    let bravo = ("boss@bravo", "bravo-password-12");
    let bravo_macs: Vec<String> = (0..30).map(|i| format!("001565b0{i:04x}")).collect();
    let handsets: Vec<Value> =
        bravo_macs.iter().enumerate().map(|(i, m)| json!({"extensionnumber": format!("{i}"), "mac": m})).collect();
    let (s, _) = srv.call(Method::POST, "/api/handset", bravo, Some(Value::Array(handsets))).await;
    assert_eq!(s, StatusCode::CREATED);
    for user in ["prober", "csvprober", "careful"] {
        srv.add_user(&format!("{user}@acme"), "acme-password-123", "admin", false).await;
    }
    let prober = ("prober@acme", "acme-password-123");

    // Creates naming bravo's MACs: 409s, each counted; past 20, 429 for
    // anything naming a MAC, taken or not.
    for (i, mac) in bravo_macs.iter().take(20).enumerate() {
        let (s, v) =
            srv.call(Method::POST, "/api/handset", prober, Some(json!({"extensionnumber": format!("p{i}"), "mac": mac}))).await;
        assert_eq!(s, StatusCode::CONFLICT, "{v}");
    }
    for mac in [&bravo_macs[20], "001565fe0001"] {
        let (s, v) = srv.call(Method::POST, "/api/handset", prober, Some(json!({"extensionnumber": "p99", "mac": mac}))).await;
        assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{v}");
    }
    let (s, _) = srv.call(Method::PUT, "/api/handset/p99", prober, Some(json!({"mac": &bravo_macs[21]}))).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    // Without a MAC the user works as before.
    let (s, _) = srv.call(Method::POST, "/api/handset", prober, Some(json!({"extensionnumber": "p100"}))).await;
    assert_eq!(s, StatusCode::CREATED);
    let (_, audit) = srv.call(Method::GET, "/api/audit", prober, None).await;
    let conflicts = audit.as_array().unwrap().iter().filter(|a| a["action"] == "handset.macconflict").count();
    assert_eq!(conflicts, 21, "every answer naming a MAC of bravo is audited: {audit}");

    // A CSV probe of 262,144 rows naming 30 of bravo's MACs among made-up
    // ones: refused whole, naming none.
    let mut csv = String::from("extensionnumber,mac\n");
    for i in 0..262_144u32 {
        let mac =
            if (i as usize) < bravo_macs.len() { bravo_macs[i as usize].clone() } else { format!("0015{:08x}", 0x6600_0000 + i) };
        csv.push_str(&format!("{i},{mac}\n"));
    }
    let resp = csv_dry_run(&srv, "csvprober@acme", csv).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let body = resp.text().await.unwrap();
    assert!(!body.contains("001565b0") && !body.contains("errors"), "{body}");
    // A file naming a few: each such row listed, and counted.
    let few = format!("extensionnumber,mac\n1,{}\n2,{}\n3,001565fe0002\n", bravo_macs[0], bravo_macs[1]);
    let resp = csv_dry_run(&srv, "careful@acme", few).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let v: Value = resp.json().await.unwrap();
    let lines: Vec<i64> = v["errors"].as_array().unwrap().iter().map(|e| e["line"].as_i64().unwrap()).collect();
    assert_eq!(lines, [2, 3]);
    let (_, audit) = srv.call(Method::GET, "/api/audit", ("careful@acme", "acme-password-123"), None).await;
    assert!(audit.as_array().unwrap().iter().any(|a| a["action"] == "handset.import.macconflict" && a["fields"] == "mac,rows:2"));
    // Claims of another tenant's phone are a plain 404.
    let (s, _) = srv
        .call(
            Method::POST,
            &format!("/api/device/{}/claim", bravo_macs[5]),
            ("careful@acme", "acme-password-123"),
            Some(json!({"extensionnumber": "9"})),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    srv.stop().await;
}

/// `POST /api/handset/import?dryrun=true` as `login`.
async fn csv_dry_run(srv: &TestServer, login: &str, csv: String) -> reqwest::Response {
    let url = srv.url("/api/handset/import?dryrun=true");
    let req = srv.client.post(url).basic_auth(login, Some("acme-password-123")).header("content-type", "text/csv");
    req.body(csv).send().await.unwrap()
}

async fn a_rotated_token_moves_the_phones(b: Backend) {
    let srv = TestServer::start_with(b, |s| s.push_hold = true).await;
    srv.add_user("viewer@default", "viewer-password-1", "readonly", false).await;
    let p = phone("yealink");
    srv.create_handset(json!({"extensionnumber": "100", "mac": p.mac, "model": p.model})).await;
    let old = srv.token().await;
    let (s, d) = srv.post("/api/domain/provisioningtoken", json!({"gracehours": 1})).await;
    assert_eq!(s, StatusCode::OK, "{d}");
    let new = d["provisioningtoken"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    // Every phone of the domain is pushed its new URL.
    let (_, h) = srv.get("/api/handset/100").await;
    assert_eq!((h["revision"].as_i64(), h["provisioning"]["pushstate"].as_str()), (Some(2), Some("pending")), "{h}");
    // Within the grace both work, and the file names the new one.
    for token in [&old, &new] {
        let (s, _, body) = crate::provisioning::http_get_path(&srv, &format!("/p/{token}/{}", p.file), Some(&p.ua)).await;
        assert_eq!(s, StatusCode::OK);
        assert!(body.contains(&format!("/p/{new}/")) && !body.contains(&old), "{body}");
    }
    // A leaked token ends at once with a grace of 0.
    let (s, d) = srv.post("/api/domain/provisioningtoken", json!({"gracehours": 0})).await;
    assert_eq!(s, StatusCode::OK);
    let newest = d["provisioningtoken"].as_str().unwrap();
    for (token, want) in [(&old, StatusCode::NOT_FOUND), (&new, StatusCode::NOT_FOUND), (&newest.to_string(), StatusCode::OK)] {
        let (s, _, _) = crate::provisioning::http_get_path(&srv, &format!("/p/{token}/{}", p.file), Some(&p.ua)).await;
        assert_eq!(s, want, "{token}");
    }
    let (s, _) = srv.post("/api/domain/provisioningtoken", json!({"gracehours": 99999})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // Read-only users neither see nor rotate it.
    let viewer = ("viewer@default", "viewer-password-1");
    let (_, d) = srv.call(Method::GET, "/api/domain", viewer, None).await;
    assert_eq!(d["provisioningtoken"], "***");
    assert!(!d.to_string().contains(newest));
    let (s, _) = srv.call(Method::POST, "/api/domain/provisioningtoken", viewer, None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // requiretoken off: the bare URL works again.
    assert_eq!(http_get_bare(&srv, &p.file, Some(&p.ua)).await.0, StatusCode::UNAUTHORIZED);
    let (s, _) = srv.put("/api/domain", json!({"requiretoken": false})).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(http_get_bare(&srv, &p.file, Some(&p.ua)).await.0, StatusCode::OK);
    srv.stop().await;
}

/// With the operator's certificate (one phones can trust), phones that came
/// over HTTP or TFTP are told to come back over HTTPS; TFTP ones by the
/// certificate's name, as they came by address.
async fn phones_are_sent_up_to_https_with_an_operators_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["prov.example.test".to_string(), "localhost".to_string()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("fullchain.pem"), dir.path().join("privkey.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    for upgrade in [autoprov::config::HttpsUpgrade::Auto, autoprov::config::HttpsUpgrade::Off] {
        let srv = TestServer::start_with(Backend::Sqlite, |s| {
            s.tls_cert = Some(cert_path.clone());
            s.tls_key = Some(key_path.clone());
            s.https_upgrade = upgrade;
            s.push_hold = true;
        })
        .await;
        let p = phone("yealink");
        srv.create_handset(json!({"extensionnumber": "100", "mac": p.mac, "model": p.model})).await;
        let token = srv.token().await;
        let (s, _, body) = http_get(&srv, &p.file, Some(&p.ua)).await;
        assert_eq!(s, StatusCode::OK);
        let tftp = srv.running().tftp_addr.unwrap();
        let over_tftp = tftp_client::get(tftp, &format!("p/{token}/{}", p.file)).await.unwrap();
        let over_tftp = String::from_utf8(over_tftp).unwrap();
        let https = srv.https().port();
        if upgrade == autoprov::config::HttpsUpgrade::Auto {
            assert!(body.contains(&format!("server.url = https://127.0.0.1:{https}/p/{token}/")), "{body}");
            assert!(over_tftp.contains(&format!("server.url = https://prov.example.test:{https}/p/{token}/")), "{over_tftp}");
            let (_, d) = srv.get("/api/domain").await;
            assert_eq!(d["provisioningurl"], format!("https://localhost:{https}/p/{token}/"), "HTTPS is the URL to give");
        } else {
            assert!(body.contains(&format!("server.url = http://127.0.0.1:{}/p/{token}/", srv.http().port())), "{body}");
            assert!(over_tftp.contains(&format!("server.url = tftp://127.0.0.1:{}/p/{token}/", tftp.port())), "{over_tftp}");
        }
        srv.stop().await;
    }
}

crate::e2e!(phones_are_sent_up_to_https_with_an_operators_certificate,);
