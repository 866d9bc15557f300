//! Integration tests of SecretRotation against the local control plane.

mod common;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use common::{
    LONG_RESYNC, Operator, TEST_LABEL, WATCH_DEADLINE, client, create_namespace, unique_id,
    wait_for,
};
use medianest_operator::api::SecretRotation;

struct Setup {
    id: String,
    namespace: String,
}

impl Setup {
    async fn create(client: &Client, prefix: &str) -> Setup {
        let id = unique_id(prefix);
        let namespace = format!("{id}-app");
        create_namespace(client, &namespace, &id, &[]).await;
        Setup { id, namespace }
    }

    async fn apply(&self, client: &Client, name: &str, spec: Value, annotations: Value) {
        let rotation: SecretRotation = serde_json::from_value(json!({
            "apiVersion": "security.medianest.io/v1alpha1",
            "kind": "SecretRotation",
            "metadata": { "name": name, "namespace": self.namespace, "labels": { TEST_LABEL: self.id }, "annotations": annotations },
            "spec": spec,
        }))
        .unwrap();
        self.rotations(client)
            .patch(
                name,
                &PatchParams::apply("medianest-tests").force(),
                &Patch::Apply(&rotation),
            )
            .await
            .unwrap_or_else(|error| panic!("failed to apply SecretRotation {name}: {error}"));
    }

    fn rotations(&self, client: &Client) -> Api<SecretRotation> {
        Api::namespaced(client.clone(), &self.namespace)
    }

    fn secrets(&self, client: &Client) -> Api<Secret> {
        Api::namespaced(client.clone(), &self.namespace)
    }

    async fn cleanup(&self, client: &Client) {
        common::delete_namespaces(client, std::slice::from_ref(&self.namespace)).await;
    }
}

fn value(secret: &Secret, key: &str) -> Option<Vec<u8>> {
    secret.data.as_ref()?.get(key).map(|value| value.0.clone())
}

