//! The network compiler: NetworkPolicies from the `network` section of a policy.
//!
//! For every governed namespace it emits a default deny, DNS egress, the monitoring scrape paths,
//! the extra egress rules, and one policy per zone. A zone's policy contains both what the zone
//! accepts and the egress its pods need towards the zones that accept them. Every generated policy lists
//! exactly the policyTypes whose sections it contains.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta, OwnerReference,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::api::policy::{NetworkSpec, Peer, PortSpec, Protocol, Zone};

use super::names::{MAX_SUBDOMAIN_NAME, generated_labels, hex_digest, object_name};
use super::namespaces::{NAMESPACE_NAME_LABEL, NamespaceInfo};
use super::selector;

/// Identity of the policy being compiled.
#[derive(Clone, Debug)]
pub struct PolicyRef<'a> {
    /// metadata.name of the MediaNestSecurityPolicy.
    pub name: &'a str,
    /// Owner reference to stamp on generated objects; absent when rendering offline objects
    /// that have no uid yet.
    pub owner: Option<OwnerReference>,
}

/// Compiles the NetworkPolicies for `network` over the `governed` namespaces.
///
/// The result is sorted by namespace and name, so that equal inputs give equal output.
pub fn compile(
    policy: &PolicyRef<'_>,
    network: &NetworkSpec,
    governed: &[&NamespaceInfo],
) -> Vec<NetworkPolicy> {
    let mut builder = Builder {
        policy,
        out: BTreeMap::new(),
    };
    let zones = ZoneIndex::new(network, governed);

    for namespace in governed {
        if network.default_deny {
            builder.default_deny(&namespace.name);
        }
        if network.dns.enabled {
            builder.dns(&namespace.name, network);
        }
    }
    for zone in &network.zones {
        builder.zone(zone, network, &zones);
    }
    for zone in &network.zones {
        builder.namespace_sources(zone, governed, &zones);
    }
    if let Some(monitoring) = &network.monitoring {
        builder.monitoring(monitoring, governed);
    }
    for rule in &network.egress {
        builder.extra_egress(rule, governed);
    }

    builder.out.into_values().collect()
}

/// The namespaces each zone spans, by zone name.
struct ZoneIndex<'a> {
    namespaces: BTreeMap<&'a str, Vec<&'a str>>,
}

impl<'a> ZoneIndex<'a> {
    fn new(network: &'a NetworkSpec, governed: &[&'a NamespaceInfo]) -> Self {
        let namespaces = network
            .zones
            .iter()
            .map(|zone| {
                let spans: Vec<&str> = governed
                    .iter()
                    .filter(|namespace| {
                        zone.namespace_selector
                            .as_ref()
                            .is_none_or(|sel| selector::matches(sel, &namespace.labels))
                    })
                    .map(|namespace| namespace.name.as_str())
                    .collect();
                (zone.name.as_str(), spans)
            })
            .collect();
        Self { namespaces }
    }

    fn namespaces(&self, zone: &str) -> &[&'a str] {
        self.namespaces.get(zone).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Builds the peer that matches the pods of `zone` in all of its namespaces, if it has any.
    fn peer(&self, zone: &Zone) -> Option<NetworkPolicyPeer> {
        let namespaces = self.namespaces(&zone.name);
        if namespaces.is_empty() {
            return None;
        }
        Some(NetworkPolicyPeer {
            namespace_selector: Some(names_selector(namespaces)),
            pod_selector: Some(zone.pod_selector.clone()),
            ip_block: None,
        })
    }
}

/// Accumulates generated policies by (namespace, name).
struct Builder<'p, 'a> {
    policy: &'p PolicyRef<'a>,
    out: BTreeMap<(String, String), NetworkPolicy>,
}

impl Builder<'_, '_> {
    fn default_deny(&mut self, namespace: &str) {
        let mut policy = self.new_policy(
            namespace,
            &["default-deny"],
            "default-deny",
            LabelSelector::default(),
        );
        // Both types with no rules: every pod is isolated in both directions.
        let spec = policy.spec.get_or_insert_with(Default::default);
        add_policy_type(spec, "Ingress");
        add_policy_type(spec, "Egress");
        self.insert(policy);
    }

