//! The CRD schema and CEL rules, judged by the real kube-apiserver: bad input is rejected at
//! admission with a message naming the field.

mod common;

use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use serde_json::{Value, json};

use common::client;
use medianest_operator::api::{MediaNestSecurityPolicy, SecretRotation};

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

/// Creates a SecretRotation in the default namespace with a server-side dry run and returns
/// the API server's message.
async fn admit_rotation(client: &kube::Client, spec: Value) -> Result<(), String> {
    let rotation: Value = json!({
        "apiVersion": "security.medianest.io/v1alpha1",
        "kind": "SecretRotation",
        "metadata": { "name": "admission-check", "namespace": "default" },
        "spec": spec,
    });
    let resource = ApiResource::erase::<SecretRotation>(&());
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &resource);
    let params = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    match api
        .create(&params, &serde_json::from_value(rotation).unwrap())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) => Err(status.message),
        Err(other) => panic!("unexpected error from the API server: {other}"),
    }
}

/// Returns a SecretRotation spec with these keys and, unless it is null, this previous.
fn rotation_spec(keys: Value, previous: Value) -> Value {
    let mut spec = json!({ "secretName": "tokens", "keys": keys });
    if !previous.is_null() {
        spec["previous"] = previous;
    }
    spec
}

fn random_key(name: &str) -> Value {
    json!({ "name": name, "generator": { "randomBytes": { "length": 16 } } })
}

fn key_pair(name: &str) -> Value {
    json!({ "name": name, "generator": { "keyPair": { "algorithm": "ES256" } } })
}

