//! Serving phones: one function, [`Provisioner::fetch`], turns a request
//! (peer, file name, User-Agent, protocol) into the file's bytes or a typed
//! refusal. The HTTP(S) front end (`http`) and the TFTP one (`crate::tftp`)
//! only translate to and from it.
//!
//! identify → guard → render → record: the scan guard bans source IPs that
//! miss too often; known phones' fetches and unknown MACs are recorded
//! (write-behind, see `recorder`) for Handset Select and for installers.

pub mod cache;
pub mod http;
pub mod names;
pub mod recorder;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::config::Settings;
use crate::guard::strikes::Strike;
use crate::guard::{StrikePolicy, StrikeTable};
use crate::model::{settings, Mac};
use crate::profiles::identify::IdentifyError;
use crate::profiles::Profiles;
use crate::render::{self, ResyncPolicy};
use crate::store::devices::PhoneRecord;
use crate::store::Store;
use cache::PhoneCache;
use recorder::{Fetch, FetchRecorder};

/// More than 20 misses (unknown MAC, refused file) from one source IP within
/// 10 minutes ban it for 15 minutes. The table holds at most 65,536 IPs.
pub const SCAN_POLICY: StrikePolicy =
    StrikePolicy { threshold: 20, window: Duration::from_secs(10 * 60), ban: Duration::from_secs(15 * 60), capacity: 65_536 };

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
}

/// A phone's request, as any front end sees it.
#[derive(Debug)]
pub struct FetchRequest<'a> {
    pub peer: IpAddr,
    /// The file name as received (checked by [`names::clean`]).
    pub file: &'a str,
    pub user_agent: Option<&'a str>,
    pub protocol: Protocol,
    /// The base URL the phone used (`scheme://host[:port]/[prefix/]`),
    /// written into configs unless a public URL is configured.
    pub base_url: String,
}

