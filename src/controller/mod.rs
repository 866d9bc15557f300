//! The reconcilers and their wiring: watches, caches and the shared context.

pub mod apply;
pub mod context;
pub mod error;
pub mod mtls;
pub mod network;
pub mod policy;
pub mod report;
pub mod rollouts;
pub mod status;
pub mod workload;
pub mod workloads;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::ResourceExt;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::api::MediaNestSecurityPolicy;
use crate::policy::names::{POLICY_LABEL, managed_selector};
use crate::telemetry::Metrics;

pub use context::{Context, Settings, WorkloadStores};

/// Caches the operator keeps, and whether they hold their first complete lists.
#[derive(Clone)]
pub struct Caches {
    pub namespaces: reflector::Store<PartialObjectMeta<Namespace>>,
    pub network_policies: reflector::Store<NetworkPolicy>,
    pub policies: reflector::Store<MediaNestSecurityPolicy>,
    pub workloads: WorkloadStores,
    ready: watch::Receiver<bool>,
}

impl Caches {
    /// Waits until every cache contains its first complete list.
    pub async fn wait_until_ready(&self) {
        let mut ready = self.ready.clone();
        // An error means the loading task ended, which happens only at shutdown.
        let _ = ready.wait_for(|loaded| *loaded).await;
    }
}

/// Waits for each cache's first complete list, then publishes readiness.
///
/// NOTE: this is the only caller of `Store::wait_until_ready` for these caches, because in
/// kube-runtime 5.0 that future keeps one waker per store (a oneshot receiver), so of several
/// concurrent callers only the last one polled is woken. Everyone else waits on the watch
/// channel. The policy cache is left to the controller, which waits for it on its own.
async fn load_caches(caches: Caches, ready: watch::Sender<bool>) {
    let stores = &caches.workloads;
    let _ = caches.namespaces.wait_until_ready().await;
    let _ = caches.network_policies.wait_until_ready().await;
    // The controller itself waits for the policy cache before it reconciles anything.
    let _ = stores.deployments.wait_until_ready().await;
    let _ = stores.stateful_sets.wait_until_ready().await;
    let _ = stores.daemon_sets.wait_until_ready().await;
    let _ = stores.cron_jobs.wait_until_ready().await;
    let _ = stores.jobs.wait_until_ready().await;
    let _ = stores.pods.wait_until_ready().await;
    let _ = stores.services.wait_until_ready().await;
    let _ = stores.secrets.wait_until_ready().await;
    let _ = stores.config_maps.wait_until_ready().await;
    let _ = ready.send(true);
}

/// How long a reconcile waits for the caches before it tries again later.
const CACHE_WAIT: Duration = Duration::from_secs(5);

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
                    Err(error) => tracing::warn!(
                        kind = %kind,
                        error = %error::chain(&error, 1024),
                        "Watch failed; retrying with backoff"
                    ),
                }
                std::future::ready(())
            }),
    );
    (store, task)
}

/// References to the MediaNestSecurityPolicies that own `object` or that its policy label
/// names. The label still leads to the policy when someone has stripped or changed the
/// owner references.
fn owning_policies<K: kube::Resource>(object: &K) -> Vec<Trigger> {
    let meta = object.meta();
    let mut triggers: Vec<Trigger> = meta
        .owner_references
        .iter()
        .flatten()
        .filter(|owner| {
            owner.kind == "MediaNestSecurityPolicy"
                && owner.api_version == "security.medianest.io/v1alpha1"
        })
        .map(|owner| ObjectRef::new(&owner.name))
        .collect();
    if let Some(name) = meta
        .labels
        .as_ref()
        .and_then(|labels| labels.get(POLICY_LABEL))
    {
        triggers.push(ObjectRef::new(name));
    }
    triggers.dedup();
    triggers
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

    let certifying = {
        let policies = policies.clone();
        move || {
            policies
                .state()
                .iter()
                .filter(|policy| policy.spec.mtls.is_some())
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
    let (services, task) = spawn_cache(
        Api::<PartialObjectMeta<Service>>::all(client.clone()),
        config(),
        tx.clone(),
        {
            let certifying = certifying.clone();
            move |_| certifying()
        },
    );
    tasks.push(task);
    // Generated Secrets and ConfigMaps carry the policy label, which leads to their policy.
    let (secrets, task) = spawn_cache(
        Api::<Secret>::all(client.clone()),
        config().labels(&managed_selector()),
        tx.clone(),
        owning_policies,
    );
    tasks.push(task);
    let (config_maps, task) = spawn_cache(
        Api::<ConfigMap>::all(client.clone()),
        config().labels(&managed_selector()),
        tx.clone(),
        owning_policies,
    );
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
        services,
        secrets,
        config_maps,
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
    let (ready_sender, ready) = watch::channel(false);
    let caches = Caches {
        namespaces,
        network_policies,
        policies,
        workloads,
        ready,
    };
    tasks.push(tokio::spawn(load_caches(caches.clone(), ready_sender)));

    // The trigger stream ends at shutdown, which lets the controller finish.
    let shutdown = shutdown.shared();
    let triggers =
        futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).take_until(shutdown.clone());
    let ready = caches.clone();
    let run = controller
        .reconcile_on(triggers)
        .graceful_shutdown_on(shutdown)
        .run(
            move |policy, ctx| {
                let ready = ready.clone();
                async move {
                    // A reconcile against a half-filled cache would see namespaces or
                    // generated objects as missing. It waits for the first complete lists,
                    // but not forever, so that a shutdown never waits on a cache that cannot
                    // load (for example when RBAC forbids a list).
                    let loaded = tokio::time::timeout(CACHE_WAIT, ready.wait_until_ready()).await;
                    if loaded.is_err() {
                        tracing::warn!(policy = %policy.name_any(), "Caches are still loading; retrying the reconcile");
                        return Ok(Action::requeue(CACHE_WAIT));
                    }
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
