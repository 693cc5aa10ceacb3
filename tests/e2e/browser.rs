//! The admin UI in a real browser: headless Chromium driven over WebDriver
//! (chromedriver), against the real server, with a real phone peer (a UDP
//! socket that receives the NOTIFY, then fetches its file over HTTP).
//!
//! Needs chromedriver and Chromium (Debian's chromium-driver and chromium,
//! found by `peers`). The screenshot it takes is written under the target
//! directory.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use reqwest::StatusCode;
use serde_json::json;
use tokio::process::{Child, Command};

use crate::harness::{plain_client, Backend, TestServer, ADMIN};
use crate::provisioning::{http_get_path, phone as a_phone};
use crate::push::{quick_push, Phone};

/// An installer: an admin of a tenant, not a superuser.
const INSTALLER: (&str, &str) = ("installer@acme", "installer-password-1");

/// chromedriver on a free loopback port, killed when dropped.
struct Driver {
    _child: Child,
    url: String,
}

impl Driver {
    async fn start(path: &std::path::Path) -> Driver {
        let path = path.display();
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(path.to_string())
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {path}: {e}"));
        let url = format!("http://127.0.0.1:{port}");
        for _ in 0..100 {
            if let Ok(r) = plain_client().get(format!("{url}/status")).send().await {
                if r.status().is_success() {
                    return Driver { _child: child, url };
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{path} did not answer on port {port} within 10 s");
    }

    /// A headless Chromium session that talks to nothing but us.
    async fn browser(&self, profile: &std::path::Path) -> Client {
        let chromium = crate::peers::chromium().expect("Chromium (the test needs it)");
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,1000",
        ];
        let mut args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        let caps = json!({
            "browserName": "chrome",
            // The server's certificate is self-signed.
            "acceptInsecureCerts": true,
            "goog:chromeOptions": { "binary": chromium, "args": args },
        });
        let serde_json::Value::Object(caps) = caps else { unreachable!() };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        ClientBuilder::new(connector).capabilities(caps).connect(&self.url).await.expect("a Chromium session")
    }
}

async fn text(b: &Client, css: &str) -> String {
    b.wait().at_most(Duration::from_secs(5)).for_element(Locator::Css(css)).await.unwrap().text().await.unwrap()
}

async fn type_into(b: &Client, css: &str, value: &str) {
    let field = b.wait().at_most(Duration::from_secs(5)).for_element(Locator::Css(css)).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(value).await.unwrap();
}

async fn click(b: &Client, css: &str) {
    b.wait().at_most(Duration::from_secs(5)).for_element(Locator::Css(css)).await.unwrap().click().await.unwrap();
}

/// The screenshot's path: under cargo's target directory for tests.
fn screenshot_path() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("admin-ui-applied.png")
}

async fn an_installer_claims_a_booting_phone_and_watches_it_apply_in_the_browser() {
    let driver_path = crate::peers::chromedriver().expect("chromedriver (the test needs it)");
    let srv = TestServer::start_with(Backend::Sqlite, quick_push).await;
    srv.add_user(INSTALLER.0, INSTALLER.1, "admin", false).await;
    let driver = Driver::start(&driver_path).await;
    let profile = tempfile::tempdir().unwrap();
    let b = driver.browser(profile.path()).await;
    let result = tokio::time::timeout(Duration::from_secs(120), installer_session(&srv, &b)).await;
    let _ = b.close().await;
    result.expect("the browser session finished within 2 minutes");
    srv.stop().await;
}

async fn installer_session(srv: &TestServer, b: &Client) {
    let p = a_phone("yealink");
    // Log in: the UI sends us to the login page and back.
    b.goto(&srv.url("/admin/handsets")).await.unwrap();
    assert!(b.current_url().await.unwrap().path().ends_with("/admin/login"));
    type_into(b, "#login", INSTALLER.0).await;
    type_into(b, "#password", INSTALLER.1).await;
    click(b, "#submit").await;
    assert_eq!(text(b, "#who").await, INSTALLER.0);
    assert_eq!(b.current_url().await.unwrap().path(), "/admin/handsets");

    // The Domain page gives the URL to put in the site's DHCP: the site's
    // booting phones that use it show up here.
    b.goto(&srv.url("/admin/domain")).await.unwrap();
    let site_url = text(b, "#provisioningurl-http").await;
    assert!(site_url.starts_with(&format!("http://localhost:{}/p/", srv.http().port())), "{site_url}");
    let path = format!("{}{}", &site_url[format!("http://localhost:{}", srv.http().port()).len()..], &p.file);
    b.goto(&srv.url("/admin/handsets")).await.unwrap();

    // Create a handset.
    type_into(b, "#new-ext", "2000").await;
    type_into(b, "#new-name", "Reception").await;
    click(b, "#new-submit").await;
    assert_eq!(text(b, "#message").await, "Handset created.");
    assert_eq!(text(b, "#provisioning").await, "never fetched");
    // The voice platform reports where the phone registers: our peer socket.
    let phone = Phone::new().await;
    let report = json!({"state": "Idle", "registrationaddress": phone.addr().to_string()});
    let (s, v) = srv.call(reqwest::Method::PUT, "/api/handsetstatus/2000?domain=acme", ADMIN, Some(report)).await;
    assert_eq!(s, StatusCode::OK, "{v}");

    // Watch the unknown phones (the page refreshes itself, no script), and
    // boot the phone: it asks for its file and is refused as unknown.
    b.goto(&srv.url("/admin/devices")).await.unwrap();
    click(b, "#autorefresh").await;
    let (status, _, _) = http_get_path(srv, &path, Some(&p.ua)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let row = format!("#device-{}", &p.mac);
    let appeared = b.wait().at_most(Duration::from_secs(15)).for_element(Locator::Css(&row)).await;
    assert!(appeared.is_ok(), "the booting phone appears on the unknown-phones page");
    assert!(text(b, &row).await.contains(&p.model), "with the model it reported");

    // Claim it for extension 2000 in one step.
    type_into(b, &format!("#claim-ext-{}", &p.mac), "2000").await;
    click(b, &format!("#claim-{}", &p.mac)).await;
    assert!(text(b, "#message").await.starts_with("Phone claimed"));
    assert_ne!(text(b, "#provisioning").await, "applied");

    // The push reaches the phone, which fetches its new file.
    let notify = phone.next(Duration::from_secs(10)).await.expect("the phone gets a NOTIFY");
    assert!(notify.request_line().starts_with("NOTIFY sip:"), "{}", notify.text);
    phone.answer(&notify, "200 OK", "").await;
    let (status, _, body) = http_get_path(srv, &path, Some(&p.ua)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("account.1.user_name = 2000"));

    // The badge turns to applied.
    let mut state = String::new();
    for _ in 0..100 {
        b.refresh().await.unwrap();
        state = text(b, "#provisioning").await;
        if state == "applied" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(state, "applied", "the badge after the phone's fetch");
    assert!(text(b, "#last-fetch").await.contains(&p.file));
    assert!(text(b, "#preview").await.contains("account.1.password = ********"));
    let png = b.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000, "a real screenshot ({} bytes)", png.len());
    let path = screenshot_path();
    std::fs::write(&path, &png).unwrap();
    eprintln!("screenshot of the applied handset: {}", path.display());

    // The list shows the same badge; then log out.
    b.goto(&srv.url("/admin/handsets")).await.unwrap();
    assert_eq!(text(b, "#row-2000 .badge[data-state]").await, "applied");
    click(b, "#logout").await;
    assert_eq!(text(b, "#message").await, "You have logged out.");
    b.goto(&srv.url("/admin/handsets")).await.unwrap();
    assert!(b.current_url().await.unwrap().path().ends_with("/admin/login"), "logged out for good");
}

crate::e2e!(
    an_installer_claims_a_booting_phone_and_watches_it_apply_in_the_browser needs [Chromium],
);
