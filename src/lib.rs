//! Kubernetes operator that enforces zero-trust security for MediaNest clusters.
//!
//! `api` holds the custom resource types, `policy` the pure functions that turn them into the
//! objects to write, and `controller` the reconcilers that write them.

pub mod api;
pub mod client;
pub mod controller;
pub mod crd;
pub mod policy;
pub mod render;
pub mod server;
pub mod telemetry;
