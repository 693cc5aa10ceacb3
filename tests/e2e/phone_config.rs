//! A simulated phone's reading of its SIP account: the user, auth user,
//! password and registrar it finds in the files of its boot sequence, read
//! as its vendor writes them. The keys come from the vendors' guides
//! (`tests/fixtures/account-keys.tsv`, each row citing its source), never
//! from our templates, so a template that writes the account under the
//! wrong key makes the phone fail to register, as a real one would.

use std::collections::HashMap;

use autoprov::profiles::{BootAnswer, Profiles};
use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{Backend, TestServer};

/// A SIP account as a phone reads it from its configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// The registration (AOR) user.
    pub user: String,
    /// The digest user name: `user` where the file names none.
    pub auth_user: String,
    pub password: String,
    /// The registrar's host (name or address, no port).
    pub host: String,
    /// The registrar's port: 5060 where the file names none.
    pub port: u16,
}

/// Where a family's files carry the account (one row of account-keys.tsv).
struct Keys {
    syntax: String,
    user: String,
    auth_user: String,
    password: String,
    server: String,
    port: String,
}

/// The rows for `family`, in file order: a family with two generations of
/// format (Gigaset's Nx70 and N510) has one row each.
fn keys(family: &str) -> Vec<Keys> {
    crate::fixtures::tsv("account-keys.tsv")
        .into_iter()
        .filter(|(_, c)| c[0] == family)
        .map(|(line, c)| {
            assert!(c.len() == 8 && !c[7].trim().is_empty(), "account-keys.tsv line {line}: 8 columns, a source last");
            let col = |i: usize| c[i].clone();
            Keys { syntax: col(1), user: col(2), auth_user: col(3), password: col(4), server: col(5), port: col(6) }
        })
        .collect()
}

/// The account in one file.
pub fn account(family: &str, body: &str) -> Result<Account, String> {
    account_from(family, &[body.to_string()])
}

/// The account in all the files a phone fetched in its boot sequence, in
/// order: each setting as the last file that names it says (a Polycom's
/// master file lists the file with the account, a Cisco's common file
/// points to its own profile, a Yealink's common file comes first).
pub fn account_from(family: &str, bodies: &[String]) -> Result<Account, String> {
    let rows = keys(family);
    if rows.is_empty() {
        return Err(format!("{family}: no row in account-keys.tsv"));
    }
    let mut why = Vec::new();
    for k in &rows {
        let mut values = HashMap::new();
        for body in bodies {
            values.extend(settings(&k.syntax, body)?);
        }
        match read_account(k, &values) {
            Ok(a) => return Ok(a),
            Err(e) => why.push(e),
        }
    }
    Err(format!("{family}: {}", why.join("; ")))
}

fn read_account(k: &Keys, values: &HashMap<String, String>) -> Result<Account, String> {
    let get = |key: &str| values.get(key).map(|v| v.trim()).filter(|v| !v.is_empty());
    let need = |key: &str| get(key).ok_or_else(|| format!("no {key}"));
    let user = user_part(need(&k.user)?);
    let auth_user = get(&k.auth_user).map(user_part).unwrap_or_else(|| user.clone());
    let server = need(&k.server)?;
    let host = host_port(server).0;
    let port = match get(&k.port) {
        Some(v) => number(v).or_else(|| host_port(v).1).ok_or_else(|| format!("{}: no port in {v:?}", k.port))?,
        None => host_port(server).1.unwrap_or(5060),
    };
    Ok(Account { user, auth_user, password: need(&k.password)?.to_string(), host, port })
}

/// `1002`, `1002@example.com` or `sip:1002@example.com` → `1002`.
fn user_part(v: &str) -> String {
    let v = v.strip_prefix("sip:").unwrap_or(v);
    v.split('@').next().unwrap_or(v).to_string()
}

/// `host`, `host:port`, `sip:host:port;transport=udp` → (host, port).
fn host_port(v: &str) -> (String, Option<u16>) {
    let v = v.strip_prefix("sip:").unwrap_or(v);
    let v = v.split(';').next().unwrap_or(v);
    match v.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h.to_string(), p.parse().ok()),
        _ => (v.to_string(), None),
    }
}

