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
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

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
        let stores = &self.workloads;
        let _ = self.namespaces.wait_until_ready().await;
        let _ = self.network_policies.wait_until_ready().await;
        let _ = self.policies.wait_until_ready().await;
        let _ = stores.deployments.wait_until_ready().await;
        let _ = stores.stateful_sets.wait_until_ready().await;
        let _ = stores.daemon_sets.wait_until_ready().await;
        let _ = stores.cron_jobs.wait_until_ready().await;
        let _ = stores.jobs.wait_until_ready().await;
        let _ = stores.pods.wait_until_ready().await;
    }
}

/// A request to reconcile one policy, sent by the tasks that keep the caches.
type Trigger = ObjectRef<MediaNestSecurityPolicy>;

/// Keeps a cache of `api` in its own task, and sends the policies `map` names for every
/// changed object.
///
/// The task, not the controller, drives the watch, so a cache fills up even while every
/// reconcile waits for it.
fn spawn_cache<K>(
    api: Api<K>,
    config: watcher::Config,
    triggers: mpsc::UnboundedSender<Trigger>,
    map: impl Fn(&K) -> Vec<Trigger> + Send + 'static,
) -> (reflector::Store<K>, JoinHandle<()>)
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
    let kind = K::kind(&K::DynamicType::default()).to_string();
    let task = tokio::spawn(
        watcher(api, config)
            .default_backoff()
            .reflect(writer)
            .touched_objects()
            .for_each(move |result| {
                match result {
                    Ok(object) => {
                        for trigger in map(&object) {
                            // The receiver is gone only at shutdown.
                            let _ = triggers.send(trigger);
                        }
                    }
                    Err(error) => tracing::warn!(kind = %kind, error = %error, "Watch failed; retrying with backoff"),
                }
                std::future::ready(())
            }),
    );
    (store, task)
}

/// References to the MediaNestSecurityPolicies that own `object`.
fn owning_policies<K: kube::Resource>(object: &K) -> Vec<Trigger> {
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
    let mut policy_watch = watcher::Config::default();
    if let Some(selector) = &settings.policy_selector {
        policy_watch = policy_watch.labels(selector);
    }
    let controller = Controller::new(
        Api::<MediaNestSecurityPolicy>::all(client.clone()),
        policy_watch,
    );
    let policies = controller.store();

    // Every policy, for a namespace change; the hardening ones, for a workload change.
    let all = {
        let policies = policies.clone();
        move || {
            policies
                .state()
                .iter()
                .map(|policy| ObjectRef::from_obj(policy.as_ref()))
                .collect::<Vec<_>>()
        }
    };
    let hardening = {
        let policies = policies.clone();
        move || {
            policies
                .state()
                .iter()
                .filter(|policy| policy.spec.workloads.is_some())
                .map(|policy| ObjectRef::from_obj(policy.as_ref()))
                .collect::<Vec<_>>()
        }
    };

    let (tx, mut rx) = mpsc::unbounded_channel::<Trigger>();
    let config = watcher::Config::default;
    let mut tasks = Vec::new();
    let (namespaces, task) = spawn_cache(
        Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
        config(),
        tx.clone(),
        {
            let all = all.clone();
            move |_| all()
        },
    );
    tasks.push(task);
    let managed = config().labels(&managed_selector());
    let (network_policies, task) = spawn_cache(
        Api::<NetworkPolicy>::all(client.clone()),
        managed,
        tx.clone(),
        owning_policies,
    );
    tasks.push(task);
    // A workload change may be drift to revert, or the end of a rollout that frees a slot.
    let (deployments, task) = spawn_cache(
        Api::<Deployment>::all(client.clone()),
        config(),
        tx.clone(),
        {
            let hardening = hardening.clone();
            move |_| hardening()
        },
    );
    tasks.push(task);
    let (stateful_sets, task) = spawn_cache(
        Api::<StatefulSet>::all(client.clone()),
        config(),
        tx.clone(),
        {
            let hardening = hardening.clone();
            move |_| hardening()
        },
    );
    tasks.push(task);
    let (daemon_sets, task) = spawn_cache(
        Api::<DaemonSet>::all(client.clone()),
        config(),
        tx.clone(),
        {
            let hardening = hardening.clone();
            move |_| hardening()
        },
    );
    tasks.push(task);
    let (cron_jobs, task) =
        spawn_cache(Api::<CronJob>::all(client.clone()), config(), tx.clone(), {
            let hardening = hardening.clone();
            move |_| hardening()
        });
    tasks.push(task);
    // Jobs and Pods that a controller owns follow a template that is checked on its own.
    let (jobs, task) = spawn_cache(Api::<Job>::all(client.clone()), config(), tx.clone(), {
        let hardening = hardening.clone();
        move |job: &Job| {
            if job.metadata.owner_references.is_none() {
                hardening()
            } else {
                Vec::new()
            }
        }
    });
    tasks.push(task);
    let (pods, task) = spawn_cache(
        Api::<PartialObjectMeta<Pod>>::all(client.clone()),
        config(),
        tx,
        {
            move |pod: &PartialObjectMeta<Pod>| {
                if pod.metadata.owner_references.is_none() {
                    hardening()
                } else {
                    Vec::new()
                }
            }
        },
    );
    tasks.push(task);

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

    let triggers = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let ready = caches.clone();
    let run = controller
        .reconcile_on(triggers)
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
    let run = async move {
        run.await;
        for task in tasks {
            task.abort();
        }
    };

    (caches, run)
}
