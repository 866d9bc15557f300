//! The MediaNestSecurityPolicy reconciler: read, validate, build, apply, report.

use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};

use crate::api::condition::{self, ConditionStatus, ConditionUpdate, reason};
use crate::api::policy::{Mode, PendingChange};
use crate::api::{MediaNestSecurityPolicy, MediaNestSecurityPolicyStatus};
use crate::policy::diff::{self, Plan};
use crate::policy::names::hex_digest;
use crate::policy::network::{self, PolicyRef};
use crate::policy::{namespaces, validate};

use super::apply::{apply_network_policy, delete_network_policy};
use super::context::{Context, backoff_key};
use super::error::{Error, chain};
use super::status::write_policy_status;

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "securitypolicy";

/// Findings and actions of one reconcile, for status and Events.
struct Outcome {
    governed: Vec<String>,
    desired_count: usize,
    desired_hash: String,
    plan_summary: Vec<PendingChange>,
    drift: Vec<String>,
    failure: Option<Error>,
}

/// Brings the NetworkPolicies of one policy to the declared state and reports on it.
pub async fn reconcile(
    policy: Arc<MediaNestSecurityPolicy>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_inner(&policy, &ctx).await;
    ctx.metrics.record_reconcile(CONTROLLER, started.elapsed());
    if result.is_ok() {
        ctx.reset_backoff(&backoff_key(policy.as_ref()));
    }
    result
}

async fn reconcile_inner(policy: &MediaNestSecurityPolicy, ctx: &Context) -> Result<Action, Error> {
    if policy.meta().deletion_timestamp.is_some() {
        // Owner references let the garbage collector remove what this policy generated.
        return Ok(Action::await_change());
    }
    let name = policy.name_any();
    let uid = policy.uid().ok_or(Error::MissingField {
        kind: "MediaNestSecurityPolicy",
        field: "metadata.uid",
    })?;

    if let Err(errors) = validate::validate_policy(&name, &policy.spec) {
        report_invalid(policy, ctx, &errors.to_string()).await?;
        // Retrying cannot fix the spec: wait for the next change of the policy.
        return Ok(Action::await_change());
    }

    let namespace_infos = ctx.namespace_infos();
    let governed = namespaces::governed(
        &policy.spec,
        &namespace_infos,
        &ctx.settings.operator_namespace,
    );
    let reference = PolicyRef {
        name: &name,
        owner: policy.controller_owner_ref(&()),
    };
    let desired = network::compile(&reference, &policy.spec.network, &governed);
    let desired_hash = state_hash(&desired);
    let desired_count = desired.len();
    let plan = diff::plan(desired, ctx.owned_network_policies(&uid));
    let plan = confirm_plan(ctx, plan, &uid).await?;
    tracing::debug!(
        policy = %name,
        create = plan.create.len(),
        update = plan.update.len(),
        delete = plan.delete.len(),
        unchanged = plan.unchanged,
        "Planned NetworkPolicies"
    );

    let previous_hash = policy
        .status
        .as_ref()
        .and_then(|status| status.desired_state_hash.clone());
    let is_drift = previous_hash.as_deref() == Some(desired_hash.as_str());
    let mut outcome = Outcome {
        governed: governed
            .iter()
            .map(|namespace| namespace.name.clone())
            .collect(),
        desired_count,
        desired_hash,
        plan_summary: summarize(&plan),
        drift: Vec::new(),
        failure: None,
    };

    if policy.spec.mode == Mode::Enforce {
        if is_drift {
            outcome.drift = drift_descriptions(&plan);
        }
        outcome.failure = execute(ctx, &plan).await.err();
        ctx.metrics
            .set_managed("NetworkPolicy", desired_count as i64);
    }

    report(policy, ctx, outcome).await
}

/// Re-reads from the API server every object the plan would write.
///
/// The cache can lag behind the operator's own recent writes, and a stale entry would make a
/// reconcile write again and report drift that did not happen. The extra reads happen only
/// when the cache shows a difference, so a steady-state resync makes none.
async fn confirm_plan(
    ctx: &Context,
    plan: Plan<NetworkPolicy>,
    owner_uid: &str,
) -> Result<Plan<NetworkPolicy>, Error> {
    if plan.is_empty() {
        return Ok(plan);
    }
    let desired: Vec<NetworkPolicy> = plan
        .create
        .into_iter()
        .chain(plan.update.into_iter().map(|(desired, _)| desired))
        .collect();
    let mut existing = Vec::new();
    for object in desired.iter().chain(plan.delete.iter()) {
        if let Some(live) = read_network_policy(ctx, object).await?
            && live
                .owner_references()
                .iter()
                .any(|owner| owner.uid == owner_uid)
        {
            existing.push(live);
        }
    }
    existing.sort_by_key(|object| (object.namespace(), object.name_any()));
    existing.dedup_by_key(|object| (object.namespace(), object.name_any()));
    let mut confirmed = diff::plan(desired, existing);
    confirmed.unchanged += plan.unchanged;
    Ok(confirmed)
}

