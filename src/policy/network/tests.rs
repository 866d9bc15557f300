use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Deserialize;

use super::{PolicyRef, compile};
use crate::api::MediaNestSecurityPolicy;
use crate::policy::connectivity::{Cluster, Endpoint, Namespace as EvalNamespace, Pod, Protocol};
use crate::policy::namespaces::{NamespaceInfo, governed};

const EXAMPLE_NAMESPACES: &str = include_str!("../../../manifests/examples/namespaces.yaml");
const EXAMPLE_POLICY: &str = include_str!("../../../manifests/examples/policy.yaml");

fn example_policy() -> MediaNestSecurityPolicy {
    serde_yaml::from_str(EXAMPLE_POLICY).expect("example policy parses")
}

fn example_namespaces() -> Vec<NamespaceInfo> {
    let mut namespaces: Vec<NamespaceInfo> = serde_yaml::Deserializer::from_str(EXAMPLE_NAMESPACES)
        .map(|document| {
            let namespace = Namespace::deserialize(document).expect("example namespace parses");
            NamespaceInfo::new(
                namespace.metadata.name.unwrap(),
                namespace.metadata.labels.unwrap_or_default(),
            )
        })
        .collect();
    for name in [
        "kube-system",
        "kube-public",
        "kube-node-lease",
        "default",
        "medianest-system",
    ] {
        namespaces.push(NamespaceInfo::new(name, BTreeMap::new()));
    }
    namespaces
}

fn compile_policy(
    policy: &MediaNestSecurityPolicy,
    namespaces: &[NamespaceInfo],
) -> Vec<NetworkPolicy> {
    let governed = governed(&policy.spec, namespaces, "medianest-system");
    let reference = PolicyRef {
        name: policy.metadata.name.as_deref().unwrap(),
        owner: None,
    };
    compile(&reference, &policy.spec.network, &governed)
}

fn keys(policies: &[NetworkPolicy]) -> BTreeSet<(String, String)> {
    policies
        .iter()
        .map(|policy| {
            (
                policy.metadata.namespace.clone().unwrap(),
                policy.metadata.name.clone().unwrap(),
            )
        })
        .collect()
}

fn find<'a>(policies: &'a [NetworkPolicy], namespace: &str, name: &str) -> &'a NetworkPolicy {
    policies
        .iter()
        .find(|policy| {
            policy.metadata.namespace.as_deref() == Some(namespace)
                && policy.metadata.name.as_deref() == Some(name)
        })
        .unwrap_or_else(|| panic!("no NetworkPolicy {namespace}/{name}"))
}

/// Builds the example cluster for the evaluator: one pod per role.
fn example_cluster() -> Cluster {
    let namespaces = example_namespaces()
        .into_iter()
        .map(|namespace| {
            namespace
                .labels
                .into_iter()
                .fold(EvalNamespace::new(namespace.name), |ns, (key, value)| {
                    ns.with_label(key, value)
                })
        })
        .collect();
    let component = "app.kubernetes.io/component";
    let name = "app.kubernetes.io/name";
    let pods = vec![
        Pod::new("medianest-dmz", "proxy")
            .with_label(component, "reverse-proxy")
            .with_port("metrics", 9113, Protocol::Tcp),
        Pod::new("medianest-dmz", "stray"),
        Pod::new("medianest-app", "api")
            .with_label(component, "api")
            .with_port("http", 8080, Protocol::Tcp)
            .with_port("metrics", 9100, Protocol::Tcp),
        Pod::new("medianest-app", "api-2")
            .with_label(component, "api")
            .with_port("http", 8080, Protocol::Tcp),
        Pod::new("medianest-app", "worker").with_label(component, "worker"),
        Pod::new("medianest-data", "postgres")
            .with_label(name, "postgresql")
            .with_port("metrics", 9187, Protocol::Tcp),
        Pod::new("medianest-data", "redis").with_label(name, "redis"),
        Pod::new("medianest-monitoring", "prometheus").with_label(name, "prometheus"),
        Pod::new("kube-system", "coredns").with_label("k8s-app", "kube-dns"),
        Pod::new("default", "outsider").with_label(component, "api"),
    ];
    Cluster { namespaces, pods }
}