/// A port as decimal digits or Gigaset's hex (`0x13c4`).
fn number(v: &str) -> Option<u16> {
    match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(hex) => u16::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    }
}

/// The (key, value) settings of one file in `syntax`, as the phone reads
/// them: the later of two settings of the same key wins, except in
/// Panasonic's format, where the first does ("If the same parameter is
/// specified in a configuration file more than once, the value specified
/// first is applied": KX-HDV Administrator Guide 2.4).
fn settings(syntax: &str, body: &str) -> Result<HashMap<String, String>, String> {
    let pairs = match syntax {
        "equals" => lines(body, |l| l.split_once('=').map(|(k, v)| (k.trim(), v.trim()))),
        "colon" => lines(body, |l| l.split_once(':').map(|(k, v)| (k.trim(), unquote(v.trim())))),
        "quoted" => lines(body, |l| l.split_once('=').map(|(k, v)| (k, unquote(v.trim_end())))),
        "fanvil" => lines(body, |l| {
            let (k, v) = l.split_once(':')?;
            (!l.starts_with('<') && !l.starts_with("--")).then(|| (k.trim(), v.trim_end()))
        }),
        "xml-text" => xml(body, |n, out| {
            let text: String = n.children().filter(|c| c.is_text()).filter_map(|c| c.text()).collect();
            out.push((n.tag_name().name().to_string(), text.trim().to_string()));
            for (a, v) in n.attributes().map(|a| (a.name(), a.value())) {
                out.push((format!("{}[{a}={v}]", n.tag_name().name()), text.trim().to_string()));
            }
        })?,
        "xml-attr" => xml(body, |n, out| out.extend(n.attributes().map(|a| (a.name().to_string(), a.value().to_string()))))?,
        "gigaset" => xml(body, |n, out| {
            if let (Some(name), Some(v)) = (n.attribute("name").or(n.attribute("ID")), n.attribute("value")) {
                out.push((name.to_string(), unquote(v).to_string()));
            }
        })?,
        other => return Err(format!("account-keys.tsv: unknown syntax {other:?}")),
    };
    let mut map = HashMap::new();
    for (k, v) in pairs {
        if syntax == "quoted" {
            map.entry(k).or_insert(v);
        } else {
            map.insert(k, v);
        }
    }
    Ok(map)
}

/// `"value"` → `value` (Aastra may quote values; Panasonic always does,
/// Gigaset's N510 quotes strings inside its attributes).
fn unquote(v: &str) -> &str {
    v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v)
}

