//! Checks of a policy spec in Rust.
//!
//! The CRD schema and its CEL rules reject most bad input at admission. These checks repeat
//! them so that `render` reports the same problems offline, and add the ones CEL cannot
//! express (label key and value syntax), so the controller never writes an object the API
//! server would reject halfway through a reconcile.

use std::collections::BTreeSet;
use std::fmt;

use ipnet::IpNet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::api::mtls::MtlsSpec;
use crate::api::policy::{MediaNestSecurityPolicySpec, NetworkSpec, Peer, PortSpec};
use crate::api::workloads::WorkloadsSpec;

use super::hardening::parse_quantity;

use super::selector;

/// One problem in a spec: the field path and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Every problem found in a spec, in field order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldErrors(pub Vec<FieldError>);

impl fmt::Display for FieldErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&lines.join("; "))
    }
}

impl std::error::Error for FieldErrors {}

impl FieldErrors {
    pub(crate) fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    fn selector(&mut self, selector: &LabelSelector, field: &str) {
        if let Err(error) = selector::validate(selector, field) {
            // The selector error starts with the full path of the bad key or value.
            let text = error.to_string();
            let (path, message) = text.split_once(": ").unwrap_or((field, text.as_str()));
            self.push(path, message);
        }
    }
}

/// Maximum length of a policy name, since it is written as a label value on generated objects.
pub const MAX_POLICY_NAME: usize = 63;

