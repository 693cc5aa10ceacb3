//! Serving phones: one function, [`Provisioner::fetch`], turns a request
//! (peer, file name, token, credentials, certificate, User-Agent, protocol)
//! into the file's bytes or a typed refusal. The HTTP(S) front end (`http`)
//! and the TFTP one (`crate::tftp`) only translate to and from it.
//!
//! identify → who may have it → render → record. A config carries a SIP
//! password, so a per-MAC file goes only to a request that proves itself,
//! strongest first: a device certificate naming the MAC (mTLS), the
//! handset's device credentials, or the domain's provisioning token in the
//! path; a domain that allows it (`requiretoken` off) also serves bare
//! requests. Anything else is challenged (HTTP 401, uniform for known and
//! unknown MACs, so a MAC's existence shows nowhere) and counted by the
//! scan guard. Unknown MACs are recorded (write-behind, see `recorder`) for
//! the tenant whose token they came under.

pub mod cache;
pub mod device_auth;
pub mod events;
pub mod http;
pub mod names;
pub mod recorder;
pub mod rendered;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::guard::{Miss, ScanGuard, StrikePolicy};
use crate::metrics::{FetchProtocol, FetchResult, FetchTally, Metrics};
use crate::model::{settings, Mac, Secret};
use crate::profiles::identify::IdentifyError;
use crate::profiles::{Clues, LiveProfiles, Profiles};
use crate::render::{self, ResyncPolicy};
use crate::store::devices::PhoneRecord;
use crate::store::{now_ms, Store};
use cache::PhoneCache;
use device_auth::{Credentials, DeviceAuth, Verdict};
use recorder::{Fetch, FetchRecorder};
use rendered::{Body, CommonKey, KeyRef, PhoneBodies};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Http,
    Https,
    Tftp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Https => "https",
            Protocol::Tftp => "tftp",
        }
    }

    fn for_metrics(self) -> FetchProtocol {
        match self {
            Protocol::Http => FetchProtocol::Http,
            Protocol::Https => FetchProtocol::Https,
            Protocol::Tftp => FetchProtocol::Tftp,
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Protocol::Http => 80,
            Protocol::Https => 443,
            Protocol::Tftp => 69,
        }
    }
}

/// Where a phone reached us: what its config must send it back to.
#[derive(Clone, Debug)]
pub struct Origin {
    /// Host name or IP literal (IPv6 in brackets), as the phone used it.
    pub host: String,
    pub port: u16,
    /// The path prefix it used (`/prov`), or `""`.
    pub prefix: String,
}

/// A phone's request, as any front end sees it.
#[derive(Debug)]
pub struct FetchRequest<'a> {
    pub peer: IpAddr,
    /// The file name as received, after any `p/<token>/` (checked by
    /// [`names::clean`]).
    pub file: &'a str,
    /// The provisioning token of the path, if any.
    pub token: Option<&'a str>,
    /// The request path, which a Digest answer must name.
    pub path: &'a str,
    pub user_agent: Option<&'a str>,
    pub protocol: Protocol,
    pub origin: Origin,
    /// Device credentials from an `Authorization` header.
    pub credentials: Option<Credentials>,
    /// The device certificate the TLS connection presented (verified
    /// against the configured vendor CAs).
    pub device_cert: Option<Arc<DeviceCert>>,
}

/// A verified device certificate: the MACs it names, by the vendors'
/// conventions (see `profiles`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceCert {
    pub macs: Vec<Mac>,
}

/// A file to send.
#[derive(Clone, Debug)]
pub struct Served {
    pub body: Bytes,
    pub content_type: Arc<str>,
    /// A strong validator: changes exactly when the bytes change.
    pub etag: Arc<str>,
    pub last_modified: SystemTime,
    /// Where the fetch is counted once the front end knows how it was
    /// answered ([`Provisioner::answered`]: sent, or HTTP's 304).
    pub tally: FetchTally,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("source address banned by the scan guard")]
    Banned,
    #[error("bad file name: {0}")]
    BadName(&'static str),
    /// The request proved nothing: ask for device credentials (`stale`:
    /// they were right, the Digest nonce too old).
    #[error("proof of the device needed")]
    Unauthorized { stale: bool },
    #[error("{0}")]
    NotFound(&'static str),
    #[error("{0}")]
    Forbidden(String),
    /// The database is down or restarting: try again shortly.
    #[error("database unavailable")]
    Unavailable,
    #[error("internal error: {0}")]
    Internal(String),
}

/// How a per-MAC file was earned, for the log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Proof {
    Certificate,
    Credentials,
    Token,
    /// The domain does not require a token.
    Open,
}

