//! The admin web UI over real HTTPS, as a browser without JavaScript sees
//! it: redirects, cookies, forms. (The headless Chromium run is `browser`.)

use std::collections::HashMap;
use std::sync::Mutex;

use reqwest::header::{HeaderMap, HeaderValue, COOKIE, LOCATION, ORIGIN, SET_COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::both_backends;
use crate::harness::{https_client_builder, plain_client, Backend, TestServer, ADMIN};
use crate::provisioning::{http_get, phone as a_phone, phones};

/// A page as the client received it.
pub struct Page {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    pub fn location(&self) -> &str {
        self.headers.get(LOCATION).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    /// The CSRF token the page's forms carry.
    pub fn csrf(&self) -> String {
        let start = self.body.find("name=\"csrf\" value=\"").unwrap_or_else(|| panic!("no form on page: {}", self.body));
        let rest = &self.body[start + "name=\"csrf\" value=\"".len()..];
        rest[..rest.find('"').unwrap()].to_string()
    }

    #[track_caller]
    pub fn assert_redirect(&self, to: &str) {
        assert_eq!((self.status, self.location()), (StatusCode::SEE_OTHER, to), "{}", self.body);
    }
}

/// A cookie-keeping client that does not follow redirects.
pub struct Ui {
    client: reqwest::Client,
    base: String,
    pub cookies: Mutex<HashMap<String, String>>,
}

impl Ui {
    pub fn new(srv: &TestServer) -> Ui {
        let client =
            https_client_builder(&srv.running().tls_cert_path, None).redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Ui { client, base: srv.url(""), cookies: Mutex::new(HashMap::new()) }
    }

    /// A request to `path` (send it with [`Ui::send`], which adds the cookies).
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, format!("{}{path}", self.base))
    }

    pub fn origin(&self) -> String {
        self.base.trim_end_matches('/').to_string()
    }

    pub async fn send(&self, req: reqwest::RequestBuilder) -> Page {
        let jar = self.cookies.lock().unwrap().iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ");
        let req = if jar.is_empty() { req } else { req.header(COOKIE, jar) };
        let resp = req.send().await.expect("request reaches the server");
        let (status, headers) = (resp.status(), resp.headers().clone());
        for c in headers.get_all(SET_COOKIE) {
            let c = c.to_str().unwrap();
            let (pair, attrs) = c.split_once(';').unwrap_or((c, ""));
            let (k, v) = pair.split_once('=').unwrap();
            if attrs.contains("Max-Age=0") {
                self.cookies.lock().unwrap().remove(k);
            } else {
                self.cookies.lock().unwrap().insert(k.to_string(), v.to_string());
            }
        }
        Page { status, headers, body: resp.text().await.unwrap() }
    }

    pub async fn get(&self, path: &str) -> Page {
        self.send(self.client.get(format!("{}{path}", self.base))).await
    }

    /// A form post as a browser sends it (with this site's Origin).
    pub async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        let origin = HeaderValue::from_str(&self.origin()).unwrap();
        self.send(self.client.post(format!("{}{path}", self.base)).header(ORIGIN, origin).form(fields)).await
    }

    pub async fn post_with(&self, path: &str, fields: &[(&str, &str)], origin: Option<&str>) -> Page {
        let mut req = self.client.request(Method::POST, format!("{}{path}", self.base)).form(fields);
        if let Some(o) = origin {
            req = req.header(ORIGIN, o);
        }
        self.send(req).await
    }

    pub async fn login(&self, login: &str, password: &str) -> Page {
        let form = self.get("/admin/login?next=/admin/handsets").await;
        let csrf = form.csrf();
        self.post("/admin/login", &[("csrf", &csrf), ("login", login), ("password", password), ("next", "/admin/handsets")]).await
    }

    /// Logs in and returns the session's CSRF token.
    pub async fn logged_in(srv: &TestServer, login: (&str, &str)) -> (Ui, String) {
        let ui = Ui::new(srv);
        ui.login(login.0, login.1).await.assert_redirect("/admin/handsets");
        let page = ui.get("/admin/handsets").await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let csrf = page.csrf();
        (ui, csrf)
    }
}

