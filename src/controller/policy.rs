//! The MediaNestSecurityPolicy reconciler: validate, then the network and workloads steps,
//! then status and Events.

use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};

use crate::api::MediaNestSecurityPolicy;
use crate::api::MediaNestSecurityPolicyStatus;
use crate::api::condition::{self, ConditionStatus, ConditionUpdate, reason};
use crate::api::policy::Mode;
use crate::policy::namespaces::{self, NamespaceInfo};
use crate::policy::validate;
use crate::policy::workloads::PolicyView;

use super::context::{Context, backoff_key};
use super::error::{Error, chain};
use super::report::{self, Outcome};
use super::status::write_policy_status;
use super::{mtls, network, workloads};

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "securitypolicy";

/// Brings the objects of one policy to the declared state and reports on it.
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
        // Owner references let the garbage collector remove the generated NetworkPolicies;
        // hardened fields and namespace labels stay as they are.
        return Ok(Action::await_change());
    }
    let name = policy.name_any();
    let uid = policy.uid().ok_or(Error::MissingField {
        kind: "MediaNestSecurityPolicy",
        field: "metadata.uid",
    })?;

    if let Err(errors) = validate::validate_policy(&name, &policy.spec) {
        report_invalid(policy, ctx, &errors).await?;
        // Retrying cannot fix the spec: wait for the next change of the policy.
        return Ok(Action::await_change());
    }

    let enforce = policy.spec.mode == Mode::Enforce;
    let namespace_infos = ctx.namespace_infos();
    let governed = namespaces::governed(
        &policy.spec,
        &namespace_infos,
        &ctx.settings.operator_namespace,
    );
    let governed_names: Vec<String> = governed
        .iter()
        .map(|namespace| namespace.name.clone())
        .collect();
    let network = network::reconcile(ctx, policy, &uid, &governed, enforce).await?;

    let all_policies = ctx.policies.state();
    // Audit policies write nothing, so their settings shape only their own report.
    let shaping: Vec<Arc<MediaNestSecurityPolicy>> = all_policies
        .iter()
        .filter(|other| {
            other.spec.mode == Mode::Enforce || other.metadata.name == policy.metadata.name
        })
        .cloned()
        .collect();
    let views = policy_views(&shaping, &namespace_infos, &ctx.settings.operator_namespace);
    let workloads =
        workloads::reconcile(ctx, policy, &views, &governed_names, enforce, now()).await;

    let certificates = mtls::reconcile(ctx, policy, &governed_names, enforce, now()).await;

    let outcome = Outcome {
        governed: governed_names,
        network,
        workloads,
        certificates,
    };
    report::report(policy, ctx, outcome, now()).await
}

/// Views of every cached policy with the namespaces each governs, for merging settings.
fn policy_views<'a>(
    policies: &'a [Arc<MediaNestSecurityPolicy>],
    namespace_infos: &[NamespaceInfo],
    operator_namespace: &str,
) -> Vec<PolicyView<'a>> {
    policies
        .iter()
        .filter(|policy| policy.meta().deletion_timestamp.is_none())
        .filter_map(|policy| {
            let name = policy.metadata.name.as_deref()?;
            let governed = namespaces::governed(&policy.spec, namespace_infos, operator_namespace)
                .into_iter()
                .map(|namespace| namespace.name.clone())
                .collect();
            Some(PolicyView {
                name,
                spec: &policy.spec,
                governed,
            })
        })
        .collect()
}

/// Records an invalid spec: Ready=False with the field errors, and one Warning Event per
/// distinct problem (not one per resync).
async fn report_invalid(
    policy: &MediaNestSecurityPolicy,
    ctx: &Context,
    errors: &validate::FieldErrors,
) -> Result<(), Error> {
    let message = &errors.to_string();
    let previous = policy.status.clone().unwrap_or_default();
    let already_reported =
        condition::find(&previous.conditions, condition::READY).is_some_and(|ready| {
            ready.reason == reason::INVALID_SPEC
                && ready.message == condition::truncate(message, 1024)
        });
    // Ready carries every problem, and each section's condition the problems of its fields.
    let mut updates = vec![ConditionUpdate::new(
        condition::READY,
        ConditionStatus::False,
        reason::INVALID_SPEC,
        message,
    )];
    for section in [
        condition::NETWORK_READY,
        condition::WORKLOADS_READY,
        condition::CERTIFICATES_READY,
    ] {
        let problems: Vec<String> = errors
            .0
            .iter()
            .filter(|error| section_of(&error.field) == section)
            .map(ToString::to_string)
            .collect();
        if !problems.is_empty() {
            updates.push(ConditionUpdate::new(
                section,
                ConditionStatus::False,
                reason::INVALID_SPEC,
                problems.join("; "),
            ));
        }
    }
    let status = MediaNestSecurityPolicyStatus {
        observed_generation: policy.meta().generation,
        conditions: condition::merge_conditions(
            &previous.conditions,
            &updates,
            policy.meta().generation,
            now(),
        ),
        ..previous.clone()
    };

    if already_reported {
        tracing::debug!(
            policy = policy.name_any(),
            problems = message,
            "Policy spec still invalid"
        );
    } else {
        tracing::warn!(
            policy = policy.name_any(),
            problems = message,
            "Invalid policy spec; keeping the generated objects"
        );
        let note = format!(
            "{message}. The objects generated before stay in place until the spec is fixed"
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

/// Returns the condition that reports problems of the spec field `field`.
fn section_of(field: &str) -> &'static str {
    if field.starts_with("spec.workloads") {
        condition::WORKLOADS_READY
    } else if field.starts_with("spec.mtls") {
        condition::CERTIFICATES_READY
    } else {
        condition::NETWORK_READY
    }
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

/// Publishes an Event about `policy`.
pub(super) async fn publish(
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

/// Returns the current time, truncated to the second precision the API server stores.
pub fn now() -> Timestamp {
    let now = Timestamp::now();
    Timestamp::from_second(now.as_second()).unwrap_or(now)
}
