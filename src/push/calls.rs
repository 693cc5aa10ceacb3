//! Call control carried out through what can do it: the domain's relay
//! (`model::relay::PushRelay`) decides. Asterisk (`ami`) gets manager
//! actions: `Originate` to make the handset dial (its channel rings first,
//! then dials the number in the domain's context), `Redirect` of the other
//! party's channel (blind transfer) or `Atxfer` of the handset's (attended),
//! the channel found with `CoreShowChannels`, and `Originate` of the
//! supervisor's phone into the `ChanSpy` application with its quiet (`q`),
//! whisper (`w`) or barge (`B`) option and `E` (end when the spied-on call
//! ends) for monitor, coach and barge (Asterisk's ChanSpy documentation).
//! A webhook gets the action in the same signed POST as pushes. On the
//! `direct` relay the phone's own remote-control API is asked, where its
//! family's profile has one (`[remote_control]`: method, path, content type,
//! body, HTTP Basic or Digest, the digest computed by `sip::digest`); what
//! it cannot do, and the registrar relay, are refused with the reason (501).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use super::ami::{self, AmiError, AmiRelays, AmiServer};
use super::target::TargetPolicy;
use super::webhook::WebhookRelay;
use crate::model::call::CallAction;
use crate::model::relay::PushRelay;
use crate::model::{Mac, Secret};
use crate::profiles::{Clues, LiveProfiles};
use crate::sip::digest::Challenge;

/// What is known of the handset whose call is to be controlled.
pub struct CallSubject<'a> {
    pub domain: &'a str,
    pub extension: &'a str,
    pub relay: &'a PushRelay,
    /// The dialplan context of AMI actions.
    pub ami_context: &'a str,
    /// Its phone's registration address, else last fetch address.
    pub phone_ip: Option<IpAddr>,
    pub model: Option<&'a str>,
    pub last_vendor: Option<&'a str>,
    pub mac: Option<Mac>,
    pub device_password: &'a Secret,
}

/// How an action will be carried out, decided before it is queued.
#[derive(Clone, Debug)]
pub enum CallRoute {
    Ami {
        host: String,
        port: u16,
        user: String,
        secret: Secret,
        context: String,
        extension: String,
    },
    Webhook {
        url: String,
        secret: Secret,
        event: serde_json::Value,
    },
    /// An HTTP request to the phone's own API (its family's
    /// `[remote_control]`), proved with its device credentials.
    Phone {
        method: reqwest::Method,
        url: String,
        content_type: String,
        body: String,
        /// HTTP Digest (answering the phone's 401), else HTTP Basic.
        digest: bool,
        user: String,
        password: Secret,
    },
}

/// Why an action cannot be done here (the 501's words), or cannot be done
/// now (no address for the phone: 409).
#[derive(Debug, thiserror::Error)]
pub enum Unroutable {
    #[error("{0}")]
    Unsupported(String),
    #[error("the phone has neither registered nor fetched its file: its address is not known")]
    NoAddress,
}

/// The port of the phones' own HTTP API.
const PHONE_HTTP_PORT: u16 = 80;

pub struct CallControl {
    ami: AmiRelays,
    http: Option<WebhookRelay>,
    targets: Arc<TargetPolicy>,
    profiles: LiveProfiles,
}

impl CallControl {
    pub fn new(profiles: LiveProfiles, allow_internal_targets: bool) -> Self {
        let targets = Arc::new(TargetPolicy::new(allow_internal_targets));
        let http = WebhookRelay::new(targets.clone())
            .map_err(|e| tracing::error!(error = %e, "call control over HTTP unavailable"))
            .ok();
        CallControl { ami: AmiRelays::new(targets.clone()), http, targets, profiles }
    }

