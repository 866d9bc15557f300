//! The operator across restarts of the local control plane: its watches reconnect on their
//! own, and drift is corrected again without a resync.
//!
//! These tests stop and start the API server and etcd that every other test uses. They live in
//! a test binary of their own because cargo runs test binaries one after another.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use common::{LONG_RESYNC, Operator, TEST_LABEL, client, create_namespace, unique_id, wait_for};
use medianest_operator::api::MediaNestSecurityPolicy;

/// Time for a restart plus the watch's reconnect backoff, which kube-runtime's default backoff
/// caps at 30 seconds.
const RECONNECT_DEADLINE: Duration = Duration::from_secs(90);

/// Runs `e2e/control-plane.sh` with `args`, panicking with its output when it fails.
fn control_plane(args: &[&str]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("e2e/control-plane.sh");
    let output = Command::new(&script)
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("failed to run {}: {error}", script.display()));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "e2e/control-plane.sh {} failed: {stdout}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Fails unless KUBECONFIG is the one of the control plane that `e2e/control-plane.sh`
/// manages with the current environment, so that the restarts hit the cluster under test.
fn require_managed_control_plane() {
    let kubeconfig = std::env::var("KUBECONFIG").unwrap_or_default();
    let env = control_plane(&["env"]);
    assert!(
        env.trim() == format!("export KUBECONFIG={kubeconfig}"),
        "KUBECONFIG={kubeconfig} is not the control plane that e2e/control-plane.sh manages \
         ({env}); these tests restart it, so run them with `make test`"
    );
}

/// Waits until the API server responds again after a restart.
async fn wait_for_api(client: &Client) {
    wait_for(
        "the API server to respond after the restart",
        RECONNECT_DEADLINE,
        || async { client.apiserver_version().await.ok() },
    )
    .await;
}

/// Deletes the default-deny policy and changes the DNS policy's port, then waits for both to
/// be restored by the watches.
async fn drift_and_wait(client: &Client, namespace: &str, id: &str, round: &str) {
    let api: Api<NetworkPolicy> = Api::namespaced(client.clone(), namespace);
    let deny = format!("mn-{id}-default-deny");
    let dns = format!("mn-{id}-dns");
    let old_uid = api.get(&deny).await.unwrap().uid();
    api.delete(&deny, &DeleteParams::default()).await.unwrap();
    let patch =
        json!({ "spec": { "egress": [{ "ports": [{ "port": 5353, "protocol": "UDP" }] }] } });
    api.patch(&dns, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();

    wait_for(
        &format!("{round}: default deny recreated"),
        RECONNECT_DEADLINE,
        || async {
            let policy = api.get_opt(&deny).await.ok()??;
            (policy.uid() != old_uid).then_some(())
        },
    )
    .await;
    wait_for(
        &format!("{round}: DNS port restored"),
        RECONNECT_DEADLINE,
        || async {
            let policy = api.get_opt(&dns).await.ok()??;
            let ports = serde_json::to_value(policy.spec?.egress?).ok()?;
            let text = ports.to_string();
            (text.contains("53") && !text.contains("5353")).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn drift_corrected_after_restarts() {
    require_managed_control_plane();
    let client = client().await;
    let id = unique_id("faults");
    let namespace = format!("{id}-app");
    create_namespace(&client, &namespace, &id, &[]).await;
    let policy: MediaNestSecurityPolicy = serde_json::from_value(json!({
        "apiVersion": "security.medianest.io/v1alpha1",
        "kind": "MediaNestSecurityPolicy",
        "metadata": { "name": id, "labels": { TEST_LABEL: id } },
        "spec": { "namespaceSelector": { "matchLabels": { TEST_LABEL: id } } },
    }))
    .unwrap();
    let policies: Api<MediaNestSecurityPolicy> = Api::all(client.clone());
    policies
        .create(&PostParams::default(), &policy)
        .await
        .unwrap();
    let operator = Operator::start(&id, LONG_RESYNC).await;
    let network: Api<NetworkPolicy> = Api::namespaced(client.clone(), &namespace);
    wait_for("the generated policies", RECONNECT_DEADLINE, || async {
        network
            .get_opt(&format!("mn-{id}-dns"))
            .await
            .ok()?
            .map(|_| ())
    })
    .await;

    control_plane(&["restart", "kube-apiserver"]);
    wait_for_api(&client).await;
    drift_and_wait(&client, &namespace, &id, "after an API server restart").await;

    // etcd keeps its data across the restart, so resource versions stay valid.
    control_plane(&["restart"]);
    wait_for_api(&client).await;
    drift_and_wait(
        &client,
        &namespace,
        &id,
        "after a restart of every component",
    )
    .await;

    operator.stop().await;
    let _ = policies.delete(&id, &DeleteParams::default()).await;
    common::delete_namespaces(&client, &[namespace]).await;
}
