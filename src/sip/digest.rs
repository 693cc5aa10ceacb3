//! Digest authentication (RFC 3261 §22, RFC 2617, RFC 7616): parse a
//! `WWW-Authenticate`/`Proxy-Authenticate` challenge and compute the
//! `Authorization`/`Proxy-Authorization` answer with the handset's own
//! credentials.
//!
//! Supported: algorithms MD5, MD5-sess, SHA-256, SHA-256-sess; `qop=auth`
//! (nc fixed at 00000001, since we answer each nonce once) or no qop (RFC 2069
//! style). Not supported: `qop=auth-int`, `userhash`, SHA-512-256.
//!
//! Every challenge value we echo back (realm, nonce, opaque) is refused if it
//! holds a control character, so a hostile phone cannot inject header lines
//! into our re-sent request.

use std::fmt::Write as _;

use md5::{Digest, Md5};
use sha2::Sha256;

use super::SipError;

/// The hash named by a challenge's `algorithm` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Md5,
    Md5Sess,
    Sha256,
    Sha256Sess,
}

impl Algorithm {
    /// Case-insensitive, as RFC 7616 §3.3 allows. `None` for algorithms we
    /// cannot compute.
    pub fn parse(name: &str) -> Option<Self> {
        let name = name.trim();
        [Self::Md5, Self::Md5Sess, Self::Sha256, Self::Sha256Sess].into_iter().find(|a| a.name().eq_ignore_ascii_case(name))
    }

    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Md5Sess => "MD5-sess",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha256Sess => "SHA-256-sess",
        }
    }

    fn is_sess(self) -> bool {
        matches!(self, Algorithm::Md5Sess | Algorithm::Sha256Sess)
    }

    /// Lower-case hex of the hash, as every digest formula wants it.
    fn hex(self, data: &str) -> String {
        match self {
            Algorithm::Md5 | Algorithm::Md5Sess => hex::encode(Md5::digest(data.as_bytes())),
            Algorithm::Sha256 | Algorithm::Sha256Sess => hex::encode(Sha256::digest(data.as_bytes())),
        }
    }
}

/// One parsed `Digest` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    pub algorithm: Algorithm,
    /// The server offered `qop=auth` (we then must use it); `false` means no
    /// qop at all (RFC 2069 compatibility).
    pub qop_auth: bool,
    /// `stale=true`: the nonce expired, the credentials were fine.
    pub stale: bool,
}