    /// How `action` with `target` (a number, or a supervisor's extension)
    /// goes for `subject`, or why it cannot.
    pub fn route(&self, action: CallAction, target: &str, id: &str, subject: &CallSubject<'_>) -> Result<CallRoute, Unroutable> {
        match subject.relay {
            PushRelay::Ami { host, port, user, secret } => Ok(CallRoute::Ami {
                host: host.clone(),
                port: *port,
                user: user.clone(),
                secret: secret.clone(),
                context: subject.ami_context.to_string(),
                extension: subject.extension.to_string(),
            }),
            PushRelay::Webhook { url, secret } => {
                let target_key = if action.is_supervision() { "supervisor" } else { "number" };
                let mut event = serde_json::json!({
                    "type": "callcontrol",
                    "action": action.as_str(),
                    "domain": subject.domain,
                    "extensionnumber": subject.extension,
                    "actionid": id,
                });
                event[target_key] = serde_json::Value::String(target.to_string());
                Ok(CallRoute::Webhook { url: url.clone(), secret: secret.clone(), event })
            }
            PushRelay::Registrar { .. } => Err(Unroutable::Unsupported(format!(
                "{}: call control through the registrar relay is not supported (no vendor documents a dial or transfer \
                 request by SIP NOTIFY that we could confirm): set pushbackend ami or webhook",
                action.as_str()
            ))),
            PushRelay::Direct => self.phone_route(action, target, subject),
        }
    }

