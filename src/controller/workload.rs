//! The workload kinds the operator hardens, behind one type.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use kube::ResourceExt;
use serde_json::Value;

use crate::api::workloads::WorkloadKind;
use crate::policy::hardening::{Owned, WorkloadId};
use crate::policy::names::MANAGER;

/// Annotation the operator writes on a workload it has hardened. A later difference in a
/// hardened field is then drift to revert, not another manager's value to respect.
pub const HARDENED_ANNOTATION: &str = "security.medianest.io/hardened";

/// Prefix of the pod-template annotations that restart a workload after a Secret rotation;
/// the rest of the key names the Secret and the value is the version the pods should load.
pub const RESTART_ANNOTATION_PREFIX: &str = "rotation.security.medianest.io/";

/// A workload of one of the hardened kinds.
#[derive(Clone, Debug)]
pub enum Workload {
    Deployment(Arc<Deployment>),
    StatefulSet(Arc<StatefulSet>),
    DaemonSet(Arc<DaemonSet>),
    CronJob(Arc<CronJob>),
}

impl Workload {
    pub fn kind(&self) -> WorkloadKind {
        match self {
            Workload::Deployment(_) => WorkloadKind::Deployment,
            Workload::StatefulSet(_) => WorkloadKind::StatefulSet,
            Workload::DaemonSet(_) => WorkloadKind::DaemonSet,
            Workload::CronJob(_) => WorkloadKind::CronJob,
        }
    }