/// A file to send.
#[derive(Clone, Debug)]
pub struct Served {
    pub body: Bytes,
    pub content_type: String,
    /// A strong validator: changes exactly when the bytes change.
    pub etag: String,
    pub last_modified: SystemTime,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("source address banned by the scan guard")]
    Banned,
    #[error("bad file name: {0}")]
    BadName(&'static str),
    #[error("{0}")]
    NotFound(&'static str),
    #[error("{0}")]
    Forbidden(String),
    #[error("internal error: {0}")]
    Internal(String),
}

pub struct Provisioner {
    store: Store,
    profiles: Profiles,
    scan_policy: StrikePolicy,
    scan_guard: StrikeTable<IpAddr>,
    pub recorder: Arc<FetchRecorder>,
    pub cache: Arc<PhoneCache>,
    public_url: Option<String>,
    resync: ResyncPolicy,
    /// Common files depend only on the binary and the settings.
    started_at: SystemTime,
}

impl Provisioner {
    pub fn new(store: Store, profiles: Profiles, settings: &Settings) -> Self {
        let resync_minutes = settings.resync_minutes;
        Provisioner {
            profiles,
            scan_policy: settings.scan_policy,
            scan_guard: StrikeTable::new(settings.scan_policy),
            recorder: Arc::new(FetchRecorder::default()),
            cache: Arc::new(PhoneCache::new(&store)),
            store,
            public_url: settings.public_url.clone(),
            // Spread over a tenth of the period, at most 10 minutes.
            resync: ResyncPolicy { minutes: resync_minutes, jitter_seconds: (resync_minutes * 6).clamp(1, 600) },
            started_at: SystemTime::now(),
        }
    }

    pub fn profiles(&self) -> &Profiles {
        &self.profiles
    }

    /// Serves one request, logging one line for it.
    pub async fn fetch(&self, req: &FetchRequest<'_>) -> Result<Served, Refusal> {
        let started = Instant::now();
        let mut facts = Facts::default();
        let result = self.fetch_inner(req, &mut facts).await;
        let (outcome, bytes) = match &result {
            Ok(s) => ("served", s.body.len()),
            Err(Refusal::Banned) => ("banned", 0),
            Err(Refusal::BadName(_)) => ("bad-name", 0),
            Err(Refusal::NotFound(_)) => ("not-found", 0),
            Err(Refusal::Forbidden(_)) => ("forbidden", 0),
            Err(Refusal::Internal(_)) => ("error", 0),
        };
        tracing::info!(
            target: "autoprov::provision",
            peer = %req.peer,
            proto = req.protocol.as_str(),
            file = %req.file.escape_debug().to_string().chars().take(140).collect::<String>(),
            mac = %facts.mac.map(|m| m.lower()).unwrap_or_default(),
            vendor = facts.vendor.unwrap_or(""),
            result = outcome,
            bytes,
            us = started.elapsed().as_micros() as u64,
        );
        result
    }

    async fn fetch_inner<'s>(&'s self, req: &FetchRequest<'_>, facts: &mut Facts<'s>) -> Result<Served, Refusal> {
        let now = Instant::now();
        if self.scan_guard.banned(&req.peer, now).is_some() {
            return Err(Refusal::Banned);
        }
        let result = self.identify_and_render(req, facts, Purpose::Serve).await;
        if let Err(Refusal::BadName(_) | Refusal::NotFound(_) | Refusal::Forbidden(_)) = &result {
            if self.scan_guard.strike(&req.peer, now) == Strike::Banned {
                // One fail2ban-friendly line per ban.
                tracing::warn!(
                    target: "autoprov::guard",
                    "scan-guard ban ip={} misses>{} window={}s ban={}s",
                    req.peer,
                    self.scan_policy.threshold,
                    self.scan_policy.window.as_secs(),
                    self.scan_policy.ban.as_secs()
                );
            }
        }
        result
    }

    async fn identify_and_render<'s>(
        &'s self,
        req: &FetchRequest<'_>,
        facts: &mut Facts<'s>,
        purpose: Purpose,
    ) -> Result<Served, Refusal> {
        let name = names::clean(req.file)?;
        let candidates = self.profiles.candidates(name);
        if candidates.is_empty() {
            return Err(Refusal::NotFound("no vendor uses a file of this name"));
        }
        let base_url = self.public_url.as_deref().unwrap_or(&req.base_url);
        let Some(mac) = candidates.iter().find_map(|c| c.mac) else {
            // A common file: no phone record involved.
            let id = self.profiles.choose(candidates, req.user_agent, None).map_err(|e| identify_refusal(e, req))?;
            facts.vendor = Some(id.profile.family.as_str());
            let body = render::render_common(
                id.profile,
                &id.file.template,
                id.model.as_deref().unwrap_or(""),
                id.code.as_deref().unwrap_or(""),
                base_url,
                self.resync,
            )
            .map_err(|e| Refusal::Internal(e.to_string()))?;
            return Ok(served(body, &id.profile.content_type, self.started_at));
        };
        facts.mac = Some(mac);
        let phone = self.cache.phone(&self.store, &mac).await.map_err(|e| Refusal::Internal(e.to_string()))?;
        let hint = phone
            .as_ref()
            .and_then(|p| p.handset.model.as_deref())
            .and_then(|m| self.profiles.family_of_model(m))
            .map(|p| p.family.clone());
        let id = self.profiles.choose(candidates, req.user_agent, hint.as_deref()).map_err(|e| identify_refusal(e, req))?;
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
        };
        let Some(phone) = phone else {
            if purpose == Purpose::Serve {
                self.recorder.record(&fetch);
            }
            return Err(Refusal::NotFound("no handset has this MAC"));
        };
        let PhoneRecord { handset, domain, changed_at, reported_model } = &*phone;
        // The model an admin set, else what the phone says now, else what it
        // said before (so a TFTP fetch gets the same file as an HTTP one).
        let model = handset
            .model
            .as_deref()
            .map(|m| m.rsplit('/').next().unwrap_or(m).to_string())
            .or(id.model.clone())
            .or(reported_model.clone())
            .unwrap_or_default();
        let no_settings = Default::default();
        let model_settings = domain.model_settings.get(&model).unwrap_or(&no_settings);
        let settings = settings::layered(&[&domain.settings, model_settings, &handset.settings]);
        let masked;
        let handset = if purpose == Purpose::MaskedPreview {
            masked = crate::model::Handset { password: crate::model::Secret::new(MASKED_PASSWORD), ..handset.clone() };
            &masked
        } else {
            handset
        };
        let body = render::render_phone(id.profile, &id.file.template, handset, domain, &model, base_url, self.resync, &settings)
            .map_err(|e| Refusal::Internal(e.to_string()))?;
        fetch.handset_id = Some(handset.id);
        fetch.revision = Some(handset.revision);
        if purpose == Purpose::Serve {
            self.recorder.record(&fetch);
        }
        Ok(served(body, &id.profile.content_type, UNIX_EPOCH + Duration::from_millis((*changed_at).max(0) as u64)))
    }
}

