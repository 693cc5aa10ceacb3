//! Identification: which family, file, MAC and model a request is for, from
//! its file name and (over HTTP) its User-Agent. No I/O: the caller may pass
//! what it knows of the phone (its handset's model, its last seen vendor);
//! the family is chosen by `Profiles::resolve`.

use super::{Clues, FileSpec, Profile, Profiles};
use crate::model::Mac;

/// What a User-Agent says about the phone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserAgentInfo {
    pub family: String,
    pub model: String,
    pub firmware: String,
    /// Only when the family's pattern captures one and it is a valid MAC.
    pub mac: Option<Mac>,
}

/// A file name one profile serves.
#[derive(Clone, Debug)]
pub struct Candidate<'p> {
    pub profile: &'p Profile,
    pub file: &'p FileSpec,
    pub mac: Option<Mac>,
    pub code: Option<String>,
    pub model: Option<String>,
}

/// The request, identified: the chosen candidate (its model from the file
/// name, else from the User-Agent) and what the User-Agent said.
#[derive(Clone, Debug)]
pub struct Identified<'p> {
    pub candidate: Candidate<'p>,
    pub user_agent: Option<UserAgentInfo>,
}

impl<'p> std::ops::Deref for Identified<'p> {
    type Target = Candidate<'p>;

    fn deref(&self) -> &Candidate<'p> {
        &self.candidate
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdentifyError {
    #[error("no vendor serves a file of this name")]
    UnknownFile,
    #[error("the User-Agent's MAC {ua} is not the file's MAC {file}")]
    MacMismatch { file: Mac, ua: Mac },
}

/// File names longer than this are refused before any matching.
pub const MAX_FILE_NAME: usize = 128;

impl Profiles {
    /// The first family whose User-Agent pattern matches.
    pub fn parse_user_agent(&self, ua: &str) -> Option<UserAgentInfo> {
        let first = self.ua_set.matches(ua).into_iter().next()?;
        let (pi, ui) = self.ua_index[first];
        let p = &self.families[pi];
        let c = p.ua_matchers[ui].captures(ua)?;
        Some(UserAgentInfo {
            family: p.family.clone(),
            model: c.name("model").map(|m| m.as_str().to_string()).unwrap_or_default(),
            firmware: c.name("firmware").map(|m| m.as_str().to_string()).unwrap_or_default(),
            mac: c.name("mac").and_then(|m| m.as_str().parse().ok()),
        })
    }

    /// Every (family, file) that serves `name`.
    pub fn candidates(&self, name: &str) -> Vec<Candidate<'_>> {
        if name.len() > MAX_FILE_NAME {
            return Vec::new();
        }
        let mut out = Vec::new();
        // Several families serve the same name pattern (`{mac}.cfg`): its
        // capture pass runs once, not once per family.
        let mut captured: Vec<(&str, Option<regex::Captures<'_>>)> = Vec::new();
        for i in self.file_set.matches(name).into_iter() {
            let (pi, fi) = self.file_index[i];
            let (p, f) = (&self.families[pi], &self.families[pi].files[fi]);
            let Some(m) = f.matcher.as_ref() else { continue };
            let at = match captured.iter().position(|(pattern, _)| *pattern == m.as_str()) {
                Some(at) => at,
                None => {
                    captured.push((m.as_str(), m.captures(name)));
                    captured.len() - 1
                }
            };
            let Some(c) = captured[at].1.as_ref() else { continue };
            let mac = match c.name("mac").map(|m| m.as_str().parse::<Mac>()) {
                Some(Ok(mac)) => Some(mac),
                // A zero or multicast "MAC" in the name is no phone's file.
                Some(Err(_)) => continue,
                None => None,
            };
            let code = c.name("code").map(|m| m.as_str().to_string());
            if let Some(code) = &code {
                if p.model_by_code(code).is_none() {
                    continue;
                }
            }
            let model = c
                .name("model")
                .map(|m| m.as_str().to_string())
                .or_else(|| code.as_deref().and_then(|code| p.model_by_code(code)).map(|(name, _)| name.clone()));
            out.push(Candidate { profile: p, file: f, mac, code, model });
        }
        // A name with a MAC in it is a phone's own file, whatever looser
        // common pattern (`cfg{model}.xml`) it also fits.
        out.sort_by_key(|c| c.mac.is_none());
        out
    }

    /// Identifies a request for `name`: the family by
    /// [`Profiles::resolve`] (the file name, the User-Agent, then what
    /// `known` says of the phone: its handset's model, its last seen
    /// vendor; then the MAC's OUI), and that family's file.
    pub fn identify<'p>(
        &'p self,
        name: &str,
        user_agent: Option<&str>,
        known: Clues<'_>,
    ) -> Result<Identified<'p>, IdentifyError> {
        self.choose(self.candidates(name), user_agent, known)
    }

    /// [`Profiles::identify`] for a caller that has the name's candidates
    /// already (the provisioner needs the MAC before it knows the phone).
    /// Of `known`, only the handset's model and the last seen vendor are
    /// read: the file and its MAC, and the User-Agent, are the request's.
    pub fn choose<'p>(
        &'p self,
        candidates: Vec<Candidate<'p>>,
        user_agent: Option<&str>,
        known: Clues<'_>,
    ) -> Result<Identified<'p>, IdentifyError> {
        let ua = user_agent.and_then(|ua| self.parse_user_agent(ua));
        let serving: Vec<&str> = candidates.iter().map(|c| c.profile.family.as_str()).collect();
        let clues = Clues { file: Some(&serving), user_agent: ua.as_ref(), mac: candidates.iter().find_map(|c| c.mac), ..known };
        let family = self.resolve(&clues).ok_or(IdentifyError::UnknownFile)?;
        let chosen = candidates.iter().find(|c| c.profile.family == family.family).cloned().ok_or(IdentifyError::UnknownFile)?;
        if let (Some(file), Some(ua_mac)) = (chosen.mac, ua.as_ref().and_then(|u| u.mac)) {
            if file != ua_mac && ua.as_ref().is_some_and(|u| u.family == chosen.profile.family) {
                return Err(IdentifyError::MacMismatch { file, ua: ua_mac });
            }
        }
        let user_agent = ua.filter(|u| u.family == chosen.profile.family);
        let model = chosen.model.clone().or_else(|| user_agent.as_ref().map(|u| u.model.clone()).filter(|m| !m.is_empty()));
        Ok(Identified { candidate: Candidate { model, ..chosen }, user_agent })
    }
}
