//! The hardening compiler: the server-side apply patch that hardens a workload's pod template.
//!
//! The patch holds only the fields the operator sets, so that the other field managers of the
//! workload (Helm, Argo CD, kubectl) keep theirs. It never loosens a value that is already
//! stricter, and it describes every field that would change, which is what Audit mode reports.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Container, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Map, Value, json};

use crate::api::workloads::{
    Exemption, PodSecurityLevel, UidRange, WorkloadKind, WorkloadsSpec, WritablePath,
};

use super::names::{hex_digest, object_name};

/// Identity of a workload.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WorkloadId {
    pub kind: WorkloadKind,
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for WorkloadId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.kind.as_str(), self.namespace, self.name)
    }
}

/// The hardening settings that apply to one workload, merged from every policy that selects
/// it: the strictest value of each setting wins, writable paths and exemptions are combined.
#[derive(Clone, Debug, PartialEq)]
pub struct Effective {
    pub run_as_non_root: bool,
    pub uid_range: UidRange,
    pub read_only_root_filesystem: bool,
    pub writable_paths: Vec<WritablePath>,
    pub requests: BTreeMap<String, Quantity>,
    pub limits: BTreeMap<String, Quantity>,
    pub pod_security_level: PodSecurityLevel,
    pub exemptions: Vec<Exemption>,
    pub force_conflicts: bool,
    /// Problems found while merging, such as UID ranges that do not overlap.
    pub conflicts: Vec<String>,
}

/// Merges the settings of the policies that select `workload`, keeping only the exemptions
/// that name it and have not expired at `now`.
///
/// Panics if `specs` is empty; callers merge only for selected workloads.
pub fn merge(specs: &[&WorkloadsSpec], workload: &WorkloadId, now: Timestamp) -> Effective {
    let first = specs[0];
    let mut effective = Effective {
        run_as_non_root: false,
        uid_range: first.uid_range,
        read_only_root_filesystem: false,
        writable_paths: Vec::new(),
        requests: BTreeMap::new(),
        limits: BTreeMap::new(),
        pod_security_level: PodSecurityLevel::Privileged,
        exemptions: Vec::new(),
        force_conflicts: false,
        conflicts: Vec::new(),
    };

    for spec in specs {
        effective.run_as_non_root |= spec.run_as_non_root;
        effective.read_only_root_filesystem |= spec.read_only_root_filesystem;
        effective.force_conflicts |= spec.force_conflicts;
        effective.pod_security_level = effective.pod_security_level.max(spec.pod_security_level);

        let min = effective.uid_range.min.max(spec.uid_range.min);
        let max = effective.uid_range.max.min(spec.uid_range.max);
        if min <= max {
            effective.uid_range = UidRange { min, max };
        } else {
            effective.conflicts.push(format!(
                "UID ranges {}-{} and {}-{} of two policies do not overlap; using {}-{}",
                effective.uid_range.min,
                effective.uid_range.max,
                spec.uid_range.min,
                spec.uid_range.max,
                effective.uid_range.min,
                effective.uid_range.max
            ));
        }

        for path in &spec.writable_paths {
            match effective
                .writable_paths
                .iter_mut()
                .find(|known| known.path == path.path)
            {
                Some(known) => known.size_limit = smaller(&known.size_limit, &path.size_limit),
                None => effective.writable_paths.push(path.clone()),
            }
        }
        merge_quantities(&mut effective.requests, &spec.default_resources.requests);
        merge_quantities(&mut effective.limits, &spec.default_resources.limits);

        for exemption in &spec.exemptions {
            let names_workload = exemption.kind == workload.kind
                && exemption.namespace == workload.namespace
                && exemption.name == workload.name;
            let active = exemption
                .expires
                .as_ref()
                .is_none_or(|expires| expires.0 > now);
            if names_workload && active {
                effective.exemptions.push(exemption.clone());
            }
        }
    }
    effective.writable_paths.sort_by(|a, b| a.path.cmp(&b.path));
    effective
}

