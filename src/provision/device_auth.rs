//! Device credentials: the user (the phone's MAC) and password a phone is
//! given in its first config and may fetch with later, over HTTP Basic or
//! Digest (RFC 7616), as its firmware sends them.
//!
//! Digest nonces are stateless: the time they were issued and a keyed MAC
//! of it, under a key every node shares (`Store::shared_key`), so a phone
//! answering a challenge from one node may be served by another. A nonce is
//! good for [`NONCE_LIFETIME`]; replay within it gets the same file the
//! credentials would fetch anyway.

use hmac::{Hmac, Mac as _};
use sha2::Sha256;

use crate::model::access::constant_time_eq;
use crate::model::{Mac, Secret};
use crate::sip::digest::{parse_params, Algorithm, Challenge};

/// The realm of our challenges.
pub const REALM: &str = "autoprov";
const NONCE_LIFETIME_MS: i64 = 10 * 60 * 1000;

/// Credentials as a request carried them.
#[derive(Clone, Debug)]
pub enum Credentials {
    Basic { user: String, password: Secret },
    Digest(DigestAnswer),
}

/// The fields of an `Authorization: Digest …` header that we check.
#[derive(Clone, Debug)]
pub struct DigestAnswer {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    pub response: String,
    pub algorithm: Algorithm,
    /// `qop=auth` with its `nc` and `cnonce`; `None` without qop.
    pub qop: Option<(u32, String)>,
    /// The request method, which the response covers.
    pub method: String,
}

impl Credentials {
    /// The MAC the credentials claim to be (their user).
    pub fn user(&self) -> &str {
        match self {
            Credentials::Basic { user, .. } => user,
            Credentials::Digest(d) => &d.username,
        }
    }

    /// Parses an `Authorization` header value of a `method` request;
    /// `None` for anything that is not well-formed Basic or Digest.
    pub fn parse(value: &str, method: &str) -> Option<Credentials> {
        use base64::Engine;
        let (scheme, rest) = value.trim().split_once(' ')?;
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD.decode(rest.trim()).ok()?;
            let (user, password) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
            return Some(Credentials::Basic { user: user.to_string(), password: Secret::new(password) });
        }
        if !scheme.eq_ignore_ascii_case("digest") {
            return None;
        }
        let params = parse_params(rest).ok()?;
        let get = |name: &str| params.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
        let algorithm = match get("algorithm") {
            Some(a) => Algorithm::parse(&a)?,
            None => Algorithm::Md5,
        };
        let qop = match get("qop") {
            Some(q) if q.eq_ignore_ascii_case("auth") => Some((u32::from_str_radix(&get("nc")?, 16).ok()?, get("cnonce")?)),
            Some(_) => return None,
            None => None,
        };
        Some(Credentials::Digest(DigestAnswer {
            username: get("username")?,
            realm: get("realm")?,
            nonce: get("nonce")?,
            uri: get("uri")?,
            response: get("response")?,
            algorithm,
            qop,
            method: method.to_string(),
        }))
    }
}

/// What checking credentials found.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Good,
    /// Right user and password, but the Digest nonce is too old: challenge
    /// again with `stale=true` (not a miss).
    Stale,
    Wrong,
}

/// Issues and checks Digest nonces and checks credentials.
pub struct DeviceAuth {
    key: Secret,
}

type HmacSha256 = Hmac<Sha256>;

impl DeviceAuth {
    pub fn new(key: Secret) -> Self {
        DeviceAuth { key }
    }

