//! The monitoring listener: `/metrics` counts what phones and pushes did,
//! with the right labels, in a text format two parsers read (the
//! prometheus-parse crate on every machine, Prometheus's own `promtool`
//! where it is installed); `/healthz`; `/readyz` (and its 503 when the
//! database is gone); `metrics_listen = off`.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use autoprov::config::Listen;
use prometheus_parse::{LineInfo, Scrape, Value};
use reqwest::StatusCode;
use serde_json::json;

use crate::binary::{autoprov, serve};
use crate::harness::{eventually, plain_client, plain_client_from, Backend, TestServer};
use crate::provisioning::{http_get, phone};
use crate::push::{quick_push, register, wait_for_push_state, Phone};
use crate::{both_backends, e2e};

both_backends!(fetches_pushes_and_bans_are_counted_with_their_labels);
e2e!(promtool_reads_the_metrics needs [Promtool], readyz_fails_when_the_database_is_gone needs [Postgres]);
e2e!(off_means_no_listener_and_the_binary_says_where_it_is);

/// `GET path` on the monitoring listener: status, `Content-Type`, body.
async fn get(addr: SocketAddr, path: &str) -> (StatusCode, String, String) {
    let resp = plain_client().get(format!("http://{addr}{path}")).send().await.unwrap();
    let status = resp.status();
    let content_type = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    (status, content_type, resp.text().await.unwrap())
}

/// `/metrics`, checked line by line as the text format 0.0.4 and parsed.
async fn scrape(srv: &TestServer) -> (String, Scrape) {
    let (status, content_type, text) = get(srv.running().metrics_addr.expect("metrics listener"), "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    (text.clone(), parsed(&text))
}

/// Every line is a HELP, a TYPE or a sample (prometheus-parse passes over
/// lines it cannot read, so each is checked here), every sample belongs to
/// a family typed and described before it, and no family is typed twice.
fn parsed(text: &str) -> Scrape {
    assert!(text.ends_with('\n'), "the last line ends too");
    let (mut typed, mut described) = (HashSet::new(), HashSet::new());
    for line in text.lines() {
        match LineInfo::parse(line) {
            LineInfo::Ignored | LineInfo::Empty => panic!("not a line of the text format: {line:?}"),
            LineInfo::Doc { metric_name, .. } => assert!(described.insert(metric_name.to_string()), "HELP twice: {line}"),
            LineInfo::Type { metric_name, metric_alias, .. } => {
                let name = metric_alias.unwrap_or(metric_name);
                assert!(described.contains(&name), "TYPE before HELP: {line}");
                assert!(typed.insert(name), "TYPE twice: {line}");
            }
            LineInfo::Sample { metric_name, value, .. } => {
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| metric_name.strip_suffix(s).filter(|f| typed.contains(*f)))
                    .unwrap_or(metric_name);
                assert!(typed.contains(family), "a sample of no TYPE: {line}");
                assert!(metric_name.starts_with("autoprov_"), "{line}");
                assert!(value.parse::<f64>().is_ok(), "{line}");
            }
        }
    }
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("prometheus-parse reads it")
}

/// The value of the sample `name` with exactly `labels`.
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<&prometheus_parse::Sample> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && s.labels.len() == labels.len() && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .collect();
    assert_eq!(found.len(), 1, "{name} {labels:?}: {found:?}");
    match &found[0].value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
        other => panic!("{name}: {other:?}"),
    }
}

/// Fetches of `result` over all families and protocols.
fn fetches(scrape: &Scrape, result: &str) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == "autoprov_fetches_total" && s.labels.get("result") == Some(result))
        .map(|s| match s.value {
            Value::Counter(v) => v,
            _ => panic!("autoprov_fetches_total is a counter"),
        })
        .sum()
}

fn fetch(scrape: &Scrape, family: &str, protocol: &str, result: &str) -> f64 {
    value(scrape, "autoprov_fetches_total", &[("family", family), ("protocol", protocol), ("result", result)])
}

