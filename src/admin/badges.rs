//! The badges of the handset pages: where a handset's latest change stands
//! on its way to the phone, and what the phone's line is doing.

use crate::store::handsets::{HandsetView, ProvisioningState};

pub struct Badge {
    /// CSS class: ok, wait, bad or none.
    pub class: &'static str,
    pub label: String,
}

/// applied (the phone fetched the current revision), never fetched (the
/// phone has not asked for this handset's file yet), failed (the push gave
/// up or had nowhere to go), or pending.
pub fn provisioning(v: &HandsetView) -> Badge {
    let (class, label) = match v.provisioning_state() {
        ProvisioningState::Applied => ("ok", "applied"),
        _ if v.last_fetch.is_none() => ("none", "never fetched"),
        ProvisioningState::Failed => ("bad", "failed"),
        ProvisioningState::Pending => ("wait", "pending"),
    };
    Badge { class, label: label.into() }
}

/// The line's state as the voice platform reported it.
pub fn line(v: &HandsetView) -> Badge {
    let summary = v.status.summary();
    let class = if summary == "unavailable" { "none" } else { "ok" };
    Badge { class, label: summary }
}
