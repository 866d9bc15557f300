//! The `MediaNestSecurityPolicy` custom resource.

// Each printcolumn of kube's derive repeats keys such as type_, which clippy mistakes for
// duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use super::mtls::MtlsSpec;
use super::workloads::WorkloadsSpec;

/// Declares which namespaces are governed and how their pods are isolated on the network.
///
/// The operator turns one policy into NetworkPolicies in every governed namespace and keeps
/// them as declared: edits and deletions by other clients are reverted.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "security.medianest.io",
    version = "v1alpha1",
    kind = "MediaNestSecurityPolicy",
    plural = "medianestsecuritypolicies",
    shortname = "msp",
    category = "medianest",
    status = "MediaNestSecurityPolicyStatus",
    derive = "PartialEq",
    doc = "Zero-trust security policy for a set of namespaces: network segmentation into zones, default deny, DNS and monitoring access.",
    printcolumn(name = "Mode", type_ = "string", json_path = ".spec.mode"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Namespaces", type_ = "integer", json_path = ".status.governedNamespaceCount"),
    printcolumn(name = "NetworkPolicies", type_ = "integer", json_path = ".status.networkPolicyCount"),
    printcolumn(name = "Hardened", type_ = "integer", json_path = ".status.hardenedWorkloads"),
    printcolumn(name = "Exempted", type_ = "integer", priority = 1, json_path = ".status.exemptedWorkloads"),
    printcolumn(name = "NonCompliant", type_ = "integer", json_path = ".status.nonCompliantWorkloads"),
    printcolumn(name = "Drift", type_ = "integer", priority = 1, json_path = ".status.driftCorrections"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = kube::core::Rule::new("size(self.metadata.name) <= 63")
        .message("metadata.name must be at most 63 characters, because it is written as a label value on every generated object"),
)]
#[serde(rename_all = "camelCase")]
pub struct MediaNestSecurityPolicySpec {
    /// Enforce writes the generated objects; Audit writes nothing but this policy's status and
    /// Events, which list what Enforce would create, change or delete. Defaults to Enforce.
    #[serde(default)]
    pub mode: Mode,

    /// Selects the governed namespaces by their labels. An empty selector ({}) selects every
    /// namespace except the protected ones: kube-system, kube-public, kube-node-lease and the
    /// operator's own namespace.
    pub namespace_selector: LabelSelector,

    /// Protected namespaces (kube-system, kube-public, kube-node-lease, the operator's own
    /// namespace) that this policy may govern. A protected namespace is governed only when it
    /// is listed here and namespaceSelector also selects it, because a default deny there can
    /// break the cluster.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8), extend("x-kubernetes-list-type" = "set"))]
    pub include_protected_namespaces: Vec<ProtectedNamespaceName>,

    /// Network segmentation of the governed namespaces.
    #[serde(default)]
    pub network: NetworkSpec,

    /// Hardening of the workloads in the governed namespaces and the Pod Security Admission
    /// labels of those namespaces. Workloads are left as they are when this is unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workloads: Option<WorkloadsSpec>,

    /// Certificates for mutual TLS between the services of the governed namespaces. No
    /// certificates are issued when this is unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtls: Option<MtlsSpec>,
}

/// Whether a policy writes what it generates or only reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Mode {
    /// Write the generated objects and correct drift.
    #[default]
    Enforce,
    /// Compute and report, writing nothing but status and Events.
    Audit,
}

// The name of a namespace, as a DNS label. A plain comment, so that kubectl explain shows only
// the field's own description.
#[derive(
    Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(transparent)]
pub struct ProtectedNamespaceName(
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub String,
);

/// Network segmentation: default deny, DNS, zones, monitoring and extra egress.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "self.zones.all(z, self.zones.exists_one(y, y.name == z.name))",
        "message": "zone names must be unique within spec.network.zones",
        "fieldPath": ".zones",
    },
    {
        "rule": "self.zones.all(z, z.ingress.all(r, r.from.all(p, !has(p.zone) || self.zones.exists(y, y.name == p.zone))))",
        "message": "every zones[].ingress[].from[].zone must name a zone defined in spec.network.zones",
        "fieldPath": ".zones",
    },
    {
        "rule": "self.egress.all(e, self.egress.exists_one(f, f.name == e.name))",
        "message": "egress rule names must be unique within spec.network.egress",
        "fieldPath": ".egress",
    },
]))]
pub struct NetworkSpec {
    /// Generate a NetworkPolicy in every governed namespace that selects all pods and denies
    /// all ingress and egress, so that only the paths allowed below are open. Defaults to true.
    #[serde(default = "default_true")]
    pub default_deny: bool,

    /// Egress from every pod of the governed namespaces to the cluster DNS on UDP and TCP
    /// port 53. On by default, because default deny otherwise blocks name resolution.
    #[serde(default)]
    pub dns: DnsSpec,