async fn read_network_policy(
    ctx: &Context,
    object: &NetworkPolicy,
) -> Result<Option<NetworkPolicy>, Error> {
    let namespace = object.namespace().unwrap_or_default();
    let api: kube::Api<NetworkPolicy> = kube::Api::namespaced(ctx.client.clone(), &namespace);
    api.get_opt(&object.name_any())
        .await
        .map_err(|source| Error::ReadNetworkPolicy {
            namespace,
            name: object.name_any(),
            source,
        })
}

/// Runs the plan: every create and update first, deletions last, so that a namespace never
/// loses its default deny or DNS rule while a changed policy is rolled out.
async fn execute(ctx: &Context, plan: &Plan<NetworkPolicy>) -> Result<(), Error> {
    for desired in plan
        .create
        .iter()
        .chain(plan.update.iter().map(|(desired, _)| desired))
    {
        apply_network_policy(&ctx.client, desired).await?;
        tracing::info!(
            namespace = desired.namespace().unwrap_or_default(),
            name = desired.name_any(),
            "Applied NetworkPolicy"
        );
    }
    for stale in &plan.delete {
        delete_network_policy(&ctx.client, stale).await?;
        tracing::info!(
            namespace = stale.namespace().unwrap_or_default(),
            name = stale.name_any(),
            "Deleted NetworkPolicy that is no longer generated"
        );
    }
    Ok(())
}