    fn tag(&self, issued: &str) -> String {
        let mut mac = HmacSha256::new_from_slice(self.key.expose().as_bytes()).expect("HMAC takes any key length");
        mac.update(issued.as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..16])
    }

    /// A nonce for a challenge issued at `now_ms`.
    pub fn nonce(&self, now_ms: i64) -> String {
        let issued = format!("{now_ms:x}");
        format!("{issued}.{}", self.tag(&issued))
    }

    /// `Some(fresh)` for a nonce we issued (fresh: within its lifetime).
    fn nonce_status(&self, nonce: &str, now_ms: i64) -> Option<bool> {
        let (issued, tag) = nonce.split_once('.')?;
        if !constant_time_eq(&self.tag(issued), tag) {
            return None;
        }
        let at = i64::from_str_radix(issued, 16).ok()?;
        Some(at <= now_ms && now_ms - at < NONCE_LIFETIME_MS)
    }

    /// The `WWW-Authenticate` values of a challenge: Digest (MD5, what
    /// every family's firmware answers), then Basic.
    pub fn challenge(&self, now_ms: i64, stale: bool) -> [String; 2] {
        let stale = if stale { ", stale=true" } else { "" };
        [
            format!("Digest realm=\"{REALM}\", qop=\"auth\", algorithm=MD5, nonce=\"{}\"{stale}", self.nonce(now_ms)),
            format!("Basic realm=\"{REALM}\""),
        ]
    }

    /// Checks `creds` against the handset of `mac` whose device password is
    /// `password`, for a request of `request_path`.
    pub fn verify(&self, creds: &Credentials, mac: &Mac, password: &Secret, request_path: &str, now_ms: i64) -> Verdict {
        let Ok(user) = creds.user().parse::<Mac>() else { return Verdict::Wrong };
        if user != *mac || password.expose().is_empty() {
            return Verdict::Wrong;
        }
        match creds {
            Credentials::Basic { password: given, .. } => {
                if constant_time_eq(given.expose(), password.expose()) {
                    Verdict::Good
                } else {
                    Verdict::Wrong
                }
            }
            Credentials::Digest(d) => {
                // The answer must be for this request, in our realm.
                let path_of = |uri: &str| uri.split('?').next().unwrap_or(uri).to_string();
                if d.realm != REALM || path_of(&d.uri) != request_path {
                    return Verdict::Wrong;
                }
                let Some(fresh) = self.nonce_status(&d.nonce, now_ms) else { return Verdict::Wrong };
                let challenge = Challenge {
                    realm: d.realm.clone(),
                    nonce: d.nonce.clone(),
                    opaque: None,
                    algorithm: d.algorithm,
                    qop_auth: d.qop.is_some(),
                    stale: false,
                };
                let (nc, cnonce) = d.qop.clone().unwrap_or((0, String::new()));
                let expected = challenge.response(&d.method, &d.uri, &d.username, password.expose(), &cnonce, nc);
                match (constant_time_eq(&expected, &d.response.to_ascii_lowercase()), fresh) {
                    (true, true) => Verdict::Good,
                    (true, false) => Verdict::Stale,
                    (false, _) => Verdict::Wrong,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: &str = "001565aabbcc";

    fn auth() -> DeviceAuth {
        DeviceAuth::new(Secret::new("key-for-tests"))
    }

    /// A client's answer computed by the same RFC 7616 formula, from the
    /// SIP side's client code.
    fn answer(nonce: &str, user: &str, password: &str, uri: &str) -> Credentials {
        let c = Challenge {
            realm: REALM.into(),
            nonce: nonce.into(),
            opaque: None,
            algorithm: Algorithm::Md5,
            qop_auth: true,
            stale: false,
        };
        Credentials::parse(&c.authorization("GET", uri, user, password, "0a4f113b", 1), "GET").unwrap()
    }

    #[test]
    fn digest_against_our_nonce() {
        let a = auth();
        let mac: Mac = MAC.parse().unwrap();
        let pw = Secret::new("device-pw");
        let nonce = a.nonce(1_000_000);
        let good = answer(&nonce, MAC, "device-pw", "/001565aabbcc.cfg");
        assert_eq!(a.verify(&good, &mac, &pw, "/001565aabbcc.cfg", 1_000_500), Verdict::Good);
        assert_eq!(a.verify(&good, &mac, &pw, "/001565aabbcc.cfg", 1_000_000 + NONCE_LIFETIME_MS), Verdict::Stale);
        assert_eq!(a.verify(&good, &mac, &pw, "/other.cfg", 1_000_500), Verdict::Wrong, "another request's answer");
        let wrong = answer(&nonce, MAC, "guess", "/001565aabbcc.cfg");
        assert_eq!(a.verify(&wrong, &mac, &pw, "/001565aabbcc.cfg", 1_000_500), Verdict::Wrong);
        let forged = answer("5f5e100.00000000000000000000000000000000", MAC, "device-pw", "/001565aabbcc.cfg");
        assert_eq!(a.verify(&forged, &mac, &pw, "/001565aabbcc.cfg", 1_000_500), Verdict::Wrong, "a nonce we never issued");
        let other_mac = answer(&nonce, "0015650000ff", "device-pw", "/001565aabbcc.cfg");
        assert_eq!(a.verify(&other_mac, &mac, &pw, "/001565aabbcc.cfg", 1_000_500), Verdict::Wrong);
    }

    #[test]
    fn basic_and_garbage() {
        let a = auth();
        let mac: Mac = MAC.parse().unwrap();
        let pw = Secret::new("device-pw");
        // base64("00:15:65:AA:BB:CC:device-pw") would split at the first ':'.
        let basic = Credentials::parse("Basic MDAxNTY1YWFiYmNjOmRldmljZS1wdw==", "GET").unwrap();
        assert_eq!(a.verify(&basic, &mac, &pw, "/x", 0), Verdict::Good);
        for bad in ["", "Basic", "Basic !!!", "Bearer x", "Digest", "Digest username=\"a\"", "Digest qop=auth-int, x=\"y\""] {
            assert!(Credentials::parse(bad, "GET").is_none(), "{bad:?}");
        }
    }
}
