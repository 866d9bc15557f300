//! The workloads step of the policy reconciler: harden pod templates, write Pod Security
//! Admission labels, report what cannot be changed.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod, PodTemplateSpec};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::api::MediaNestSecurityPolicy;
use crate::api::policy::{PodSecurityException, WorkloadReport};
use crate::api::workloads::{WorkloadKind, WorkloadsSpec};
use crate::policy::hardening::{self, Effective, Hardening, Owned, WorkloadId};
use crate::policy::names::MANAGER;
use crate::policy::podsecurity;
use crate::policy::workloads::{self as plan, NamespaceLevels, PolicyView};

use super::context::Context;
use super::error::Error;
use super::workload::Workload;

/// Most entries of status.workloads; the counts stay exact beyond it.
const MAX_REPORTS: usize = 100;
/// Most field changes listed per workload.
const MAX_CHANGES: usize = 20;
/// Annotation marking a namespace whose Pod Security labels the operator wrote.
pub const PSA_MANAGED_ANNOTATION: &str = "security.medianest.io/pod-security";

/// Findings and actions of the workloads step.
#[derive(Debug, Default)]
pub struct WorkloadsOutcome {
    pub hardened: i32,
    pub exempted: i32,
    pub non_compliant: i32,
    pub reports: Vec<WorkloadReport>,
    pub exceptions: Vec<PodSecurityException>,
    pub overlaps: BTreeSet<String>,
    /// Workloads written in this reconcile, as (workload, whether it was drift).
    pub written: Vec<(WorkloadId, bool)>,
    /// Jobs and Pods newly found in violation, for a Warning Event.
    pub violations: Vec<String>,
    /// When the reconcile should run again at the latest: an exemption expires, or a
    /// rollout slot frees up.
    pub requeue_after: Option<Duration>,
    pub failure: Option<Error>,
}

impl WorkloadsOutcome {
    fn requeue_within(&mut self, delay: Duration) {
        self.requeue_after = Some(
            self.requeue_after
                .map_or(delay, |current| current.min(delay)),
        );
    }

    fn report(
        &mut self,
        id: &WorkloadId,
        kind: &str,
        state: &str,
        hardening: Option<&Hardening>,
        message: Option<String>,
    ) {
        let changes = hardening
            .map(|hardening| {
                hardening
                    .changes
                    .iter()
                    .take(MAX_CHANGES)
                    .map(ToString::to_string)
                    .collect()
            })
            .unwrap_or_default();
        self.reports.push(WorkloadReport {
            kind: kind.to_string(),
            namespace: id.namespace.clone(),
            name: id.name.clone(),
            state: state.to_string(),
            changes,
            message,
        });
    }
}