fn exemption(reason: &str, capabilities: Value) -> Value {
    json!({
        "namespaceSelector": {},
        "workloads": { "exemptions": [{
            "kind": "Deployment",
            "namespace": "media",
            "name": "proxy",
            "reason": reason,
            "addCapabilities": capabilities,
        }] }
    })
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
        (
            "port number as a string",
            zone_with_rule(json!({"from": [{"anywhere": true}], "ports": [{"port": "8080"}]})),
            format!("{rule_field}.ports[0].port"),
            "port \"8080\" is a string of digits: use the number 8080; named ports are lowercase letters, digits and hyphens with at least one letter",
        ),
        (
            "port name with two hyphens in a row",
            zone_with_rule(json!({"from": [{"anywhere": true}], "ports": [{"port": "web--tls"}]})),
            format!("{rule_field}.ports[0].port"),
            "should match",
        ),
        (
            "exemption reason of only whitespace",
            exemption(" \t ", json!(["NET_ADMIN"])),
            "spec.workloads.exemptions[0].reason".into(),
            "reason has no words; say why the workload needs the relaxation",
        ),
        (
            "exemption reason of a zero-width space",
            exemption("\u{200b}", json!(["NET_ADMIN"])),
            "spec.workloads.exemptions[0].reason".into(),
            "reason has no words",
        ),
        (
            "every capability added with the CAP_ prefix",
            exemption("needs everything", json!(["CAP_ALL"])),
            "spec.workloads.exemptions[0].addCapabilities[0]".into(),
            "ALL cannot be added; list each capability the workload needs",
        ),
        (
            "capability with the CAP_ prefix",
            exemption("binds port 80", json!(["CHOWN", "CAP_NET_BIND_SERVICE"])),
            "spec.workloads.exemptions[0].addCapabilities[1]".into(),
            "use NET_BIND_SERVICE instead of CAP_NET_BIND_SERVICE",
        ),
        (
            "the CAP_ prefix alone",
            exemption("binds port 80", json!(["CAP_"])),
            "spec.workloads.exemptions[0].addCapabilities[0]".into(),
            "CAP_ is not a capability name",
        ),
        (
            "every capability added",
            exemption("needs everything", json!(["ALL"])),
            "spec.workloads.exemptions[0].addCapabilities[0]".into(),
            "ALL cannot be added; list each capability the workload needs",
        ),
        (
            "default request above the default limit",
            json!({"namespaceSelector": {}, "workloads": {"defaultResources": {
                "requests": {"memory": "2Gi"}, "limits": {"memory": "1Gi"},
            }}}),
            "spec.workloads.defaultResources".into(),
            "a default request is above the default limit of the same resource",
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
async fn invalid_rotations_rejected_with_field() {
    let client = client().await;
    let default_suffix = json!({});
    let cases: Vec<(&str, Value, &str, &str)> = vec![
        (
            "two keys of one name",
            rotation_spec(
                json!([random_key("a"), random_key("b"), random_key("b")]),
                Value::Null,
            ),
            "spec.keys",
            "key name \"b\" appears more than once in spec.keys; give each key its own name",
        ),
        (
            "key named after a public key",
            rotation_spec(json!([key_pair("s"), random_key("s.pub")]), Value::Null),
            "spec.keys",
            "key name \"s.pub\" is also where key pair \"s\" stores its public key; rename one of the two keys",
        ),
        (
            "previous value under the default suffix",
            rotation_spec(
                json!([random_key("a"), random_key("a.previous")]),
                default_suffix.clone(),
            ),
            "spec.previous.suffix",
            "the previous value of key \"a\" would be kept under \"a.previous\", which another key or public key already uses; rename that key or set another previous.suffix",
        ),
        (
            "previous value under an explicit suffix",
            rotation_spec(
                json!([random_key("a.old"), random_key("a")]),
                json!({ "suffix": ".old" }),
            ),
            "spec.previous.suffix",
            "the previous value of key \"a\" would be kept under \"a.old\"",
        ),
        (
            "previous value of a public key",
            rotation_spec(
                json!([key_pair("a"), random_key("a.pub.previous")]),
                default_suffix.clone(),
            ),
            "spec.previous.suffix",
            "the previous value of public key \"a.pub\" would be kept under \"a.pub.previous\"",
        ),
        (
            "previous value over a public key",
            rotation_spec(
                json!([random_key("a"), key_pair("ab")]),
                json!({ "suffix": "b.pub" }),
            ),
            "spec.previous.suffix",
            "the previous value of key \"a\" would be kept under \"ab.pub\"",
        ),
        (
            "previous value of a public key over another public key",
            rotation_spec(
                json!([key_pair("a"), key_pair("a.pubx")]),
                json!({ "suffix": "x.pub" }),
            ),
            "spec.previous.suffix",
            "the previous value of public key \"a.pub\" would be kept under \"a.pubx.pub\"",
        ),
        (
            "previous-value name longer than a Secret key",
            rotation_spec(
                json!([key_pair(&"k".repeat(200))]),
                json!({ "suffix": "s".repeat(50) }),
            ),
            "spec.previous.suffix",
            "longer than 253 characters, the limit of a Secret key",
        ),
        (
            "key name starting with two dots",
            rotation_spec(json!([random_key("..k")]), Value::Null),
            "spec.keys[0].name",
            "a Secret rejects the key names . and .. and names starting with ..",
        ),
        (
            "symbols from the alphanumeric alphabet",
            rotation_spec(
                json!([{ "name": "p", "generator": { "password": { "length": 16, "require": ["symbol"] } } }]),
                Value::Null,
            ),
            "spec.keys[0].generator.password.require",
            "the alphanumeric alphabet has no symbols",
        ),
    ];

    for (label, spec, field, fragment) in cases {
        let message = admit_rotation(&client, spec)
            .await
            .err()
            .unwrap_or_else(|| panic!("{label}: admitted"));
        assert!(
            message.contains(field),
            "{label}: message does not name {field}: {message}"
        );
        assert!(
            message.contains(fragment),
            "{label}: message lacks {fragment:?}: {message}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn valid_rotations_admitted() {
    let client = client().await;
    let examples = include_str!("../manifests/examples/secrets.yaml");
    for document in serde_yaml::Deserializer::from_str(examples) {
        let example = <Value as serde::Deserialize>::deserialize(document).unwrap();
        admit_rotation(&client, example["spec"].clone())
            .await
            .unwrap_or_else(|message| panic!("{}: {message}", example["metadata"]["name"]));
    }

    let cases = [
        (
            "a name like a previous-value name, with no previous values kept",
            rotation_spec(
                json!([random_key("a"), random_key("a.previous")]),
                Value::Null,
            ),
        ),
        (
            "a name like a previous-value name, with previous.keep off",
            rotation_spec(
                json!([random_key("a"), random_key("a.previous")]),
                json!({ "keep": false }),
            ),
        ),
        (
            "key pairs and other keys with previous values kept",
            rotation_spec(
                json!([
                    key_pair("signing"),
                    random_key("signing-salt"),
                    random_key("pub")
                ]),
                json!({}),
            ),
        ),
    ];
    for (label, spec) in cases {
        admit_rotation(&client, spec)
            .await
            .unwrap_or_else(|message| panic!("{label}: {message}"));
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
        "ports": [{"port": "http"}, {"port": "h2c-8080"}, {"port": 8000, "endPort": 8100, "protocol": "UDP"}, {"port": 9, "protocol": "SCTP"}],
    }));
    admit(&client, rich)
        .await
        .expect("a policy using every kind of source is admitted");

    admit(
        &client,
        exemption("binds port 80", json!(["NET_BIND_SERVICE", "CHOWN"])),
    )
    .await
    .expect("an exemption with a reason and capability names is admitted");
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
