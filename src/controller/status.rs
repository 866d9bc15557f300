//! Status writes with server-side apply, skipped when nothing changed.

use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::api::{MediaNestSecurityPolicy, MediaNestSecurityPolicyStatus};
use crate::policy::names::MANAGER;

use super::error::Error;

/// Writes `status` to the policy unless it equals the stored one.
///
/// Returns whether a write was made.
pub async fn write_policy_status(
    client: &Client,
    policy: &MediaNestSecurityPolicy,
    status: MediaNestSecurityPolicyStatus,
) -> Result<bool, Error> {
    if policy.status.as_ref() == Some(&status) {
        return Ok(false);
    }

    let name = policy.name_any();
    let api: Api<MediaNestSecurityPolicy> = Api::all(client.clone());
    let patch = json!({
        "apiVersion": "security.medianest.io/v1alpha1",
        "kind": "MediaNestSecurityPolicy",
        "status": status,
    });
    let params = PatchParams::apply(MANAGER).force();
    let result = api
        .patch_status(&name, &params, &Patch::Apply(&patch))
        .await;
    match result {
        Ok(_) => Ok(true),
        // The policy was deleted during the reconcile: there is no status left to write.
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
        Err(source) => Err(Error::PatchStatus {
            kind: "MediaNestSecurityPolicy",
            name,
            source,
        }),
    }
}
