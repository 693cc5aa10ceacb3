//! The `autoprov` binary: bootstrap, admin commands, start-up errors and
//! graceful shutdown on SIGTERM.

use std::process::Command;
use std::time::Duration;

use crate::binary::{autoprov, run, serve, sigterm};

async fn first_start_bootstraps_an_admin_and_sigterm_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut served = serve(&mut autoprov(dir.path()));
    let lines = served.lines.clone();
    let printed =
        lines.iter().find_map(|l| l.strip_prefix("Created superuser admin@default with password: ")).map(str::to_string);
    let password = printed.unwrap_or_else(|| panic!("no password line in {lines:?}"));
    assert!(password.len() >= 16);
    let file = dir.path().join("admin-password");
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), password);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let https = lines.iter().find_map(|l| l.strip_prefix("HTTPS listening on ")).expect("HTTPS line").to_string();
    let fingerprint = lines.iter().find(|l| l.contains("SHA-256 fingerprint")).expect("fingerprint line");
    assert!(fingerprint.split_whitespace().last().unwrap().len() == 95, "{fingerprint}");

    let cert = dir.path().join("tls/cert.pem");
    let client = crate::harness::https_client(&cert, None);
    let port = https.rsplit(':').next().unwrap();
    let resp = client
        .get(format!("https://localhost:{port}/api/handset"))
        .basic_auth("admin@default", Some(&password))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), reqwest::StatusCode::OK);
    assert_eq!(resp.text().await.unwrap(), "[]");

    sigterm(&served.child);
    let status = served.exited_within(Duration::from_secs(10)).expect("stopped within 10 s");
    assert!(status.success(), "{status:?}");

    // A second start reuses everything and prints no new password.
    let mut served = serve(&mut autoprov(dir.path()));
    assert!(!served.lines.iter().any(|l| l.contains("Created superuser")), "{:?}", served.lines);
    sigterm(&served.child);
    assert!(served.child.wait().unwrap().success());
}

async fn admin_commands_work_on_the_server_database() {
    let dir = tempfile::tempdir().unwrap();
    let ok = |args: &[&str], stdin: Option<&str>| {
        let (ok, out, err) = run(autoprov(dir.path()).args(args), stdin);
        assert!(ok, "{args:?} failed: {err}");
        out
    };
    ok(&["db", "migrate"], None);
    let out = ok(&["domain", "add", "acme", "--sip-server", "sip.acme.example:5080", "--transport", "tcp"], None);
    assert!(out.contains("sip.acme.example:5080 over tcp"), "{out}");
    let out = ok(&["domain", "list"], None);
    assert!(out.lines().any(|l| l.starts_with("acme ") && l.contains("5080")), "{out}");

    let out = ok(&["user", "add", "boss@acme", "--role", "admin"], None);
    let generated = out.lines().find_map(|l| l.strip_prefix("Password: ")).expect("generated password").to_string();
    assert!(generated.len() >= 16);
    ok(&["user", "add", "pbx@acme", "--role", "platform", "--password-stdin"], Some("platform-password-1\n"));
    ok(&["user", "add", "root@acme", "--superuser", "--password-stdin"], Some("superuser-password\n"));
    let out = ok(&["user", "list"], None);
    assert!(out.lines().any(|l| l.starts_with("pbx@acme") && l.contains("platform")), "{out}");
    assert!(out.lines().any(|l| l.starts_with("root@acme") && l.ends_with("yes")), "{out}");
    assert!(!out.contains(&generated), "user list never shows passwords");
    ok(&["user", "passwd", "boss@acme", "--password-stdin"], Some("a-brand-new-password\n"));

    // Refusals say why, in one line, with a failing exit code.
    for (args, stdin, word) in [
        (&["domain", "add", "acme", "--sip-server", "x.example"][..], None, "exists"),
        (&["domain", "add", "Bad Name", "--sip-server", "x.example"][..], None, "domain"),
        (&["domain", "add", "ok", "--sip-server", "bad host"][..], None, "sipserver"),
        (&["user", "add", "boss@acme"][..], None, "exists"),
        (&["user", "add", "x@nosuch"][..], None, "Domain not found"),
        (&["user", "add", "x@acme", "--role", "god"][..], None, "role"),
        (&["user", "add", "y@acme", "--password-stdin"][..], Some("short\n"), "at least"),
        (&["user", "passwd", "ghost@acme"][..], None, "User not found"),
    ] {
        let (ok, _, err) = run(autoprov(dir.path()).args(args), stdin);
        assert!(!ok, "{args:?} should fail");
        assert!(err.starts_with("autoprov: ") && err.trim().lines().count() == 1 && err.contains(word), "{args:?}: {err}");
    }
}

