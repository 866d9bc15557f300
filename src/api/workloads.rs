//! The `workloads` section of a MediaNestSecurityPolicy: container hardening and Pod Security
//! Admission labels.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Hardening of the workloads in the governed namespaces, and the Pod Security Standards
/// level written as Pod Security Admission labels on those namespaces.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!has(self.uidRange) || self.uidRange.min <= self.uidRange.max",
        "message": "uidRange.min must not be greater than uidRange.max",
        "fieldPath": ".uidRange",
    },
]))]
pub struct WorkloadsSpec {
    /// Selects the workloads to harden by their labels, in every governed namespace. An
    /// empty or missing selector selects every workload of the listed kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,

    /// Kinds of workload to harden. Jobs and bare Pods cannot be changed after creation, so
    /// they are never edited: non-compliant ones are reported in status with a Warning Event.
    /// Defaults to all four kinds.
    #[serde(default = "default_kinds")]
    #[schemars(length(min = 1, max = 4), extend("x-kubernetes-list-type" = "set"))]
    pub kinds: Vec<WorkloadKind>,

    /// Require containers to run as a non-root user (securityContext.runAsNonRoot). Defaults
    /// to true.
    #[serde(default = "default_true")]
    pub run_as_non_root: bool,

    /// User IDs that containers may run as. A pod whose runAsUser is unset, 0 or outside
    /// the range gets the range's minimum as runAsUser, runAsGroup and fsGroup, because the
    /// operator cannot see which user an image runs as. A value inside the range is kept.
    /// Defaults to 10001-10004.
    #[serde(default)]
    pub uid_range: UidRange,

    /// Mount every container's root filesystem read-only. Defaults to true.
    #[serde(default = "default_true")]
    pub read_only_root_filesystem: bool,

    /// Paths that stay writable on a read-only root filesystem: each gets an emptyDir volume
    /// mounted in every container. A path a container already mounts is not mounted twice.
    #[serde(default)]
    #[schemars(length(max = 8))]
    pub writable_paths: Vec<WritablePath>,

    /// Default resource requests and limits for containers that set none. The per-container
    /// process limit (1000 PIDs in many hardening guides) is not a pod field in Kubernetes:
    /// set it with the kubelet's podPidsLimit on the nodes.
    #[serde(default)]
    pub default_resources: DefaultResources,

    /// Pod Security Standards level written as the pod-security.kubernetes.io/enforce,
    /// audit and warn labels of every governed namespace. Defaults to restricted.
    #[serde(default)]
    pub pod_security_level: PodSecurityLevel,

    /// Relaxations for named workloads, each with a reason. A capability can only be added
    /// through an exemption.
    #[serde(default)]
    #[schemars(length(max = 64))]
    pub exemptions: Vec<Exemption>,

    /// Pace of the rollouts that hardening causes: the first enforcement changes the pod
    /// template of every non-compliant workload, which restarts its pods.
    #[serde(default)]
    pub rollout: RolloutSpec,

    /// Take over hardened fields that another field manager (Helm, Argo CD, kubectl)
    /// owns with a different value. Without it such a workload is reported in status and
    /// left as it is. Defaults to false.
    #[serde(default)]
    pub force_conflicts: bool,
}

impl Default for WorkloadsSpec {
    fn default() -> Self {
        Self {
            selector: None,
            kinds: default_kinds(),
            run_as_non_root: true,
            uid_range: UidRange::default(),
            read_only_root_filesystem: true,
            writable_paths: Vec::new(),
            default_resources: DefaultResources::default(),
            pod_security_level: PodSecurityLevel::default(),
            exemptions: Vec::new(),
            rollout: RolloutSpec::default(),
            force_conflicts: false,
        }
    }
}

/// A kind of workload whose pod template the operator hardens.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
    DaemonSet,
    CronJob,
}

impl WorkloadKind {
    /// Returns the kind as the Kubernetes API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "Deployment",
            WorkloadKind::StatefulSet => "StatefulSet",
            WorkloadKind::DaemonSet => "DaemonSet",
            WorkloadKind::CronJob => "CronJob",
        }
    }
}

/// An inclusive range of user IDs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct UidRange {
    /// Lowest user ID, at least 1 because 0 is root.
    #[schemars(range(min = 1, max = 2147483647))]
    pub min: i64,
    /// Highest user ID.
    #[schemars(range(min = 1, max = 2147483647))]
    pub max: i64,
}

impl Default for UidRange {
    fn default() -> Self {
        Self {
            min: 10001,
            max: 10004,
        }
    }
}

impl UidRange {
    /// Returns whether `uid` lies in the range.
    pub fn contains(&self, uid: i64) -> bool {
        (self.min..=self.max).contains(&uid)
    }
}

/// A path kept writable with an emptyDir volume.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WritablePath {
    /// Absolute path in the container, such as /tmp.
    #[schemars(length(min = 2, max = 256), regex(pattern = r"^/[^:]*[^/:]$"))]
    pub path: String,

    /// Size limit of the emptyDir volume, such as 64Mi. Unlimited when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_limit: Option<Quantity>,
}

