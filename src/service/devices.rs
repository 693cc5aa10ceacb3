//! Devices: the unknown phones a caller may see, and claims. An unknown
//! phone belongs to the tenant whose provisioning token it came under (or
//! whose site networks it fetched from); superusers see them all.

use super::{Result, Service, ServiceError};
use crate::auth::{AuthError, Caller};
use crate::model::Mac;
use crate::store::devices::DeviceScope;
use crate::store::handsets::HandsetView;

impl Service {
    /// The unknown devices `caller` may see.
    pub async fn unknown_scope(&self, caller: &Caller) -> Result<DeviceScope> {
        if caller.user.superuser {
            return Ok(DeviceScope::Unknown);
        }
        let domain = self.store.domain_by_name(&caller.domain).await?.ok_or(AuthError::NoSuchDomain)?;
        Ok(DeviceScope::UnknownFor { domain_id: domain.id, networks: domain.site_networks })
    }

    /// Gives the phone with `mac` to extension `ext` (with `model`, else
    /// what it reported), or creates that handset when the domain's
    /// `claimcreates` allows; the push goes in the same transaction. The
    /// phone must be one the caller may see: anything else is 404, as for
    /// a MAC nobody has.
    pub async fn claim(&self, caller: &Caller, mac: Mac, ext: &str, model: Option<String>) -> Result<HandsetView> {
        caller.require_write()?;
        crate::model::validate_extension(ext)?;
        self.mac_probes.check(caller)?;
        let domain = self.store.domain_by_name(&caller.domain).await?.ok_or(AuthError::NoSuchDomain)?;
        if !caller.user.superuser {
            let device = self.store.device(&mac).await?;
            if !device.is_some_and(|d| d.visible_to(domain.id, &domain.site_networks)) {
                return Err(ServiceError::NotFound(
                    "Device not found: it has not asked for its file under this domain's provisioning URL or from its site networks",
                ));
            }
        }
        let view = match self.store.claim_device(&caller.actor, caller.domain_id, mac, ext, model, domain.claim_creates).await {
            Ok(view) => view,
            Err(e) => return Err(self.mac_probes.answer(&self.store, caller, Some(mac), Some(ext), e).await),
        };
        tracing::info!(user = %caller.user.login(), domain = %caller.domain, ext = %ext, mac = %mac, "device claimed");
        Ok(view)
    }
}
