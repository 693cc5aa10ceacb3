//! Importing and exporting a site's handsets as CSV.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::both_backends;
use crate::harness::{Backend, TestServer, ADMIN};

both_backends!(a_broken_file_writes_nothing_and_a_good_one_writes_all);

async fn post_csv(srv: &TestServer, query: &str, csv: &str) -> (StatusCode, Value) {
    let resp = srv
        .client
        .post(srv.url(&format!("/api/handset/import{query}")))
        .basic_auth(ADMIN.0, Some(ADMIN.1))
        .header("content-type", "text/csv")
        .body(csv.to_string())
        .send()
        .await
        .unwrap();
    crate::harness::read(resp).await
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
    let mut site = String::from("extensionnumber,name,password,location,outgoingcli,recording,notes,mac,model\n");
    for i in 0..200 {
        site.push_str(&format!(
            "{},\"Desk {i}, \"\"east\"\"\",Pw-{i:05}-abcdef,Floor {},+6140912{i:04},{},\"line one\nline two\",001565{:06x},T46S\n",
            1000 + i,
            i % 3,
            i % 2 == 0,
            0x100000 + i
        ));
    }
    std::fs::write(&file, &site).unwrap();
    let (out, _) = cli(&["import", file.to_str().unwrap(), "--dry-run"]);
    assert!(out.contains("200 row(s) checked"), "{out}");
    let (out, err) = cli(&["import", file.to_str().unwrap()]);
    assert!(out.contains("200 created"), "{out}");
    assert!(err.contains("imported 200/200"), "plain progress lines when not on a terminal: {err}");
    let (first, _) = cli(&["export"]);
    assert_eq!(first, site, "the export is the file we imported");
    // The export imported again changes nothing, and exports the same bytes.
    let copy = dir.path().join("copy.csv");
    std::fs::write(&copy, &first).unwrap();
    let (out, _) = cli(&["import", copy.to_str().unwrap(), "--update"]);
    assert!(out.contains("0 created, 0 updated, 200 unchanged"), "{out}");
    let (second, _) = cli(&["export"]);
    assert_eq!(first, second, "export → import → export is byte-identical");
}

crate::e2e!(export_import_export_is_byte_identical,);
