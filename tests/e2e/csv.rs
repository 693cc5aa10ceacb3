//! Importing and exporting a site's handsets as CSV.

use std::path::PathBuf;
use std::time::Duration;

use futures::channel::mpsc;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::admin_ui::{upload, Ui};
use crate::both_backends;
use crate::harness::{eventually, Backend, TestServer, ADMIN};

both_backends!(
    a_broken_file_writes_nothing_and_a_good_one_writes_all,
    a_site_of_50000_rows_round_trips_and_one_bad_row_stops_it,
    a_domains_imports_take_turns,
);

pub async fn post_csv(srv: &TestServer, query: &str, csv: impl Into<reqwest::Body>) -> (StatusCode, Value) {
    let resp = srv
        .client
        .post(srv.url(&format!("/api/handset/import{query}")))
        .basic_auth(ADMIN.0, Some(ADMIN.1))
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    crate::harness::read(resp).await
}

/// An upload whose body the test sends piece by piece: the request is on
/// its way (and the server spooling it) until the sender is dropped.
struct HeldUpload {
    body: mpsc::UnboundedSender<Result<Vec<u8>, std::io::Error>>,
    answer: tokio::task::JoinHandle<Result<(StatusCode, Value), reqwest::Error>>,
}

impl HeldUpload {
    fn start(srv: &TestServer, query: &str, first: &str) -> HeldUpload {
        let (body, rx) = mpsc::unbounded();
        body.unbounded_send(Ok(first.as_bytes().to_vec())).unwrap();
        let request = srv
            .client
            .post(srv.url(&format!("/api/handset/import{query}")))
            .basic_auth(ADMIN.0, Some(ADMIN.1))
            .header("content-type", "text/csv")
            .body(reqwest::Body::wrap_stream(rx));
        let answer = tokio::spawn(async move {
            let resp = request.send().await?;
            Ok(crate::harness::read(resp).await)
        });
        HeldUpload { body, answer }
    }

    /// Sends the rest and waits for the answer.
    async fn finish(self, rest: &str) -> (StatusCode, Value) {
        self.body.unbounded_send(Ok(rest.as_bytes().to_vec())).unwrap();
        drop(self.body);
        self.answer.await.unwrap().expect("the upload is answered")
    }
}

/// Files in the server's upload spool.
fn spooled(srv: &TestServer) -> Vec<PathBuf> {
    match std::fs::read_dir(srv.dir.path().join("spool")) {
        Ok(dir) => dir.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

/// Waits until the server spools `n` uploads, and checks they are private.
async fn spooling(srv: &TestServer, n: usize) -> Vec<PathBuf> {
    let files = eventually("the uploads are spooled", Duration::from_secs(10), || async {
        let files = spooled(srv);
        (files.len() == n).then_some(files)
    })
    .await;
    #[cfg(unix)]
    for f in &files {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(f).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "a spooled upload (SIP passwords) is the server's alone");
    }
    files
}

/// `n` rows from extension `first`, MACs from `mac_from`.
fn site(first: u64, n: u64, mac_from: u64, name: &str) -> String {
    let mut csv = String::from("extensionnumber,name,mac,model\n");
    for i in 0..n {
        csv.push_str(&format!("{},{name} {i},001565{:06x},T46S\n", first + i, mac_from + i));
    }
    csv
}

async fn a_broken_file_writes_nothing_and_a_good_one_writes_all(b: Backend) {
    let srv = TestServer::start(b).await;
    srv.create_handset(json!({"extensionnumber": "900", "mac": "001565000900"})).await;
    let broken = "extensionnumber,name,mac,recording\n\
                  100,Reception,001565000100,true\n\
                  101,Sales,not-a-mac,false\n\
                  ,Nobody,001565000102,false\n\
                  103,Support,001565000103,sometimes\n\
                  104,Dup ext,001565000104,true\n\
                  104,Dup ext again,001565000105,true\n\
                  106,Dup mac,001565000100,true\n\
                  107,Taken mac,001565000900,true\n";
    let (s, v) = post_csv(&srv, "", broken).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let lines: Vec<i64> = v["errors"].as_array().unwrap().iter().map(|e| e["line"].as_i64().unwrap()).collect();
    assert_eq!(lines, [3, 4, 5, 7, 8, 9], "every problem at once, the database's included: {v}");
    assert!(v["errors"][5]["error"].as_str().unwrap().contains("001565000900 already in use"), "{v}");
    let (_, all) = srv.get("/api/handset").await;
    assert_eq!(all.as_array().unwrap().len(), 1, "nothing was written");
    let (s, v) = post_csv(&srv, "", "extensionnumber,mac\n100,001565000900\n").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["errors"][0]["error"].as_str().unwrap().contains("already in use"), "{v}");
    let (s, v) = post_csv(&srv, "", "extensionnumber,colour\n100,red\n").await;
    assert!(s == StatusCode::BAD_REQUEST && v["errors"][0]["error"].as_str().unwrap().contains("colour"), "{v}");

    let good = "name,extensionnumber,mac,recording,model,password\n\
                Reception,100,00:15:65:00:01:00,true,T46S,\n\
                Sales,101,,false,,Given-Password-1\n";
    let (s, v) = post_csv(&srv, "?dryrun=true", good).await;
    assert_eq!((s, v["written"].as_bool()), (StatusCode::OK, Some(false)));
    assert_eq!(srv.get("/api/handset").await.1.as_array().unwrap().len(), 1);
    let (s, v) = post_csv(&srv, "", good).await;
    assert_eq!((s, v), (StatusCode::OK, json!({"created": 2, "updated": 0, "unchanged": 0})));
    let (_, h) = srv.get("/api/handset/100").await;
    assert_eq!(
        (h["mac"].as_str(), h["recording"].as_str(), h["model"].as_str()),
        (Some("001565000100"), Some("true"), Some("T46S"))
    );
    assert!(h["password"].as_str().unwrap().len() >= 16, "a password was generated");
    assert_eq!(srv.get("/api/handset/101").await.1["password"], "Given-Password-1");

    // Existing extensions need update=true; then they change like Handset Update.
    let change = "extensionnumber,name\n100,Front desk\n101,Sales\n";
    let (s, v) = post_csv(&srv, "", change).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) = post_csv(&srv, "?update=true", change).await;
    assert_eq!((s, v), (StatusCode::OK, json!({"created": 0, "updated": 1, "unchanged": 1})));
    let (_, h) = srv.get("/api/handset/100").await;
    assert_eq!((h["name"].as_str(), h["revision"].as_i64()), (Some("Front desk"), Some(2)));
    // Queued, or already tried (this phone never fetched: nowhere to send).
    let state = h["provisioning"]["pushstate"].as_str().unwrap_or_default();
    assert!(["pending", "no-target"].contains(&state), "the change is pushed: {h}");
    srv.stop().await;
}

