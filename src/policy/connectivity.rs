//! Connectivity evaluator for `networking.k8s.io/v1` NetworkPolicy objects.
//!
//! Given a model of namespaces and pods, [`Cluster::evaluate`] decides whether one endpoint
//! may open a connection to another on a port and protocol. It follows the Kubernetes network
//! policy concept page and the NetworkPolicySpec API reference. Traffic passes only when the
//! source pod's egress and the destination pod's ingress both allow it. A direction that no
//! policy isolates allows everything.
//!
//! The model has no nodes, host-network pods or Services, so the upstream exception that
//! traffic to and from a pod's own node is always allowed is not modelled.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::selector;

pub use super::namespaces::NAMESPACE_NAME_LABEL;

/// Transport protocol of a connection or a port, as NetworkPolicy supports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// Parses the API spelling `TCP`, `UDP` or `SCTP`. Returns `None` for anything else,
    /// including other letter cases, which the API server rejects.
    pub fn from_api_name(name: &str) -> Option<Self> {
        match name {
            "TCP" => Some(Self::Tcp),
            "UDP" => Some(Self::Udp),
            "SCTP" => Some(Self::Sctp),
            _ => None,
        }
    }

    /// Returns the API spelling: `TCP`, `UDP` or `SCTP`.
    pub fn api_name(self) -> &'static str {
        match self {
            Self::Tcp => "TCP",
            Self::Udp => "UDP",
            Self::Sctp => "SCTP",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.api_name())
    }
}

/// Namespace in the cluster model.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Namespace {
    pub name: String,
    /// Labels as set by the user. The evaluator adds [`NAMESPACE_NAME_LABEL`] itself.
    pub labels: BTreeMap<String, String>,
}

impl Namespace {
    /// Creates a namespace without user labels.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            labels: BTreeMap::new(),
        }
    }

    /// Adds or replaces one label.
    pub fn with_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }
}

/// Named container port of a pod, which NetworkPolicy rules can refer to by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedPort {
    pub name: String,
    pub port: i32,
    pub protocol: Protocol,
}

/// Pod in the cluster model.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Pod IP address, which `ipBlock` peers match. `None` means ipBlock peers never match.
    pub ip: Option<IpAddr>,
    /// Named container ports, used to resolve named ports in rules.
    pub ports: Vec<NamedPort>,
}

impl Pod {
    /// Creates a pod without labels, IP address or ports.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            ..Self::default()
        }
    }

    /// Adds or replaces one label.
    pub fn with_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Sets the pod IP address.
    pub fn with_ip(mut self, ip: IpAddr) -> Self {
        self.ip = Some(ip);
        self
    }

    /// Adds a named container port.
    pub fn with_port(mut self, name: impl Into<String>, port: i32, protocol: Protocol) -> Self {
        self.ports.push(NamedPort {
            name: name.into(),
            port,
            protocol,
        });
        self
    }
}

/// Source or destination of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// Pod in [`Cluster::pods`], by namespace and name.
    Pod { namespace: String, name: String },
    /// Address outside the cluster model. Policies never isolate it.
    External(IpAddr),
}

impl Endpoint {
    /// Creates a pod endpoint.
    pub fn pod(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self::Pod {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pod { namespace, name } => write!(formatter, "pod {namespace}/{name}"),
            Self::External(ip) => write!(formatter, "external {ip}"),
        }
    }
}

/// Traffic direction as seen from the pod that a policy selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    /// Returns the `policyTypes` spelling: `Ingress` or `Egress`.
    pub fn policy_type(self) -> &'static str {
        match self {
            Self::Ingress => "Ingress",
            Self::Egress => "Egress",
        }
    }

    fn spec_field(self) -> &'static str {
        match self {
            Self::Ingress => "ingress",
            Self::Egress => "egress",
        }
    }
}

/// Outcome for one direction of a connection: egress of the source or ingress of the destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Allowed because the endpoint on this side is external, and policies never isolate it.
    External,
    /// Allowed because the connection goes from a pod to itself. The Kubernetes network policy
    /// docs state that a pod cannot block access to itself.
    SamePod,
    /// Allowed because no policy selects the pod for this direction.
    NotIsolated,
    /// Allowed by rule `spec.ingress[rule]` or `spec.egress[rule]` of `policy`.
    /// When several rules match, this is the first one in `policies` order, then rule order.
    Allowed {
        /// Policy as `namespace/name`.
        policy: String,
        rule: usize,
    },
    /// Denied because the pod is isolated for this direction and no rule matched.
    Denied {
        /// Every policy that selects the pod for this direction, as `namespace/name`.
        isolating_policies: Vec<String>,
    },
}

impl Decision {
    /// Returns `false` only for [`Decision::Denied`].
    pub fn is_allowed(&self) -> bool {
        !matches!(self, Self::Denied { .. })
    }
}

/// Result of [`Cluster::evaluate`] with the reason for each direction. Its `Display` form is
/// meant for test failure messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub from: Endpoint,
    pub to: Endpoint,
    pub port: u16,
    pub protocol: Protocol,
    /// Egress decision for `from`.
    pub egress: Decision,
    /// Ingress decision for `to`.
    pub ingress: Decision,
}

impl Verdict {
    /// Returns whether both the egress and the ingress decision allow the connection.
    pub fn is_allowed(&self) -> bool {
        self.egress.is_allowed() && self.ingress.is_allowed()
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let outcome = if self.is_allowed() {
            "allowed"
        } else {
            "denied"
        };
        write!(
            formatter,
            "{}/{} from {} to {} is {outcome}; egress from {}: ",
            self.protocol, self.port, self.from, self.to, self.from
        )?;
        write_decision(formatter, &self.egress, Direction::Egress)?;
        write!(formatter, "; ingress to {}: ", self.to)?;
        write_decision(formatter, &self.ingress, Direction::Ingress)
    }
}

fn write_decision(
    formatter: &mut fmt::Formatter<'_>,
    decision: &Decision,
    direction: Direction,
) -> fmt::Result {
    match decision {
        Decision::External => formatter.write_str("allowed, external endpoints are not isolated"),
        Decision::SamePod => formatter.write_str("allowed, a pod can always reach itself"),
        Decision::NotIsolated => write!(
            formatter,
            "allowed, no policy selects the pod for {}",
            direction.policy_type()
        ),
        Decision::Allowed { policy, rule } => write!(
            formatter,
            "allowed by {policy} spec.{}[{rule}]",
            direction.spec_field()
        ),
        Decision::Denied { isolating_policies } => write!(
            formatter,
            "denied, isolated by {} and no {} rule matched",
            isolating_policies.join(", "),
            direction.spec_field()
        ),
    }
}