    fn dns(&mut self, namespace: &str, network: &NetworkSpec) {
        let mut policy = self.new_policy(namespace, &["dns"], "dns", LabelSelector::default());
        let peer = NetworkPolicyPeer {
            namespace_selector: Some(network.dns.namespace_selector.clone()),
            pod_selector: Some(network.dns.pod_selector.clone()),
            ip_block: None,
        };
        let ports = [Protocol::UDP, Protocol::TCP]
            .into_iter()
            .map(|protocol| NetworkPolicyPort {
                port: Some(IntOrString::Int(53)),
                protocol: Some(protocol.as_str().to_string()),
                end_port: None,
            })
            .collect();
        push_egress(&mut policy, vec![peer], Some(ports));
        self.insert(policy);
    }

    /// Emits, in each namespace of `zone`, its ingress rules and the egress its pods need to
    /// reach the zones that accept them.
    fn zone(&mut self, zone: &Zone, network: &NetworkSpec, zones: &ZoneIndex<'_>) {
        let ingress: Vec<NetworkPolicyIngressRule> = zone
            .ingress
            .iter()
            .filter_map(|rule| {
                let peers = ingress_peers(&rule.from, network, zones)?;
                Some(NetworkPolicyIngressRule {
                    from: peers,
                    ports: convert_ports(&rule.ports),
                })
            })
            .collect();

        let mut egress = Vec::new();
        for target in &network.zones {
            let Some(target_peer) = zones.peer(target) else {
                continue;
            };
            for rule in &target.ingress {
                let accepts_zone = rule
                    .from
                    .iter()
                    .any(|peer| peer.zone.as_deref() == Some(zone.name.as_str()));
                if accepts_zone {
                    egress.push(NetworkPolicyEgressRule {
                        to: Some(vec![target_peer.clone()]),
                        ports: convert_ports(&rule.ports),
                    });
                }
            }
        }

        if ingress.is_empty() && egress.is_empty() {
            return;
        }
        for namespace in zones.namespaces(&zone.name) {
            let mut policy = self.new_policy(
                namespace,
                &["zone", &zone.name],
                "zone",
                zone.pod_selector.clone(),
            );
            for rule in &ingress {
                push_ingress(
                    &mut policy,
                    rule.from.clone().unwrap_or_default(),
                    rule.ports.clone(),
                );
            }
            for rule in &egress {
                push_egress(
                    &mut policy,
                    rule.to.clone().unwrap_or_default(),
                    rule.ports.clone(),
                );
            }
            self.insert(policy);
        }
    }

    /// Emits the egress of pods in governed namespaces that a zone accepts through a
    /// namespaceSelector source, so that the path works from the sending side too.
    fn namespace_sources(
        &mut self,
        zone: &Zone,
        governed: &[&NamespaceInfo],
        zones: &ZoneIndex<'_>,
    ) {
        let Some(target_peer) = zones.peer(zone) else {
            return;
        };
        for rule in &zone.ingress {
            for source in &rule.from {
                let Some(namespace_selector) = &source.namespace_selector else {
                    continue;
                };
                let pod_selector = source.pod_selector.clone().unwrap_or_default();
                let selector_hash = selector_digest(&pod_selector);
                for namespace in governed
                    .iter()
                    .filter(|namespace| selector::matches(namespace_selector, &namespace.labels))
                {
                    let key_name = self.name(&["zone", &zone.name, "sources", &selector_hash]);
                    let key = (namespace.name.clone(), key_name);
                    let mut policy = match self.out.remove(&key) {
                        Some(existing) => existing,
                        None => self.new_policy(
                            &namespace.name,
                            &["zone", &zone.name, "sources", &selector_hash],
                            "zone-sources",
                            pod_selector.clone(),
                        ),
                    };
                    let egress = NetworkPolicyEgressRule {
                        to: Some(vec![target_peer.clone()]),
                        ports: convert_ports(&rule.ports),
                    };
                    let spec = policy.spec.get_or_insert_with(Default::default);
                    if !spec
                        .egress
                        .iter()
                        .flatten()
                        .any(|existing| *existing == egress)
                    {
                        push_egress(&mut policy, egress.to.unwrap_or_default(), egress.ports);
                    }
                    self.insert(policy);
                }
            }
        }
    }