    fn phone_route(&self, action: CallAction, target: &str, subject: &CallSubject<'_>) -> Result<CallRoute, Unroutable> {
        let name = action.as_str();
        if action.is_supervision() {
            return Err(Unroutable::Unsupported(format!(
                "{name} needs the platform (a phone has no API to let another listen in): set pushbackend ami or webhook"
            )));
        }
        let profiles = self.profiles.current();
        let family = profiles.resolve(&Clues {
            model: subject.model,
            last_vendor: subject.last_vendor,
            mac: subject.mac,
            ..Default::default()
        });
        let Some(family) = family else {
            return Err(Unroutable::Unsupported(format!(
                "{name}: the phone's family is not known, so neither is its remote-control API: set pushbackend ami or webhook"
            )));
        };
        let Some(rc) = &family.remote_control else {
            return Err(Unroutable::Unsupported(format!(
                "{name}: {} phones have no remote-control API we could confirm: set pushbackend ami or webhook",
                family.vendor
            )));
        };
        if action.is_transfer() {
            return Err(Unroutable::Unsupported(format!("{name}: {}", rc.no_transfer)));
        }
        let Some(mac) = subject.mac else {
            return Err(Unroutable::Unsupported(format!(
                "{name}: the handset has no MAC, so its phone has no credentials to be asked with: set pushbackend ami or webhook"
            )));
        };
        let ip = subject.phone_ip.ok_or(Unroutable::NoAddress)?;
        let number = percent_encoding::utf8_percent_encode(target, percent_encoding::NON_ALPHANUMERIC).to_string();
        let host = match ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        };
        let method = if rc.method == "POST" { reqwest::Method::POST } else { reqwest::Method::GET };
        Ok(CallRoute::Phone {
            method,
            url: format!("http://{host}:{PHONE_HTTP_PORT}{}", rc.dial.replace("{number}", &number)),
            content_type: rc.content_type.clone(),
            // The dial string as it is: validated to 0-9 * # +, which
            // neither XML nor the vendors' bodies escape.
            body: rc.body.replace("{number}", target),
            digest: rc.auth == "digest",
            user: mac.lower(),
            password: subject.device_password.clone(),
        })
    }

    /// Carries the action out: `Ok` when the platform or phone took it,
    /// else the error the action's `GET` shows.
    pub async fn carry_out(&self, action: CallAction, target: &str, route: &CallRoute) -> Result<(), String> {
        match route {
            CallRoute::Ami { host, port, user, secret, context, extension } => {
                let server = AmiServer { host, port: *port, user, secret };
                self.ami_action(&server, action, target, context, extension).await
            }
            CallRoute::Webhook { url, secret, event } => {
                let Some(http) = &self.http else {
                    return Err("the webhook relay could not be set up (see the start-up log)".into());
                };
                http.post(url, secret, event).await.map_err(|e| {
                    tracing::info!(error = %e, "call-control webhook not taken");
                    "webhook relay: the action was not taken (the server log has the details)".to_string()
                })
            }
            CallRoute::Phone { method, url, content_type, body, digest, user, password } => {
                let Some(http) = &self.http else { return Err("HTTP client could not be set up (see the start-up log)".into()) };
                let parsed = reqwest::Url::parse(url).map_err(|_| format!("bad phone URL {url:?}"))?;
                let host = parsed.host_str().unwrap_or_default();
                let ip: IpAddr = host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse()
                    .map_err(|_| format!("bad phone address {host:?}"))?;
                self.targets.check(host, ip).map_err(|e| e.to_string())?;
                let at = SocketAddr::new(ip, PHONE_HTTP_PORT);
                let request = |authorization: Option<String>| {
                    let mut r = http.client().request(method.clone(), url.as_str());
                    if !content_type.is_empty() {
                        r = r.header(reqwest::header::CONTENT_TYPE, content_type.as_str()).body(body.clone());
                    }
                    match authorization {
                        Some(a) => r.header(reqwest::header::AUTHORIZATION, a),
                        None if *digest => r,
                        None => r.basic_auth(user, Some(password.expose())),
                    }
                };
                let send = |r: reqwest::RequestBuilder| async move {
                    r.send().await.map_err(|e| format!("the phone at {at}: {}", short(&e)))
                };
                let mut response = send(request(None)).await?;
                if *digest && response.status() == reqwest::StatusCode::UNAUTHORIZED {
                    // The path and query, as the request line has them
                    // (the digest's uri, RFC 7616 §3.4).
                    let uri = match parsed.query() {
                        Some(q) => format!("{}?{q}", parsed.path()),
                        None => parsed.path().to_string(),
                    };
                    let authorization = digest_answer(response.headers(), method.as_str(), &uri, user, password)?;
                    response = send(request(Some(authorization))).await?;
                }
                match response.status() {
                    s if s.is_success() => Ok(()),
                    s => Err(format!("the phone answered HTTP {}", s.as_u16())),
                }
            }
        }
    }

    async fn ami_action(
        &self,
        server: &AmiServer<'_>,
        action: CallAction,
        target: &str,
        context: &str,
        ext: &str,
    ) -> Result<(), String> {
        let handset_channel = format!("PJSIP/{ext}");
        let (name, result) = match action {
            CallAction::Create => {
                let fields = [
                    ("Action", "Originate"),
                    ("Channel", handset_channel.as_str()),
                    ("Exten", target),
                    ("Context", context),
                    ("Priority", "1"),
                    ("Async", "true"),
                    ("CallerID", target),
                ];
                ("Originate", self.ami.action(server, &fields, None).await)
            }
            CallAction::TransferBlind | CallAction::TransferAttended => {
                let channels = self
                    .ami
                    .action(server, &[("Action", "CoreShowChannels")], Some("CoreShowChannelsComplete"))
                    .await
                    .map_err(|e| ami_error("CoreShowChannels", e))?;
                let (own, other) = call_channels(&channels, ext)
                    .ok_or_else(|| format!("Asterisk shows no call of {handset_channel}: nothing to transfer"))?;
                if action == CallAction::TransferBlind {
                    let other = other.ok_or_else(|| format!("Asterisk shows {own} bridged with no other channel"))?;
                    let fields = [
                        ("Action", "Redirect"),
                        ("Channel", other.as_str()),
                        ("Exten", target),
                        ("Context", context),
                        ("Priority", "1"),
                    ];
                    ("Redirect", self.ami.action(server, &fields, None).await)
                } else {
                    let fields = [("Action", "Atxfer"), ("Channel", own.as_str()), ("Exten", target), ("Context", context)];
                    ("Atxfer", self.ami.action(server, &fields, None).await)
                }
            }
            CallAction::Monitor | CallAction::Coach | CallAction::Barge => {
                let options = match action {
                    CallAction::Monitor => "qE",
                    CallAction::Coach => "qwE",
                    _ => "qBE",
                };
                let supervisor = format!("PJSIP/{target}");
                let data = format!("{handset_channel},{options}");
                let fields = [
                    ("Action", "Originate"),
                    ("Channel", supervisor.as_str()),
                    ("Application", "ChanSpy"),
                    ("Data", data.as_str()),
                    ("Async", "true"),
                    ("CallerID", ext),
                ];
                ("Originate", self.ami.action(server, &fields, None).await)
            }
        };
        result.map(|_| ()).map_err(|e| ami_error(name, e))
    }
}