async fn export_import_export_is_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let cli = |args: &[&str]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_autoprov"));
        cmd.env_clear().env("AUTOPROV_DATA_DIR", dir.path()).env("PATH", std::env::var("PATH").unwrap_or_default());
        let out = cmd.args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        (String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
    };
    cli(&["domain", "add", "default", "--sip-server", "sip.example.com"]);
    let file = dir.path().join("site.csv");
    let mut site = String::from("extensionnumber,name,password,location,outgoingcli,recording,notes,mac,model,timezone\n");
    for i in 0..200 {
        site.push_str(&format!(
            "{},\"Desk {i}, \"\"east\"\"\",Pw-{i:05}-abcdef,Floor {},+6140912{i:04},{},\"line one\nline two\",001565{:06x},T46S,{}\n",
            1000 + i,
            i % 3,
            i % 2 == 0,
            0x100000 + i,
            // A phone's own zone, or "" for its domain's.
            if i % 5 == 0 { "Asia/Kolkata" } else { "" }
        ));
    }
    std::fs::write(&file, &site).unwrap();
    let (out, _) = cli(&["import", file.to_str().unwrap(), "--dry-run"]);
    assert!(out.contains("200 row(s) checked"), "{out}");
    let (out, err) = cli(&["import", file.to_str().unwrap()]);
    assert!(out.contains("200 created"), "{out}");
    assert!(err.contains("imported 200/200"), "plain progress lines when not on a terminal: {err}");
    let (first, _) = cli(&["export"]);
    // The file we imported, but for the '+' cells, which a spreadsheet
    // would take for formulas.
    assert_eq!(first, site.replace(",+61", ",'+61"), "the export is the file we imported");
    // The export imported again changes nothing, and exports the same bytes.
    let copy = dir.path().join("copy.csv");
    std::fs::write(&copy, &first).unwrap();
    let (out, _) = cli(&["import", copy.to_str().unwrap(), "--update"]);
    assert!(out.contains("0 created, 0 updated, 200 unchanged"), "{out}");
    let (second, _) = cli(&["export"]);
    assert_eq!(first, second, "export → import → export is byte-identical");
}

