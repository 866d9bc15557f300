//! Benchmark of the policy controller against the local control plane. It prints figures and
//! asserts nothing about them: convergence time for a policy over many namespaces,
//! drift-correction latency for edits and deletions, API requests per correction, and the
//! process's resident memory.
//!
//! Run with `make bench` (or `cargo bench --bench controller` with KUBECONFIG exported).

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::json;

use common::{LONG_RESYNC, Operator, TEST_LABEL, create_namespace, unique_id, wait_for};
use medianest_operator::api::MediaNestSecurityPolicy;
use medianest_operator::api::policy::match_labels;

const NAMESPACES: usize = 50;
const SAMPLES: usize = 30;

fn main() {
    // `cargo test --all-targets` runs bench binaries without --bench; only `cargo bench` runs
    // this one.
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

async fn run() {
    let client = common::client().await;
    let id = unique_id("bench");
    println!("policy controller benchmark, {NAMESPACES} namespaces, {SAMPLES} samples per figure");
    let rss_start = resident_kib();

    let tiers = ["dmz", "app", "data", "monitoring"];
    let mut namespaces = Vec::new();
    for index in 0..NAMESPACES {
        let name = format!("{id}-{index}");
        let tier = tiers[index % tiers.len()];
        create_namespace(&client, &name, &id, &[("medianest.io/tier", tier)]).await;
        namespaces.push(name);
    }

    let operator = Operator::start(&id, LONG_RESYNC).await;
    let mut policy: MediaNestSecurityPolicy =
        serde_yaml::from_str(include_str!("../manifests/examples/policy.yaml")).unwrap();
    policy.metadata.name = Some(id.clone());
    policy.metadata.labels = Some(BTreeMap::from([(TEST_LABEL.to_string(), id.clone())]));
    policy.spec.namespace_selector = match_labels([(TEST_LABEL, id.as_str())]);

    // Every namespace gets a default deny, DNS, monitoring and external HTTPS egress, plus one
    // policy for its tier: a zone, or the monitoring egress.
    let expected = 5 * NAMESPACES;
    let started = Instant::now();
    let writes_before = operator.requests.mutating();
    Api::<MediaNestSecurityPolicy>::all(client.clone())
        .patch(
            &id,
            &PatchParams::apply("medianest-bench").force(),
            &Patch::Apply(&policy),
        )
        .await
        .unwrap();
    wait_for("convergence", Duration::from_secs(300), || async {
        let count = generated(&client, &id).await.len();
        (count >= expected).then_some(())
    })
    .await;
    let convergence = started.elapsed();
    println!(
        "convergence: {expected} NetworkPolicies in {NAMESPACES} namespaces in {:.0} ms ({} mutating requests)",
        convergence.as_secs_f64() * 1000.0,
        operator.requests.mutating() - writes_before
    );
    tokio::time::sleep(Duration::from_secs(2)).await;

    let namespace = &namespaces[2];
    let name = format!("mn-{id}-zone-database");
    let api: Api<NetworkPolicy> = Api::namespaced(client.clone(), namespace);

    let mut edits = Vec::new();
    let writes_before = operator.requests.mutating();
    for sample in 0..SAMPLES {
        let port = 20000 + sample as i32;
        let patch = json!({"spec": {"ingress": [{"ports": [{"port": port, "protocol": "TCP"}]}]}});
        edits.push(
            time_until_restored(&api, &name, || async {
                api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .unwrap();
            })
            .await,
        );
    }
    let edit_writes = operator.requests.mutating() - writes_before;
    print_figures("drift correction after an edit", &mut edits);

    let mut deletions = Vec::new();
    let writes_before = operator.requests.mutating();
    for _ in 0..SAMPLES {
        deletions.push(
            time_until_restored(&api, &name, || async {
                api.delete(&name, &DeleteParams::default()).await.unwrap();
            })
            .await,
        );
    }
    let delete_writes = operator.requests.mutating() - writes_before;
    print_figures("drift correction after a deletion", &mut deletions);
    println!(
        "mutating requests per correction: {:.1} after an edit, {:.1} after a deletion (apply, status, Event)",
        edit_writes as f64 / SAMPLES as f64,
        delete_writes as f64 / SAMPLES as f64
    );

    workload_drift(&client, &namespaces[1], &operator).await;

    tokio::time::sleep(Duration::from_secs(2)).await;
    let writes_before = operator.requests.mutating();
    let reads_before = operator.requests.reads();
    tokio::time::sleep(Duration::from_secs(5)).await;
    println!(
        "idle for 5 s: {} mutating and {} read requests",
        operator.requests.mutating() - writes_before,
        operator.requests.reads() - reads_before
    );

    let rss_end = resident_kib();
    println!(
        "resident memory of the benchmark process (operator plus benchmark client): {} KiB at start, {} KiB after the run",
        rss_start, rss_end
    );

    operator.stop().await;
    let _ = Api::<MediaNestSecurityPolicy>::all(client.clone())
        .delete(&id, &DeleteParams::default())
        .await;
    common::delete_namespaces(&client, &namespaces).await;
}

/// Measures how fast a loosened Deployment is hardened again.
async fn workload_drift(client: &Client, namespace: &str, operator: &Operator) {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let deployment: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": "bench", "labels": { "app": "bench" } },
        "spec": {
            "replicas": 0,
            "selector": { "matchLabels": { "app": "bench" } },
            "template": {
                "metadata": { "labels": { "app": "bench" } },
                "spec": { "containers": [{ "name": "app", "image": "registry.k8s.io/pause:3.10" }] },
            },
        },
    }))
    .unwrap();
    deployments
        .create(&Default::default(), &deployment)
        .await
        .unwrap();
    let hardened_user = |deployment: &Deployment| {
        deployment
            .spec
            .template
            .spec
            .as_ref()
            .and_then(|spec| spec.security_context.as_ref())
            .and_then(|context| context.run_as_user)
    };
    wait_for(
        "the bench Deployment hardened",
        Duration::from_secs(60),
        || async {
            let current = deployments.get("bench").await.ok()?;
            hardened_user(&current).filter(|uid| *uid != 0).map(|_| ())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let mut samples = Vec::new();
    let writes_before = operator.requests.mutating();
    for _ in 0..SAMPLES {
        let config = watcher::Config::default().fields("metadata.name=bench");
        let mut stream = watcher(deployments.clone(), config)
            .applied_objects()
            .boxed();
        let _ = stream.try_next().await;
        let patch = json!({ "spec": { "template": { "spec": { "securityContext": { "runAsUser": 0 } } } } });
        let started = Instant::now();
        deployments
            .patch("bench", &PatchParams::default(), &Patch::Strategic(&patch))
            .await
            .unwrap();
        loop {
            let event = tokio::time::timeout(Duration::from_secs(30), stream.try_next())
                .await
                .expect("restored within 30 s")
                .expect("watch")
                .expect("watch open");
            if hardened_user(&event).is_some_and(|uid| uid != 0) {
                samples.push(started.elapsed());
                break;
            }
        }
    }
    let writes = operator.requests.mutating() - writes_before;
    print_figures(
        "workload hardening restored after runAsUser: 0",
        &mut samples,
    );
    println!(
        "mutating requests per workload correction: {:.1} (apply, status, Event)",
        writes as f64 / SAMPLES as f64
    );
}

/// Runs `change` and returns the time until the watch shows the object restored to the spec
/// it had before.
async fn time_until_restored<F, Fut>(api: &Api<NetworkPolicy>, name: &str, change: F) -> Duration
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let original = api.get(name).await.unwrap();
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut stream = watcher(api.clone(), config).applied_objects().boxed();
    // The first event is the current object, delivered once the watch is established.
    let _ = stream.try_next().await;

    let started = Instant::now();
    change().await;
    loop {
        let event = tokio::time::timeout(Duration::from_secs(30), stream.try_next())
            .await
            .expect("restored within 30 s")
            .expect("watch")
            .expect("watch open");
        if event.spec == original.spec {
            return started.elapsed();
        }
    }
}

async fn generated(client: &Client, policy: &str) -> Vec<NetworkPolicy> {
    let params = ListParams::default().labels(&format!("security.medianest.io/policy={policy}"));
    Api::<NetworkPolicy>::all(client.clone())
        .list(&params)
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|object| {
            object.metadata.deletion_timestamp.is_none() && !object.name_any().is_empty()
        })
        .collect()
}

fn print_figures(what: &str, samples: &mut [Duration]) {
    samples.sort();
    let at = |fraction: f64| samples[((samples.len() - 1) as f64 * fraction).round() as usize];
    let ms = |duration: Duration| duration.as_secs_f64() * 1000.0;
    println!(
        "{what}: min {:.1} ms, median {:.1} ms, p90 {:.1} ms, max {:.1} ms",
        ms(samples[0]),
        ms(at(0.5)),
        ms(at(0.9)),
        ms(samples[samples.len() - 1])
    );
}

/// Resident set size of this process in KiB, from /proc/self/status.
fn resident_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmRSS:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|value| value.parse().ok())
        })
        .unwrap_or(0)
}