async fn startup_failures_are_one_line_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(Vec<(&str, String)>, &str)> = vec![
        (vec![("AUTOPROV_DATABASE_URL", "postgres://autoprov:hunter2@127.0.0.1:1/none".into())], "cannot open database"),
        (vec![("AUTOPROV_DATABASE_URL", "mysql://x".into())], "sqlite:// or postgres://"),
        (vec![("AUTOPROV_HTTPS_LISTEN", "not-an-address".into())], "not-an-address"),
        (vec![("AUTOPROV_CONFIG", dir.path().join("missing.toml").display().to_string())], "missing.toml"),
    ];
    for (env, word) in cases {
        let mut cmd = autoprov(dir.path());
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let (ok, _, err) = run(cmd.arg("serve"), None);
        assert!(!ok, "{env:?}");
        assert!(err.contains(word), "{env:?}: {err}");
        assert!(!err.contains("hunter2"), "the database password is not printed: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    // A broken vendor profile stops start-up, naming the file.
    let profiles = dir.path().join("profiles");
    std::fs::create_dir_all(&profiles).unwrap();
    std::fs::write(profiles.join("yealink.toml"), "family = \"yealink\"\nvendor = 5\n").unwrap();
    let (ok, _, err) = run(autoprov(dir.path()).env("AUTOPROV_PROFILES_DIR", &profiles).arg("serve"), None);
    assert!(!ok && err.contains("yealink.toml") && err.trim().lines().count() == 1, "{err}");
    // A port in use.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (ok, _, err) = run(autoprov(dir.path()).env("AUTOPROV_HTTPS_LISTEN", &addr).arg("serve"), None);
    assert!(!ok && err.contains(&addr) && err.trim().lines().count() == 1, "{err}");
}

async fn settings_are_documented_in_serve_help() {
    let (ok, out, _) = run(Command::new(env!("CARGO_BIN_EXE_autoprov")).args(["serve", "--help"]), None);
    assert!(ok);
    for word in [
        "AUTOPROV_DATA_DIR",
        "AUTOPROV_DATABASE_URL",
        "AUTOPROV_HTTP_LISTEN",
        "AUTOPROV_HTTPS_LISTEN",
        "AUTOPROV_TFTP_LISTEN",
        "AUTOPROV_TLS_CERT",
        "AUTOPROV_TLS_KEY",
        "--config",
    ] {
        assert!(out.contains(word), "{word} missing from serve --help");
    }
}

async fn render_prints_what_the_phone_gets_and_profiles_lists_the_files() {
    use serde_json::json;
    let srv = crate::harness::TestServer::start_with(crate::harness::Backend::Sqlite, |s| {
        s.public_url = Some("https://prov.example.com/".parse().unwrap());
    })
    .await;
    let phone = crate::provisioning::phone("yealink");
    srv.create_handset(json!({"extensionnumber": "100", "name": "Reception", "mac": phone.mac, "model": phone.model})).await;
    let (status, _, served) = crate::provisioning::http_get(&srv, &phone.file, Some(&phone.ua)).await;
    assert_eq!(status, reqwest::StatusCode::OK);
    assert!(served.contains("https://prov.example.com/"), "the public URL goes into the file");

    let render = |args: &[&str]| {
        let mut cmd = autoprov(srv.dir.path());
        cmd.env("AUTOPROV_DATABASE_URL", &srv.settings.database_url).env("AUTOPROV_PUBLIC_URL", "https://prov.example.com/");
        run(cmd.arg("render").args(args), None)
    };
    let mac_colons = phone.mac.as_bytes().chunks(2).map(|c| std::str::from_utf8(c).unwrap()).collect::<Vec<_>>().join(":");
    let (ok, out, err) = render(&[&mac_colons]);
    assert!(ok, "{err}");
    assert_eq!(out, served, "the preview is byte for byte what the phone got");
    assert!(err.contains(&phone.file), "{err}");
    // Yealink's common file (Auto Provisioning Guide: "#!version:1.0.0.1" first).
    let (ok, out, _) = render(&[&phone.mac, phone.common.as_deref().expect("a common file")]);
    assert!(ok && out.starts_with("#!version:1.0.0.1"));
    let (ok, _, err) = render(&["001565ffffff"]);
    assert!(!ok && err.contains("no handset"), "{err}");
    let (ok, _, err) = render(&["not-a-mac"]);
    assert!(!ok && err.contains("MAC"), "{err}");

    let (ok, out, _) = run(Command::new(env!("CARGO_BIN_EXE_autoprov")).arg("profiles"), None);
    assert!(ok);
    // Whatever vendor-profiles/ holds, with every file name of each.
    let mut listed = 0;
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/vendor-profiles")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let family = path.file_stem().unwrap().to_string_lossy().to_string();
        assert!(out.lines().any(|l| l.split_whitespace().next() == Some(family.as_str())), "{family} missing from:\n{out}");
        listed += 1;
    }
    assert_eq!(out.lines().filter(|l| !l.starts_with(char::is_whitespace) && !l.is_empty()).count(), listed, "{out}");
    for f in autoprov::profiles::Profiles::built_in().iter().flat_map(|p| &p.files) {
        assert!(out.contains(&f.name), "{} missing from:\n{out}", f.name);
    }
    srv.stop().await;
}

