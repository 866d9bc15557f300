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
    /// Waits until every cache contains its first complete list. Returns false when the
    /// caches stop loading first, which happens only at shutdown.
    pub async fn wait_until_ready(&self) -> bool {
        let mut ready = self.ready.clone();
        ready.wait_for(|loaded| *loaded).await.is_ok()
    }

    /// Waits for the caches like `wait_until_ready`, but at most `CACHE_WAIT`, so that a
    /// reconcile, and a shutdown waiting for it, never hangs on a cache that cannot load (for
    /// example when RBAC forbids a list). Returns whether they loaded.
    async fn wait_bounded(&self) -> bool {
        tokio::time::timeout(CACHE_WAIT, self.wait_until_ready())
            .await
            .unwrap_or(false)
    }
}

/// Publishes readiness once every cache contains its first complete list.
///
/// Readiness comes from the watch events each cache task receives, never from
/// `Store::wait_until_ready`: in kube-runtime 5.0 that future keeps one waker per store, so
/// a second waiter would silence the controller's own wait for its store.
async fn load_caches(mut loaded: Vec<watch::Receiver<bool>>, ready: watch::Sender<bool>) {
    for cache in &mut loaded {
        // An error means the cache task ended, which happens only at shutdown.
        if cache.wait_for(|loaded| *loaded).await.is_err() {
            return;
        }
    }
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

/// A cache that a task of its own keeps up to date.
struct Cache<K: kube::Resource + 'static>
where
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    store: reflector::Store<K>,
    /// Whether the store contains its first complete list.
    loaded: watch::Receiver<bool>,
    task: JoinHandle<()>,
}

/// The tasks that keep the caches, and whether each cache has loaded.
#[derive(Default)]
struct Running {
    tasks: Vec<JoinHandle<()>>,
    loaded: Vec<watch::Receiver<bool>>,
}

impl Running {
    /// Takes over the task of `cache` and returns its store.
    fn keep<K: kube::Resource + 'static>(&mut self, cache: Cache<K>) -> reflector::Store<K>
    where
        K::DynamicType: Eq + std::hash::Hash + Clone,
    {
        self.tasks.push(cache.task);
        self.loaded.push(cache.loaded);
        cache.store
    }
}

/// Keeps a cache of `api` in its own task, and sends the requests `map` returns for every
/// changed object.
///
/// The task, not a controller, drives the watch, so a cache fills up even while every
/// reconcile waits for it, and keeps filling during a controller's graceful shutdown.
fn spawn_cache<K>(
    api: Api<K>,
    config: watcher::Config,
    triggers: Triggers,
    map: impl Fn(&K) -> Requests + Send + 'static,
) -> Cache<K>
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
    let (loaded_sender, loaded) = watch::channel(false);
    let kind = K::kind(&K::DynamicType::default()).to_string();
    let task = tokio::spawn(
        watcher(api, config)
            .default_backoff()
            .reflect(writer)
            .for_each(move |event| {
                match event {
                    Ok(
                        watcher::Event::Apply(object)
                        | watcher::Event::InitApply(object)
                        | watcher::Event::Delete(object),
                    ) => {
                        let requests = map(&object);
                        // The receivers are gone only at shutdown.
                        for trigger in requests.policies {
                            let _ = triggers.policies.send(trigger);
                        }
                        for trigger in requests.rotations {
                            let _ = triggers.rotations.send(trigger);
                        }
                    }
                    Ok(watcher::Event::InitDone) => {
                        loaded_sender.send_replace(true);
                    }
                    Ok(watcher::Event::Init) => {}
                    Err(error) => tracing::warn!(
                        kind = %kind,
                        error = %error::chain(&error, 1024),
                        "Watch failed; retrying with backoff"
                    ),
                }
                std::future::ready(())
            }),
    );
    Cache {
        store,
        loaded,
        task,
    }
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