#[test]
fn example_emits_expected_objects() {
    let policies = compile_policy(&example_policy(), &example_namespaces());
    let names = keys(&policies);
    let expected: BTreeSet<(String, String)> = [
        ("medianest-app", "mn-medianest-default-deny"),
        ("medianest-app", "mn-medianest-dns"),
        ("medianest-app", "mn-medianest-egress-external-https"),
        ("medianest-app", "mn-medianest-monitoring"),
        ("medianest-app", "mn-medianest-zone-app"),
        ("medianest-data", "mn-medianest-default-deny"),
        ("medianest-data", "mn-medianest-dns"),
        ("medianest-data", "mn-medianest-egress-external-https"),
        ("medianest-data", "mn-medianest-monitoring"),
        ("medianest-data", "mn-medianest-zone-database"),
        ("medianest-dmz", "mn-medianest-default-deny"),
        ("medianest-dmz", "mn-medianest-dns"),
        ("medianest-dmz", "mn-medianest-egress-external-https"),
        ("medianest-dmz", "mn-medianest-monitoring"),
        ("medianest-dmz", "mn-medianest-zone-dmz"),
        ("medianest-monitoring", "mn-medianest-default-deny"),
        ("medianest-monitoring", "mn-medianest-dns"),
        ("medianest-monitoring", "mn-medianest-egress-external-https"),
        ("medianest-monitoring", "mn-medianest-monitoring"),
        ("medianest-monitoring", "mn-medianest-monitoring-egress"),
    ]
    .into_iter()
    .map(|(namespace, name)| (namespace.to_string(), name.to_string()))
    .collect();
    assert_eq!(names, expected);
}

#[test]
fn policy_types_match_sections() {
    let policies = compile_policy(&example_policy(), &example_namespaces());
    for policy in &policies {
        let spec = policy.spec.as_ref().unwrap();
        let types = spec.policy_types.clone().unwrap_or_default();
        let name = policy.metadata.name.as_deref().unwrap();
        let has_ingress = spec.ingress.as_ref().is_some_and(|rules| !rules.is_empty());
        let has_egress = spec.egress.as_ref().is_some_and(|rules| !rules.is_empty());
        if name.ends_with("default-deny") {
            assert_eq!(types, ["Ingress", "Egress"], "{name}");
            assert!(!has_ingress, "{name} must have no ingress rules");
            assert!(!has_egress, "{name} must have no egress rules");
            continue;
        }
        assert_eq!(
            types.contains(&"Ingress".to_string()),
            has_ingress,
            "{name}: {types:?}"
        );
        assert_eq!(
            types.contains(&"Egress".to_string()),
            has_egress,
            "{name}: {types:?}"
        );
        assert!(
            spec.ingress.is_none() || has_ingress,
            "{name} has an empty ingress list"
        );
        assert!(
            spec.egress.is_none() || has_egress,
            "{name} has an empty egress list"
        );
    }
}

#[test]
fn dns_peer_has_both_selectors() {
    let policies = compile_policy(&example_policy(), &example_namespaces());
    let dns = find(&policies, "medianest-app", "mn-medianest-dns");
    let egress = dns.spec.as_ref().unwrap().egress.as_ref().unwrap();
    assert_eq!(egress.len(), 1);
    let peers = egress[0].to.as_ref().unwrap();
    assert_eq!(peers.len(), 1, "one peer carrying both selectors");
    assert!(peers[0].namespace_selector.is_some());
    assert!(peers[0].pod_selector.is_some());
    let protocols: Vec<&str> = egress[0]
        .ports
        .as_ref()
        .unwrap()
        .iter()
        .map(|port| port.protocol.as_deref().unwrap())
        .collect();
    assert_eq!(protocols, ["UDP", "TCP"]);
}