/// Keeps the smaller of two quantities per resource, treating an absent limit as unlimited.
fn merge_quantities(into: &mut BTreeMap<String, Quantity>, from: &BTreeMap<String, Quantity>) {
    for (resource, quantity) in from {
        let merged = smaller(&into.get(resource).cloned(), &Some(quantity.clone()));
        if let Some(merged) = merged {
            into.insert(resource.clone(), merged);
        }
    }
}

fn smaller(a: &Option<Quantity>, b: &Option<Quantity>) -> Option<Quantity> {
    match (a, b) {
        (Some(a), Some(b)) => match (parse_quantity(a), parse_quantity(b)) {
            (Some(x), Some(y)) if y < x => Some(b.clone()),
            _ => Some(a.clone()),
        },
        (Some(a), None) => Some(a.clone()),
        (None, b) => b.clone(),
    }
}

/// Parses a Kubernetes quantity into a number of base units, for comparisons.
pub fn parse_quantity(quantity: &Quantity) -> Option<f64> {
    let text = quantity.0.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0f64.powi(2),
        "Gi" => 1024.0f64.powi(3),
        "Ti" => 1024.0f64.powi(4),
        "Pi" => 1024.0f64.powi(5),
        "Ei" => 1024.0f64.powi(6),
        _ => {
            let exponent: i32 = suffix.strip_prefix(['e', 'E'])?.parse().ok()?;
            10f64.powi(exponent)
        }
    };
    Some(number * factor)
}

/// One field that would change, for status and Events: where, from what, to what.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FieldChange {
    /// Path within the pod template, such as `spec.containers[app].securityContext.runAsUser`.
    pub path: String,
    pub from: String,
    pub to: String,
}

impl std::fmt::Display for FieldChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} -> {}", self.path, self.from, self.to)
    }
}

/// What hardening a pod template takes.
#[derive(Clone, Debug, PartialEq)]
pub struct Hardening {
    /// The pod template fragment to apply, with only the fields the operator sets.
    pub template_patch: Value,
    /// Fields whose current value differs from the hardened one. Empty when compliant.
    pub changes: Vec<FieldChange>,
    /// Containers that cannot be edited (ephemeral containers), by name.
    pub uneditable: Vec<String>,
    /// The exemptions that applied, with their reasons.
    pub exemptions: Vec<Exemption>,
}

/// Where a field lives: the pod spec, or one container.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    Pod,
    Container { init: bool, name: String },
}

impl Target {
    fn describe(&self) -> String {
        match self {
            Target::Pod => "spec".to_string(),
            Target::Container { init: false, name } => format!("spec.containers[{name}]"),
            Target::Container { init: true, name } => format!("spec.initContainers[{name}]"),
        }
    }
}

/// The fields of a pod template that the operator's field manager owns, from the workload's
/// managedFields (the fieldsV1 format, rooted at the pod template).
///
/// A field the operator set earlier looks like a value the workload already had. Knowing
/// which fields are its own keeps them in the next patch, because server-side apply removes an
/// owned field that a later patch leaves out.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Owned(Value);

impl Owned {
    /// Wraps the fieldsV1 tree of the pod template; `Value::Null` when nothing is owned.
    pub fn new(template_fields: Value) -> Self {
        Self(template_fields)
    }

    /// Returns the fieldsV1 tree of the pod template inside a workload's fieldsV1 tree,
    /// following `template_path` (such as `["spec", "template"]`).
    pub fn from_workload(fields_v1: &Value, template_path: &[&str]) -> Self {
        let mut node = fields_v1;
        for key in template_path {
            node = node.get(format!("f:{key}")).unwrap_or(&Value::Null);
        }
        Self(node.clone())
    }

