//! In the field: an office of phones behind NAT, a real registrar
//! (Kamailio with `contrib/kamailio/kamailio.cfg`) and autoprov in a cloud,
//! in network namespaces (`tests/nat/testbed.sh`, `netns`). Every phone
//! walks its family's boot sequence from the office's one public address,
//! reads its SIP account out of what it was given, in its vendor's format,
//! registers to Kamailio with it (digest, checked against autoprov's own
//! database through the `kamailio_subscriber` view), and answers the
//! NOTIFYs that reach it by fetching its file again, as the phone would.
//!
//! Then one domain-wide change must reach every phone through the registrar
//! and be applied, and the same change pushed directly must not get through
//! the NAT (it drops what the phones did not ask for: a NOTIFY from
//! autoprov's own address has no pinhole).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use autoprov::profiles::{BootAnswer, BootSequence, Profile, Profiles};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::net::UdpSocket;
use tokio::runtime::Handle;
use tokio::sync::mpsc;

use crate::harness::{eventually, Backend, TestServer};
use crate::netns::{self, Testbed};
use crate::phone_config::{account_from, Account};
use crate::sip_phone::{Incoming, Phone};
use crate::vendor_truth::{mac_in, user_agent};

crate::both_backends!(an_office_behind_nat_is_provisioned_registered_and_pushed_through_the_registrar needs [NetNs, Kamailio]);

/// Phones of each family in the office.
const PER_FAMILY: usize = 6;
const KAMAILIO_SIP: &str = "203.0.113.2:5060";
const REGISTRAR_USER: (&str, &str) = ("kamailio@default", "kamailio-api-password-1");

/// What the office's phones tell the test.
#[derive(Debug)]
enum Event {
    Notified { phone: usize, at: Instant, event: String },
    Refetched { phone: usize, at: Instant, status: StatusCode },
}

/// One booted phone, as the office saw it.
struct Booted {
    account: Account,
    /// The status each file of its boot sequence got, in order.
    answers: Vec<(String, StatusCode, BootAnswer)>,
    registered: Result<u16, String>,
    /// The phone, still answering (and so keeping its NAT binding).
    phone: Arc<Phone>,
    registrar: SocketAddr,
}

/// A phone of the office: its handset, its boot sequence, and what it sends.
#[derive(Clone)]
struct OfficePhone {
    index: usize,
    family: String,
    mac: String,
    extension: String,
    password: String,
    user_agent: String,
    files: Vec<(String, BootAnswer)>,
    /// The file it fetches again on a check-sync: its own (per-MAC) file.
    own_file: String,
}