async fn device_list_shows_unknown_phones() {
    let srv = crate::harness::TestServer::start(crate::harness::Backend::Sqlite).await;
    let (s, _, _) = crate::provisioning::http_get(
        &srv,
        "0004f2123456.cfg",
        Some("FileTransport PolycomVVX-VVX_410-UA/5.9.0.9373 Type/Application"),
    )
    .await;
    assert_eq!(s, reqwest::StatusCode::NOT_FOUND);
    crate::harness::wait_for_unknown_device(&srv, "0004f2123456").await;
    let mut cmd = autoprov(srv.dir.path());
    cmd.env("AUTOPROV_DATABASE_URL", &srv.settings.database_url);
    let (ok, out, err) = run(cmd.args(["device", "list", "--state", "unknown"]), None);
    assert!(ok, "{err}");
    let line = out.lines().find(|l| l.starts_with("0004f2123456")).unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("polycom") && line.contains("VVX_410") && line.contains("0004f2123456.cfg"), "{line}");
    srv.stop().await;
}

/// A change made while pushes are held survives SIGKILL: the outbox row was
/// written with the change, and the restarted server sends the NOTIFY.
async fn a_queued_push_survives_sigkill() {
    use serde_json::json;
    let dir = tempfile::tempdir().unwrap();
    let start = |hold: bool| {
        let mut cmd = autoprov(dir.path());
        cmd.env("AUTOPROV_ADMIN_PASSWORD", "crash-test-password").env("AUTOPROV_SIP_LISTEN", "127.0.0.1:0");
        cmd.env("AUTOPROV_PUSH_HOLD", if hold { "true" } else { "false" });
        let served = serve(&mut cmd);
        let port = served.addr("HTTPS listening on ").port();
        (served, port)
    };
    let phone = crate::push::Phone::new().await;
    let (mut served, port) = start(true);
    let client = crate::harness::https_client(&dir.path().join("tls/cert.pem"), None);
    let api = |path: &str| format!("https://localhost:{port}{path}");
    let send = |m: reqwest::Method, path: &str, body: serde_json::Value| {
        client.request(m, api(path)).basic_auth("admin@default", Some("crash-test-password")).json(&body).send()
    };
    let r =
        send(reqwest::Method::POST, "/api/handset", json!({"extensionnumber": "100", "mac": "001565aabb77", "model": "T46S"}))
            .await
            .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::CREATED);
    let r = send(reqwest::Method::PUT, "/api/handsetstatus/100", json!({"registrationaddress": phone.addr().to_string()}))
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    let r = send(reqwest::Method::PUT, "/api/handset/100", json!({"name": "Queued before the crash"})).await.unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    assert!(phone.next(Duration::from_millis(500)).await.is_none(), "held: nothing sent yet");

    served.child.kill().unwrap(); // SIGKILL
    served.child.wait().unwrap();
    let (mut served, _) = start(false);
    let notify = phone.next(Duration::from_secs(10)).await.expect("the NOTIFY arrives after the restart");
    assert!(notify.request_line().starts_with("NOTIFY sip:100@"), "{}", notify.text);
    phone.answer(&notify, "200 OK", "").await;
    sigterm(&served.child);
    assert!(served.child.wait().unwrap().success());
}

