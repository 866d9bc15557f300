//! The network step of the policy reconciler: plan, confirm and write the NetworkPolicies.

use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::{Resource, ResourceExt};

use crate::api::MediaNestSecurityPolicy;
use crate::api::policy::PendingChange;
use crate::policy::diff::{self, Plan};
use crate::policy::names::{MANAGER, POLICY_LABEL, hex_digest};
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
    /// Objects of other clients that have a generated name, left alone.
    pub foreign: Vec<String>,
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
    let mut foreign = Vec::new();
    let plan = diff::plan(desired, ctx.owned_network_policies(&name, uid));
    // Audit mode writes nothing, so the cache is good enough to report from.
    let plan = if enforce {
        confirm_plan(ctx, plan, &name, uid, &mut foreign).await?
    } else {
        plan
    };
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
        foreign,
        failure: None,
    };
    if enforce {
        if is_drift {
            outcome.drift = drift_descriptions(&plan);
        }
        outcome.failure = execute(ctx, &plan).await.err();
        let managed = ctx.network_policies.state().len() as i64;
        ctx.metrics.set_managed("NetworkPolicy", managed);
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
    policy: &str,
    uid: &str,
    foreign: &mut Vec<String>,
) -> Result<Plan<NetworkPolicy>, Error> {
    if plan.is_empty() {
        return Ok(plan);
    }
    let candidates: Vec<NetworkPolicy> = plan
        .create
        .into_iter()
        .chain(plan.update.into_iter().map(|(desired, _)| desired))
        .collect();
    let mut desired = Vec::new();
    let mut existing = Vec::new();
    for object in candidates {
        match read_network_policy(ctx, &object).await? {
            Some(live) if !is_ours(&live, policy, uid) => {
                // Another client's object has the generated name: leave it alone.
                foreign.push(format!(
                    "{}/{}",
                    live.namespace().unwrap_or_default(),
                    live.name_any()
                ));
            }
            Some(live) => {
                existing.push(live);
                desired.push(object);
            }
            None => desired.push(object),
        }
    }
    for object in &plan.delete {
        if let Some(live) = read_network_policy(ctx, object).await?
            && is_deletable(&live, policy, uid)
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

/// Returns whether `object` was written for `policy`: it has the policy's owner reference or
/// label, or the operator's field manager wrote it. Someone may have stripped some of these
/// to weaken it, and the operator restores such an object. One with none of them was created
/// by someone else, and the operator never touches it.
pub fn is_ours(object: &NetworkPolicy, policy: &str, uid: &str) -> bool {
    let owned = object
        .owner_references()
        .iter()
        .any(|owner| owner.uid == uid);
    let labelled = object
        .labels()
        .get(POLICY_LABEL)
        .is_some_and(|name| name == policy);
    let written = object
        .managed_fields()
        .iter()
        .any(|entry| entry.manager.as_deref() == Some(MANAGER));
    owned || labelled || written
}

/// Returns whether a stale `object` may be deleted: only with both the policy's owner
/// reference and label, so that no one else's object is ever deleted.
fn is_deletable(object: &NetworkPolicy, policy: &str, uid: &str) -> bool {
    let owned = object
        .owner_references()
        .iter()
        .any(|owner| owner.uid == uid);
    let labelled = object
        .labels()
        .get(POLICY_LABEL)
        .is_some_and(|name| name == policy);
    owned && labelled
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
    for desired in &plan.create {
        apply_network_policy(&ctx.client, desired, None).await?;
        tracing::info!(
            namespace = desired.namespace().unwrap_or_default(),
            name = desired.name_any(),
            "Created NetworkPolicy"
        );
    }
    for (desired, existing) in &plan.update {
        apply_network_policy(&ctx.client, desired, Some(existing)).await?;
        tracing::info!(
            namespace = desired.namespace().unwrap_or_default(),
            name = desired.name_any(),
            "Updated NetworkPolicy"
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
