//! The CRD schema and CEL rules, judged by the real kube-apiserver: bad input is rejected at
//! admission with a message naming the field.

mod common;

use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use serde_json::{Value, json};

use common::client;
use medianest_operator::api::MediaNestSecurityPolicy;

/// Builds an untyped API for policies, so that invalid values reach the API server as written.
fn dynamic_api(client: &kube::Client) -> Api<DynamicObject> {
    let resource = ApiResource::erase::<MediaNestSecurityPolicy>(&());
    Api::all_with(client.clone(), &resource)
}

/// Creates the policy with a server-side dry run and returns the API server's message.
async fn admit(client: &kube::Client, spec: Value) -> Result<(), String> {
    let policy: Value = json!({
        "apiVersion": "security.medianest.io/v1alpha1",
        "kind": "MediaNestSecurityPolicy",
        "metadata": { "name": "admission-check" },
        "spec": spec,
    });
    let api = dynamic_api(client);
    let params = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    match api
        .create(&params, &serde_json::from_value(policy).unwrap())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) => Err(status.message),
        Err(other) => panic!("unexpected error from the API server: {other}"),
    }
}

fn zone_with_rule(rule: Value) -> Value {
    json!({
        "namespaceSelector": {},
        "network": { "zones": [{ "name": "web", "podSelector": {}, "ingress": [rule] }] }
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_policies_rejected_with_field() {
    let client = client().await;
    let rule_field = "spec.network.zones[0].ingress[0]";
    let cases: Vec<(&str, Value, String, &str)> = vec![
        (
            "unknown zone reference",
            zone_with_rule(json!({"from": [{"zone": "nowhere"}]})),
            "spec.network.zones".into(),
            "must name a zone defined in spec.network.zones",
        ),
        (
            "duplicate zone names",
            json!({"namespaceSelector": {}, "network": {"zones": [
                {"name": "web", "podSelector": {}}, {"name": "web", "podSelector": {}}
            ]}}),
            "spec.network.zones".into(),
            "zone names must be unique",
        ),
        (
            "port zero",
            zone_with_rule(json!({"from": [{"anywhere": true}], "ports": [{"port": 0}]})),
            format!("{rule_field}.ports[0].port"),
            "port 0 is out of range",
        ),
        (
            "port above 65535",
            zone_with_rule(json!({"from": [{"anywhere": true}], "ports": [{"port": 70000}]})),
            format!("{rule_field}.ports[0].port"),
            "port 70000 is out of range",
        ),
        (
            "invalid port name",
            zone_with_rule(json!({"from": [{"anywhere": true}], "ports": [{"port": "Web_Port"}]})),
            format!("{rule_field}.ports[0].port"),
            "should match",
        ),
        (
            "endPort below port",
            zone_with_rule(
                json!({"from": [{"anywhere": true}], "ports": [{"port": 100, "endPort": 99}]}),
            ),
            format!("{rule_field}.ports[0].endPort"),
            "endPort must be at least port",
        ),
        (
            "endPort with a named port",
            zone_with_rule(
                json!({"from": [{"anywhere": true}], "ports": [{"port": "http", "endPort": 99}]}),
            ),
            format!("{rule_field}.ports[0].endPort"),
            "endPort requires a numeric port",
        ),
        (
            "unknown protocol",
            zone_with_rule(
                json!({"from": [{"anywhere": true}], "ports": [{"port": 80, "protocol": "QUIC"}]}),
            ),
            format!("{rule_field}.ports[0].protocol"),
            "Unsupported value",
        ),
        (
            "two kinds of peer",
            zone_with_rule(json!({"from": [{"anywhere": true, "cidr": "10.0.0.0/8"}]})),
            format!("{rule_field}.from[0]"),
            "set exactly one of zone, namespaceSelector, cidr or anywhere",
        ),
        (
            "no kind of peer",
            zone_with_rule(json!({"from": [{}]})),
            format!("{rule_field}.from[0]"),
            "set exactly one of zone, namespaceSelector, cidr or anywhere",
        ),
        (
            "invalid CIDR",
            zone_with_rule(json!({"from": [{"cidr": "10.0.0.0/33"}]})),
            format!("{rule_field}.from[0].cidr"),
            "is not a valid CIDR",
        ),
        (
            "except outside the CIDR",
            zone_with_rule(json!({"from": [{"cidr": "10.0.0.0/8", "except": ["192.168.0.0/16"]}]})),
            format!("{rule_field}.from[0].except"),
            "inside cidr",
        ),
        (
            "podSelector without namespaceSelector",
            zone_with_rule(json!({"from": [{"zone": "web", "podSelector": {}}]})),
            format!("{rule_field}.from[0].podSelector"),
            "only allowed together with namespaceSelector",
        ),
        (
            "rule without sources",
            zone_with_rule(json!({"from": []})),
            format!("{rule_field}.from"),
            "should have at least 1 items",
        ),
        (
            "zone name not a DNS label",
            json!({"namespaceSelector": {}, "network": {"zones": [{"name": "Web Zone", "podSelector": {}}]}}),
            "spec.network.zones[0].name".into(),
            "should match",
        ),
        (
            "egress to a zone",
            json!({"namespaceSelector": {}, "network": {"egress": [{"name": "x", "to": [{"zone": "web"}]}]}}),
            "spec.network.egress[0].to".into(),
            "egress destinations cannot name a zone",
        ),
        (
            "missing namespaceSelector",
            json!({"network": {}}),
            "spec.namespaceSelector".into(),
            "Required value",
        ),
        (
            "unknown mode",
            json!({"mode": "Dry", "namespaceSelector": {}}),
            "spec.mode".into(),
            "Unsupported value",
        ),
    ];

    for (label, spec, field, fragment) in cases {
        let message = admit(&client, spec)
            .await
            .err()
            .unwrap_or_else(|| panic!("{label}: admitted"));
        assert!(
            message.contains(&field),
            "{label}: message does not name {field}: {message}"
        );
        assert!(
            message.contains(fragment),
            "{label}: message lacks {fragment:?}: {message}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn valid_policies_admitted() {
    let client = client().await;
    let example: Value =
        serde_yaml::from_str(include_str!("../manifests/examples/policy.yaml")).unwrap();
    admit(&client, example["spec"].clone())
        .await
        .expect("the example is admitted");

    let rich = zone_with_rule(json!({
        "from": [
            {"zone": "web"},
            {"namespaceSelector": {"matchLabels": {"team": "ops"}}, "podSelector": {"matchLabels": {"app": "probe"}}},
            {"cidr": "2001:db8::/32", "except": ["2001:db8:1::/48"]},
        ],
        "ports": [{"port": "http"}, {"port": 8000, "endPort": 8100, "protocol": "UDP"}, {"port": 9, "protocol": "SCTP"}],
    }));
    admit(&client, rich)
        .await
        .expect("a policy using every kind of source is admitted");
}

#[tokio::test(flavor = "multi_thread")]
async fn long_policy_name_rejected() {
    let client = client().await;
    let api = dynamic_api(&client);
    let name = "p".repeat(64);
    let policy = json!({
        "apiVersion": "security.medianest.io/v1alpha1",
        "kind": "MediaNestSecurityPolicy",
        "metadata": { "name": name },
        "spec": { "namespaceSelector": {} },
    });
    let params = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let object: DynamicObject = serde_json::from_value(policy).unwrap();
    let Err(kube::Error::Api(status)) = api.create(&params, &object).await else {
        panic!("a 64-character name was admitted");
    };
    assert!(
        status
            .message
            .contains("metadata.name must be at most 63 characters"),
        "{}",
        status.message
    );
}
