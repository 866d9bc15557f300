//! The reconcilers and their wiring: watches, caches and the shared context.

pub mod apply;
pub mod context;
pub mod error;
pub mod network;
pub mod policy;
pub mod report;
pub mod rollouts;
pub mod status;
pub mod workload;
pub mod workloads;

use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Controller;
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};

use crate::api::MediaNestSecurityPolicy;
use crate::policy::names::managed_selector;
use crate::telemetry::Metrics;

pub use context::{Context, Settings, WorkloadStores};

/// Caches the operator keeps, for readiness checks.
#[derive(Clone)]
pub struct Caches {
    pub namespaces: reflector::Store<PartialObjectMeta<Namespace>>,
    pub network_policies: reflector::Store<NetworkPolicy>,
    pub policies: reflector::Store<MediaNestSecurityPolicy>,
    pub workloads: WorkloadStores,
}

impl Caches {
    /// Waits until every cache contains its first complete list.
    pub async fn wait_until_ready(&self) {
        let _ = self.namespaces.wait_until_ready().await;
        let _ = self.network_policies.wait_until_ready().await;
        let _ = self.policies.wait_until_ready().await;
        let stores = &self.workloads;
        let _ = stores.deployments.wait_until_ready().await;
        let _ = stores.stateful_sets.wait_until_ready().await;
        let _ = stores.daemon_sets.wait_until_ready().await;
        let _ = stores.cron_jobs.wait_until_ready().await;
        let _ = stores.jobs.wait_until_ready().await;
        let _ = stores.pods.wait_until_ready().await;
    }
}

/// Starts a reflector for `api` and returns its cache and its stream of changed objects.
fn reflect<K>(
    api: Api<K>,
    config: watcher::Config,
) -> (
    reflector::Store<K>,
    impl futures::Stream<Item = Result<K, watcher::Error>> + Send,
)
where
    K: kube::Resource
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (store, writer) = reflector::store();
    let stream = watcher(api, config)
        .default_backoff()
        .reflect(writer)
        .touched_objects();
    (store, stream)
}

/// References to the MediaNestSecurityPolicies that own `object`.
fn owning_policies<K: kube::Resource>(object: &K) -> Vec<ObjectRef<MediaNestSecurityPolicy>> {
    object
        .meta()
        .owner_references
        .iter()
        .flatten()
        .filter(|owner| {
            owner.kind == "MediaNestSecurityPolicy"
                && owner.api_version == "security.medianest.io/v1alpha1"
        })
        .map(|owner| ObjectRef::new(&owner.name))
        .collect()
}

/// Builds the controllers and returns their caches and the future that runs them until
/// `shutdown` completes.
pub fn controllers(
    client: Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> (Caches, impl Future<Output = ()> + Send) {
    let (namespaces, namespace_writer) = reflector::store();
    let namespace_api = Api::<PartialObjectMeta<Namespace>>::all(client.clone());
    let namespace_stream = watcher(namespace_api, watcher::Config::default())
        .default_backoff()
        .reflect(namespace_writer)
        .touched_objects();

    let (network_policies, network_policy_writer) = reflector::store();
    let managed = watcher::Config::default().labels(&managed_selector());
    let network_policy_stream = watcher(Api::<NetworkPolicy>::all(client.clone()), managed)
        .default_backoff()
        .reflect(network_policy_writer)
        .touched_objects();

    let mut policy_watch = watcher::Config::default();
    if let Some(selector) = &settings.policy_selector {
        policy_watch = policy_watch.labels(selector);
    }
    let controller = Controller::new(
        Api::<MediaNestSecurityPolicy>::all(client.clone()),
        policy_watch,
    );
    let policies = controller.store();
    let all_policies = policies.clone();

    let config = watcher::Config::default;
    let (deployments, deployment_stream) =
        reflect(Api::<Deployment>::all(client.clone()), config());
    let (stateful_sets, stateful_set_stream) =
        reflect(Api::<StatefulSet>::all(client.clone()), config());
    let (daemon_sets, daemon_set_stream) = reflect(Api::<DaemonSet>::all(client.clone()), config());
    let (cron_jobs, cron_job_stream) = reflect(Api::<CronJob>::all(client.clone()), config());
    let (jobs, job_stream) = reflect(Api::<Job>::all(client.clone()), config());
    let (pods, pod_stream) = reflect(Api::<PartialObjectMeta<Pod>>::all(client.clone()), config());
    let workloads = WorkloadStores {
        deployments,
        stateful_sets,
        daemon_sets,
        cron_jobs,
        jobs,
        pods,
    };

    let context = Arc::new(Context::new(
        client,
        settings,
        metrics,
        namespaces.clone(),
        network_policies.clone(),
        policies.clone(),
        workloads.clone(),
    ));
    let caches = Caches {
        namespaces,
        network_policies,
        policies,
        workloads,
    };
    let hardening_policies = {
        let all_policies = all_policies.clone();
        move || {
            all_policies
                .state()
                .iter()
                .filter(|policy| policy.spec.workloads.is_some())
                .map(|policy| ObjectRef::from_obj(policy.as_ref()))
                .collect::<Vec<_>>()
        }
    };
    let on_workload = hardening_policies.clone();
    let on_stateful_set = hardening_policies.clone();
    let on_daemon_set = hardening_policies.clone();
    let on_cron_job = hardening_policies.clone();
    // Jobs and Pods that a controller owns follow a template checked on its own.
    let on_job = hardening_policies.clone();
    let on_pod = hardening_policies;

    let ready = caches.clone();
    let run = controller
        // Controller::owns assumes the owner lives in the child's namespace, which is wrong
        // for a cluster-scoped policy, so the owner references are mapped here.
        .watches_stream(network_policy_stream, |object: NetworkPolicy| {
            owning_policies(&object)
        })
        // Any namespace change may change which namespaces a policy governs.
        .watches_stream(namespace_stream, move |_| {
            all_policies
                .state()
                .iter()
                .map(|policy| ObjectRef::from_obj(policy.as_ref()))
                .collect::<Vec<_>>()
        })
        // A workload change may be drift to revert, or the end of a rollout that frees a slot.
        .watches_stream(deployment_stream, move |_: Deployment| on_workload())
        .watches_stream(stateful_set_stream, move |_: StatefulSet| on_stateful_set())
        .watches_stream(daemon_set_stream, move |_: DaemonSet| on_daemon_set())
        .watches_stream(cron_job_stream, move |_: CronJob| on_cron_job())
        .watches_stream(job_stream, move |job: Job| {
            if job.metadata.owner_references.is_none() {
                on_job()
            } else {
                Vec::new()
            }
        })
        .watches_stream(pod_stream, move |pod: PartialObjectMeta<Pod>| {
            if pod.metadata.owner_references.is_none() {
                on_pod()
            } else {
                Vec::new()
            }
        })
        .graceful_shutdown_on(shutdown)
        .run(
            move |policy, ctx| {
                let ready = ready.clone();
                async move {
                    // A reconcile against a half-filled cache would see namespaces or
                    // generated objects as missing; wait for the first complete lists.
                    ready.wait_until_ready().await;
                    policy::reconcile(policy, ctx).await
                }
            },
            policy::error_policy,
            context,
        )
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(error = %error, "Controller event");
            }
        });

    (caches, run)
}