    pub fn api_version(&self) -> &'static str {
        match self {
            Workload::CronJob(_) => "batch/v1",
            _ => "apps/v1",
        }
    }

    fn meta(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        match self {
            Workload::Deployment(object) => &object.metadata,
            Workload::StatefulSet(object) => &object.metadata,
            Workload::DaemonSet(object) => &object.metadata,
            Workload::CronJob(object) => &object.metadata,
        }
    }

    pub fn id(&self) -> WorkloadId {
        let meta = self.meta();
        WorkloadId {
            kind: self.kind(),
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
        }
    }

    pub fn labels(&self) -> BTreeMap<String, String> {
        self.meta().labels.clone().unwrap_or_default()
    }

    pub fn generation(&self) -> i64 {
        self.meta().generation.unwrap_or(0)
    }

    /// Returns whether the operator hardened this workload before.
    pub fn hardened_before(&self) -> bool {
        self.meta()
            .annotations
            .as_ref()
            .is_some_and(|annotations| annotations.contains_key(HARDENED_ANNOTATION))
    }

    pub fn template(&self) -> Option<&PodTemplateSpec> {
        match self {
            Workload::Deployment(object) => Some(&object.spec.template),
            Workload::StatefulSet(object) => Some(&object.spec.template),
            Workload::DaemonSet(object) => Some(&object.spec.template),
            Workload::CronJob(object) => object
                .spec
                .job_template
                .spec
                .as_ref()
                .map(|spec| &spec.template),
        }
    }

    /// Path of the pod template inside the object.
    pub fn template_path(&self) -> &'static [&'static str] {
        match self {
            Workload::CronJob(_) => &["spec", "jobTemplate", "spec", "template"],
            _ => &["spec", "template"],
        }
    }

    /// The template fields the operator's field manager owns, from managedFields.
    pub fn owned(&self) -> Owned {
        let entry = self.meta().managed_fields.iter().flatten().find(|entry| {
            entry.manager.as_deref() == Some(MANAGER)
                && entry.operation.as_deref() == Some("Apply")
                && entry.subresource.as_deref().unwrap_or("").is_empty()
        });
        match entry.and_then(|entry| entry.fields_v1.as_ref()) {
            Some(fields) => Owned::from_workload(&fields.0, self.template_path()),
            None => Owned::default(),
        }
    }

    /// The operator's managedFields entry (server-side apply, main resource), as fieldsV1.
    pub fn owned_fields(&self) -> Option<serde_json::Value> {
        self.meta()
            .managed_fields
            .iter()
            .flatten()
            .find(|entry| {
                entry.manager.as_deref() == Some(MANAGER)
                    && entry.operation.as_deref() == Some("Apply")
                    && entry.subresource.as_deref().unwrap_or("").is_empty()
            })
            .and_then(|entry| entry.fields_v1.as_ref())
            .map(|fields| fields.0.clone())
    }

    /// The whole object as JSON.
    pub fn to_value(&self) -> serde_json::Value {
        let value = match self {
            Workload::Deployment(object) => serde_json::to_value(object.as_ref()),
            Workload::StatefulSet(object) => serde_json::to_value(object.as_ref()),
            Workload::DaemonSet(object) => serde_json::to_value(object.as_ref()),
            Workload::CronJob(object) => serde_json::to_value(object.as_ref()),
        };
        value.unwrap_or(serde_json::Value::Null)
    }

    /// The restart annotations the operator owns on the pod template, with their values. Every
    /// apply to the workload carries them, since server-side apply would otherwise remove them.
    pub fn owned_restart_annotations(&self) -> BTreeMap<String, String> {
        let Some(fields) = self.owned_fields() else {
            return BTreeMap::new();
        };
        let mut projected = crate::policy::diff::project_owned(&self.to_value(), &fields);
        for key in self.template_path() {
            projected = projected.get(*key).cloned().unwrap_or_default();
        }
        projected["metadata"]["annotations"]
            .as_object()
            .map(|annotations| {
                annotations
                    .iter()
                    .filter(|(key, _)| key.starts_with(RESTART_ANNOTATION_PREFIX))
                    .filter_map(|(key, value)| Some((key.clone(), value.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Builds the server-side apply body that sets `template_patch` and the hardened
    /// annotation.
    pub fn apply_body(&self, template_patch: &Value) -> Value {
        let id = self.id();
        let mut body = serde_json::json!({
            "apiVersion": self.api_version(),
            "kind": id.kind.as_str(),
            "metadata": {
                "name": id.name,
                "namespace": id.namespace,
                "annotations": { HARDENED_ANNOTATION: "true" },
            },
        });
        let mut node = &mut body;
        for key in self.template_path() {
            node = &mut node[*key];
        }
        *node = template_patch.clone();
        body
    }

    /// Returns whether the latest change of the pod template has rolled out, as far as the
    /// status shows. A CronJob has nothing to roll out: its next Job uses the new template.
    pub fn rolled_out(&self) -> bool {
        let generation = self.generation();
        match self {
            Workload::Deployment(object) => {
                let desired = object.spec.replicas.unwrap_or(1);
                object.status.as_ref().is_some_and(|status| {
                    status.observed_generation.unwrap_or(0) >= generation
                        && status.updated_replicas.unwrap_or(0) >= desired
                        && status.available_replicas.unwrap_or(0) >= desired
                })
            }
            Workload::StatefulSet(object) => {
                let desired = object.spec.replicas.unwrap_or(1);
                object.status.as_ref().is_some_and(|status| {
                    status.observed_generation.unwrap_or(0) >= generation
                        && status.updated_replicas.unwrap_or(0) >= desired
                        && status.current_revision == status.update_revision
                })
            }
            Workload::DaemonSet(object) => object.status.as_ref().is_some_and(|status| {
                status.observed_generation.unwrap_or(0) >= generation
                    && status.updated_number_scheduled.unwrap_or(0)
                        >= status.desired_number_scheduled
                    && status.number_available.unwrap_or(0) >= status.desired_number_scheduled
            }),
            Workload::CronJob(_) => true,
        }
    }

    pub fn name(&self) -> String {
        self.meta().name.clone().unwrap_or_default()
    }
}

/// Returns the name of any object, for messages.
pub fn display_name<K: ResourceExt>(object: &K) -> String {
    format!(
        "{}/{}",
        object.namespace().unwrap_or_default(),
        object.name_any()
    )
}