    fn node(&self, target: &Target) -> &Value {
        let spec = self.0.get("f:spec").unwrap_or(&Value::Null);
        match target {
            Target::Pod => spec,
            Target::Container { init, name } => {
                let list = if *init {
                    "f:initContainers"
                } else {
                    "f:containers"
                };
                spec.get(list)
                    .and_then(|items| items.get(list_key("name", name)))
                    .unwrap_or(&Value::Null)
            }
        }
    }

    fn owns(&self, target: &Target, path: &str) -> bool {
        let mut node = self.node(target);
        for key in path.split('.') {
            match node.get(format!("f:{key}")) {
                Some(next) => node = next,
                None => return false,
            }
        }
        true
    }

    fn owns_mount(&self, target: &Target, mount_path: &str) -> bool {
        self.node(target)
            .get("f:volumeMounts")
            .and_then(|mounts| mounts.get(list_key("mountPath", mount_path)))
            .is_some()
    }
}

/// The fieldsV1 key of a list entry identified by one field, such as `k:{"name":"app"}`.
fn list_key(field: &str, value: &str) -> String {
    format!("k:{}", json!({ field: value }))
}

/// Builds the fieldsV1 tree that applying `template_patch` makes the applier own, as the API
/// server records it. Tests use it to stand in for managedFields.
pub fn fields_of(template_patch: &Value) -> Value {
    fn walk(value: &Value, list_field: Option<&str>) -> Value {
        match value {
            Value::Object(map) => {
                let mut fields = Map::new();
                for (key, child) in map {
                    let child_key = match key.as_str() {
                        "containers" | "initContainers" | "volumes" => Some("name"),
                        "volumeMounts" => Some("mountPath"),
                        _ => None,
                    };
                    fields.insert(format!("f:{key}"), walk(child, child_key));
                }
                Value::Object(fields)
            }
            Value::Array(items) => match list_field {
                Some(id) => {
                    let mut fields = Map::new();
                    for item in items {
                        let key = list_key(id, item[id].as_str().unwrap_or_default());
                        let mut entry = walk(item, None);
                        if let Value::Object(entry) = &mut entry {
                            entry.insert(".".to_string(), json!({}));
                        }
                        fields.insert(key, entry);
                    }
                    Value::Object(fields)
                }
                None => json!({}),
            },
            _ => json!({}),
        }
    }
    walk(template_patch, None)
}

/// Accumulates the fields of a patch and the changes they make.
struct PatchBuilder<'a> {
    current: &'a Value,
    pod_fields: Map<String, Value>,
    containers: BTreeMap<(bool, String), Map<String, Value>>,
    volumes: Vec<Value>,
    changes: Vec<FieldChange>,
}

impl<'a> PatchBuilder<'a> {
    fn new(current: &'a Value) -> Self {
        Self {
            current,
            pod_fields: Map::new(),
            containers: BTreeMap::new(),
            volumes: Vec::new(),
            changes: Vec::new(),
        }
    }

