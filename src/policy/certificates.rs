//! Planning of the mTLS certificates: which Services get one, with which names, when each is
//! renewed, and the phases of a CA rotation. Pure: the caller passes the time and the state
//! read from the API server, so that a restart plans exactly what the stored state implies.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration as StdDuration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::api::mtls::MtlsSpec;

use super::selector;

/// A Service that gets a certificate.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Target {
    pub namespace: String,
    pub service: String,
    pub secret_name: String,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
}

/// A Service as the planner sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceInfo {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

/// Lists the certificates `spec` asks for among `services` of the `governed` namespaces,
/// sorted by namespace and Secret name. A Service named by two entries gets one certificate
/// with the names of both.
pub fn targets(spec: &MtlsSpec, governed: &[String], services: &[ServiceInfo]) -> Vec<Target> {
    let mut found: BTreeMap<(String, String), Target> = BTreeMap::new();
    for entry in &spec.services {
        for service in services {
            if !governed.contains(&service.namespace) {
                continue;
            }
            if entry
                .namespace
                .as_ref()
                .is_some_and(|namespace| *namespace != service.namespace)
            {
                continue;
            }
            let named = entry
                .name
                .as_ref()
                .is_some_and(|name| *name == service.name);
            let selected = entry
                .selector
                .as_ref()
                .is_some_and(|selector| selector::matches(selector, &service.labels));
            if !named && !selected {
                continue;
            }
            let secret_name = entry
                .secret_name
                .clone()
                .unwrap_or_else(|| format!("{}-tls", service.name));
            let target = found
                .entry((service.namespace.clone(), secret_name.clone()))
                .or_insert_with(|| Target {
                    namespace: service.namespace.clone(),
                    service: service.name.clone(),
                    secret_name,
                    dns_names: service_names(
                        &service.name,
                        &service.namespace,
                        &spec.cluster_domain,
                    ),
                    ip_addresses: Vec::new(),
                });
            for name in &entry.dns_names {
                if !target.dns_names.contains(name) {
                    target.dns_names.push(name.clone());
                }
            }
            for address in entry
                .ip_addresses
                .iter()
                .filter_map(|text| text.parse::<IpAddr>().ok())
            {
                if !target.ip_addresses.contains(&address) {
                    target.ip_addresses.push(address);
                }
            }
        }
    }
    found.into_values().collect()
}

/// The DNS names of a Service: `svc`, `svc.ns`, `svc.ns.svc` and `svc.ns.svc.<domain>`.
pub fn service_names(service: &str, namespace: &str, cluster_domain: &str) -> Vec<String> {
    vec![
        service.to_string(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.{cluster_domain}"),
    ]
}

/// Returns when a certificate valid from `not_before` to `not_after` is renewed.
///
/// `renew_before` applies to a certificate of the full `lifetime`. A certificate cut short,
/// because its CA expires first, is renewed at the same fraction of its own life, so that its
/// replacement (cut short the same way) is not due at once and renewal never loops. The CA
/// rotation replaces it before the CA expires.
pub fn renew_at(
    not_before: Timestamp,
    not_after: Timestamp,
    lifetime: StdDuration,
    renew_before: StdDuration,
) -> Timestamp {
    let actual = not_after.duration_since(not_before);
    let full = SignedDuration::try_from(lifetime).unwrap_or(SignedDuration::MAX);
    let before = SignedDuration::try_from(renew_before).unwrap_or(SignedDuration::ZERO);
    let margin = if actual < full && !full.is_zero() {
        let fraction = before.as_secs_f64() / full.as_secs_f64();
        SignedDuration::from_secs_f64(actual.as_secs_f64() * fraction)
    } else {
        before
    };
    not_after.checked_sub(margin).unwrap_or(not_before)
}

/// The default renewal margin: a third of the lifetime.
pub fn default_renew_before(lifetime: StdDuration) -> StdDuration {
    lifetime / 3
}

/// Phase of the CA, stored in the CA Secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// One CA signs and is trusted.
    Stable,
    /// A new CA is trusted next to the current one but does not sign yet, until every
    /// consumer has loaded the new bundle.
    Propagating,
    /// The new CA signs; the old one stays trusted until every certificate it signed has
    /// been replaced and has expired.
    Reissuing,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Stable => "Stable",
            Phase::Propagating => "Propagating",
            Phase::Reissuing => "Reissuing",
        }
    }

    pub fn parse(text: &str) -> Option<Phase> {
        match text {
            "Stable" => Some(Phase::Stable),
            "Propagating" => Some(Phase::Propagating),
            "Reissuing" => Some(Phase::Reissuing),
            _ => None,
        }
    }
}

/// What the stored CA state says, reduced to what the next step depends on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaState {
    pub phase: Phase,
    /// When the current phase began.
    pub since: Timestamp,
    /// Validity of the CA that signs.
    pub signing_not_before: Timestamp,
    pub signing_not_after: Timestamp,
    /// In Reissuing: when the old CA may leave the bundles, once no certificate it signed
    /// remains.
    pub retire_after: Option<Timestamp>,
}

/// The inputs of a CA step besides the state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaSettings {
    pub ca_lifetime: StdDuration,
    pub propagation_delay: StdDuration,
    /// A rotation request newer than the last one acted on.
    pub rotation_requested: bool,
    /// Every governed namespace's bundle already trusts the next CA.
    pub bundles_trust_next: bool,
    /// No stored certificate is signed by the old CA any more.
    pub old_ca_unused: bool,
}

/// The next step of the CA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CaStep {
    /// Nothing to do until `at` (if any).
    Wait { at: Option<Timestamp> },
    /// Generate the next CA and trust it next to the current one.
    StartRotation,
    /// Let the next CA sign; keep the old one trusted until `retire_after`.
    SwitchSigner,
    /// Drop the old CA from the bundles.
    RetireOld,
}

/// Decides the next step of the CA at `now`.
pub fn ca_step(state: &CaState, settings: &CaSettings, now: Timestamp) -> CaStep {
    match state.phase {
        Phase::Stable => {
            let rotate_at = renew_at(
                state.signing_not_before,
                state.signing_not_after,
                settings.ca_lifetime,
                default_renew_before(settings.ca_lifetime),
            );
            if settings.rotation_requested || now >= rotate_at {
                CaStep::StartRotation
            } else {
                CaStep::Wait {
                    at: Some(rotate_at),
                }
            }
        }
        Phase::Propagating => {
            let delay = SignedDuration::try_from(settings.propagation_delay)
                .unwrap_or(SignedDuration::ZERO);
            let ready_at = state.since.checked_add(delay).unwrap_or(state.since);
            if now >= ready_at && settings.bundles_trust_next {
                CaStep::SwitchSigner
            } else if now >= ready_at {
                // Some bundle has not been written yet; the reconcile writes it first.
                CaStep::Wait { at: None }
            } else {
                CaStep::Wait { at: Some(ready_at) }
            }
        }
        Phase::Reissuing => {
            let retire_after = state.retire_after.unwrap_or(state.since);
            if settings.old_ca_unused && now >= retire_after {
                CaStep::RetireOld
            } else if settings.old_ca_unused {
                CaStep::Wait {
                    at: Some(retire_after),
                }
            } else {
                CaStep::Wait { at: None }
            }
        }
    }
}

#[cfg(test)]
mod tests;