async fn the_ui_needs_https_and_a_login() {
    let srv = TestServer::start(Backend::Sqlite).await;
    let resp = plain_client().get(srv.plain_url("/admin/handsets")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_ACCEPTABLE);

    let ui = Ui::new(&srv);
    for path in ["/admin/handsets", "/admin/handsets/100", "/admin/devices", "/admin/import", "/admin/domain"] {
        let page = ui.get(path).await;
        let next: String = url_encode(path);
        page.assert_redirect(&format!("/admin/login?next={next}"));
    }
    // Posts without a session write nothing.
    ui.post("/admin/handsets", &[("extensionnumber", "100")]).await.assert_redirect("/admin/login?next=%2Fadmin%2Fhandsets");
    ui.cookies.lock().unwrap().insert("__Host-autoprov-session".into(), "forged".into());
    ui.get("/admin/domain").await.assert_redirect("/admin/login?next=%2Fadmin%2Fdomain");
    assert_eq!(srv.get("/api/handset/100").await.0, StatusCode::NOT_FOUND);

    // The login form's own token: a post without its cookie is refused.
    let stranger = Ui::new(&srv);
    let page = stranger.post("/admin/login", &[("csrf", "x"), ("login", ADMIN.0), ("password", ADMIN.1)]).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(!stranger.cookies.lock().unwrap().contains_key("__Host-autoprov-session"));

    let page = ui.login(ADMIN.0, "wrong-password").await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    assert!(page.body.contains("Wrong login or password"));

    // A good login: the session cookie's attributes, and no open redirect.
    let form = ui.get("/admin/login").await;
    let csrf = form.csrf();
    let page = ui
        .post("/admin/login", &[("csrf", &csrf), ("login", ADMIN.0), ("password", ADMIN.1), ("next", "https://evil.example/")])
        .await;
    page.assert_redirect("/admin/handsets");
    let cookie = page
        .headers
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|c| c.starts_with("__Host-autoprov-session="))
        .expect("a session cookie");
    for attr in ["; Path=/", "; Secure", "; HttpOnly", "; SameSite=Strict"] {
        assert!(cookie.contains(attr), "{cookie} lacks {attr}");
    }
    let page = ui.get("/admin/handsets").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("admin@default"));
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(page.headers["cache-control"], "no-store");
    assert!(!page.body.contains("http://") && !page.body.contains("https://"), "nothing loaded from elsewhere");
    let css = ui.get("/admin/static/admin.css").await;
    assert_eq!((css.status, css.headers["content-type"].to_str().unwrap()), (StatusCode::OK, "text/css; charset=utf-8"));
    assert!(!css.body.contains("url("), "the stylesheet loads nothing");
    assert_eq!(ui.get("/admin/nothing-here").await.status, StatusCode::NOT_FOUND);

    // Logging out takes the CSRF token too, and ends the session for good.
    let session = ui.cookies.lock().unwrap()["__Host-autoprov-session"].clone();
    assert_eq!(ui.post("/admin/logout", &[]).await.status, StatusCode::FORBIDDEN);
    ui.post("/admin/logout", &[("csrf", &page.csrf())]).await.assert_redirect("/admin/login?done=logout");
    assert!(!ui.cookies.lock().unwrap().contains_key("__Host-autoprov-session"), "the cookie is cleared");
    ui.cookies.lock().unwrap().insert("__Host-autoprov-session".into(), session);
    ui.get("/admin/handsets").await.assert_redirect("/admin/login?next=%2Fadmin%2Fhandsets");

    // A new password ends the user's sessions.
    let (ui, _) = Ui::logged_in(&srv, ADMIN).await;
    let hash = autoprov::auth::password::hash(&autoprov::model::Secret::new(ADMIN.1));
    let actor = autoprov::store::Actor { login: "test".into(), client_ip: None };
    srv.running().store.set_user_password(&actor, "admin", "default", &hash).await.unwrap();
    ui.get("/admin/domain").await.assert_redirect("/admin/login?next=%2Fadmin%2Fdomain");

    // The API's failed-login limits hold for the login form as well.
    let guesser = Ui::new(&srv);
    let mut last = StatusCode::OK;
    for _ in 0..11 {
        last = guesser.login("nobody@default", "guess").await.status;
    }
    assert_eq!(last, StatusCode::TOO_MANY_REQUESTS);
    assert!(guesser.login("nobody@default", "guess").await.body.contains("Too many failed logins"));
    srv.stop().await;
}

fn url_encode(s: &str) -> String {
    s.replace('/', "%2F")
}

both_backends!(
    every_form_needs_the_session_csrf_token,
    tenants_stay_apart_in_the_ui,
    the_ui_edits_previews_imports_and_configures
);

