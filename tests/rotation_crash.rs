//! Crash safety of rotations: the operator is stopped at named points between the steps of a
//! rotation, and at random moments, and a new one must finish the work with exactly one
//! rotation per request and no value lost.
//!
//! The points exist only with the `fail-points` feature (`make test` enables it). They are
//! process-wide, so every scenario runs in this one test, one after the other.

#[cfg(not(feature = "fail-points"))]
compile_error!(
    "tests/rotation_crash.rs needs the fail-points feature: run `make test`, or cargo test --features fail-points"
);

mod common;

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use common::{
    LONG_RESYNC, Operator, TEST_LABEL, WATCH_DEADLINE, client, create_namespace, unique_id,
    wait_for,
};
use medianest_operator::api::SecretRotation;
use medianest_operator::controller::failpoints::{self, Point};

fn value(secret: &Secret) -> Vec<u8> {
    secret.data.as_ref().unwrap()["jwt"].0.clone()
}

fn previous(secret: &Secret) -> Option<Vec<u8>> {
    secret
        .data
        .as_ref()?
        .get("jwt.previous")
        .map(|value| value.0.clone())
}

fn version(secret: &Secret) -> u64 {
    secret
        .annotations()
        .get("security.medianest.io/version")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn restarted_for(deployment: &Deployment) -> Option<String> {
    deployment
        .spec
        .template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get("rotation.security.medianest.io/tokens")
        .cloned()
}

struct Scenario {
    id: String,
    namespace: String,
    client: Client,
}

impl Scenario {
    async fn create(client: &Client) -> Scenario {
        let id = unique_id("crash");
        let namespace = format!("{id}-app");
        create_namespace(client, &namespace, &id, &[]).await;
        let deployment: Deployment = serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": { "name": "api" },
            "spec": {
                "replicas": 0,
                "selector": { "matchLabels": { "app": "api" } },
                "template": { "metadata": { "labels": { "app": "api" } }, "spec": { "containers": [{
                    "name": "app", "image": "registry.k8s.io/pause:3.10",
                    "env": [{ "name": "JWT", "valueFrom": { "secretKeyRef": { "name": "tokens", "key": "jwt" } } }],
                }]}},
            },
        }))
        .unwrap();
        Api::<Deployment>::namespaced(client.clone(), &namespace)
            .create(&PostParams::default(), &deployment)
            .await
            .unwrap();
        Scenario {
            id,
            namespace,
            client: client.clone(),
        }
    }

    async fn apply(&self, annotations: Value) {
        let rotation: SecretRotation = serde_json::from_value(json!({
            "apiVersion": "security.medianest.io/v1alpha1",
            "kind": "SecretRotation",
            "metadata": { "name": "tokens", "namespace": self.namespace, "labels": { TEST_LABEL: self.id }, "annotations": annotations },
            "spec": {
                "secretName": "tokens",
                "keys": [{ "name": "jwt", "generator": { "randomBytes": { "length": 32 } } }],
                "interval": "90d",
                "previous": { "keep": true, "gracePeriod": "1h" },
                "consumers": { "workloads": [{ "kind": "Deployment", "name": "api" }], "restartWindow": "1s" },
            },
        }))
        .unwrap();
        Api::<SecretRotation>::namespaced(self.client.clone(), &self.namespace)
            .patch(
                "tokens",
                &PatchParams::apply("medianest-tests").force(),
                &Patch::Apply(&rotation),
            )
            .await
            .unwrap();
    }

    async fn request(&self) {
        self.apply(json!({ "security.medianest.io/rotate": Timestamp::now().to_string() }))
            .await;
    }

    async fn secret(&self) -> Secret {
        Api::<Secret>::namespaced(self.client.clone(), &self.namespace)
            .get("tokens")
            .await
            .unwrap()
    }

    async fn deployment(&self) -> Deployment {
        Api::<Deployment>::namespaced(self.client.clone(), &self.namespace)
            .get("api")
            .await
            .unwrap()
    }

    /// Waits until the Secret is at `version` and the consumer has been restarted for it.
    async fn settled(&self, version_expected: u64) -> Secret {
        wait_for(
            &format!("version {version_expected} written and rolled out"),
            WATCH_DEADLINE,
            || async {
                let secret = Api::<Secret>::namespaced(self.client.clone(), &self.namespace)
                    .get_opt("tokens")
                    .await
                    .ok()??;
                if version(&secret) != version_expected {
                    return None;
                }
                let deployment = self.deployment().await;
                let restarted = version_expected <= 1
                    || restarted_for(&deployment) == Some(version_expected.to_string());
                restarted.then_some(secret)
            },
        )
        .await
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn crashes_lose_nothing_and_rotate_once() {
    let client = client().await;
    let scenario = Scenario::create(&client).await;
    failpoints::reset();

    let operator = Operator::start(&scenario.id, LONG_RESYNC).await;
    scenario.apply(json!({})).await;
    let mut current = scenario.settled(1).await;
    operator.stop().await;

    // Named points: stop there, start a new operator, check exactly one more version and the
    // old value kept as the previous one.
    for point in [
        Point::BeforeSecretWrite,
        Point::AfterSecretWrite,
        Point::AfterConsumerRestart,
    ] {
        failpoints::reset();
        failpoints::arm(point);
        let crashing = Operator::start(&scenario.id, LONG_RESYNC).await;
        scenario.request().await;
        wait_for(
            &format!("the operator to reach {point:?}"),
            WATCH_DEADLINE,
            || async { failpoints::reached(point).then_some(()) },
        )
        .await;
        crashing.abort();
        failpoints::reset();

        let expected = version(&current) + 1;
        let generation_before = scenario.deployment().await.metadata.generation.unwrap();
        let recovering = Operator::start(&scenario.id, LONG_RESYNC).await;
        let next = scenario.settled(expected).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = scenario.secret().await;
        assert_eq!(version(&after), expected, "{point:?}: exactly one rotation");
        assert_eq!(
            previous(&after),
            Some(value(&current)),
            "{point:?}: the old value is kept for the grace period"
        );
        assert_ne!(value(&after), value(&current), "{point:?}: a new value");
        let generation_after = scenario.deployment().await.metadata.generation.unwrap();
        let restarts = generation_after - generation_before;
        let expected_restarts = if point == Point::AfterConsumerRestart {
            0
        } else {
            1
        };
        assert_eq!(
            restarts, expected_restarts,
            "{point:?}: the consumer restarted once for the rotation"
        );
        recovering.stop().await;
        current = next;
    }

    // Random moments: stop the operator at a pseudo-random delay after each request.
    let mut seed: u64 = 0x5eed_1234;
    for round in 0..6 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let delay = Duration::from_millis((seed >> 33) % 400);
        let crashing = Operator::start(&scenario.id, LONG_RESYNC).await;
        scenario.request().await;
        tokio::time::sleep(delay).await;
        crashing.abort();

        let expected = version(&current) + 1;
        let recovering = Operator::start(&scenario.id, LONG_RESYNC).await;
        let next = scenario.settled(expected).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let after = scenario.secret().await;
        assert_eq!(
            version(&after),
            expected,
            "round {round} ({delay:?}): exactly one rotation"
        );
        assert_eq!(
            previous(&after),
            Some(value(&current)),
            "round {round}: no value lost"
        );
        recovering.stop().await;
        current = next;
    }

    common::delete_namespaces(&client, std::slice::from_ref(&scenario.namespace)).await;
}
