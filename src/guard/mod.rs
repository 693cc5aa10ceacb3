//! Defences against guessing: failed API logins now, provisioning scans
//! (per-IP misses) with the provisioning issue. Both count strikes per key
//! in a bounded table and ban keys that strike too often.

pub mod strikes;

pub use strikes::{StrikePolicy, StrikeTable};
