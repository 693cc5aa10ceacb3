//! Three nodes on one PostgreSQL: three real `autoprov serve` processes on a
//! throw-away cluster this test owns (so it can stop and start it).
//!
//! - A change through one node's API reaches the other nodes' phone files
//!   within 1 s (PostgreSQL notices; the 500 ms feed poll is the fallback).
//! - A node SIGKILLed while pushing loses no push, and no phone gets two
//!   NOTIFYs for one change (counted by handset and Call-ID at the phone: a
//!   node that takes over a dead node's lease repeats the same request).
//! - A PostgreSQL stop is answered 503 within `db_timeout` (not a hang), and
//!   every node serves, pushes and converges again once it is back, without
//!   a restart.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::net::UdpSocket;

use crate::binary::{autoprov, serve, Served};
use crate::e2e;
use crate::harness::{eventually, https_client, plain_client, ADMIN};
use crate::peers::OwnedCluster;
use crate::provisioning::phone as a_phone;

e2e!(
    a_change_on_one_node_reaches_the_others_within_a_second needs [PgCluster],
    a_node_killed_mid_push_loses_no_push_and_sends_none_twice needs [PgCluster],
    a_postgres_restart_is_survived_by_every_node needs [PgCluster],
);

/// `db_timeout` as the nodes run with it (the default).
const DB_TIMEOUT: Duration = Duration::from_secs(2);

/// One `autoprov serve` process.
struct Node {
    name: &'static str,
    served: Served,
    https: SocketAddr,
    http: SocketAddr,
    sip: SocketAddr,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Node {
    fn start(name: &'static str, database_url: &str, env: &[(&str, &str)]) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = autoprov(dir.path());
        cmd.env("AUTOPROV_DATABASE_URL", database_url)
            .env("AUTOPROV_ADMIN_PASSWORD", ADMIN.1)
            .env("AUTOPROV_SIP_LISTEN", "127.0.0.1:0")
            .env("AUTOPROV_DB_TIMEOUT", format!("{}s", DB_TIMEOUT.as_secs()))
            .env("AUTOPROV_PUSH_LEASE", "3s");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let served = serve(&mut cmd);
        let cert = served
            .lines
            .iter()
            .find_map(|l| l.strip_prefix("TLS certificate "))
            .and_then(|l| l.split(" SHA-256").next())
            .unwrap_or_else(|| panic!("node {name} did not start: {:?}\n{}", served.lines, served.log()))
            .to_string();
        let client = https_client(std::path::Path::new(&cert), None);
        Node {
            name,
            https: served.addr("HTTPS listening on "),
            http: served.addr("HTTP  listening on "),
            sip: served.addr("SIP   pushes from "),
            served,
            client,
            _dir: dir,
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value, reqwest::header::HeaderMap) {
        let mut req = self
            .client
            .request(method, format!("https://localhost:{}{path}", self.https.port()))
            .basic_auth(ADMIN.0, Some(ADMIN.1))
            .timeout(Duration::from_secs(30));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap_or_else(|e| panic!("node {}: {path}: {e}", self.name));
        let (status, headers) = (resp.status(), resp.headers().clone());
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null), headers)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let (s, v, _) = self.call(Method::GET, path, None).await;
        (s, v)
    }

    async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let (s, v, _) = self.call(Method::PUT, path, Some(body)).await;
        (s, v)
    }

    /// A phone's file over plain HTTP: status and body.
    async fn fetch(&self, path: &str, user_agent: &str) -> (StatusCode, String) {
        let resp = plain_client()
            .get(format!("http://127.0.0.1:{}{path}", self.http.port()))
            .header("User-Agent", user_agent)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .unwrap_or_else(|e| panic!("node {}: {path}: {e}", self.name));
        (resp.status(), resp.text().await.unwrap_or_default())
    }

    fn kill(&mut self) {
        self.served.child.kill().unwrap();
        self.served.child.wait().unwrap();
    }
}