    fn monitoring(
        &mut self,
        monitoring: &crate::api::policy::MonitoringSpec,
        governed: &[&NamespaceInfo],
    ) {
        if governed.is_empty() {
            return;
        }
        let targets = monitoring.target_pod_selector.clone().unwrap_or_default();
        let ports = convert_ports(&monitoring.ports);
        let scraper = NetworkPolicyPeer {
            namespace_selector: Some(monitoring.namespace_selector.clone()),
            pod_selector: Some(monitoring.pod_selector.clone()),
            ip_block: None,
        };

        for namespace in governed {
            let mut policy = self.new_policy(
                &namespace.name,
                &["monitoring"],
                "monitoring",
                targets.clone(),
            );
            push_ingress(&mut policy, vec![scraper.clone()], ports.clone());
            self.insert(policy);
        }

        let governed_names: Vec<&str> = governed
            .iter()
            .map(|namespace| namespace.name.as_str())
            .collect();
        let target_peer = NetworkPolicyPeer {
            namespace_selector: Some(names_selector(&governed_names)),
            pod_selector: Some(targets),
            ip_block: None,
        };
        for namespace in governed.iter().filter(|namespace| {
            selector::matches(&monitoring.namespace_selector, &namespace.labels)
        }) {
            let mut policy = self.new_policy(
                &namespace.name,
                &["monitoring", "egress"],
                "monitoring-egress",
                monitoring.pod_selector.clone(),
            );
            push_egress(&mut policy, vec![target_peer.clone()], ports.clone());
            self.insert(policy);
        }
    }

    fn extra_egress(&mut self, rule: &crate::api::policy::EgressRule, governed: &[&NamespaceInfo]) {
        let anywhere = rule.to.iter().any(|peer| peer.anywhere == Some(true));
        let peers: Vec<NetworkPolicyPeer> = if anywhere {
            Vec::new()
        } else {
            rule.to.iter().filter_map(external_peer).collect()
        };
        let ports = convert_ports(&rule.ports);
        for namespace in governed {
            let mut policy = self.new_policy(
                &namespace.name,
                &["egress", &rule.name],
                "egress",
                rule.pod_selector.clone().unwrap_or_default(),
            );
            push_egress(&mut policy, peers.clone(), ports.clone());
            self.insert(policy);
        }
    }

    fn name(&self, purpose: &[&str]) -> String {
        let mut parts = vec!["mn", self.policy.name];
        parts.extend_from_slice(purpose);
        object_name(&parts, MAX_SUBDOMAIN_NAME)
    }

    fn new_policy(
        &self,
        namespace: &str,
        purpose: &[&str],
        purpose_label: &str,
        pod_selector: LabelSelector,
    ) -> NetworkPolicy {
        NetworkPolicy {
            metadata: ObjectMeta {
                name: Some(self.name(purpose)),
                namespace: Some(namespace.to_string()),
                labels: Some(generated_labels(self.policy.name, purpose_label)),
                owner_references: self.policy.owner.clone().map(|owner| vec![owner]),
                ..ObjectMeta::default()
            },
            spec: Some(NetworkPolicySpec {
                pod_selector: Some(pod_selector),
                policy_types: Some(Vec::new()),
                ingress: None,
                egress: None,
            }),
        }
    }

    fn insert(&mut self, policy: NetworkPolicy) {
        let key = (
            policy.metadata.namespace.clone().unwrap_or_default(),
            policy.metadata.name.clone().unwrap_or_default(),
        );
        self.out.insert(key, policy);
    }
}

/// Appends an ingress rule and records the Ingress policy type.
fn push_ingress(
    policy: &mut NetworkPolicy,
    from: Vec<NetworkPolicyPeer>,
    ports: Option<Vec<NetworkPolicyPort>>,
) {
    let spec = policy.spec.get_or_insert_with(Default::default);
    spec.ingress
        .get_or_insert_with(Vec::new)
        .push(NetworkPolicyIngressRule {
            from: (!from.is_empty()).then_some(from),
            ports,
        });
    add_policy_type(spec, "Ingress");
}