#[test]
fn dns_reachable_on_udp_and_tcp_only() {
    let policies = compile_policy(&example_policy(), &example_namespaces());
    let cluster = example_cluster();
    let api = Endpoint::pod("medianest-app", "api");
    let coredns = Endpoint::pod("kube-system", "coredns");
    let outsider = Endpoint::pod("default", "outsider");
    assert!(cluster.allowed(&policies, &api, &coredns, 53, Protocol::Udp));
    assert!(cluster.allowed(&policies, &api, &coredns, 53, Protocol::Tcp));
    assert!(!cluster.allowed(&policies, &api, &coredns, 54, Protocol::Udp));
    // The pod selector narrows the namespace selector: another pod in a namespace that is
    // not kube-system must not be reachable on 53.
    let verdict = cluster
        .evaluate(&policies, &api, &outsider, 53, Protocol::Udp)
        .unwrap();
    assert!(!verdict.is_allowed(), "{verdict}");
}

#[test]
fn zone_paths_open_both_ways_and_nothing_else() {
    let policies = compile_policy(&example_policy(), &example_namespaces());
    let cluster = example_cluster();
    let internet: IpAddr = "203.0.113.7".parse().unwrap();
    let private: IpAddr = "10.1.2.3".parse().unwrap();
    let pod = |namespace: &str, name: &str| Endpoint::pod(namespace, name);
    let proxy = pod("medianest-dmz", "proxy");
    let stray = pod("medianest-dmz", "stray");
    let api = pod("medianest-app", "api");
    let worker = pod("medianest-app", "worker");
    let api_peer = pod("medianest-app", "api-2");
    let postgres = pod("medianest-data", "postgres");
    let redis = pod("medianest-data", "redis");
    let prometheus = pod("medianest-monitoring", "prometheus");
    let outsider = pod("default", "outsider");
    let external = Endpoint::External(internet);
    let internal = Endpoint::External(private);

    let cases: Vec<(&str, &Endpoint, &Endpoint, u16, bool)> = vec![
        ("internet to proxy 443", &external, &proxy, 443, true),
        ("internet to proxy 80", &external, &proxy, 80, true),
        ("internet to proxy 8443", &external, &proxy, 8443, false),
        ("internet to unzoned dmz pod", &external, &stray, 443, false),
        ("proxy to api on named port", &proxy, &api, 8080, true),
        ("proxy to api on another port", &proxy, &api, 9100, false),
        ("proxy to worker", &proxy, &worker, 8080, false),
        ("api to proxy (reverse path)", &api, &proxy, 443, false),
        ("api to postgres", &api, &postgres, 5432, true),
        ("api to redis", &api, &redis, 6379, true),
        ("api to postgres on 22", &api, &postgres, 22, false),
        (
            "postgres to api (reverse path)",
            &postgres,
            &api,
            8080,
            false,
        ),
        (
            "proxy to postgres (skips a zone)",
            &proxy,
            &postgres,
            5432,
            false,
        ),
        (
            "worker to postgres (not in zone)",
            &worker,
            &postgres,
            5432,
            false,
        ),
        ("outsider to postgres", &outsider, &postgres, 5432, false),
        ("outsider to api", &outsider, &api, 8080, false),
        (
            "api to api peer (zone not listing itself)",
            &api,
            &api_peer,
            8080,
            false,
        ),
        (
            "postgres to redis (same zone, not listed)",
            &postgres,
            &redis,
            6379,
            false,
        ),
        (
            "prometheus scrapes api metrics",
            &prometheus,
            &api,
            9100,
            true,
        ),
        (
            "prometheus scrapes postgres metrics",
            &prometheus,
            &postgres,
            9187,
            true,
        ),
        (
            "prometheus to postgres 5432",
            &prometheus,
            &postgres,
            5432,
            false,
        ),
        ("api to internet 443", &api, &external, 443, true),
        ("api to internet 80", &api, &external, 80, false),
        ("api to private address", &api, &internal, 443, false),
        ("worker to internet", &worker, &external, 443, false),
        ("postgres to internet", &postgres, &external, 443, false),
    ];
    for (label, from, to, port, expected) in cases {
        let verdict = cluster
            .evaluate(&policies, from, to, port, Protocol::Tcp)
            .unwrap();
        assert_eq!(verdict.is_allowed(), expected, "{label}: {verdict}");
    }
}