impl Proof {
    fn as_str(self) -> &'static str {
        match self {
            Proof::Certificate => "certificate",
            Proof::Credentials => "credentials",
            Proof::Token => "token",
            Proof::Open => "open",
        }
    }
}

/// Where configs send phones back to.
#[derive(Clone, Debug, Default)]
pub struct ComeBack {
    /// `public_url`: written as it is, ending in `/`.
    pub public_url: Option<String>,
    /// Phones that came over HTTP or TFTP are sent to HTTPS on this port
    /// (set when the certificate is one phones trust, or by the setting).
    pub https_port: Option<u16>,
    /// The host to give phones that came by TFTP (by address) when sending
    /// them to HTTPS: the certificate's name.
    pub https_host: Option<String>,
}

/// How the provisioner works: the scan guard's policy, the phones' own
/// periodic check, and where configs send phones back to.
#[derive(Clone, Debug)]
pub struct ProvisionPolicy {
    pub scan: StrikePolicy,
    /// Minutes between a phone's own config checks.
    pub resync_minutes: u32,
    pub come_back: ComeBack,
    /// Memory for rendered files kept (`rendered`), in bytes.
    pub rendered_budget_bytes: usize,
}

pub struct Provisioner {
    store: Store,
    profiles: LiveProfiles,
    scan_guard: ScanGuard,
    device_auth: DeviceAuth,
    pub recorder: Arc<FetchRecorder>,
    pub cache: Arc<PhoneCache>,
    come_back: ComeBack,
    resync: ResyncPolicy,
    /// Common files depend only on the binary and the settings.
    started_at: SystemTime,
    metrics: Arc<Metrics>,
}

