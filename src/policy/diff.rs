//! Comparison of generated objects with what the API server holds.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;
use serde_json::Value;

/// What it takes to bring existing objects to the desired ones.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan<K> {
    /// Desired objects that do not exist.
    pub create: Vec<K>,
    /// Desired objects whose existing copy differs, with that copy.
    pub update: Vec<(K, K)>,
    /// Existing objects that are no longer desired.
    pub delete: Vec<K>,
    /// Desired objects that already match.
    pub unchanged: usize,
}

impl<K> Plan<K> {
    /// Returns whether the plan writes nothing.
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.update.is_empty() && self.delete.is_empty()
    }
}

/// An object the planner can compare: its identity, metadata and the part of its body that
/// the operator sets.
pub trait Generated: Clone {
    fn meta(&self) -> &ObjectMeta;
    /// The body the operator owns, as JSON (for a NetworkPolicy, its spec).
    fn body(&self) -> Value;
}

impl Generated for k8s_openapi::api::networking::v1::NetworkPolicy {
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn body(&self) -> Value {
        to_value(&self.spec)
    }
}

fn to_value<T: Serialize>(value: &T) -> Value {
    // Serializing plain data structures to a JSON value cannot fail.
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// Plans the writes that turn `existing` into `desired`, matching objects by namespace and name.
pub fn plan<K: Generated>(desired: Vec<K>, existing: Vec<K>) -> Plan<K> {
    let mut existing: BTreeMap<(String, String), K> = existing
        .into_iter()
        .map(|object| (key(object.meta()), object))
        .collect();

    let mut plan = Plan {
        create: Vec::new(),
        update: Vec::new(),
        delete: Vec::new(),
        unchanged: 0,
    };
    for object in desired {
        match existing.remove(&key(object.meta())) {
            None => plan.create.push(object),
            Some(current) if needs_write(&object, &current) => plan.update.push((object, current)),
            Some(_) => plan.unchanged += 1,
        }
    }
    plan.delete = existing.into_values().collect();
    plan
}

fn key(meta: &ObjectMeta) -> (String, String) {
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

/// Returns whether `existing` differs from `desired` in anything the operator sets: the body,
/// a label, or an owner reference. Labels and annotations added by other tools are allowed.
pub fn needs_write<K: Generated>(desired: &K, existing: &K) -> bool {
    if canonical(desired.body()) != canonical(existing.body()) {
        return true;
    }

    let wanted_labels = desired.meta().labels.clone().unwrap_or_default();
    let labels = existing.meta().labels.clone().unwrap_or_default();
    if wanted_labels
        .iter()
        .any(|(key, value)| labels.get(key) != Some(value))
    {
        return true;
    }

    let owners = existing.meta().owner_references.clone().unwrap_or_default();
    let wanted_owners = desired.meta().owner_references.clone().unwrap_or_default();
    wanted_owners
        .iter()
        .any(|wanted| !owners.iter().any(|owner| owner.uid == wanted.uid))
}

/// Drops nulls, empty lists and empty objects, so that a field the API server omits and one
/// the operator sets empty compare equal.
pub fn canonical(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(key, value)| (key, canonical(value)))
                .filter(|(_, value)| !is_empty(value))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(canonical).collect()),
        other => other,
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Array(items) => items.is_empty(),
        Value::Object(map) => map.is_empty(),
        _ => false,
    }
}

/// Builds a JSON merge patch that turns `actual` into `desired`: `desired` itself, plus an
/// explicit null for every key that `actual` has and `desired` lacks, at any depth of nested
/// objects. Lists are replaced whole by a merge patch, so they need no nulls.
pub fn merge_patch_with_removals(desired: &Value, actual: &Value) -> Value {
    match (desired, actual) {
        (Value::Object(wanted), Value::Object(current)) => {
            let mut patch = serde_json::Map::new();
            for (key, value) in wanted {
                let nested = match current.get(key) {
                    Some(existing) => merge_patch_with_removals(value, existing),
                    None => value.clone(),
                };
                patch.insert(key.clone(), nested);
            }
            for key in current.keys() {
                if !wanted.contains_key(key) {
                    patch.insert(key.clone(), Value::Null);
                }
            }
            Value::Object(patch)
        }
        (wanted, _) => wanted.clone(),
    }
}

