//! The reconcilers and their wiring: watches, caches and the shared context.

pub mod apply;
pub mod context;
pub mod error;
pub mod failpoints;
pub mod mtls;
pub mod network;
pub mod policy;
pub mod report;
pub mod rollouts;
pub mod rotation;
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

use crate::api::{MediaNestSecurityPolicy, SecretRotation};
use crate::policy::names::{POLICY_LABEL, managed_selector};
use crate::telemetry::Metrics;

pub use context::{Context, Settings, WorkloadStores};

/// Caches the operator keeps, and whether they hold their first complete lists.
#[derive(Clone)]
pub struct Caches {
    pub namespaces: reflector::Store<PartialObjectMeta<Namespace>>,
    pub network_policies: reflector::Store<NetworkPolicy>,
    pub policies: reflector::Store<MediaNestSecurityPolicy>,
    pub rotations: reflector::Store<SecretRotation>,
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

    /// Waits for the caches like `wait_until_ready`, but at most `CACHE_WAIT`, so that a
    /// reconcile, and a shutdown waiting for it, never hangs on a cache that cannot load (for
    /// example when RBAC forbids a list). Returns whether they loaded.
    async fn wait_bounded(&self) -> bool {
        tokio::time::timeout(CACHE_WAIT, self.wait_until_ready())
            .await
            .is_ok()
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

/// A request to reconcile one policy.
type Trigger = ObjectRef<MediaNestSecurityPolicy>;

/// A request to reconcile one SecretRotation.
type RotationTrigger = ObjectRef<SecretRotation>;

/// Channels for the reconcile requests that object changes cause.
#[derive(Clone)]
struct Triggers {
    policies: mpsc::UnboundedSender<Trigger>,
    rotations: mpsc::UnboundedSender<RotationTrigger>,
}

/// The reconcile requests one changed object causes.
#[derive(Default)]
struct Requests {
    policies: Vec<Trigger>,
    rotations: Vec<RotationTrigger>,
}

/// Keeps a cache of `api` in its own task, and sends the requests `map` returns for every
/// changed object.
///
/// The task, not a controller, drives the watch, so a cache fills up even while every
/// reconcile waits for it.
fn spawn_cache<K>(
    api: Api<K>,
    config: watcher::Config,
    triggers: Triggers,
    map: impl Fn(&K) -> Requests + Send + 'static,
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
                        let requests = map(&object);
                        // The receivers are gone only at shutdown.
                        for trigger in requests.policies {
                            let _ = triggers.policies.send(trigger);
                        }
                        for trigger in requests.rotations {
                            let _ = triggers.rotations.send(trigger);
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
/// names, and to the SecretRotation its rotation label names. The labels still lead to the
/// owner when someone has stripped or changed the owner references.
fn generated_owners<K: kube::Resource>(object: &K) -> Requests {
    let meta = object.meta();
    let mut policies: Vec<Trigger> = meta
        .owner_references
        .iter()
        .flatten()
        .filter(|owner| {
            owner.kind == "MediaNestSecurityPolicy"
                && owner.api_version == "security.medianest.io/v1alpha1"
        })
        .map(|owner| ObjectRef::new(&owner.name))
        .collect();
    let labels = meta.labels.clone().unwrap_or_default();
    if let Some(name) = labels.get(POLICY_LABEL) {
        policies.push(ObjectRef::new(name));
    }
    policies.dedup();
    let rotations = match (
        labels.get(rotation::ROTATION_LABEL),
        meta.namespace.as_deref(),
    ) {
        (Some(name), Some(namespace)) => vec![ObjectRef::new(name).within(namespace)],
        _ => Vec::new(),
    };
    Requests {
        policies,
        rotations,
    }
}

/// Turns an unbounded receiver into a stream that ends at shutdown.
fn trigger_stream<T: Send + 'static>(
    mut receiver: mpsc::UnboundedReceiver<T>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> impl futures::Stream<Item = T> + Send {
    futures::stream::poll_fn(move |cx| receiver.poll_recv(cx)).take_until(shutdown)
}

/// Builds the controllers and returns their caches and the future that runs them until
/// `shutdown` completes.
pub fn controllers(
    client: Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> (Caches, impl Future<Output = ()> + Send) {
    let shutdown = shutdown.shared();
    let mut policy_watch = watcher::Config::default();
    let mut rotation_watch = watcher::Config::default();
    if let Some(selector) = &settings.policy_selector {
        policy_watch = policy_watch.labels(selector);
        rotation_watch = rotation_watch.labels(selector);
    }
    let policy_controller = Controller::new(
        Api::<MediaNestSecurityPolicy>::all(client.clone()),
        policy_watch,
    );
    let rotation_controller =
        Controller::new(Api::<SecretRotation>::all(client.clone()), rotation_watch);
    let policies = policy_controller.store();
    let rotations = rotation_controller.store();

    // Every policy, for a namespace change; those with a section, for a change of its kinds;
    // every SecretRotation of a namespace, for a workload change there.
    let policies_where = {
        let policies = policies.clone();
        move |filter: fn(&MediaNestSecurityPolicy) -> bool| {
            policies
                .state()
                .iter()
                .filter(|policy| filter(policy))
                .map(|policy| ObjectRef::from_obj(policy.as_ref()))
                .collect::<Vec<_>>()
        }
    };
    let rotations_in = {
        let rotations = rotations.clone();
        move |namespace: Option<&str>| {
            rotations
                .state()
                .iter()
                .filter(|rotation| rotation.namespace().as_deref() == namespace)
                .map(|rotation| ObjectRef::from_obj(rotation.as_ref()))
                .collect::<Vec<_>>()
        }
    };

    let (policy_sender, policy_receiver) = mpsc::unbounded_channel::<Trigger>();
    let (rotation_sender, rotation_receiver) = mpsc::unbounded_channel::<RotationTrigger>();
    let triggers = Triggers {
        policies: policy_sender,
        rotations: rotation_sender,
    };
    let config = watcher::Config::default;
    let managed = || watcher::Config::default().labels(&managed_selector());
    let mut tasks = Vec::new();

    let every = policies_where.clone();
    let (namespaces, task) = spawn_cache(
        Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
        config(),
        triggers.clone(),
        move |_| Requests {
            policies: every(|_| true),
            rotations: Vec::new(),
        },
    );
    tasks.push(task);
    let (network_policies, task) = spawn_cache(
        Api::<NetworkPolicy>::all(client.clone()),
        managed(),
        triggers.clone(),
        generated_owners,
    );
    tasks.push(task);

    // A workload change may be drift to revert, the end of a rollout that frees a slot, or a
    // new consumer of a rotated Secret.
    let workload_requests = {
        let policies_where = policies_where.clone();
        let rotations_in = rotations_in.clone();
        move |namespace: Option<&str>| Requests {
            policies: policies_where(|policy| policy.spec.workloads.is_some()),
            rotations: rotations_in(namespace),
        }
    };
    let on_deployment = workload_requests.clone();
    let (deployments, task) = spawn_cache(
        Api::<Deployment>::all(client.clone()),
        config(),
        triggers.clone(),
        move |object: &Deployment| on_deployment(object.metadata.namespace.as_deref()),
    );
    tasks.push(task);
    let on_stateful_set = workload_requests.clone();
    let (stateful_sets, task) = spawn_cache(
        Api::<StatefulSet>::all(client.clone()),
        config(),
        triggers.clone(),
        move |object: &StatefulSet| on_stateful_set(object.metadata.namespace.as_deref()),
    );
    tasks.push(task);
    let on_daemon_set = workload_requests.clone();
    let (daemon_sets, task) = spawn_cache(
        Api::<DaemonSet>::all(client.clone()),
        config(),
        triggers.clone(),
        move |object: &DaemonSet| on_daemon_set(object.metadata.namespace.as_deref()),
    );
    tasks.push(task);
    let on_cron_job = policies_where.clone();
    let (cron_jobs, task) = spawn_cache(
        Api::<CronJob>::all(client.clone()),
        config(),
        triggers.clone(),
        move |_| Requests {
            policies: on_cron_job(|policy| policy.spec.workloads.is_some()),
            rotations: Vec::new(),
        },
    );
    tasks.push(task);
    // Jobs and Pods that a controller owns follow a template that is checked on its own.
    let on_job = policies_where.clone();
    let (jobs, task) = spawn_cache(
        Api::<Job>::all(client.clone()),
        config(),
        triggers.clone(),
        move |job: &Job| Requests {
            policies: if job.metadata.owner_references.is_none() {
                on_job(|policy| policy.spec.workloads.is_some())
            } else {
                Vec::new()
            },
            rotations: Vec::new(),
        },
    );
    tasks.push(task);
    let on_pod = policies_where.clone();
    let (pods, task) = spawn_cache(
        Api::<PartialObjectMeta<Pod>>::all(client.clone()),
        config(),
        triggers.clone(),
        move |pod: &PartialObjectMeta<Pod>| Requests {
            policies: if pod.metadata.owner_references.is_none() {
                on_pod(|policy| policy.spec.workloads.is_some())
            } else {
                Vec::new()
            },
            rotations: Vec::new(),
        },
    );
    tasks.push(task);
    let on_service = policies_where;
    let (services, task) = spawn_cache(
        Api::<PartialObjectMeta<Service>>::all(client.clone()),
        config(),
        triggers.clone(),
        move |_| Requests {
            policies: on_service(|policy| policy.spec.mtls.is_some()),
            rotations: Vec::new(),
        },
    );
    tasks.push(task);
    // Generated Secrets and ConfigMaps carry a label that leads to their owner.
    let (secrets, task) = spawn_cache(
        Api::<Secret>::all(client.clone()),
        managed(),
        triggers.clone(),
        generated_owners,
    );
    tasks.push(task);
    let (config_maps, task) = spawn_cache(
        Api::<ConfigMap>::all(client.clone()),
        managed(),
        triggers,
        generated_owners,
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
    let (ready_sender, ready) = watch::channel(false);
    let caches = Caches {
        namespaces,
        network_policies,
        policies,
        rotations,
        workloads,
        ready,
    };
    let context = Arc::new(Context::new(client, settings, metrics, &caches));
    tasks.push(tokio::spawn(load_caches(caches.clone(), ready_sender)));

    let ready = caches.clone();
    let policy_run = policy_controller
        .reconcile_on(trigger_stream(policy_receiver, shutdown.clone()))
        .graceful_shutdown_on(shutdown.clone())
        .run(
            move |policy, ctx| {
                let ready = ready.clone();
                async move {
                    if !ready.wait_bounded().await {
                        tracing::warn!(policy = %policy.name_any(), "Caches are still loading; retrying the reconcile");
                        return Ok(Action::requeue(CACHE_WAIT));
                    }
                    policy::reconcile(policy, ctx).await
                }
            },
            policy::error_policy,
            context.clone(),
        )
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(error = %error, "Controller event");
            }
        });

    let ready = caches.clone();
    let rotation_run = rotation_controller
        .reconcile_on(trigger_stream(rotation_receiver, shutdown.clone()))
        .graceful_shutdown_on(shutdown)
        .run(
            move |rotation, ctx| {
                let ready = ready.clone();
                async move {
                    if !ready.wait_bounded().await {
                        tracing::warn!(rotation = %rotation.name_any(), "Caches are still loading; retrying the reconcile");
                        return Ok(Action::requeue(CACHE_WAIT));
                    }
                    rotation::reconcile(rotation, ctx).await
                }
            },
            rotation::error_policy,
            context,
        )
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(error = %error, "Controller event");
            }
        });

    let run = async move {
        futures::join!(policy_run, rotation_run);
        for task in tasks {
            task.abort();
        }
    };
    (caches, run)
}
