//! Integration tests of the mTLS certificates against the local control plane.

mod common;

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use common::{
    LONG_RESYNC, Operator, TEST_LABEL, WATCH_DEADLINE, client, create_namespace, unique_id,
    wait_for,
};
use medianest_operator::api::MediaNestSecurityPolicy;
use medianest_operator::policy::pki;

struct Setup {
    id: String,
    namespace: String,
}

impl Setup {
    async fn create(client: &Client, prefix: &str, services: &[&str]) -> Setup {
        let id = unique_id(prefix);
        let namespace = format!("{id}-svc");
        create_namespace(client, &namespace, &id, &[]).await;
        for name in services {
            let service: Service = serde_json::from_value(json!({
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": { "name": name, "labels": { "tier": "data" } },
                "spec": { "ports": [{ "port": 443 }], "selector": { "app": name } },
            }))
            .unwrap();
            Api::<Service>::namespaced(client.clone(), &namespace)
                .create(&PostParams::default(), &service)
                .await
                .unwrap();
        }
        Setup { id, namespace }
    }

    async fn apply_policy(&self, client: &Client, mtls: Value, annotations: Value) {
        let policy = json!({
            "apiVersion": "security.medianest.io/v1alpha1",
            "kind": "MediaNestSecurityPolicy",
            "metadata": { "name": self.id, "labels": { TEST_LABEL: self.id }, "annotations": annotations },
            "spec": {
                "namespaceSelector": { "matchLabels": { TEST_LABEL: self.id } },
                "network": { "defaultDeny": false, "dns": { "enabled": false } },
                "mtls": mtls,
            },
        });
        let policy: MediaNestSecurityPolicy = serde_json::from_value(policy).unwrap();
        Api::<MediaNestSecurityPolicy>::all(client.clone())
            .patch(
                &self.id,
                &PatchParams::apply("medianest-tests").force(),
                &Patch::Apply(&policy),
            )
            .await
            .unwrap_or_else(|error| panic!("failed to apply policy {}: {error}", self.id));
    }

    fn secrets(&self, client: &Client) -> Api<Secret> {
        Api::namespaced(client.clone(), &self.namespace)
    }

    async fn cleanup(&self, client: &Client) {
        let _ = Api::<MediaNestSecurityPolicy>::all(client.clone())
            .delete(&self.id, &DeleteParams::default())
            .await;
        common::delete_namespaces(client, std::slice::from_ref(&self.namespace)).await;
        let ca = format!("mn-{}-ca", self.id);
        let _ = Api::<Secret>::namespaced(client.clone(), "medianest-system")
            .delete(&ca, &DeleteParams::default())
            .await;
    }
}

fn text(secret: &Secret, key: &str) -> String {
    String::from_utf8(secret.data.as_ref().unwrap()[key].0.clone()).unwrap()
}

/// Splits a PEM bundle into its certificates.
fn certificates(bundle: &str) -> Vec<String> {
    bundle
        .split_inclusive("-----END CERTIFICATE-----")
        .map(str::trim)
        .filter(|part| part.contains("BEGIN CERTIFICATE"))
        .map(|part| format!("{part}\n"))
        .collect()
}

/// Checks a stored leaf against a bundle.
fn verifies(secret: &Secret, bundle: &str) -> Result<usize, String> {
    let trusted = certificates(bundle);
    let refs: Vec<&str> = trusted.iter().map(String::as_str).collect();
    pki::check_leaf(
        &text(secret, "tls.crt"),
        &text(secret, "tls.key"),
        &[],
        &[],
        &refs,
        Timestamp::now(),
    )
    .map(|verified| verified.ca_index)
    .map_err(|problems| format!("{problems:?}"))
}

async fn wait_secret(api: &Api<Secret>, name: &str) -> Secret {
    wait_for(&format!("Secret {name}"), WATCH_DEADLINE, || async {
        api.get_opt(name).await.ok().flatten().filter(|secret| {
            secret
                .data
                .as_ref()
                .is_some_and(|d| d.contains_key("tls.crt"))
        })
    })
    .await
}

async fn policy(client: &Client, name: &str) -> MediaNestSecurityPolicy {
    Api::<MediaNestSecurityPolicy>::all(client.clone())
        .get(name)
        .await
        .unwrap()
}