    /// Zones: groups of pods, each accepting traffic only from the sources it lists. The
    /// operator also opens the matching egress of the sending pods, since egress is denied
    /// by default.
    #[serde(default)]
    #[schemars(length(max = 16))]
    pub zones: Vec<Zone>,

    /// A monitoring system (for example Prometheus) allowed to scrape the listed ports of
    /// the pods in the governed namespaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitoring: Option<MonitoringSpec>,

    /// Extra egress rules, for example to an external API, opened for the selected pods of
    /// every governed namespace.
    #[serde(default)]
    #[schemars(length(max = 16))]
    pub egress: Vec<EgressRule>,
}

impl Default for NetworkSpec {
    fn default() -> Self {
        Self {
            default_deny: true,
            dns: DnsSpec::default(),
            zones: Vec::new(),
            monitoring: None,
            egress: Vec::new(),
        }
    }
}

/// Egress to the cluster DNS.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DnsSpec {
    /// Allow egress to the cluster DNS on UDP and TCP port 53. Defaults to true.
    #[serde(default = "default_true")]
    pub enabled: bool,

    /// Selects the namespace of the DNS pods. Defaults to kube-system, matched by its
    /// kubernetes.io/metadata.name label.
    #[serde(default = "default_dns_namespace_selector")]
    pub namespace_selector: LabelSelector,

    /// Selects the DNS pods within that namespace. Defaults to k8s-app=kube-dns, the label
    /// of CoreDNS in most distributions. Both selectors must match: they form one peer.
    #[serde(default = "default_dns_pod_selector")]
    pub pod_selector: LabelSelector,
}

impl Default for DnsSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            namespace_selector: default_dns_namespace_selector(),
            pod_selector: default_dns_pod_selector(),
        }
    }
}

/// A group of pods that accepts traffic only from the sources it lists.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Zone {
    /// Name of the zone, used in references from other zones and in the names of the
    /// generated NetworkPolicies (mn-POLICY-zone-NAME). A DNS label of at most 30 characters.
    #[schemars(
        length(min = 1, max = 30),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,

    /// Selects the zone's pods by their labels within each of the zone's namespaces.
    pub pod_selector: LabelSelector,

    /// Narrows the zone to the governed namespaces whose labels match. When unset, the zone
    /// spans every governed namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,

    /// Traffic the zone's pods accept. A zone with no rules accepts nothing, and its pods
    /// reach each other only when a rule lists the zone itself as a source.
    #[serde(default)]
    #[schemars(length(max = 8))]
    pub ingress: Vec<IngressRule>,
}

/// Sources allowed to reach a zone, and on which ports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IngressRule {
    /// Where the traffic may come from. At least one source is required; use a source with
    /// anywhere: true to accept every source.
    #[schemars(length(min = 1, max = 8))]
    pub from: Vec<Peer>,

    /// Destination ports on the zone's pods. When empty, every port is allowed.
    #[serde(default)]
    #[schemars(length(max = 16))]
    pub ports: Vec<PortSpec>,
}

/// One source or destination of traffic: exactly one of zone, namespaceSelector, cidr or
/// anywhere.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "[has(self.zone), has(self.namespaceSelector), has(self.cidr), has(self.anywhere) && self.anywhere].filter(x, x).size() == 1",
        "message": "set exactly one of zone, namespaceSelector, cidr or anywhere: true",
    },
    {
        "rule": "!has(self.podSelector) || has(self.namespaceSelector)",
        "message": "podSelector is only allowed together with namespaceSelector; to name pods of the governed namespaces, define a zone",
        "fieldPath": ".podSelector",
    },
    {
        "rule": "!has(self.except) || has(self.cidr)",
        "message": "except is only allowed together with cidr",
        "fieldPath": ".except",
    },
    {
        "rule": "!has(self.cidr) || isCIDR(self.cidr)",
        "messageExpression": "'cidr ' + self.cidr + ' is not a valid CIDR; use a network address such as 10.0.0.0/8 or 2001:db8::/32'",
        "fieldPath": ".cidr",
    },
    {
        "rule": "!has(self.cidr) || !isCIDR(self.cidr) || cidr(self.cidr) == cidr(self.cidr).masked()",
        "messageExpression": "'cidr ' + self.cidr + ' has host bits set; use its network address, such as 10.0.0.0/8 for 10.0.0.1/8'",
        "fieldPath": ".cidr",
    },
    {
        "rule": "!has(self.except) || !has(self.cidr) || !isCIDR(self.cidr) || self.except.all(e, isCIDR(e) && cidr(e) == cidr(e).masked() && cidr(self.cidr).containsCIDR(e))",
        "message": "every except entry must be a network address (no host bits) inside cidr",
        "fieldPath": ".except",
    },
]))]
pub struct Peer {
    /// Name of a zone of this policy; its pods in all of its namespaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 30))]
    pub zone: Option<String>,

