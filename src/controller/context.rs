//! State shared by the reconcilers: the client, caches of watched objects, settings, metrics.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::Api;
use kube::Client;
use kube::core::PartialObjectMeta;
use kube::runtime::events::{Event, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};

use crate::api::{MediaNestSecurityPolicy, SecretRotation};
use crate::policy::hardening::WorkloadId;
use crate::policy::names::{MANAGER, POLICY_LABEL};
use crate::policy::namespaces::NamespaceInfo;
use crate::telemetry::Metrics;

use super::rollouts::RolloutLimiter;
use super::workload::Workload;

/// Settings of a running operator.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Namespace the operator runs in; it is protected from policies.
    pub operator_namespace: String,
    /// Interval of the periodic reconcile that catches anything a watch missed.
    pub resync_interval: Duration,
    /// Label selector limiting which MediaNestSecurityPolicies this instance reconciles.
    pub policy_selector: Option<String>,
    /// Shortest certificate lifetime a policy may ask for.
    pub min_certificate_lifetime: Duration,
    /// Shortest rotation interval a SecretRotation may ask for.
    pub min_rotation_interval: Duration,
    /// Consumer restarts under way at once in one namespace.
    pub max_concurrent_restarts: usize,
}

/// Caches of the objects the workloads step reads.
#[derive(Clone)]
pub struct WorkloadStores {
    pub deployments: Store<Deployment>,
    pub stateful_sets: Store<StatefulSet>,
    pub daemon_sets: Store<DaemonSet>,
    pub cron_jobs: Store<CronJob>,
    pub jobs: Store<Job>,
    pub pods: Store<PartialObjectMeta<Pod>>,
    /// Services, by metadata, for choosing which get certificates.
    pub services: Store<PartialObjectMeta<Service>>,
    /// Secrets the operator generated (the cache holds only those with its label).
    pub secrets: Store<Secret>,
    /// ConfigMaps the operator generated (the cache holds only those with its label).
    pub config_maps: Store<ConfigMap>,
}

/// Everything a reconcile needs besides the object itself.
pub struct Context {
    pub client: Client,
    pub settings: Settings,
    pub metrics: Arc<Metrics>,
    pub namespaces: Store<PartialObjectMeta<Namespace>>,
    pub network_policies: Store<NetworkPolicy>,
    pub policies: Store<MediaNestSecurityPolicy>,
    pub rotations: Store<SecretRotation>,
    pub workloads: WorkloadStores,
    pub rollouts: RolloutLimiter,
    recorder: Recorder,
    failures: Mutex<HashMap<String, u32>>,
    /// The key of the value hashes, read or created once.
    hash_key: tokio::sync::Mutex<Option<Vec<u8>>>,
    /// Specs of bare Pods by uid, read once each: the Pod cache holds metadata only, and a
    /// Pod's spec does not change in the ways hardening checks.
    bare_pods: Mutex<HashMap<String, Arc<Pod>>>,
}