/// Runs the workloads step of `policy` over its `governed` namespaces.
pub async fn reconcile(
    ctx: &Context,
    policy: &MediaNestSecurityPolicy,
    views: &[PolicyView<'_>],
    governed: &[String],
    enforce: bool,
    now: Timestamp,
) -> WorkloadsOutcome {
    let mut outcome = WorkloadsOutcome::default();
    let name = policy.name_any();
    let Some(own_spec) = policy.spec.workloads.as_ref() else {
        return outcome;
    };

    let mut exempted_templates: BTreeMap<String, Vec<(WorkloadId, PodTemplateSpec)>> =
        BTreeMap::new();
    for workload in ctx.workloads_in(governed) {
        let id = workload.id();
        let Some(template) = workload.template() else {
            continue;
        };
        let selecting = plan::selecting(views, &id.namespace, Some(id.kind), &workload.labels());
        if !selecting.iter().any(|view| view.name == name) {
            continue;
        }
        outcome.overlaps.extend(
            selecting
                .iter()
                .filter(|view| view.name != name)
                .map(|view| view.name.to_string()),
        );

        let specs: Vec<&WorkloadsSpec> = selecting
            .iter()
            .filter_map(|view| view.spec.workloads.as_ref())
            .collect();
        let effective = hardening::merge(&specs, &id, now);
        schedule_expiry(&mut outcome, own_spec, &id, now);
        let hardening = hardening::harden(template, &effective, &workload.owned());
        if !hardening.exemptions.is_empty() {
            let hardened = hardening::apply_to_template(template, &hardening.template_patch);
            exempted_templates
                .entry(id.namespace.clone())
                .or_default()
                .push((id.clone(), hardened));
        }

        if hardening.changes.is_empty() {
            count_compliant(&mut outcome, &id, &hardening);
            continue;
        }
        if !enforce {
            outcome.non_compliant += 1;
            outcome.report(
                &id,
                id.kind.as_str(),
                "NonCompliant",
                Some(&hardening),
                exemption_message(&hardening),
            );
            continue;
        }
        enforce_workload(
            ctx,
            &name,
            own_spec,
            &workload,
            &effective,
            &hardening,
            &mut outcome,
        )
        .await;
    }

    report_unchangeable(ctx, views, &name, governed, now, &mut outcome).await;
    pod_security(
        ctx,
        policy,
        views,
        governed,
        &exempted_templates,
        enforce,
        &mut outcome,
    )
    .await;
    outcome.reports.sort();
    outcome.reports.truncate(MAX_REPORTS);
    outcome
}

fn count_compliant(outcome: &mut WorkloadsOutcome, id: &WorkloadId, hardening: &Hardening) {
    if hardening.exemptions.is_empty() {
        outcome.hardened += 1;
    } else {
        outcome.exempted += 1;
        outcome.report(
            id,
            id.kind.as_str(),
            "Exempted",
            None,
            exemption_message(hardening),
        );
    }
}

fn exemption_message(hardening: &Hardening) -> Option<String> {
    if hardening.exemptions.is_empty() {
        return None;
    }
    let reasons: Vec<String> = hardening
        .exemptions
        .iter()
        .map(|exemption| {
            let scope = exemption
                .container
                .as_ref()
                .map(|container| format!("container {container}"))
                .unwrap_or_else(|| "all containers".to_string());
            let expiry = exemption
                .expires
                .as_ref()
                .map(|expires| format!(", until {}", expires.0))
                .unwrap_or_default();
            format!("exempted ({scope}{expiry}): {}", exemption.reason)
        })
        .collect();
    Some(reasons.join("; "))
}

/// Requeues the policy for the moment one of its exemptions of `id` expires.
fn schedule_expiry(
    outcome: &mut WorkloadsOutcome,
    spec: &WorkloadsSpec,
    id: &WorkloadId,
    now: Timestamp,
) {
    for exemption in &spec.exemptions {
        let names_workload = exemption.kind == id.kind
            && exemption.namespace == id.namespace
            && exemption.name == id.name;
        let Some(expires) = exemption.expires.as_ref().filter(|_| names_workload) else {
            continue;
        };
        if expires.0 > now {
            let wait = expires.0.duration_since(now);
            let wait = Duration::try_from(wait).unwrap_or(Duration::ZERO);
            outcome.requeue_within(wait + Duration::from_millis(100));
        }
    }
}

/// Applies the hardening of one workload, paced by the rollout limit, and records the result.
async fn enforce_workload(
    ctx: &Context,
    policy: &str,
    spec: &WorkloadsSpec,
    workload: &Workload,
    effective: &Effective,
    hardening: &Hardening,
    outcome: &mut WorkloadsOutcome,
) {
    let id = workload.id();
    // A workload hardened before that differs now was changed by someone: that is drift,
    // reverted at once and by force. A first hardening waits for a rollout slot.
    let drift = workload.hardened_before();
    if !drift {
        let timeout = spec
            .rollout
            .timeout
            .parse()
            .unwrap_or(Duration::from_secs(300));
        let limit = usize::try_from(spec.rollout.max_concurrent)
            .unwrap_or(1)
            .max(1);
        if let Err(wait) =
            ctx.rollouts
                .try_start(policy, &id, limit, timeout, |other, generation| {
                    ctx.rolled_out(other, generation)
                })
        {
            outcome.non_compliant += 1;
            let message = format!("waiting for a rollout slot: {limit} workloads at a time");
            outcome.report(
                &id,
                id.kind.as_str(),
                "Pending",
                Some(hardening),
                Some(message),
            );
            outcome.requeue_within(wait);
            return;
        }
    }

    let force = drift || effective.force_conflicts;
    match apply_workload(ctx, workload, &hardening.template_patch, force).await {
        Ok(generation) => {
            ctx.rollouts.started(&id, generation);
            tracing::info!(workload = %id, drift, changes = hardening.changes.len(), "Hardened workload");
            if hardening.exemptions.is_empty() {
                outcome.hardened += 1;
            } else {
                outcome.exempted += 1;
                outcome.report(
                    &id,
                    id.kind.as_str(),
                    "Exempted",
                    None,
                    exemption_message(hardening),
                );
            }
            outcome.written.push((id, drift));
        }
        Err(kube::Error::Api(status)) if status.code == 409 => {
            ctx.rollouts.finish(&id);
            outcome.non_compliant += 1;
            let message = format!(
                "{}; set spec.workloads.forceConflicts to take these fields over",
                status.message
            );
            outcome.report(
                &id,
                id.kind.as_str(),
                "Conflict",
                Some(hardening),
                Some(message),
            );
        }
        Err(source) => {
            ctx.rollouts.finish(&id);
            outcome.non_compliant += 1;
            let error = Error::ApplyWorkload {
                workload: id.to_string(),
                source,
            };
            outcome.report(
                &id,
                id.kind.as_str(),
                "NonCompliant",
                Some(hardening),
                Some(error.to_string()),
            );
            outcome.failure.get_or_insert(error);
        }
    }
}

/// Applies the hardening and returns the workload's new generation.
async fn apply_workload(
    ctx: &Context,
    workload: &Workload,
    patch: &serde_json::Value,
    force: bool,
) -> Result<i64, kube::Error> {
    let id = workload.id();
    let mut body = workload.apply_body(patch);
    // Keep the restart annotations of Secret rotations, which this apply would otherwise drop.
    let restarts = workload.owned_restart_annotations();
    if !restarts.is_empty() {
        let mut node = &mut body;
        for key in workload.template_path() {
            node = &mut node[*key];
        }
        crate::policy::diff::merge_json(node, &json!({ "metadata": { "annotations": restarts } }));
    }
    let mut params = PatchParams::apply(MANAGER);
    params.force = force;
    let resource = kube::discovery::ApiResource {
        group: if id.kind == WorkloadKind::CronJob {
            "batch"
        } else {
            "apps"
        }
        .to_string(),
        version: "v1".to_string(),
        api_version: workload.api_version().to_string(),
        kind: id.kind.as_str().to_string(),
        plural: format!("{}s", id.kind.as_str().to_lowercase()),
    };
    let api: Api<kube::api::DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), &id.namespace, &resource);
    let applied = api.patch(&id.name, &params, &Patch::Apply(&body)).await?;
    Ok(applied.metadata.generation.unwrap_or(0))
}