fn version(secret: &Secret) -> u64 {
    secret
        .annotations()
        .get("security.medianest.io/version")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn wait_version(api: &Api<Secret>, name: &str, at_least: u64) -> Secret {
    wait_for(
        &format!("Secret {name} at version {at_least}"),
        WATCH_DEADLINE,
        || async {
            let secret = api.get_opt(name).await.ok()??;
            (version(&secret) >= at_least).then_some(secret)
        },
    )
    .await
}

fn jwt_spec(secret: &str, interval: &str, extra: Value) -> Value {
    let mut spec = json!({
        "secretName": secret,
        "keys": [
            { "name": "jwt", "generator": { "jwtHmac": { "algorithm": "HS256", "length": 64 } } },
            { "name": "password", "generator": { "password": { "length": 24, "alphabet": "urlSafe", "require": ["lower", "upper", "digit"] } } },
        ],
        "interval": interval,
    });
    if let (Value::Object(spec), Value::Object(extra)) = (&mut spec, extra) {
        spec.extend(extra);
    }
    spec
}

fn deployment(name: &str, secret: &str) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": name },
        "spec": {
            "replicas": 0,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": { "containers": [{
                    "name": "app",
                    "image": "registry.k8s.io/pause:3.10",
                    "env": [{ "name": "JWT", "valueFrom": { "secretKeyRef": { "name": secret, "key": "jwt" } } }],
                }]},
            },
        },
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn secret_created_with_generated_values() {
    let client = client().await;
    let setup = Setup::create(&client, "srnew").await;
    let operator = Operator::start(&setup.id, LONG_RESYNC).await;
    setup
        .apply(
            &client,
            "tokens",
            jwt_spec("tokens", "90d", json!({})),
            json!({}),
        )
        .await;

    let secret = wait_version(&setup.secrets(&client), "tokens", 1).await;
    assert_eq!(version(&secret), 1);
    let jwt = value(&secret, "jwt").unwrap();
    assert_eq!(
        STANDARD.decode(&jwt).unwrap().len(),
        64,
        "64 bytes before base64"
    );
    let password = String::from_utf8(value(&secret, "password").unwrap()).unwrap();
    assert_eq!(password.chars().count(), 24);
    assert!(password.chars().any(|c| c.is_ascii_lowercase()));
    assert!(password.chars().any(|c| c.is_ascii_uppercase()));
    assert!(password.chars().any(|c| c.is_ascii_digit()));
    assert!(
        secret
            .annotations()
            .contains_key("security.medianest.io/value-hash")
    );
    assert_eq!(
        secret.labels()["app.kubernetes.io/managed-by"],
        "medianest-operator"
    );

    let rotation = wait_for("status with the version", WATCH_DEADLINE, || async {
        let rotation = setup.rotations(&client).get("tokens").await.ok()?;
        (rotation.status.as_ref()?.current_version == Some(1)).then_some(rotation)
    })
    .await;
    let status = rotation.status.unwrap();
    assert!(status.last_rotation.is_some());
    assert!(status.next_rotation.is_some());
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.status, "True");
    // No generated value in the status or the SecretRotation.
    let text =
        serde_json::to_string(&setup.rotations(&client).get("tokens").await.unwrap()).unwrap();
    assert!(!text.contains(&password));

    operator.stop().await;
    setup.cleanup(&client).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn scheduled_rotation_keeps_then_drops_previous() {
    let client = client().await;
    let setup = Setup::create(&client, "srsched").await;
    let operator = Operator::start(&setup.id, LONG_RESYNC).await;
    let spec = jwt_spec(
        "tokens",
        "4s",
        json!({ "previous": { "keep": true, "gracePeriod": "2s" } }),
    );
    setup.apply(&client, "tokens", spec, json!({})).await;
    let secrets = setup.secrets(&client);
    let first = wait_version(&secrets, "tokens", 1).await;
    let second = wait_version(&secrets, "tokens", 2).await;
    assert_ne!(value(&second, "jwt"), value(&first, "jwt"));
    assert_eq!(
        value(&second, "jwt.previous"),
        value(&first, "jwt"),
        "the previous value is kept"
    );
    assert_eq!(second.uid(), first.uid(), "updated in place");

    let dropped = wait_for(
        "the previous value dropped after the grace period",
        WATCH_DEADLINE,
        || async {
            let secret = secrets.get("tokens").await.ok()?;
            (version(&secret) == 2 && value(&secret, "jwt.previous").is_none()).then_some(secret)
        },
    )
    .await;
    assert_eq!(
        value(&dropped, "jwt"),
        value(&second, "jwt"),
        "the current value stays"
    );

    operator.stop().await;
    setup.cleanup(&client).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn requested_rotations_restart_consumer_once() {
    let client = client().await;
    let setup = Setup::create(&client, "srreq").await;
    Api::<Deployment>::namespaced(client.clone(), &setup.namespace)
        .create(&PostParams::default(), &deployment("api", "tokens"))
        .await
        .unwrap();
    let operator = Operator::start(&setup.id, LONG_RESYNC).await;
    let spec = jwt_spec(
        "tokens",
        "90d",
        json!({ "consumers": { "discover": true, "restartWindow": "4s" } }),
    );
    setup
        .apply(&client, "tokens", spec.clone(), json!({}))
        .await;
    let secrets = setup.secrets(&client);
    wait_version(&secrets, "tokens", 1).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &setup.namespace);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = deployments.get("api").await.unwrap();

    // Two requests inside the restart window: two rotations, one restart.
    setup
        .apply(
            &client,
            "tokens",
            spec.clone(),
            json!({ "security.medianest.io/rotate": Timestamp::now().to_string() }),
        )
        .await;
    wait_version(&secrets, "tokens", 2).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    setup
        .apply(
            &client,
            "tokens",
            spec,
            json!({ "security.medianest.io/rotate": Timestamp::now().to_string() }),
        )
        .await;
    wait_version(&secrets, "tokens", 3).await;

    let restarted = wait_for(
        "the consumer restarted for version 3",
        WATCH_DEADLINE,
        || async {
            let deployment = deployments.get("api").await.ok()?;
            let annotations = deployment
                .spec
                .template
                .metadata
                .as_ref()?
                .annotations
                .clone()?;
            (annotations.get("rotation.security.medianest.io/tokens")? == "3").then_some(deployment)
        },
    )
    .await;
    assert_eq!(
        restarted.metadata.generation.unwrap(),
        before.metadata.generation.unwrap() + 1,
        "one rollout for two rotations inside the window"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = deployments.get("api").await.unwrap();
    assert_eq!(
        after.metadata.generation, restarted.metadata.generation,
        "no further restart"
    );
    let status = setup
        .rotations(&client)
        .get("tokens")
        .await
        .unwrap()
        .status
        .unwrap();
    assert_eq!(
        status.restarted_consumers,
        vec!["Deployment/api".to_string()]
    );

    operator.stop().await;
    setup.cleanup(&client).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deleted_secret_restarts_consumer() {
    let client = client().await;
    let setup = Setup::create(&client, "srdel").await;
    Api::<Deployment>::namespaced(client.clone(), &setup.namespace)
        .create(&PostParams::default(), &deployment("api", "tokens"))
        .await
        .unwrap();
    let operator = Operator::start(&setup.id, LONG_RESYNC).await;
    let spec = jwt_spec(
        "tokens",
        "90d",
        json!({ "consumers": { "discover": true, "restartWindow": "1s" } }),
    );
    setup.apply(&client, "tokens", spec, json!({})).await;
    let secrets = setup.secrets(&client);
    let first = wait_version(&secrets, "tokens", 1).await;
    wait_for("the status at version 1", WATCH_DEADLINE, || async {
        let rotation = setup.rotations(&client).get("tokens").await.ok()?;
        (rotation.status?.current_version? == 1).then_some(())
    })
    .await;

    // The consumer's pods hold the deleted values, so the regenerated Secret is a new version
    // and the consumer restarts.
    secrets
        .delete("tokens", &DeleteParams::default())
        .await
        .unwrap();
    let regenerated = wait_for("the deleted Secret regenerated", WATCH_DEADLINE, || async {
        let secret = secrets.get_opt("tokens").await.ok()??;
        (secret.uid() != first.uid()).then_some(secret)
    })
    .await;
    assert_eq!(version(&regenerated), 2);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &setup.namespace);
    wait_for(
        "the consumer restarted for version 2",
        WATCH_DEADLINE,
        || async {
            let deployment = deployments.get("api").await.ok()?;
            let annotations = deployment.spec.template.metadata?.annotations?;
            (annotations.get("rotation.security.medianest.io/tokens")? == "2").then_some(())
        },
    )
    .await;
    let status = wait_for("the status at version 2", WATCH_DEADLINE, || async {
        let rotation = setup.rotations(&client).get("tokens").await.ok()?;
        let status = rotation.status?;
        (status.current_version? == 2).then_some(status)
    })
    .await;
    assert_eq!(
        status.restarted_consumers,
        vec!["Deployment/api".to_string()]
    );

    operator.stop().await;
    setup.cleanup(&client).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn existing_secret_adopted_or_rotated() {
    let client = client().await;
    let setup = Setup::create(&client, "sradopt").await;
    let secrets = setup.secrets(&client);
    for name in ["leaked", "kept"] {
        let secret: Secret = serde_json::from_value(json!({
            "metadata": { "name": name },
            "stringData": { "jwt": "hard-coded-and-committed", "password": "hunter2hunter2" },
        }))
        .unwrap();
        secrets
            .create(&PostParams::default(), &secret)
            .await
            .unwrap();
    }
    let operator = Operator::start(&setup.id, LONG_RESYNC).await;
    setup
        .apply(
            &client,
            "leaked",
            jwt_spec("leaked", "90d", json!({})),
            json!({}),
        )
        .await;
    setup
        .apply(
            &client,
            "kept",
            jwt_spec("kept", "90d", json!({ "existingSecret": "Keep" })),
            json!({}),
        )
        .await;

    let rotated = wait_version(&secrets, "leaked", 2).await;
    assert_ne!(
        value(&rotated, "jwt").unwrap(),
        b"hard-coded-and-committed",
        "a leaked value is rotated at once"
    );
    let kept = wait_version(&secrets, "kept", 1).await;
    assert_eq!(
        value(&kept, "jwt").unwrap(),
        b"hard-coded-and-committed",
        "Keep keeps the value"
    );
    assert!(
        kept.annotations()
            .contains_key("security.medianest.io/value-hash")
    );

    operator.stop().await;
    setup.cleanup(&client).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn recreated_rotation_keeps_value() {
    let client = client().await;
    let setup = Setup::create(&client, "srgitops").await;
    let operator = Operator::start(&setup.id, LONG_RESYNC).await;
    let spec = jwt_spec("tokens", "90d", json!({}));
    setup
        .apply(&client, "tokens", spec.clone(), json!({}))
        .await;
    let secrets = setup.secrets(&client);
    let first = wait_version(&secrets, "tokens", 1).await;

    setup
        .rotations(&client)
        .delete("tokens", &DeleteParams::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let kept = secrets
        .get("tokens")
        .await
        .expect("the Secret outlives its SecretRotation");
    assert_eq!(value(&kept, "jwt"), value(&first, "jwt"));

    setup.apply(&client, "tokens", spec, json!({})).await;
    wait_for(
        "the re-created SecretRotation ready",
        WATCH_DEADLINE,
        || async {
            let rotation = setup.rotations(&client).get("tokens").await.ok()?;
            (rotation.status?.current_version == Some(1)).then_some(())
        },
    )
    .await;
    let adopted = secrets.get("tokens").await.unwrap();
    assert_eq!(
        value(&adopted, "jwt"),
        value(&first, "jwt"),
        "the value lives until its next due rotation"
    );
    assert_eq!(version(&adopted), 1);

    operator.stop().await;
    setup.cleanup(&client).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn edit_and_deletion_handled() {
    let client = client().await;
    let setup = Setup::create(&client, "sredit").await;
    let operator = Operator::start(&setup.id, LONG_RESYNC).await;
    setup
        .apply(
            &client,
            "rotated",
            jwt_spec("rotated", "90d", json!({})),
            json!({}),
        )
        .await;
    setup
        .apply(
            &client,
            "adopted",
            jwt_spec("adopted", "90d", json!({ "onEdit": "Adopt" })),
            json!({}),
        )
        .await;
    let secrets = setup.secrets(&client);
    wait_version(&secrets, "rotated", 1).await;
    wait_version(&secrets, "adopted", 1).await;

    let edit = json!({ "stringData": { "jwt": "typed-by-hand" } });
    secrets
        .patch("rotated", &PatchParams::default(), &Patch::Merge(&edit))
        .await
        .unwrap();
    secrets
        .patch("adopted", &PatchParams::default(), &Patch::Merge(&edit))
        .await
        .unwrap();

    let rotated = wait_version(&secrets, "rotated", 2).await;
    assert_ne!(
        value(&rotated, "jwt").unwrap(),
        b"typed-by-hand",
        "an edited value is rotated"
    );
    let adopted = wait_for("the edited value adopted", WATCH_DEADLINE, || async {
        let secret = secrets.get("adopted").await.ok()?;
        let rotation = setup.rotations(&client).get("adopted").await.ok()?;
        let _ = rotation;
        (value(&secret, "jwt")? == b"typed-by-hand"
            && events_with(&client, &setup.namespace, "ValueAdopted").await)
            .then_some(secret)
    })
    .await;
    assert_eq!(version(&adopted), 1);
    assert!(events_with(&client, &setup.namespace, "EditedValueRotated").await);

    secrets
        .delete("rotated", &DeleteParams::default())
        .await
        .unwrap();
    let regenerated = wait_for("the deleted Secret regenerated", WATCH_DEADLINE, || async {
        let secret = secrets.get_opt("rotated").await.ok()??;
        (secret.uid() != rotated.uid()).then_some(secret)
    })
    .await;
    assert!(value(&regenerated, "jwt").is_some());

    operator.stop().await;
    setup.cleanup(&client).await;
}

async fn events_with(client: &Client, namespace: &str, reason: &str) -> bool {
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(client.clone(), namespace);
    events
        .list(&Default::default())
        .await
        .map(|list| {
            list.items
                .iter()
                .any(|event| event.reason.as_deref() == Some(reason))
        })
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_specs_rejected() {
    let client = client().await;
    let setup = Setup::create(&client, "srbad").await;
    let api = setup.rotations(&client);
    let cases = [
        (
            json!({ "secretName": "s", "keys": [{ "name": "k", "generator": { "jwtHmac": { "algorithm": "HS256", "length": 16 } } }] }),
            "too short for the algorithm",
        ),
        (
            json!({ "secretName": "s", "keys": [{ "name": "k", "generator": { "randomBytes": { "length": 0 } } }] }),
            "length",
        ),
        (
            json!({ "secretName": "s", "keys": [{ "name": "k", "generator": { "randomBytes": { "length": 100000 } } }] }),
            "length",
        ),
        (
            json!({ "secretName": "s", "keys": [{ "name": "k", "generator": {} }] }),
            "set exactly one of",
        ),
        (
            json!({ "secretName": "s", "interval": "90days", "keys": [{ "name": "k", "generator": { "randomBytes": { "length": 32 } } }] }),
            "'90days' is not a duration: use numbers with the units",
        ),
        (
            json!({ "secretName": "s", "keys": [{ "name": "k", "generator": { "randomBytes": { "length": 8, "encoding": "base32" } } }] }),
            "encoding",
        ),
    ];
    for (spec, fragment) in cases {
        let rotation: SecretRotation = match serde_json::from_value(json!({
            "apiVersion": "security.medianest.io/v1alpha1",
            "kind": "SecretRotation",
            "metadata": { "name": "bad" },
            "spec": spec,
        })) {
            Ok(rotation) => rotation,
            // The Rust type rejects unknown enum values before they reach the API server.
            Err(error) => {
                assert!(error.to_string().contains("unknown variant"), "{error}");
                continue;
            }
        };
        let params = PostParams {
            dry_run: true,
            ..PostParams::default()
        };
        let Err(kube::Error::Api(status)) = api.create(&params, &rotation).await else {
            panic!("{spec} was admitted");
        };
        assert!(
            status.message.contains(fragment),
            "{fragment}: {}",
            status.message
        );
    }

    // What admission cannot check becomes a False condition: a grace period longer than the
    // interval, a Secret of another type, and a Secret the API server rejects.
    let operator = Operator::start(&setup.id, LONG_RESYNC).await;
    let mut tls = jwt_spec("tls-typed", "90d", json!({}));
    tls["secretType"] = json!("kubernetes.io/tls");
    setup.apply(&client, "tls-typed", tls, json!({})).await;
    let (reason, message) = wait_for(
        "Ready=False for a rejected Secret",
        WATCH_DEADLINE,
        || async {
            let rotation = api.get("tls-typed").await.ok()?;
            let ready = rotation
                .status?
                .conditions
                .into_iter()
                .find(|c| c.type_ == "Ready")?;
            (ready.status == "False").then_some((ready.reason, ready.message))
        },
    )
    .await;
    assert_eq!(reason, "ApplyFailed");
    assert!(
        message.contains("tls-typed") && message.contains("tls.crt"),
        "{message}"
    );

    setup
        .apply(
            &client,
            "grace",
            jwt_spec(
                "grace",
                "1h",
                json!({ "previous": { "keep": true, "gracePeriod": "2h" } }),
            ),
            json!({}),
        )
        .await;
    let message = wait_for(
        "Ready=False for the grace period",
        WATCH_DEADLINE,
        || async {
            let rotation = api.get("grace").await.ok()?;
            let ready = rotation
                .status?
                .conditions
                .into_iter()
                .find(|c| c.type_ == "Ready")?;
            (ready.reason == "InvalidSpec").then_some(ready.message)
        },
    )
    .await;
    assert!(message.contains("spec.previous.gracePeriod"), "{message}");
    assert!(
        setup
            .secrets(&client)
            .get_opt("grace")
            .await
            .unwrap()
            .is_none(),
        "nothing written"
    );

    let tls: Secret = serde_json::from_value(json!({
        "metadata": { "name": "typed" },
        "type": "kubernetes.io/basic-auth",
        "stringData": { "username": "u", "password": "p" },
    }))
    .unwrap();
    let created = setup
        .secrets(&client)
        .create(&PostParams::default(), &tls)
        .await
        .unwrap();
    setup
        .apply(
            &client,
            "typed",
            jwt_spec("typed", "90d", json!({})),
            json!({}),
        )
        .await;
    let message = wait_for("Ready=False for the type", WATCH_DEADLINE, || async {
        let rotation = api.get("typed").await.ok()?;
        let ready = rotation
            .status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Ready")?;
        (ready.reason == "TypeMismatch").then_some(ready.message)
    })
    .await;
    assert!(message.contains("allowTypeChange"), "{message}");
    let after = setup.secrets(&client).get("typed").await.unwrap();
    assert_eq!(
        after.resource_version(),
        created.resource_version(),
        "nothing overwritten"
    );

    // A rotation request that is not a timestamp is reported, and rotates nothing.
    setup
        .apply(
            &client,
            "request",
            jwt_spec("request", "90d", json!({})),
            json!({ "security.medianest.io/rotate": "now" }),
        )
        .await;
    let secrets = setup.secrets(&client);
    wait_version(&secrets, "request", 1).await;
    wait_for("the invalid request reported", WATCH_DEADLINE, || async {
        events_with(&client, &setup.namespace, "InvalidRotateRequest")
            .await
            .then_some(())
    })
    .await;
    assert_eq!(version(&secrets.get("request").await.unwrap()), 1);

    operator.stop().await;
    setup.cleanup(&client).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn spec_key_changes_are_not_edits() {
    let client = client().await;
    let setup = Setup::create(&client, "srkeys").await;
    let operator = Operator::start(&setup.id, LONG_RESYNC).await;
    setup
        .apply(
            &client,
            "tokens",
            jwt_spec("tokens", "90d", json!({})),
            json!({}),
        )
        .await;
    let secrets = setup.secrets(&client);
    let first = wait_version(&secrets, "tokens", 1).await;

    // Add a key: it is generated, the others keep their values.
    let mut spec = jwt_spec("tokens", "90d", json!({}));
    spec["keys"].as_array_mut().unwrap().push(json!({ "name": "salt", "generator": { "randomBytes": { "length": 16, "encoding": "hex" } } }));
    setup.apply(&client, "tokens", spec, json!({})).await;
    let added = wait_for("the new key", WATCH_DEADLINE, || async {
        let secret = secrets.get("tokens").await.ok()?;
        value(&secret, "salt").map(|_| secret)
    })
    .await;
    assert_eq!(version(&added), 1, "adding a key is not a rotation");
    assert_eq!(value(&added, "jwt"), value(&first, "jwt"));

    // Remove a key from the spec: not an edit, so no rotation.
    let mut spec = jwt_spec("tokens", "90d", json!({}));
    spec["keys"]
        .as_array_mut()
        .unwrap()
        .retain(|key| key["name"] != "password");
    setup.apply(&client, "tokens", spec, json!({})).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = secrets.get("tokens").await.unwrap();
    assert_eq!(version(&after), 1, "removing a key is not an edit");
    assert_eq!(value(&after, "jwt"), value(&first, "jwt"));

    operator.stop().await;
    setup.cleanup(&client).await;
}