async fn every_form_needs_the_session_csrf_token(b: Backend) {
    let srv = TestServer::start(b).await;
    let (ui, csrf) = Ui::logged_in(&srv, ADMIN).await;
    let create = |token: &'static str| [("csrf", token), ("extensionnumber", "100"), ("name", "Reception")];
    for (fields, origin) in
        [(vec![("extensionnumber", "100")], Some(ui.origin())), (create("not-the-token").to_vec(), Some(ui.origin()))]
    {
        let page = ui.post_with("/admin/handsets", &fields, origin.as_deref()).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.body);
        assert!(page.body.contains("did not come from this site"));
    }
    // The right token from another site's page is refused too.
    let fields = [("csrf", csrf.as_str()), ("extensionnumber", "100")];
    let page = ui.post_with("/admin/handsets", &fields, Some("https://evil.example")).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    // Another session's token is not this session's.
    let (other, other_csrf) = Ui::logged_in(&srv, ADMIN).await;
    assert_ne!(csrf, other_csrf);
    let page = other.post("/admin/handsets", &[("csrf", &csrf), ("extensionnumber", "100")]).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert_eq!(srv.get("/api/handset/100").await.0, StatusCode::NOT_FOUND, "nothing was written");

    // With the token (and without an Origin header, as some clients send).
    let page = ui.post_with("/admin/handsets", &[("csrf", &csrf), ("extensionnumber", "100"), ("name", "Reception")], None).await;
    page.assert_redirect("/admin/handsets/100?done=created");
    let (s, h) = srv.get("/api/handset/100").await;
    assert_eq!((s, h["name"].as_str()), (StatusCode::OK, Some("Reception")));
    assert_eq!(h["password"].as_str().unwrap().len(), 20, "a generated password");
    for path in [
        "/admin/handsets/100",
        "/admin/handsets/100/resync",
        "/admin/handsets/100/delete",
        "/admin/devices/claim",
        "/admin/domain",
        "/admin/switch",
    ] {
        let page = ui.post(path, &[("csrf", "nope"), ("confirm", "1"), ("name", "x")]).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{path}");
    }
    let (_, after) = srv.get("/api/handset/100").await;
    assert_eq!(after["revision"], h["revision"], "nothing changed");
    srv.stop().await;
}

