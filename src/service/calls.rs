//! Call control (Handset Update's call-control parameters): checked here,
//! queued with its audit row, answered 202, then carried out by a task of
//! its own through the domain's relay (`push::calls`), its outcome written
//! back for the action's `GET`. Each user may ask [`CALL_ACTIONS_PER_MINUTE`]
//! actions a minute.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::{Result, Service, ServiceError};
use crate::auth::Caller;
use crate::model::call::{validate_dial_string, CallAction, CallActionState};
use crate::model::{validate_extension, CallState, FieldError};
use crate::push::calls::{CallControl, CallSubject, Unroutable};
use crate::store::calls::CallActionRow;

/// Call actions per user per minute.
pub const CALL_ACTIONS_PER_MINUTE: u32 = 30;

/// The per-user limit on call actions.
pub(super) struct CallLimiter(DefaultKeyedRateLimiter<i64>);

impl Default for CallLimiter {
    fn default() -> Self {
        let per_minute = NonZeroU32::new(CALL_ACTIONS_PER_MINUTE).expect("a non-zero limit");
        CallLimiter(RateLimiter::keyed(Quota::per_minute(per_minute)))
    }
}

impl Service {
    /// Call control is carried out by `control` (without it, every call
    /// action answers that this server does not do them).
    pub fn with_call_control(mut self, control: Arc<CallControl>) -> Self {
        self.calls = Some(control);
        self
    }

    /// Queues `action` on handset `ext` with `target` (the number to dial or
    /// transfer to, or the supervisor's extension) and starts carrying it
    /// out. Refused: a read-only user (403), over the per-user limit (429),
    /// a target that is not a dial string or extension (400), an unknown
    /// handset or a supervisor not in the caller's domain (404), a transfer
    /// while the handset has no call (409), a relay that cannot do it (501).
    pub async fn call_action(&self, caller: &Caller, ext: &str, action: CallAction, target: &str) -> Result<CallActionRow> {
        caller.require_write()?;
        if let Err(not_until) = self.call_limiter.0.check_key(&caller.user.id) {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            return Err(ServiceError::TooManyCallActions(wait.max(Duration::from_secs(1))));
        }
        if action.is_supervision() {
            validate_extension(target).map_err(|e| FieldError::new(action.as_str(), e.reason))?;
        } else {
            validate_dial_string(action.as_str(), target)?;
        }
        let Some(control) = &self.calls else {
            return Err(ServiceError::Unsupported(format!("{}: call control is not set up on this server", action.as_str())));
        };
        let view = self.store.handset(caller.domain_id, ext).await?.ok_or(ServiceError::NotFound("Handset not found"))?;
        if action.is_supervision() && self.store.handset(caller.domain_id, target).await?.is_none() {
            // The same words whether the extension exists in another domain
            // or nowhere.
            return Err(ServiceError::NotFound("Supervisor handset not found"));
        }
        if action.is_transfer() && !matches!(view.status.state, CallState::OnCall | CallState::OnHold) {
            return Err(ServiceError::Conflict(format!(
                "{}: no call to transfer (the handset is {})",
                action.as_str(),
                view.status.state.as_str()
            )));
        }
        let domain = self.store.domain_by_name(&caller.domain).await?.ok_or(ServiceError::NotFound("Domain not found"))?;
        let relay = domain.relay.relay()?;
        let fetch = self.store.last_fetch_place(view.handset.id).await?;
        let id = hex::encode(rand::random::<[u8; 12]>());
        let h = &view.handset;
        let subject = CallSubject {
            domain: &caller.domain,
            extension: &h.extensionnumber,
            relay: &relay,
            ami_context: &domain.ami_context,
            phone_ip: view.status.registration.map(|a| a.ip()).or(fetch.ip),
            model: h.model.as_deref(),
            last_vendor: fetch.vendor.as_deref(),
            mac: h.mac,
            device_password: &h.device_password,
        };
        let route = control.route(action, target, &id, &subject).map_err(|e| match e {
            Unroutable::Unsupported(why) => ServiceError::Unsupported(why),
            Unroutable::NoAddress => ServiceError::Conflict(format!("{}: {e}", action.as_str())),
        })?;
        let row = self.store.queue_call_action(&caller.actor, caller.domain_id, h.id, ext, &id, action, target).await?;
        tracing::info!(user = %caller.user.login(), domain = %caller.domain, ext = %ext, action = action.as_str(), target = %target, id = %id, relay = relay.kind(), "call action queued");
        let (store, control, target) = (self.store.clone(), control.clone(), target.to_string());
        tokio::spawn(async move {
            if let Err(e) = store.set_call_action_state(&id, CallActionState::Sent, "").await {
                tracing::warn!(error = %e, id = %id, "could not record a call action's state");
            }
            let (state, error) = match control.carry_out(action, &target, &route).await {
                Ok(()) => (CallActionState::Done, String::new()),
                Err(error) => (CallActionState::Failed, error),
            };
            tracing::info!(id = %id, action = action.as_str(), state = state.as_str(), error = %error, "call action finished");
            if let Err(e) = store.set_call_action_state(&id, state, &error).await {
                tracing::error!(error = %e, id = %id, "could not record a call action's outcome");
            }
        });
        Ok(row)
    }

    /// A call action of the caller's domain (404 for another's or none).
    pub async fn call_action_status(&self, caller: &Caller, id: &str) -> Result<CallActionRow> {
        if id.len() > 64 {
            return Err(ServiceError::NotFound("Call action not found"));
        }
        self.store.call_action(caller.domain_id, id).await?.ok_or(ServiceError::NotFound("Call action not found"))
    }
}
