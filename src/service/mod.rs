//! The operations: what the API, the admin UI and the command line do to
//! the records, with the rules that hold whichever front end asks (roles,
//! tenant scope, which MAC answers are limited, what is audited). Front ends
//! turn their wire formats into these calls and the results back; the
//! store underneath knows only SQL.

pub mod calls;
pub mod devices;
pub mod domains;
pub mod handsets;
pub mod import;
pub mod import_queue;
mod mac_probes;
pub mod registrations;

use std::time::Duration;

use crate::auth::AuthError;
use crate::model::FieldError;
use crate::push::target::TargetPolicy;
use crate::store::{Store, StoreError};

/// The operations, over one store. Cheap to share (`Arc`).
pub struct Service {
    pub store: Store,
    mac_probes: mac_probes::MacProbes,
    /// Where tenants may point their push relays.
    targets: TargetPolicy,
    /// Imports take turns (see `import_queue`).
    imports: import_queue::ImportQueue,
    /// Who carries call actions out (`None`: this server does not).
    calls: Option<std::sync::Arc<crate::push::calls::CallControl>>,
    call_limiter: calls::CallLimiter,
}

impl Service {
    /// The operations under the strict target policy and the default
    /// import limits.
    pub fn new(store: Store) -> Self {
        Service {
            store,
            mac_probes: Default::default(),
            targets: TargetPolicy::new(false),
            imports: import_queue::ImportQueue::new(import_queue::ImportLimits::default()),
            calls: None,
            call_limiter: Default::default(),
        }
    }

    /// The operator allows relays to internal addresses
    /// (`allow_internal_targets`).
    pub fn allowing_internal_targets(mut self, allow: bool) -> Self {
        self.targets = TargetPolicy::new(allow);
        self
    }

    /// Imports take turns under `limits`.
    pub fn with_import_limits(mut self, limits: import_queue::ImportLimits) -> Self {
        self.imports = import_queue::ImportQueue::new(limits);
        self
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error("{0}")]
    NotFound(&'static str),
    /// Too many answers naming MACs of other domains (see `mac_probes`).
    #[error("Too many answers naming MACs in use in other domains; try again later")]
    TooManyMacConflicts(Duration),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// As many imports as allowed wait already: come back after this long.
    #[error("{}", import::IMPORTS_BUSY)]
    ImportsBusy(Duration),
    /// The request conflicts with the handset's state (no call to transfer).
    #[error("{0}")]
    Conflict(String),
    /// Not something this server or the domain's relay can do: why.
    #[error("{0}")]
    Unsupported(String),
    /// Too many call actions by this user: come back after this long.
    #[error("Too many call actions; try again later")]
    TooManyCallActions(Duration),
    /// An import's file could not be read.
    #[error("cannot read the file: {0}")]
    File(std::io::Error),
}

pub type Result<T, E = ServiceError> = std::result::Result<T, E>;