async fn tenants_stay_apart_in_the_ui(b: Backend) {
    let srv = TestServer::start(b).await;
    srv.create_handset(json!({"extensionnumber": "100", "name": "Default reception", "mac": a_phone("yealink").mac})).await;
    srv.add_user("boss@acme", "boss-password-123", "admin", false).await;
    srv.add_user("viewer@acme", "viewer-password-123", "readonly", false).await;
    // An unknown phone boots somewhere.
    let p = phones().iter().find(|p| p.family != "yealink").unwrap();
    assert_eq!(http_get(&srv, &p.file, Some(&p.ua)).await.0, StatusCode::NOT_FOUND);
    crate::harness::wait_for_unknown_device(&srv, &p.mac).await;

    let (boss, csrf) = Ui::logged_in(&srv, ("boss@acme", "boss-password-123")).await;
    let list = boss.get("/admin/handsets").await;
    assert!(!list.body.contains("Default reception") && list.body.contains("No handsets"));
    assert_eq!(boss.get("/admin/handsets/100").await.status, StatusCode::NOT_FOUND);
    for (path, fields) in [
        ("/admin/handsets/100", vec![("csrf", csrf.as_str()), ("name", "Hijacked")]),
        ("/admin/handsets/100/resync", vec![("csrf", csrf.as_str())]),
        ("/admin/handsets/100/delete", vec![("csrf", csrf.as_str()), ("confirm", "1")]),
    ] {
        assert_eq!(boss.post(path, &fields).await.status, StatusCode::NOT_FOUND, "{path}");
    }
    let (_, h) = srv.get("/api/handset/100").await;
    assert_eq!((h["name"].as_str(), h["revision"].as_i64()), (Some("Default reception"), Some(1)));
    // Not a superuser: no domain switch; unknown phones only under the
    // domain's token or from its site networks (this one came under the
    // default domain's token); a MAC another tenant has is a conflict.
    assert_eq!(boss.post("/admin/switch", &[("csrf", &csrf), ("domain", "default")]).await.status, StatusCode::FORBIDDEN);
    let devices = boss.get("/admin/devices").await;
    assert!(!devices.body.contains(&p.mac) && devices.body.contains("none named"), "{}", devices.body);
    let domain = [
        ("csrf", csrf.as_str()),
        ("sipport", "5060"),
        ("siptransport", "udp"),
        ("timezone", "UTC"),
        ("amiport", "5038"),
        ("pushbackend", "direct"),
    ];
    let page = boss.post("/admin/domain", &[&domain[..], &[("sitenetworks", "the office")]].concat()).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.body.contains("sitenetworks") && page.body.contains("value=\"the office\""));
    boss.post("/admin/domain", &[&domain[..], &[("sitenetworks", "10.1.0.0/16")]].concat())
        .await
        .assert_redirect("/admin/domain?done=saved");
    assert!(!boss.get("/admin/devices").await.body.contains(&p.mac), "not from the site's network");
    boss.post("/admin/domain", &[&domain[..], &[("sitenetworks", "10.1.0.0/16, 127.0.0.1")]].concat())
        .await
        .assert_redirect("/admin/domain?done=saved");
    let devices = boss.get("/admin/devices").await;
    assert!(
        devices.body.contains(&format!("id=\"device-{}\"", &p.mac)) && devices.body.contains("127.0.0.1/32"),
        "{}",
        devices.body
    );
    // A MAC the tenant never saw is no device of its own to claim.
    let claim = [("csrf", csrf.as_str()), ("mac", a_phone("yealink").mac.as_str()), ("extensionnumber", "200")];
    let page = boss.post("/admin/devices/claim", &claim).await;
    assert_eq!(page.status, StatusCode::NOT_FOUND, "{}", page.body);
    assert!(page.body.contains("Device not found"));
    // Readonly users look but do not touch.
    let (viewer, vcsrf) = Ui::logged_in(&srv, ("viewer@acme", "viewer-password-123")).await;
    assert!(!viewer.get("/admin/handsets").await.body.contains("New handset"));
    let page = viewer.post("/admin/handsets", &[("csrf", &vcsrf), ("extensionnumber", "300")]).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert_eq!(viewer.post("/admin/domain", &[("csrf", &vcsrf), ("sipport", "5060")]).await.status, StatusCode::FORBIDDEN);

    // The Domain page: the URL for the site's phones (the token hidden from
    // read-only users), and a new one on demand, for admins only.
    let boss_login = ("boss@acme", "boss-password-123");
    let (_, d) = srv.call(Method::GET, "/api/domain", boss_login, None).await;
    let token = d["provisioningtoken"].as_str().unwrap().to_string();
    let page = boss.get("/admin/domain").await;
    assert!(page.body.contains(&format!("/p/{token}/")), "{}", page.body);
    let page = viewer.get("/admin/domain").await;
    assert!(!page.body.contains(&token) && page.body.contains("/p/***/"), "{}", page.body);
    assert_eq!(viewer.post("/admin/domain/token", &[("csrf", &vcsrf)]).await.status, StatusCode::FORBIDDEN);
    assert_eq!(
        boss.post("/admin/domain/token", &[("csrf", &csrf), ("gracehours", "many")]).await.status,
        StatusCode::BAD_REQUEST
    );
    boss.post("/admin/domain/token", &[("csrf", &csrf), ("gracehours", "0")]).await.assert_redirect("/admin/domain?done=rotated");
    let (_, d) = srv.call(Method::GET, "/api/domain", boss_login, None).await;
    let rotated = d["provisioningtoken"].as_str().unwrap();
    assert_ne!(rotated, token);
    assert!(boss.get("/admin/domain?done=rotated").await.body.contains(&format!("/p/{rotated}/")));

    // The superuser switches to acme and acts there.
    let (admin, acsrf) = Ui::logged_in(&srv, ADMIN).await;
    assert!(admin.get("/admin/devices").await.body.contains(&p.mac), "superusers see unknown phones");
    admin.post("/admin/switch", &[("csrf", &acsrf), ("domain", "acme")]).await.assert_redirect("/admin/handsets");
    admin
        .post("/admin/handsets", &[("csrf", &acsrf), ("extensionnumber", "100")])
        .await
        .assert_redirect("/admin/handsets/100?done=created");
    let (s, _) = srv.call(Method::GET, "/api/handset/100", ("boss@acme", "boss-password-123"), None).await;
    assert_eq!(s, StatusCode::OK, "created in acme");
    assert_eq!(admin.post("/admin/switch", &[("csrf", &acsrf), ("domain", "nowhere")]).await.status, StatusCode::NOT_FOUND);
    srv.stop().await;
}

