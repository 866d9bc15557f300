//! Status and Events from the outcome of a reconcile.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};

use crate::api::condition::{self, ConditionStatus, ConditionUpdate, reason};
use crate::api::policy::{Mode, PendingChange};
use crate::api::{MediaNestSecurityPolicy, MediaNestSecurityPolicyStatus};

use super::context::Context;
use super::error::{Error, chain};
use super::mtls::MtlsOutcome;
use super::network::NetworkOutcome;
use super::policy::publish;
use super::status::write_policy_status;
use super::workloads::WorkloadsOutcome;

/// Findings and actions of one reconcile.
pub struct Outcome {
    pub governed: Vec<String>,
    pub network: NetworkOutcome,
    pub workloads: WorkloadsOutcome,
    pub certificates: MtlsOutcome,
}

/// Writes status and Events for a finished reconcile, and chooses when the next one runs.
pub async fn report(
    policy: &MediaNestSecurityPolicy,
    ctx: &Context,
    mut outcome: Outcome,
    now: Timestamp,
) -> Result<Action, Error> {
    let previous = policy.status.clone().unwrap_or_default();
    let audit = policy.spec.mode == Mode::Audit;
    let generation = policy.meta().generation;

    let network = network_condition(&outcome, audit);
    let workloads = workloads_condition(policy, &outcome.workloads, audit);
    let certificates = outcome.certificates.condition.clone().unwrap_or_else(|| {
        ConditionUpdate::new(
            condition::CERTIFICATES_READY,
            ConditionStatus::True,
            reason::DISABLED,
            "spec.mtls is not set",
        )
    });
    let ready = ready_condition(&[&network, &workloads, &certificates]);
    let network_succeeded = outcome.network.failure.is_none();
    let network_drift = if network_succeeded {
        outcome.network.drift.len() as i64
    } else {
        0
    };
    let workload_drift = outcome
        .workloads
        .written
        .iter()
        .filter(|(_, drift)| *drift)
        .count() as i64;

    let status = MediaNestSecurityPolicyStatus {
        observed_generation: generation,
        conditions: condition::merge_conditions(
            &previous.conditions,
            &[ready, network, workloads, certificates],
            generation,
            now,
        ),
        governed_namespace_count: outcome.governed.len() as i32,
        governed_namespaces: outcome.governed.clone(),
        network_policy_count: outcome.network.desired_count as i32,
        drift_corrections: previous.drift_corrections + network_drift + workload_drift,
        // Only a fully applied state may become the reference for drift.
        desired_state_hash: if network_succeeded && !audit {
            Some(outcome.network.desired_hash.clone())
        } else {
            previous.desired_state_hash.clone()
        },
        pending_changes: if audit {
            outcome.network.pending.clone()
        } else {
            Vec::new()
        },
        hardened_workloads: outcome.workloads.hardened,
        exempted_workloads: outcome.workloads.exempted,
        non_compliant_workloads: outcome.workloads.non_compliant,
        workloads: outcome.workloads.reports.clone(),
        pod_security_exceptions: outcome.workloads.exceptions.clone(),
        overlapping_policies: outcome.workloads.overlaps.iter().cloned().collect(),
        mtls: outcome.certificates.status.clone(),
    };

    publish_events(policy, ctx, &outcome, &previous, &status, network_drift).await;
    write_policy_status(&ctx.client, policy, status).await?;

    if let Some(error) = outcome
        .network
        .failure
        .take()
        .or(outcome.workloads.failure.take())
        .or(outcome.certificates.failure.take())
    {
        return Err(error);
    }
    let resync = ctx.settings.resync_interval;
    let soonest = [
        outcome.workloads.requeue_after,
        outcome.certificates.requeue_after,
    ]
    .into_iter()
    .flatten()
    .min();
    let next = soonest.map_or(resync, |soon| soon.min(resync));
    Ok(Action::requeue(next.max(Duration::from_millis(100))))
}

