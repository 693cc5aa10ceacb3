//! The captured phone requests (`tests/fixtures/phone-requests.tsv`, a copy
//! of the team's shared fixture): each row a real phone's User-Agent, MAC
//! and the files it asks for at boot, in order, with its source.

#![allow(dead_code)]

#[derive(Clone, Debug, Default)]
pub struct Row {
    pub family: String,
    pub model: String,
    pub firmware: String,
    pub user_agent: String,
    pub mac: String,
    pub protocol: String,
    pub files: Vec<String>,
}

/// The rows of `tests/fixtures/<name>` after its header line, as their
/// line numbers and columns; blank lines and `#` comments are passed over.
pub fn tsv(name: &str) -> Vec<(usize, Vec<String>)> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'))
        .skip(1)
        .map(|(i, l)| (i + 1, l.split('\t').map(str::to_string).collect()))
        .collect()
}

pub fn requests() -> Vec<Row> {
    tsv("phone-requests.tsv")
        .into_iter()
        .map(|(line, col)| {
            assert!(col.len() >= 7, "phone-requests.tsv line {line}: a short row");
            Row {
                family: col[0].clone(),
                model: col[1].clone(),
                firmware: col[2].clone(),
                user_agent: col[3].clone(),
                mac: col[4].clone(),
                protocol: col[5].clone(),
                files: col[6].split_whitespace().map(str::to_string).collect(),
            }
        })
        .collect()
}

impl Row {
    /// The same phone with another MAC (12 lower-case hex digits): its
    /// User-Agent and file names say `mac` wherever they said the row's,
    /// in the same spelling.
    pub fn with_mac(&self, mac: &str) -> (String, Vec<String>) {
        let spellings = |m: &str| {
            let colons = m.as_bytes().chunks(2).map(|c| std::str::from_utf8(c).unwrap()).collect::<Vec<_>>().join(":");
            // Aastra's User-Agent writes it upper-case with dashes ("MAC:00-08-5D-…").
            [m.to_string(), m.to_uppercase(), colons.clone(), colons.to_uppercase(), colons.replace(':', "-").to_uppercase()]
        };
        let swap = |s: &str| {
            spellings(&self.mac).iter().zip(spellings(mac)).fold(s.to_string(), |s, (old, new)| s.replace(old.as_str(), &new))
        };
        (swap(&self.user_agent), self.files.iter().map(|f| swap(f)).collect())
    }
}

/// One row of `tests/fixtures/vendor-keys.tsv`: a fact of a family's
/// config format, from its guide (the last column).
pub struct VendorKey {
    pub family: String,
    /// `device_user`, `device_password`, `device_rule`, `device_none` (no
    /// setting for them is documented), `no_line_label` (the family has no
    /// line key label of its own), `setting`, or what its config gives the
    /// phone's remote-control API (call control on the direct relay):
    /// `remote_user` and `remote_password` (the login the request carries;
    /// `{user}`, `{password}` stand for the device credentials) and
    /// `remote_setting` (`{server}`: this server's address).
    pub what: String,
    pub key: String,
    pub value: String,
}

pub fn vendor_keys() -> Vec<VendorKey> {
    tsv("vendor-keys.tsv")
        .into_iter()
        .map(|(line, col)| {
            assert!(col.len() == 5 && !col[4].trim().is_empty(), "vendor-keys.tsv line {line}: 5 columns, a source last");
            let what = col[1].clone();
            assert!(
                [
                    "device_user",
                    "device_password",
                    "device_rule",
                    "device_none",
                    "no_line_label",
                    "setting",
                    "remote_user",
                    "remote_password",
                    "remote_setting",
                ]
                .contains(&what.as_str()),
                "vendor-keys.tsv line {line}: {what}?"
            );
            VendorKey { family: col[0].clone(), what, key: col[2].clone(), value: col[3].clone() }
        })
        .collect()
}