    /// The current JSON of `target`, or null.
    fn target_value(&self, target: &Target) -> &'a Value {
        match target {
            Target::Pod => self.current.get("spec").unwrap_or(&Value::Null),
            Target::Container { init, name } => {
                let list = if *init {
                    "initContainers"
                } else {
                    "containers"
                };
                self.current
                    .pointer(&format!("/spec/{list}"))
                    .and_then(Value::as_array)
                    .and_then(|items| items.iter().find(|item| item["name"] == name.as_str()))
                    .unwrap_or(&Value::Null)
            }
        }
    }

    /// Sets `path` (dot-separated) of `target` to `value`, recording a change when the current
    /// value differs.
    fn set(&mut self, target: &Target, path: &str, value: Value) {
        let mut current = self.target_value(target);
        for key in path.split('.') {
            current = current.get(key).unwrap_or(&Value::Null);
        }
        // The API server omits empty lists and maps, so an unset field already matches one.
        let omitted_empty = current.is_null()
            && (value.as_array().is_some_and(Vec::is_empty)
                || value.as_object().is_some_and(serde_json::Map::is_empty));
        if *current != value && !omitted_empty {
            self.changes.push(FieldChange {
                path: format!("{}.{path}", target.describe()),
                from: display(current),
                to: display(&value),
            });
        }

        let fields = match target {
            Target::Pod => &mut self.pod_fields,
            Target::Container { init, name } => {
                self.containers.entry((*init, name.clone())).or_default()
            }
        };
        insert_path(fields, path, value);
    }

    /// Adds a volume mount to a container, recording the change.
    fn add_mount(&mut self, target: &Target, volume: &str, mount_path: &str) {
        let exists = self
            .target_value(target)
            .get("volumeMounts")
            .and_then(Value::as_array)
            .is_some_and(|mounts| {
                mounts
                    .iter()
                    .any(|mount| mount["mountPath"] == mount_path && mount["name"] == volume)
            });
        if !exists {
            self.changes.push(FieldChange {
                path: format!("{}.volumeMounts[{mount_path}]", target.describe()),
                from: "absent".to_string(),
                to: format!("emptyDir volume {volume}"),
            });
        }
        if let Target::Container { init, name } = target {
            let fields = self.containers.entry((*init, name.clone())).or_default();
            let mounts = fields
                .entry("volumeMounts")
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(items) = mounts {
                items.push(json!({ "name": volume, "mountPath": mount_path }));
            }
        }
    }

    /// Records a volume the operator owns. The change is recorded only when it is missing.
    fn add_volume(&mut self, volume: Value) {
        let name = volume["name"].as_str().unwrap_or_default().to_string();
        let exists = self
            .current
            .pointer("/spec/volumes")
            .and_then(Value::as_array)
            .is_some_and(|items| {
                items
                    .iter()
                    .any(|item| item["name"] == name.as_str() && *item == volume)
            });
        if !exists {
            self.changes.push(FieldChange {
                path: format!("spec.volumes[{name}]"),
                from: "absent".to_string(),
                to: display(&volume),
            });
        }
        self.volumes.push(volume);
    }

    fn finish(mut self) -> (Value, Vec<FieldChange>) {
        let mut spec = std::mem::take(&mut self.pod_fields);
        let mut containers = Vec::new();
        let mut init_containers = Vec::new();
        for ((init, name), mut fields) in std::mem::take(&mut self.containers) {
            fields.insert("name".to_string(), Value::String(name));
            if init {
                init_containers.push(Value::Object(fields));
            } else {
                containers.push(Value::Object(fields));
            }
        }
        if !containers.is_empty() {
            spec.insert("containers".to_string(), Value::Array(containers));
        }
        if !init_containers.is_empty() {
            spec.insert("initContainers".to_string(), Value::Array(init_containers));
        }
        if !self.volumes.is_empty() {
            spec.insert(
                "volumes".to_string(),
                Value::Array(std::mem::take(&mut self.volumes)),
            );
        }
        self.changes.sort();
        (json!({ "spec": spec }), self.changes)
    }
}

fn insert_path(fields: &mut Map<String, Value>, path: &str, value: Value) {
    let mut keys: Vec<&str> = path.split('.').collect();
    let last = keys.pop().unwrap_or_default();
    let mut node = fields;
    for key in keys {
        let entry = node.entry(key).or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        node = entry.as_object_mut().expect("object just ensured");
    }
    node.insert(last.to_string(), value);
}

