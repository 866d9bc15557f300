//! The reconcilers and their wiring: watches, caches and the shared context.

pub mod apply;
pub mod context;
pub mod error;
pub mod policy;
pub mod status;

use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Controller;
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};

use crate::api::MediaNestSecurityPolicy;
use crate::policy::names::managed_selector;
use crate::telemetry::Metrics;

pub use context::{Context, Settings};

/// Caches the operator keeps, for readiness checks.
#[derive(Clone)]
pub struct Caches {
    pub namespaces: reflector::Store<PartialObjectMeta<Namespace>>,
    pub network_policies: reflector::Store<NetworkPolicy>,
    pub policies: reflector::Store<MediaNestSecurityPolicy>,
}

impl Caches {
    /// Waits until every cache contains its first complete list.
    pub async fn wait_until_ready(&self) {
        let _ = self.namespaces.wait_until_ready().await;
        let _ = self.network_policies.wait_until_ready().await;
        let _ = self.policies.wait_until_ready().await;
    }
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

    let context = Arc::new(Context::new(
        client,
        settings,
        metrics,
        namespaces.clone(),
        network_policies.clone(),
    ));
    let caches = Caches {
        namespaces,
        network_policies,
        policies,
    };

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