/// A cluster of our own, a database on it and three nodes (the first
/// bootstraps the database, so it starts alone).
async fn three_nodes(env: &[(&str, &str)]) -> (OwnedCluster, [Node; 3]) {
    let cluster = tokio::task::spawn_blocking(|| OwnedCluster::init().expect("a PostgreSQL cluster of our own")).await.unwrap();
    let url = cluster.database("autoprov_nodes").await;
    let envs: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let start = move |name: &'static str| {
        let (url, envs) = (url.clone(), envs.clone());
        tokio::task::spawn_blocking(move || {
            let env: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            Node::start(name, &url, &env)
        })
    };
    let a = start("A").await.unwrap();
    let (b, c) = (start("B"), start("C"));
    let (b, c) = (b.await.unwrap(), c.await.unwrap());
    (cluster, [a, b, c])
}

async fn token(node: &Node) -> String {
    let (s, d) = node.get("/api/domain").await;
    assert_eq!(s, StatusCode::OK, "{d}");
    d["provisioningtoken"].as_str().unwrap().to_string()
}

fn percentile(sorted: &[u128], p: f64) -> u128 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn a_change_on_one_node_reaches_the_others_within_a_second() {
    let (_cluster, [a, b, c]) = three_nodes(&[]).await;
    let phone = a_phone("yealink");
    let (s, v, _) = a
        .call(
            Method::POST,
            "/api/handset",
            Some(json!({"extensionnumber": "2000", "name": "Desk-start", "mac": phone.mac, "model": phone.model})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let path = format!("/p/{}/{}", token(&a).await, phone.file);
    // B and C have the phone cached: the change must drop their copies.
    for node in [&b, &c] {
        let (s, body) = node.fetch(&path, &phone.ua).await;
        assert_eq!(s, StatusCode::OK, "node {}: {body}", node.name);
        assert!(body.contains("Desk-start"), "node {}: {body}", node.name);
    }
    let mut latencies = Vec::new();
    for i in 0..20 {
        let name = format!("Desk-{i}-changed");
        let (s, v) = a.put("/api/handset/2000", json!({"name": name})).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        // Committed when the API answered: from here, the other nodes.
        let committed = Instant::now();
        for node in [&b, &c] {
            loop {
                let (s, body) = node.fetch(&path, &phone.ua).await;
                assert_eq!(s, StatusCode::OK);
                if body.contains(&name) {
                    break;
                }
                assert!(committed.elapsed() < Duration::from_secs(5), "node {} still serves the old file after 5 s", node.name);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            latencies.push(committed.elapsed().as_millis());
        }
    }
    latencies.sort_unstable();
    let (p50, max) = (percentile(&latencies, 0.5), *latencies.last().unwrap());
    eprintln!(
        "convergence over {} fetches after 20 changes: p50 {p50} ms, p90 {} ms, max {max} ms",
        latencies.len(),
        percentile(&latencies, 0.9)
    );
    // The goal is 1 s. The feed poll alone (500 ms) would also meet it, so
    // the median says that notices did the work: a poll at a random phase
    // has a median of about 250 ms, a notice a few milliseconds.
    assert!(max < 1000, "a node took {max} ms to serve the new file: {latencies:?}");
    assert!(p50 < 150, "median convergence {p50} ms: notices are not reaching the other nodes: {latencies:?}");
}

/// What the test's phones received: per extension, per Call-ID, how many
/// NOTIFYs and from which node (SIP source address).
#[derive(Default)]
struct Received {
    per_ext: HashMap<String, HashMap<String, u32>>,
    from: HashMap<SocketAddr, u32>,
    total: u32,
}

/// One UDP socket answering `200 OK` to every NOTIFY for all handsets
/// (their registration address) after `delay`, recording what came.
async fn answering_phone(delay: Duration) -> (SocketAddr, Arc<Mutex<Received>>) {
    let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let addr = socket.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Received::default()));
    let record = seen.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        loop {
            let Ok((n, from)) = socket.recv_from(&mut buf).await else { return };
            let req = crate::push::Received { text: String::from_utf8_lossy(&buf[..n]).into_owned(), from };
            if !req.request_line().starts_with("NOTIFY ") {
                continue;
            }
            let ext = req.request_line().split(['@', ':']).nth(1).unwrap_or_default().to_string();
            let call_id = req.header("Call-ID").unwrap_or_default();
            {
                let mut seen = record.lock().unwrap();
                *seen.per_ext.entry(ext).or_default().entry(call_id).or_default() += 1;
                *seen.from.entry(from).or_default() += 1;
                seen.total += 1;
            }
            let socket = socket.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = socket.send_to(req.response("200 OK", "").as_bytes(), from).await;
            });
        }
    });
    (addr, seen)
}