impl Provisioner {
    /// `digest_key` signs Digest nonces (every node of one database must
    /// have the same: `Store::shared_key`). Fetches, bans and unknown
    /// devices are counted in `metrics`.
    pub fn new(store: Store, profiles: Profiles, policy: ProvisionPolicy, digest_key: Secret, metrics: Arc<Metrics>) -> Self {
        let ProvisionPolicy { scan, resync_minutes, come_back, rendered_budget_bytes } = policy;
        Provisioner {
            profiles: LiveProfiles::new(profiles),
            scan_guard: ScanGuard::new(scan).counting_bans(metrics.clone()),
            device_auth: DeviceAuth::new(digest_key),
            recorder: Arc::new(FetchRecorder::default()),
            cache: Arc::new(PhoneCache::with_rendered_budget(&store, rendered_budget_bytes)),
            store,
            come_back,
            // Spread over a tenth of the period, at most 10 minutes.
            resync: ResyncPolicy { minutes: resync_minutes, jitter_seconds: (resync_minutes * 6).clamp(1, 600) },
            started_at: SystemTime::now(),
            metrics,
        }
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// A served file was answered: sent (`not_modified` false), or HTTP's
    /// 304. Refusals are counted by [`Provisioner::fetch`] itself.
    pub fn answered(&self, served: &Served, not_modified: bool) {
        self.metrics.fetched(served.tally, if not_modified { FetchResult::NotModified } else { FetchResult::Ok });
    }

    /// The profiles in use now (a snapshot: a reload does not change it).
    pub fn profiles(&self) -> Arc<Profiles> {
        self.profiles.current()
    }

    /// The profiles to share with the push worker and call control, so a
    /// reload reaches them too.
    pub fn live_profiles(&self) -> &LiveProfiles {
        &self.profiles
    }

    /// Puts reloaded profiles in use: requests already identified finish
    /// with the old ones. Files kept as rendered with the old ones are
    /// dropped (after the swap: see `PhoneCache::clear_rendered`).
    pub fn replace_profiles(&self, profiles: Profiles) {
        self.profiles.replace(profiles);
        self.cache.clear_rendered();
    }

    pub fn scan_guard(&self) -> &ScanGuard {
        &self.scan_guard
    }

    /// The `WWW-Authenticate` values answering [`Refusal::Unauthorized`].
    pub fn challenge(&self, stale: bool) -> [String; 2] {
        self.device_auth.challenge(now_ms(), stale)
    }

    /// Serves one request, logging one line for it. A refusal is counted
    /// in the metrics here; a served file once the front end has answered
    /// ([`Provisioner::answered`]).
    pub async fn fetch(&self, req: &FetchRequest<'_>) -> Result<Served, Refusal> {
        let started = Instant::now();
        let tally = self.metrics.fetch_started(req.protocol.for_metrics());
        // Read before the profiles are: what is rendered with them is kept
        // under it (a reload swaps the profiles, then bumps it).
        let generation = self.cache.rendered_budget().generation();
        let profiles = self.profiles.current();
        let mut facts = Facts::default();
        let mut result = self.fetch_inner(&profiles, generation, req, &mut facts).await;
        let tally = match facts.vendor {
            Some(family) => tally.of_family(&self.metrics, family),
            None => tally,
        };
        let (outcome, bytes, counted) = match &mut result {
            Ok(s) => {
                s.tally = tally;
                ("served", s.body.len(), None)
            }
            Err(Refusal::Banned) => ("banned", 0, Some(FetchResult::Banned)),
            Err(Refusal::BadName(_)) => ("bad-name", 0, Some(FetchResult::BadName)),
            Err(Refusal::Unauthorized { .. }) => ("unauthorized", 0, Some(FetchResult::Unauthorized)),
            Err(Refusal::NotFound(_)) => ("not-found", 0, Some(FetchResult::NotFound)),
            Err(Refusal::Forbidden(_)) => ("forbidden", 0, Some(FetchResult::Forbidden)),
            Err(Refusal::Internal(_)) => ("error", 0, Some(FetchResult::Error)),
            Err(Refusal::Unavailable) => ("unavailable", 0, Some(FetchResult::Error)),
        };
        if let Some(counted) = counted {
            self.metrics.fetched(tally, counted);
        }
        tracing::info!(
            target: "autoprov::provision",
            peer = %req.peer,
            proto = req.protocol.as_str(),
            file = %req.file.escape_debug().to_string().chars().take(140).collect::<String>(),
            mac = %facts.mac.map(|m| m.lower()).unwrap_or_default(),
            vendor = facts.vendor.unwrap_or(""),
            via = facts.proof.map(Proof::as_str).unwrap_or(""),
            result = outcome,
            bytes,
            us = started.elapsed().as_micros() as u64,
        );
        result
    }

    async fn fetch_inner<'s>(
        &'s self,
        profiles: &'s Profiles,
        generation: u64,
        req: &FetchRequest<'_>,
        facts: &mut Facts<'s>,
    ) -> Result<Served, Refusal> {
        let now = Instant::now();
        let over_udp = req.protocol == Protocol::Tftp;
        let banned = self.scan_guard.banned(&req.peer, now);
        // A banned source is still served what it proves it may have.
        let offers_proof = req.token.is_some() || req.credentials.is_some() || req.device_cert.is_some();
        if banned && !offers_proof {
            return Err(Refusal::Banned);
        }
        let tenant = match req.token {
            None => None,
            Some(token) => match self.cache.tenant(&self.store, token).await.map_err(internal)? {
                Some(t) => Some(t),
                None => {
                    self.scan_guard.miss(req.peer, Miss::Token(token), over_udp, now);
                    return Err(if banned { Refusal::Banned } else { Refusal::NotFound("no such provisioning token") });
                }
            },
        };
        let name = names::clean(req.file).inspect_err(|_| {
            self.scan_guard.miss(req.peer, Miss::Name(req.file), over_udp, now);
        })?;
        let candidates = profiles.candidates(name);
        if candidates.is_empty() {
            // Files a family's phones ask for at every boot and we do not
            // serve (firmware, directories, licences) are no sign of a scan.
            return Err(Refusal::NotFound(if profiles.is_quiet(name) {
                "a file this server does not serve"
            } else {
                "no vendor uses a file of this name"
            }));
        }
        let Some(mac) = candidates.iter().find_map(|c| c.mac) else {
            // A common file: no phone record involved, nothing secret.
            if banned && tenant.is_none() && req.device_cert.is_none() {
                return Err(Refusal::Banned);
            }
            let id = profiles.choose(candidates, req.user_agent, Clues::default()).map_err(|e| identify_refusal(e, req))?;
            facts.vendor = Some(id.profile.family.as_str());
            let base_url = self.config_url(&self.come_back_root(req), tenant.as_ref().map(|t| &*t.token));
            let model = id.model.as_deref().unwrap_or("");
            let variant = id.profile.variant(id.user_agent.as_ref().map(|u| u.firmware.as_str()), model);
            // Everything a common file depends on (besides the profiles and
            // the settings of this process): kept rendered.
            let key = CommonKey {
                family: id.profile.family.clone(),
                template: id.file.template.clone(),
                model: model.to_string(),
                variant: variant.to_string(),
                code: id.code.clone().unwrap_or_default(),
                base_url,
            };
            let body = match self.cache.common.get(&key) {
                Some(body) => body,
                None => {
                    let text = render::render_common(
                        id.profile.vendor(),
                        &id.file.template,
                        (model, variant),
                        &key.code,
                        &key.base_url,
                        self.resync,
                    )
                    .map_err(|e| Refusal::Internal(e.to_string()))?;
                    let body = Arc::new(Body::new(text, id.profile.content_type.clone()));
                    self.cache.common.put(key, &body, generation);
                    body
                }
            };
            return Ok(self.served(&body, self.started_at));
        };
        facts.mac = Some(mac);
        let (phone, bodies) = match self.cache.cached_phone(&self.store, &mac).await.map_err(internal)? {
            Some(cached) => (Some(cached.record), cached.bodies),
            None => (None, None),
        };
        let id = profiles.choose(candidates, req.user_agent, known(phone.as_deref())).map_err(|e| {
            self.scan_guard.miss(req.peer, Miss::Mac(mac), over_udp, now);
            identify_refusal(e, req)
        })?;
        facts.vendor = Some(id.profile.family.as_str());
        let mut fetch = Fetch {
            mac,
            handset_id: None,
            ip: req.peer,
            user_agent: req.user_agent.unwrap_or(""),
            vendor: &id.profile.family,
            model: id.model.as_deref().unwrap_or(""),
            firmware: id.user_agent.as_ref().map(|u| u.firmware.as_str()).unwrap_or(""),
            file: name,
            protocol: req.protocol.as_str(),
            revision: None,
            token_domain_id: tenant.as_ref().map(|t| t.domain_id),
        };
        let tenant_id = tenant.as_ref().map(|t| t.domain_id);
        let (proof, phone) = self.proof(req, &mac, phone.as_deref(), tenant_id, now).inspect_err(|r| {
            // Only a MAC nobody has is recorded, for its tenant's installers
            // (or, without a token, for superusers and site networks): a
            // request that proves nothing must not touch a known phone's
            // record, which decides where its pushes go.
            if phone.is_none() && matches!(r, Refusal::NotFound(_) | Refusal::Unauthorized { .. }) {
                self.recorder.record(&fetch);
                self.metrics.unknown_device_request();
            }
        })?;
        facts.proof = Some(proof);
        if proof == Proof::Credentials {
            // The challenge that asked for them was counted; take it back.
            self.scan_guard.forgive(req.peer, Miss::Mac(mac));
        }
        let body = self.phone_body(phone, &id, &self.come_back_root(req), bodies.as_deref(), generation)?;
        fetch.handset_id = Some(phone.handset.id);
        fetch.revision = Some(phone.handset.revision);
        self.recorder.record(&fetch);
        self.metrics.phone_fetched(phone.handset.id, phone.handset.revision);
        Ok(self.served(&body, last_modified(phone)))
    }

