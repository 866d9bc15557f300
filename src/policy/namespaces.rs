//! Which namespaces a policy governs.

use std::collections::BTreeMap;

use crate::api::policy::MediaNestSecurityPolicySpec;

use super::selector;

/// Namespaces that are never governed unless a policy lists them in
/// `includeProtectedNamespaces`, because a default deny there breaks the cluster. The
/// operator's own namespace is protected as well.
pub const PROTECTED_NAMESPACES: [&str; 3] = ["kube-system", "kube-public", "kube-node-lease"];

/// Label the API server sets on every namespace to its name.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// A namespace as the compilers see it: its name and labels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamespaceInfo {
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

impl NamespaceInfo {
    /// Builds the view of a namespace, adding the name label the API server always sets.
    pub fn new(name: impl Into<String>, labels: BTreeMap<String, String>) -> Self {
        let name = name.into();
        let mut labels = labels;
        labels
            .entry(NAMESPACE_NAME_LABEL.to_string())
            .or_insert_with(|| name.clone());
        Self { name, labels }
    }
}

/// Returns whether `name` is protected for an operator running in `operator_namespace`.
pub fn is_protected(name: &str, operator_namespace: &str) -> bool {
    PROTECTED_NAMESPACES.contains(&name) || name == operator_namespace
}

/// Returns the namespaces `spec` governs, sorted by name.
pub fn governed<'a>(
    spec: &MediaNestSecurityPolicySpec,
    namespaces: &'a [NamespaceInfo],
    operator_namespace: &str,
) -> Vec<&'a NamespaceInfo> {
    let mut governed: Vec<&NamespaceInfo> = namespaces
        .iter()
        .filter(|namespace| selector::matches(&spec.namespace_selector, &namespace.labels))
        .filter(|namespace| {
            !is_protected(&namespace.name, operator_namespace)
                || spec
                    .include_protected_namespaces
                    .iter()
                    .any(|included| included.0 == namespace.name)
        })
        .collect();
    governed.sort_by(|a, b| a.name.cmp(&b.name));
    governed.dedup_by(|a, b| a.name == b.name);
    governed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::policy::{ProtectedNamespaceName, match_labels};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    fn spec(selector: LabelSelector, include: &[&str]) -> MediaNestSecurityPolicySpec {
        MediaNestSecurityPolicySpec {
            mode: Default::default(),
            namespace_selector: selector,
            include_protected_namespaces: include
                .iter()
                .map(|name| ProtectedNamespaceName(name.to_string()))
                .collect(),
            network: Default::default(),
            workloads: None,
            mtls: None,
        }
    }

    fn namespaces() -> Vec<NamespaceInfo> {
        let team = BTreeMap::from([("team".to_string(), "media".to_string())]);
        vec![
            NamespaceInfo::new("kube-system", team.clone()),
            NamespaceInfo::new("kube-public", BTreeMap::new()),
            NamespaceInfo::new("kube-node-lease", BTreeMap::new()),
            NamespaceInfo::new("medianest-system", team.clone()),
            NamespaceInfo::new("media-app", team.clone()),
            NamespaceInfo::new("media-db", team),
            NamespaceInfo::new("other", BTreeMap::new()),
        ]
    }

    fn names(governed: Vec<&NamespaceInfo>) -> Vec<&str> {
        governed
            .iter()
            .map(|namespace| namespace.name.as_str())
            .collect()
    }

    #[test]
    fn governed_excludes_protected() {
        let all = namespaces();
        let empty = spec(LabelSelector::default(), &[]);
        assert_eq!(
            names(governed(&empty, &all, "medianest-system")),
            ["media-app", "media-db", "other"]
        );
    }

    #[test]
    fn governed_by_label() {
        let all = namespaces();
        let by_team = spec(match_labels([("team", "media")]), &[]);
        assert_eq!(
            names(governed(&by_team, &all, "medianest-system")),
            ["media-app", "media-db"]
        );
    }

    #[test]
    fn governed_protected_needs_list_and_selector() {
        let all = namespaces();
        let listed = spec(
            match_labels([("team", "media")]),
            &["kube-system", "kube-public"],
        );
        // kube-public is listed but not selected; kube-system is both.
        assert_eq!(
            names(governed(&listed, &all, "medianest-system")),
            ["kube-system", "media-app", "media-db"]
        );
    }

    #[test]
    fn governed_operator_namespace_protected() {
        let all = namespaces();
        let by_team = spec(match_labels([("team", "media")]), &["medianest-system"]);
        assert_eq!(
            names(governed(&by_team, &all, "medianest-system")),
            ["media-app", "media-db", "medianest-system"]
        );
    }

    #[test]
    fn name_label_implied() {
        let namespace = NamespaceInfo::new("media-app", BTreeMap::new());
        assert_eq!(namespace.labels[NAMESPACE_NAME_LABEL], "media-app");
    }
}