async fn notify_queues_a_push_for_the_running_server() {
    use serde_json::json;
    let srv = crate::harness::TestServer::start_with(crate::harness::Backend::Sqlite, crate::push::quick_push).await;
    let phone = crate::push::Phone::new().await;
    srv.create_handset(json!({"extensionnumber": "100", "mac": "001565aabb88", "model": "T46S"})).await;
    crate::push::register(&srv, "100", phone.addr()).await;
    let mut cmd = autoprov(srv.dir.path());
    cmd.env("AUTOPROV_DATABASE_URL", &srv.settings.database_url);
    let (ok, out, err) = run(cmd.args(["notify", "100", "--reboot"]), None);
    assert!(ok, "{err}");
    assert!(out.contains("queued"), "{out}");
    let notify = phone.next(Duration::from_secs(5)).await.expect("the server sends the queued NOTIFY");
    assert_eq!(notify.header("Event").as_deref(), Some("check-sync;reboot=true"));
    phone.answer(&notify, "200 OK", "").await;
    let mut cmd = autoprov(srv.dir.path());
    cmd.env("AUTOPROV_DATABASE_URL", &srv.settings.database_url);
    let (ok, _, err) = run(cmd.args(["notify", "999"]), None);
    assert!(!ok && err.contains("Handset not found"), "{err}");
    srv.stop().await;
}

async fn device_claim_assigns_a_phone_from_the_command_line() {
    use serde_json::json;
    let srv = crate::harness::TestServer::start(crate::harness::Backend::Sqlite).await;
    srv.create_handset(json!({"extensionnumber": "300"})).await;
    let mut cmd = autoprov(srv.dir.path());
    cmd.env("AUTOPROV_DATABASE_URL", &srv.settings.database_url);
    let (ok, out, err) = run(cmd.args(["device", "claim", "00:15:65:12:34:56", "300", "--model", "T54W"]), None);
    assert!(ok, "{err}");
    assert!(out.contains("001565123456 is now 300@default (T54W)"), "{out}");
    let (_, h) = srv.get("/api/handset/300").await;
    assert_eq!((h["mac"].as_str(), h["model"].as_str(), h["revision"].as_i64()), (Some("001565123456"), Some("T54W"), Some(2)));
    let mut cmd = autoprov(srv.dir.path());
    cmd.env("AUTOPROV_DATABASE_URL", &srv.settings.database_url);
    let (ok, _, err) = run(cmd.args(["device", "claim", "001565123456", "301"]), None);
    assert!(!ok && err.contains("MAC already in use"), "{err}");
    srv.stop().await;
}

crate::e2e!(
    admin_commands_work_on_the_server_database,
    startup_failures_are_one_line_reasons,
    settings_are_documented_in_serve_help,
    first_start_bootstraps_an_admin_and_sigterm_stops_cleanly,
    render_prints_what_the_phone_gets_and_profiles_lists_the_files,
    device_list_shows_unknown_phones,
    a_queued_push_survives_sigkill,
    notify_queues_a_push_for_the_running_server,
    device_claim_assigns_a_phone_from_the_command_line,
    a_backup_taken_while_serving_restores,
    json_logs_are_one_object_per_line,
    check_config_names_what_is_wrong,
);

