//! Which policies harden a workload, and the Pod Security Admission labels of a namespace.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PodTemplateSpec;

use crate::api::policy::MediaNestSecurityPolicySpec;
use crate::api::workloads::{PodSecurityLevel, WorkloadKind, WorkloadsSpec};

use super::hardening::WorkloadId;
use super::podsecurity::{self, Level};
use super::selector;

/// Label prefix of Pod Security Admission.
pub const PSA_PREFIX: &str = "pod-security.kubernetes.io/";

/// A policy as the workload planner sees it: its name, spec and governed namespaces.
#[derive(Clone, Debug)]
pub struct PolicyView<'a> {
    pub name: &'a str,
    pub spec: &'a MediaNestSecurityPolicySpec,
    pub governed: Vec<String>,
}

impl PolicyView<'_> {
    fn workloads(&self) -> Option<&WorkloadsSpec> {
        self.spec.workloads.as_ref()
    }
}

/// Returns the policies whose workloads section selects the workload, sorted by name.
///
/// `kind` is `None` for Jobs and bare Pods, which every policy with a workloads section
/// reports whatever its kinds list says, because they can only be reported.
pub fn selecting<'a, 'b>(
    policies: &'b [PolicyView<'a>],
    namespace: &str,
    kind: Option<WorkloadKind>,
    labels: &BTreeMap<String, String>,
) -> Vec<&'b PolicyView<'a>> {
    let mut selected: Vec<&PolicyView> = policies
        .iter()
        .filter(|policy| {
            let Some(workloads) = policy.workloads() else {
                return false;
            };
            let kind_selected = kind.is_none_or(|kind| workloads.kinds.contains(&kind));
            let labels_selected = workloads
                .selector
                .as_ref()
                .is_none_or(|selector| selector::matches(selector, labels));
            kind_selected
                && labels_selected
                && policy.governed.iter().any(|governed| governed == namespace)
        })
        .collect();
    selected.sort_by(|a, b| a.name.cmp(b.name));
    selected
}

/// The Pod Security Admission levels of one namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamespaceLevels {
    pub enforce: Level,
    pub audit: Level,
    pub warn: Level,
    /// Why enforce is below the policies' level: the exempted workloads that need it.
    pub lowered_for: Vec<String>,
}

impl NamespaceLevels {
    /// The labels to write on the namespace.
    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::new();
        for (mode, level) in [
            ("enforce", self.enforce),
            ("audit", self.audit),
            ("warn", self.warn),
        ] {
            labels.insert(format!("{PSA_PREFIX}{mode}"), level.as_str().to_string());
            labels.insert(format!("{PSA_PREFIX}{mode}-version"), "latest".to_string());
        }
        labels
    }
}

/// Converts the CRD's level into the evaluator's.
pub fn level_of(level: PodSecurityLevel) -> Level {
    match level {
        PodSecurityLevel::Privileged => Level::Privileged,
        PodSecurityLevel::Baseline => Level::Baseline,
        PodSecurityLevel::Restricted => Level::Restricted,
    }
}

/// Computes the levels of a namespace from the workloads sections of the policies that
/// govern it (the strictest wins) and the hardened templates of its exempted workloads.
///
/// Enforce never rejects what a policy allows: when an exempted workload needs more than the
/// level permits, enforce drops to the strictest level that admits it. Audit and warn keep
/// the policies' level, so the relaxation stays visible.
///
/// Returns `None` when no policy with a workloads section governs the namespace.
pub fn namespace_levels(
    specs: &[&WorkloadsSpec],
    exempted: &[(WorkloadId, PodTemplateSpec)],
) -> Option<NamespaceLevels> {
    let level = specs
        .iter()
        .map(|spec| level_of(spec.pod_security_level))
        .max()?;
    let mut levels = NamespaceLevels {
        enforce: level,
        audit: level,
        warn: level,
        lowered_for: Vec::new(),
    };
    for (id, template) in exempted {
        let metadata = template.metadata.clone().unwrap_or_default();
        let spec = template.spec.clone().unwrap_or_default();
        let admitting = podsecurity::strictest_admitting_level(&metadata, &spec);
        if admitting < level {
            levels.enforce = levels.enforce.min(admitting);
            levels
                .lowered_for
                .push(format!("{id} needs {}", admitting.as_str()));
        }
    }
    levels.lowered_for.sort();
    Some(levels)
}