/// Reports Jobs and bare Pods that break the hardening: they cannot be changed after creation.
async fn report_unchangeable(
    ctx: &Context,
    views: &[PolicyView<'_>],
    policy: &str,
    governed: &[String],
    now: Timestamp,
    outcome: &mut WorkloadsOutcome,
) {
    let mut templates: Vec<(
        WorkloadId,
        &'static str,
        BTreeMap<String, String>,
        PodTemplateSpec,
    )> = Vec::new();
    for job in ctx.jobs_in(governed) {
        // Jobs of a CronJob follow its template, which is hardened on its own.
        if !job.owner_references().is_empty() {
            continue;
        }
        if let Some(spec) = job.spec.as_ref() {
            let id = WorkloadId {
                kind: WorkloadKind::CronJob,
                namespace: job.namespace().unwrap_or_default(),
                name: job.name_any(),
            };
            templates.push((id, "Job", job.labels().clone(), spec.template.clone()));
        }
    }
    for pod in ctx.bare_pods_in(governed).await {
        let id = WorkloadId {
            kind: WorkloadKind::Deployment,
            namespace: pod.namespace().unwrap_or_default(),
            name: pod.name_any(),
        };
        templates.push((id, "Pod", pod.labels().clone(), pod_template(&pod)));
    }

    for (id, kind, labels, template) in templates {
        let selecting = plan::selecting(views, &id.namespace, None, &labels);
        if !selecting.iter().any(|view| view.name == policy) {
            continue;
        }
        let specs: Vec<&WorkloadsSpec> = selecting
            .iter()
            .filter_map(|view| view.spec.workloads.as_ref())
            .collect();
        let mut effective = hardening::merge(&specs, &id, now);
        // Exemptions name Deployments, StatefulSets, DaemonSets and CronJobs only.
        effective.exemptions.clear();
        let hardening = hardening::harden(&template, &effective, &Owned::default());
        if hardening.changes.is_empty() {
            continue;
        }
        outcome.non_compliant += 1;
        let message = format!(
            "{kind}s cannot be changed after creation; recreate it from a hardened template"
        );
        outcome.report(&id, kind, "Violation", Some(&hardening), Some(message));
        outcome
            .violations
            .push(format!("{kind} {}/{}", id.namespace, id.name));
    }
}

fn pod_template(pod: &Pod) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(pod.metadata.clone()),
        spec: pod.spec.clone(),
    }
}

