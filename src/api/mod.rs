//! Custom resource types, their validation and their status conditions.

pub mod condition;
pub mod duration;
pub mod mtls;
pub mod policy;
pub mod rotation;
pub mod workloads;

pub use duration::Duration;
pub use policy::{
    MediaNestSecurityPolicy, MediaNestSecurityPolicySpec, MediaNestSecurityPolicyStatus,
};
pub use rotation::{SecretRotation, SecretRotationSpec, SecretRotationStatus};

/// API group of both custom resources.
pub const GROUP: &str = "security.medianest.io";

/// API version of both custom resources.
pub const VERSION: &str = "v1alpha1";