async fn a_site_of_50000_rows_round_trips_and_one_bad_row_stops_it(b: Backend) {
    let srv = TestServer::start(b).await;
    let good = site(100_000, 50_000, 0x100000, "Desk");
    let (s, v) = post_csv(&srv, "?dryrun=true", good.clone()).await;
    assert_eq!((s, v), (StatusCode::OK, json!({"checked": 50_000, "written": false})));
    // One bad MAC on line 30,001 (row 30,000) and nothing is written.
    let bad = good.replacen(&format!("Desk 29999,001565{:06x}", 0x100000 + 29_999), "Desk 29999,00156x000000", 1);
    assert_ne!(bad, good);
    let (s, v) = post_csv(&srv, "", bad).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["errors"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["errors"][0]["line"], 30_001, "{v}");
    assert!(v["errors"][0]["error"].as_str().unwrap().contains("MAC"), "{v}");
    assert_eq!(srv.get("/api/handset").await.1, json!([]), "nothing was written");
    assert!(spooled(&srv).is_empty(), "a refused upload's file is gone when the answer is");

    let (s, v) = post_csv(&srv, "", good.clone()).await;
    assert_eq!((s, v), (StatusCode::OK, json!({"created": 50_000, "updated": 0, "unchanged": 0})));
    assert!(spooled(&srv).is_empty(), "a written upload's file is gone when the answer is");
    let (_, h) = srv.get("/api/handset/149999").await;
    assert_eq!((h["name"].as_str(), h["mac"].as_str()), (Some("Desk 49999"), Some("00156510c34f")));
    // The same file again: every row exists (refused without update, the
    // first 1000 listed, all counted), and with update nothing changes.
    let (s, v) = post_csv(&srv, "", good.clone()).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["errors"].as_array().unwrap().len(), 1000);
    assert_eq!(v["errors"][999]["line"], 1001);
    let message = v["error"].as_str().unwrap();
    assert!(message.contains("50000 row(s) refused") && message.contains("49000 more"), "{message}");
    let (s, v) = post_csv(&srv, "?update=true", good).await;
    assert_eq!((s, v), (StatusCode::OK, json!({"created": 0, "updated": 0, "unchanged": 50_000})));
    srv.stop().await;
}

/// Two files naming the same new extensions, imported at once with
/// update: one goes first and creates them, the other then finds them and
/// updates them. Checked side by side, both would find them new and one
/// write would fail.
async fn a_domains_imports_take_turns(b: Backend) {
    let srv = TestServer::start(b).await;
    // The shared extensions come first in the big file: without turns its
    // check of them is done before the small file is written.
    let big = site(10_000, 5_000, 0x200000, "Big");
    let small = site(10_000, 100, 0x200000, "Small");
    let (header, big_rows) = big.split_at(big.find('\n').unwrap() + 1);
    let small_rows = &small[header.len()..];
    let first = HeldUpload::start(&srv, "?update=true", header);
    let second = HeldUpload::start(&srv, "?update=true", header);
    spooling(&srv, 2).await;
    let ((s1, a), (s2, b)) = tokio::join!(first.finish(big_rows), second.finish(small_rows));
    assert_eq!((s1, s2), (StatusCode::OK, StatusCode::OK), "{a} {b}");
    let created = a["created"].as_u64().unwrap() + b["created"].as_u64().unwrap();
    let updated = a["updated"].as_u64().unwrap() + b["updated"].as_u64().unwrap();
    assert_eq!((created, updated), (5_000, 100), "one after the other: {a} {b}");
    srv.stop().await;
}

