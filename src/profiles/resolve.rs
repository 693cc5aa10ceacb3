//! Which family a phone is: one answer from everything known about it, in
//! one order, for every part of the server that needs it (serving a file,
//! the installers' preview, a push's event and port). No I/O: callers pass
//! what they know.

use super::{Profile, Profiles, UserAgentInfo};
use crate::model::Mac;

/// What is known of a phone; any clue may be missing.
#[derive(Clone, Copy, Debug, Default)]
pub struct Clues<'a> {
    /// The families that serve the file the phone asked for, best first
    /// (see `Profiles::candidates`); `None` when no file is involved.
    pub file: Option<&'a [&'a str]>,
    /// What its User-Agent says (this request's).
    pub user_agent: Option<&'a UserAgentInfo>,
    /// Its handset's model (`T46S` or `family/T46S`).
    pub model: Option<&'a str>,
    /// The family its last recorded fetch was identified as.
    pub last_vendor: Option<&'a str>,
    /// Its MAC, for the vendor's OUI.
    pub mac: Option<Mac>,
}

impl Profiles {
    /// The family of a phone, from its clues in this order, the first that
    /// names a family winning:
    ///
    /// 1. the file name: when the phone asked for a file, only the families
    ///    serving that name are possible (a name only one family uses
    ///    decides alone), and every clue below counts only if it names one
    ///    of them;
    /// 2. the User-Agent (what the phone says it is now);
    /// 3. the handset's model (what an admin says it is);
    /// 4. the last seen vendor (what an earlier fetch was identified as);
    /// 5. the MAC's OUI (who made the network card: a guess, as vendors
    ///    resell each other's hardware);
    /// 6. with a file name, the first family serving it (profile order,
    ///    a name with a MAC before a looser common pattern).
    ///
    /// `None` when nothing names a known family.
    pub fn resolve<'p>(&'p self, clues: &Clues<'_>) -> Option<&'p Profile> {
        let possible = |p: &&Profile| clues.file.is_none_or(|f| f.contains(&p.family.as_str()));
        let named = |family: &str| self.family(family).filter(possible);
        clues
            .user_agent
            .and_then(|ua| named(&ua.family))
            .or_else(|| clues.model.and_then(|m| self.family_of_model(m)).filter(possible))
            .or_else(|| clues.last_vendor.and_then(named))
            .or_else(|| clues.mac.and_then(|mac| self.iter().filter(possible).find(|p| p.owns_oui(&mac))))
            .or_else(|| clues.file.and_then(|f| f.first()).and_then(|f| self.family(f)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two built-in families, whichever they are, and a MAC of the second's.
    fn two() -> (Profiles, String, String, Mac) {
        let p = Profiles::built_in();
        let families: Vec<String> =
            p.iter().filter(|p| !p.mac_ouis.is_empty() && !p.models.is_empty()).map(|p| p.family.clone()).collect();
        let (a, b) = (families[0].clone(), families[1].clone());
        let mac = format!("{}aabbcc", p.family(&b).unwrap().mac_ouis[0]).parse().unwrap();
        (p, a, b, mac)
    }

    fn ua(family: &str) -> UserAgentInfo {
        UserAgentInfo { family: family.into(), model: String::new(), firmware: String::new(), mac: None }
    }

    #[test]
    fn clues_count_in_the_documented_order() {
        let (p, a, b, mac_b) = two();
        let model_a = p.family(&a).unwrap().models.keys().next().unwrap().clone();
        let family = |c: Clues<'_>| p.resolve(&c).map(|p| p.family.clone());
        assert_eq!(family(Clues::default()), None);
        assert_eq!(family(Clues { mac: Some(mac_b), ..Clues::default() }), Some(b.clone()));
        // The last seen vendor over the OUI, the model over both, the
        // User-Agent over all.
        let last = Clues { last_vendor: Some(&a), mac: Some(mac_b), ..Clues::default() };
        assert_eq!(family(last), Some(a.clone()));
        let model = Clues { model: Some(&model_a), last_vendor: Some(&b), mac: Some(mac_b), ..Clues::default() };
        assert_eq!(family(model), Some(a.clone()));
        let ua_b = ua(&b);
        assert_eq!(family(Clues { user_agent: Some(&ua_b), ..model }), Some(b.clone()));
        // A file name only the second family serves overrules every clue.
        let only_b = [b.as_str()];
        assert_eq!(family(Clues { file: Some(&only_b), ..model }), Some(b.clone()));
        // With a file name and no clue, its first family.
        let both = [a.as_str(), b.as_str()];
        assert_eq!(family(Clues { file: Some(&both), ..Clues::default() }), Some(a.clone()));
        assert_eq!(family(Clues { file: Some(&both), mac: Some(mac_b), ..Clues::default() }), Some(b));
        // An unknown vendor is no clue.
        assert_eq!(family(Clues { last_vendor: Some("nosuch"), ..Clues::default() }), None);
    }
}