fn display(value: &Value) -> String {
    match value {
        Value::Null => "unset".to_string(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Computes the hardening of `template` under `effective`. `owned` holds the template fields
/// the operator's field manager owns already.
pub fn harden(template: &PodTemplateSpec, effective: &Effective, owned: &Owned) -> Hardening {
    let current = serde_json::to_value(template).unwrap_or(Value::Null);
    let mut builder = PatchBuilder::new(&current);
    let spec = template.spec.clone().unwrap_or_default();

    let workload_exemptions: Vec<&Exemption> = effective
        .exemptions
        .iter()
        .filter(|exemption| exemption.container.is_none())
        .collect();
    let runs_as_root = workload_exemptions
        .iter()
        .any(|exemption| exemption.run_as_root);

    let pod_context = spec.security_context.clone().unwrap_or_default();
    let uid = chosen_id(pod_context.run_as_user, &effective.uid_range);
    if !runs_as_root {
        if effective.run_as_non_root {
            builder.set(&Target::Pod, "securityContext.runAsNonRoot", json!(true));
        }
        builder.set(&Target::Pod, "securityContext.runAsUser", json!(uid));
        let group = chosen_id(pod_context.run_as_group, &effective.uid_range);
        builder.set(&Target::Pod, "securityContext.runAsGroup", json!(group));
        let fs_group = chosen_id(pod_context.fs_group, &effective.uid_range);
        builder.set(&Target::Pod, "securityContext.fsGroup", json!(fs_group));
    }
    let seccomp = kept_profile(
        pod_context
            .seccomp_profile
            .as_ref()
            .map(|profile| profile.type_.as_str()),
    );
    builder.set(
        &Target::Pod,
        "securityContext.seccompProfile.type",
        json!(seccomp),
    );
    let apparmor = kept_profile(
        pod_context
            .app_armor_profile
            .as_ref()
            .map(|profile| profile.type_.as_str()),
    );
    builder.set(
        &Target::Pod,
        "securityContext.appArmorProfile.type",
        json!(apparmor),
    );

    let volumes = writable_volumes(&effective.writable_paths);
    let mut used_volumes = BTreeSet::new();
    let all_containers = spec
        .init_containers
        .iter()
        .flatten()
        .map(|container| (true, container))
        .chain(spec.containers.iter().map(|container| (false, container)));
    for (init, container) in all_containers {
        let target = Target::Container {
            init,
            name: container.name.clone(),
        };
        let exemptions: Vec<&Exemption> = effective
            .exemptions
            .iter()
            .filter(|exemption| {
                exemption
                    .container
                    .as_deref()
                    .is_none_or(|name| name == container.name)
            })
            .collect();
        let context = ContainerContext {
            target: &target,
            container,
            exemptions: &exemptions,
            owned,
        };
        harden_container(&mut builder, &context, effective, uid, runs_as_root);

        for (path, volume) in &volumes {
            let mounted_by_others = container
                .volume_mounts
                .iter()
                .flatten()
                .any(|mount| mount.mount_path == path.path)
                && !owned.owns_mount(&target, &path.path);
            if !mounted_by_others {
                builder.add_mount(&target, volume_name(volume), &path.path);
                used_volumes.insert(volume_name(volume).to_string());
            }
        }
    }
    for (_, volume) in volumes {
        if used_volumes.contains(volume_name(&volume)) {
            builder.add_volume(volume);
        }
    }

    let uneditable = spec
        .ephemeral_containers
        .iter()
        .flatten()
        .map(|container| container.name.clone())
        .collect();
    let (template_patch, changes) = builder.finish();
    Hardening {
        template_patch,
        changes,
        uneditable,
        exemptions: effective.exemptions.clone(),
    }
}

/// One container being hardened, with what applies to it.
struct ContainerContext<'a> {
    target: &'a Target,
    container: &'a Container,
    exemptions: &'a [&'a Exemption],
    owned: &'a Owned,
}

fn harden_container(
    builder: &mut PatchBuilder<'_>,
    container_context: &ContainerContext<'_>,
    effective: &Effective,
    pod_uid: i64,
    pod_runs_as_root: bool,
) {
    let ContainerContext {
        target,
        container,
        exemptions,
        owned,
    } = *container_context;
    let context = container.security_context.clone().unwrap_or_default();
    // A field the operator set earlier stays in the patch even when it now looks compliant.
    let ours = |path: &str| owned.owns(target, path);

    builder.set(target, "securityContext.privileged", json!(false));
    if !exemptions
        .iter()
        .any(|exemption| exemption.allow_privilege_escalation)
    {
        builder.set(
            target,
            "securityContext.allowPrivilegeEscalation",
            json!(false),
        );
    }
    let writable_root = exemptions
        .iter()
        .any(|exemption| exemption.writable_root_filesystem);
    if effective.read_only_root_filesystem && !writable_root {
        builder.set(
            target,
            "securityContext.readOnlyRootFilesystem",
            json!(true),
        );
    }

    let mut drop: Vec<String> = context
        .capabilities
        .as_ref()
        .and_then(|capabilities| capabilities.drop.clone())
        .unwrap_or_default();
    // Pod Security Admission compares the drop list exactly, so "all" does not count.
    if !drop.iter().any(|capability| capability == "ALL") {
        drop.push("ALL".to_string());
    }
    builder.set(target, "securityContext.capabilities.drop", json!(drop));
    let allowed: BTreeSet<String> = exemptions
        .iter()
        .flat_map(|exemption| exemption.add_capabilities.iter().cloned())
        .collect();
    let current_add: Vec<String> = context
        .capabilities
        .as_ref()
        .and_then(|capabilities| capabilities.add.clone())
        .unwrap_or_default();
    // Capabilities are added only through exemptions: the list becomes exactly the exempted
    // ones, which removes any other capability the template adds.
    if !allowed.is_empty() || !current_add.is_empty() || ours("securityContext.capabilities.add") {
        builder.set(target, "securityContext.capabilities.add", json!(allowed));
    }

    let container_root = exemptions.iter().any(|exemption| exemption.run_as_root);
    if container_root && !pod_runs_as_root {
        // The pod-level runAsNonRoot would stop this container from starting as root.
        builder.set(target, "securityContext.runAsNonRoot", json!(false));
    } else if !container_root && !pod_runs_as_root {
        let non_root =
            context.run_as_non_root == Some(false) || ours("securityContext.runAsNonRoot");
        if non_root && effective.run_as_non_root {
            builder.set(target, "securityContext.runAsNonRoot", json!(true));
        }
        let outside = |id: Option<i64>| id.is_some_and(|id| !effective.uid_range.contains(id));
        if outside(context.run_as_user) || ours("securityContext.runAsUser") {
            let user = match context.run_as_user {
                Some(user) if effective.uid_range.contains(user) => user,
                _ => pod_uid,
            };
            builder.set(target, "securityContext.runAsUser", json!(user));
        }
        if outside(context.run_as_group) || ours("securityContext.runAsGroup") {
            let group = match context.run_as_group {
                Some(group) if effective.uid_range.contains(group) => group,
                _ => pod_uid,
            };
            builder.set(target, "securityContext.runAsGroup", json!(group));
        }
    }

    for (field, profile) in [
        (
            "seccompProfile",
            context.seccomp_profile.as_ref().map(|p| p.type_.as_str()),
        ),
        (
            "appArmorProfile",
            context.app_armor_profile.as_ref().map(|p| p.type_.as_str()),
        ),
    ] {
        if profile == Some("Unconfined") || ours(&format!("securityContext.{field}.type")) {
            builder.set(
                target,
                &format!("securityContext.{field}.type"),
                json!("RuntimeDefault"),
            );
        }
    }

    let resources = container.resources.clone().unwrap_or_default();
    let requests = resources.requests.unwrap_or_default();
    let limits = resources.limits.unwrap_or_default();
    for (resource, quantity) in &effective.requests {
        let path = format!("resources.requests.{resource}");
        if !requests.contains_key(resource) || ours(&path) {
            // A request above the container's own limit would make the pod invalid, so the
            // default request is capped at that limit.
            let own_limit = limits
                .get(resource)
                .filter(|_| !ours(&format!("resources.limits.{resource}")));
            let request = match own_limit.map(|limit| (limit, parse_quantity(limit))) {
                Some((limit, Some(limit_value)))
                    if parse_quantity(quantity).is_some_and(|value| value > limit_value) =>
                {
                    limit.clone()
                }
                _ => quantity.clone(),
            };
            builder.set(target, &path, json!(request));
        }
    }
    for (resource, quantity) in &effective.limits {
        let path = format!("resources.limits.{resource}");
        if limits.contains_key(resource) && !ours(&path) {
            continue;
        }
        // A limit below the container's own request would make the pod invalid.
        let floor = requests.get(resource).or(effective.requests.get(resource));
        let limit = match floor {
            Some(request) if parse_quantity(request) > parse_quantity(quantity) => request.clone(),
            _ => quantity.clone(),
        };
        builder.set(target, &path, json!(limit));
    }
}

/// Keeps an ID inside the range, and replaces an unset, root or outside one with the minimum.
fn chosen_id(current: Option<i64>, range: &UidRange) -> i64 {
    match current {
        Some(id) if range.contains(id) => id,
        _ => range.min,
    }
}

/// Keeps a Localhost profile, which is as strict as RuntimeDefault, and sets RuntimeDefault
/// otherwise.
fn kept_profile(current: Option<&str>) -> &'static str {
    match current {
        Some("Localhost") => "Localhost",
        _ => "RuntimeDefault",
    }
}