/// Error from [`Cluster::evaluate`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectivityError {
    /// An endpoint names a pod that the cluster model does not contain.
    #[error("pod {namespace}/{name} not found in the cluster model: add it to Cluster::pods")]
    PodNotFound { namespace: String, name: String },
}

/// Cluster model that policies are evaluated against.
///
/// A pod whose namespace is missing from `namespaces` is treated as being in a namespace that
/// has only the [`NAMESPACE_NAME_LABEL`] label.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cluster {
    pub namespaces: Vec<Namespace>,
    pub pods: Vec<Pod>,
}

/// Endpoint with its pod looked up in the cluster model.
#[derive(Clone, Copy)]
enum ResolvedEndpoint<'a> {
    Pod(&'a Pod),
    External(IpAddr),
}

impl ResolvedEndpoint<'_> {
    fn ip(self) -> Option<IpAddr> {
        match self {
            Self::Pod(pod) => pod.ip,
            Self::External(ip) => Some(ip),
        }
    }
}

/// Connection attributes that every rule is checked against.
struct Connection<'a> {
    source: ResolvedEndpoint<'a>,
    destination: ResolvedEndpoint<'a>,
    port: u16,
    protocol: Protocol,
}

impl Cluster {
    /// Evaluates whether `from` may open a connection to `to` on `port` and `protocol` under
    /// `policies`, and returns the decision for each direction.
    ///
    /// Only policies in a pod's own namespace can select it. Policies without
    /// `metadata.namespace` select no pod. Returns [`ConnectivityError::PodNotFound`] when an
    /// endpoint names a pod that is not in [`Cluster::pods`].
    pub fn evaluate(
        &self,
        policies: &[NetworkPolicy],
        from: &Endpoint,
        to: &Endpoint,
        port: u16,
        protocol: Protocol,
    ) -> Result<Verdict, ConnectivityError> {
        let connection = Connection {
            source: self.resolve(from)?,
            destination: self.resolve(to)?,
            port,
            protocol,
        };

        let same_pod = matches!(from, Endpoint::Pod { .. }) && from == to;
        let (egress, ingress) = if same_pod {
            (Decision::SamePod, Decision::SamePod)
        } else {
            (
                self.decide(policies, Direction::Egress, &connection),
                self.decide(policies, Direction::Ingress, &connection),
            )
        };

        Ok(Verdict {
            from: from.clone(),
            to: to.clone(),
            port,
            protocol,
            egress,
            ingress,
        })
    }

    /// Returns whether `from` may open a connection to `to` on `port` and `protocol`.
    /// Call [`Cluster::evaluate`] for the reason.
    ///
    /// # Panics
    ///
    /// Panics when an endpoint names a pod that is not in [`Cluster::pods`], because a
    /// misspelled pod would otherwise read as denied traffic.
    pub fn allowed(
        &self,
        policies: &[NetworkPolicy],
        from: &Endpoint,
        to: &Endpoint,
        port: u16,
        protocol: Protocol,
    ) -> bool {
        match self.evaluate(policies, from, to, port, protocol) {
            Ok(verdict) => verdict.is_allowed(),
            Err(error) => panic!("cannot evaluate connectivity: {error}"),
        }
    }

    /// Returns the labels of namespace `name`, including [`NAMESPACE_NAME_LABEL`].
    pub fn namespace_labels(&self, name: &str) -> BTreeMap<String, String> {
        let mut labels = self
            .namespaces
            .iter()
            .find(|namespace| namespace.name == name)
            .map(|namespace| namespace.labels.clone())
            .unwrap_or_default();
        labels.insert(NAMESPACE_NAME_LABEL.to_owned(), name.to_owned());
        labels
    }

    fn resolve(&self, endpoint: &Endpoint) -> Result<ResolvedEndpoint<'_>, ConnectivityError> {
        match endpoint {
            Endpoint::External(ip) => Ok(ResolvedEndpoint::External(*ip)),
            Endpoint::Pod { namespace, name } => self
                .pods
                .iter()
                .find(|pod| pod.namespace == *namespace && pod.name == *name)
                .map(ResolvedEndpoint::Pod)
                .ok_or_else(|| ConnectivityError::PodNotFound {
                    namespace: namespace.clone(),
                    name: name.clone(),
                }),
        }
    }

    /// Decides one direction: egress checks the source pod's policies against the
    /// destination, ingress checks the destination pod's policies against the source.
    fn decide(
        &self,
        policies: &[NetworkPolicy],
        direction: Direction,
        connection: &Connection<'_>,
    ) -> Decision {
        let (subject, peer) = match direction {
            Direction::Egress => (connection.source, connection.destination),
            Direction::Ingress => (connection.destination, connection.source),
        };
        let ResolvedEndpoint::Pod(subject) = subject else {
            return Decision::External;
        };

        let default_spec = NetworkPolicySpec::default();
        let mut isolating_policies = Vec::new();
        for policy in policies {
            let spec = policy.spec.as_ref().unwrap_or(&default_spec);
            if !selects(policy, spec, subject) || !has_policy_type(spec, direction) {
                continue;
            }
            let policy_name = qualified_name(policy);
            let policy_namespace = policy.metadata.namespace.as_deref().unwrap_or_default();

            let matching_rule = rules(spec, direction)
                .into_iter()
                .position(|(peers, ports)| {
                    self.peers_match(peers, policy_namespace, peer)
                        && ports_match(ports, connection)
                });
            if let Some(rule) = matching_rule {
                return Decision::Allowed {
                    policy: policy_name,
                    rule,
                };
            }
            isolating_policies.push(policy_name);
        }

        if isolating_policies.is_empty() {
            Decision::NotIsolated
        } else {
            Decision::Denied { isolating_policies }
        }
    }

    /// Checks a rule's `from` or `to` list. An absent or empty list matches every peer.
    fn peers_match(
        &self,
        peers: Option<&[NetworkPolicyPeer]>,
        policy_namespace: &str,
        peer: ResolvedEndpoint<'_>,
    ) -> bool {
        match peers {
            None | Some([]) => true,
            Some(peers) => peers
                .iter()
                .any(|candidate| self.peer_matches(candidate, policy_namespace, peer)),
        }
    }

    /// Checks one peer entry. Entries that the API server rejects match nothing: an entry with
    /// no field set, and an `ipBlock` combined with a selector.
    fn peer_matches(
        &self,
        candidate: &NetworkPolicyPeer,
        policy_namespace: &str,
        peer: ResolvedEndpoint<'_>,
    ) -> bool {
        let pod_selector = candidate.pod_selector.as_ref();
        let namespace_selector = candidate.namespace_selector.as_ref();

        if let Some(ip_block) = &candidate.ip_block {
            if pod_selector.is_some() || namespace_selector.is_some() {
                return false;
            }
            // NOTE: the Kubernetes docs say ipBlock should name cluster-external IPs because pod
            // IPs are ephemeral, so a real network plugin may not match pod IPs this way. This
            // model matches a pod's IP like any other address.
            return peer.ip().is_some_and(|ip| ip_block_contains(ip_block, ip));
        }

        if pod_selector.is_none() && namespace_selector.is_none() {
            return false;
        }
        let ResolvedEndpoint::Pod(pod) = peer else {
            return false;
        };
        self.pod_matches(pod, pod_selector, namespace_selector, policy_namespace)
    }

    /// Checks a selector peer. `namespaceSelector` alone selects every pod in the matching
    /// namespaces, `podSelector` alone selects pods in the policy's namespace, and both
    /// together select pods that satisfy each.
    fn pod_matches(
        &self,
        pod: &Pod,
        pod_selector: Option<&LabelSelector>,
        namespace_selector: Option<&LabelSelector>,
        policy_namespace: &str,
    ) -> bool {
        let namespace_matches = match namespace_selector {
            Some(namespace_selector) => {
                selector::matches(namespace_selector, &self.namespace_labels(&pod.namespace))
            }
            None => pod.namespace == policy_namespace,
        };

        namespace_matches
            && pod_selector.is_none_or(|pod_selector| selector::matches(pod_selector, &pod.labels))
    }
}

