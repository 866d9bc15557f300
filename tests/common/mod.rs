//! Shared set-up of the integration tests: a client for the local control plane, the CRDs,
//! per-test namespaces and an in-process operator.
//!
//! The tests need a running kube-apiserver. `e2e/control-plane.sh up` starts one and prints
//! the KUBECONFIG to export; `make test` does both. Without it every test fails at once with
//! a message saying so: none is skipped.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Client, Config, ResourceExt};
use tokio::sync::{OnceCell, oneshot};

use medianest_operator::controller::{self, Settings};
use medianest_operator::telemetry::{Metrics, RequestCounter};

/// Label that ties every namespace and policy of one test together.
pub const TEST_LABEL: &str = "medianest.io/test";

/// Deadline for anything the watches should make happen "within a second". It is generous so
/// that a slow machine does not fail a test; the benchmarks measure the real latency.
pub const WATCH_DEADLINE: Duration = Duration::from_secs(30);

/// A resync interval far longer than any test, so that a correction seen within
/// [`WATCH_DEADLINE`] was driven by a watch event.
pub const LONG_RESYNC: Duration = Duration::from_secs(3600);

static CRDS: OnceCell<()> = OnceCell::const_new();
static SEQUENCE: AtomicU32 = AtomicU32::new(0);

/// Loads the admin kubeconfig of the local control plane, failing loudly when it is missing.
pub async fn kube_config() -> Config {
    let Ok(path) = std::env::var("KUBECONFIG") else {
        panic!(
            "KUBECONFIG is not set: these tests need the local control plane. Start it with \
             `eval \"$(e2e/control-plane.sh up)\"`, or run `make test`, which does it for you."
        );
    };
    Config::infer()
        .await
        .unwrap_or_else(|error| panic!("failed to load KUBECONFIG {path}: {error}"))
}

/// Builds a client for the test itself, separate from the operator's counted client.
pub async fn client() -> Client {
    let client = Client::try_from(kube_config().await).expect("client from KUBECONFIG");
    let version = client.apiserver_version().await.unwrap_or_else(|error| {
        panic!(
            "the kube-apiserver in KUBECONFIG is not reachable ({error}). Start it with \
             `eval \"$(e2e/control-plane.sh up)\"`, or run `make test`."
        )
    });
    assert!(!version.git_version.is_empty());
    ensure_crds(&client).await;
    ensure_operator_namespace(&client).await;
    client
}

/// Installs the CRDs once per test binary and waits until they are served.
async fn ensure_crds(client: &Client) {
    CRDS.get_or_init(|| async {
        let api: Api<CustomResourceDefinition> = Api::all(client.clone());
        let params = PatchParams::apply("medianest-tests").force();
        for crd in medianest_operator::crd::all() {
            let name = crd.name_any();
            api.patch(&name, &params, &Patch::Apply(&crd))
                .await
                .unwrap_or_else(|error| panic!("failed to install CRD {name}: {error}"));
            wait_for(
                &format!("CRD {name} to be established"),
                Duration::from_secs(30),
                || async {
                    let crd = api.get(&name).await.ok()?;
                    let established = crd.status?.conditions?.iter().any(|condition| {
                        condition.type_ == "Established" && condition.status == "True"
                    });
                    established.then_some(())
                },
            )
            .await;
        }
    })
    .await;
}

/// Creates the operator's own namespace, where generated CAs live, as an install would.
async fn ensure_operator_namespace(client: &Client) {
    let api: Api<Namespace> = Api::all(client.clone());
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some("medianest-system".to_string()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    match api.create(&PostParams::default(), &namespace).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(error) => panic!("failed to create namespace medianest-system: {error}"),
    }
}

/// Returns an identifier unique to this test run, short enough for names and label values.
pub fn unique_id(prefix: &str) -> String {
    let sequence = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{:x}{:x}{sequence}",
        std::process::id() % 0xfff,
        nanos % 0xffff
    )
}

/// Polls `check` until it returns `Some`, panicking with `what` after `deadline`.
pub async fn wait_for<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if started.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Creates a namespace with `labels` plus the test label.
pub async fn create_namespace(client: &Client, name: &str, test_id: &str, labels: &[(&str, &str)]) {
    let mut all: BTreeMap<String, String> = labels
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect();
    all.insert(TEST_LABEL.to_string(), test_id.to_string());
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(all),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap_or_else(|error| panic!("failed to create namespace {name}: {error}"));
}

/// Deletes the namespaces of a test; their contents go with them.
pub async fn delete_namespaces(client: &Client, names: &[String]) {
    let api: Api<Namespace> = Api::all(client.clone());
    for name in names {
        let _ = api.delete(name, &DeleteParams::default()).await;
    }
}

/// An operator running in this process, reconciling only the policies of one test.
pub struct Operator {
    pub requests: RequestCounter,
    pub metrics: Arc<Metrics>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Operator {
    /// Starts the controllers for the policies labelled with `test_id`.
    pub async fn start(test_id: &str, resync_interval: Duration) -> Self {
        Self::start_with_floor(test_id, resync_interval, Duration::from_secs(1)).await
    }

    /// Starts the controllers with `min_certificate_lifetime` as the certificate floor.
    pub async fn start_with_floor(
        test_id: &str,
        resync_interval: Duration,
        min_certificate_lifetime: Duration,
    ) -> Self {
        let requests = RequestCounter::default();
        let metrics = Arc::new(Metrics::new());
        let client = medianest_operator::client::build(
            kube_config().await,
            requests.clone(),
            Some(metrics.clone()),
        )
        .expect("operator client");
        let settings = Settings {
            operator_namespace: "medianest-system".to_string(),
            resync_interval,
            policy_selector: Some(format!("{TEST_LABEL}={test_id}")),
            min_certificate_lifetime,
            min_rotation_interval: Duration::from_secs(1),
            max_concurrent_restarts: 2,
        };
        let (shutdown, signal) = oneshot::channel::<()>();
        let (caches, run) =
            controller::controllers(client, settings, metrics.clone(), async move {
                let _ = signal.await;
            });
        let task = tokio::spawn(run);
        let loaded = tokio::time::timeout(Duration::from_secs(30), caches.wait_until_ready())
            .await
            .expect("operator caches loaded within 30s");
        assert!(loaded, "the operator's caches stopped loading");
        Self {
            requests,
            metrics,
            shutdown: Some(shutdown),
            task: Some(task),
        }
    }

    /// Drops the controllers at once, as a crash would: no graceful shutdown.
    pub fn abort(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    /// Stops the controllers and waits for them to finish.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