impl Challenge {
    /// Parse one challenge header value (`Digest realm="…", nonce="…", …`).
    pub fn parse(value: &str) -> Result<Self, SipError> {
        let err = |why: &str| SipError::Challenge(why.to_owned());
        let value = value.trim();
        let (scheme, rest) = value.split_once(|c: char| c.is_ascii_whitespace()).unwrap_or((value, ""));
        if !scheme.eq_ignore_ascii_case("Digest") {
            return Err(SipError::Challenge(format!("scheme {:?} is not Digest", scheme.chars().take(32).collect::<String>())));
        }
        let params = parse_params(rest)?;
        let get = |name: &str| params.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str());
        for (_, v) in &params {
            if v.chars().any(|c| c.is_control()) {
                return Err(err("control character in a challenge parameter"));
            }
        }
        let realm = get("realm").ok_or_else(|| err("no realm"))?.to_owned();
        let nonce = get("nonce").ok_or_else(|| err("no nonce"))?.to_owned();
        if nonce.is_empty() {
            return Err(err("empty nonce"));
        }
        let algorithm = match get("algorithm") {
            None => Algorithm::Md5,
            Some(name) => Algorithm::parse(name).ok_or_else(|| {
                SipError::Challenge(format!("unsupported algorithm {:?}", name.chars().take(32).collect::<String>()))
            })?,
        };
        let qop_auth = match get("qop") {
            None => false,
            Some(list) => {
                if list.split(',').any(|q| q.trim().eq_ignore_ascii_case("auth")) {
                    true
                } else {
                    return Err(err("qop offered without \"auth\" (auth-int is not supported)"));
                }
            }
        };
        if get("userhash").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Err(err("userhash is not supported"));
        }
        Ok(Challenge {
            realm,
            nonce,
            opaque: get("opaque").map(str::to_owned),
            algorithm,
            qop_auth,
            stale: get("stale").is_some_and(|v| v.eq_ignore_ascii_case("true")),
        })
    }

    /// The `response` value (RFC 7616 §3.4.1; RFC 2617 §3.2.2.1 when no qop).
    pub fn response(&self, method: &str, uri: &str, username: &str, password: &str, cnonce: &str, nc: u32) -> String {
        let alg = self.algorithm;
        let mut ha1 = alg.hex(&format!("{username}:{}:{password}", self.realm));
        if alg.is_sess() {
            ha1 = alg.hex(&format!("{ha1}:{}:{cnonce}", self.nonce));
        }
        let ha2 = alg.hex(&format!("{method}:{uri}"));
        if self.qop_auth {
            alg.hex(&format!("{ha1}:{}:{nc:08x}:{cnonce}:auth:{ha2}", self.nonce))
        } else {
            alg.hex(&format!("{ha1}:{}:{ha2}", self.nonce))
        }
    }

    /// The whole `Authorization` header value answering this challenge.
    pub fn authorization(&self, method: &str, uri: &str, username: &str, password: &str, cnonce: &str, nc: u32) -> String {
        let response = self.response(method, uri, username, password, cnonce, nc);
        let mut out = String::with_capacity(256);
        // Writing into a String cannot fail.
        let _ = write!(
            out,
            "Digest username={}, realm={}, nonce={}, uri={}, response=\"{response}\", algorithm={}",
            quote(username),
            quote(&self.realm),
            quote(&self.nonce),
            quote(uri),
            self.algorithm.name()
        );
        // cnonce also matters without qop for the -sess variants (RFC 2617).
        if self.qop_auth || self.algorithm.is_sess() {
            let _ = write!(out, ", cnonce={}", quote(cnonce));
        }
        if self.qop_auth {
            let _ = write!(out, ", qop=auth, nc={nc:08x}");
        }
        if let Some(opaque) = &self.opaque {
            let _ = write!(out, ", opaque={}", quote(opaque));
        }
        out
    }
}