/// Line formats: `#` comments and lines `pair` does not split are passed
/// over, as the phones do.
fn lines<'a>(body: &'a str, pair: impl Fn(&'a str) -> Option<(&'a str, &'a str)>) -> Vec<(String, String)> {
    body.lines()
        .map(|l| l.trim_start().trim_end_matches('\r'))
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(pair)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn xml(body: &str, each: impl Fn(roxmltree::Node, &mut Vec<(String, String)>)) -> Result<Vec<(String, String)>, String> {
    let doc = roxmltree::Document::parse(body).map_err(|e| format!("not XML: {e}"))?;
    let mut out = Vec::new();
    for n in doc.descendants().filter(|n| n.is_element()) {
        each(n, &mut out);
    }
    Ok(out)
}

/// Every family's every boot sequence, over HTTPS: the phone reads the
/// account the API was given from the files it fetched, in its vendor's
/// keys. The port is not 5060, so a file that drops it fails.
async fn every_phone_reads_its_account_in_its_vendors_keys(b: Backend) {
    let srv = TestServer::start(b).await;
    let (s, d) = srv.put("/api/domain", json!({"sipserver": "registrar.phones.example", "sipport": 5062})).await;
    assert_eq!(s, StatusCode::OK, "{d}");
    let profiles = Profiles::built_in();
    let sequences = profiles.iter().flat_map(|p| p.boot.iter().map(move |s| (p, s)));
    let mut read = 0;
    // Every sequence a phone boots through to a file of ours (Cisco's
    // legacy phones are only answered with quiet 404s).
    let served = |s: &&autoprov::profiles::BootSequence| s.files.iter().any(|f| f.answer == BootAnswer::Serve);
    for (i, (profile, seq)) in sequences.filter(|(_, s)| served(s)).enumerate() {
        let what = format!("{} {}", profile.family, seq.generation);
        let mac = format!("{}{:06x}", profile.mac_ouis[0].to_ascii_lowercase(), 0xa1_0000 + i);
        let (ext, password) = (format!("{}", 7100 + i), format!("Pw-{i}-secret"));
        let mut handset = json!({"extensionnumber": ext, "mac": mac, "password": password});
        if !seq.model.is_empty() {
            handset["model"] = json!(seq.model);
        }
        srv.create_handset(handset).await;
        let ua = crate::vendor_truth::user_agent(&seq.user_agent, &mac);
        let mut bodies = Vec::new();
        for f in seq.files.iter().filter(|f| f.answer == BootAnswer::Serve) {
            let file = f.file.replace("{MAC}", &mac.to_ascii_uppercase()).replace("{mac}", &mac);
            let url = srv.url(&srv.phone_path(&file).await);
            let resp = srv.client.get(url).header("user-agent", &ua).send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK, "{what}: {file}");
            bodies.push(resp.text().await.unwrap());
        }
        let account = account_from(&profile.family, &bodies).unwrap_or_else(|e| panic!("{what}: {e}\n{}", bodies.join("\n")));
        assert_eq!(
            (account.user.as_str(), account.password.as_str(), account.host.as_str(), account.port),
            (ext.as_str(), password.as_str(), "registrar.phones.example", 5062),
            "{what}"
        );
        assert_eq!(account.auth_user, ext, "{what}");
        read += 1;
    }
    assert!(read >= profiles.iter().count(), "every family boots at least once ({read} sequences)");
    srv.stop().await;
}

