//! Integration tests of workload hardening against the local control plane.

mod common;

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use common::{
    LONG_RESYNC, Operator, TEST_LABEL, WATCH_DEADLINE, client, create_namespace, unique_id,
    wait_for,
};
use medianest_operator::api::MediaNestSecurityPolicy;
use medianest_operator::api::policy::WorkloadReport;

/// One test's namespace and policy.
struct Setup {
    id: String,
    namespace: String,
}

impl Setup {
    async fn create(client: &Client, prefix: &str) -> Setup {
        let id = unique_id(prefix);
        let namespace = format!("{id}-apps");
        create_namespace(client, &namespace, &id, &[]).await;
        Setup { id, namespace }
    }

    /// Applies a policy with no network section and the given workloads section.
    async fn apply_policy(&self, client: &Client, mode: &str, workloads: Value) {
        let policy = json!({
            "apiVersion": "security.medianest.io/v1alpha1",
            "kind": "MediaNestSecurityPolicy",
            "metadata": { "name": self.id, "labels": { TEST_LABEL: self.id } },
            "spec": {
                "mode": mode,
                "namespaceSelector": { "matchLabels": { TEST_LABEL: self.id } },
                "network": { "defaultDeny": false, "dns": { "enabled": false } },
                "workloads": workloads,
            },
        });
        let policy: MediaNestSecurityPolicy = serde_json::from_value(policy).unwrap();
        Api::<MediaNestSecurityPolicy>::all(client.clone())
            .patch(
                &self.id,
                &PatchParams::apply("medianest-tests").force(),
                &Patch::Apply(&policy),
            )
            .await
            .unwrap_or_else(|error| panic!("failed to apply policy {}: {error}", self.id));
    }

    async fn cleanup(&self, client: &Client) {
        let _ = Api::<MediaNestSecurityPolicy>::all(client.clone())
            .delete(&self.id, &DeleteParams::default())
            .await;
        common::delete_namespaces(client, std::slice::from_ref(&self.namespace)).await;
    }

    fn deployments(&self, client: &Client) -> Api<Deployment> {
        Api::namespaced(client.clone(), &self.namespace)
    }
}

/// A Deployment that sets no security context, so it runs as the image's user (root for
/// most images) with the runtime's default capabilities.
fn plain_deployment(name: &str) -> Deployment {
    let mut deployment = insecure_deployment(name);
    let spec = deployment.spec.template.spec.as_mut().unwrap();
    spec.security_context = None;
    spec.containers[0].security_context = None;
    deployment
}

/// A Deployment that breaks every hardening rule explicitly: root, privileged, added
/// capabilities. Its creator owns those fields, so hardening it conflicts unless forced.
fn insecure_deployment(name: &str) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": name, "labels": { "app": name } },
        "spec": {
            "replicas": 1,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": {
                    "securityContext": { "runAsUser": 0 },
                    "containers": [{
                        "name": "app",
                        "image": "registry.k8s.io/pause:3.10",
                        "securityContext": {
                            "privileged": true,
                            "capabilities": { "add": ["NET_ADMIN"] },
                        },
                    }],
                },
            },
        },
    }))
    .unwrap()
}

async fn create_deployment(client: &Client, namespace: &str, deployment: &Deployment) {
    Api::<Deployment>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), deployment)
        .await
        .unwrap_or_else(|error| panic!("failed to create Deployment: {error}"));
}

async fn policy(client: &Client, name: &str) -> MediaNestSecurityPolicy {
    Api::<MediaNestSecurityPolicy>::all(client.clone())
        .get(name)
        .await
        .unwrap()
}

fn report<'a>(
    policy: &'a MediaNestSecurityPolicy,
    kind: &str,
    name: &str,
) -> Option<&'a WorkloadReport> {
    policy
        .status
        .as_ref()?
        .workloads
        .iter()
        .find(|report| report.kind == kind && report.name == name)
}