/// Runs a controller until it has finished its graceful shutdown.
///
/// A controller whose store has not loaded when shutdown begins has reconciled nothing yet,
/// and kube-runtime 5.0 would never finish its graceful shutdown: its runner, held until the
/// store is ready, stops polling its input and is never woken again. Such a controller is
/// dropped instead.
async fn run_until_shutdown(
    kind: &str,
    run: impl Future<Output = ()>,
    loaded: watch::Receiver<bool>,
    shutdown: impl Future<Output = ()>,
) {
    let unloaded_at_shutdown = async {
        shutdown.await;
        if *loaded.borrow() {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        () = run => {}
        () = unloaded_at_shutdown => {
            tracing::warn!(kind, "Stopped before the cache of this kind loaded, so nothing was reconciled");
        }
    }
}

/// Waits for the caches before a reconcile of `name`. Returns the action to take instead of
/// the reconcile when they are still loading or a shutdown began, which cuts the wait short.
async fn wait_for_caches(
    caches: &Caches,
    shutdown: impl Future<Output = ()>,
    name: &str,
) -> Option<Action> {
    let loaded = tokio::select! {
        loaded = caches.wait_bounded() => loaded,
        () = shutdown => return Some(Action::await_change()),
    };
    if loaded {
        return None;
    }
    tracing::warn!(
        name,
        "Caches are still loading, so the reconcile is retried later"
    );
    Some(Action::requeue(CACHE_WAIT))
}

/// Logs what a controller reports besides reconcile results. The error policies already log
/// failed reconciles; a failed watch of a controller's own kind deserves a warning.
async fn log_controller_event<K, E1, E2>(
    result: Result<(ObjectRef<K>, Action), kube::runtime::controller::Error<E1, E2>>,
) where
    K: kube::Resource,
    E1: std::error::Error + 'static,
    E2: std::error::Error + 'static,
{
    use kube::runtime::controller::Error as ControllerError;
    match result {
        Ok(_) => {}
        Err(ControllerError::QueueError(error)) => {
            tracing::warn!(error = %error::chain(&error, 1024), "Controller watch failed")
        }
        Err(error) => tracing::debug!(error = %error, "Controller event"),
    }
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

    let (policy_sender, policy_receiver) = mpsc::unbounded_channel::<Trigger>();
    let (rotation_sender, rotation_receiver) = mpsc::unbounded_channel::<RotationTrigger>();
    let triggers = Triggers {
        policies: policy_sender,
        rotations: rotation_sender,
    };
    let config = watcher::Config::default;
    let managed = || watcher::Config::default().labels(&managed_selector());
    let mut running = Running::default();

    // The controllers' own kinds are cached like every other kind. Each change of one is sent
    // to its controller as the object itself.
    let (policy_object_sender, policy_objects) = mpsc::unbounded_channel();
    let policy_cache = spawn_cache(
        Api::<MediaNestSecurityPolicy>::all(client.clone()),
        policy_watch,
        triggers.clone(),
        move |policy: &MediaNestSecurityPolicy| {
            let _ = policy_object_sender.send(policy.clone());
            Requests::default()
        },
    );
    let policies_loaded = policy_cache.loaded.clone();
    let policies = running.keep(policy_cache);
    let (rotation_object_sender, rotation_objects) = mpsc::unbounded_channel();
    let rotation_cache = spawn_cache(
        Api::<SecretRotation>::all(client.clone()),
        rotation_watch,
        triggers.clone(),
        move |rotation: &SecretRotation| {
            let _ = rotation_object_sender.send(rotation.clone());
            Requests::default()
        },
    );
    let rotations_loaded = rotation_cache.loaded.clone();
    let rotations = running.keep(rotation_cache);

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
    let every = policies_where.clone();
    let namespaces = running.keep(spawn_cache(
        Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
        config(),
        triggers.clone(),
        move |_| Requests {
            policies: every(|_| true),
            rotations: Vec::new(),
        },
    ));
    let network_policies = running.keep(spawn_cache(
        Api::<NetworkPolicy>::all(client.clone()),
        managed(),
        triggers.clone(),
        generated_owners,
    ));

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
    let deployments = running.keep(spawn_cache(
        Api::<Deployment>::all(client.clone()),
        config(),
        triggers.clone(),
        move |object: &Deployment| on_deployment(object.metadata.namespace.as_deref()),
    ));
    let on_stateful_set = workload_requests.clone();
    let stateful_sets = running.keep(spawn_cache(
        Api::<StatefulSet>::all(client.clone()),
        config(),
        triggers.clone(),
        move |object: &StatefulSet| on_stateful_set(object.metadata.namespace.as_deref()),
    ));
    let on_daemon_set = workload_requests.clone();
    let daemon_sets = running.keep(spawn_cache(
        Api::<DaemonSet>::all(client.clone()),
        config(),
        triggers.clone(),
        move |object: &DaemonSet| on_daemon_set(object.metadata.namespace.as_deref()),
    ));
    let on_cron_job = policies_where.clone();
    let cron_jobs = running.keep(spawn_cache(
        Api::<CronJob>::all(client.clone()),
        config(),
        triggers.clone(),
        move |_| Requests {
            policies: on_cron_job(|policy| policy.spec.workloads.is_some()),
            rotations: Vec::new(),
        },
    ));
    // Jobs and Pods that a controller owns follow a template that is checked on its own.
    let on_job = policies_where.clone();
    let jobs = running.keep(spawn_cache(
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
    ));
    let on_pod = policies_where.clone();
    let pods = running.keep(spawn_cache(
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
    ));
    let on_service = policies_where;
    let services = running.keep(spawn_cache(
        Api::<PartialObjectMeta<Service>>::all(client.clone()),
        config(),
        triggers.clone(),
        move |_| Requests {
            policies: on_service(|policy| policy.spec.mtls.is_some()),
            rotations: Vec::new(),
        },
    ));
    // Generated Secrets and ConfigMaps carry a label that leads to their owner.
    let secrets = running.keep(spawn_cache(
        Api::<Secret>::all(client.clone()),
        managed(),
        triggers.clone(),
        generated_owners,
    ));
    let config_maps = running.keep(spawn_cache(
        Api::<ConfigMap>::all(client.clone()),
        managed(),
        triggers,
        generated_owners,
    ));

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
    let Running { mut tasks, loaded } = running;
    tasks.push(tokio::spawn(load_caches(loaded, ready_sender)));

    let ready = caches.clone();
    let shutdown_for_policy = shutdown.clone();
    let policy_run = Controller::for_stream(
        trigger_stream(policy_objects, shutdown.clone()).map(Ok),
        caches.policies.clone(),
    )
    .reconcile_on(trigger_stream(policy_receiver, shutdown.clone()))
    .graceful_shutdown_on(shutdown.clone())
    .run(
        move |policy, ctx| {
            let ready = ready.clone();
            let shutdown = shutdown_for_policy.clone();
            async move {
                if let Some(action) = wait_for_caches(&ready, shutdown, &policy.name_any()).await {
                    return Ok(action);
                }
                policy::reconcile(policy, ctx).await
            }
        },
        policy::error_policy,
        context.clone(),
    )
    .for_each(log_controller_event);
    let policy_run = run_until_shutdown(
        "MediaNestSecurityPolicy",
        policy_run,
        policies_loaded,
        shutdown.clone(),
    );

    let ready = caches.clone();
    let shutdown_for_rotation = shutdown.clone();
    let rotation_run = Controller::for_stream(
        trigger_stream(rotation_objects, shutdown.clone()).map(Ok),
        caches.rotations.clone(),
    )
    .reconcile_on(trigger_stream(rotation_receiver, shutdown.clone()))
    .graceful_shutdown_on(shutdown.clone())
    .run(
        move |rotation, ctx| {
            let ready = ready.clone();
            let shutdown = shutdown_for_rotation.clone();
            async move {
                if let Some(action) = wait_for_caches(&ready, shutdown, &rotation.name_any()).await
                {
                    return Ok(action);
                }
                rotation::reconcile(rotation, ctx).await
            }
        },
        rotation::error_policy,
        context,
    )
    .for_each(log_controller_event);
    let rotation_run =
        run_until_shutdown("SecretRotation", rotation_run, rotations_loaded, shutdown);

    let run = async move {
        futures::join!(policy_run, rotation_run);
        for task in tasks {
            task.abort();
        }
    };
    (caches, run)
}