/// Checks `spec` of the policy named `name`.
pub fn validate_policy(name: &str, spec: &MediaNestSecurityPolicySpec) -> Result<(), FieldErrors> {
    let mut errors = FieldErrors::default();

    if name.len() > MAX_POLICY_NAME {
        errors.push(
            "metadata.name",
            format!(
                "name {name:?} has {} characters; at most {MAX_POLICY_NAME} are allowed because it is written as a label value",
                name.len()
            ),
        );
    }
    errors.selector(&spec.namespace_selector, "spec.namespaceSelector");
    validate_network(&spec.network, &mut errors);
    if let Some(workloads) = &spec.workloads {
        validate_workloads(workloads, &mut errors);
    }
    if let Some(mtls) = &spec.mtls {
        validate_mtls(mtls, &mut errors);
    }

    if errors.0.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn validate_network(network: &NetworkSpec, errors: &mut FieldErrors) {
    errors.selector(
        &network.dns.namespace_selector,
        "spec.network.dns.namespaceSelector",
    );
    errors.selector(&network.dns.pod_selector, "spec.network.dns.podSelector");

    let zone_names: BTreeSet<&str> = network
        .zones
        .iter()
        .map(|zone| zone.name.as_str())
        .collect();
    let mut seen = BTreeSet::new();
    for (index, zone) in network.zones.iter().enumerate() {
        let field = format!("spec.network.zones[{index}]");
        check_dns_label(&zone.name, 30, &format!("{field}.name"), errors);
        if !seen.insert(zone.name.as_str()) {
            errors.push(
                format!("{field}.name"),
                format!(
                    "duplicate zone name {:?}; zone names must be unique",
                    zone.name
                ),
            );
        }
        errors.selector(&zone.pod_selector, &format!("{field}.podSelector"));
        if let Some(namespace_selector) = &zone.namespace_selector {
            errors.selector(namespace_selector, &format!("{field}.namespaceSelector"));
        }
        for (rule_index, rule) in zone.ingress.iter().enumerate() {
            let rule_field = format!("{field}.ingress[{rule_index}]");
            if rule.from.is_empty() {
                errors.push(
                    format!("{rule_field}.from"),
                    "at least one source is required; use anywhere: true to accept every source",
                );
            }
            for (peer_index, peer) in rule.from.iter().enumerate() {
                let peer_field = format!("{rule_field}.from[{peer_index}]");
                validate_peer(peer, &peer_field, errors);
                if let Some(zone_ref) = &peer.zone
                    && !zone_names.contains(zone_ref.as_str())
                {
                    let defined: Vec<&str> = zone_names.iter().copied().collect();
                    errors.push(
                        format!("{peer_field}.zone"),
                        format!(
                            "zone {zone_ref:?} is not defined in spec.network.zones; defined zones: [{}]",
                            defined.join(", ")
                        ),
                    );
                }
            }
            validate_ports(&rule.ports, &format!("{rule_field}.ports"), errors);
        }
    }

    if let Some(monitoring) = &network.monitoring {
        let field = "spec.network.monitoring";
        errors.selector(
            &monitoring.namespace_selector,
            &format!("{field}.namespaceSelector"),
        );
        errors.selector(&monitoring.pod_selector, &format!("{field}.podSelector"));
        if let Some(targets) = &monitoring.target_pod_selector {
            errors.selector(targets, &format!("{field}.targetPodSelector"));
        }
        if monitoring.ports.is_empty() {
            errors.push(format!("{field}.ports"), "at least one port is required");
        }
        validate_ports(&monitoring.ports, &format!("{field}.ports"), errors);
    }

    let mut egress_names = BTreeSet::new();
    for (index, rule) in network.egress.iter().enumerate() {
        let field = format!("spec.network.egress[{index}]");
        check_dns_label(&rule.name, 30, &format!("{field}.name"), errors);
        if !egress_names.insert(rule.name.as_str()) {
            errors.push(
                format!("{field}.name"),
                format!(
                    "duplicate egress rule name {:?}; names must be unique",
                    rule.name
                ),
            );
        }
        if let Some(pods) = &rule.pod_selector {
            errors.selector(pods, &format!("{field}.podSelector"));
        }
        if rule.to.is_empty() {
            errors.push(
                format!("{field}.to"),
                "at least one destination is required",
            );
        }
        for (peer_index, peer) in rule.to.iter().enumerate() {
            let peer_field = format!("{field}.to[{peer_index}]");
            if peer.zone.is_some() {
                errors.push(
                    format!("{peer_field}.zone"),
                    "egress destinations cannot name a zone; a zone's ingress rules open the path to it",
                );
            }
            validate_peer(peer, &peer_field, errors);
        }
        validate_ports(&rule.ports, &format!("{field}.ports"), errors);
    }
}

fn validate_workloads(workloads: &WorkloadsSpec, errors: &mut FieldErrors) {
    let field = "spec.workloads";
    if let Some(selector) = &workloads.selector {
        errors.selector(selector, &format!("{field}.selector"));
    }
    let range = workloads.uid_range;
    if range.min < 1 || range.min > range.max {
        errors.push(
            format!("{field}.uidRange"),
            format!(
                "range {}-{} is invalid: min must be at least 1 and not above max",
                range.min, range.max
            ),
        );
    }
    for (index, path) in workloads.writable_paths.iter().enumerate() {
        if !path.path.starts_with('/') || path.path.ends_with('/') || path.path.contains(':') {
            errors.push(
                format!("{field}.writablePaths[{index}].path"),
                format!(
                    "{:?} must be an absolute path without a trailing slash or colon, such as /tmp",
                    path.path
                ),
            );
        }
        if let Some(limit) = &path.size_limit {
            check_quantity(
                limit,
                &format!("{field}.writablePaths[{index}].sizeLimit"),
                errors,
            );
        }
    }
    for (name, quantity) in &workloads.default_resources.requests {
        check_quantity(
            quantity,
            &format!("{field}.defaultResources.requests[{name:?}]"),
            errors,
        );
    }
    for (name, quantity) in &workloads.default_resources.limits {
        check_quantity(
            quantity,
            &format!("{field}.defaultResources.limits[{name:?}]"),
            errors,
        );
    }
    for (name, request) in &workloads.default_resources.requests {
        let Some(limit) = workloads.default_resources.limits.get(name) else {
            continue;
        };
        if let (Some(request_value), Some(limit_value)) =
            (parse_quantity(request), parse_quantity(limit))
            && request_value > limit_value
        {
            errors.push(
                format!("{field}.defaultResources.requests[{name:?}]"),
                format!(
                    "the default request {} is above the default limit {}; lower the request or raise the limit",
                    request.0, limit.0
                ),
            );
        }
    }
    if let Err(error) = workloads.rollout.timeout.parse() {
        errors.push(format!("{field}.rollout.timeout"), error.to_string());
    }
    for (index, exemption) in workloads.exemptions.iter().enumerate() {
        let exemption_field = format!("{field}.exemptions[{index}]");
        if !exemption.reason.chars().any(char::is_alphanumeric) {
            errors.push(
                format!("{exemption_field}.reason"),
                "reason has no words; say why the workload needs the relaxation",
            );
        }
        let relaxes = !exemption.add_capabilities.is_empty()
            || exemption.allow_privilege_escalation
            || exemption.writable_root_filesystem
            || exemption.run_as_root;
        if !relaxes {
            errors.push(
                exemption_field.clone(),
                "an exemption must relax something: addCapabilities, allowPrivilegeEscalation, writableRootFilesystem or runAsRoot",
            );
        }
        for (cap_index, capability) in exemption.add_capabilities.iter().enumerate() {
            if let Err(message) = check_added_capability(capability) {
                errors.push(
                    format!("{exemption_field}.addCapabilities[{cap_index}]"),
                    message,
                );
            }
        }
    }
}

/// Checks a capability name of an exemption's addCapabilities, as the CRD schema does.
fn check_added_capability(capability: &str) -> Result<(), String> {
    if let Some(bare) = capability.strip_prefix("CAP_")
        && !bare.is_empty()
    {
        return Err(format!(
            "use {bare} instead of {capability}: capability names are written without the CAP_ prefix"
        ));
    }
    if capability == "ALL" {
        return Err(
            "ALL cannot be added; list each capability the workload needs, such as NET_BIND_SERVICE"
                .to_string(),
        );
    }
    let valid = capability.starts_with(|c: char| c.is_ascii_uppercase())
        && capability.len() <= 32
        && capability
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        && capability != "CAP_";
    if !valid {
        return Err(format!(
            "{capability:?} is not a capability name; write it in capitals without CAP_, such as NET_BIND_SERVICE"
        ));
    }
    Ok(())
}

fn validate_mtls(mtls: &MtlsSpec, errors: &mut FieldErrors) {
    let field = "spec.mtls";
    let mut parse = |name: &str, value: &crate::api::Duration| match value.parse() {
        Ok(duration) => Some(duration),
        Err(error) => {
            errors.push(format!("{field}.{name}"), error.to_string());
            None
        }
    };
    let lifetime = parse("lifetime", &mtls.lifetime);
    let _ = parse("caLifetime", &mtls.ca_lifetime);
    let _ = parse("propagationDelay", &mtls.propagation_delay);
    let renew_before = mtls
        .renew_before
        .as_ref()
        .and_then(|value| parse("renewBefore", value));
    if let (Some(lifetime), Some(renew_before)) = (lifetime, renew_before)
        && renew_before >= lifetime
    {
        errors.push(
            format!("{field}.renewBefore"),
            format!(
                "{} must be shorter than lifetime {}",
                mtls.renew_before
                    .as_ref()
                    .map(|value| value.as_str())
                    .unwrap_or_default(),
                mtls.lifetime
            ),
        );
    }
    for (index, service) in mtls.services.iter().enumerate() {
        let service_field = format!("{field}.services[{index}]");
        if service.name.is_some() == service.selector.is_some() {
            errors.push(service_field.clone(), "set exactly one of name or selector");
        }
        if let Some(selector) = &service.selector {
            errors.selector(selector, &format!("{service_field}.selector"));
        }
        for (address_index, address) in service.ip_addresses.iter().enumerate() {
            if address.parse::<std::net::IpAddr>().is_err() {
                errors.push(
                    format!("{service_field}.ipAddresses[{address_index}]"),
                    format!("{address:?} is not an IP address"),
                );
            }
        }
    }
}

fn check_quantity(quantity: &Quantity, field: &str, errors: &mut FieldErrors) {
    match parse_quantity(quantity) {
        Some(value) if value > 0.0 => {}
        _ => errors.push(
            field,
            format!(
                "{:?} is not a positive quantity; use a value such as 500m, 2 or 256Mi",
                quantity.0
            ),
        ),
    }
}

fn validate_peer(peer: &Peer, field: &str, errors: &mut FieldErrors) {
    let kinds = [
        peer.zone.is_some(),
        peer.namespace_selector.is_some(),
        peer.cidr.is_some(),
        peer.anywhere == Some(true),
    ];
    if kinds.iter().filter(|set| **set).count() != 1 {
        errors.push(
            field,
            "set exactly one of zone, namespaceSelector, cidr or anywhere: true",
        );
    }
    if peer.pod_selector.is_some() && peer.namespace_selector.is_none() {
        errors.push(
            format!("{field}.podSelector"),
            "podSelector is only allowed together with namespaceSelector; to name pods of the governed namespaces, define a zone",
        );
    }
    if let Some(namespace_selector) = &peer.namespace_selector {
        errors.selector(namespace_selector, &format!("{field}.namespaceSelector"));
    }
    if let Some(pod_selector) = &peer.pod_selector {
        errors.selector(pod_selector, &format!("{field}.podSelector"));
    }

    let cidr = peer.cidr.as_ref().map(|cidr| (cidr, cidr.parse::<IpNet>()));
    match &cidr {
        Some((text, Err(_))) => errors.push(
            format!("{field}.cidr"),
            format!("cidr {text:?} is not a valid CIDR; use a network address such as 10.0.0.0/8 or 2001:db8::/32"),
        ),
        Some((text, Ok(block))) if block.trunc() != *block => errors.push(
            format!("{field}.cidr"),
            format!("cidr {text:?} has host bits set; use the network address {}", block.trunc()),
        ),
        _ => {}
    }
    match (&peer.except, &cidr) {
        (Some(_), None) => errors.push(
            format!("{field}.except"),
            "except is only allowed together with cidr",
        ),
        (Some(except), Some((_, Ok(block)))) => {
            for (index, entry) in except.iter().enumerate() {
                let inside = entry.parse::<IpNet>().is_ok_and(|excluded| {
                    excluded.trunc() == excluded && block.contains(&excluded)
                });
                if !inside {
                    errors.push(
                        format!("{field}.except[{index}]"),
                        format!(
                            "{entry:?} must be a network address (no host bits) inside {block}"
                        ),
                    );
                }
            }
        }
        _ => {}
    }
}

fn validate_ports(ports: &[PortSpec], field: &str, errors: &mut FieldErrors) {
    for (index, port) in ports.iter().enumerate() {
        let port_field = format!("{field}[{index}]");
        match &port.port {
            IntOrString::Int(number) => {
                if !(1..=65535).contains(number) {
                    errors.push(
                        format!("{port_field}.port"),
                        format!("port {number} is out of range; use 1 to 65535"),
                    );
                }
                if let Some(end) = port.end_port
                    && !(*number..=65535).contains(&end)
                {
                    errors.push(
                        format!("{port_field}.endPort"),
                        format!("endPort {end} must be at least port {number} and at most 65535"),
                    );
                }
            }
            IntOrString::String(digits)
                if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) =>
            {
                errors.push(
                    format!("{port_field}.port"),
                    format!(
                        "port {digits:?} is a string of digits: use the number {digits}; named ports are lowercase letters, digits and hyphens with at least one letter"
                    ),
                );
            }
            IntOrString::String(name) => {
                if !is_port_name(name) {
                    errors.push(
                        format!("{port_field}.port"),
                        format!(
                            "{name:?} is not a valid port name: use at most 15 lowercase letters, digits and single hyphens, with at least one letter"
                        ),
                    );
                }
                if port.end_port.is_some() {
                    errors.push(
                        format!("{port_field}.endPort"),
                        "endPort requires a numeric port, since a named port cannot start a range",
                    );
                }
            }
        }
    }
}