async fn the_ui_edits_previews_imports_and_configures(b: Backend) {
    let srv = TestServer::start(b).await;
    let (ui, csrf) = Ui::logged_in(&srv, ADMIN).await;
    let password = "Sekret-Pass-99";
    let created = ui
        .post(
            "/admin/handsets",
            &[
                ("csrf", &csrf),
                ("extensionnumber", "300"),
                ("name", "Desk"),
                ("mac", "00:15:65:12:34:56"),
                ("model", "T46S"),
                ("password", password),
            ],
        )
        .await;
    created.assert_redirect("/admin/handsets/300?done=created");
    // The same extension again: the API's 409, with the form kept.
    let again = ui.post("/admin/handsets", &[("csrf", &csrf), ("extensionnumber", "300"), ("name", "Twice")]).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert!(again.body.contains("Extension number already exists") && again.body.contains("value=\"Twice\""));

    // The preview is the phone's file, with the password masked.
    let page = ui.get("/admin/handsets/300?done=created").await;
    assert!(page.body.contains("Handset created."));
    assert!(
        page.body.contains("account.1.user_name = 300") && page.body.contains("account.1.password = ********"),
        "{}",
        page.body
    );
    assert!(!page.body.contains(password), "the SIP password never reaches the page");
    assert!(page.body.contains("never fetched"));

    // Edits are validated as the API validates them; a refused edit changes nothing.
    let (_, before) = srv.get("/api/handset/300").await;
    let edit = |name: &'static str, mac: &'static str, settings: &'static str| {
        vec![
            ("csrf", csrf.clone()),
            ("name", name.into()),
            ("mac", mac.into()),
            ("model", "T46S".into()),
            ("settings", settings.into()),
        ]
    };
    for (fields, want) in [
        (edit("Front desk", "zz:zz", ""), "MAC"),
        (edit("Front desk", "00:15:65:12:34:56", "no equals sign"), "settings: line 1"),
        (edit("Front\u{7}desk", "00:15:65:12:34:56", ""), "name"),
    ] {
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let page = ui.post("/admin/handsets/300", &fields).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{}", page.body);
        assert!(page.body.contains(want), "{want}: {}", page.body);
    }
    let (_, unchanged) = srv.get("/api/handset/300").await;
    assert_eq!(unchanged, before);
    let fields = edit("Front desk", "00:15:65:12:34:56", "lang.gui = English");
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    ui.post("/admin/handsets/300", &fields).await.assert_redirect("/admin/handsets/300?done=saved");
    let (_, h) = srv.get("/api/handset/300").await;
    assert_eq!((h["name"].as_str(), h["password"].as_str()), (Some("Front desk"), Some(password)), "a blank password keeps it");
    assert_eq!((h["settings"]["lang.gui"].as_str(), h["revision"].as_i64()), (Some("English"), Some(2)));
    ui.post("/admin/handsets/300", &fields).await.assert_redirect("/admin/handsets/300?done=unchanged");
    ui.post("/admin/handsets/300/resync", &[("csrf", &csrf)]).await.assert_redirect("/admin/handsets/300?done=resync");
    let (_, h) = srv.get("/api/handset/300").await;
    assert_ne!(h["provisioning"]["pushstate"], "none", "a push is queued");
    let page = ui.get("/admin/handsets/300").await;
    assert!(page.body.contains("handset.update") && page.body.contains("handset.resync"), "history: {}", page.body);

    // Import: a broken file shows every refused row and writes nothing.
    let broken = "extensionnumber,name,mac,recording\n400,A,001565000001,true\n401,B,bad-mac,false\n,C,001565000003,true\n\
                  403,D,001565000004,perhaps\n400,E,001565000005,true\n405,F,001565123456,true\n";
    let page = upload(&ui, &csrf, broken.as_bytes(), &[]).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{}", page.body);
    for line in ["<td>3</td>", "<td>4</td>", "<td>5</td>", "<td>6</td>", "<td>7</td>"] {
        assert!(page.body.contains(line), "line {line} reported: {}", page.body);
    }
    assert!(page.body.contains("MAC 001565123456 already in use") && page.body.contains("nothing was written"));
    assert_eq!(srv.get("/api/handset/400").await.0, StatusCode::NOT_FOUND, "nothing written");
    let mut site = String::from("extensionnumber,name,mac\n");
    for i in 0..200 {
        site.push_str(&format!("{},Phone {i},0015650{i:05}\n", 1000 + i));
    }
    let page = upload(&ui, &csrf, site.as_bytes(), &[("dryrun", "1")]).await;
    assert!(page.body.contains("200 row(s)") && page.body.contains("dry run"), "{}", page.body);
    assert_eq!(srv.get("/api/handset/1000").await.0, StatusCode::NOT_FOUND);
    let page = upload(&ui, &csrf, site.as_bytes(), &[]).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("200 created, 0 updated, 0 unchanged"), "{}", page.body);
    let (_, all) = srv.get("/api/handset?maxresults=1000").await;
    assert_eq!(all.as_array().unwrap().len(), 201);
    // 201 handsets: pages of 50 in extension order, and the search box.
    let first = ui.get("/admin/handsets").await;
    assert!(first.body.contains("id=\"row-1049\"") && !first.body.contains("id=\"row-1050\""));
    let href = first.body.split("href=\"").find(|h| h.starts_with("/admin/handsets?")).expect("a next-page link");
    let second = ui.get(&href[..href.find('"').unwrap()].replace("&#38;", "&")).await;
    assert!(second.body.contains("id=\"row-1050\"") && !second.body.contains("id=\"row-1049\""), "{}", second.body);
    let found = ui.get("/admin/handsets?q=1199").await;
    assert!(found.body.contains("id=\"row-1199\"") && !found.body.contains("id=\"row-1000\""));
    let found = ui.get("/admin/handsets?q=Phone+7").await;
    assert!(
        found.body.contains("id=\"row-1007\"")
            && found.body.contains("id=\"row-1070\"")
            && !found.body.contains("id=\"row-1008\"")
    );
    let page = upload(&ui, "wrong", site.as_bytes(), &[("update", "1")]).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "the upload needs the token too");

    // Domain settings.
    let domain = [
        ("csrf", csrf.as_str()),
        ("sipserver", "sip.example.com"),
        ("sipport", "5060"),
        ("siptransport", "udp"),
        ("timezone", "Europe/London"),
        ("ntpserver", "pool.ntp.org"),
        ("pushbackend", "direct"),
        ("amiport", "5038"),
        ("amicontext", "office-calls"),
        ("claimcreates", "1"),
    ];
    assert!(ui.get("/admin/domain").await.body.contains("name=\"amicontext\" id=\"amicontext\" value=\"from-internal\""));
    ui.post("/admin/domain", &domain).await.assert_redirect("/admin/domain?done=saved");
    let (_, d) = srv.get("/api/domain").await;
    assert_eq!((d["sipserver"].as_str(), d["claimcreates"].as_bool()), (Some("sip.example.com"), Some(true)));
    assert_eq!(d["amicontext"], "office-calls");
    let bad_context: Vec<(&str, &str)> =
        domain.iter().map(|&(k, v)| if k == "amicontext" { (k, "office calls") } else { (k, v) }).collect();
    let page = ui.post("/admin/domain", &bad_context).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.body.contains("amicontext: must be a dialplan context") && page.body.contains("value=\"office calls\""));
    let mut bad = domain.to_vec();
    bad[2] = ("sipport", "99999");
    let page = ui.post("/admin/domain", &bad).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.body.contains("sipport") && page.body.contains("value=\"99999\""));
    assert!(ui.get("/admin/handsets/300").await.body.contains("account.1.sip_server.1.address = sip.example.com"));

    // Delete needs the box ticked.
    assert_eq!(ui.post("/admin/handsets/300/delete", &[("csrf", &csrf)]).await.status, StatusCode::BAD_REQUEST);
    ui.post("/admin/handsets/300/delete", &[("csrf", &csrf), ("confirm", "1")])
        .await
        .assert_redirect("/admin/handsets?done=deleted");
    assert_eq!(srv.get("/api/handset/300").await.0, StatusCode::NOT_FOUND);
    srv.stop().await;
}

pub async fn upload(ui: &Ui, csrf: &str, csv: &[u8], flags: &[(&'static str, &'static str)]) -> Page {
    let mut form = reqwest::multipart::Form::new().text("csrf", csrf.to_string());
    for (k, v) in flags {
        form = form.text(*k, *v);
    }
    let part = reqwest::multipart::Part::bytes(csv.to_vec()).file_name("site.csv").mime_str("text/csv").unwrap();
    form = form.part("file", part);
    ui.send(ui.client.post(format!("{}/admin/import", ui.base)).header(ORIGIN, ui.origin()).multipart(form)).await
}

crate::e2e!(the_ui_needs_https_and_a_login,);