/// Projects `object` onto a managedFields tree (the fieldsV1 format): the result holds only the
/// fields the tree lists, with their current values. An apply that must keep every field its
/// manager owns starts from this projection, because server-side apply removes an owned field
/// that the applied configuration leaves out.
pub fn project_owned(object: &Value, fields: &Value) -> Value {
    let Value::Object(tree) = fields else {
        return Value::Null;
    };
    match object {
        Value::Object(map) => {
            let mut out = serde_json::Map::new();
            for (key, subtree) in tree {
                let Some(name) = key.strip_prefix("f:") else {
                    continue;
                };
                let Some(value) = map.get(name) else {
                    continue;
                };
                let projected = if subtree
                    .as_object()
                    .is_some_and(|inner| inner.keys().any(|k| k != "."))
                {
                    project_owned(value, subtree)
                } else {
                    value.clone()
                };
                if !projected.is_null() {
                    out.insert(name.to_string(), projected);
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => {
            let mut out = Vec::new();
            for (key, subtree) in tree {
                if let Some(identity) = key.strip_prefix("k:") {
                    let Ok(Value::Object(identity)) = serde_json::from_str::<Value>(identity)
                    else {
                        continue;
                    };
                    let found = items.iter().find(|item| {
                        identity
                            .iter()
                            .all(|(field, value)| item.get(field) == Some(value))
                    });
                    if let Some(item) = found {
                        let mut projected = project_owned(item, subtree);
                        // The identity fields make the entry addressable in an apply.
                        if let Value::Object(entry) = &mut projected {
                            for (field, value) in &identity {
                                entry.insert(field.clone(), value.clone());
                            }
                        }
                        out.push(projected);
                    }
                } else if let Some(literal) = key.strip_prefix("v:")
                    && let Ok(value) = serde_json::from_str::<Value>(literal)
                    && items.contains(&value)
                {
                    out.push(value);
                }
            }
            Value::Array(out)
        }
        other => other.clone(),
    }
}

/// Merges `patch` into `base`: objects key by key, everything else replaced.
pub fn merge_json(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(base), Value::Object(patch)) => {
            for (key, value) in patch {
                merge_json(base.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
        (base, patch) => *base = patch.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicySpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference};
    use serde_json::json;

    fn policy(name: &str, types: &[&str]) -> NetworkPolicy {
        NetworkPolicy {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                labels: Some(BTreeMap::from([("a".into(), "1".into())])),
                owner_references: Some(vec![OwnerReference {
                    uid: "uid-1".into(),
                    ..Default::default()
                }]),
                ..Default::default()
            },
            spec: Some(NetworkPolicySpec {
                pod_selector: Some(LabelSelector::default()),
                policy_types: Some(types.iter().map(|t| t.to_string()).collect()),
                ingress: None,
                egress: None,
            }),
        }
    }

    #[test]
    fn merge_patch_nulls_foreign_keys() {
        let desired = json!({"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{"ports": [{"port": 80}]}]});
        let actual = json!({
            "podSelector": {"matchLabels": {"narrow": "yes"}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"ports": [{"port": 80}]}, {}],
            "egress": [{}],
        });
        let patch = merge_patch_with_removals(&desired, &actual);
        assert_eq!(
            patch,
            json!({
                "podSelector": {"matchLabels": null},
                "policyTypes": ["Ingress"],
                "ingress": [{"ports": [{"port": 80}]}],
                "egress": null,
            })
        );
    }

    #[test]
    fn projection_keeps_owned_fields_only() {
        let object = json!({
            "metadata": { "name": "web", "annotations": { "ours": "1", "theirs": "2" } },
            "spec": { "template": { "spec": { "containers": [
                { "name": "app", "image": "nginx", "securityContext": { "privileged": false } },
                { "name": "sidecar", "image": "envoy" },
            ]}}},
        });
        let fields = json!({
            "f:metadata": { "f:annotations": { "f:ours": {} } },
            "f:spec": { "f:template": { "f:spec": { "f:containers": {
                "k:{\"name\":\"app\"}": { ".": {}, "f:securityContext": { "f:privileged": {} } },
            }}}},
        });
        assert_eq!(
            project_owned(&object, &fields),
            json!({
                "metadata": { "annotations": { "ours": "1" } },
                "spec": { "template": { "spec": { "containers": [
                    { "name": "app", "securityContext": { "privileged": false } },
                ]}}},
            })
        );
    }

    #[test]
    fn projection_of_set_values() {
        let object = json!({ "drop": ["ALL", "NET_RAW"] });
        let fields = json!({ "f:drop": { "v:\"ALL\"": {} } });
        assert_eq!(project_owned(&object, &fields), json!({ "drop": ["ALL"] }));
    }

    #[test]
    fn merge_json_overlays() {
        let mut base = json!({ "a": { "b": 1, "c": 2 }, "d": [1] });
        merge_json(&mut base, &json!({ "a": { "c": 3 }, "d": [2] }));
        assert_eq!(base, json!({ "a": { "b": 1, "c": 3 }, "d": [2] }));
    }

    #[test]
    fn canonical_drops_empty_values() {
        let value = json!({"a": null, "b": [], "c": {}, "d": {"e": {}}, "f": [{}], "g": 0});
        assert_eq!(canonical(value), json!({"f": [{}], "g": 0}));
    }

    #[test]
    fn plan_sorts_into_create_update_delete() {
        let desired = vec![
            policy("keep", &["Ingress"]),
            policy("new", &["Ingress"]),
            policy("changed", &["Egress"]),
        ];
        let existing = vec![
            policy("keep", &["Ingress"]),
            policy("changed", &["Ingress"]),
            policy("stale", &["Ingress"]),
        ];
        let plan = plan(desired, existing);
        assert_eq!(plan.unchanged, 1);
        assert_eq!(plan.create.len(), 1);
        assert_eq!(plan.create[0].metadata.name.as_deref(), Some("new"));
        assert_eq!(plan.update.len(), 1);
        assert_eq!(plan.update[0].0.metadata.name.as_deref(), Some("changed"));
        assert_eq!(plan.delete.len(), 1);
        assert_eq!(plan.delete[0].metadata.name.as_deref(), Some("stale"));
    }

    #[test]
    fn foreign_labels_and_annotations_allowed() {
        let desired = policy("p", &["Ingress"]);
        let mut existing = desired.clone();
        existing
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert("argocd".into(), "x".into());
        existing.metadata.annotations = Some(BTreeMap::from([("note".into(), "y".into())]));
        existing.metadata.resource_version = Some("42".into());
        assert!(!needs_write(&desired, &existing));
    }

    #[test]
    fn missing_label_or_owner_needs_write() {
        let desired = policy("p", &["Ingress"]);
        let mut unlabelled = desired.clone();
        unlabelled.metadata.labels = None;
        assert!(needs_write(&desired, &unlabelled));
        let mut orphan = desired.clone();
        orphan.metadata.owner_references = None;
        assert!(needs_write(&desired, &orphan));
    }

    #[test]
    fn extra_spec_field_needs_write() {
        let desired = policy("p", &["Ingress"]);
        let mut existing = desired.clone();
        existing.spec.as_mut().unwrap().pod_selector = Some(LabelSelector {
            match_labels: Some(BTreeMap::from([("narrow".into(), "yes".into())])),
            match_expressions: None,
        });
        assert!(needs_write(&desired, &existing));
    }
}