/// `autoprov check-config` checks without starting: the profiles, the TLS
/// certificate and key (that they load and fit), the SIP TLS CAs; each
/// fault is one line naming the file, with a failing exit code.
async fn check_config_names_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, out, err) = run(autoprov(dir.path()).arg("check-config"), None);
    assert!(ok && out.contains("Configuration OK") && out.contains("self-signed"), "{out}{err}");
    assert!(!dir.path().join("tls").exists(), "nothing is made by a check");

    let files = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = files.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let (a, b) = (
        rcgen::generate_simple_self_signed(vec!["prov.example.com".into()]).unwrap(),
        rcgen::generate_simple_self_signed(vec!["other.example.com".into()]).unwrap(),
    );
    let (cert, key, other_key) = (
        write("cert.pem", &a.cert.pem()),
        write("key.pem", &a.key_pair.serialize_pem()),
        write("other.pem", &b.key_pair.serialize_pem()),
    );
    let (ok, out, err) =
        run(autoprov(dir.path()).env("AUTOPROV_TLS_CERT", &cert).env("AUTOPROV_TLS_KEY", &key).arg("check-config"), None);
    assert!(ok && out.contains("cert.pem (SHA-256 "), "{out}{err}");

    let profiles = files.path().join("profiles");
    std::fs::create_dir_all(&profiles).unwrap();
    std::fs::write(profiles.join("yealink.toml"), "family = \"yealink\"\nvendor = 5\n").unwrap();
    let missing = files.path().join("missing.pem").display().to_string();
    let no_pem = write("empty-ca.pem", "not a certificate\n");
    for (env, word) in [
        (vec![("AUTOPROV_TLS_CERT", cert.clone()), ("AUTOPROV_TLS_KEY", other_key.clone())], "other.pem"),
        (vec![("AUTOPROV_TLS_CERT", missing.clone()), ("AUTOPROV_TLS_KEY", key.clone())], "missing.pem"),
        (vec![("AUTOPROV_SIP_TLS_CA", no_pem.clone())], "empty-ca.pem"),
        (vec![("AUTOPROV_PROFILES_DIR", profiles.display().to_string())], "yealink.toml"),
    ] {
        let mut cmd = autoprov(dir.path());
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let (ok, _, err) = run(cmd.arg("check-config"), None);
        assert!(!ok, "{env:?} should fail");
        assert!(err.starts_with("autoprov: ") && err.trim().lines().count() == 1 && err.contains(word), "{env:?}: {err}");
    }
}

/// `autoprov backup FILE` copies the SQLite database while the server runs
/// and writes to it; the copy, put in place of another data directory's
/// database, holds every handset. An existing file is never overwritten.
async fn a_backup_taken_while_serving_restores() {
    let dir = tempfile::tempdir().unwrap();
    let mut served = serve(&mut autoprov(dir.path()));
    let mut csv = String::from("extensionnumber,name,mac\n");
    for i in 0..200 {
        csv.push_str(&format!("{},Desk {i},001565{:06x}\n", 5000 + i, 0xbb0000 + i));
    }
    let file = dir.path().join("site.csv");
    std::fs::write(&file, csv).unwrap();
    let (ok, _, err) = run(autoprov(dir.path()).args(["import", file.to_str().unwrap()]), None);
    assert!(ok, "{err}");

    let backups = tempfile::tempdir().unwrap();
    let copy = backups.path().join("autoprov-backup.db");
    let (ok, out, err) = run(autoprov(dir.path()).args(["backup", copy.to_str().unwrap()]), None);
    assert!(ok && out.contains("copied"), "{out}{err}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let (ok, _, err) = run(autoprov(dir.path()).args(["backup", copy.to_str().unwrap()]), None);
    assert!(!ok && err.contains("exists"), "an existing file is not overwritten: {err}");
    sigterm(&served.child);
    assert!(served.exited_within(Duration::from_secs(10)).is_some());

    // Restore: the copy becomes another server's database.
    let restored = tempfile::tempdir().unwrap();
    std::fs::copy(&copy, restored.path().join("autoprov.db")).unwrap();
    let (ok, out, err) = run(autoprov(restored.path()).args(["export"]), None);
    assert!(ok, "{err}");
    assert_eq!(out.lines().filter(|l| l.starts_with('5')).count(), 200, "{out}");
    assert!(out.contains("5199,Desk 199"), "{out}");
}

/// `AUTOPROV_LOG_FORMAT=json`: every line of the log is one JSON object,
/// whatever a client sent.
async fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut served = serve(autoprov(dir.path()).env("AUTOPROV_LOG_FORMAT", "json"));
    let http = served.addr("HTTP  listening on ");
    for path in ["/p/nosuchtoken/001565aabbcc.cfg", "/%0aforged%20line.cfg", "/x%1b%5b31m.cfg"] {
        let _ = crate::harness::plain_client().get(format!("http://{http}{path}")).send().await;
    }
    sigterm(&served.child);
    assert!(served.exited_within(Duration::from_secs(10)).is_some());
    let log = served.log();
    assert!(log.lines().count() >= 3, "{log}");
    for line in log.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string() && v["timestamp"].is_string(), "{line}");
    }
}
