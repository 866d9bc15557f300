//! Pure functions from a spec plus observed cluster state to the objects to write.
//!
//! Nothing here does I/O or reads the clock, so `render`, the unit tests and the controllers
//! all drive the same code.

pub mod certificates;
pub mod connectivity;
pub mod diff;
pub mod hardening;
pub mod names;
pub mod namespaces;
pub mod network;
pub mod pki;
pub mod podsecurity;
pub mod selector;
pub mod validate;
pub mod workloads;