/// A quoted-string with `"` and `\` escaped.
fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// `name=value, name="quoted \"value\"", …` → pairs, names as written.
/// Unterminated quotes or a name without `=` are errors.
pub(crate) fn parse_params(input: &str) -> Result<Vec<(String, String)>, SipError> {
    let err = |why: &str| SipError::Challenge(why.to_owned());
    let mut params = Vec::new();
    let mut chars = input.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ',' || c.is_whitespace() {
                break;
            }
            name.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') {
            return Err(err("parameter without a value"));
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some(escaped) => value.push(escaped),
                        None => break,
                    },
                    '"' => {
                        closed = true;
                        break;
                    }
                    c => value.push(c),
                }
            }
            if !closed {
                return Err(err("unterminated quoted string"));
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' || c.is_whitespace() {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        params.push((name, value));
    }
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The response="…" value of an Authorization header.
    fn response_of(header: &str) -> String {
        parse_params(header.trim_start_matches("Digest "))
            .expect("params")
            .into_iter()
            .find(|(n, _)| n == "response")
            .map(|(_, v)| v)
            .expect("response param")
    }

    #[test]
    fn rfc2617_section_3_5_example() {
        let ch = Challenge::parse(
            "Digest realm=\"testrealm@host.com\", qop=\"auth,auth-int\", \
             nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", \
             opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
        )
        .expect("valid challenge");
        assert_eq!(ch.algorithm, Algorithm::Md5);
        assert!(ch.qop_auth);
        let header = ch.authorization("GET", "/dir/index.html", "Mufasa", "Circle Of Life", "0a4f113b", 1);
        assert_eq!(response_of(&header), "6629fae49393a05397450978507c4ef1");
        assert!(header.contains("nc=00000001"));
        assert!(header.contains("cnonce=\"0a4f113b\""));
        assert!(header.contains("qop=auth"));
        assert!(header.contains("opaque=\"5ccc069c403ebaf9f0171e9517f40e41\""));
        assert!(header.contains("uri=\"/dir/index.html\""));
    }

    #[test]
    fn rfc7616_section_3_9_1_examples() {
        let tail = "realm=\"http-auth@example.org\", qop=\"auth, auth-int\", \
                    nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", \
                    opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"";
        let cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
        let sha = Challenge::parse(&format!("Digest {tail}, algorithm=SHA-256")).expect("valid");
        assert_eq!(sha.algorithm, Algorithm::Sha256);
        assert_eq!(
            sha.response("GET", "/dir/index.html", "Mufasa", "Circle of Life", cnonce, 1),
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
        let md5 = Challenge::parse(&format!("Digest {tail}, algorithm=MD5")).expect("valid");
        assert_eq!(
            md5.response("GET", "/dir/index.html", "Mufasa", "Circle of Life", cnonce, 1),
            "8ca523f5e9506fed4657c9700eebdbec"
        );
        let header = sha.authorization("GET", "/dir/index.html", "Mufasa", "Circle of Life", cnonce, 1);
        assert!(header.contains("algorithm=SHA-256"));
    }

    #[test]
    fn no_qop_and_sess_variants() {
        let ch = Challenge::parse("Digest realm=\"r\", nonce=\"n\"").expect("valid");
        assert!(!ch.qop_auth);
        // RFC 2069: H(H(A1):nonce:H(A2)).
        let ha1 = hex::encode(Md5::digest(b"201:r:secret"));
        let ha2 = hex::encode(Md5::digest(b"NOTIFY:sip:201@10.0.0.2:5060"));
        let want = hex::encode(Md5::digest(format!("{ha1}:n:{ha2}").as_bytes()));
        let header = ch.authorization("NOTIFY", "sip:201@10.0.0.2:5060", "201", "secret", "c", 1);
        assert_eq!(response_of(&header), want);
        assert!(!header.contains("qop=") && !header.contains("nc=") && !header.contains("cnonce="));

        let sess = Challenge::parse("Digest realm=\"r\", nonce=\"n\", algorithm=sha-256-SESS, qop=auth").expect("valid");
        assert_eq!(sess.algorithm, Algorithm::Sha256Sess);
        let h = |s: String| hex::encode(Sha256::digest(s.as_bytes()));
        let ha1 = h(format!("{}:n:c", h("201:r:secret".into())));
        let ha2 = h("NOTIFY:sip:201@10.0.0.2:5060".into());
        let want = h(format!("{ha1}:n:00000001:c:auth:{ha2}"));
        assert_eq!(sess.response("NOTIFY", "sip:201@10.0.0.2:5060", "201", "secret", "c", 1), want);
    }

    #[test]
    fn refuses_what_it_cannot_answer() {
        for bad in [
            "Basic realm=\"r\"",
            "Digest nonce=\"n\"",
            "Digest realm=\"r\"",
            "Digest realm=\"r\", nonce=\"n\", algorithm=SHA-512-256",
            "Digest realm=\"r\", nonce=\"n\", qop=\"auth-int\"",
            "Digest realm=\"r\", nonce=\"n\", userhash=true",
            "Digest realm=\"r, nonce=\"n\"",
            "Digest realm=\"r\u{0d}\u{0a}Evil: 1\", nonce=\"n\"",
            "Digest realm",
            "",
        ] {
            assert!(Challenge::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn quoted_values_round_trip() {
        let ch = Challenge::parse(r#"Digest realm="a \"b\" \\ c, d", nonce=abc, stale=TRUE"#).expect("valid");
        assert_eq!(ch.realm, r#"a "b" \ c, d"#);
        assert_eq!(ch.nonce, "abc");
        assert!(ch.stale);
        let header = ch.authorization("NOTIFY", "sip:x@y", "201", "p", "c", 1);
        assert!(header.contains(r#"realm="a \"b\" \\ c, d""#), "{header}");
    }
}
