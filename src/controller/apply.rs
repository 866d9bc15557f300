//! Writes of generated objects: server-side apply, foreign-field removal, deletion.

use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::{Client, ResourceExt};

use crate::policy::diff::{Generated, canonical, merge_patch_with_removals};
use crate::policy::names::MANAGER;

use super::error::Error;

/// Applies `desired` with server-side apply under the operator's field manager, forcing
/// ownership of every field it sets, so that an edit by another client is reverted in place.
///
/// A field that another client added and the operator never sets survives an apply, because
/// the operator does not own it. When the applied object still differs from `desired`, one
/// merge patch guarded by the resourceVersion removes those fields.
///
/// When `existing` carries owner references other than the desired ones (someone pointed it
/// at another owner), they are replaced first: an object may have only one controller
/// reference, so server-side apply could not add the policy's own.
pub async fn apply_network_policy(
    client: &Client,
    desired: &NetworkPolicy,
    existing: Option<&NetworkPolicy>,
) -> Result<NetworkPolicy, Error> {
    let namespace = desired.namespace().unwrap_or_default();
    let name = desired.name_any();
    let api: Api<NetworkPolicy> = Api::namespaced(client.clone(), &namespace);
    let wrap = |source| Error::ApplyNetworkPolicy {
        namespace: namespace.clone(),
        name: name.clone(),
        source,
    };

    if let Some(existing) = existing
        && existing.metadata.owner_references != desired.metadata.owner_references
    {
        let patch = serde_json::json!({
            "metadata": {
                "resourceVersion": existing.resource_version(),
                "ownerReferences": desired.metadata.owner_references,
            },
        });
        let params = PatchParams {
            field_manager: Some(MANAGER.to_string()),
            ..PatchParams::default()
        };
        api.patch(&name, &params, &Patch::Merge(&patch))
            .await
            .map_err(wrap)?;
    }

    let params = PatchParams::apply(MANAGER).force();
    let applied = api
        .patch(&name, &params, &Patch::Apply(desired))
        .await
        .map_err(wrap)?;
    if canonical(applied.body()) == canonical(desired.body()) {
        return Ok(applied);
    }

    let spec_patch = merge_patch_with_removals(&desired.body(), &applied.body());
    let patch = serde_json::json!({
        "metadata": { "resourceVersion": applied.resource_version() },
        "spec": spec_patch,
    });
    let params = PatchParams {
        field_manager: Some(MANAGER.to_string()),
        ..PatchParams::default()
    };
    api.patch(&name, &params, &Patch::Merge(&patch))
        .await
        .map_err(wrap)
}

/// Deletes `existing` if it is still the same object (same uid).
pub async fn delete_network_policy(client: &Client, existing: &NetworkPolicy) -> Result<(), Error> {
    let namespace = existing.namespace().unwrap_or_default();
    let name = existing.name_any();
    let api: Api<NetworkPolicy> = Api::namespaced(client.clone(), &namespace);
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: existing.uid(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(&name, &params).await {
        Ok(_) => Ok(()),
        // Already gone, or replaced by an object that is not ours: nothing to delete.
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(()),
        Err(source) => Err(Error::DeleteNetworkPolicy {
            namespace,
            name,
            source,
        }),
    }
}