impl Provisioner {
    /// The installers' preview: exactly the bytes a phone asking for `file`
    /// (by default the first per-phone file of its family) over `base_url`
    /// would receive, without recording a fetch or counting a miss; with
    /// `mask_password`, the SIP password is written as [`MASKED_PASSWORD`]
    /// (the web UI's preview: a screen is no place for it).
    pub async fn preview(
        &self,
        mac: &Mac,
        file: Option<&str>,
        base_url: &str,
        mask_password: bool,
    ) -> Result<(String, Served), Refusal> {
        let file = match file {
            Some(f) => f.to_string(),
            None => self.default_file(mac).await?,
        };
        let req = FetchRequest {
            peer: [127, 0, 0, 1].into(),
            file: &file,
            user_agent: None,
            protocol: Protocol::Http,
            base_url: base_url.into(),
        };
        let purpose = if mask_password { Purpose::MaskedPreview } else { Purpose::Preview };
        let served = self.identify_and_render(&req, &mut Facts::default(), purpose).await?;
        Ok((file, served))
    }

    /// The family's first per-phone file name for `mac`: the family comes
    /// from the handset's model, else from the MAC's OUI.
    async fn default_file(&self, mac: &Mac) -> Result<String, Refusal> {
        let phone = self.store.handset_for_phone(mac).await.map_err(|e| Refusal::Internal(e.to_string()))?;
        let handset = phone.ok_or(Refusal::NotFound("no handset has this MAC"))?.handset;
        let profile = handset
            .model
            .as_deref()
            .and_then(|m| self.profiles.family_of_model(m))
            .or_else(|| self.profiles.iter().find(|p| p.owns_oui(mac)))
            .ok_or(Refusal::NotFound("the handset has no model and its MAC's vendor is unknown: name the file"))?;
        let spec = profile.files.iter().find(|f| f.per_phone()).ok_or(Refusal::NotFound("the family has no per-phone file"))?;
        let model = handset.model.as_deref().map(|m| m.rsplit('/').next().unwrap_or(m)).unwrap_or("");
        Ok(spec.name.replace("{mac}", &mac.lower()).replace("{MAC}", &mac.upper()).replace("{model}", model))
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

fn served(body: String, content_type: &str, last_modified: SystemTime) -> Served {
    let digest = Sha256::digest(body.as_bytes());
    Served {
        etag: format!("\"{}\"", hex::encode(&digest[..16])),
        body: Bytes::from(body),
        content_type: content_type.to_string(),
        last_modified,
    }
}

/// What a rendering is for: a phone's fetch is recorded; a preview is not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Purpose {
    Serve,
    Preview,
    MaskedPreview,
}

/// What a masked preview shows in place of the SIP password.
pub const MASKED_PASSWORD: &str = "********";

/// What the log line says about a request.
#[derive(Default)]
struct Facts<'s> {
    mac: Option<Mac>,
    vendor: Option<&'s str>,
}