/// Checks whether `policy` selects `pod`: same namespace and a matching `spec.podSelector`.
/// An absent podSelector is the empty selector, which selects every pod in the namespace.
fn selects(policy: &NetworkPolicy, spec: &NetworkPolicySpec, pod: &Pod) -> bool {
    if policy.metadata.namespace.as_deref() != Some(pod.namespace.as_str()) {
        return false;
    }
    spec.pod_selector
        .as_ref()
        .is_none_or(|pod_selector| selector::matches(pod_selector, &pod.labels))
}

/// Checks the effective `policyTypes`. An absent or empty list defaults the way the API server
/// does: `Ingress` always, plus `Egress` when `spec.egress` has at least one rule, so
/// `egress: []` alone does not isolate egress.
fn has_policy_type(spec: &NetworkPolicySpec, direction: Direction) -> bool {
    match spec.policy_types.as_deref() {
        Some(types) if !types.is_empty() => {
            types.iter().any(|name| name == direction.policy_type())
        }
        _ => match direction {
            Direction::Ingress => true,
            Direction::Egress => spec.egress.as_ref().is_some_and(|rules| !rules.is_empty()),
        },
    }
}

/// `from` or `to` peers and `ports` of one rule.
type RulePeersAndPorts<'a> = (
    Option<&'a [NetworkPolicyPeer]>,
    Option<&'a [NetworkPolicyPort]>,
);

/// Lists the rules for `direction` in spec order, so a rule's position is its index.
fn rules(spec: &NetworkPolicySpec, direction: Direction) -> Vec<RulePeersAndPorts<'_>> {
    match direction {
        Direction::Ingress => spec
            .ingress
            .iter()
            .flatten()
            .map(|rule| (rule.from.as_deref(), rule.ports.as_deref()))
            .collect(),
        Direction::Egress => spec
            .egress
            .iter()
            .flatten()
            .map(|rule| (rule.to.as_deref(), rule.ports.as_deref()))
            .collect(),
    }
}

/// Checks whether `ip` is inside `ipBlock.cidr` and outside every `except` entry. A block with
/// an unparsable CIDR matches nothing. A CIDR of the other IP family never contains `ip`.
fn ip_block_contains(ip_block: &IPBlock, ip: IpAddr) -> bool {
    let Ok(cidr) = ip_block.cidr.parse::<IpNet>() else {
        return false;
    };
    if !cidr.contains(&ip) {
        return false;
    }

    ip_block.except.iter().flatten().all(|except| {
        except
            .parse::<IpNet>()
            .is_ok_and(|except| !except.contains(&ip))
    })
}

/// Checks a rule's `ports` list. An absent or empty list matches every port and protocol.
fn ports_match(ports: Option<&[NetworkPolicyPort]>, connection: &Connection<'_>) -> bool {
    match ports {
        None | Some([]) => true,
        Some(ports) => ports.iter().any(|port| port_matches(port, connection)),
    }
}

/// Checks one `ports` entry. The protocol defaults to TCP, and an entry without `port` matches
/// every port of its protocol. A named port resolves against the destination pod's container
/// ports by name and protocol, for ingress and egress rules alike. Entries that the API server
/// rejects match nothing: an unknown protocol, and `endPort` without a numeric `port`.
fn port_matches(rule_port: &NetworkPolicyPort, connection: &Connection<'_>) -> bool {
    let protocol = match rule_port.protocol.as_deref() {
        None => Some(Protocol::Tcp),
        Some(name) => Protocol::from_api_name(name),
    };
    if protocol != Some(connection.protocol) {
        return false;
    }

    let requested = i32::from(connection.port);
    match (&rule_port.port, rule_port.end_port) {
        (None, None) => true,
        (Some(IntOrString::Int(port)), None) => requested == *port,
        (Some(IntOrString::Int(port)), Some(end_port)) => (*port..=end_port).contains(&requested),
        (Some(IntOrString::String(name)), None) => match connection.destination {
            ResolvedEndpoint::Pod(pod) => pod.ports.iter().any(|container_port| {
                container_port.name == *name
                    && container_port.protocol == connection.protocol
                    && container_port.port == requested
            }),
            ResolvedEndpoint::External(_) => false,
        },
        (None, Some(_)) | (Some(IntOrString::String(_)), Some(_)) => false,
    }
}