/// The error an action's `GET` shows: Asterisk's own words when it refused,
/// one sentence when it could not be reached (details in the log).
fn ami_error(action: &str, e: AmiError) -> String {
    match e {
        AmiError::Refused(message) => format!("AMI {action}: {message}"),
        AmiError::Target(t) => t.to_string(),
        other => {
            tracing::info!(error = %other, "AMI call action not sent");
            "AMI relay: no answer or no login (the server log has the details)".into()
        }
    }
}

/// The handset's channel (`PJSIP/<ext>-…`) among `CoreShowChannel` events,
/// and the channel bridged with it, if any.
fn call_channels(events: &[ami::Block], ext: &str) -> Option<(String, Option<String>)> {
    let prefix = format!("PJSIP/{ext}-");
    let channel = |b: &ami::Block| ami::field(b, "Channel").unwrap_or_default().to_string();
    let own = events.iter().find(|b| channel(b).starts_with(&prefix))?;
    let bridge = ami::field(own, "BridgeId").unwrap_or_default();
    let other = (!bridge.is_empty())
        .then(|| events.iter().find(|b| ami::field(b, "BridgeId") == Some(bridge) && channel(b) != channel(own)).map(&channel))
        .flatten();
    Some((channel(own), other))
}

/// The `Authorization` answering the phone's `WWW-Authenticate: Digest`
/// challenge (`sip::digest` computes it as for SIP: RFC 7616 is the same
/// for HTTP, with the request's method and path).
fn digest_answer(
    headers: &reqwest::header::HeaderMap,
    method: &str,
    uri: &str,
    user: &str,
    password: &Secret,
) -> Result<String, String> {
    let challenge = headers
        .get_all(reqwest::header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| Challenge::parse(v).ok())
        .ok_or("the phone answered HTTP 401 without a Digest challenge we can answer")?;
    let cnonce = hex::encode(rand::random::<[u8; 8]>());
    Ok(challenge.authorization(method, uri, user, password.expose(), &cnonce, 1))
}

/// An HTTP error in one line, without the URL (which carries no secret, but
/// is long).
fn short(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "no answer"
    } else if e.is_connect() {
        "connection refused or unreachable"
    } else {
        "request failed"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(fields: &[(&str, &str)]) -> ami::Block {
        fields.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn the_handsets_channel_and_its_peer() {
        let events = vec![
            block(&[("Event", "CoreShowChannel"), ("Channel", "PJSIP/20001-00000001"), ("BridgeId", "")]),
            block(&[("Event", "CoreShowChannel"), ("Channel", "PJSIP/2000-0000000a"), ("BridgeId", "b-1")]),
            block(&[("Event", "CoreShowChannel"), ("Channel", "PJSIP/trunk-0000000b"), ("BridgeId", "b-1")]),
        ];
        assert_eq!(call_channels(&events, "2000"), Some(("PJSIP/2000-0000000a".into(), Some("PJSIP/trunk-0000000b".into()))));
        assert_eq!(call_channels(&events, "20001"), Some(("PJSIP/20001-00000001".into(), None)));
        assert_eq!(call_channels(&events, "3000"), None);
    }
}