#[test]
fn named_ports_stay_names() {
    let policies = compile_policy(&example_policy(), &example_namespaces());
    let app = find(&policies, "medianest-app", "mn-medianest-zone-app");
    let ingress = app.spec.as_ref().unwrap().ingress.as_ref().unwrap();
    let port = ingress[0].ports.as_ref().unwrap()[0].port.clone();
    assert_eq!(port, Some(IntOrString::String("http".into())));

    let dmz = find(&policies, "medianest-dmz", "mn-medianest-zone-dmz");
    let egress = dmz.spec.as_ref().unwrap().egress.as_ref().unwrap();
    let port = egress[0].ports.as_ref().unwrap()[0].port.clone();
    assert_eq!(
        port,
        Some(IntOrString::String("http".into())),
        "egress side keeps the name too"
    );
}

#[test]
fn zone_reverse_path_not_opened() {
    let policies = compile_policy(&example_policy(), &example_namespaces());
    // The app zone's policy contains its ingress (from dmz) and egress (to database) only.
    let app = find(&policies, "medianest-app", "mn-medianest-zone-app");
    let spec = app.spec.as_ref().unwrap();
    assert_eq!(spec.policy_types.clone().unwrap(), ["Ingress", "Egress"]);
    assert_eq!(spec.ingress.as_ref().unwrap().len(), 1);
    assert_eq!(spec.egress.as_ref().unwrap().len(), 1);
    // The database zone sends nothing: ingress only.
    let database = find(&policies, "medianest-data", "mn-medianest-zone-database");
    let types = database
        .spec
        .as_ref()
        .unwrap()
        .policy_types
        .clone()
        .unwrap();
    assert_eq!(types, ["Ingress"]);
}

#[test]
fn zone_listing_itself_opens_pod_to_pod() {
    let mut policy = example_policy();
    let database = policy
        .spec
        .network
        .zones
        .iter_mut()
        .find(|zone| zone.name == "database")
        .unwrap();
    database.ingress[0].from.push(crate::api::policy::Peer {
        zone: Some("database".into()),
        ..Default::default()
    });
    let policies = compile_policy(&policy, &example_namespaces());
    let cluster = example_cluster();
    let postgres = Endpoint::pod("medianest-data", "postgres");
    let redis = Endpoint::pod("medianest-data", "redis");
    assert!(cluster.allowed(&policies, &postgres, &redis, 6379, Protocol::Tcp));
    assert!(!cluster.allowed(&policies, &postgres, &redis, 80, Protocol::Tcp));
}

#[test]
fn protected_namespaces_never_governed() {
    let mut namespaces = example_namespaces();
    for namespace in &mut namespaces {
        namespace
            .labels
            .insert("medianest.io/governed".into(), "true".into());
    }
    let policies = compile_policy(&example_policy(), &namespaces);
    let touched: BTreeSet<String> = policies
        .iter()
        .map(|policy| policy.metadata.namespace.clone().unwrap())
        .collect();
    for protected in [
        "kube-system",
        "kube-public",
        "kube-node-lease",
        "medianest-system",
    ] {
        assert!(
            !touched.contains(protected),
            "{protected} must not be governed"
        );
    }
    assert!(
        touched.contains("default"),
        "default is an ordinary namespace"
    );
}

