//! The network step of the policy reconciler: plan, confirm and write the NetworkPolicies.

use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::{Resource, ResourceExt};

use crate::api::MediaNestSecurityPolicy;
use crate::api::policy::PendingChange;
use crate::policy::diff::{self, Plan};
use crate::policy::names::hex_digest;
use crate::policy::namespaces::NamespaceInfo;
use crate::policy::network::{self, PolicyRef};

use super::apply::{apply_network_policy, delete_network_policy};
use super::context::Context;
use super::error::Error;

/// What the network step found and did.
pub struct NetworkOutcome {
    pub desired_count: usize,
    pub desired_hash: String,
    /// The writes Enforce mode makes (Audit mode reports them).
    pub pending: Vec<PendingChange>,
    /// Objects restored because someone changed or deleted them.
    pub drift: Vec<String>,
    pub failure: Option<Error>,
}

/// Runs the network step of `policy` over its `governed` namespaces. Only reading fails the
/// step; a failed write is recorded in the outcome.
pub async fn reconcile(
    ctx: &Context,
    policy: &MediaNestSecurityPolicy,
    uid: &str,
    governed: &[&NamespaceInfo],
    enforce: bool,
) -> Result<NetworkOutcome, Error> {
    let name = policy.name_any();
    let reference = PolicyRef {
        name: &name,
        owner: policy.controller_owner_ref(&()),
    };
    let desired = network::compile(&reference, &policy.spec.network, governed);
    let desired_hash = state_hash(&desired);
    let desired_count = desired.len();
    let plan = diff::plan(desired, ctx.owned_network_policies(uid));
    let plan = confirm_plan(ctx, plan, uid).await?;
    tracing::debug!(
        policy = %name,
        create = plan.create.len(),
        update = plan.update.len(),
        delete = plan.delete.len(),
        unchanged = plan.unchanged,
        "Planned NetworkPolicies"
    );

    // The same desired state as at the last successful reconcile means that any difference
    // was made by someone else.
    let previous_hash = policy
        .status
        .as_ref()
        .and_then(|status| status.desired_state_hash.as_deref());
    let is_drift = previous_hash == Some(desired_hash.as_str());
    let mut outcome = NetworkOutcome {
        desired_count,
        desired_hash,
        pending: summarize(&plan),
        drift: Vec::new(),
        failure: None,
    };
    if enforce {
        if is_drift {
            outcome.drift = drift_descriptions(&plan);
        }
        outcome.failure = execute(ctx, &plan).await.err();
        ctx.metrics
            .set_managed("NetworkPolicy", desired_count as i64);
    }
    Ok(outcome)
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

/// Hash of the desired objects, stable across runs for equal input.
fn state_hash(desired: &[NetworkPolicy]) -> String {
    let text = serde_json::to_string(desired).unwrap_or_default();
    hex_digest(text.as_bytes())[..16].to_string()
}