/// Cells a spreadsheet would evaluate are exported behind a `'`, which
/// import takes off: export → import → export gives the same bytes, and
/// the values are what they were.
async fn formula_cells_are_quoted_and_round_trip() {
    let srv = TestServer::start(Backend::Sqlite).await;
    let names = ["=HYPERLINK(\"http://x\",\"y\")", "+1", "-", "@SUM(A1)", "'=x", "''+y", "'quoted", "plain"];
    for (i, name) in names.iter().enumerate() {
        let h = json!({"extensionnumber": format!("{}", 100 + i), "name": name, "password": "-starts-with-dash"});
        srv.create_handset(h).await;
    }
    let cli = |args: &[&str]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_autoprov"));
        cmd.env_clear()
            .env("AUTOPROV_DATA_DIR", srv.dir.path())
            .env("AUTOPROV_DATABASE_URL", &srv.settings.database_url)
            .env("PATH", std::env::var("PATH").unwrap_or_default());
        let out = cmd.args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let first = cli(&["export"]);
    for cell in [
        r#""'=HYPERLINK(""http://x"",""y"")""#,
        ",'+1,",
        ",'-,",
        ",'@SUM(A1),",
        ",''=x,",
        ",'''+y,",
        ",'quoted,",
        ",plain,",
        ",'-starts-with-dash,",
    ] {
        assert!(first.contains(cell), "{cell} in the export: {first}");
    }
    let copy = srv.dir.path().join("copy.csv");
    std::fs::write(&copy, &first).unwrap();
    let out = cli(&["import", copy.to_str().unwrap(), "--update"]);
    assert!(out.contains("0 created, 0 updated, 8 unchanged"), "import gives back exactly the values: {out}");
    assert_eq!(cli(&["export"]), first, "export → import → export is byte-identical");
    for (i, name) in names.iter().enumerate() {
        assert_eq!(srv.get(&format!("/api/handset/{}", 100 + i)).await.1["name"], *name);
    }
    // Through the API, into another domain: the same values.
    srv.add_user("boss@acme", "boss-password-123", "admin", false).await;
    let resp = srv
        .client
        .post(srv.url("/api/handset/import"))
        .basic_auth("boss@acme", Some("boss-password-123"))
        .header("content-type", "text/csv")
        .body(first)
        .send()
        .await
        .unwrap();
    let (s, v) = crate::harness::read(resp).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, h) = srv.call(reqwest::Method::GET, "/api/handset/104", ("boss@acme", "boss-password-123"), None).await;
    assert_eq!((h["name"].as_str(), h["password"].as_str()), (Some("'=x"), Some("-starts-with-dash")));
    srv.stop().await;
}

/// With one import at a time and one place to wait: an upload holds the
/// place while it arrives, so the next is refused at once (503,
/// Retry-After), by the API and the UI; once it is done, there is room.
/// Spooled files go with the answer, whatever it is.
async fn a_full_queue_answers_503_and_spools_are_removed() {
    let srv = TestServer::start_with(Backend::Sqlite, |s| {
        s.import_concurrency = 1;
        s.import_queue = 1;
    })
    .await;
    let (ui, csrf) = Ui::logged_in(&srv, ADMIN).await;
    let held = HeldUpload::start(&srv, "", "extensionnumber,name\n");
    let spool = spooling(&srv, 1).await.remove(0);
    let resp = srv
        .client
        .post(srv.url("/api/handset/import"))
        .basic_auth(ADMIN.0, Some(ADMIN.1))
        .body("extensionnumber\n500\n")
        .send()
        .await
        .unwrap();
    let retry = resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_string);
    let (s, v) = crate::harness::read(resp).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert!(retry.is_some_and(|r| r.parse::<u64>().unwrap() >= 1), "Retry-After");
    assert!(v["error"].as_str().unwrap().contains("Too many imports are waiting"), "{v}");
    let page = upload(&ui, &csrf, b"extensionnumber\n500\n", &[]).await;
    assert_eq!(page.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(page.headers.contains_key("retry-after"));
    assert!(page.body.contains("Too many imports are waiting") && page.body.contains("id=\"import\""), "{}", page.body);
    assert_eq!(spooled(&srv), std::slice::from_ref(&spool), "refusals spool nothing");

    let (s, v) = held.finish("400,Held\n").await;
    assert_eq!((s, v), (StatusCode::OK, json!({"created": 1, "updated": 0, "unchanged": 0})));
    assert!(!spool.exists(), "the file went with the answer");
    let page = upload(&ui, &csrf, b"extensionnumber\n500\n", &[]).await;
    assert!(page.body.contains("1 created"), "{}", page.body);
    assert!(spooled(&srv).is_empty());

    // A client that goes away mid-upload leaves nothing behind.
    let gone = HeldUpload::start(&srv, "", "extensionnumber,name\n600,Gone\n");
    spooling(&srv, 1).await;
    gone.body.unbounded_send(Err(std::io::Error::other("client gone"))).unwrap();
    assert!(gone.answer.await.unwrap().is_err(), "the client gave up");
    eventually("the abandoned upload removed", Duration::from_secs(10), || async { spooled(&srv).is_empty().then_some(()) })
        .await;
    // So does one over the limit, declared or not: declared, it is refused
    // before a byte of it is read.
    let mut tls = crate::harness::tls_from(&srv, "127.0.0.1").await;
    let head = format!(
        "POST /api/handset/import HTTP/1.1\r\nHost: localhost\r\nAuthorization: Basic {}\r\nContent-Type: text/csv\r\nContent-Length: {}\r\n\r\n",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("{}:{}", ADMIN.0, ADMIN.1)),
        34 * 1024 * 1024
    );
    let status = crate::harness::raw_status(&mut tls, &head).await;
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");
    let too_big = vec![b'1'; 34 * 1024 * 1024];
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = too_big.chunks(1024 * 1024).map(|c| Ok(c.to_vec())).collect();
    let (s, v) = post_csv(&srv, "", reqwest::Body::wrap_stream(futures::stream::iter(chunks))).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert!(spooled(&srv).is_empty());
    assert_eq!(srv.get("/api/handset/600").await.0, StatusCode::NOT_FOUND);
    srv.stop().await;
}