async fn fetches_pushes_and_bans_are_counted_with_their_labels(b: Backend) {
    let srv = TestServer::start_with(b, |s| {
        quick_push(s);
        s.scan_threshold = 2;
    })
    .await;
    let (_, first) = scrape(&srv).await;
    // Every label set is there from the start, at zero: rates work from the
    // first scrape.
    assert_eq!(fetch(&first, "yealink", "tftp", "not_modified"), 0.0);
    assert_eq!(fetch(&first, "unidentified", "https", "bad_name"), 0.0);
    assert_eq!(value(&first, "autoprov_push_attempts_total", &[("result", "sent")]), 0.0);

    let p = phone("yealink");
    srv.create_handset(json!({"extensionnumber": "100", "name": "Reception", "mac": p.mac, "model": p.model})).await;
    // Served over HTTP, then again with its ETag (304), then over HTTPS and TFTP.
    let (s, headers, _) = http_get(&srv, &p.file, Some(&p.ua)).await;
    assert_eq!(s, StatusCode::OK);
    let etag = headers.get("etag").unwrap().to_str().unwrap().to_string();
    let path = srv.phone_path(&p.file).await;
    let resp =
        plain_client().get(srv.plain_url(&path)).header("user-agent", &p.ua).header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
    let resp = srv.client.get(srv.url(&path)).header("user-agent", &p.ua).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let tftp = srv.running().tftp_addr.unwrap();
    crate::tftp_client::get(tftp, &path[1..]).await.expect("served over TFTP");
    // An unknown phone of the family (by its OUI), under the token: 404,
    // and recorded.
    let unknown = format!("{}aabbfe", &p.mac[..6]);
    let (s, _, _) = http_get(&srv, &p.file.replace(&p.mac, &unknown), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // A name no vendor uses: 404, no family.
    let (s, _, _) = http_get(&srv, "nothing-serves-this.txt", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // A push, answered by the phone, which then fetches the new revision.
    let sip_phone = Phone::new().await;
    register(&srv, "100", sip_phone.addr()).await;
    let (s, _) = srv.put("/api/handset/100", json!({"name": "Front desk"})).await;
    assert_eq!(s, StatusCode::OK);
    let notify = sip_phone.next(Duration::from_secs(5)).await.expect("a NOTIFY");
    sip_phone.answer(&notify, "200 OK", "").await;
    wait_for_push_state(&srv, "100", "sent", Duration::from_secs(5)).await;
    let (s, _, body) = http_get(&srv, &p.file, Some(&p.ua)).await;
    assert!(s == StatusCode::OK && body.contains("Front desk"));

    let (_, m) = scrape(&srv).await;
    assert_eq!(fetch(&m, "yealink", "http", "ok"), 2.0);
    assert_eq!(fetch(&m, "yealink", "http", "not_modified"), 1.0);
    assert_eq!(fetch(&m, "yealink", "https", "ok"), 1.0);
    assert_eq!(fetch(&m, "yealink", "tftp", "ok"), 1.0);
    assert_eq!(fetch(&m, "yealink", "http", "not_found"), 1.0);
    assert_eq!(fetch(&m, "unidentified", "http", "not_found"), 1.0);
    assert_eq!(fetches(&m, "ok"), 4.0, "nothing counted twice, nothing elsewhere");
    assert_eq!(value(&m, "autoprov_fetch_duration_seconds_count", &[("protocol", "http")]), 5.0);
    assert_eq!(value(&m, "autoprov_fetch_duration_seconds_count", &[("protocol", "https")]), 1.0);
    assert_eq!(value(&m, "autoprov_fetch_duration_seconds_count", &[("protocol", "tftp")]), 1.0);
    assert_eq!(value(&m, "autoprov_unknown_device_requests_total", &[]), 1.0);
    assert_eq!(value(&m, "autoprov_tftp_transfers_total", &[]), 1.0);
    assert_eq!(value(&m, "autoprov_push_attempts_total", &[("result", "sent")]), 1.0);
    assert_eq!(value(&m, "autoprov_push_attempts_total", &[("result", "retry")]), 0.0);
    assert_eq!(value(&m, "autoprov_push_applied_seconds_count", &[]), 1.0, "the fetch after the push applied it");
    assert_eq!(value(&m, "autoprov_scan_guard_bans_total", &[]), 0.0);
    let max_pool = if b == Backend::Sqlite { 4.0 } else { 16.0 };
    assert_eq!(value(&m, "autoprov_db_pool_max_connections", &[]), max_pool);
    let pool = value(&m, "autoprov_db_pool_connections", &[]);
    assert!((1.0..=max_pool).contains(&pool), "{pool}");
    assert!(value(&m, "autoprov_db_pool_idle_connections", &[]) <= pool);

    // A connection held open is counted; the TFTP transfer has ended.
    let held = tokio::net::TcpStream::connect(srv.http()).await.unwrap();
    let (_, m) = eventually("the open connection and the ended transfer", Duration::from_secs(5), || async {
        let (_, m) = scrape(&srv).await;
        (value(&m, "autoprov_http_connections_open", &[]) >= 1.0 && value(&m, "autoprov_tftp_transfers_in_flight", &[]) == 0.0)
            .then_some(((), m))
    })
    .await;
    assert!(value(&m, "autoprov_http_connections_open", &[]) >= 1.0);
    drop(held);

    // A scanner from another address: two MACs without proof (401), the
    // third bans it.
    let scanner = plain_client_from(Some([127, 0, 0, 77].into()));
    for (i, want) in [StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN].into_iter().enumerate() {
        let url = srv.plain_url(&format!("/{}aabb{:02x}.cfg", &p.mac[..6], 0xa0 + i));
        assert_eq!(scanner.get(url).send().await.unwrap().status(), want);
    }
    let (_, m) = scrape(&srv).await;
    assert_eq!(value(&m, "autoprov_scan_guard_bans_total", &[]), 1.0);
    assert_eq!(fetches(&m, "unauthorized"), 2.0);
    assert_eq!(fetches(&m, "banned"), 1.0);
    assert_eq!(value(&m, "autoprov_unknown_device_requests_total", &[]), 3.0, "a banned request records nothing");

    let addr = srv.running().metrics_addr.unwrap();
    assert_eq!(get(addr, "/healthz").await.0, StatusCode::OK);
    let (status, _, body) = get(addr, "/readyz").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ready\n"));
    assert_eq!(get(addr, "/api/handset").await.0, StatusCode::NOT_FOUND, "nothing else is served there");
    srv.stop().await;
}

/// Prometheus's own checker reads what we serve, histograms filled in.
async fn promtool_reads_the_metrics() {
    let srv = TestServer::start(Backend::Sqlite).await;
    let p = phone("yealink");
    srv.create_handset(json!({"extensionnumber": "100", "mac": p.mac, "model": p.model})).await;
    for _ in 0..3 {
        assert_eq!(http_get(&srv, &p.file, Some(&p.ua)).await.0, StatusCode::OK);
    }
    let (text, _) = scrape(&srv).await;
    assert!(text.contains("autoprov_fetch_duration_seconds_bucket{protocol=\"http\",le=\"+Inf\"} 3\n"), "{text}");
    let (ok, said) = promtool_check(&text);
    assert!(ok && said.trim().is_empty(), "promtool check metrics: {said}");
    // And a broken exposition is caught (the check can fail).
    let broken = text.replacen("# TYPE autoprov_fetches_total counter", "# TYPE x y", 1);
    assert!(!promtool_check(&broken).0, "promtool accepts nonsense: the check above proves nothing");
    srv.stop().await;
}

/// `promtool check metrics` on `text`: whether it passed, and what it said.
fn promtool_check(text: &str) -> (bool, String) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(crate::peers::promtool().expect("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// With PostgreSQL the database can really go away: the server's database
/// is dropped under it (its connections ended), and /readyz says so.
async fn readyz_fails_when_the_database_is_gone() {
    let srv = TestServer::start(Backend::Postgres).await;
    let addr = srv.running().metrics_addr.unwrap();
    assert_eq!(get(addr, "/readyz").await.0, StatusCode::OK);
    let name = srv.settings.database_url.rsplit('/').next().unwrap().to_string();
    {
        use sqlx::Connection;
        let mut admin = sqlx::PgConnection::connect(&crate::peers::postgres_url()).await.unwrap();
        sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)")).execute(&mut admin).await.unwrap();
        admin.close().await.ok();
    }
    let (status, _, body) = get(addr, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.starts_with("not ready\n") && body.contains("database"), "{body}");
    assert!(!body.contains("postgres://"), "no URL (nor its password) in the answer: {body}");
    // Alive all the same.
    assert_eq!(get(addr, "/healthz").await.0, StatusCode::OK);
    srv.stop().await;
}

async fn off_means_no_listener_and_the_binary_says_where_it_is() {
    let srv = TestServer::start_with(Backend::Sqlite, |s| s.metrics_listen = Listen::Off).await;
    assert_eq!(srv.running().metrics_addr, None);
    srv.stop().await;

    let dir = tempfile::tempdir().unwrap();
    let served = serve(&mut autoprov(dir.path()));
    let addr = served.addr("Metrics listening on ");
    assert!(addr.ip().is_loopback());
    let (status, _, body) = get(addr, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    parsed(&body);
    assert_eq!(get(addr, "/readyz").await.0, StatusCode::OK);
    drop(served);
    let served = serve(autoprov(dir.path()).env("AUTOPROV_METRICS_LISTEN", "off"));
    assert!(served.lines.iter().any(|l| l.starts_with("HTTPS listening on ")), "{:?}", served.lines);
    assert!(!served.lines.iter().any(|l| l.starts_with("Metrics")), "{:?}", served.lines);
}