/// Appends an egress rule and records the Egress policy type.
fn push_egress(
    policy: &mut NetworkPolicy,
    to: Vec<NetworkPolicyPeer>,
    ports: Option<Vec<NetworkPolicyPort>>,
) {
    let spec = policy.spec.get_or_insert_with(Default::default);
    spec.egress
        .get_or_insert_with(Vec::new)
        .push(NetworkPolicyEgressRule {
            to: (!to.is_empty()).then_some(to),
            ports,
        });
    add_policy_type(spec, "Egress");
}

/// Adds `kind` to policyTypes, keeping the order Ingress, Egress.
fn add_policy_type(spec: &mut NetworkPolicySpec, kind: &str) {
    let types = spec.policy_types.get_or_insert_with(Vec::new);
    if !types.iter().any(|existing| existing == kind) {
        types.push(kind.to_string());
        types.sort_by_key(|kind| if kind == "Ingress" { 0 } else { 1 });
    }
}

/// Converts the ingress sources of a zone rule into peers.
///
/// Returns `Some(empty)` for a rule that accepts anywhere (no `from` in the generated rule),
/// and `None` when every source is a zone without namespaces, so the rule opens nothing.
fn ingress_peers(
    sources: &[Peer],
    network: &NetworkSpec,
    zones: &ZoneIndex<'_>,
) -> Option<Option<Vec<NetworkPolicyPeer>>> {
    if sources.iter().any(|peer| peer.anywhere == Some(true)) {
        return Some(None);
    }

    let mut peers = Vec::new();
    for source in sources {
        if let Some(zone_name) = &source.zone {
            let zone = network.zones.iter().find(|zone| &zone.name == zone_name);
            if let Some(peer) = zone.and_then(|zone| zones.peer(zone)) {
                peers.push(peer);
            }
        } else if let Some(peer) = external_peer(source) {
            peers.push(peer);
        }
    }
    if peers.is_empty() {
        return None;
    }
    Some(Some(peers))
}

/// Converts a namespace or CIDR peer; zone and anywhere peers are handled by the callers.
fn external_peer(source: &Peer) -> Option<NetworkPolicyPeer> {
    if let Some(namespace_selector) = &source.namespace_selector {
        return Some(NetworkPolicyPeer {
            namespace_selector: Some(namespace_selector.clone()),
            pod_selector: source.pod_selector.clone(),
            ip_block: None,
        });
    }
    let cidr = source.cidr.as_ref()?;
    Some(NetworkPolicyPeer {
        namespace_selector: None,
        pod_selector: None,
        ip_block: Some(IPBlock {
            cidr: cidr.clone(),
            except: source.except.clone().filter(|except| !except.is_empty()),
        }),
    })
}

/// Converts ports, always naming the protocol so that the API server's TCP default never
/// makes the stored object differ from the generated one.
fn convert_ports(ports: &[PortSpec]) -> Option<Vec<NetworkPolicyPort>> {
    if ports.is_empty() {
        return None;
    }
    Some(
        ports
            .iter()
            .map(|port| NetworkPolicyPort {
                port: Some(port.port.clone()),
                protocol: Some(port.protocol.as_str().to_string()),
                end_port: port.end_port,
            })
            .collect(),
    )
}

/// Builds a namespace selector that matches exactly the named namespaces.
fn names_selector(names: &[&str]) -> LabelSelector {
    let mut values: Vec<String> = names.iter().map(|name| name.to_string()).collect();
    values.sort();
    values.dedup();
    LabelSelector {
        match_labels: None,
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: NAMESPACE_NAME_LABEL.to_string(),
            operator: "In".to_string(),
            values: Some(values),
        }]),
    }
}

/// Short, stable digest of a selector, used to name the egress policy of a source.
fn selector_digest(selector: &LabelSelector) -> String {
    let text = serde_json::to_string(selector).unwrap_or_default();
    hex_digest(text.as_bytes())[..8].to_string()
}

#[cfg(test)]
mod tests;