    /// `id`'s file for `phone` (coming back to `root`): as kept in `bodies`
    /// (the phone's entry of the cache, dropped with its record), else
    /// rendered, and kept there.
    fn phone_body(
        &self,
        phone: &PhoneRecord,
        id: &crate::profiles::Identified<'_>,
        root: &str,
        bodies: Option<&PhoneBodies>,
        generation: u64,
    ) -> Result<Body, Refusal> {
        let (model, variant) = phone_model(phone, id);
        // The record is the entry's; the rest of what the file depends on is
        // here (the local time's period is checked by `get`).
        let key = KeyRef { family: &id.profile.family, template: &id.file.template, model, variant, root };
        let now = now_ms() / 1000;
        if let Some(body) = bodies.and_then(|b| b.get(&key, now)) {
            return Ok(body);
        }
        let (text, until) = self.render_phone(phone, id, (model, variant), root, false)?;
        let body = Body::new(text, id.profile.content_type.clone());
        if let Some(bodies) = bodies {
            bodies.put(&key, &body, until, generation);
        }
        Ok(body)
    }

    /// Whether the request may have `mac`'s file, and by what proof, and
    /// the phone's record. Misses are counted here; refusals say as little
    /// as they can: a request that proves nothing gets the same challenge
    /// whether the MAC is known, another tenant's, or nobody's.
    fn proof<'p>(
        &self,
        req: &FetchRequest<'_>,
        mac: &Mac,
        phone: Option<&'p PhoneRecord>,
        tenant: Option<i64>,
        now: Instant,
    ) -> Result<(Proof, &'p PhoneRecord), Refusal> {
        let over_udp = req.protocol == Protocol::Tftp;
        let miss = |m: Miss<'_>| self.scan_guard.miss(req.peer, m, over_udp, now);
        // Under one tenant's token, another tenant's phone is nobody's,
        // whatever else the request carries.
        let phone = match (phone, tenant) {
            (Some(p), Some(t)) if p.domain.id != t => None,
            (p, _) => p,
        };
        if let Some(cert) = &req.device_cert {
            if !cert.macs.contains(mac) {
                miss(Miss::Mac(*mac));
                return Err(Refusal::Forbidden("the device certificate names another phone".into()));
            }
            return phone.map(|p| (Proof::Certificate, p)).ok_or(Refusal::NotFound("no handset has this MAC"));
        }
        let needs_cert = phone.is_some_and(|p| p.domain.access.require_client_cert);
        let cert_needed = || Refusal::Forbidden("the domain requires a device certificate".into());
        if let Some(creds) = &req.credentials {
            let verdict = match phone {
                Some(p) => self.device_auth.verify(creds, mac, &p.handset.device_password, req.path, now_ms()),
                None => Verdict::Wrong,
            };
            return match (verdict, phone) {
                (Verdict::Good, Some(_)) if needs_cert => Err(cert_needed()),
                (Verdict::Good, Some(p)) => Ok((Proof::Credentials, p)),
                (Verdict::Stale, _) => Err(Refusal::Unauthorized { stale: true }),
                _ => {
                    miss(Miss::Credentials(*mac));
                    Err(Refusal::Unauthorized { stale: false })
                }
            };
        }
        match (phone, tenant) {
            (Some(_), Some(_)) if needs_cert => Err(cert_needed()),
            (Some(p), Some(_)) => Ok((Proof::Token, p)),
            (None, Some(_)) => Err(Refusal::NotFound("no handset of this domain has this MAC")),
            (Some(p), None) if !p.domain.access.require_token && !needs_cert => Ok((Proof::Open, p)),
            (_, None) => {
                miss(Miss::Mac(*mac));
                Err(if self.scan_guard.banned(&req.peer, now) { Refusal::Banned } else { Refusal::Unauthorized { stale: false } })
            }
        }
    }

    /// Renders `id`'s file for `phone`, telling it to come back to `root`
    /// under its domain's token, for `(model, variant)` ([`phone_model`]);
    /// and until when (Unix seconds) it holds.
    fn render_phone(
        &self,
        phone: &PhoneRecord,
        id: &crate::profiles::Identified<'_>,
        (model, variant): (&str, &str),
        root: &str,
        mask_passwords: bool,
    ) -> Result<(String, i64), Refusal> {
        let PhoneRecord { handset, domain, .. } = phone;
        let no_settings = Default::default();
        let model_settings = domain.model_settings.get(model).unwrap_or(&no_settings);
        let settings = settings::layered(&[&domain.settings, model_settings, &handset.settings]);
        let masked;
        let handset = if mask_passwords {
            masked = crate::model::Handset {
                password: Secret::new(MASKED_PASSWORD),
                device_password: Secret::new(MASKED_PASSWORD),
                event_token: Secret::new(MASKED_PASSWORD),
                ..handset.clone()
            };
            &masked
        } else {
            handset
        };
        let base_url = self.config_url(root, Some(domain.access.token.expose()));
        // Action URLs are HTTP(S): a phone told to come back over TFTP (no
        // HTTPS listener of ours it could use) is given none.
        let events_base = match root.starts_with("tftp:") {
            true => String::new(),
            false => format!("{root}ev/{}/", handset.event_token.expose()),
        };
        render::render_phone_until(
            id.profile.vendor(),
            &id.file.template,
            handset,
            domain,
            (model, variant),
            &base_url,
            &events_base,
            self.resync,
            &settings,
        )
        .map_err(|e| Refusal::Internal(e.to_string()))
    }

    /// The root URL (ending in `/`) a config sends the phone back to: the
    /// public URL when one is set; HTTPS when the phone came otherwise and
    /// our certificate is one phones trust; else where it came.
    fn come_back_root(&self, req: &FetchRequest<'_>) -> String {
        if let Some(url) = &self.come_back.public_url {
            return url.clone();
        }
        let o = &req.origin;
        let (scheme, host, port) = match self.come_back.https_port {
            Some(port) if req.protocol != Protocol::Https => {
                let host = match (req.protocol, &self.come_back.https_host) {
                    (Protocol::Tftp, Some(name)) => name.as_str(),
                    _ => o.host.as_str(),
                };
                (Protocol::Https, host, port)
            }
            _ => (req.protocol, o.host.as_str(), o.port),
        };
        let port = if port == scheme.default_port() { String::new() } else { format!(":{port}") };
        // TFTP has no path prefix of ours.
        let prefix = if scheme == Protocol::Tftp { "" } else { o.prefix.as_str() };
        format!("{}://{host}{port}{prefix}/", scheme.as_str())
    }

    /// `root` under `token`'s path.
    fn config_url(&self, root: &str, token: Option<&str>) -> String {
        match token {
            Some(t) if !t.is_empty() => format!("{root}p/{t}/"),
            _ => root.to_string(),
        }
    }
}