/// Each syntax on a snippet in the form of the vendor's own examples.
async fn each_vendor_syntax_reads_an_account() {
    let cases: [(&str, &str, [&str; 5]); 11] = [
        (
            "yealink",
            "#!version:1.0.0.1\naccount.1.user_name = 1001\naccount.1.auth_name = a1001\naccount.1.password = pw 1\n\
             account.1.sip_server.1.address = pbx.example.com\naccount.1.sip_server.1.port = 5070\n",
            ["1001", "a1001", "pw 1", "pbx.example.com", "5070"],
        ),
        (
            "polycom",
            r#"<?xml version="1.0" standalone="yes"?><polycomConfig><reg reg.1.address="1002@polycom.com"
               reg.1.auth.userId="a1002" reg.1.auth.password="pw2" reg.1.server.1.address="10.0.0.5" reg.1.server.1.port=""/></polycomConfig>"#,
            ["1002", "a1002", "pw2", "10.0.0.5", "5060"],
        ),
        (
            "snom",
            r#"<settings><phone-settings><user_name idx="2" perm="R">other</user_name><user_name idx="1" perm="R">1003</user_name>
               <user_pass idx="1" perm="R">pw3</user_pass><user_host idx="1" perm="R">sip.example.org</user_host>
               <user_outbound idx="1" perm="R">sip.example.org:5080;transport=udp</user_outbound></phone-settings></settings>"#,
            ["1003", "1003", "pw3", "sip.example.org", "5080"],
        ),
        (
            "cisco",
            r#"<flat-profile><Proxy_1_ ua="na">example.com:5061</Proxy_1_><User_ID_1_ ua="na">4081001141</User_ID_1_>
               <Password_1_ ua="na">pw4</Password_1_></flat-profile>"#,
            ["4081001141", "4081001141", "pw4", "example.com", "5061"],
        ),
        (
            "grandstream",
            "<gs_provision version=\"1\"><config version=\"1\"><P47>proxy01.sipphone.com</P47><P35>1005</P35><P36>a1005</P36>\
             <P34>pw5</P34></config></gs_provision>",
            ["1005", "a1005", "pw5", "proxy01.sipphone.com", "5060"],
        ),
        (
            "htek",
            r#"<hl_provision version="1"><config version="1"><P47 para="Account1.Sipserver">10.1.1.1:5060</P47>
               <P35 para="Account1.SipUserId">1006</P35><P34 para="Account1.AuthenticatePassword">pw6</P34></config></hl_provision>"#,
            ["1006", "1006", "pw6", "10.1.1.1", "5060"],
        ),
        (
            "fanvil",
            "<<VOIP CONFIG FILE>>Version:2.0002\n<SIP CONFIG MODULE>\n--SIP Line List--  :\nSIP1 Phone Number  :1007\n\
             SIP1 Register Addr :192.168.1.50\nSIP1 Register Port :5060\nSIP1 Register User :a1007\nSIP1 Register Pswd :pw7\n<<END OF FILE>>\n",
            ["1007", "a1007", "pw7", "192.168.1.50", "5060"],
        ),
        (
            "aastra",
            "sip line1 auth name: \"203\"\nsip line1 password: \"pw8\"\nsip line1 user name: \"203\"\n\
             sip line1 registrar ip: \"10.20.8.5\"\nsip line1 registrar port: \"5060\"\n",
            ["203", "203", "pw8", "10.20.8.5", "5060"],
        ),
        (
            "panasonic",
            "# Panasonic SIP Phone Standard Format File # DO NOT CHANGE THIS LINE!\r\nPHONE_NUMBER_1=\"1009\"\r\n\
             SIP_AUTHID_1=\"a1009\"\r\nSIP_PASS_1=\"pw9\"\r\nSIP_PASS_1=\"not read\"\r\nSIP_RGSTR_ADDR_1=\"sip.example.jp\"\r\n\r\n",
            ["1009", "a1009", "pw9", "sip.example.jp", "5060"],
        ),
        (
            "gigaset",
            r#"<provisioning version="1.1" productID="e2"><nvm><param name="SipProvider.0.RegServerAddress" value="reg.example.de"/>
               <param name="SipProvider.0.RegServerPort" value="5062"/><param name="SipAccount.00001.UserName" value="1010"/>
               <param name="SipAccount.00001.AuthName" value="a1010"/><param name="SipAccount.00001.AuthPassword" value="pw10"/></nvm></provisioning>"#,
            ["1010", "a1010", "pw10", "reg.example.de", "5062"],
        ),
        (
            "gigaset",
            r#"<ProviderFrame><Provider><SYMB_ITEM ID="BS_IP_Data1.aucS_SIP_USER_ID" class="symb_item" value='"1011"'/>
               <SYMB_ITEM ID="BS_IP_Data1.aucS_SIP_PASSWORD" class="symb_item" value='"pw11"'/>
               <SYMB_ITEM ID="BS_IP_Data1.aucS_SIP_REGISTRAR" class="symb_item" value='"10.0.0.9"'/>
               <SYMB_ITEM ID="BS_IP_Data1.uiI_SIP_REGISTRAR_PORT" class="symb_item" value="0x13c6"/></Provider></ProviderFrame>"#,
            ["1011", "1011", "pw11", "10.0.0.9", "5062"],
        ),
    ];
    for (family, body, [user, auth_user, password, host, port]) in cases {
        let a = account(family, body).unwrap_or_else(|e| panic!("{e}\n{body}"));
        let expected = Account {
            user: user.into(),
            auth_user: auth_user.into(),
            password: password.into(),
            host: host.into(),
            port: port.parse().unwrap(),
        };
        assert_eq!(a, expected, "{family}\n{body}");
    }
    // Later files win; a file without the account leaves the earlier one's.
    let common = "#!version:1.0.0.1\naccount.1.sip_server.1.address = old.example\naccount.1.password = old\n".to_string();
    let own = "#!version:1.0.0.1\naccount.1.user_name = 12\naccount.1.password = new\n".to_string();
    let a = account_from("yealink", &[common, own]).unwrap();
    assert_eq!((a.user.as_str(), a.password.as_str(), a.host.as_str(), a.port), ("12", "new", "old.example", 5060));
    assert!(account("yealink", "#!version:1.0.0.1\naccount.1.password = x\n").unwrap_err().contains("account.1.user_name"));
}

crate::both_backends!(every_phone_reads_its_account_in_its_vendors_keys);
crate::e2e!(each_vendor_syntax_reads_an_account);