/// Writes the Pod Security Admission labels of the governed namespaces, and reports the
/// workloads whose pods the enforced level would reject.
async fn pod_security(
    ctx: &Context,
    policy: &MediaNestSecurityPolicy,
    views: &[PolicyView<'_>],
    governed: &[String],
    exempted: &BTreeMap<String, Vec<(WorkloadId, PodTemplateSpec)>>,
    enforce: bool,
    outcome: &mut WorkloadsOutcome,
) {
    let name = policy.name_any();
    let own_level = policy
        .spec
        .workloads
        .as_ref()
        .map(|spec| plan::level_of(spec.pod_security_level));
    for namespace in governed {
        let governing: Vec<&PolicyView> = views
            .iter()
            .filter(|view| {
                view.spec.workloads.is_some()
                    && view.governed.iter().any(|known| known == namespace)
            })
            .collect();
        outcome.overlaps.extend(
            governing
                .iter()
                .filter(|view| view.name != name)
                .map(|view| view.name.to_string()),
        );
        let specs: Vec<&WorkloadsSpec> = governing
            .iter()
            .filter_map(|view| view.spec.workloads.as_ref())
            .collect();
        let templates = exempted.get(namespace).cloned().unwrap_or_default();
        let Some(levels) = plan::namespace_levels(&specs, &templates) else {
            continue;
        };
        if Some(levels.enforce) < own_level {
            outcome.exceptions.push(PodSecurityException {
                namespace: namespace.clone(),
                enforce: levels.enforce.as_str().to_string(),
                reason: levels.lowered_for.join("; "),
            });
        }

        if enforce {
            if let Err(error) = apply_namespace_labels(
                ctx,
                namespace,
                &levels,
                specs.iter().any(|spec| spec.force_conflicts),
            )
            .await
            {
                outcome.failure.get_or_insert(error);
            }
        } else {
            report_rejected(ctx, namespace, &levels, outcome);
        }
    }
}

/// Lists, in Audit mode, the workloads whose current pods the enforce level would reject.
fn report_rejected(
    ctx: &Context,
    namespace: &str,
    levels: &NamespaceLevels,
    outcome: &mut WorkloadsOutcome,
) {
    for workload in ctx.workloads_in(&[namespace.to_string()]) {
        let Some(template) = workload.template() else {
            continue;
        };
        let metadata = template.metadata.clone().unwrap_or_default();
        let spec = template.spec.clone().unwrap_or_default();
        let violations = podsecurity::check(levels.enforce, &metadata, &spec);
        if violations.is_empty() {
            continue;
        }
        let id = workload.id();
        let first: Vec<String> = violations
            .iter()
            .take(3)
            .map(|violation| violation.message.clone())
            .collect();
        let message = format!(
            "pods would be rejected by pod-security.kubernetes.io/enforce={}: {}",
            levels.enforce.as_str(),
            first.join("; ")
        );
        outcome.report(&id, id.kind.as_str(), "Rejected", None, Some(message));
    }
}

async fn apply_namespace_labels(
    ctx: &Context,
    namespace: &str,
    levels: &NamespaceLevels,
    force: bool,
) -> Result<(), Error> {
    let wanted = levels.labels();
    let current = ctx.namespace_labels(namespace);
    if wanted
        .iter()
        .all(|(key, value)| current.get(key) == Some(value))
    {
        return Ok(());
    }
    let body = json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": namespace,
            "labels": wanted,
            "annotations": { PSA_MANAGED_ANNOTATION: "managed" },
        },
    });
    let managed_before = ctx
        .namespace_annotations(namespace)
        .contains_key(PSA_MANAGED_ANNOTATION);
    let mut params = PatchParams::apply(MANAGER);
    params.force = force || managed_before;
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    api.patch(namespace, &params, &Patch::Apply(&body))
        .await
        .map_err(|source| Error::ApplyNamespaceLabels {
            namespace: namespace.to_string(),
            source,
        })?;
    tracing::info!(
        namespace,
        enforce = levels.enforce.as_str(),
        "Wrote Pod Security labels"
    );
    Ok(())
}