impl Provisioner {
    /// The installers' preview: exactly the bytes a phone asking for `file`
    /// (by default the first per-phone file of its family) would receive
    /// if told to come back to `root` (ending in `/`), without recording a
    /// fetch or asking for proof; with `mask_passwords`, the SIP password
    /// and the device password are written as [`MASKED_PASSWORD`] (the web
    /// UI's preview: a screen is no place for them).
    pub async fn preview(
        &self,
        mac: &Mac,
        file: Option<&str>,
        root: &str,
        mask_passwords: bool,
    ) -> Result<(String, Served), Refusal> {
        let file = match file {
            Some(f) => f.to_string(),
            None => self.default_file(mac).await?,
        };
        let name = names::clean(&file)?;
        let profiles = self.profiles.current();
        let candidates = profiles.candidates(name);
        if candidates.iter().any(|c| c.mac.is_some_and(|m| m != *mac)) {
            return Err(Refusal::Forbidden(format!("{name} is another phone's file")));
        }
        let phone = self.store.handset_for_phone(mac).await.map_err(internal)?;
        let id = profiles
            .choose(candidates, None, known(phone.as_ref()))
            .map_err(|_| Refusal::NotFound("no vendor uses a file of this name"))?;
        let content_type = || id.profile.content_type.clone();
        let served = match (id.mac, phone) {
            (None, _) => self.served(
                &Body::new(
                    render::render_common(
                        id.profile.vendor(),
                        &id.file.template,
                        (id.model.as_deref().unwrap_or(""), id.profile.variant(None, id.model.as_deref().unwrap_or(""))),
                        id.code.as_deref().unwrap_or(""),
                        root,
                        self.resync,
                    )
                    .map_err(|e| Refusal::Internal(e.to_string()))?,
                    content_type(),
                ),
                self.started_at,
            ),
            (Some(_), None) => return Err(Refusal::NotFound("no handset has this MAC")),
            (Some(_), Some(phone)) => self.served(
                &Body::new(self.render_phone(&phone, &id, phone_model(&phone, &id), root, mask_passwords)?.0, content_type()),
                last_modified(&phone),
            ),
        };
        Ok((file, served))
    }