impl Context {
    pub fn new(
        client: Client,
        settings: Settings,
        metrics: Arc<Metrics>,
        caches: &super::Caches,
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
            namespaces: caches.namespaces.clone(),
            network_policies: caches.network_policies.clone(),
            policies: caches.policies.clone(),
            rotations: caches.rotations.clone(),
            workloads: caches.workloads.clone(),
            hash_key: tokio::sync::Mutex::new(None),
            rollouts: RolloutLimiter::default(),
            failures: Mutex::new(HashMap::new()),
            bare_pods: Mutex::new(HashMap::new()),
        }
    }

    /// The cached workloads of the hardened kinds in `namespaces`.
    pub fn workloads_in(&self, namespaces: &[String]) -> Vec<Workload> {
        let within = |namespace: Option<String>| {
            namespace.is_some_and(|namespace| namespaces.contains(&namespace))
        };
        let stores = &self.workloads;
        let mut found: Vec<Workload> = Vec::new();
        found.extend(
            stores
                .deployments
                .state()
                .into_iter()
                .filter(|o| within(o.namespace()))
                .map(Workload::Deployment),
        );
        found.extend(
            stores
                .stateful_sets
                .state()
                .into_iter()
                .filter(|o| within(o.namespace()))
                .map(Workload::StatefulSet),
        );
        found.extend(
            stores
                .daemon_sets
                .state()
                .into_iter()
                .filter(|o| within(o.namespace()))
                .map(Workload::DaemonSet),
        );
        found.extend(
            stores
                .cron_jobs
                .state()
                .into_iter()
                .filter(|o| within(o.namespace()))
                .map(Workload::CronJob),
        );
        found.sort_by_key(|workload| workload.id());
        found
    }

    /// The cached Jobs in `namespaces`.
    pub fn jobs_in(&self, namespaces: &[String]) -> Vec<Arc<Job>> {
        let mut jobs: Vec<Arc<Job>> = self
            .workloads
            .jobs
            .state()
            .into_iter()
            .filter(|job| {
                job.namespace()
                    .is_some_and(|namespace| namespaces.contains(&namespace))
            })
            .collect();
        jobs.sort_by_key(|job| (job.namespace(), job.name_any()));
        jobs
    }

    /// The Pods in `namespaces` that no controller owns, with their specs. Each Pod's spec is
    /// read from the API server the first time it is seen.
    pub async fn bare_pods_in(&self, namespaces: &[String]) -> Vec<Arc<Pod>> {
        let mut pods = Vec::new();
        for meta in self.workloads.pods.state() {
            let namespace = meta.namespace().unwrap_or_default();
            if !namespaces.contains(&namespace) || !meta.owner_references().is_empty() {
                continue;
            }
            let uid = meta.uid().unwrap_or_default();
            let cached = {
                let bare_pods = self
                    .bare_pods
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                bare_pods.get(&uid).cloned()
            };
            let pod = match cached {
                Some(pod) => pod,
                None => match Api::<Pod>::namespaced(self.client.clone(), &namespace)
                    .get_opt(&meta.name_any())
                    .await
                {
                    Ok(Some(pod)) => {
                        let pod = Arc::new(pod);
                        let mut bare_pods = self
                            .bare_pods
                            .lock()
                            .unwrap_or_else(|poisoned| poisoned.into_inner());
                        bare_pods.insert(uid, pod.clone());
                        pod
                    }
                    Ok(None) => continue,
                    Err(error) => {
                        tracing::warn!(namespace, pod = meta.name_any(), error = %error, "Failed to read a bare Pod");
                        continue;
                    }
                },
            };
            pods.push(pod);
        }
        pods.sort_by_key(|pod| (pod.namespace(), pod.name_any()));
        pods
    }

    /// Returns whether `id` has rolled out the template at `generation` or later.
    pub fn rolled_out(&self, id: &WorkloadId, generation: i64) -> bool {
        self.workloads_in(std::slice::from_ref(&id.namespace))
            .into_iter()
            .find(|workload| workload.id() == *id)
            .is_none_or(|workload| workload.generation() >= generation && workload.rolled_out())
    }

    /// The key of the value hashes of generated Secrets, from the Secret
    /// medianest-operator-hash-key in the operator's namespace, which is created with 32
    /// random bytes when missing.
    pub async fn hash_key(&self) -> Result<Vec<u8>, super::error::Error> {
        use k8s_openapi::ByteString;
        use kube::api::PostParams;

        let mut cached = self.hash_key.lock().await;
        if let Some(key) = cached.as_ref() {
            return Ok(key.clone());
        }
        let namespace = &self.settings.operator_namespace;
        let name = super::rotation::HASH_KEY_SECRET;
        let label = format!("{namespace}/{name}");
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let read = |source| super::error::Error::ReadSecret {
            secret: label.clone(),
            source,
        };
        let existing = api.get_opt(name).await.map_err(read)?;
        let key = match existing
            .and_then(|secret| secret.data?.get("key").map(|value| value.0.clone()))
        {
            Some(key) if key.len() >= 32 => key,
            _ => {
                let value = crate::policy::generators::random_bytes(
                    32,
                    crate::policy::generators::Encoding::Raw,
                )
                .map_err(|error| super::error::Error::GenerateKey {
                    what: "hash".to_string(),
                    message: error.to_string(),
                })?;
                let secret = Secret {
                    metadata: kube::api::ObjectMeta {
                        name: Some(name.to_string()),
                        labels: Some(std::collections::BTreeMap::from([(
                            crate::policy::names::MANAGED_BY_LABEL.to_string(),
                            MANAGER.to_string(),
                        )])),
                        ..Default::default()
                    },
                    data: Some(std::collections::BTreeMap::from([(
                        "key".to_string(),
                        ByteString(value.expose().to_vec()),
                    )])),
                    ..Default::default()
                };
                let params = PostParams {
                    field_manager: Some(MANAGER.to_string()),
                    ..PostParams::default()
                };
                match api.create(&params, &secret).await {
                    Ok(_) => value.expose().to_vec(),
                    // Another replica created it first: use that one.
                    Err(kube::Error::Api(status)) if status.code == 409 => api
                        .get(name)
                        .await
                        .map_err(read)?
                        .data
                        .and_then(|data| data.get("key").map(|value| value.0.clone()))
                        .unwrap_or_default(),
                    Err(source) => {
                        return Err(super::error::Error::ApplySecret {
                            secret: label.clone(),
                            source,
                        });
                    }
                }
            }
        };
        *cached = Some(key.clone());
        Ok(key)
    }

    /// The cached Services of `namespaces`, for the certificate planner.
    pub fn service_infos(
        &self,
        namespaces: &[String],
    ) -> Vec<crate::policy::certificates::ServiceInfo> {
        self.workloads
            .services
            .state()
            .iter()
            .filter(|service| service.metadata.deletion_timestamp.is_none())
            .filter_map(|service| {
                let namespace = service.namespace()?;
                namespaces
                    .contains(&namespace)
                    .then(|| crate::policy::certificates::ServiceInfo {
                        namespace,
                        name: service.name_any(),
                        labels: service.labels().clone(),
                    })
            })
            .collect()
    }

    /// A Secret the operator generated, from the cache.
    pub fn cached_secret(&self, namespace: &str, name: &str) -> Option<Arc<Secret>> {
        self.workloads
            .secrets
            .get(&ObjectRef::new(name).within(namespace))
    }

    /// A ConfigMap the operator generated, from the cache.
    pub fn cached_config_map(&self, namespace: &str, name: &str) -> Option<Arc<ConfigMap>> {
        self.workloads
            .config_maps
            .get(&ObjectRef::new(name).within(namespace))
    }

    /// Returns whether the ConfigMap `name` in every one of `namespaces` contains `cert_pem`.
    pub fn bundles_contain(&self, namespaces: &[String], name: &str, cert_pem: &str) -> bool {
        namespaces.iter().all(|namespace| {
            self.cached_config_map(namespace, name)
                .and_then(|map| map.data.clone())
                .and_then(|data| data.get("ca.crt").cloned())
                .is_some_and(|bundle| bundle.contains(cert_pem.trim()))
        })
    }

    /// Labels of a cached namespace.
    pub fn namespace_labels(&self, name: &str) -> BTreeMap<String, String> {
        self.namespaces
            .get(&ObjectRef::new(name))
            .map(|namespace| namespace.labels().clone())
            .unwrap_or_default()
    }

    /// Annotations of a cached namespace.
    pub fn namespace_annotations(&self, name: &str) -> BTreeMap<String, String> {
        self.namespaces
            .get(&ObjectRef::new(name))
            .map(|namespace| namespace.annotations().clone())
            .unwrap_or_default()
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

    /// The cached NetworkPolicies generated for the policy `name` with uid `owner_uid`: those
    /// with its owner reference or its label. The cache holds only objects with the
    /// managed-by label.
    pub fn owned_network_policies(&self, name: &str, owner_uid: &str) -> Vec<NetworkPolicy> {
        self.network_policies
            .state()
            .iter()
            .filter(|policy| {
                let owned = policy
                    .owner_references()
                    .iter()
                    .any(|owner| owner.uid == owner_uid);
                let labelled = policy
                    .labels()
                    .get(POLICY_LABEL)
                    .is_some_and(|label| label == name);
                owned || labelled
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
