//! Handset changes: create, update, delete, resync. Every write is audited
//! and, when it changes what the phone is configured with, bumps the
//! revision and queues a push in its transaction (the store does both).

use super::{Result, Service};
use crate::auth::Caller;
use crate::model::{HandsetInput, Mac, NewHandset};
use crate::store::handsets::HandsetView;

impl Service {
    /// Creates handsets in one transaction, all or none; a failure comes
    /// with the index of the handset that caused it.
    pub async fn create_handsets(
        &self,
        caller: &Caller,
        new: Vec<NewHandset>,
    ) -> std::result::Result<Vec<HandsetView>, (usize, super::ServiceError)> {
        caller.require_write().map_err(|e| (0, e.into()))?;
        let macs: Vec<Option<Mac>> = new.iter().map(|n| n.fields.mac.flatten()).collect();
        if macs.iter().any(Option::is_some) {
            self.mac_probes.check(caller).map_err(|e| (0, e))?;
        }
        match self.store.create_handsets(&caller.actor, caller.domain_id, new).await {
            Ok(created) => {
                tracing::info!(user = %caller.user.login(), domain = %caller.domain, count = created.len(), "handsets created");
                Ok(created)
            }
            Err((i, e)) => {
                let mac = macs.get(i).copied().flatten();
                Err((i, self.mac_probes.answer(&self.store, caller, mac, None, e).await))
            }
        }
    }

    /// Handset Update: the changed field names come back (none: nothing
    /// changed, no revision).
    pub async fn update_handset(
        &self,
        caller: &Caller,
        ext: &str,
        changes: &HandsetInput,
    ) -> Result<(HandsetView, Vec<&'static str>)> {
        caller.require_write()?;
        let mac = changes.mac.flatten();
        if mac.is_some() {
            self.mac_probes.check(caller)?;
        }
        match self.store.update_handset(&caller.actor, caller.domain_id, ext, changes).await {
            Ok((view, changed)) => {
                if !changed.is_empty() {
                    tracing::info!(user = %caller.user.login(), domain = %caller.domain, ext = %ext, fields = %changed.join(","), revision = view.handset.revision, "handset updated");
                }
                Ok((view, changed))
            }
            Err(e) => Err(self.mac_probes.answer(&self.store, caller, mac, Some(ext), e).await),
        }
    }

    pub async fn delete_handset(&self, caller: &Caller, ext: &str) -> Result<()> {
        caller.require_write()?;
        self.store.delete_handset(&caller.actor, caller.domain_id, ext).await?;
        tracing::info!(user = %caller.user.login(), domain = %caller.domain, ext = %ext, "handset deleted");
        Ok(())
    }

    /// Queues a NOTIFY for the handset's current revision (`reboot`: the
    /// vendor's reboot event).
    pub async fn resync(&self, caller: &Caller, ext: &str, reboot: bool) -> Result<()> {
        caller.require_write()?;
        Ok(self.store.request_resync(&caller.actor, caller.domain_id, ext, reboot).await?)
    }
}