    /// The family's first per-phone file name for `mac`: the family from
    /// [`Profiles::resolve`] (the handset's model, its last seen vendor,
    /// the MAC's OUI).
    async fn default_file(&self, mac: &Mac) -> Result<String, Refusal> {
        let phone = self.store.handset_for_phone(mac).await.map_err(internal)?;
        let phone = phone.ok_or(Refusal::NotFound("no handset has this MAC"))?;
        let profiles = self.profiles.current();
        let profile = profiles
            .resolve(&Clues { mac: Some(*mac), ..known(Some(&phone)) })
            .ok_or(Refusal::NotFound("the handset has no model and its MAC's vendor is unknown: name the file"))?;
        let handset = phone.handset;
        let spec = profile.files.iter().find(|f| f.per_phone()).ok_or(Refusal::NotFound("the family has no per-phone file"))?;
        let model = handset.model.as_deref().map(|m| m.rsplit('/').next().unwrap_or(m)).unwrap_or("");
        Ok(spec.name.replace("{mac}", &mac.lower()).replace("{MAC}", &mac.upper()).replace("{model}", model))
    }
}

/// What the server knows of a phone, for [`Profiles::resolve`]: its
/// handset's model and the family its last fetch was identified as.
fn known(phone: Option<&PhoneRecord>) -> Clues<'_> {
    Clues {
        model: phone.and_then(|p| p.handset.model.as_deref()),
        last_vendor: phone.and_then(|p| p.reported_vendor.as_deref()),
        ..Clues::default()
    }
}

