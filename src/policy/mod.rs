//! Pure functions from a spec plus observed cluster state to the objects to write.
//!
//! Nothing here talks to the API server or reads the clock (randomness comes from the operating
//! system), so `render`, the unit tests and the controllers all drive the same code.

pub mod certificates;
pub mod connectivity;
pub mod diff;
pub mod generators;
pub mod hardening;
pub mod names;
pub mod namespaces;
pub mod network;
pub mod pki;
pub mod podsecurity;
pub mod rotation;
pub mod selector;
pub mod validate;
pub mod workloads;