/// Writes status and Events for a finished reconcile, and chooses the next one.
async fn report(
    policy: &MediaNestSecurityPolicy,
    ctx: &Context,
    outcome: Outcome,
) -> Result<Action, Error> {
    let previous = policy.status.clone().unwrap_or_default();
    let audit = policy.spec.mode == Mode::Audit;

    let network = match (&outcome.failure, audit) {
        (Some(error), _) => ConditionUpdate::new(
            condition::NETWORK_READY,
            ConditionStatus::False,
            reason::APPLY_FAILED,
            chain(error, 1024),
        ),
        (None, true) if outcome.plan_summary.is_empty() => ConditionUpdate::new(
            condition::NETWORK_READY,
            ConditionStatus::True,
            reason::AUDITED,
            format!(
                "Audit mode: the {} generated NetworkPolicies match",
                outcome.desired_count
            ),
        ),
        (None, true) => ConditionUpdate::new(
            condition::NETWORK_READY,
            ConditionStatus::False,
            reason::CHANGES_PENDING,
            format!(
                "Audit mode: Enforce would make {} changes, listed in status.pendingChanges",
                outcome.plan_summary.len()
            ),
        ),
        (None, false) => ConditionUpdate::new(
            condition::NETWORK_READY,
            ConditionStatus::True,
            reason::RECONCILED,
            format!(
                "{} NetworkPolicies in {} namespaces match the spec",
                outcome.desired_count,
                outcome.governed.len()
            ),
        ),
    };
    let ready = ConditionUpdate {
        type_: condition::READY,
        ..network.clone()
    };

    let succeeded = outcome.failure.is_none();
    let drift_count = if succeeded {
        outcome.drift.len() as i64
    } else {
        0
    };
    let status = MediaNestSecurityPolicyStatus {
        observed_generation: policy.meta().generation,
        conditions: condition::merge_conditions(
            &previous.conditions,
            &[ready, network],
            policy.meta().generation,
            now(),
        ),
        governed_namespace_count: outcome.governed.len() as i32,
        governed_namespaces: outcome.governed,
        network_policy_count: outcome.desired_count as i32,
        drift_corrections: previous.drift_corrections + drift_count,
        // Only a fully applied state may become the reference for drift.
        desired_state_hash: if succeeded && !audit {
            Some(outcome.desired_hash)
        } else {
            previous.desired_state_hash.clone()
        },
        pending_changes: if audit {
            outcome.plan_summary.clone()
        } else {
            Vec::new()
        },
    };

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
    if drift_count > 0 {
        ctx.metrics
            .record_drift("NetworkPolicy", drift_count as u64);
        let note = format!(
            "Restored {} NetworkPolicies: {}",
            drift_count,
            outcome.drift.join(", ")
        );
        tracing::info!(
            policy = policy.name_any(),
            restored = drift_count,
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

    write_policy_status(&ctx.client, policy, status).await?;

    match outcome.failure {
        Some(error) => Err(error),
        None => Ok(Action::requeue(ctx.settings.resync_interval)),
    }
}

/// Records an invalid spec: Ready=False with the field errors, and one Warning Event per
/// distinct problem (not one per resync).
async fn report_invalid(
    policy: &MediaNestSecurityPolicy,
    ctx: &Context,
    message: &str,
) -> Result<(), Error> {
    let previous = policy.status.clone().unwrap_or_default();
    let already_reported =
        condition::find(&previous.conditions, condition::READY).is_some_and(|ready| {
            ready.reason == reason::INVALID_SPEC
                && ready.message == condition::truncate(message, 1024)
        });
    let update =
        |type_| ConditionUpdate::new(type_, ConditionStatus::False, reason::INVALID_SPEC, message);
    let status = MediaNestSecurityPolicyStatus {
        observed_generation: policy.meta().generation,
        conditions: condition::merge_conditions(
            &previous.conditions,
            &[update(condition::READY), update(condition::NETWORK_READY)],
            policy.meta().generation,
            now(),
        ),
        ..previous.clone()
    };

    tracing::warn!(
        policy = policy.name_any(),
        problems = message,
        "Invalid policy spec; keeping the generated objects"
    );
    if !already_reported {
        let note = format!(
            "{message}. The NetworkPolicies generated before stay in place until the spec is fixed"
        );
        publish(
            ctx,
            policy,
            EventType::Warning,
            reason::INVALID_SPEC,
            "Validate",
            note,
        )
        .await;
    }
    write_policy_status(&ctx.client, policy, status).await?;
    Ok(())
}

/// Decides what happens after a failed reconcile: a Warning Event, a failure metric, and a
/// retry with growing backoff, or a wait for the next change when retrying cannot help.
pub fn error_policy(
    policy: Arc<MediaNestSecurityPolicy>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    ctx.metrics.record_failure(CONTROLLER, error.category());
    tracing::warn!(policy = policy.name_any(), error = %chain(error, 2048), "Reconcile failed");

    let note = chain(error, 1024);
    let reason = error.category();
    let warn_ctx = ctx.clone();
    let warn_policy = policy.clone();
    tokio::spawn(async move {
        publish(
            &warn_ctx,
            warn_policy.as_ref(),
            EventType::Warning,
            reason,
            "Reconcile",
            note,
        )
        .await;
    });

    if error.is_permanent() {
        return Action::await_change();
    }
    Action::requeue(ctx.backoff(&backoff_key(policy.as_ref())))
}

async fn publish(
    ctx: &Context,
    policy: &MediaNestSecurityPolicy,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.to_string(),
        note: Some(condition::truncate(&note, 1000)),
        action: action.to_string(),
        secondary: None,
    };
    ctx.publish(policy, event).await;
}

fn summarize(plan: &Plan<NetworkPolicy>) -> Vec<PendingChange> {
    let change = |action: &str, object: &NetworkPolicy| PendingChange {
        action: action.to_string(),
        kind: "NetworkPolicy".to_string(),
        namespace: object.namespace().unwrap_or_default(),
        name: object.name_any(),
    };
    let mut changes: Vec<PendingChange> = plan
        .create
        .iter()
        .map(|object| change("Create", object))
        .chain(
            plan.update
                .iter()
                .map(|(object, _)| change("Update", object)),
        )
        .chain(plan.delete.iter().map(|object| change("Delete", object)))
        .collect();
    changes.sort();
    changes
}

fn drift_descriptions(plan: &Plan<NetworkPolicy>) -> Vec<String> {
    let describe = |object: &NetworkPolicy, what: &str| {
        format!(
            "{}/{} ({what})",
            object.namespace().unwrap_or_default(),
            object.name_any()
        )
    };
    plan.create
        .iter()
        .map(|object| describe(object, "deleted"))
        .chain(
            plan.update
                .iter()
                .map(|(object, _)| describe(object, "edited")),
        )
        .chain(
            plan.delete
                .iter()
                .map(|object| describe(object, "unexpected")),
        )
        .collect()
}

fn describe_changes(changes: &[PendingChange]) -> String {
    let shown: Vec<String> = changes
        .iter()
        .take(10)
        .map(|change| {
            format!(
                "{} {} {}/{}",
                change.action, change.kind, change.namespace, change.name
            )
        })
        .collect();
    let more = changes.len().saturating_sub(shown.len());
    if more > 0 {
        format!("{} and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

/// Hash of the desired objects, stable across runs for equal input.
fn state_hash(desired: &[NetworkPolicy]) -> String {
    let text = serde_json::to_string(desired).unwrap_or_default();
    hex_digest(text.as_bytes())[..16].to_string()
}

/// Returns the current time, truncated to the second precision the API server stores.
fn now() -> Timestamp {
    let now = Timestamp::now();
    Timestamp::from_second(now.as_second()).unwrap_or(now)
}