fn qualified_name(policy: &NetworkPolicy) -> String {
    let namespace = policy.metadata.namespace.as_deref().unwrap_or_default();
    let name = policy.metadata.name.as_deref().unwrap_or("<unnamed>");
    format!("{namespace}/{name}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    const TCP: Protocol = Protocol::Tcp;
    const UDP: Protocol = Protocol::Udp;
    const SCTP: Protocol = Protocol::Sctp;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("test IP address must parse")
    }

    fn pod(namespace: &str, name: &str) -> Endpoint {
        Endpoint::pod(namespace, name)
    }

    fn external(text: &str) -> Endpoint {
        Endpoint::External(ip(text))
    }

    fn policy(namespace: &str, name: &str, spec: Value) -> NetworkPolicy {
        serde_json::from_value(json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"namespace": namespace, "name": name},
            "spec": spec,
        }))
        .expect("test policy must deserialize")
    }

    /// Namespaces media, db and monitoring with team labels, kube-system with only the
    /// implied name label, and a pod in namespace staging, which is deliberately not listed.
    fn cluster() -> Cluster {
        Cluster {
            namespaces: vec![
                Namespace::new("media").with_label("team", "media"),
                Namespace::new("db").with_label("team", "data"),
                Namespace::new("monitoring")
                    .with_label("team", "ops")
                    .with_label("purpose", "monitoring"),
                Namespace::new("kube-system"),
            ],
            pods: vec![
                Pod::new("media", "web")
                    .with_label("app", "web")
                    .with_ip(ip("10.1.0.10"))
                    .with_port("http", 8080, TCP),
                Pod::new("media", "api")
                    .with_label("app", "api")
                    .with_ip(ip("10.1.0.20"))
                    .with_port("http", 9000, TCP)
                    .with_port("metrics", 9090, TCP),
                Pod::new("media", "worker").with_label("app", "worker"),
                Pod::new("media", "prometheus")
                    .with_label("app", "prometheus")
                    .with_ip(ip("10.1.0.30")),
                Pod::new("db", "postgres")
                    .with_label("app", "postgres")
                    .with_ip(ip("10.2.0.10"))
                    .with_port("pg", 5432, TCP),
                Pod::new("db", "api")
                    .with_label("app", "api")
                    .with_ip(ip("10.2.0.20"))
                    .with_port("http", 9000, TCP),
                Pod::new("db", "prometheus")
                    .with_label("app", "prometheus")
                    .with_ip(ip("10.2.0.30")),
                Pod::new("monitoring", "prometheus")
                    .with_label("app", "prometheus")
                    .with_ip(ip("10.3.0.10")),
                Pod::new("monitoring", "grafana")
                    .with_label("app", "grafana")
                    .with_ip(ip("10.3.0.20")),
                Pod::new("kube-system", "coredns")
                    .with_label("k8s-app", "kube-dns")
                    .with_ip(ip("10.96.0.10"))
                    .with_port("dns", 53, UDP)
                    .with_port("dns-tcp", 53, TCP)
                    .with_port("metrics", 9153, TCP),
                Pod::new("staging", "web")
                    .with_label("app", "web")
                    .with_ip(ip("10.9.0.10")),
                Pod::new("media", "v6")
                    .with_label("app", "v6")
                    .with_ip(ip("fd00::10")),
            ],
        }
    }

    /// Parses `"<from> -> <to> <PROTOCOL>/<port> allow|deny"`, where an endpoint is an IP
    /// address or `namespace/name`, and checks the outcome against the fixture cluster.
    fn check(policies: &[NetworkPolicy], rows: &[&str]) {
        let cluster = cluster();
        for row in rows {
            let fields: Vec<&str> = row.split_whitespace().collect();
            let [from, "->", to, port, outcome] = fields[..] else {
                panic!(
                    "invalid test row {row:?}: expected \"<from> -> <to> <PROTOCOL>/<port> allow|deny\""
                );
            };
            let from = parse_endpoint(from);
            let to = parse_endpoint(to);
            let (protocol, port) = port.split_once('/').expect("port must be PROTOCOL/number");
            let protocol =
                Protocol::from_api_name(protocol).expect("protocol must be TCP, UDP or SCTP");
            let port: u16 = port.parse().expect("port number must be a u16");
            let expected = match outcome {
                "allow" => true,
                "deny" => false,
                _ => panic!("invalid test row {row:?}: outcome must be allow or deny"),
            };

            let verdict = cluster
                .evaluate(policies, &from, &to, port, protocol)
                .unwrap_or_else(|error| panic!("row {row:?}: {error}"));
            assert_eq!(verdict.is_allowed(), expected, "row {row:?}: {verdict}");
            assert_eq!(
                cluster.allowed(policies, &from, &to, port, protocol),
                expected,
                "row {row:?}: allowed() disagrees with evaluate()"
            );
        }
    }

    fn parse_endpoint(text: &str) -> Endpoint {
        if let Ok(ip) = text.parse() {
            return Endpoint::External(ip);
        }
        let (namespace, name) = text
            .split_once('/')
            .unwrap_or_else(|| panic!("endpoint {text:?} must be an IP address or namespace/name"));
        Endpoint::pod(namespace, name)
    }

    #[test]
    fn no_policies_allow_all() {
        check(
            &[],
            &[
                "media/web -> db/postgres TCP/5432 allow", // pod to pod
                "media/web -> 203.0.113.7 TCP/443 allow",  // pod to external
                "203.0.113.7 -> media/web TCP/8080 allow", // external to pod
                "media/web -> media/api SCTP/9000 allow",  // sctp
            ],
        );
    }

    #[test]
    fn default_deny_plus_allow() {
        let policies = [
            policy(
                "db",
                "default-deny",
                json!({"podSelector": {}, "policyTypes": ["Ingress"]}),
            ),
            policy(
                "db",
                "allow-media-to-postgres",
                json!({
                    "podSelector": {"matchLabels": {"app": "postgres"}},
                    "ingress": [{
                        "from": [{"namespaceSelector": {"matchLabels": {"team": "media"}},
                                  "podSelector": {"matchLabels": {"app": "api"}}}],
                        "ports": [{"port": 5432}]
                    }]
                }),
            ),
        ];
        check(
            &policies,
            &[
                "media/api -> db/postgres TCP/5432 allow",  // allowed path
                "media/web -> db/postgres TCP/5432 deny",   // wrong source pod
                "media/api -> db/postgres TCP/5433 deny",   // wrong port
                "media/api -> db/postgres UDP/5432 deny",   // wrong protocol
                "db/api -> db/postgres TCP/5432 deny",      // same namespace denied
                "media/api -> db/api TCP/9000 deny",        // other db pod denied
                "203.0.113.7 -> db/postgres TCP/5432 deny", // external denied
                "db/postgres -> media/api TCP/9000 allow",  // egress from db open
            ],
        );
    }

    #[test]
    fn peer_and_vs_or() {
        let one_peer_both_selectors = [policy(
            "db",
            "and",
            json!({
                "podSelector": {"matchLabels": {"app": "postgres"}},
                "ingress": [{"from": [{
                    "namespaceSelector": {"matchLabels": {"team": "ops"}},
                    "podSelector": {"matchLabels": {"app": "prometheus"}}
                }]}]
            }),
        )];
        check(
            &one_peer_both_selectors,
            &[
                "monitoring/prometheus -> db/postgres TCP/9187 allow", // and: both match
                "monitoring/grafana -> db/postgres TCP/9187 deny",     // and: namespace only
                "db/prometheus -> db/postgres TCP/9187 deny", // and: pod in policy namespace
                "media/prometheus -> db/postgres TCP/9187 deny", // and: pod elsewhere
            ],
        );

        let two_peers = [policy(
            "db",
            "or",
            json!({
                "podSelector": {"matchLabels": {"app": "postgres"}},
                "ingress": [{"from": [
                    {"namespaceSelector": {"matchLabels": {"team": "ops"}}},
                    {"podSelector": {"matchLabels": {"app": "prometheus"}}}
                ]}]
            }),
        )];
        check(
            &two_peers,
            &[
                "monitoring/prometheus -> db/postgres TCP/9187 allow", // or: both match
                "monitoring/grafana -> db/postgres TCP/9187 allow",    // or: namespace only
                "db/prometheus -> db/postgres TCP/9187 allow", // or: pod in policy namespace
                "media/prometheus -> db/postgres TCP/9187 deny", // or: pod in other namespace
                "media/web -> db/postgres TCP/9187 deny",      // or: neither
            ],
        );
    }

    #[test]
    fn namespace_selector_alone() {
        let policies = [policy(
            "db",
            "from-ops",
            json!({
                "podSelector": {},
                "ingress": [{"from": [{"namespaceSelector": {
                    "matchExpressions": [{"key": "team", "operator": "In", "values": ["ops", "media"]}]
                }}]}]
            }),
        )];
        check(
            &policies,
            &[
                "monitoring/grafana -> db/api TCP/9000 allow", // ops namespace
                "media/worker -> db/api TCP/9000 allow",       // media namespace
                "db/prometheus -> db/api TCP/9000 deny",       // own namespace not included
                "kube-system/coredns -> db/api TCP/9000 deny", // unlabelled namespace
                "staging/web -> db/api TCP/9000 deny",         // unlisted namespace
                "10.1.0.10 -> db/api TCP/9000 deny",           // external
            ],
        );

        let all_namespaces = [policy(
            "db",
            "from-any-namespace",
            json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {}}]}]}),
        )];
        check(
            &all_namespaces,
            &[
                "db/prometheus -> db/api TCP/9000 allow", // own namespace
                "staging/web -> db/api TCP/9000 allow",   // unlisted namespace
                "kube-system/coredns -> db/api TCP/9000 allow", // unlabelled namespace
                "203.0.113.7 -> db/api TCP/9000 deny",    // external
            ],
        );
    }

    #[test]
    fn namespace_name_label_implied() {
        let policies = [policy(
            "db",
            "by-name",
            json!({
                "podSelector": {},
                "ingress": [{"from": [{"namespaceSelector": {"matchExpressions": [{
                    "key": "kubernetes.io/metadata.name",
                    "operator": "In",
                    "values": ["kube-system", "staging"]
                }]}}]}]
            }),
        )];
        check(
            &policies,
            &[
                "kube-system/coredns -> db/api TCP/9000 allow", // listed namespace
                "staging/web -> db/api TCP/9000 allow",         // unlisted namespace
                "media/web -> db/api TCP/9000 deny",            // other name
            ],
        );
    }

    #[test]
    fn policy_types_absent() {
        let ingress_only = [policy(
            "media",
            "ingress-only",
            json!({"podSelector": {"matchLabels": {"app": "web"}}}),
        )];
        check(
            &ingress_only,
            &[
                "media/api -> media/web TCP/8080 deny",    // ingress isolated
                "media/web -> db/postgres TCP/5432 allow", // egress not isolated
            ],
        );

        let egress_section = [policy(
            "media",
            "egress-section",
            json!({
                "podSelector": {"matchLabels": {"app": "web"}},
                "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "api"}}}]}]
            }),
        )];
        check(
            &egress_section,
            &[
                "media/web -> media/api TCP/9000 allow", // egress rule matches
                "media/web -> db/postgres TCP/5432 deny", // egress isolated
                "media/api -> media/web TCP/8080 deny",  // ingress still isolated
            ],
        );

        let empty_egress_list = [policy(
            "media",
            "empty-egress",
            json!({"podSelector": {"matchLabels": {"app": "web"}}, "egress": []}),
        )];
        check(
            &empty_egress_list,
            &[
                "media/web -> db/postgres TCP/5432 allow", // empty egress list
                "media/api -> media/web TCP/8080 deny",    // ingress isolated
            ],
        );

        let empty_types_list = [policy(
            "media",
            "empty-types",
            json!({
                "podSelector": {"matchLabels": {"app": "web"}},
                "policyTypes": [],
                "egress": [{"ports": [{"port": 53, "protocol": "UDP"}]}]
            }),
        )];
        check(
            &empty_types_list,
            &[
                "media/web -> db/postgres TCP/5432 deny", // empty list defaults
                "media/web -> kube-system/coredns UDP/53 allow", // egress rule matches
                "media/api -> media/web TCP/8080 deny",   // ingress isolated
            ],
        );
    }

    #[test]
    fn egress_only_isolation() {
        let policies = [policy(
            "media",
            "deny-egress",
            json!({"podSelector": {}, "policyTypes": ["Egress"]}),
        )];
        check(
            &policies,
            &[
                "media/web -> db/postgres TCP/5432 deny",  // egress denied
                "media/web -> media/api TCP/9000 deny",    // egress to same namespace denied
                "media/web -> 203.0.113.7 TCP/443 deny",   // egress to external denied
                "db/postgres -> media/web TCP/8080 allow", // ingress open
                "203.0.113.7 -> media/web TCP/8080 allow", // ingress from external open
                "db/api -> media/api TCP/9000 allow",      // ingress rules ignored
            ],
        );

        let types_ignore_ingress_rules = [policy(
            "media",
            "egress-type-with-ingress-rules",
            json!({
                "podSelector": {"matchLabels": {"app": "api"}},
                "policyTypes": ["Egress"],
                "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}]}],
                "egress": [{"to": [{"podSelector": {}}]}]
            }),
        )];
        check(
            &types_ignore_ingress_rules,
            &[
                "db/api -> media/api TCP/9000 allow",     // ingress not isolated
                "media/api -> media/web TCP/8080 allow",  // egress within namespace
                "media/api -> db/postgres TCP/5432 deny", // egress elsewhere denied
            ],
        );
    }

    #[test]
    fn both_directions_required() {
        let policies = [
            policy(
                "media",
                "web-egress",
                json!({
                    "podSelector": {"matchLabels": {"app": "web"}},
                    "policyTypes": ["Egress"],
                    "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"team": "data"}}}]}]
                }),
            ),
            policy(
                "db",
                "postgres-ingress",
                json!({
                    "podSelector": {"matchLabels": {"app": "postgres"}},
                    "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "ops"}}}]}]
                }),
            ),
        ];
        check(
            &policies,
            &[
                "media/web -> db/postgres TCP/5432 deny", // egress yes ingress no
                "media/web -> db/api TCP/9000 allow",     // egress yes ingress open
                "media/web -> monitoring/grafana TCP/3000 deny", // egress no ingress yes
                "monitoring/grafana -> db/postgres TCP/5432 allow", // egress open ingress yes
            ],
        );
    }

    #[test]
    fn ip_block_except() {
        let policies = [policy(
            "media",
            "web-egress",
            json!({
                "podSelector": {"matchLabels": {"app": "web"}},
                "policyTypes": ["Egress"],
                "egress": [{"to": [
                    {"ipBlock": {"cidr": "203.0.113.0/24", "except": ["203.0.113.128/25", "203.0.113.7/32"]}},
                    {"ipBlock": {"cidr": "2001:db8::/32"}},
                    {"ipBlock": {"cidr": "10.2.0.0/16", "except": ["10.2.0.20/32"]}}
                ]}]
            }),
        )];
        check(
            &policies,
            &[
                "media/web -> 203.0.113.8 TCP/443 allow",  // inside cidr
                "media/web -> 203.0.113.0 TCP/443 allow",  // network address
                "media/web -> 203.0.113.200 TCP/443 deny", // in except range
                "media/web -> 203.0.113.128 TCP/443 deny", // except range start
                "media/web -> 203.0.113.7 TCP/443 deny",   // single except
                "media/web -> 198.51.100.1 TCP/443 deny",  // outside cidr
                "media/web -> 2001:db8::1 TCP/443 allow",  // ipv6 inside
                "media/web -> 2001:db9::1 TCP/443 deny",   // ipv6 outside
                "media/web -> db/postgres TCP/5432 allow", // pod ip inside
                "media/web -> db/api TCP/9000 deny",       // pod ip in except
                "media/web -> media/api TCP/9000 deny",    // pod ip outside
            ],
        );

        let ingress = [policy(
            "media",
            "api-ingress",
            json!({
                "podSelector": {"matchLabels": {"app": "api"}},
                "ingress": [{"from": [{"ipBlock": {"cidr": "10.1.0.0/24"}}]}]
            }),
        )];
        check(
            &ingress,
            &[
                "10.1.0.99 -> media/api TCP/9000 allow", // external source inside
                "10.1.1.1 -> media/api TCP/9000 deny",   // external source outside
                "media/web -> media/api TCP/9000 allow", // pod source with ip
                "media/worker -> media/api TCP/9000 deny", // pod source without ip
                "media/v6 -> media/api TCP/9000 deny",   // ipv6 pod source
            ],
        );

        let internet_only = [policy(
            "media",
            "internet-only",
            json!({
                "podSelector": {"matchLabels": {"app": "web"}},
                "policyTypes": ["Egress"],
                "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}]}]
            }),
        )];
        check(
            &internet_only,
            &[
                "media/web -> 203.0.113.7 TCP/443 allow", // public address
                "media/web -> 10.200.0.1 TCP/443 deny",   // private range excepted
                "media/web -> db/postgres TCP/5432 deny", // pod ip excepted
                "media/web -> media/worker TCP/80 deny",  // pod without ip
                "media/web -> 2001:db8::1 TCP/443 deny",  // ipv6 outside ipv4 cidr
            ],
        );
    }

    #[test]
    fn ip_block_invalid_peers() {
        let policies = [policy(
            "media",
            "invalid-peers",
            json!({
                "podSelector": {"matchLabels": {"app": "api"}},
                "ingress": [{"from": [
                    {"ipBlock": {"cidr": "not-a-cidr"}},
                    {"ipBlock": {"cidr": "10.3.0.10"}},
                    {"ipBlock": {"cidr": "10.9.0.0/16", "except": ["bogus"]}},
                    {"ipBlock": {"cidr": "10.1.0.0/16"}, "podSelector": {}},
                    {}
                ]}]
            }),
        )];
        check(
            &policies,
            &[
                "10.3.0.10 -> media/api TCP/9000 deny",   // unparsable cidr
                "staging/web -> media/api TCP/9000 deny", // unparsable except
                "media/web -> media/api TCP/9000 deny",   // ipBlock with selector
                "db/api -> media/api TCP/9000 deny",      // empty peer
            ],
        );
    }

    #[test]
    fn end_port_range() {
        let policies = [policy(
            "media",
            "api-range",
            json!({
                "podSelector": {"matchLabels": {"app": "api"}},
                "ingress": [{"ports": [
                    {"port": 8000, "endPort": 8010},
                    {"port": 30000, "endPort": 32767, "protocol": "UDP"},
                    {"port": 9500, "endPort": 9400}
                ]}]
            }),
        )];
        check(
            &policies,
            &[
                "media/web -> media/api TCP/7999 deny",   // below range
                "media/web -> media/api TCP/8000 allow",  // range start
                "media/web -> media/api TCP/8005 allow",  // inside range
                "media/web -> media/api TCP/8010 allow",  // range end
                "media/web -> media/api TCP/8011 deny",   // above range
                "media/web -> media/api UDP/8005 deny",   // default protocol is tcp
                "media/web -> media/api UDP/32767 allow", // udp range
                "media/web -> media/api TCP/30000 deny",  // udp range wrong protocol
                "media/web -> media/api TCP/9500 deny",   // inverted range start
                "media/web -> media/api TCP/9400 deny",   // inverted range end
            ],
        );

        let invalid = [policy(
            "media",
            "end-port-invalid",
            json!({
                "podSelector": {"matchLabels": {"app": "api"}},
                "ingress": [{"ports": [{"endPort": 9100}, {"port": "http", "endPort": 9100}]}]
            }),
        )];
        check(
            &invalid,
            &[
                "media/web -> media/api TCP/9050 deny", // endPort without port
                "media/web -> media/api TCP/9000 deny", // endPort with named port
            ],
        );
    }

    #[test]
    fn named_ports() {
        let ingress = [policy(
            "media",
            "named-ingress",
            json!({
                "podSelector": {},
                "ingress": [{"ports": [{"port": "http"}, {"port": "metrics", "protocol": "UDP"}]}]
            }),
        )];
        check(
            &ingress,
            &[
                "db/api -> media/web TCP/8080 allow",   // web http
                "db/api -> media/api TCP/9000 allow",   // api http
                "db/api -> media/api TCP/8080 deny",    // api port of web http
                "db/api -> media/web TCP/9000 deny",    // name resolves per destination
                "db/api -> media/api UDP/9000 deny",    // http over udp
                "db/api -> media/api TCP/9090 deny",    // metrics protocol mismatch tcp
                "db/api -> media/api UDP/9090 deny",    // metrics protocol mismatch udp
                "db/api -> media/worker TCP/8080 deny", // pod without ports
            ],
        );

        let egress = [policy(
            "media",
            "named-egress",
            json!({
                "podSelector": {"matchLabels": {"app": "web"}},
                "policyTypes": ["Egress"],
                "egress": [{"ports": [{"port": "pg"}, {"port": "dns", "protocol": "UDP"}]}]
            }),
        )];
        check(
            &egress,
            &[
                "media/web -> db/postgres TCP/5432 allow", // destination port name
                "media/web -> db/api TCP/5432 deny",       // destination lacks name
                "media/web -> 203.0.113.7 TCP/5432 deny",  // external never matches
                "media/web -> kube-system/coredns UDP/53 allow", // dns udp by name
                "media/web -> kube-system/coredns TCP/53 deny", // dns tcp by udp name
            ],
        );

        let source_name = [policy(
            "media",
            "source-name",
            json!({
                "podSelector": {"matchLabels": {"app": "web"}},
                "policyTypes": ["Egress"],
                "egress": [{"ports": [{"port": "http"}]}]
            }),
        )];
        check(
            &source_name,
            &[
                "media/web -> media/api TCP/9000 allow", // resolves on destination
                "media/web -> media/api TCP/8080 deny",  // source number unused
            ],
        );
    }

    #[test]
    fn empty_pod_selector() {
        let policies = [
            policy(
                "media",
                "all-pods",
                json!({"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]}),
            ),
            policy("db", "no-pod-selector", json!({"policyTypes": ["Ingress"]})),
        ];
        check(
            &policies,
            &[
                "media/api -> media/web TCP/8080 allow", // same namespace allowed
                "db/api -> media/web TCP/8080 deny",     // other namespace denied
                "db/api -> media/worker TCP/80 deny",    // any label selected
                "media/api -> db/postgres TCP/5432 deny", // absent podSelector selects all
                "db/api -> db/postgres TCP/5432 deny",   // absent podSelector same namespace
            ],
        );
    }

    #[test]
    fn other_namespace_policy() {
        let policies = [
            policy(
                "db",
                "deny-all",
                json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
            ),
            policy(
                "monitoring",
                "app-web",
                json!({"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress", "Egress"]}),
            ),
        ];
        check(
            &policies,
            &[
                "monitoring/grafana -> media/web TCP/8080 allow", // media ingress open
                "media/web -> monitoring/grafana TCP/3000 allow", // media egress open
                "media/api -> staging/web TCP/80 allow",          // staging web not selected
                "media/web -> db/api TCP/9000 deny",              // db pods isolated
                "db/api -> media/web TCP/8080 deny",              // db egress isolated
            ],
        );
    }

    #[test]
    fn dns_udp_vs_tcp() {
        let policies = [
            policy(
                "media",
                "deny-egress",
                json!({"podSelector": {}, "policyTypes": ["Egress"]}),
            ),
            policy(
                "media",
                "allow-dns",
                json!({
                    "podSelector": {},
                    "policyTypes": ["Egress"],
                    "egress": [{
                        "to": [{
                            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}
                        }],
                        "ports": [{"port": 53, "protocol": "UDP"}]
                    }]
                }),
            ),
        ];
        check(
            &policies,
            &[
                "media/web -> kube-system/coredns UDP/53 allow", // dns over udp
                "media/web -> kube-system/coredns TCP/53 deny",  // dns over tcp
                "media/web -> kube-system/coredns SCTP/53 deny", // dns over sctp
                "media/web -> kube-system/coredns UDP/9153 deny", // coredns other port
                "media/web -> 198.51.100.53 UDP/53 deny",        // external resolver
            ],
        );

        let with_tcp = [
            policies[0].clone(),
            policy(
                "media",
                "allow-dns-both",
                json!({
                    "podSelector": {},
                    "policyTypes": ["Egress"],
                    "egress": [{"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}]
                }),
            ),
        ];
        check(
            &with_tcp,
            &[
                "media/web -> 198.51.100.53 UDP/53 allow", // both: udp
                "media/web -> 198.51.100.53 TCP/53 allow", // both: tcp
                "media/web -> 198.51.100.53 TCP/853 deny", // both: other port
            ],
        );
    }

    #[test]
    fn rule_matches_everything() {
        let policies = [
            policy(
                "media",
                "any-ingress",
                json!({"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{}]}),
            ),
            policy(
                "media",
                "empty-lists",
                json!({"podSelector": {"matchLabels": {"app": "api"}}, "ingress": [{"from": [], "ports": []}]}),
            ),
            policy(
                "media",
                "port-without-number",
                json!({
                    "podSelector": {"matchLabels": {"app": "worker"}},
                    "ingress": [{"ports": [{"protocol": "UDP"}]}]
                }),
            ),
        ];
        check(
            &policies,
            &[
                "db/api -> media/web TCP/1 allow",            // empty rule any pod
                "198.51.100.1 -> media/web SCTP/65535 allow", // empty rule external
                "198.51.100.1 -> media/api UDP/22 allow",     // empty lists
                "db/api -> media/worker UDP/5000 allow",      // protocol only udp
                "db/api -> media/worker TCP/5000 deny",       // protocol only tcp
            ],
        );
    }

    #[test]
    fn policies_union_rules() {
        let policies = [
            policy(
                "db",
                "from-web",
                json!({
                    "podSelector": {"matchLabels": {"app": "postgres"}},
                    "ingress": [{"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "web"}}}]}]
                }),
            ),
            policy(
                "db",
                "from-api",
                json!({
                    "podSelector": {"matchLabels": {"app": "postgres"}},
                    "ingress": [
                        {"from": [{"podSelector": {"matchLabels": {"app": "grafana"}}}]},
                        {"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "api"}}}]}
                    ]
                }),
            ),
        ];
        check(
            &policies,
            &[
                "media/web -> db/postgres TCP/5432 allow",   // first policy
                "staging/web -> db/postgres TCP/5432 allow", // first policy staging
                "media/api -> db/postgres TCP/5432 allow",   // second policy
                "monitoring/grafana -> db/postgres TCP/5432 deny", // neither
            ],
        );
    }

    #[test]
    fn protocol_unknown_or_lowercase() {
        let policies = [policy(
            "media",
            "bad-protocol",
            json!({
                "podSelector": {"matchLabels": {"app": "api"}},
                "ingress": [{"ports": [
                    {"port": 9000, "protocol": "tcp"},
                    {"port": 9000, "protocol": "ICMP"},
                    {"port": 9001, "protocol": "TCP"}
                ]}]
            }),
        )];
        check(
            &policies,
            &[
                "media/web -> media/api TCP/9000 deny", // lowercase and unknown protocol
                "media/web -> media/api TCP/9001 allow", // valid entry still applies
            ],
        );
    }

    #[test]
    fn spec_or_namespace_missing() {
        let no_spec: NetworkPolicy = serde_json::from_value(json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"namespace": "db", "name": "no-spec"}
        }))
        .expect("policy without spec must deserialize");
        check(
            &[no_spec],
            &[
                "media/web -> db/postgres TCP/5432 deny",  // ingress denied
                "db/postgres -> media/web TCP/8080 allow", // egress open
            ],
        );

        let no_namespace: NetworkPolicy = serde_json::from_value(json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "no-namespace"},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
        }))
        .expect("policy without namespace must deserialize");
        check(
            &[no_namespace],
            &["media/web -> db/postgres TCP/5432 allow"],
        );
    }

    #[test]
    fn self_traffic_allowed() {
        let policies = [policy(
            "media",
            "deny-all",
            json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
        )];
        check(
            &policies,
            &[
                "media/web -> media/web TCP/8080 allow", // pod to itself
                "media/web -> media/api TCP/9000 deny",  // pod to neighbour
            ],
        );

        let verdict = cluster()
            .evaluate(
                &policies,
                &pod("media", "web"),
                &pod("media", "web"),
                8080,
                TCP,
            )
            .expect("pod exists");
        assert_eq!(verdict.egress, Decision::SamePod);
        assert_eq!(verdict.ingress, Decision::SamePod);
    }

    #[test]
    fn external_never_isolated() {
        let policies = [policy(
            "media",
            "deny-all",
            json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
        )];
        check(
            &policies,
            &[
                "198.51.100.1 -> 203.0.113.7 TCP/443 allow", // external to external
                "198.51.100.1 -> media/web TCP/8080 deny",   // external to isolated pod
                "198.51.100.1 -> db/api TCP/9000 allow",     // external to open pod
            ],
        );

        let verdict = cluster()
            .evaluate(
                &policies,
                &external("198.51.100.1"),
                &pod("db", "api"),
                9000,
                TCP,
            )
            .expect("pod exists");
        assert_eq!(verdict.egress, Decision::External);
        assert_eq!(verdict.ingress, Decision::NotIsolated);
    }

    #[test]
    fn verdict_names_rule() {
        let policies = [
            policy(
                "db",
                "default-deny",
                json!({"podSelector": {}, "policyTypes": ["Ingress"]}),
            ),
            policy(
                "db",
                "allow-api",
                json!({
                    "podSelector": {"matchLabels": {"app": "postgres"}},
                    "ingress": [
                        {"from": [{"podSelector": {"matchLabels": {"app": "grafana"}}}]},
                        {"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "api"}}}],
                         "ports": [{"port": "pg"}]}
                    ]
                }),
            ),
        ];
        let cluster = cluster();

        let allowed = cluster
            .evaluate(
                &policies,
                &pod("media", "api"),
                &pod("db", "postgres"),
                5432,
                TCP,
            )
            .expect("pods exist");
        assert_eq!(allowed.egress, Decision::NotIsolated);
        assert_eq!(
            allowed.ingress,
            Decision::Allowed {
                policy: "db/allow-api".to_owned(),
                rule: 1
            }
        );
        assert_eq!(
            allowed.to_string(),
            "TCP/5432 from pod media/api to pod db/postgres is allowed; \
             egress from pod media/api: allowed, no policy selects the pod for Egress; \
             ingress to pod db/postgres: allowed by db/allow-api spec.ingress[1]"
        );

        let denied = cluster
            .evaluate(
                &policies,
                &pod("media", "web"),
                &pod("db", "postgres"),
                5432,
                TCP,
            )
            .expect("pods exist");
        assert_eq!(
            denied.ingress,
            Decision::Denied {
                isolating_policies: vec!["db/default-deny".to_owned(), "db/allow-api".to_owned()]
            }
        );
        assert!(!denied.is_allowed());
        assert_eq!(
            denied.to_string(),
            "TCP/5432 from pod media/web to pod db/postgres is denied; \
             egress from pod media/web: allowed, no policy selects the pod for Egress; \
             ingress to pod db/postgres: denied, isolated by db/default-deny, db/allow-api \
             and no ingress rule matched"
        );
    }

    #[test]
    fn unknown_pod_error() {
        let error = cluster()
            .evaluate(
                &[],
                &pod("media", "missing"),
                &pod("db", "postgres"),
                5432,
                TCP,
            )
            .expect_err("missing source pod must be reported");
        assert_eq!(
            error,
            ConnectivityError::PodNotFound {
                namespace: "media".to_owned(),
                name: "missing".to_owned()
            }
        );
        assert_eq!(
            error.to_string(),
            "pod media/missing not found in the cluster model: add it to Cluster::pods"
        );

        let error = cluster()
            .evaluate(
                &[],
                &external("198.51.100.1"),
                &pod("db", "missing"),
                5432,
                TCP,
            )
            .expect_err("missing destination pod must be reported");
        assert!(matches!(error, ConnectivityError::PodNotFound { .. }));
    }

    #[test]
    #[should_panic(expected = "pod db/missing not found")]
    fn allowed_panics_unknown_pod() {
        cluster().allowed(&[], &pod("media", "web"), &pod("db", "missing"), 5432, TCP);
    }

    #[test]
    fn protocol_api_names() {
        for protocol in [TCP, UDP, SCTP] {
            assert_eq!(Protocol::from_api_name(protocol.api_name()), Some(protocol));
        }
        assert_eq!(Protocol::from_api_name("tcp"), None);
        assert_eq!(Protocol::from_api_name("ICMP"), None);
        assert_eq!(UDP.to_string(), "UDP");
    }
}