    /// Selects namespaces by their labels: every pod in them, or only those matching
    /// podSelector. The namespaces need not be governed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,

    /// Narrows namespaceSelector to the pods whose labels match. Both must match: they form
    /// one peer, not two.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,

    /// An IP block in CIDR notation, such as 203.0.113.0/24, usually for traffic from or to
    /// outside the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub cidr: Option<String>,

    /// Blocks inside cidr that are excluded from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8), inner(length(max = 64)))]
    pub except: Option<Vec<String>>,

    /// Every source or destination, inside the cluster or outside. Pods of the governed
    /// namespaces still need their own egress to reach a zone that is open to anywhere,
    /// which a zone source gives them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anywhere: Option<bool>,
}

/// A port or a range of ports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "type(self.port) != int || (self.port >= 1 && self.port <= 65535)",
        "messageExpression": "'port ' + string(self.port) + ' is out of range; use 1 to 65535'",
        "fieldPath": ".port",
    },
    {
        "rule": "type(self.port) != string || !self.port.matches('^[0-9]+$')",
        "messageExpression": "'port \"' + string(self.port) + '\" is a string of digits: use the number ' + string(self.port) + '; named ports are lowercase letters, digits and hyphens with at least one letter'",
        "fieldPath": ".port",
    },
    {
        "rule": "!has(self.endPort) || type(self.port) == int",
        "message": "endPort requires a numeric port, since a named port cannot start a range",
        "fieldPath": ".endPort",
    },
    {
        "rule": "!has(self.endPort) || type(self.port) != int || (self.endPort >= self.port && self.endPort <= 65535)",
        "message": "endPort must be at least port and at most 65535",
        "fieldPath": ".endPort",
    },
]))]
pub struct PortSpec {
    /// Port number (1-65535), or the name of a container port on the destination pods, such
    /// as http: at most 15 lowercase letters, digits and single hyphens, with at least one
    /// letter. Write a number without quotes: "8080" is a string, and is rejected.
    #[schemars(schema_with = "port_schema")]
    pub port: IntOrString,

    /// TCP, UDP or SCTP. Defaults to TCP.
    #[serde(default)]
    pub protocol: Protocol,

    /// Last port of a range that starts at port; requires a numeric port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_port: Option<i32>,
}

/// Transport protocol of a port.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    JsonSchema,
)]
pub enum Protocol {
    #[default]
    #[allow(clippy::upper_case_acronyms)]
    TCP,
    #[allow(clippy::upper_case_acronyms)]
    UDP,
    #[allow(clippy::upper_case_acronyms)]
    SCTP,
}

impl Protocol {
    /// Returns the protocol as the Kubernetes API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::TCP => "TCP",
            Protocol::UDP => "UDP",
            Protocol::SCTP => "SCTP",
        }
    }
}

/// A monitoring system allowed to scrape pods of the governed namespaces.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MonitoringSpec {
    /// Selects the namespaces of the monitoring pods.
    pub namespace_selector: LabelSelector,

    /// Selects the monitoring pods within those namespaces. Both selectors must match.
    pub pod_selector: LabelSelector,

    /// Selects the pods that may be scraped in each governed namespace. When unset, every pod
    /// may be scraped on the listed ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_pod_selector: Option<LabelSelector>,

    /// Ports the monitoring pods may scrape, for example 9090 or the port name metrics.
    #[schemars(length(min = 1, max = 16))]
    pub ports: Vec<PortSpec>,
}

/// Extra egress from the pods of the governed namespaces.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "self.to.all(p, !has(p.zone))",
        "message": "egress destinations cannot name a zone; a zone's ingress rules open the path to it",
        "fieldPath": ".to",
    },
]))]
pub struct EgressRule {
    /// Name of the rule, used in the name of the generated NetworkPolicy
    /// (mn-POLICY-egress-NAME). A DNS label of at most 30 characters.
    #[schemars(
        length(min = 1, max = 30),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,

    /// Selects the pods the rule applies to in each governed namespace. When unset, it
    /// applies to every pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,

    /// Destinations: CIDRs, namespaces (with optional pod selector) or anywhere.
    #[schemars(length(min = 1, max = 8))]
    pub to: Vec<Peer>,

    /// Destination ports. When empty, every port is allowed.
    #[serde(default)]
    #[schemars(length(max = 16))]
    pub ports: Vec<PortSpec>,
}

