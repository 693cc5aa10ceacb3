//! Call control (Jingl's call-control parameters of Handset Update): what a
//! caller may ask a handset's call to do, and the rules on its target.

use super::FieldError;

/// One call-control request, by Jingl's parameter name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallAction {
    /// Make the handset dial a number.
    Create,
    /// Transfer the handset's current call to a number, without asking.
    TransferBlind,
    /// Transfer it after the handset has spoken to the number.
    TransferAttended,
    /// A supervisor listens to the handset's call.
    Monitor,
    /// A supervisor speaks to the handset only (whisper).
    Coach,
    /// A supervisor joins the call.
    Barge,
}

impl CallAction {
    pub const ALL: &'static [CallAction] = &[
        CallAction::Create,
        CallAction::TransferBlind,
        CallAction::TransferAttended,
        CallAction::Monitor,
        CallAction::Coach,
        CallAction::Barge,
    ];

    /// Jingl's parameter name.
    pub fn as_str(self) -> &'static str {
        match self {
            CallAction::Create => "callcreate",
            CallAction::TransferBlind => "calltransferblind",
            CallAction::TransferAttended => "calltransferattended",
            CallAction::Monitor => "callmonitor",
            CallAction::Coach => "callcoach",
            CallAction::Barge => "callbarge",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|a| a.as_str() == s)
    }

    /// A transfer needs a call to transfer.
    pub fn is_transfer(self) -> bool {
        matches!(self, CallAction::TransferBlind | CallAction::TransferAttended)
    }

    /// Its target is a supervisor's extension, not a number to dial.
    pub fn is_supervision(self) -> bool {
        matches!(self, CallAction::Monitor | CallAction::Coach | CallAction::Barge)
    }
}

/// Where an action stands: `queued` with the 202, `sent` while the relay
/// works on it, then `done` or `failed` (with its error).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallActionState {
    Queued,
    Sent,
    Done,
    Failed,
}

impl CallActionState {
    pub fn as_str(self) -> &'static str {
        match self {
            CallActionState::Queued => "queued",
            CallActionState::Sent => "sent",
            CallActionState::Done => "done",
            CallActionState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [CallActionState::Queued, CallActionState::Sent, CallActionState::Done, CallActionState::Failed]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// A number a phone or PBX can dial: 1 to 32 of `0-9 * # +`, a `+` only
/// first. Anything else never reaches a dial plan or a phone's URL.
pub fn validate_dial_string(field: &'static str, s: &str) -> Result<(), FieldError> {
    let digits = s.strip_prefix('+').unwrap_or(s);
    let ok =
        (1..=32).contains(&s.len()) && !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit() || b == b'*' || b == b'#');
    ok.then_some(())
        .ok_or_else(|| FieldError::new(field, "must be a dial string: 1-32 of the digits 0-9, * and #, optionally after one +"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dial_strings() {
        for good in ["0409123456", "+61409123456", "*97", "#31#1234", "1"] {
            assert!(validate_dial_string("callcreate", good).is_ok(), "{good}");
        }
        for bad in ["", "04a9", "+", "++61", "12+3", "0409 123", &"1".repeat(33), "1;2", "1\r\nAction: Originate"] {
            assert!(validate_dial_string("callcreate", bad).is_err(), "{bad:?}");
        }
        assert!(validate_dial_string("callcreate", &"1".repeat(32)).is_ok());
    }

    #[test]
    fn names() {
        for a in CallAction::ALL {
            assert_eq!(CallAction::parse(a.as_str()), Some(*a));
        }
        assert!(CallAction::TransferBlind.is_transfer() && !CallAction::Create.is_transfer());
        assert!(CallAction::Barge.is_supervision() && !CallAction::TransferAttended.is_supervision());
    }
}
