//! What a registrar reports of phones' registrations (`contrib/kamailio`
//! posts one report per REGISTER, un-REGISTER and expiry): Handset Status
//! shows it, and the address it registered from is where direct pushes go.

use super::{Result, Service, ServiceError};
use crate::auth::Caller;
use crate::model::status::Registration;
use crate::model::HandsetStatus;

impl Service {
    /// Records `report` on the handset whose address of record it names:
    /// in the caller's domain, or in any domain for a superuser (one
    /// registrar serves every tenant). An address of record that names no
    /// handset there is "not found", whether or not another tenant has it.
    pub async fn report_registration(&self, caller: &Caller, report: &Registration) -> Result<HandsetStatus> {
        caller.require_write()?;
        let scope = (!caller.user.superuser).then_some(caller.domain_id);
        let domain_id = self
            .store
            .domain_of_address_of_record(scope, &report.user, &report.host)
            .await?
            .ok_or(ServiceError::NotFound("No handset has this address of record"))?;
        let now = crate::store::now_ms();
        Ok(self.store.report_status(&caller.actor, domain_id, &report.user, |s| s.registered_as(report, now)).await?)
    }
}
