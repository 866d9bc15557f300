//! State shared by the reconcilers: the client, caches of watched objects, settings, metrics.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::Client;
use kube::core::PartialObjectMeta;
use kube::runtime::events::{Event, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};

use crate::policy::names::MANAGER;
use crate::policy::namespaces::NamespaceInfo;
use crate::telemetry::Metrics;

/// Settings of a running operator.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Namespace the operator runs in; it is protected from policies.
    pub operator_namespace: String,
    /// Interval of the periodic reconcile that catches anything a watch missed.
    pub resync_interval: Duration,
    /// Label selector limiting which MediaNestSecurityPolicies this instance reconciles.
    pub policy_selector: Option<String>,
}

/// Everything a reconcile needs besides the object itself.
pub struct Context {
    pub client: Client,
    pub settings: Settings,
    pub metrics: Arc<Metrics>,
    pub namespaces: Store<PartialObjectMeta<Namespace>>,
    pub network_policies: Store<NetworkPolicy>,
    recorder: Recorder,
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    pub fn new(
        client: Client,
        settings: Settings,
        metrics: Arc<Metrics>,
        namespaces: Store<PartialObjectMeta<Namespace>>,
        network_policies: Store<NetworkPolicy>,
    ) -> Self {
        let reporter = Reporter {
            controller: MANAGER.to_string(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            settings,
            metrics,
            namespaces,
            network_policies,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// The namespaces in the cache, with their labels.
    pub fn namespace_infos(&self) -> Vec<NamespaceInfo> {
        self.namespaces
            .state()
            .iter()
            .filter(|namespace| namespace.metadata.deletion_timestamp.is_none())
            .map(|namespace| NamespaceInfo::new(namespace.name_any(), namespace.labels().clone()))
            .collect()
    }

    /// The cached NetworkPolicies whose owner references include `owner_uid`.
    pub fn owned_network_policies(&self, owner_uid: &str) -> Vec<NetworkPolicy> {
        self.network_policies
            .state()
            .iter()
            .filter(|policy| {
                policy
                    .owner_references()
                    .iter()
                    .any(|owner| owner.uid == owner_uid)
            })
            .map(|policy| policy.as_ref().clone())
            .collect()
    }

    /// Publishes an Event about `object`, logging rather than failing when that is not possible.
    pub async fn publish<K>(&self, object: &K, event: Event)
    where
        K: Resource<DynamicType = ()>,
    {
        let reference = object.object_ref(&());
        if let Err(error) = self.recorder.publish(&event, &reference).await {
            tracing::warn!(reason = %event.reason, error = %error, "Failed to publish an Event");
        }
    }

    /// Records a failure of `key` and returns how long to wait before the next attempt:
    /// 1s, 2s, 4s and so on, up to five minutes.
    pub fn backoff(&self, key: &str) -> Duration {
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = failures.entry(key.to_string()).or_insert(0);
        *count = count.saturating_add(1);
        let seconds = 1u64 << (*count - 1).min(8);
        Duration::from_secs(seconds.min(300))
    }

    /// Forgets the failures of `key` after a successful reconcile.
    pub fn reset_backoff(&self, key: &str) {
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        failures.remove(key);
    }
}

/// A key for the failure count of an object.
pub fn backoff_key<K: Resource<DynamicType = ()>>(object: &K) -> String {
    ObjectRef::from_obj(object).to_string()
}