fn container_context(deployment: &Deployment, container: &str) -> Value {
    let template = serde_json::to_value(&deployment.spec.template).unwrap();
    template["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|item| item["name"] == container)
        .map(|item| item["securityContext"].clone())
        .unwrap_or(Value::Null)
}

fn is_hardened(deployment: &Deployment) -> bool {
    let pod = deployment
        .spec
        .template
        .spec
        .as_ref()
        .unwrap()
        .security_context
        .clone()
        .unwrap_or_default();
    let context = container_context(deployment, "app");
    pod.run_as_non_root == Some(true)
        && pod
            .run_as_user
            .is_some_and(|uid| (10001..=10004).contains(&uid))
        && context["privileged"] == json!(false)
        && context["allowPrivilegeEscalation"] == json!(false)
        && context["capabilities"]["drop"] == json!(["ALL"])
}

async fn wait_hardened(api: &Api<Deployment>, name: &str) -> Deployment {
    wait_for(
        &format!("Deployment {name} to be hardened"),
        WATCH_DEADLINE,
        || async {
            let deployment = api.get(name).await.ok()?;
            is_hardened(&deployment).then_some(deployment)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn deployment_hardened_and_pods_admitted() {
    let client = client().await;
    let setup = Setup::create(&client, "harden").await;
    let operator = Operator::start(&setup.id, LONG_RESYNC).await;
    create_deployment(&client, &setup.namespace, &plain_deployment("web")).await;
    setup.apply_policy(&client, "Enforce", json!({})).await;

    let deployments = setup.deployments(&client);
    let hardened = wait_hardened(&deployments, "web").await;
    let context = container_context(&hardened, "app");
    assert!(
        context["capabilities"]
            .get("add")
            .is_none_or(|add| add == &json!([])),
        "{context}"
    );
    assert_eq!(context["readOnlyRootFilesystem"], json!(true));
    let limits = &serde_json::to_value(&hardened.spec.template).unwrap()["spec"]["containers"][0]["resources"]
        ["limits"];
    assert_eq!(limits, &json!({ "cpu": "2", "memory": "1Gi" }));
    assert_eq!(
        hardened.annotations()["security.medianest.io/hardened"],
        "true"
    );

    // The namespace enforces restricted, and the hardened Pods pass it: the ReplicaSet's Pod
    // is admitted (it stays Pending, as no kubelet runs).
    let namespace = wait_for("the Pod Security labels", WATCH_DEADLINE, || async {
        let namespace = Api::<Namespace>::all(client.clone())
            .get(&setup.namespace)
            .await
            .ok()?;
        namespace
            .labels()
            .contains_key("pod-security.kubernetes.io/enforce")
            .then_some(namespace)
    })
    .await;
    for mode in ["enforce", "audit", "warn"] {
        assert_eq!(
            namespace.labels()[&format!("pod-security.kubernetes.io/{mode}")],
            "restricted",
            "{mode}"
        );
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), &setup.namespace);
    let admitted = wait_for("a hardened Pod to be admitted", WATCH_DEADLINE, || async {
        let list = pods
            .list(&ListParams::default().labels("app=web"))
            .await
            .ok()?;
        list.items.into_iter().find(|pod| {
            pod.spec
                .as_ref()
                .and_then(|spec| spec.security_context.as_ref())
                .and_then(|context| context.run_as_non_root)
                == Some(true)
        })
    })
    .await;
    assert_eq!(admitted.status.unwrap().phase.as_deref(), Some("Pending"));

    let status = wait_for("status counts", WATCH_DEADLINE, || async {
        let status = policy(&client, &setup.id).await.status?;
        (status.hardened_workloads == 1).then_some(status)
    })
    .await;
    assert_eq!(status.non_compliant_workloads, 0);
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == "WorkloadsReady")
        .unwrap();
    assert_eq!(ready.status, "True", "{}", ready.message);

    operator.stop().await;
    setup.cleanup(&client).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn loosened_deployment_reverted() {
    let client = client().await;
    let setup = Setup::create(&client, "loosen").await;
    let operator = Operator::start(&setup.id, LONG_RESYNC).await;
    create_deployment(&client, &setup.namespace, &plain_deployment("web")).await;
    setup.apply_policy(&client, "Enforce", json!({})).await;
    let deployments = setup.deployments(&client);
    let hardened = wait_hardened(&deployments, "web").await;

    // Someone loosens it with kubectl: root, privileged, no drop list, an added capability.
    let patch = json!({"spec": {"template": {"spec": {
        "securityContext": { "runAsUser": 0 },
        "containers": [{ "name": "app", "securityContext": {
            "privileged": true, "allowPrivilegeEscalation": true,
            "capabilities": { "drop": null, "add": ["NET_RAW"] },
        } }],
    }}}});
    // The patch's own response shows the loosened object: the operator may revert it before
    // any later read.
    let loosened = deployments
        .patch("web", &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .expect("loosen");
    assert!(
        !is_hardened(&loosened),
        "the test's own edit must loosen the Deployment"
    );

    let restored = wait_hardened(&deployments, "web").await;
    assert_eq!(restored.uid(), hardened.uid());
    let status = wait_for("drift to be counted", WATCH_DEADLINE, || async {
        let status = policy(&client, &setup.id).await.status?;
        (status.drift_corrections >= 1).then_some(status)
    })
    .await;
    assert_eq!(status.drift_corrections, 1);
    assert!(
        container_context(&restored, "app")["capabilities"]["add"].is_null(),
        "the API server omits the emptied list"
    );

    // Once restored, the workload is converged: nothing more is written.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let writes = operator.requests.mutating();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        operator.requests.mutating(),
        writes,
        "writes after the correction"
    );
    let status = policy(&client, &setup.id).await.status.unwrap();
    assert_eq!(status.drift_corrections, 1);

    operator.stop().await;
    setup.cleanup(&client).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn steady_state_writes_nothing() {
    let client = client().await;
    let setup = Setup::create(&client, "steady").await;
    let operator = Operator::start(&setup.id, Duration::from_secs(1)).await;
    create_deployment(&client, &setup.namespace, &plain_deployment("web")).await;
    setup
        .apply_policy(
            &client,
            "Enforce",
            json!({ "writablePaths": [{ "path": "/tmp" }] }),
        )
        .await;
    let deployments = setup.deployments(&client);
    wait_hardened(&deployments, "web").await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    let before = deployments.get("web").await.unwrap();
    let writes = operator.requests.mutating();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let after = deployments.get("web").await.unwrap();
    assert_eq!(
        after.metadata.generation, before.metadata.generation,
        "no rollout by a resync"
    );
    assert_eq!(
        operator.requests.mutating(),
        writes,
        "resyncs write nothing"
    );

    operator.stop().await;
    setup.cleanup(&client).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn exempted_container_keeps_capability() {
    let client = client().await;
    let setup = Setup::create(&client, "exempt").await;
    let operator = Operator::start(&setup.id, LONG_RESYNC).await;
    let proxy = plain_deployment("proxy");
    create_deployment(&client, &setup.namespace, &proxy).await;
    setup
        .apply_policy(
            &client,
            "Enforce",
            json!({ "exemptions": [{
                "kind": "Deployment", "namespace": setup.namespace, "name": "proxy", "container": "app",
                "addCapabilities": ["NET_BIND_SERVICE"], "reason": "binds port 80",
            }]}),
        )
        .await;
    let deployments = setup.deployments(&client);
    let hardened = wait_hardened(&deployments, "proxy").await;
    let context = container_context(&hardened, "app");
    assert_eq!(context["capabilities"]["add"], json!(["NET_BIND_SERVICE"]));

    let status = wait_for("the exemption in status", WATCH_DEADLINE, || async {
        let policy = policy(&client, &setup.id).await;
        report(&policy, "Deployment", "proxy").cloned()
    })
    .await;
    assert_eq!(status.state, "Exempted");
    assert!(
        status
            .message
            .as_deref()
            .unwrap_or("")
            .contains("binds port 80")
    );
    // NET_BIND_SERVICE is allowed by restricted: enforce stays restricted.
    let namespace = Api::<Namespace>::all(client.clone())
        .get(&setup.namespace)
        .await
        .unwrap();
    assert_eq!(
        namespace.labels()["pod-security.kubernetes.io/enforce"],
        "restricted"
    );

    operator.stop().await;
    setup.cleanup(&client).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn root_exemption_lowers_enforce_only() {
    let client = client().await;
    let setup = Setup::create(&client, "lower").await;
    let operator = Operator::start(&setup.id, LONG_RESYNC).await;
    create_deployment(&client, &setup.namespace, &plain_deployment("legacy")).await;
    setup
        .apply_policy(
            &client,
            "Enforce",
            json!({ "exemptions": [{
                "kind": "Deployment", "namespace": setup.namespace, "name": "legacy",
                "runAsRoot": true, "reason": "vendor image runs as root",
            }]}),
        )
        .await;
    let namespace = wait_for("the lowered enforce label", WATCH_DEADLINE, || async {
        let namespace = Api::<Namespace>::all(client.clone())
            .get(&setup.namespace)
            .await
            .ok()?;
        namespace
            .labels()
            .contains_key("pod-security.kubernetes.io/enforce")
            .then_some(namespace)
    })
    .await;
    assert_eq!(
        namespace.labels()["pod-security.kubernetes.io/enforce"],
        "baseline"
    );
    assert_eq!(
        namespace.labels()["pod-security.kubernetes.io/audit"],
        "restricted"
    );
    assert_eq!(
        namespace.labels()["pod-security.kubernetes.io/warn"],
        "restricted"
    );
    let status = wait_for("the exception in status", WATCH_DEADLINE, || async {
        let status = policy(&client, &setup.id).await.status?;
        (!status.pod_security_exceptions.is_empty()).then_some(status)
    })
    .await;
    assert_eq!(status.pod_security_exceptions[0].enforce, "baseline");
    assert!(status.pod_security_exceptions[0].reason.contains("legacy"));

    operator.stop().await;
    setup.cleanup(&client).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_mode_reports_only() {
    let client = client().await;
    let setup = Setup::create(&client, "waudit").await;
    let operator = Operator::start(&setup.id, LONG_RESYNC).await;
    create_deployment(&client, &setup.namespace, &insecure_deployment("web")).await;
    let deployments = setup.deployments(&client);
    let before = deployments.get("web").await.unwrap();
    setup.apply_policy(&client, "Audit", json!({})).await;

    let policy_now = wait_for("the audit report", WATCH_DEADLINE, || async {
        let policy = policy(&client, &setup.id).await;
        report(&policy, "Deployment", "web")?;
        Some(policy)
    })
    .await;
    let reports: Vec<&WorkloadReport> = policy_now
        .status
        .as_ref()
        .unwrap()
        .workloads
        .iter()
        .filter(|report| report.name == "web")
        .collect();
    let non_compliant = reports
        .iter()
        .find(|report| report.state == "NonCompliant")
        .expect("NonCompliant entry");
    assert!(
        non_compliant
            .changes
            .iter()
            .any(|change| change.contains("securityContext.privileged: true -> false")),
        "{:?}",
        non_compliant.changes
    );
    let rejected = reports
        .iter()
        .find(|report| report.state == "Rejected")
        .expect("Rejected entry");
    assert!(
        rejected.message.as_deref().unwrap().contains("restricted"),
        "{rejected:?}"
    );
    assert_eq!(
        policy_now.status.as_ref().unwrap().non_compliant_workloads,
        1
    );

    tokio::time::sleep(Duration::from_secs(1)).await;
    // The Deployment controller updates the status, so compare the generation: it counts
    // changes of the spec only.
    let after = deployments.get("web").await.unwrap();
    assert_eq!(
        after.metadata.generation, before.metadata.generation,
        "Audit writes no workload"
    );
    assert!(
        !after
            .annotations()
            .contains_key("security.medianest.io/hardened")
    );
    let namespace = Api::<Namespace>::all(client.clone())
        .get(&setup.namespace)
        .await
        .unwrap();
    assert!(
        !namespace
            .labels()
            .contains_key("pod-security.kubernetes.io/enforce"),
        "Audit writes no label"
    );
    assert_eq!(operator.requests.mutating_for("deployments"), 0);
    assert_eq!(operator.requests.mutating_for("namespaces"), 0);

    // Enforce applies it (forcing, since the test created the insecure fields); back to
    // Audit leaves it hardened.
    setup
        .apply_policy(&client, "Enforce", json!({ "forceConflicts": true }))
        .await;
    wait_hardened(&deployments, "web").await;
    setup
        .apply_policy(&client, "Audit", json!({ "forceConflicts": true }))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        is_hardened(&deployments.get("web").await.unwrap()),
        "switching to Audit keeps the hardening"
    );

    operator.stop().await;
    setup.cleanup(&client).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn job_and_bare_pod_reported() {
    let client = client().await;
    let setup = Setup::create(&client, "jobs").await;
    let operator = Operator::start(&setup.id, LONG_RESYNC).await;
    let job: Job = serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": { "name": "migrate" },
        "spec": { "template": { "spec": {
            "restartPolicy": "Never",
            "containers": [{ "name": "migrate", "image": "registry.k8s.io/pause:3.10" }],
        }}},
    }))
    .unwrap();
    Api::<Job>::namespaced(client.clone(), &setup.namespace)
        .create(&PostParams::default(), &job)
        .await
        .unwrap();
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": "debug" },
        "spec": { "containers": [{ "name": "shell", "image": "registry.k8s.io/pause:3.10" }] },
    }))
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &setup.namespace);
    let created = pods.create(&PostParams::default(), &pod).await.unwrap();
    setup.apply_policy(&client, "Enforce", json!({})).await;

    let policy_now = wait_for("Job and Pod violations", WATCH_DEADLINE, || async {
        let policy = policy(&client, &setup.id).await;
        report(&policy, "Job", "migrate")?;
        report(&policy, "Pod", "debug")?;
        Some(policy)
    })
    .await;
    assert_eq!(
        report(&policy_now, "Job", "migrate").unwrap().state,
        "Violation"
    );
    assert_eq!(
        report(&policy_now, "Pod", "debug").unwrap().state,
        "Violation"
    );
    let condition = policy_now
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == "WorkloadsReady")
        .unwrap();
    assert_eq!(condition.reason, "Violations");
    assert_eq!(
        pods.get("debug").await.unwrap().resource_version(),
        created.resource_version(),
        "the Pod is not edited"
    );

    let events: Api<k8s_openapi::api::events::v1::Event> = Api::all(client.clone());
    let warning = wait_for("a Warning Event", WATCH_DEADLINE, || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items.into_iter().find(|event| {
            event.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(setup.id.as_str())
                && event.reason.as_deref() == Some("Violation")
        })
    })
    .await;
    assert_eq!(warning.type_.as_deref(), Some("Warning"));

    operator.stop().await;
    setup.cleanup(&client).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn conflicting_manager_reported() {
    let client = client().await;
    let setup = Setup::create(&client, "conflict").await;
    let operator = Operator::start(&setup.id, LONG_RESYNC).await;
    // A GitOps tool applies a manifest that runs as root, with server-side apply.
    let manifest = insecure_deployment("web");
    setup
        .deployments(&client)
        .patch(
            "web",
            &PatchParams::apply("gitops-tool"),
            &Patch::Apply(&manifest),
        )
        .await
        .unwrap();
    setup.apply_policy(&client, "Enforce", json!({})).await;

    let conflict = wait_for("the conflict in status", WATCH_DEADLINE, || async {
        let policy = policy(&client, &setup.id).await;
        report(&policy, "Deployment", "web")
            .filter(|report| report.state == "Conflict")
            .cloned()
    })
    .await;
    let message = conflict.message.unwrap_or_default();
    assert!(message.contains("gitops-tool"), "{message}");
    assert!(
        message.contains("privileged") || message.contains("runAsUser"),
        "{message}"
    );
    let deployment = setup.deployments(&client).get("web").await.unwrap();
    assert!(!is_hardened(&deployment), "not forced by default");

    // With forceConflicts the operator takes the fields over.
    setup
        .apply_policy(&client, "Enforce", json!({ "forceConflicts": true }))
        .await;
    wait_hardened(&setup.deployments(&client), "web").await;

    operator.stop().await;
    setup.cleanup(&client).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rollouts_paced_one_at_a_time() {
    let client = client().await;
    let setup = Setup::create(&client, "pace").await;
    let operator = Operator::start(&setup.id, LONG_RESYNC).await;
    for name in ["one", "two", "three"] {
        create_deployment(&client, &setup.namespace, &plain_deployment(name)).await;
    }
    // No kubelet runs, so no rollout finishes: each slot frees up by its timeout.
    setup
        .apply_policy(
            &client,
            "Enforce",
            json!({ "rollout": { "maxConcurrent": 1, "timeout": "3s" } }),
        )
        .await;

    let deployments = setup.deployments(&client);
    let first = wait_for("the first hardening", WATCH_DEADLINE, || async {
        let list = deployments.list(&ListParams::default()).await.ok()?;
        let hardened: Vec<String> = list
            .items
            .iter()
            .filter(|d| is_hardened(d))
            .map(|d| d.name_any())
            .collect();
        (!hardened.is_empty()).then_some(hardened)
    })
    .await;
    assert_eq!(first.len(), 1, "one workload at a time: {first:?}");
    // The status follows the write of the first hardening.
    wait_for("the others reported as Pending", WATCH_DEADLINE, || async {
        let status = policy(&client, &setup.id).await.status?;
        status
            .workloads
            .iter()
            .any(|report| report.state == "Pending")
            .then_some(())
    })
    .await;

    wait_for(
        "every workload hardened after the timeouts",
        Duration::from_secs(60),
        || async {
            let list = deployments.list(&ListParams::default()).await.ok()?;
            list.items.iter().all(is_hardened).then_some(())
        },
    )
    .await;

    operator.stop().await;
    setup.cleanup(&client).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_exemption_hardened() {
    let client = client().await;
    let setup = Setup::create(&client, "expiry").await;
    let operator = Operator::start(&setup.id, LONG_RESYNC).await;
    let proxy = plain_deployment("proxy");
    create_deployment(&client, &setup.namespace, &proxy).await;
    let expires =
        k8s_openapi::jiff::Timestamp::now() + k8s_openapi::jiff::SignedDuration::from_secs(6);
    let expires = k8s_openapi::jiff::Timestamp::from_second(expires.as_second()).unwrap();
    setup
        .apply_policy(
            &client,
            "Enforce",
            json!({ "exemptions": [{
                "kind": "Deployment", "namespace": setup.namespace, "name": "proxy",
                "addCapabilities": ["NET_BIND_SERVICE"], "reason": "until the port moves",
                "expires": expires.to_string(),
            }]}),
        )
        .await;
    let deployments = setup.deployments(&client);
    let exempted = wait_hardened(&deployments, "proxy").await;
    assert_eq!(
        container_context(&exempted, "app")["capabilities"]["add"],
        json!(["NET_BIND_SERVICE"])
    );

    let hardened = wait_for(
        "the capability removed after the expiry",
        WATCH_DEADLINE,
        || async {
            let deployment = deployments.get("proxy").await.ok()?;
            let add = container_context(&deployment, "app")["capabilities"]["add"].clone();
            (add.is_null() || add == json!([])).then_some(deployment)
        },
    )
    .await;
    assert!(
        k8s_openapi::jiff::Timestamp::now() >= expires,
        "not before the expiry"
    );
    assert!(is_hardened(&hardened));
    let policy_now = wait_for(
        "the status without the exemption",
        WATCH_DEADLINE,
        || async {
            let policy = policy(&client, &setup.id).await;
            (policy.status.as_ref()?.exempted_workloads == 0).then_some(policy)
        },
    )
    .await;
    assert_eq!(policy_now.status.unwrap().hardened_workloads, 1);

    operator.stop().await;
    setup.cleanup(&client).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn replica_sets_created_for_hardened_template() {
    // The Pods of the hardened template pass Pod Security Admission: the ReplicaSet of the
    // new template reports no FailedCreate.
    let client = client().await;
    let setup = Setup::create(&client, "rs").await;
    let operator = Operator::start(&setup.id, LONG_RESYNC).await;
    create_deployment(&client, &setup.namespace, &plain_deployment("web")).await;
    setup.apply_policy(&client, "Enforce", json!({})).await;
    wait_hardened(&setup.deployments(&client), "web").await;

    let replica_sets: Api<ReplicaSet> = Api::namespaced(client.clone(), &setup.namespace);
    let hardened_set = wait_for(
        "the ReplicaSet of the hardened template",
        WATCH_DEADLINE,
        || async {
            let list = replica_sets.list(&ListParams::default()).await.ok()?;
            list.items.into_iter().find(|set| {
                set.spec
                    .template
                    .as_ref()
                    .and_then(|template| template.spec.as_ref())
                    .and_then(|spec| spec.security_context.as_ref())
                    .and_then(|context| context.run_as_non_root)
                    == Some(true)
                    && set
                        .status
                        .as_ref()
                        .is_some_and(|status| status.replicas >= 1)
            })
        },
    )
    .await;
    let failures: Vec<String> = hardened_set
        .status
        .and_then(|status| status.conditions)
        .unwrap_or_default()
        .into_iter()
        .filter(|condition| condition.type_.as_deref() == Some("ReplicaFailure"))
        .map(|condition| condition.message.unwrap_or_default())
        .collect();
    assert_eq!(failures, Vec::<String>::new());

    operator.stop().await;
    setup.cleanup(&client).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn examples_hardened_and_admitted() {
    let client = client().await;
    let id = unique_id("exw");
    let rename = |namespace: &str| namespace.replacen("medianest-", &format!("{id}-"), 1);
    let mut namespaces = Vec::new();
    for tier in ["dmz", "app", "data", "monitoring"] {
        let name = format!("{id}-{tier}");
        create_namespace(&client, &name, &id, &[("medianest.io/tier", tier)]).await;
        namespaces.push(name);
    }
    let operator = Operator::start(&id, LONG_RESYNC).await;

    let mut workloads = Vec::new();
    for document in
        serde_yaml::Deserializer::from_str(include_str!("../manifests/examples/workloads.yaml"))
    {
        let mut value: Value = serde::Deserialize::deserialize(document).unwrap();
        let namespace = rename(value["metadata"]["namespace"].as_str().unwrap());
        value["metadata"]["namespace"] = json!(namespace);
        let kind = value["kind"].as_str().unwrap().to_string();
        let name = value["metadata"]["name"].as_str().unwrap().to_string();
        let resource = match kind.as_str() {
            "Deployment" => kube::discovery::ApiResource::erase::<Deployment>(&()),
            "StatefulSet" => {
                kube::discovery::ApiResource::erase::<k8s_openapi::api::apps::v1::StatefulSet>(&())
            }
            "Service" => {
                kube::discovery::ApiResource::erase::<k8s_openapi::api::core::v1::Service>(&())
            }
            other => panic!("the example has a {other}, which this test does not create"),
        };
        let api: Api<kube::api::DynamicObject> =
            Api::namespaced_with(client.clone(), &namespace, &resource);
        api.create(
            &PostParams::default(),
            &serde_json::from_value(value).unwrap(),
        )
        .await
        .unwrap();
        if kind != "Service" {
            workloads.push((namespace, kind, name));
        }
    }

    let mut policy: Value =
        serde_yaml::from_str(include_str!("../manifests/examples/policy.yaml")).unwrap();
    policy["metadata"]["name"] = json!(id);
    policy["metadata"]["labels"] = json!({ TEST_LABEL: id });
    policy["spec"]["namespaceSelector"] = json!({ "matchLabels": { TEST_LABEL: id } });
    policy["spec"]["workloads"]["exemptions"][0]["namespace"] = json!(rename("medianest-dmz"));
    // The example paces rollouts with a 5 minute timeout; no kubelet runs here to finish them.
    policy["spec"]["workloads"]["rollout"] = json!({ "maxConcurrent": 5, "timeout": "1s" });
    let policy: MediaNestSecurityPolicy = serde_json::from_value(policy).unwrap();
    Api::<MediaNestSecurityPolicy>::all(client.clone())
        .patch(
            &id,
            &PatchParams::apply("medianest-tests").force(),
            &Patch::Apply(&policy),
        )
        .await
        .unwrap();

    let status = wait_for(
        "every example workload hardened",
        WATCH_DEADLINE,
        || async {
            let status = policy_status_of(&client, &id).await?;
            (status.hardened_workloads + status.exempted_workloads == 5).then_some(status)
        },
    )
    .await;
    assert_eq!(status.exempted_workloads, 1, "the reverse proxy");
    assert_eq!(status.non_compliant_workloads, 0, "{:?}", status.workloads);

    // Every hardened template yields Pods that restricted admits: a dry-run create of a Pod
    // from each template goes through the real Pod Security Admission. (A StatefulSet does
    // not replace its Pending Pod without a kubelet, so its Pods cannot show it here.)
    for (namespace, kind, name) in &workloads {
        let template = match kind.as_str() {
            "Deployment" => {
                Api::<Deployment>::namespaced(client.clone(), namespace)
                    .get(name)
                    .await
                    .unwrap()
                    .spec
                    .template
            }
            _ => {
                // The StatefulSet controller adds a volume for each claim template.
                let set = Api::<k8s_openapi::api::apps::v1::StatefulSet>::namespaced(
                    client.clone(),
                    namespace,
                )
                .get(name)
                .await
                .unwrap();
                let mut template = set.spec.template;
                let pod_spec = template.spec.as_mut().unwrap();
                for claim in set.spec.volume_claim_templates.unwrap_or_default() {
                    let claim_name = claim.metadata.name.unwrap();
                    pod_spec.volumes.get_or_insert_with(Vec::new).push(
                        serde_json::from_value(json!({
                            "name": claim_name,
                            "persistentVolumeClaim": { "claimName": format!("{claim_name}-{name}-0") },
                        }))
                        .unwrap(),
                    );
                }
                template
            }
        };
        let pod = Pod {
            metadata: kube::api::ObjectMeta {
                generate_name: Some(format!("{name}-check-")),
                labels: template.metadata.and_then(|meta| meta.labels),
                ..Default::default()
            },
            spec: template.spec,
            ..Default::default()
        };
        let params = PostParams {
            dry_run: true,
            ..PostParams::default()
        };
        let result = Api::<Pod>::namespaced(client.clone(), namespace)
            .create(&params, &pod)
            .await;
        assert!(result.is_ok(), "{kind} {namespace}/{name}: {result:?}");
    }
    let enforce = Api::<Namespace>::all(client.clone())
        .get(&namespaces[0])
        .await
        .unwrap();
    assert_eq!(
        enforce.labels()["pod-security.kubernetes.io/enforce"],
        "restricted"
    );

    operator.stop().await;
    let _ = Api::<MediaNestSecurityPolicy>::all(client.clone())
        .delete(&id, &DeleteParams::default())
        .await;
    common::delete_namespaces(&client, &namespaces).await;
}

async fn policy_status_of(
    client: &Client,
    name: &str,
) -> Option<medianest_operator::api::MediaNestSecurityPolicyStatus> {
    Api::<MediaNestSecurityPolicy>::all(client.clone())
        .get(name)
        .await
        .ok()?
        .status
}