async fn an_office_behind_nat_is_provisioned_registered_and_pushed_through_the_registrar(b: Backend) {
    let _bed = Testbed::up().await;
    // The test PostgreSQL lives on the host's loopback: reached from the
    // cloud through a forwarder (started before the cluster is needed there).
    let pg_port = (b == Backend::Postgres).then(|| {
        let url = crate::peers::postgres_url();
        url.rsplit_once(':').and_then(|(_, rest)| rest.split('/').next()?.parse::<u16>().ok()).expect("a port in the URL")
    });
    let cloud = netns::runtime_in(netns::cloud());
    let office = netns::runtime_in(netns::office());
    let (host, office_handle) = (Handle::current(), office.handle().clone());
    let outcome = cloud.spawn(in_the_cloud(b, pg_port, host, office_handle)).await;
    cloud.shutdown_background();
    office.shutdown_background();
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// The phones of every family, `PER_FAMILY` each, over the boot sequences
/// of their profile that get a phone its account.
fn office_phones() -> Vec<OfficePhone> {
    let profiles = Profiles::built_in();
    let mut phones = Vec::new();
    for profile in profiles.iter() {
        let sequences: Vec<&BootSequence> = profile.boot.iter().filter(|s| gets_its_account(s)).collect();
        assert!(!sequences.is_empty(), "{}: no boot sequence that gets a phone its account", profile.family);
        for n in 0..PER_FAMILY {
            phones.push(office_phone(phones.len(), profile, sequences[n % sequences.len()]));
        }
    }
    phones
}

fn gets_its_account(s: &BootSequence) -> bool {
    !s.model.is_empty() && s.files.iter().any(|f| f.answer == BootAnswer::Serve && f.file.to_lowercase().contains("{mac}"))
}

fn office_phone(index: usize, profile: &Profile, seq: &BootSequence) -> OfficePhone {
    let mac = mac_in(&profile.mac_ouis, 0xc0_0000 + index as u32);
    let name = |f: &str| f.replace("{MAC}", &mac.to_ascii_uppercase()).replace("{mac}", &mac);
    let files: Vec<(String, BootAnswer)> = seq.files.iter().map(|f| (name(&f.file), f.answer)).collect();
    let own_file = seq
        .files
        .iter()
        .rev()
        .find(|f| f.answer == BootAnswer::Serve && f.file.to_lowercase().contains("{mac}"))
        .map(|f| name(&f.file))
        .expect("a per-MAC file");
    OfficePhone {
        index,
        family: profile.family.clone(),
        extension: format!("{}", 4000 + index),
        password: format!("Office-{index}-{}", hex::encode(rand::random::<[u8; 6]>())),
        user_agent: user_agent(&seq.user_agent, &mac),
        mac,
        files,
        own_file,
    }
}

async fn in_the_cloud(b: Backend, pg_port: Option<u16>, host: Handle, office: Handle) {
    if let Some(port) = pg_port {
        netns::forward_host_port(port, host).await;
    }
    let sip: SocketAddr = format!("{}:5070", netns::AUTOPROV_IP).parse().unwrap();
    let srv = TestServer::start_with(b, |s| {
        crate::push::quick_push(s);
        let any = autoprov::config::Listen::On(SocketAddr::from(([0, 0, 0, 0], 0)));
        (s.http_listen, s.https_listen, s.tftp_listen) = (any, any, any);
        s.sip_listen = autoprov::config::Listen::On(sip);
    })
    .await;
    srv.add_user(REGISTRAR_USER.0, REGISTRAR_USER.1, "platform", true).await;
    // Handsets first, pushed directly (they have nowhere to go yet), then the
    // registrar relay for what follows.
    let (s, v) = srv.put("/api/domain", json!({"sipserver": netns::KAMAILIO_IP, "sipport": 5060})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let phones = office_phones();
    for p in &phones {
        srv.create_handset(json!({"extensionnumber": p.extension, "mac": p.mac, "password": p.password})).await;
    }
    let (s, v) = srv.put("/api/domain", json!({"pushbackend": "registrar"})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let _kamailio = start_kamailio(&srv).await;

    // The office boots.
    let https = srv.https().port();
    let token = srv.token().await;
    let cert = srv.running().tls_cert_path.clone();
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let started = Instant::now();
    let boots: Vec<_> = phones
        .iter()
        .cloned()
        .map(|p| {
            let (token, cert, events) = (token.clone(), cert.clone(), events_tx.clone());
            office.spawn(async move { boot(p, https, token, cert, events).await })
        })
        .collect();
    let mut booted = Vec::new();
    for (p, boot) in phones.iter().zip(boots) {
        booted.push((p, boot.await.unwrap_or_else(|e| panic!("phone {} ({}): {e}", p.index, p.family))));
    }
    let boot_time = started.elapsed();
    for (p, phone) in &booted {
        for (file, status, answer) in &phone.answers {
            let want = if *answer == BootAnswer::Serve { StatusCode::OK } else { StatusCode::NOT_FOUND };
            assert_eq!(*status, want, "{} {}: {file} (a ban would answer otherwise)", p.family, p.mac);
        }
        assert_eq!(
            (&phone.account.user, &phone.account.password, phone.account.host.as_str(), phone.account.port),
            (&p.extension, &p.password, netns::KAMAILIO_IP, 5060),
            "{} {}: the account its config gives",
            p.family,
            p.mac
        );
        assert_eq!(phone.registered, Ok(200), "{} {}: REGISTER with the provisioned credentials", p.family, p.mac);
    }
    let fetched =
        booted.iter().filter(|(_, b)| b.answers.iter().all(|(_, s, _)| s.is_success() || *s == StatusCode::NOT_FOUND)).count();
    eprintln!("{b:?} office: {}/{} phones fetched their configs and registered in {boot_time:?}", fetched, phones.len());

    // A phone with the wrong password is refused by Kamailio.
    let wrong = office
        .spawn({
            let p = phones[0].clone();
            async move {
                let socket = UdpSocket::bind((netns::OFFICE_PHONES_IP, 0)).await.unwrap();
                let (phone, _incoming) = Phone::new(socket);
                let account = Account {
                    user: p.extension.clone(),
                    auth_user: p.extension.clone(),
                    password: "not-the-password".into(),
                    host: netns::KAMAILIO_IP.into(),
                    port: 5060,
                };
                phone.register(KAMAILIO_SIP.parse().unwrap(), &account, &p.user_agent, 60).await
            }
        })
        .await
        .unwrap();
    assert!(matches!(wrong, Ok(401 | 403)), "a wrong password must be refused: {wrong:?}");

    // Kamailio told autoprov of every registration: each phone registered, at the office's address.
    let statuses = eventually("60 registered phones in Handset Status", Duration::from_secs(10), || async {
        let (_, list) = srv.get("/api/handsetstatus?maxresults=1000").await;
        let list = list.as_array().cloned().unwrap_or_default();
        (list.iter().filter(|s| s["registered"] == true).count() == phones.len()).then_some(list)
    })
    .await;
    for s in &statuses {
        let address = s["registrationaddress"].as_str().unwrap();
        assert!(address.starts_with(&format!("{}:", netns::OFFICE_PUBLIC_IP)), "{s}");
        assert_eq!(s["registrationtransport"], "udp", "{s}");
        let p = phones.iter().find(|p| s["extensionnumber"] == p.extension.as_str()).unwrap();
        assert_eq!(s["useragent"].as_str(), Some(p.user_agent.as_str()).filter(|u| !u.is_empty()).or(Some("")), "{s}");
    }
    while events.try_recv().is_ok() {}

    // One domain-wide change through the registrar: every phone is told and fetches again.
    let change = Instant::now();
    let (s, v) = srv.put("/api/domain", json!({"ntpserver": "ntp1.office.example"})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (notified, refetched) = collect(&mut events, phones.len(), Duration::from_secs(10)).await;
    let last_notify = notified.values().map(|at| at.duration_since(change)).max().unwrap_or_default();
    assert_eq!(notified.len(), phones.len(), "NOTIFYs through the registrar within 10 s: {notified:?}");
    let applied = eventually("every handset applied", Duration::from_secs(10), || async {
        let all = handsets(&srv).await;
        all.iter().all(|h| h["provisioning"]["pushstate"] == "applied").then_some(change.elapsed())
    })
    .await;
    assert_eq!(refetched.len(), phones.len());
    let last_refetch = refetched.values().map(|at| at.duration_since(change)).max().unwrap_or_default();
    eprintln!(
        "{b:?} registrar push: {}/{} NOTIFYs delivered through Kamailio, the last {last_notify:?} after the change; \
         the last phone fetched again at {last_refetch:?}; all applied (Handset Search) by {applied:?}",
        notified.len(),
        phones.len()
    );

    // The same change pushed directly: the NAT drops every NOTIFY.
    let (s, v) = srv.put("/api/domain", json!({"pushbackend": "direct"})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = srv.put("/api/domain", json!({"ntpserver": "ntp2.office.example"})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let failed = eventually("every direct push failed", Duration::from_secs(30), || async {
        let all = handsets(&srv).await;
        all.iter().all(|h| h["provisioning"]["pushstate"] == "failed").then_some(all)
    })
    .await;
    for h in &failed {
        let error = h["provisioning"]["lasterror"].as_str().unwrap();
        assert!(error.contains(netns::OFFICE_PUBLIC_IP) && error.contains("timeout"), "{error}");
    }
    let (direct_notified, _) = collect(&mut events, phones.len(), Duration::from_millis(500)).await;
    assert!(direct_notified.is_empty(), "a direct NOTIFY crossed the NAT: {direct_notified:?}");
    eprintln!("{b:?} direct push: 0/{} NOTIFYs crossed the NAT; all {} pushes failed (timeout)", phones.len(), failed.len());

    // A phone that un-registers: Kamailio says so, and it is unavailable.
    let (p, gone) = &booted[0];
    let (phone, registrar, account, ua) = (gone.phone.clone(), gone.registrar, gone.account.clone(), p.user_agent.clone());
    let unregistered = office.spawn(async move { phone.register(registrar, &account, &ua, 0).await }).await.unwrap();
    assert_eq!(unregistered, Ok(200));
    eventually("the un-registered phone unavailable", Duration::from_secs(10), || async {
        let (_, s) = srv.get(&format!("/api/handsetstatus/{}", p.extension)).await;
        (s["registered"] == false && s["state"] == "Unavailable" && s["registrationaddress"] == "").then_some(())
    })
    .await;

    srv.stop().await;
}

/// Every handset of the default domain, as Handset Search gives them.
async fn handsets(srv: &TestServer) -> Vec<Value> {
    let (s, list) = srv.get("/api/handset?maxresults=1000").await;
    assert_eq!(s, StatusCode::OK);
    list.as_array().cloned().unwrap_or_default()
}

/// The NOTIFYs (check-sync ones) and re-fetches of up to `n` phones, until
/// every phone has re-fetched or `within` has passed.
async fn collect(
    events: &mut mpsc::UnboundedReceiver<Event>,
    n: usize,
    within: Duration,
) -> (BTreeMap<usize, Instant>, BTreeMap<usize, Instant>) {
    let deadline = tokio::time::Instant::now() + within;
    let (mut notified, mut refetched) = (BTreeMap::new(), BTreeMap::new());
    while refetched.len() < n {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(Event::Notified { phone, at, event })) => {
                assert!(!event.is_empty(), "phone {phone}: a NOTIFY without an Event");
                notified.insert(phone, at);
            }
            Ok(Some(Event::Refetched { phone, at, status })) => {
                assert_eq!(status, StatusCode::OK, "phone {phone}: its file again");
                refetched.insert(phone, at);
            }
            _ => break,
        }
    }
    (notified, refetched)
}

/// One phone's life in the office: boot through its sequence, read its
/// account, register, then answer NOTIFYs by fetching its file again.
async fn boot(
    p: OfficePhone,
    https: u16,
    token: String,
    cert: std::path::PathBuf,
    events: mpsc::UnboundedSender<Event>,
) -> Booted {
    // The phone reaches the provisioning server at its public address; the
    // name is the one in the server's certificate.
    let client = crate::harness::https_client_builder(&cert, None)
        .resolve("localhost", SocketAddr::new(netns::AUTOPROV_IP.parse().unwrap(), https))
        .build()
        .unwrap();
    let client = Arc::new(client);
    let fetch = {
        let (client, token, ua) = (client.clone(), token.clone(), p.user_agent.clone());
        move |file: String| {
            let (client, token, ua) = (client.clone(), token.clone(), ua.clone());
            async move {
                let mut req = client.get(format!("https://localhost:{https}/p/{token}/{file}"));
                if !ua.is_empty() {
                    req = req.header("user-agent", ua);
                }
                let resp = req.send().await.unwrap_or_else(|e| panic!("{file}: {e}"));
                let status = resp.status();
                (status, resp.text().await.unwrap_or_default())
            }
        }
    };
    let mut answers = Vec::new();
    let mut bodies = Vec::new();
    for (file, answer) in &p.files {
        let (status, body) = fetch(file.clone()).await;
        if status.is_success() {
            bodies.push(body);
        }
        answers.push((file.clone(), status, *answer));
    }
    let account = account_from(&p.family, &bodies).unwrap_or_else(|e| panic!("{} {}: {e}", p.family, p.mac));
    let registrar = SocketAddr::new(account.host.parse().expect("the registrar's address"), account.port);
    let socket = UdpSocket::bind((netns::OFFICE_PHONES_IP, 0)).await.unwrap();
    let (phone, mut incoming) = Phone::new(socket);
    let phone = Arc::new(phone);
    let registered = phone.register(registrar, &account, &p.user_agent, 3600).await;
    // Answering goes on after the boot, for as long as the runtime runs.
    tokio::spawn(async move {
        while let Some(Incoming { method, event, .. }) = incoming.recv().await {
            if method != "NOTIFY" {
                continue;
            }
            let _ = events.send(Event::Notified { phone: p.index, at: Instant::now(), event });
            let (status, _) = fetch(p.own_file.clone()).await;
            let _ = events.send(Event::Refetched { phone: p.index, at: Instant::now(), status });
        }
    });
    Booted { account, answers, registered, phone, registrar }
}

/// A running Kamailio: its process group is stopped when this is dropped
/// (its workers are its children, and would outlive a killed main process).
struct Kamailio {
    child: std::process::Child,
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        let group = -(self.child.id() as i32);
        // SAFETY: signals to the process group this test started.
        unsafe { libc::kill(group, libc::SIGTERM) };
        for _ in 0..50 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        unsafe { libc::kill(group, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// Kamailio with the shipped configuration, unedited, on autoprov's own
/// database; it is ready when it answers an OPTIONS.
async fn start_kamailio(srv: &TestServer) -> Kamailio {
    let kamailio = crate::peers::kamailio().expect("kamailio");
    let cfg = concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/kamailio/kamailio.cfg");
    let dir = srv.dir.path().join("kamailio");
    std::fs::create_dir_all(&dir).unwrap();
    // autoprov's own database URL is in the form Kamailio takes too
    // (sqlite:///path, postgres://user@host:port/db).
    let db = &srv.settings.database_url;
    let log = std::fs::File::create(dir.join("kamailio.log")).unwrap();
    // Started from this thread, so in the cloud's namespace, in a process
    // group of its own.
    let mut command = std::process::Command::new(kamailio);
    command
        .args(["-f", cfg, "-DD", "-E", "-m", "64", "-M", "8", "-Y"])
        .arg(&dir)
        .args(["-A", &format!("LISTEN=udp:{KAMAILIO_SIP}")])
        .args(["-A", &format!("DBURL=\"{db}\"")])
        .args(["-A", &format!("AUTOPROV_API=\"https://{}:{}\"", netns::AUTOPROV_IP, srv.https().port())])
        .args(["-A", &format!("AUTOPROV_USER=\"{}\"", REGISTRAR_USER.0)])
        .args(["-A", &format!("AUTOPROV_PASSWORD=\"{}\"", REGISTRAR_USER.1)])
        .args(["-A", &format!("AUTOPROV_ADDR={}", netns::AUTOPROV_IP)])
        .args(["-A", "AUTOPROV_TLS_VERIFY=0"])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .process_group(0);
    if srv.backend == Backend::Postgres {
        command.args(["-A", "WITH_POSTGRES"]);
    }
    let mut kamailio = Kamailio { child: command.spawn().expect("kamailio starts") };
    let probe = UdpSocket::bind((netns::AUTOPROV_IP, 0)).await.unwrap();
    let options = |n: u32| {
        let local = probe.local_addr().unwrap();
        format!(
            "OPTIONS sip:{KAMAILIO_SIP} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKprobe{n};rport\r\nMax-Forwards: 70\r\n\
             From: <sip:probe@{local}>;tag=p{n}\r\nTo: <sip:{KAMAILIO_SIP}>\r\nCall-ID: probe{n}@{local}\r\nCSeq: {n} OPTIONS\r\n\
             Content-Length: 0\r\n\r\n"
        )
    };
    for n in 1..=100 {
        if let Ok(Some(status)) = kamailio.child.try_wait() {
            panic!("kamailio exited ({status}):\n{}", std::fs::read_to_string(dir.join("kamailio.log")).unwrap_or_default());
        }
        probe.send_to(options(n).as_bytes(), KAMAILIO_SIP).await.unwrap();
        let mut buf = [0u8; 4096];
        if let Ok(Ok((len, _))) = tokio::time::timeout(Duration::from_millis(100), probe.recv_from(&mut buf)).await {
            if buf[..len].starts_with(b"SIP/2.0 ") {
                return kamailio;
            }
        }
    }
    panic!("kamailio does not answer:\n{}", std::fs::read_to_string(dir.join("kamailio.log")).unwrap_or_default());
}
