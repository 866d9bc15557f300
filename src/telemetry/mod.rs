//! Logs, metrics and the count of API requests the operator makes.

pub mod logging;
pub mod metrics;
pub mod requests;

pub use metrics::Metrics;
pub use requests::{RequestCounter, RequestCountingLayer};