/// Resource requests and limits given to containers that set none.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!has(self.requests) || !has(self.limits) || self.requests.all(k, !(k in self.limits) || !isQuantity(string(self.requests[k])) || !isQuantity(string(self.limits[k])) || quantity(string(self.requests[k])).compareTo(quantity(string(self.limits[k]))) <= 0)",
    "message": "a default request is above the default limit of the same resource; lower the request or raise the limit",
}]))]
pub struct DefaultResources {
    /// Requests by resource name (cpu, memory), for containers without requests.
    #[serde(default)]
    #[schemars(extend("maxProperties" = 4, "additionalProperties" = { "x-kubernetes-int-or-string": true, "maxLength": 64 }, "x-kubernetes-validations" = [{
        "rule": "self.all(k, isQuantity(string(self[k])) && quantity(string(self[k])).isGreaterThan(quantity('0')))",
        "message": "every request must be a positive quantity, such as 500m or 256Mi",
    }]))]
    pub requests: BTreeMap<String, Quantity>,

    /// Limits by resource name (cpu, memory), for containers without limits. Defaults to
    /// memory 1Gi and cpu 2.
    #[serde(default = "default_limits")]
    #[schemars(extend("maxProperties" = 4, "additionalProperties" = { "x-kubernetes-int-or-string": true, "maxLength": 64 }, "x-kubernetes-validations" = [{
        "rule": "self.all(k, isQuantity(string(self[k])) && quantity(string(self[k])).isGreaterThan(quantity('0')))",
        "message": "every limit must be a positive quantity, such as 2 or 1Gi",
    }]))]
    pub limits: BTreeMap<String, Quantity>,
}

impl Default for DefaultResources {
    fn default() -> Self {
        Self {
            requests: BTreeMap::new(),
            limits: default_limits(),
        }
    }
}

/// Pod Security Standards level.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum PodSecurityLevel {
    /// No restrictions.
    Privileged,
    /// Blocks known privilege escalations.
    Baseline,
    /// Current pod hardening best practice.
    #[default]
    Restricted,
}

/// A relaxation of the hardening for one workload, or one container of it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "size(self.addCapabilities) > 0 || self.allowPrivilegeEscalation || self.writableRootFilesystem || self.runAsRoot",
        "message": "an exemption must relax something: addCapabilities, allowPrivilegeEscalation, writableRootFilesystem or runAsRoot",
    },
]))]
pub struct Exemption {
    /// Kind of the workload.
    pub kind: WorkloadKind,

    /// Namespace of the workload.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub namespace: String,

    /// Name of the workload.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub name: String,

    /// Container the exemption applies to. When unset, it applies to every container of the
    /// workload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub container: Option<String>,

    /// Capabilities to add, such as NET_BIND_SERVICE, written without the CAP_ prefix. ALL
    /// is not allowed: list each capability the workload needs.
    #[serde(default)]
    #[schemars(schema_with = "capabilities_schema")]
    pub add_capabilities: Vec<String>,

    /// Leave allowPrivilegeEscalation unset instead of false.
    #[serde(default)]
    pub allow_privilege_escalation: bool,

    /// Leave the root filesystem writable.
    #[serde(default)]
    pub writable_root_filesystem: bool,

    /// Let the workload run as root: runAsNonRoot and the user ID range are not applied.
    #[serde(default)]
    pub run_as_root: bool,

    /// Why the workload needs the relaxation, in words: a reason without a letter or digit is
    /// rejected. Reported in status.
    #[schemars(
        length(max = 512),
        extend("x-kubernetes-validations" = [{
            "rule": "self.matches(r'[\\p{L}\\p{N}]')",
            "message": "reason has no words; say why the workload needs the relaxation",
        }])
    )]
    pub reason: String,

    /// Time after which the exemption no longer applies, in RFC 3339 format such as
    /// 2027-01-31T00:00:00Z. The workload is hardened within seconds of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<Time>,
}

/// Pace of hardening rollouts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutSpec {
    /// Workloads whose pod template the operator changes at the same time. The next one
    /// starts when one of them has rolled out or its timeout has passed. Defaults to 1.
    #[serde(default = "default_max_concurrent")]
    #[schemars(range(min = 1, max = 100))]
    pub max_concurrent: i32,

    /// How long to wait for one workload to roll out before starting the next, such as 5m.
    /// Defaults to 5m.
    #[serde(default = "default_rollout_timeout")]
    pub timeout: super::Duration,
}

impl Default for RolloutSpec {
    fn default() -> Self {
        Self {
            max_concurrent: default_max_concurrent(),
            timeout: default_rollout_timeout(),
        }
    }
}

/// Schema of addCapabilities: at most 16 capability names in capitals, without the CAP_
/// prefix that the Linux headers use, and never ALL.
fn capabilities_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "maxItems": 16,
        "items": {
            "type": "string",
            "maxLength": 32,
            "pattern": "^[A-Z][A-Z0-9_]*$",
            "x-kubernetes-validations": [
                {
                    "rule": "!self.startsWith('CAP_')",
                    "messageExpression": "self == 'CAP_ALL' ? 'ALL cannot be added; list each capability the workload needs' : size(self) > 4 ? 'use ' + self.substring(4) + ' instead of ' + self + ': capability names are written without the CAP_ prefix' : 'CAP_ is not a capability name; write one without the CAP_ prefix, such as NET_BIND_SERVICE'",
                },
                {
                    "rule": "self != 'ALL'",
                    "message": "ALL cannot be added; list each capability the workload needs, such as NET_BIND_SERVICE",
                },
            ],
        },
    })
}

fn default_kinds() -> Vec<WorkloadKind> {
    vec![
        WorkloadKind::Deployment,
        WorkloadKind::StatefulSet,
        WorkloadKind::DaemonSet,
        WorkloadKind::CronJob,
    ]
}

fn default_limits() -> BTreeMap<String, Quantity> {
    BTreeMap::from([
        ("cpu".to_string(), Quantity("2".to_string())),
        ("memory".to_string(), Quantity("1Gi".to_string())),
    ])
}

fn default_true() -> bool {
    true
}

fn default_max_concurrent() -> i32 {
    1
}

fn default_rollout_timeout() -> super::Duration {
    super::Duration::new("5m")
}
