//! The `SecretRotation` custom resource.

// Each printcolumn of kube's derive repeats keys such as type_, which clippy mistakes for
// duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Duration;

/// A Secret whose values the operator generates and rotates on a schedule.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "security.medianest.io",
    version = "v1alpha1",
    kind = "SecretRotation",
    plural = "secretrotations",
    shortname = "sr",
    category = "medianest",
    namespaced,
    status = "SecretRotationStatus",
    derive = "PartialEq",
    doc = "A Secret whose keys the operator generates and rotates on a schedule.",
    printcolumn(name = "Secret", type_ = "string", json_path = ".spec.secretName"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct SecretRotationSpec {
    /// Name of the Secret to generate, in the namespace of this SecretRotation.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub secret_name: String,

    /// Time between rotations, such as 2160h or 90d. Defaults to 90d.
    #[serde(default = "default_interval")]
    pub interval: Duration,
}

/// Observed state of a SecretRotation, written by the operator.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretRotationStatus {
    /// The metadata.generation of the spec that this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Ready reports whether the Secret exists and is rotated on schedule.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

fn default_interval() -> Duration {
    Duration::new("90d")
}
