//! Phones report their calls: the action URLs their configs name
//! (`/ev/<event_token>/<event>?callid=…&remote=…`, see `render`'s event
//! URLs) land here, on the HTTP and HTTPS listeners, where phones already
//! reach us (the request goes out from the phone, so it passes its NAT).
//!
//! A token no handset has is a scan-guard miss, as a wrong provisioning
//! token is: a source guessing tokens is banned like one guessing MACs.

use std::net::IpAddr;
use std::time::Instant;

use super::{internal, Provisioner, Refusal};
use crate::guard::Miss;
use crate::model::status::{clean_call_id, clean_remote};
use crate::model::{PhoneEvent, PhoneReport};
use crate::store::now_ms;

/// The longest query string an event may carry (the phone's variables).
pub const EVENT_QUERY_MAX: usize = 2048;

/// The longest XML notification body a phone may POST (`/ev/<token>/xml`).
pub const EVENT_XML_MAX: usize = 16 * 1024;

/// The event name under which phones POST XML notifications.
pub const XML_EVENT: &str = "xml";

impl Provisioner {
    /// Applies the event `name` a phone reported under `token`, with the
    /// variables in `query` (`callid`, `remote`; others are ignored).
    /// Logs one line (never the token).
    pub async fn phone_event(&self, peer: IpAddr, token: &str, name: &str, query: &str) -> Result<(), Refusal> {
        let started = Instant::now();
        let result = self.phone_event_inner(peer, token, name, query).await;
        log_event(peer, name, &result, started);
        result.map(|_| ())
    }

    /// Applies the XML notifications a phone POSTed under `token`
    /// (`/ev/<token>/xml`): each element a profile's `[events.xml]` rules
    /// name is one event, in document order. Elements no rule names are
    /// ignored; a body that is no XML is refused.
    pub async fn phone_xml_event(&self, peer: IpAddr, token: &str, body: &[u8]) -> Result<(), Refusal> {
        let started = Instant::now();
        let result = self.phone_xml_event_inner(peer, token, body).await;
        log_event(peer, XML_EVENT, &result, started);
        result.map(|_| ())
    }

    async fn phone_xml_event_inner(&self, peer: IpAddr, token: &str, body: &[u8]) -> Result<bool, Refusal> {
        if body.len() > EVENT_XML_MAX {
            return Err(Refusal::BadName("notification too long"));
        }
        let Some(events) = std::str::from_utf8(body).ok().and_then(|text| xml_events(&self.profiles(), text)) else {
            // The token first: garbage under guessed tokens is a scan too.
            self.apply(peer, token, None, String::new(), String::new(), true).await?;
            return Err(Refusal::BadName("notification is not XML"));
        };
        if events.is_empty() {
            // Proves the token all the same (a scan is refused as one).
            return self.apply(peer, token, None, String::new(), String::new(), true).await;
        }
        let mut changed = false;
        for (event, remote) in events {
            changed |= self.apply(peer, token, Some(event), String::new(), clean_remote(&remote), false).await?;
        }
        Ok(changed)
    }
}

/// The events an XML notification carries, by the profiles' rules: each
/// element under the root (and the root itself) that a rule names, with
/// the other party. `None`: no XML.
fn xml_events(profiles: &crate::profiles::Profiles, text: &str) -> Option<Vec<(PhoneEvent, String)>> {
    let doc = roxmltree::Document::parse(text).ok()?;
    let root = doc.root_element();
    let rules: Vec<_> = profiles.iter().filter_map(|p| p.events.xml.as_ref()).flat_map(|x| x.rules.iter()).collect();
    let mut out = Vec::new();
    for node in std::iter::once(root).chain(root.children().filter(|c| c.is_element())) {
        if let Some(rule) = rules.iter().find(|r| r.matches(node)) {
            if let Some(event) = PhoneEvent::parse(&rule.event) {
                out.push((event, rule.remote(node)));
            }
        }
    }
    Some(out)
}

fn log_event(peer: IpAddr, name: &str, result: &Result<bool, Refusal>, started: Instant) {
    {
        let outcome = match result {
            Ok(true) => "applied",
            Ok(false) => "ignored",
            Err(Refusal::Banned) => "banned",
            Err(Refusal::NotFound(_)) => "unknown-token",
            Err(Refusal::BadName(_)) => "bad-request",
            Err(_) => "error",
        };
        tracing::info!(
            target: "autoprov::events",
            peer = %peer,
            event = %name.escape_debug().to_string().chars().take(40).collect::<String>(),
            result = outcome,
            us = started.elapsed().as_micros() as u64,
        );
    }
}

impl Provisioner {
    async fn phone_event_inner(&self, peer: IpAddr, token: &str, name: &str, query: &str) -> Result<bool, Refusal> {
        if query.len() > EVENT_QUERY_MAX {
            return Err(Refusal::BadName("query too long"));
        }
        let (mut call_id, mut remote) = (String::new(), String::new());
        for (key, value) in pairs(query) {
            match key.as_str() {
                "callid" => call_id = clean_call_id(&value),
                "remote" => remote = clean_remote(&value),
                _ => {}
            }
        }
        self.apply(peer, token, PhoneEvent::parse(name), call_id, remote, false).await
    }

    /// Applies `event` (`None`: one we do not know) under `token`; with
    /// `prove_only`, only checks the token.
    async fn apply(
        &self,
        peer: IpAddr,
        token: &str,
        event: Option<PhoneEvent>,
        call_id: String,
        remote: String,
        prove_only: bool,
    ) -> Result<bool, Refusal> {
        let now = Instant::now();
        let plausible = !token.is_empty() && token.len() <= 64 && token.bytes().all(|b| b.is_ascii_alphanumeric());
        let found = match (plausible, event) {
            (false, _) => None,
            (true, _) if prove_only => self.store.handset_by_event_token(token).await.map_err(internal)?.then_some(false),
            (true, Some(event)) => {
                let report = |internal| PhoneReport { event, call_id, remote: remote.clone(), internal, at: now_ms() };
                self.store.phone_event(token, &remote, report).await.map_err(internal)?.map(|(_, _, changed)| changed)
            }
            // An unknown event under a real token is the phone's (or our
            // profile's) mistake, not a scan.
            (true, None) => {
                let known = self.store.handset_by_event_token(token).await.map_err(internal)?;
                if known {
                    return Err(Refusal::BadName("unknown event"));
                }
                None
            }
        };
        match found {
            Some(changed) => Ok(changed),
            None => {
                // As for MACs: the miss that crosses the threshold is refused
                // as banned already.
                self.scan_guard.miss(peer, Miss::EventToken(token), false, now);
                let banned = self.scan_guard.banned(&peer, now);
                Err(if banned { Refusal::Banned } else { Refusal::NotFound("no handset has this event token") })
            }
        }
    }
}

/// `key=value` pairs of a query string, percent-decoded. A `+` stays a
/// `+`: phones put their variables in verbatim, and `+441632960000` is a
/// number, not a space.
fn pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
        (decode(k), decode(v))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_pairs_are_decoded() {
        let got: Vec<_> = pairs("callid=a1b2%40192.168.1.5&remote=sip%3A0409%40pbx&x&name=+44%201").collect();
        assert_eq!(
            got,
            [
                ("callid".into(), "a1b2@192.168.1.5".into()),
                ("remote".into(), "sip:0409@pbx".into()),
                ("x".into(), String::new()),
                ("name".into(), "+44 1".into()),
            ]
        );
    }
}