/// A body that stops arriving is cut off with a clear answer, and its
/// spooled part removed.
async fn an_upload_that_stalls_is_refused() {
    let srv = TestServer::start_with(Backend::Sqlite, |s| {
        s.body_timeout = autoprov::config::HumanDuration(Duration::from_secs(1));
    })
    .await;
    let stalled = HeldUpload::start(&srv, "", "extensionnumber,name\n700,Slow\n");
    spooling(&srv, 1).await;
    let (s, v) = stalled.answer.await.unwrap().expect("answered while the client still holds the body");
    assert_eq!(s, StatusCode::REQUEST_TIMEOUT, "{v}");
    assert!(v["error"].as_str().unwrap().contains("not sent in time"), "{v}");
    assert!(spooled(&srv).is_empty());
    drop(stalled.body);

    // The same through the UI's multipart form.
    let (ui, csrf) = Ui::logged_in(&srv, ADMIN).await;
    let (body, rx) = mpsc::unbounded::<Result<Vec<u8>, std::io::Error>>();
    let part = format!(
        "--b0undary\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{csrf}\r\n--b0undary\r\n\
         Content-Disposition: form-data; name=\"file\"; filename=\"site.csv\"\r\nContent-Type: text/csv\r\n\r\n\
         extensionnumber,name\n700,Slow\n"
    );
    body.unbounded_send(Ok(part.into_bytes())).unwrap();
    let request = ui
        .request(reqwest::Method::POST, "/admin/import")
        .header("origin", ui.origin())
        .header("content-type", "multipart/form-data; boundary=b0undary")
        .body(reqwest::Body::wrap_stream(rx));
    let page = ui.send(request).await;
    assert_eq!(page.status, StatusCode::REQUEST_TIMEOUT, "{}", page.body);
    assert!(page.body.contains("not sent in time"), "{}", page.body);
    assert!(spooled(&srv).is_empty());
    drop(body);
    srv.stop().await;
}

/// An import that runs longer than the change feed reads back still
/// reaches the phones it changed: its first change rows are older than the
/// feed's overlap by the time they become visible. The import is written
/// through the store (as `/api/handset/import` writes it) so that it can be
/// held open past the overlap; the server learns of it as another node's.
async fn a_long_import_reaches_the_phones_it_changed() {
    use autoprov::model::{HandsetInput, NewHandset};
    use autoprov::store::changes::FEED_OVERLAP_MS;
    let srv = TestServer::start(Backend::Postgres).await;
    let p = crate::provisioning::phone("yealink");
    srv.create_handset(json!({"extensionnumber": "100", "name": "Before the import", "mac": p.mac, "model": p.model})).await;
    let store = autoprov::store::Store::open(&srv.settings.database_url).await.unwrap();
    let domain = store.domain_by_name("default").await.unwrap().expect("the default domain").id;
    let actor = autoprov::store::Actor::cli();
    let mut import = store.import_writer(&actor, domain).await.unwrap();
    let fields = HandsetInput { name: Some("After the import".into()), ..Default::default() };
    import.write(NewHandset { extensionnumber: "100".into(), fields }, true).await.unwrap();
    // Past the overlap, the handset's creation has left the feed's reach
    // too: the phone's next fetch is cached, as it was before the import.
    tokio::time::sleep(Duration::from_millis(FEED_OVERLAP_MS as u64 + 1500)).await;
    let (status, _, body) = crate::provisioning::http_get(&srv, &p.file, Some(&p.ua)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("Before the import"));
    import.commit().await.unwrap();
    eventually("the phone's file after the import", Duration::from_secs(3), || async {
        let (_, _, body) = crate::provisioning::http_get(&srv, &p.file, Some(&p.ua)).await;
        body.contains("After the import").then_some(())
    })
    .await;
    srv.stop().await;
}

crate::e2e!(
    a_long_import_reaches_the_phones_it_changed needs [Postgres],
    export_import_export_is_byte_identical,
    formula_cells_are_quoted_and_round_trip,
    a_full_queue_answers_503_and_spools_are_removed,
    an_upload_that_stalls_is_refused,
);
