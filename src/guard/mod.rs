//! Defences against guessing: bounded strike tables that ban keys (users,
//! source addresses) that fail too often, and the provisioning scan guard
//! built on them.

pub mod scan;
pub mod strikes;

pub use scan::{Miss, ScanGuard};
pub use strikes::{StrikePolicy, StrikeTable};
