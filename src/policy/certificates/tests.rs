use std::collections::BTreeMap;
use std::time::Duration as StdDuration;

use k8s_openapi::jiff::Timestamp;

use super::*;
use crate::api::mtls::{MtlsSpec, ServiceCertificate};

const DAY: i64 = 86_400;

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(seconds).unwrap()
}

fn days(count: u64) -> StdDuration {
    StdDuration::from_secs(count * DAY as u64)
}

fn spec(services: Vec<ServiceCertificate>) -> MtlsSpec {
    let mut spec: MtlsSpec = serde_json::from_value(serde_json::json!({})).unwrap();
    spec.services = services;
    spec
}

fn by_name(name: &str) -> ServiceCertificate {
    serde_json::from_value(serde_json::json!({ "name": name })).unwrap()
}

fn service(namespace: &str, name: &str, labels: &[(&str, &str)]) -> ServiceInfo {
    ServiceInfo {
        namespace: namespace.into(),
        name: name.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
    }
}

#[test]
fn service_names_cover_every_form() {
    assert_eq!(
        service_names("api", "media", "cluster.local"),
        [
            "api",
            "api.media",
            "api.media.svc",
            "api.media.svc.cluster.local"
        ]
    );
}

#[test]
fn targets_by_name_only_in_governed_namespaces() {
    let services = [
        service("media", "api", &[]),
        service("other", "api", &[]),
        service("media", "web", &[]),
    ];
    let governed = vec!["media".to_string()];
    let found = targets(&spec(vec![by_name("api")]), &governed, &services);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].namespace, "media");
    assert_eq!(found[0].secret_name, "api-tls");
    assert_eq!(found[0].dns_names[3], "api.media.svc.cluster.local");
}

#[test]
fn targets_by_selector_with_extras() {
    let entry: ServiceCertificate = serde_json::from_value(serde_json::json!({
        "selector": { "matchLabels": { "tier": "data" } },
        "dnsNames": ["db.example.com"],
        "ipAddresses": ["10.0.0.5", "not-an-ip"],
    }))
    .unwrap();
    let services = [
        service("data", "postgresql", &[("tier", "data")]),
        service("data", "redis", &[("tier", "data")]),
        service("data", "exporter", &[]),
    ];
    let found = targets(&spec(vec![entry]), &["data".to_string()], &services);
    let names: Vec<&str> = found.iter().map(|target| target.service.as_str()).collect();
    assert_eq!(names, ["postgresql", "redis"]);
    assert!(found[0].dns_names.contains(&"db.example.com".to_string()));
    assert_eq!(
        found[0].ip_addresses,
        vec!["10.0.0.5".parse::<IpAddr>().unwrap()]
    );
}

#[test]
fn two_entries_merge_into_one_certificate() {
    let mut extra = by_name("api");
    extra.dns_names = vec!["api.example.com".into()];
    let found = targets(
        &spec(vec![by_name("api"), extra]),
        &["media".to_string()],
        &[service("media", "api", &[])],
    );
    assert_eq!(found.len(), 1);
    assert!(found[0].dns_names.contains(&"api.example.com".to_string()));
}

#[test]
fn renew_at_uses_renew_before() {
    let renew = renew_at(at(0), at(90 * DAY), days(90), days(30));
    assert_eq!(renew, at(60 * DAY));
}

#[test]
fn capped_certificate_renewal_never_loops() {
    // The CA expires in 9 days, so a 90-day certificate is cut to 9 days. Renewal keeps the
    // same fraction (a third), so the replacement is not due at once.
    let renew = renew_at(at(0), at(9 * DAY), days(90), days(30));
    assert_eq!(renew, at(6 * DAY));
    assert!(
        renew > at(0),
        "a fresh certificate is never due at issuance"
    );
}

#[test]
fn ca_rotation_phases() {
    let settings = CaSettings {
        ca_lifetime: days(300),
        propagation_delay: StdDuration::from_secs(600),
        rotation_requested: false,
        bundles_trust_next: true,
        old_ca_unused: false,
    };
    let stable = CaState {
        phase: Phase::Stable,
        since: at(0),
        signing_not_before: at(0),
        signing_not_after: at(300 * DAY),
        retire_after: None,
    };
    assert_eq!(
        ca_step(&stable, &settings, at(DAY)),
        CaStep::Wait {
            at: Some(at(200 * DAY))
        }
    );
    assert_eq!(
        ca_step(&stable, &settings, at(200 * DAY)),
        CaStep::StartRotation
    );
    let requested = CaSettings {
        rotation_requested: true,
        ..settings.clone()
    };
    assert_eq!(ca_step(&stable, &requested, at(DAY)), CaStep::StartRotation);

    let propagating = CaState {
        phase: Phase::Propagating,
        since: at(1000),
        ..stable.clone()
    };
    assert_eq!(
        ca_step(&propagating, &settings, at(1200)),
        CaStep::Wait { at: Some(at(1600)) }
    );
    assert_eq!(
        ca_step(&propagating, &settings, at(1600)),
        CaStep::SwitchSigner
    );
    let not_everywhere = CaSettings {
        bundles_trust_next: false,
        ..settings.clone()
    };
    assert_eq!(
        ca_step(&propagating, &not_everywhere, at(1600)),
        CaStep::Wait { at: None }
    );

    let reissuing = CaState {
        phase: Phase::Reissuing,
        since: at(1600),
        retire_after: Some(at(5000)),
        ..stable
    };
    assert_eq!(
        ca_step(&reissuing, &settings, at(6000)),
        CaStep::Wait { at: None },
        "old CA still signs something"
    );
    let unused = CaSettings {
        old_ca_unused: true,
        ..settings
    };
    assert_eq!(
        ca_step(&reissuing, &unused, at(4000)),
        CaStep::Wait { at: Some(at(5000)) }
    );
    assert_eq!(ca_step(&reissuing, &unused, at(5000)), CaStep::RetireOld);
}

#[test]
fn phase_round_trip() {
    for phase in [Phase::Stable, Phase::Propagating, Phase::Reissuing] {
        assert_eq!(Phase::parse(phase.as_str()), Some(phase));
    }
    assert_eq!(Phase::parse("stable"), None);
}