/// The emptyDir volume for each writable path.
fn writable_volumes(paths: &[WritablePath]) -> Vec<(&WritablePath, Value)> {
    paths
        .iter()
        .map(|path| {
            let slug = path
                .path
                .trim_matches('/')
                .replace(['/', '.', '_'], "-")
                .to_lowercase();
            let name = object_name(&["mn", &slug], 63);
            let mut empty_dir = Map::new();
            if let Some(limit) = &path.size_limit {
                empty_dir.insert("sizeLimit".to_string(), json!(limit));
            }
            (path, json!({ "name": name, "emptyDir": empty_dir }))
        })
        .collect()
}

fn volume_name(volume: &Value) -> &str {
    volume["name"].as_str().unwrap_or_default()
}

/// Merges a template patch into `template` the way server-side apply merges these fields:
/// objects by key, containers and volumes by name, volume mounts by mountPath, and other
/// lists replaced whole. It shows what a template looks like once hardened.
pub fn apply_to_template(template: &PodTemplateSpec, patch: &Value) -> PodTemplateSpec {
    fn merge(current: &mut Value, patch: &Value, field: &str) {
        match (current, patch) {
            (Value::Object(current), Value::Object(patch)) => {
                for (key, value) in patch {
                    let slot = current.entry(key.clone()).or_insert(Value::Null);
                    merge(slot, value, key);
                }
            }
            (Value::Array(current), Value::Array(patch)) if entry_key(field).is_some() => {
                let id = entry_key(field).unwrap_or_default();
                for item in patch {
                    match current.iter_mut().find(|existing| existing[id] == item[id]) {
                        Some(existing) => merge(existing, item, ""),
                        None => current.push(item.clone()),
                    }
                }
            }
            (current, patch) => *current = patch.clone(),
        }
    }
    fn entry_key(field: &str) -> Option<&'static str> {
        match field {
            "containers" | "initContainers" | "volumes" => Some("name"),
            "volumeMounts" => Some("mountPath"),
            _ => None,
        }
    }

    let mut current = serde_json::to_value(template).unwrap_or(Value::Null);
    merge(&mut current, patch, "");
    serde_json::from_value(current).unwrap_or_else(|_| template.clone())
}

/// Returns a short stable hash of a patch, to tell whether the hardening changed.
pub fn patch_hash(patch: &Value) -> String {
    hex_digest(patch.to_string().as_bytes())[..16].to_string()
}

#[cfg(test)]
mod tests;