fn identify_refusal(e: IdentifyError, req: &FetchRequest<'_>) -> Refusal {
    match e {
        IdentifyError::UnknownFile => Refusal::NotFound("no vendor uses a file of this name"),
        IdentifyError::MacMismatch { file, ua } => {
            tracing::warn!(peer = %req.peer, file_mac = %file, ua_mac = %ua, "User-Agent MAC disagrees with the file name");
            Refusal::Forbidden(format!("the User-Agent's MAC {ua} is not the requested file's MAC {file}"))
        }
    }
}

/// The model `phone` is rendered for (the model an admin set, else what
/// the phone says now, else what it said before, so a TFTP fetch gets the
/// same file as an HTTP one) and its key-set variant (by the firmware the
/// phone says now, else said before).
fn phone_model<'a>(phone: &'a PhoneRecord, id: &'a crate::profiles::Identified<'_>) -> (&'a str, &'a str) {
    let PhoneRecord { handset, reported_model, reported_firmware, .. } = phone;
    let model = handset
        .model
        .as_deref()
        .map(|m| m.rsplit('/').next().unwrap_or(m))
        .or(id.model.as_deref())
        .or(reported_model.as_deref())
        .unwrap_or("");
    let firmware = id.user_agent.as_ref().map(|u| u.firmware.as_str()).or(reported_firmware.as_deref());
    (model, id.profile.variant(firmware, model))
}

impl Provisioner {
    fn served(&self, body: &Body, last_modified: SystemTime) -> Served {
        Served {
            etag: body.etag.clone(),
            body: body.bytes.clone(),
            content_type: body.content_type.clone(),
            last_modified,
            // Set by `fetch`; a preview is never counted.
            tally: self.metrics.fetch_started(FetchProtocol::Http),
        }
    }
}

/// A store error as a refusal: an outage is `Unavailable` (503), anything
/// else internal.
fn internal(e: crate::store::StoreError) -> Refusal {
    match e.is_outage() {
        true => Refusal::Unavailable,
        false => Refusal::Internal(e.to_string()),
    }
}

/// When the handset or its domain last changed.
fn last_modified(phone: &PhoneRecord) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(phone.changed_at.max(0) as u64)
}

/// What a masked preview shows in place of the passwords.
pub const MASKED_PASSWORD: &str = "********";

/// What the log line says about a request.
#[derive(Default)]
struct Facts<'s> {
    mac: Option<Mac>,
    vendor: Option<&'s str>,
    proof: Option<Proof>,
}
