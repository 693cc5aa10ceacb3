//! Where a handset's latest push stands (the `push` table's `state`, which a
//! CHECK constraint holds to these values).

use super::FieldError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushState {
    /// Queued: to be sent (again) when due.
    Pending,
    /// The phone (or the relay) accepted the NOTIFY.
    Sent,
    /// Every attempt failed.
    Failed,
    /// The phone has neither registered nor fetched: nowhere to send it.
    NoTarget,
}

impl PushState {
    pub const ALL: [PushState; 4] = [PushState::Pending, PushState::Sent, PushState::Failed, PushState::NoTarget];

    pub fn as_str(self) -> &'static str {
        match self {
            PushState::Pending => "pending",
            PushState::Sent => "sent",
            PushState::Failed => "failed",
            PushState::NoTarget => "no-target",
        }
    }

    pub fn parse(s: &str) -> Result<PushState, FieldError> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| FieldError::new("pushstate", format!("{s:?} is no push state")))
    }

    /// The push gave up (or had nowhere to go): the change has not reached
    /// the phone and will not without help.
    pub fn is_failure(self) -> bool {
        matches!(self, PushState::Failed | PushState::NoTarget)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip() {
        for s in PushState::ALL {
            assert_eq!(PushState::parse(s.as_str()).unwrap(), s);
        }
        assert!(PushState::parse("applied").is_err());
    }
}