fn network_condition(outcome: &Outcome, audit: bool) -> ConditionUpdate {
    let network = &outcome.network;
    let update = |status, reason, message: String| {
        ConditionUpdate::new(condition::NETWORK_READY, status, reason, message)
    };
    match (&network.failure, audit) {
        (Some(error), _) => update(
            ConditionStatus::False,
            reason::APPLY_FAILED,
            chain(error, 1024),
        ),
        (None, _) if !network.foreign.is_empty() => update(
            ConditionStatus::False,
            reason::NAME_CONFLICT,
            format!(
                "NetworkPolicies {} have generated names but were not created by the operator, which leaves them alone; rename or delete them",
                network.foreign.join(", ")
            ),
        ),
        (None, true) if network.pending.is_empty() => update(
            ConditionStatus::True,
            reason::AUDITED,
            format!(
                "Audit mode: the {} generated NetworkPolicies match",
                network.desired_count
            ),
        ),
        (None, true) => update(
            ConditionStatus::False,
            reason::CHANGES_PENDING,
            format!(
                "Audit mode: Enforce would make {} changes, listed in status.pendingChanges",
                network.pending.len()
            ),
        ),
        (None, false) => update(
            ConditionStatus::True,
            reason::RECONCILED,
            format!(
                "{} NetworkPolicies in {} namespaces match the spec",
                network.desired_count,
                outcome.governed.len()
            ),
        ),
    }
}

fn workloads_condition(
    policy: &MediaNestSecurityPolicy,
    workloads: &WorkloadsOutcome,
    audit: bool,
) -> ConditionUpdate {
    let update = |status, reason, message: String| {
        ConditionUpdate::new(condition::WORKLOADS_READY, status, reason, message)
    };
    if policy.spec.workloads.is_none() {
        return update(
            ConditionStatus::True,
            reason::DISABLED,
            "spec.workloads is not set".to_string(),
        );
    }
    let count_state = |state: &str| {
        workloads
            .reports
            .iter()
            .filter(|report| report.state == state)
            .count()
    };
    let summary = format!(
        "{} hardened, {} exempted, {} not compliant",
        workloads.hardened, workloads.exempted, workloads.non_compliant
    );
    if let Some(error) = &workloads.failure {
        return update(
            ConditionStatus::False,
            reason::APPLY_FAILED,
            chain(error, 1024),
        );
    }
    if audit {
        return match workloads.non_compliant {
            0 => update(
                ConditionStatus::True,
                reason::AUDITED,
                format!("Audit mode: {summary}"),
            ),
            _ => update(
                ConditionStatus::False,
                reason::CHANGES_PENDING,
                format!(
                    "Audit mode: {summary}; status.workloads lists the fields Enforce would change"
                ),
            ),
        };
    }
    if count_state("Conflict") > 0 {
        return update(
            ConditionStatus::False,
            reason::CONFLICT,
            format!(
                "{summary}; {} workloads have fields owned by another field manager, listed in status.workloads",
                count_state("Conflict")
            ),
        );
    }
    if count_state("Pending") > 0 {
        return update(
            ConditionStatus::False,
            reason::ROLLOUT_PENDING,
            format!(
                "{summary}; {} workloads wait for a rollout slot",
                count_state("Pending")
            ),
        );
    }
    if count_state("Violation") > 0 {
        return update(
            ConditionStatus::False,
            reason::VIOLATIONS,
            format!(
                "{summary}; {} Jobs or bare Pods break the hardening and cannot be changed",
                count_state("Violation")
            ),
        );
    }
    update(ConditionStatus::True, reason::RECONCILED, summary)
}

/// Ready is True when every other condition is; otherwise it repeats the first that is not.
fn ready_condition(parts: &[&ConditionUpdate]) -> ConditionUpdate {
    match parts
        .iter()
        .find(|part| part.status != ConditionStatus::True)
    {
        Some(part) => ConditionUpdate {
            type_: condition::READY,
            ..(*part).clone()
        },
        None => ConditionUpdate {
            type_: condition::READY,
            ..parts[0].clone()
        },
    }
}