fn condition(policy: &MediaNestSecurityPolicy, type_: &str) -> Option<(String, String, String)> {
    let condition = policy
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)?;
    Some((
        condition.status.clone(),
        condition.reason.clone(),
        condition.message.clone(),
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn certificates_issued_with_bundle() {
    let client = client().await;
    let setup = Setup::create(&client, "tls", &["api", "postgresql"]).await;
    let operator = Operator::start(&setup.id, LONG_RESYNC).await;
    setup
        .apply_policy(
            &client,
            json!({ "services": [{ "name": "api", "dnsNames": ["api.example.com"] }, { "selector": { "matchLabels": { "tier": "data" } } }] }),
            json!({}),
        )
        .await;

    let secrets = setup.secrets(&client);
    let api = wait_secret(&secrets, "api-tls").await;
    let postgresql = wait_secret(&secrets, "postgresql-tls").await;
    assert_eq!(api.type_.as_deref(), Some("kubernetes.io/tls"));
    for key in ["tls.crt", "tls.key", "ca.crt"] {
        assert!(api.data.as_ref().unwrap().contains_key(key), "{key}");
    }
    let info = pki::inspect(&text(&api, "tls.crt")).unwrap();
    let namespace = &setup.namespace;
    for name in [
        "api".to_string(),
        format!("api.{namespace}"),
        format!("api.{namespace}.svc"),
        format!("api.{namespace}.svc.cluster.local"),
        "api.example.com".to_string(),
    ] {
        assert!(
            info.dns_names.contains(&name),
            "{name} missing from {:?}",
            info.dns_names
        );
    }
    assert!(!info.is_ca);

    let bundle = wait_for("the trust bundle", WATCH_DEADLINE, || async {
        let map = Api::<ConfigMap>::namespaced(client.clone(), namespace)
            .get_opt("medianest-ca-bundle")
            .await
            .ok()??;
        map.data?.get("ca.crt").cloned()
    })
    .await;
    assert_eq!(bundle, text(&api, "ca.crt"));
    assert!(verifies(&api, &bundle).is_ok());
    assert!(verifies(&postgresql, &bundle).is_ok());

    let status = wait_for("CertificatesReady", WATCH_DEADLINE, || async {
        let policy = policy(&client, &setup.id).await;
        (condition(&policy, "CertificatesReady")?.0 == "True").then_some(policy.status?)
    })
    .await;
    let mtls = status.mtls.unwrap();
    assert_eq!(mtls.certificates.len(), 2);
    assert!(
        mtls.certificates
            .iter()
            .all(|certificate| certificate.renew_at.is_some())
    );
    assert_eq!(mtls.rotation_phase.as_deref(), Some("Stable"));
    // No private key anywhere in the status.
    let text_status = serde_json::to_string(&policy(&client, &setup.id).await.status).unwrap();
    assert!(!text_status.contains("PRIVATE KEY"));

    operator.stop().await;
    setup.cleanup(&client).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tampered_and_deleted_reissued() {
    let client = client().await;
    let setup = Setup::create(&client, "tamper", &["api", "web"]).await;
    let operator = Operator::start(&setup.id, LONG_RESYNC).await;
    setup
        .apply_policy(
            &client,
            json!({ "services": [{ "name": "api" }, { "name": "web" }] }),
            json!({}),
        )
        .await;
    let secrets = setup.secrets(&client);
    let original = wait_secret(&secrets, "api-tls").await;
    let web = wait_secret(&secrets, "web-tls").await;

    // Another tool adds a label; the operator keeps it.
    let label = json!({ "metadata": { "labels": { "backup.example.com/include": "true" } } });
    secrets
        .patch("api-tls", &PatchParams::default(), &Patch::Merge(&label))
        .await
        .unwrap();

    // A person swaps in the key of another certificate.
    let swapped = json!({ "data": { "tls.key": STANDARD.encode(text(&web, "tls.key")) } });
    secrets
        .patch("api-tls", &PatchParams::default(), &Patch::Merge(&swapped))
        .await
        .unwrap();
    let reissued = wait_for(
        "the mismatched key to be replaced",
        WATCH_DEADLINE,
        || async {
            let current = secrets.get("api-tls").await.ok()?;
            (text(&current, "tls.crt") != text(&original, "tls.crt")
                && verifies(&current, &text(&current, "ca.crt")).is_ok())
            .then_some(current)
        },
    )
    .await;
    assert_eq!(reissued.uid(), original.uid(), "updated in place");
    assert_eq!(
        reissued.labels()["backup.example.com/include"],
        "true",
        "foreign labels kept"
    );

    // Garbage in the certificate.
    let garbage = json!({ "data": { "tls.crt": STANDARD.encode("not a certificate") } });
    secrets
        .patch("api-tls", &PatchParams::default(), &Patch::Merge(&garbage))
        .await
        .unwrap();
    wait_for(
        "the garbage certificate to be replaced",
        WATCH_DEADLINE,
        || async {
            let current = secrets.get("api-tls").await.ok()?;
            verifies(&current, &text(&current, "ca.crt")).ok()
        },
    )
    .await;

    // Deleted: issued again.
    secrets
        .delete("web-tls", &DeleteParams::default())
        .await
        .unwrap();
    let recreated = wait_secret(&secrets, "web-tls").await;
    assert_ne!(recreated.uid(), web.uid());
    assert!(verifies(&recreated, &text(&recreated, "ca.crt")).is_ok());

    let events: Api<k8s_openapi::api::events::v1::Event> = Api::all(client.clone());
    let warning = wait_for("a CertificateReissued Warning", WATCH_DEADLINE, || async {
        let list = events.list(&Default::default()).await.ok()?;
        list.items.into_iter().find(|event| {
            event.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(setup.id.as_str())
                && event.reason.as_deref() == Some("CertificateReissued")
        })
    })
    .await;
    assert_eq!(warning.type_.as_deref(), Some("Warning"));
    assert!(!warning.note.unwrap_or_default().contains("PRIVATE KEY"));

    operator.stop().await;
    setup.cleanup(&client).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ca_rotation_keeps_every_leaf_trusted() {
    let client = client().await;
    let setup = Setup::create(&client, "rotate", &["api", "web"]).await;
    let operator = Operator::start(&setup.id, LONG_RESYNC).await;
    let mtls = json!({
        "services": [{ "name": "api" }, { "name": "web" }],
        "lifetime": "20s",
        "renewBefore": "5s",
        "propagationDelay": "3s",
    });
    setup.apply_policy(&client, mtls.clone(), json!({})).await;
    let secrets = setup.secrets(&client);
    let first = wait_secret(&secrets, "api-tls").await;
    let first_ca = certificates(&text(&first, "ca.crt"));
    assert_eq!(first_ca.len(), 1);

    // Ask for a rotation, then sample every Secret and bundle until the old CA is gone.
    setup
        .apply_policy(
            &client,
            mtls,
            json!({ "security.medianest.io/rotate-ca": Timestamp::now().to_string() }),
        )
        .await;
    let bundles: Api<ConfigMap> = Api::namespaced(client.clone(), &setup.namespace);
    let started = Instant::now();
    let mut phases = Vec::new();
    let mut samples = 0;
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "rotation did not finish; phases seen: {phases:?}"
        );
        let policy_now = policy(&client, &setup.id).await;
        let phase = policy_now
            .status
            .and_then(|s| s.mtls)
            .and_then(|m| m.rotation_phase)
            .unwrap_or_default();
        if phases.last() != Some(&phase) {
            phases.push(phase.clone());
        }
        let bundle = bundles
            .get("medianest-ca-bundle")
            .await
            .unwrap()
            .data
            .unwrap()["ca.crt"]
            .clone();
        for name in ["api-tls", "web-tls"] {
            let secret = secrets.get(name).await.unwrap();
            // Every leaf verifies against the namespace bundle and its own ca.crt.
            let against_bundle = verifies(&secret, &bundle);
            assert!(
                against_bundle.is_ok(),
                "{name} against the bundle in phase {phase}: {against_bundle:?}"
            );
            let against_own = verifies(&secret, &text(&secret, "ca.crt"));
            assert!(
                against_own.is_ok(),
                "{name} against its ca.crt in phase {phase}: {against_own:?}"
            );
            samples += 1;
        }
        let finished = phase == "Stable" && phases.iter().any(|seen| seen == "Reissuing");
        if finished && certificates(&bundle).len() == 1 {
            assert!(
                !first_ca.contains(&certificates(&bundle)[0]),
                "the bundle holds the new CA"
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(phases.contains(&"Propagating".to_string()), "{phases:?}");
    assert!(phases.contains(&"Reissuing".to_string()), "{phases:?}");
    assert!(samples > 20, "sampled {samples} times");
    let current = secrets.get("api-tls").await.unwrap();
    assert_ne!(
        text(&current, "tls.crt"),
        text(&first, "tls.crt"),
        "re-issued by the new CA"
    );

    operator.stop().await;
    setup.cleanup(&client).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn recreated_policy_adopts_certificates() {
    let client = client().await;
    let setup = Setup::create(&client, "adopt", &["api"]).await;
    let operator = Operator::start(&setup.id, Duration::from_secs(1)).await;
    let mtls = json!({ "services": [{ "name": "api" }] });
    setup.apply_policy(&client, mtls.clone(), json!({})).await;
    let secrets = setup.secrets(&client);
    let issued = wait_secret(&secrets, "api-tls").await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    // A second reconcile writes nothing.
    let writes = operator.requests.mutating();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        operator.requests.mutating(),
        writes,
        "resyncs write nothing"
    );

    // GitOps deletes and re-creates the policy: the CA and the certificate stay and are adopted.
    Api::<MediaNestSecurityPolicy>::all(client.clone())
        .delete(&setup.id, &DeleteParams::default())
        .await
        .unwrap();
    wait_for("the policy to be gone", WATCH_DEADLINE, || async {
        Api::<MediaNestSecurityPolicy>::all(client.clone())
            .get_opt(&setup.id)
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let kept = secrets
        .get("api-tls")
        .await
        .expect("the certificate outlives the policy");
    assert_eq!(kept.resource_version(), issued.resource_version());

    setup.apply_policy(&client, mtls, json!({})).await;
    wait_for("the re-created policy ready", WATCH_DEADLINE, || async {
        let policy = policy(&client, &setup.id).await;
        (condition(&policy, "CertificatesReady")?.0 == "True").then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let adopted = secrets.get("api-tls").await.unwrap();
    assert_eq!(
        text(&adopted, "tls.crt"),
        text(&issued, "tls.crt"),
        "adopted without re-issuing"
    );

    operator.stop().await;
    setup.cleanup(&client).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_ca_reported_not_overwritten() {
    let client = client().await;
    let setup = Setup::create(&client, "badca", &["api"]).await;
    let operator = Operator::start(&setup.id, LONG_RESYNC).await;

    // Missing Secret.
    let missing = json!({ "services": [{ "name": "api" }], "ca": { "secretRef": { "name": "no-such-ca", "namespace": setup.namespace } } });
    setup.apply_policy(&client, missing, json!({})).await;
    let message = wait_for("InvalidCA for a missing Secret", WATCH_DEADLINE, || async {
        let policy = policy(&client, &setup.id).await;
        let (status, reason, message) = condition(&policy, "CertificatesReady")?;
        (status == "False" && reason == "InvalidCA").then_some(message)
    })
    .await;
    assert!(
        message.contains("no-such-ca") && message.contains("not found"),
        "{message}"
    );

    // A leaf certificate is not a CA.
    let ca = pki::generate_ca(
        "test CA",
        pki::KeyAlgorithm::EcdsaP256,
        Timestamp::now(),
        Timestamp::now() + k8s_openapi::jiff::SignedDuration::from_hours(24),
    )
    .unwrap();
    let leaf = pki::issue_leaf(
        &ca,
        &pki::LeafRequest {
            common_name: "leaf".into(),
            dns_names: vec!["leaf".into()],
            ip_addresses: Vec::new(),
            algorithm: pki::KeyAlgorithm::EcdsaP256,
            not_before: Timestamp::now(),
            not_after: Timestamp::now() + k8s_openapi::jiff::SignedDuration::from_hours(1),
        },
    )
    .unwrap();
    let not_a_ca: Secret = serde_json::from_value(json!({
        "metadata": { "name": "leaf-as-ca" },
        "type": "kubernetes.io/tls",
        "stringData": { "tls.crt": leaf.cert_pem, "tls.key": leaf.key.expose() },
    }))
    .unwrap();
    let created = setup
        .secrets(&client)
        .create(&PostParams::default(), &not_a_ca)
        .await
        .unwrap();
    let referenced = json!({ "services": [{ "name": "api" }], "ca": { "secretRef": { "name": "leaf-as-ca", "namespace": setup.namespace } } });
    setup.apply_policy(&client, referenced, json!({})).await;
    let message = wait_for("InvalidCA for a leaf", WATCH_DEADLINE, || async {
        let policy = policy(&client, &setup.id).await;
        let (_, reason, message) = condition(&policy, "CertificatesReady")?;
        (reason == "InvalidCA" && message.contains("leaf-as-ca")).then_some(message)
    })
    .await;
    assert!(!message.contains("PRIVATE KEY"), "{message}");
    let after = setup.secrets(&client).get("leaf-as-ca").await.unwrap();
    assert_eq!(
        after.resource_version(),
        created.resource_version(),
        "the referenced Secret is not overwritten"
    );
    assert!(
        setup
            .secrets(&client)
            .get_opt("api-tls")
            .await
            .unwrap()
            .is_none(),
        "nothing issued"
    );

    // Waiting for the Secret to change is no busy loop.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (writes, reads) = (operator.requests.mutating(), operator.requests.reads());
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        operator.requests.mutating(),
        writes,
        "writes while the CA is invalid"
    );
    assert!(
        operator.requests.reads() <= reads + 2,
        "reads while the CA is invalid: {}",
        operator.requests.reads() - reads
    );

    // The Secret is fixed with a real CA: the operator does not watch it, but looks again
    // within its recheck interval of 30 seconds, far shorter than the resync.
    let fixed = json!({ "stringData": { "tls.crt": ca.cert_pem, "tls.key": ca.key.expose() } });
    setup
        .secrets(&client)
        .patch("leaf-as-ca", &PatchParams::default(), &Patch::Merge(&fixed))
        .await
        .unwrap();
    wait_for(
        "certificates issued by the fixed CA",
        Duration::from_secs(90),
        || async {
            let policy = policy(&client, &setup.id).await;
            let (status, _, _) = condition(&policy, "CertificatesReady")?;
            let issued = setup.secrets(&client).get_opt("api-tls").await.ok()??;
            (status == "True").then_some(issued)
        },
    )
    .await;

    // renewBefore not shorter than the lifetime.
    setup
        .apply_policy(
            &client,
            json!({ "services": [{ "name": "api" }], "lifetime": "2h", "renewBefore": "2h" }),
            json!({}),
        )
        .await;
    let message = wait_for("InvalidSpec for renewBefore", WATCH_DEADLINE, || async {
        let policy = policy(&client, &setup.id).await;
        let (_, reason, message) = condition(&policy, "Ready")?;
        (reason == "InvalidSpec").then_some(message)
    })
    .await;
    assert!(message.contains("spec.mtls.renewBefore"), "{message}");
    let policy = policy(&client, &setup.id).await;
    let (status, reason, message) = condition(&policy, "CertificatesReady").unwrap();
    assert_eq!((status.as_str(), reason.as_str()), ("False", "InvalidSpec"));
    assert!(message.contains("spec.mtls.renewBefore"), "{message}");
    let (_, _, network) = condition(&policy, "NetworkReady").unwrap();
    assert!(!network.contains("renewBefore"), "{network}");

    operator.stop().await;
    setup.cleanup(&client).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn lifetime_below_floor_refused() {
    let client = client().await;
    let setup = Setup::create(&client, "floor", &["api"]).await;
    let operator =
        Operator::start_with_floor(&setup.id, LONG_RESYNC, Duration::from_secs(3600)).await;
    setup
        .apply_policy(
            &client,
            json!({ "services": [{ "name": "api" }], "lifetime": "10m" }),
            json!({}),
        )
        .await;
    let message = wait_for(
        "CertificatesReady=False below the floor",
        WATCH_DEADLINE,
        || async {
            let policy = policy(&client, &setup.id).await;
            let (status, reason, message) = condition(&policy, "CertificatesReady")?;
            (status == "False" && reason == "InvalidSpec").then_some(message)
        },
    )
    .await;
    assert!(
        message.contains("spec.mtls.lifetime") && message.contains("min-certificate-lifetime"),
        "{message}"
    );
    assert!(
        setup
            .secrets(&client)
            .get_opt("api-tls")
            .await
            .unwrap()
            .is_none()
    );

    operator.stop().await;
    setup.cleanup(&client).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_policy_removes_secrets() {
    let client = client().await;
    let setup = Setup::create(&client, "delpol", &["api"]).await;
    let operator = Operator::start(&setup.id, LONG_RESYNC).await;
    setup
        .apply_policy(
            &client,
            json!({ "services": [{ "name": "api" }], "deletionPolicy": "Delete" }),
            json!({}),
        )
        .await;
    let secrets = setup.secrets(&client);
    let issued = wait_secret(&secrets, "api-tls").await;
    assert_eq!(
        issued.owner_references().len(),
        1,
        "owned by the policy with deletionPolicy Delete"
    );

    Api::<MediaNestSecurityPolicy>::all(client.clone())
        .delete(&setup.id, &DeleteParams::default())
        .await
        .unwrap();
    wait_for(
        "the garbage collector to delete the certificate",
        WATCH_DEADLINE,
        || async {
            secrets
                .get_opt("api-tls")
                .await
                .ok()?
                .is_none()
                .then_some(())
        },
    )
    .await;
    let ca = format!("mn-{}-ca", setup.id);
    wait_for(
        "the garbage collector to delete the CA",
        WATCH_DEADLINE,
        || async {
            Api::<Secret>::namespaced(client.clone(), "medianest-system")
                .get_opt(&ca)
                .await
                .ok()?
                .is_none()
                .then_some(())
        },
    )
    .await;

    operator.stop().await;
    setup.cleanup(&client).await;
}