async fn a_node_killed_mid_push_loses_no_push_and_sends_none_twice() {
    const PHONES: usize = 200;
    // 40 NOTIFYs a second per node: a node holds its pushes for seconds.
    let (_cluster, [mut a, mut b, mut c]) = three_nodes(&[("AUTOPROV_PUSH_RATE", "40")]).await;
    // Phones that answer after 250 ms: a node always has NOTIFYs sent and
    // not yet answered, which a node taking over must repeat, not renew.
    let (phone_addr, seen) = answering_phone(Duration::from_millis(250)).await;
    let exts: Vec<String> = (0..PHONES).map(|i| format!("5{i:03}")).collect();
    let handsets: Vec<Value> = exts
        .iter()
        .enumerate()
        .map(|(i, ext)| json!({"extensionnumber": ext, "name": "Desk", "mac": format!("001565cd{i:04x}"), "model": "T46S"}))
        .collect();
    let (s, v, _) = a.call(Method::POST, "/api/handset", Some(Value::Array(handsets))).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    for ext in &exts {
        let (s, v) = a
            .put(&format!("/api/handsetstatus/{ext}"), json!({"state": "Idle", "registrationaddress": phone_addr.to_string()}))
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    // The creations' pushes had no target yet: wait until no push is
    // pending, so that every NOTIFY counted below is the domain change's.
    eventually("the creations' pushes end", Duration::from_secs(30), || async {
        let (s, v) = a.get(&format!("/api/handset?maxresults={PHONES}")).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v.as_array().unwrap().iter().all(|h| h["provisioning"]["pushstate"] != "pending").then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    *seen.lock().unwrap() = Received::default();

    // One domain-wide change: a push for every phone.
    let (s, v) = a.put("/api/domain", json!({"sipserver": "sip.example.net"})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // Kill whichever node is sending once half of the phones have their
    // NOTIFY (the first 40 go out at once, the pacer's burst).
    let deadline = Instant::now() + Duration::from_secs(30);
    let sender = loop {
        {
            let seen = seen.lock().unwrap();
            if seen.per_ext.len() >= PHONES / 2 {
                break *seen.from.iter().max_by_key(|(_, n)| **n).unwrap().0;
            }
        }
        assert!(Instant::now() < deadline, "no NOTIFYs: {} received", seen.lock().unwrap().total);
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let nodes = [&mut a, &mut b, &mut c];
    let victim = nodes.into_iter().find(|n| n.sip == sender).expect("the NOTIFYs come from a node");
    victim.kill();
    let killed = victim.name;
    let at_kill = seen.lock().unwrap().per_ext.len();
    eprintln!("killed node {killed} (SIP {sender}) after {at_kill} of {PHONES} phones had their NOTIFY");
    assert!(at_kill < PHONES, "the node finished before it was killed: no test");
    let survivors: Vec<&Node> = [&a, &b, &c].into_iter().filter(|n| n.name != killed).collect();
    {
        let (_, list) = survivors[0].get(&format!("/api/handset?maxresults={PHONES}")).await;
        let mut states: HashMap<String, u32> = HashMap::new();
        for h in list.as_array().unwrap() {
            *states.entry(h["provisioning"]["pushstate"].as_str().unwrap().to_string()).or_default() += 1;
        }
        eprintln!("push states right after the kill: {states:?}");
        // The dead node recorded what its phones answered; the rest waits
        // for its leases to run out.
        assert!(states.get("sent").is_some_and(|n| *n > 0), "{states:?}");
    }

    // Every phone gets its NOTIFY (the dead node's leases run out after
    // 3 s and the others take them over).
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.lock().unwrap().per_ext.len() < PHONES {
        assert!(Instant::now() < deadline, "only {} of {PHONES} phones got a NOTIFY", seen.lock().unwrap().per_ext.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Every push is recorded sent, as the API shows it on every live node.
    let deadline = Instant::now() + Duration::from_secs(30);
    for node in &survivors {
        loop {
            let (s, list) = node.get(&format!("/api/handset?maxresults={PHONES}")).await;
            assert_eq!(s, StatusCode::OK);
            let states: Vec<&str> =
                list.as_array().unwrap().iter().map(|h| h["provisioning"]["pushstate"].as_str().unwrap()).collect();
            assert_eq!(states.len(), PHONES);
            if states.iter().all(|s| *s == "sent") {
                break;
            }
            let odd: HashSet<&&str> = states.iter().filter(|s| **s != "sent").collect();
            assert!(Instant::now() < deadline, "node {}: push states other than sent remain: {odd:?}", node.name);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // Let late repeats arrive, then count.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen = seen.lock().unwrap();
    let twice: Vec<(&String, &HashMap<String, u32>)> = seen.per_ext.iter().filter(|(_, calls)| calls.len() != 1).collect();
    assert!(twice.is_empty(), "phones with more than one NOTIFY (distinct Call-IDs): {twice:?}");
    let repeats: u32 = seen.per_ext.values().flat_map(|c| c.values()).map(|n| n - 1).sum();
    let by_survivors: u32 = seen.from.iter().filter(|(a, _)| **a != sender).map(|(_, n)| n).sum();
    eprintln!(
        "{PHONES} phones, one NOTIFY each: {} datagrams, {repeats} repeats of a dead node's request (same Call-ID), {by_survivors} sent by the survivors",
        seen.total
    );
    assert!(by_survivors > 0, "the survivors sent nothing");
    assert!(repeats > 0, "the dead node had NOTIFYs unanswered when killed: the survivors must have repeated them");
}

async fn a_postgres_restart_is_survived_by_every_node() {
    let (cluster, nodes) = three_nodes(&[]).await;
    let (phone_addr, seen) = answering_phone(Duration::ZERO).await;
    let phone = a_phone("yealink");
    let (s, v, _) = nodes[0]
        .call(
            Method::POST,
            "/api/handset",
            Some(json!({"extensionnumber": "2000", "name": "Desk-before", "mac": phone.mac, "model": phone.model})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) =
        nodes[0].put("/api/handsetstatus/2000", json!({"state": "Idle", "registrationaddress": phone_addr.to_string()})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let tok = token(&nodes[0]).await;
    let path = format!("/p/{tok}/{}", phone.file);
    // Feed reads overlap by 5 s, and each drops again what changed in that
    // time: only a phone unchanged for longer stays cached.
    tokio::time::sleep(Duration::from_secs(6)).await;
    for node in &nodes {
        let (s, body) = node.fetch(&path, &phone.ua).await;
        assert_eq!(s, StatusCode::OK, "node {}: {body}", node.name);
    }

    let log_lines = |node: &Node, what: &str| node.served.log().lines().filter(|l| l.contains(what)).count();
    let gone = "database unavailable: backing off";

    // The outage: pg_ctl stop -m fast ends every session.
    tokio::task::block_in_place(|| cluster.stop()).expect("pg_ctl stop");
    let unknown_file = phone.file.replace(&phone.mac.to_lowercase(), "001565feedee");
    assert_ne!(unknown_file, phone.file, "the file name carries the MAC");
    let unknown_path = format!("/p/{tok}/{unknown_file}");
    for node in &nodes {
        for (method, what, body) in
            [(Method::GET, "/api/handset/2000", None), (Method::PUT, "/api/handset/2000", Some(json!({"name": "Desk-during"})))]
        {
            let started = Instant::now();
            let (s, v, headers) = node.call(method.clone(), what, body).await;
            let took = started.elapsed();
            eprintln!("node {}: {method} {what} during the outage: {s} after {} ms", node.name, took.as_millis());
            assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "node {}: {method} {what}: {v}", node.name);
            assert!(headers.contains_key("retry-after"), "node {}: no Retry-After", node.name);
            assert!(
                took < DB_TIMEOUT + Duration::from_millis(1500),
                "node {} took {took:?} to answer (db_timeout {DB_TIMEOUT:?})",
                node.name
            );
        }
        // A phone it never saw needs the database: 503 too.
        let started = Instant::now();
        let (s, _) = node.fetch(&unknown_path, &phone.ua).await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "node {}: an unknown phone's file during the outage", node.name);
        assert!(started.elapsed() < DB_TIMEOUT + Duration::from_millis(1500));
        // A phone it has in memory is still served.
        let (s, body) = node.fetch(&path, &phone.ua).await;
        assert_eq!(s, StatusCode::OK, "node {}: a cached phone during the outage: {body}", node.name);
        assert!(body.contains("Desk-before"));
    }
    // Long enough for every worker to have failed many times over.
    tokio::time::sleep(Duration::from_secs(4)).await;
    for node in &nodes {
        let said = log_lines(node, gone);
        eprintln!("node {}: {said} line(s) of {gone:?} in the outage", node.name);
        // One line per kind of work (feed reader, notice listener, push
        // leasing, lease renewal), not one per tick.
        assert!((1..=6).contains(&said), "node {}: {said} lines of {gone:?}:\n{}", node.name, node.served.log());
    }

    // PostgreSQL is back: every node serves again, without a restart.
    tokio::task::block_in_place(|| cluster.start()).expect("pg_ctl start");
    let back = Instant::now();
    for node in &nodes {
        eventually("the node serves again", Duration::from_secs(15), || async {
            let (s, _) = node.get("/api/handset/2000").await;
            (s == StatusCode::OK).then_some(())
        })
        .await;
        eprintln!("node {} answers again {} ms after PostgreSQL started", node.name, back.elapsed().as_millis());
    }
    // Pushes and feeds recover: a change on B reaches the phone as a
    // NOTIFY and A's and C's files (the first change right after the outage
    // may wait out a worker's backoff, at most 1 s; the next one must be as
    // quick as ever).
    for (round, within) in [(1, Duration::from_secs(3)), (2, Duration::from_secs(1))] {
        let notifies = seen.lock().unwrap().total;
        let name = format!("Desk-after-{round}");
        let (s, v) = nodes[1].put("/api/handset/2000", json!({"name": name})).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let committed = Instant::now();
        for node in [&nodes[0], &nodes[2]] {
            loop {
                let (s, body) = node.fetch(&path, &phone.ua).await;
                if s == StatusCode::OK && body.contains(&name) {
                    break;
                }
                assert!(committed.elapsed() < within, "node {} serves the old file {within:?} after change {round}", node.name);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        eprintln!("change {round} after the outage converged in {} ms", committed.elapsed().as_millis());
        eventually("the phone gets the change's NOTIFY", Duration::from_secs(10), || async {
            (seen.lock().unwrap().total > notifies).then_some(())
        })
        .await;
    }
    for node in &nodes {
        assert!(
            log_lines(node, "database available again") >= 1,
            "node {}: no recovery logged:\n{}",
            node.name,
            node.served.log()
        );
    }
}