async fn publish_events(
    policy: &MediaNestSecurityPolicy,
    ctx: &Context,
    outcome: &Outcome,
    previous: &MediaNestSecurityPolicyStatus,
    status: &MediaNestSecurityPolicyStatus,
    network_drift: i64,
) {
    let audit = policy.spec.mode == Mode::Audit;
    if audit
        && status.pending_changes != previous.pending_changes
        && !status.pending_changes.is_empty()
    {
        let note = format!(
            "Audit mode: Enforce would make {} changes: {}",
            status.pending_changes.len(),
            describe_changes(&status.pending_changes)
        );
        publish(
            ctx,
            policy,
            EventType::Normal,
            "AuditChangesPending",
            "Audit",
            note,
        )
        .await;
    }
    let non_compliant = |status: &MediaNestSecurityPolicyStatus| -> Vec<String> {
        status
            .workloads
            .iter()
            .filter(|report| report.state == "NonCompliant")
            .map(|report| format!("{} {}/{}", report.kind, report.namespace, report.name))
            .collect()
    };
    let now_pending = non_compliant(status);
    if audit && !now_pending.is_empty() && now_pending != non_compliant(previous) {
        let note = format!("Audit mode: Enforce would harden {}", shorten(&now_pending));
        publish(
            ctx,
            policy,
            EventType::Normal,
            "AuditWorkloadsNotCompliant",
            "Audit",
            note,
        )
        .await;
    }

    if network_drift > 0 {
        ctx.metrics
            .record_drift("NetworkPolicy", network_drift as u64);
        let noun = if network_drift == 1 {
            "NetworkPolicy"
        } else {
            "NetworkPolicies"
        };
        let note = format!(
            "Restored {network_drift} {noun}: {}",
            outcome.network.drift.join(", ")
        );
        tracing::info!(
            policy = policy.name_any(),
            restored = network_drift,
            "Corrected drift"
        );
        publish(
            ctx,
            policy,
            EventType::Normal,
            "DriftCorrected",
            "Reconcile",
            note,
        )
        .await;
    }

    for (type_, reason, note) in &outcome.certificates.events {
        publish(ctx, policy, *type_, reason, "Certify", note.clone()).await;
    }

    let (drifted, hardened): (Vec<_>, Vec<_>) = outcome
        .workloads
        .written
        .iter()
        .partition(|(_, drift)| *drift);
    if !drifted.is_empty() {
        ctx.metrics.record_drift("Workload", drifted.len() as u64);
        let names: Vec<String> = drifted.iter().map(|(id, _)| id.to_string()).collect();
        let note = format!("Restored the hardening of {}", shorten(&names));
        publish(
            ctx,
            policy,
            EventType::Normal,
            "DriftCorrected",
            "Harden",
            note,
        )
        .await;
    }
    if !hardened.is_empty() {
        let names: Vec<String> = hardened.iter().map(|(id, _)| id.to_string()).collect();
        let note = format!(
            "Hardened the pod template of {}; their pods roll out",
            shorten(&names)
        );
        publish(ctx, policy, EventType::Normal, "Hardened", "Harden", note).await;
    }

    let violations = |status: &MediaNestSecurityPolicyStatus| -> Vec<String> {
        status
            .workloads
            .iter()
            .filter(|report| report.state == "Violation")
            .map(|report| format!("{} {}/{}", report.kind, report.namespace, report.name))
            .collect()
    };
    let known = violations(previous);
    let new: Vec<String> = violations(status)
        .into_iter()
        .filter(|name| !known.contains(name))
        .collect();
    if !new.is_empty() {
        let note = format!(
            "{} break the hardening and cannot be changed after creation; recreate them from a hardened template",
            shorten(&new)
        );
        publish(ctx, policy, EventType::Warning, "Violation", "Harden", note).await;
    }
}

/// Lists up to ten names and counts the rest.
fn shorten(names: &[String]) -> String {
    let shown: Vec<&str> = names.iter().take(10).map(String::as_str).collect();
    let more = names.len().saturating_sub(shown.len());
    if more > 0 {
        format!("{} and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

fn describe_changes(changes: &[PendingChange]) -> String {
    let described: Vec<String> = changes
        .iter()
        .map(|change| {
            format!(
                "{} {} {}/{}",
                change.action, change.kind, change.namespace, change.name
            )
        })
        .collect();
    shorten(&described)
}