/// Returns whether `name` is a valid container port name (an IANA service name).
pub fn is_port_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !name.is_empty()
        && name.len() <= 15
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.iter().any(u8::is_ascii_lowercase)
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
}

fn check_dns_label(value: &str, max: usize, field: &str, errors: &mut FieldErrors) {
    let valid = !value.is_empty()
        && value.len() <= max
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !value.starts_with('-')
        && !value.ends_with('-');
    if !valid {
        errors.push(
            field,
            format!("{value:?} must be a DNS label: at most {max} lowercase letters, digits and hyphens, starting and ending with a letter or digit"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::MediaNestSecurityPolicy;

    fn policy(network: &str) -> MediaNestSecurityPolicy {
        let text = format!(
            "apiVersion: security.medianest.io/v1alpha1\nkind: MediaNestSecurityPolicy\nmetadata: {{name: p}}\nspec:\n  namespaceSelector: {{}}\n  network:\n{network}\n"
        );
        serde_yaml::from_str(&text).unwrap()
    }

    fn errors(network: &str) -> Vec<FieldError> {
        let policy = policy(network);
        match validate_policy("p", &policy.spec) {
            Ok(()) => Vec::new(),
            Err(errors) => errors.0,
        }
    }

    #[test]
    fn example_is_valid() {
        let example: MediaNestSecurityPolicy =
            serde_yaml::from_str(include_str!("../../manifests/examples/policy.yaml")).unwrap();
        assert_eq!(validate_policy("medianest", &example.spec), Ok(()));
    }

    #[test]
    fn bad_input_names_field_and_value() {
        let rule = "spec.network.zones[0].ingress[0]";
        let cases: Vec<(&str, String, &str)> = vec![
            (
                "    zones: [{name: a, podSelector: {}, ingress: [{from: [{zone: b}]}]}]",
                format!("{rule}.from[0].zone"),
                "zone \"b\" is not defined",
            ),
            (
                "    zones: [{name: a, podSelector: {}}, {name: a, podSelector: {}}]",
                "spec.network.zones[1].name".into(),
                "duplicate zone name \"a\"",
            ),
            (
                "    zones: [{name: a, podSelector: {}, ingress: [{from: [{anywhere: true}], ports: [{port: 0}]}]}]",
                format!("{rule}.ports[0].port"),
                "port 0 is out of range",
            ),
            (
                "    zones: [{name: a, podSelector: {}, ingress: [{from: [{anywhere: true}], ports: [{port: \"12-34\"}]}]}]",
                format!("{rule}.ports[0].port"),
                "\"12-34\" is not a valid port name",
            ),
            (
                "    zones: [{name: a, podSelector: {}, ingress: [{from: [{anywhere: true}], ports: [{port: \"8080\"}]}]}]",
                format!("{rule}.ports[0].port"),
                "is a string of digits: use the number 8080",
            ),
            (
                "    zones: [{name: a, podSelector: {}, ingress: [{from: [{anywhere: true}], ports: [{port: 90, endPort: 80}]}]}]",
                format!("{rule}.ports[0].endPort"),
                "endPort 80 must be at least port 90",
            ),
            (
                "    zones: [{name: a, podSelector: {}, ingress: [{from: [{cidr: 10.0.0.0/8, except: [11.0.0.0/8]}]}]}]",
                format!("{rule}.from[0].except[0]"),
                "must be a network address (no host bits) inside 10.0.0.0/8",
            ),
            (
                "    zones: [{name: a, podSelector: {}, ingress: [{from: [{cidr: 10.0.0.1/8}]}]}]",
                format!("{rule}.from[0].cidr"),
                "has host bits set; use the network address 10.0.0.0/8",
            ),
            (
                "    zones: [{name: a, podSelector: {}, ingress: [{from: [{cidr: 300.0.0.0/8}]}]}]",
                format!("{rule}.from[0].cidr"),
                "\"300.0.0.0/8\" is not a valid CIDR",
            ),
            (
                "    zones: [{name: a, podSelector: {matchLabels: {app: -x}}}]",
                "spec.network.zones[0].podSelector.matchLabels[\"app\"]".into(),
                "invalid label value \"-x\"",
            ),
            (
                "    zones: [{name: a, podSelector: {matchExpressions: [{key: app, operator: In}]}}]",
                "spec.network.zones[0].podSelector.matchExpressions[0].values".into(),
                "In",
            ),
            (
                "    egress: [{name: x, to: [{zone: a}]}]",
                "spec.network.egress[0].to[0].zone".into(),
                "egress destinations cannot name a zone",
            ),
            (
                "    zones: [{name: a, podSelector: {}, ingress: [{from: [{anywhere: true, zone: a}]}]}]",
                format!("{rule}.from[0]"),
                "set exactly one of",
            ),
        ];
        for (network, field, fragment) in cases {
            let found = errors(network);
            let error = found
                .iter()
                .find(|error| error.field == field)
                .unwrap_or_else(|| panic!("no error on {field} for {network}: {found:?}"));
            assert!(
                error.message.contains(fragment),
                "{field}: {}",
                error.message
            );
        }
    }

    #[test]
    fn workloads_bad_input_named() {
        let text = "apiVersion: security.medianest.io/v1alpha1\nkind: MediaNestSecurityPolicy\nmetadata: {name: p}\nspec:\n  namespaceSelector: {}\n  workloads:\n    uidRange: {min: 5, max: 1}\n    writablePaths: [{path: tmp}]\n    defaultResources: {limits: {memory: \"-1Gi\"}}\n    rollout: {timeout: soon}\n    exemptions: [{kind: Deployment, namespace: a, name: b, reason: \" \", addCapabilities: [CAP_NET_ADMIN]}]\n";
        let policy: MediaNestSecurityPolicy = serde_yaml::from_str(text).unwrap();
        let errors = validate_policy("p", &policy.spec).unwrap_err().0;
        let fields: Vec<&str> = errors.iter().map(|error| error.field.as_str()).collect();
        for expected in [
            "spec.workloads.uidRange",
            "spec.workloads.writablePaths[0].path",
            "spec.workloads.defaultResources.limits[\"memory\"]",
            "spec.workloads.rollout.timeout",
            "spec.workloads.exemptions[0].reason",
            "spec.workloads.exemptions[0].addCapabilities[0]",
        ] {
            assert!(
                fields.contains(&expected),
                "{expected} missing from {fields:?}"
            );
        }
    }

    #[test]
    fn exemption_capabilities_checked() {
        let cases = [
            (
                "CAP_NET_BIND_SERVICE",
                "use NET_BIND_SERVICE instead of CAP_NET_BIND_SERVICE",
            ),
            ("ALL", "ALL cannot be added"),
            ("CAP_", "is not a capability name"),
            ("net_admin", "is not a capability name"),
        ];
        let spec = |capability: &str| -> MediaNestSecurityPolicySpec {
            let text = format!(
                "namespaceSelector: {{}}\nworkloads:\n  exemptions: [{{kind: Deployment, namespace: a, name: b, reason: why, addCapabilities: [NET_ADMIN, {capability}]}}]\n"
            );
            serde_yaml::from_str(&text).unwrap()
        };
        for (capability, fragment) in cases {
            let errors = validate_policy("p", &spec(capability)).unwrap_err().0;
            assert_eq!(errors.len(), 1, "{capability}: {errors:?}");
            assert_eq!(
                errors[0].field, "spec.workloads.exemptions[0].addCapabilities[1]",
                "{capability}"
            );
            assert!(
                errors[0].message.contains(fragment),
                "{capability}: {}",
                errors[0].message
            );
        }
        assert_eq!(validate_policy("p", &spec("SYS_TIME")), Ok(()));
    }

    #[test]
    fn long_policy_name_rejected() {
        let spec = policy("    zones: []").spec;
        let error = validate_policy(&"p".repeat(64), &spec).unwrap_err();
        assert_eq!(error.0[0].field, "metadata.name");
    }

    #[test]
    fn port_names_follow_container_rules() {
        for valid in ["http", "metrics", "h2c", "grpc-web", "a"] {
            assert!(is_port_name(valid), "{valid}");
        }
        for invalid in [
            "",
            "HTTP",
            "1234",
            "-http",
            "http-",
            "a--b",
            "sixteen-chars-xx",
            "web_port",
        ] {
            assert!(!is_port_name(invalid), "{invalid}");
        }
    }
}