/// Observed state of a MediaNestSecurityPolicy, written by the operator.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MediaNestSecurityPolicyStatus {
    /// The metadata.generation of the spec that this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Ready summarises the others; NetworkReady reports the NetworkPolicies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,

    /// Number of namespaces this policy governs.
    #[serde(default)]
    pub governed_namespace_count: i32,

    /// Names of the governed namespaces, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub governed_namespaces: Vec<String>,

    /// Number of NetworkPolicies generated for this policy.
    #[serde(default)]
    pub network_policy_count: i32,

    /// Number of generated objects that were changed or deleted by someone else and restored,
    /// since the policy was created.
    #[serde(default)]
    pub drift_corrections: i64,

    /// Hash of the objects this policy generated at its last successful reconcile. A later
    /// difference with the same hash is drift, not a change of the policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_state_hash: Option<String>,

    /// In Audit mode, the changes that Enforce would make.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_changes: Vec<PendingChange>,

    /// Number of selected workloads whose pod template is hardened.
    #[serde(default)]
    pub hardened_workloads: i32,

    /// Number of selected workloads hardened with an exemption.
    #[serde(default)]
    pub exempted_workloads: i32,

    /// Number of selected workloads, Jobs and bare Pods that are not hardened: in Audit
    /// mode, waiting for a rollout slot, in conflict with another field manager, or unable
    /// to change.
    #[serde(default)]
    pub non_compliant_workloads: i32,

    /// The workloads that need attention: not compliant, exempted, or whose pods the Pod
    /// Security Admission level would reject. At most 100 entries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workloads: Vec<WorkloadReport>,

    /// Namespaces whose pod-security.kubernetes.io/enforce label is below this policy's
    /// level, because an exemption needs more than the level permits.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pod_security_exceptions: Vec<PodSecurityException>,

    /// Other policies that select some of the same workloads or namespaces. Their settings
    /// are merged, the strictest value winning.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overlapping_policies: Vec<String>,

    /// The CA and the service certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtls: Option<MtlsStatus>,
}

/// Observed state of the certificates.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MtlsStatus {
    /// The Secret that holds the CA, as namespace/name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret: Option<String>,

    /// Expiry of the CA that signs new certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_not_after: Option<String>,

    /// Stable, or the phase of a CA rotation: Propagating (the new CA is trusted but does not
    /// sign yet), then Reissuing (the new CA signs; the old one stays trusted until the
    /// certificates it signed have been replaced and have expired).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation_phase: Option<String>,

    /// The last value of the security.medianest.io/rotate-ca annotation that was acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotation_request: Option<String>,

    /// The service certificates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<CertificateStatus>,
}

/// One service certificate.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct CertificateStatus {
    /// Namespace of the Service and its Secret.
    pub namespace: String,
    /// Name of the Service.
    pub service: String,
    /// Name of the kubernetes.io/tls Secret.
    pub secret: String,
    /// Expiry of the certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
    /// When the certificate is renewed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_at: Option<String>,
}

/// A workload and what the hardening found for it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadReport {
    /// Kind: Deployment, StatefulSet, DaemonSet, CronJob, Job or Pod.
    pub kind: String,
    /// Namespace of the workload.
    pub namespace: String,
    /// Name of the workload.
    pub name: String,
    /// NonCompliant, Exempted, Conflict, Pending, Violation or Rejected.
    pub state: String,
    /// Fields that would change, as path: current -> hardened. At most 20.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<String>,
    /// Reasons of the exemptions that apply, or what blocks the hardening.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A namespace whose enforce level was lowered for an exemption.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodSecurityException {
    /// Namespace of the label.
    pub namespace: String,
    /// The enforce level written.
    pub enforce: String,
    /// The workloads that need it.
    pub reason: String,
}

/// A change that Enforce mode would make to a generated object.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PendingChange {
    /// Create, Update or Delete.
    pub action: String,
    /// Kind of the object, for example NetworkPolicy.
    pub kind: String,
    /// Namespace of the object.
    pub namespace: String,
    /// Name of the object.
    pub name: String,
}

/// Schema of a port: a number from 1 to 65535 or a container port name of at most 15
/// lowercase letters, digits and single hyphens.
fn port_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "x-kubernetes-int-or-string": true,
        // JSON Schema applies these two to strings only. CEL on PortSpec checks numbers, and
        // rejects names without a letter.
        "maxLength": 15,
        "pattern": "^[a-z0-9]+(-[a-z0-9]+)*$",
    })
}

fn default_true() -> bool {
    true
}

fn default_dns_namespace_selector() -> LabelSelector {
    match_labels([("kubernetes.io/metadata.name", "kube-system")])
}

fn default_dns_pod_selector() -> LabelSelector {
    match_labels([("k8s-app", "kube-dns")])
}

/// Builds a selector that matches exactly the given labels.
pub fn match_labels<const N: usize>(labels: [(&str, &str); N]) -> LabelSelector {
    let labels: BTreeMap<String, String> = labels
        .into_iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect();
    LabelSelector {
        match_labels: Some(labels),
        match_expressions: None,
    }
}
