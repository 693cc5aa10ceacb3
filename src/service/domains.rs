//! A domain's settings and its provisioning token (admins).

use std::time::Duration;

use super::{Result, Service};
use crate::auth::Caller;
use crate::model::{Domain, DomainChanges};

impl Service {
    /// Changes the caller's domain; a change to what phones are configured
    /// with gives every handset a new revision and a push.
    pub async fn update_domain(&self, caller: &Caller, changes: &DomainChanges) -> Result<(Domain, Vec<&'static str>)> {
        caller.require_admin()?;
        let (d, changed) = self.store.update_domain(&caller.actor, &caller.domain, changes).await?;
        if !changed.is_empty() {
            tracing::info!(user = %caller.user.login(), domain = %d.name, fields = %changed.join(","), "domain updated");
        }
        Ok((d, changed))
    }

    /// A new provisioning token; the old one works for `grace`.
    pub async fn rotate_token(&self, caller: &Caller, grace: Duration) -> Result<Domain> {
        caller.require_admin()?;
        let d = self.store.rotate_provisioning_token(&caller.actor, &caller.domain, grace).await?;
        tracing::info!(user = %caller.user.login(), domain = %d.name, grace_hours = grace.as_secs() / 3600, "provisioning token rotated");
        Ok(d)
    }
}