#[test]
fn namespace_leaving_loses_only_its_policies() {
    let policy = example_policy();
    let before = compile_policy(&policy, &example_namespaces());
    let mut namespaces = example_namespaces();
    let data = namespaces
        .iter_mut()
        .find(|namespace| namespace.name == "medianest-data")
        .unwrap();
    data.labels.remove("medianest.io/governed");
    let after = compile_policy(&policy, &namespaces);

    let removed: BTreeSet<_> = keys(&before).difference(&keys(&after)).cloned().collect();
    let in_data: BTreeSet<_> = keys(&before)
        .into_iter()
        .filter(|(namespace, _)| namespace == "medianest-data")
        .collect();
    assert_eq!(removed, in_data);
    assert!(
        keys(&after).is_subset(&keys(&before)),
        "nothing new appears"
    );
}

#[test]
fn namespace_source_peer_and_sender_egress() {
    let mut policy = example_policy();
    let database = policy
        .spec
        .network
        .zones
        .iter_mut()
        .find(|zone| zone.name == "database")
        .unwrap();
    database.ingress.push(crate::api::policy::IngressRule {
        from: vec![crate::api::policy::Peer {
            namespace_selector: Some(crate::api::policy::match_labels([(
                "medianest.io/tier",
                "monitoring",
            )])),
            pod_selector: Some(crate::api::policy::match_labels([(
                "app.kubernetes.io/name",
                "prometheus",
            )])),
            ..Default::default()
        }],
        ports: vec![crate::api::policy::PortSpec {
            port: IntOrString::Int(5432),
            protocol: Default::default(),
            end_port: None,
        }],
    });
    let policies = compile_policy(&policy, &example_namespaces());
    let database = find(&policies, "medianest-data", "mn-medianest-zone-database");
    let ingress = database.spec.as_ref().unwrap().ingress.as_ref().unwrap();
    let peers = ingress[1].from.as_ref().unwrap();
    assert_eq!(peers.len(), 1, "namespace and pod selectors form one peer");
    assert!(peers[0].namespace_selector.is_some() && peers[0].pod_selector.is_some());

    let cluster = example_cluster();
    let prometheus = Endpoint::pod("medianest-monitoring", "prometheus");
    let postgres = Endpoint::pod("medianest-data", "postgres");
    let verdict = cluster
        .evaluate(&policies, &prometheus, &postgres, 5432, Protocol::Tcp)
        .unwrap();
    assert!(verdict.is_allowed(), "{verdict}");
}

#[test]
fn extra_egress_anywhere_has_no_peers() {
    let mut policy = example_policy();
    policy.spec.network.egress[0].to = vec![crate::api::policy::Peer {
        anywhere: Some(true),
        ..Default::default()
    }];
    let policies = compile_policy(&policy, &example_namespaces());
    let egress = find(
        &policies,
        "medianest-app",
        "mn-medianest-egress-external-https",
    );
    let rules = egress.spec.as_ref().unwrap().egress.as_ref().unwrap();
    assert!(rules[0].to.is_none());
}

#[test]
fn dns_and_default_deny_can_be_disabled() {
    let mut policy = example_policy();
    policy.spec.network.default_deny = false;
    policy.spec.network.dns.enabled = false;
    let policies = compile_policy(&policy, &example_namespaces());
    let names: BTreeSet<String> = policies
        .iter()
        .map(|policy| policy.metadata.name.clone().unwrap())
        .collect();
    assert!(!names.contains("mn-medianest-default-deny"));
    assert!(!names.contains("mn-medianest-dns"));
}

#[test]
fn output_is_deterministic() {
    let policy = example_policy();
    let mut namespaces = example_namespaces();
    let first = compile_policy(&policy, &namespaces);
    namespaces.reverse();
    let second = compile_policy(&policy, &namespaces);
    assert_eq!(first, second);
}

#[test]
fn generated_objects_are_labelled() {
    let policies = compile_policy(&example_policy(), &example_namespaces());
    for policy in &policies {
        let labels = policy.metadata.labels.as_ref().unwrap();
        assert_eq!(labels["app.kubernetes.io/managed-by"], "medianest-operator");
        assert_eq!(labels["security.medianest.io/policy"], "medianest");
    }
}
