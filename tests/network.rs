//! Integration tests of the network controller against the local control plane.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde::Deserialize;
use serde_json::json;

use common::{
    LONG_RESYNC, Operator, TEST_LABEL, WATCH_DEADLINE, client, create_namespace, unique_id,
    wait_for,
};
use medianest_operator::api::MediaNestSecurityPolicy;
use medianest_operator::api::policy::match_labels;

const EXAMPLE_NAMESPACES: &str = include_str!("../manifests/examples/namespaces.yaml");
const EXAMPLE_POLICY: &str = include_str!("../manifests/examples/policy.yaml");
const TIERS: [&str; 4] = ["dmz", "app", "data", "monitoring"];

/// The example layout, renamed for one test: namespaces `ID-dmz` and so on, and a policy
/// named ID that selects only them.
struct Example {
    id: String,
    namespaces: Vec<String>,
}

impl Example {
    fn namespace(&self, tier: &str) -> String {
        format!("{}-{tier}", self.id)
    }

    fn policy(&self) -> MediaNestSecurityPolicy {
        let mut policy: MediaNestSecurityPolicy = serde_yaml::from_str(EXAMPLE_POLICY).unwrap();
        policy.metadata.name = Some(self.id.clone());
        policy.metadata.labels = Some(BTreeMap::from([(TEST_LABEL.to_string(), self.id.clone())]));
        policy.spec.namespace_selector = match_labels([(TEST_LABEL, self.id.as_str())]);
        // These tests are about the network section; the others have their own tests.
        policy.spec.workloads = None;
        policy.spec.mtls = None;
        policy
    }

    async fn create(client: &Client, prefix: &str) -> Example {
        let id = unique_id(prefix);
        let mut namespaces = Vec::new();
        for document in serde_yaml::Deserializer::from_str(EXAMPLE_NAMESPACES) {
            let namespace = Namespace::deserialize(document).unwrap();
            let tier = namespace.labels()["medianest.io/tier"].clone();
            let name = format!("{id}-{tier}");
            create_namespace(client, &name, &id, &[("medianest.io/tier", &tier)]).await;
            namespaces.push(name);
        }
        Example { id, namespaces }
    }

    async fn apply_policy(&self, client: &Client, policy: &MediaNestSecurityPolicy) {
        let api: Api<MediaNestSecurityPolicy> = Api::all(client.clone());
        api.patch(
            &self.id,
            &PatchParams::apply("medianest-tests").force(),
            &Patch::Apply(policy),
        )
        .await
        .unwrap_or_else(|error| panic!("failed to apply policy {}: {error}", self.id));
    }

    async fn cleanup(&self, client: &Client) {
        let api: Api<MediaNestSecurityPolicy> = Api::all(client.clone());
        let _ = api.delete(&self.id, &DeleteParams::default()).await;
        common::delete_namespaces(client, &self.namespaces).await;
    }
}

/// Lists the NetworkPolicies generated for `policy`, by (namespace, name).
async fn generated(client: &Client, policy: &str) -> BTreeMap<(String, String), NetworkPolicy> {
    let api: Api<NetworkPolicy> = Api::all(client.clone());
    let params = ListParams::default().labels(&format!("security.medianest.io/policy={policy}"));
    api.list(&params)
        .await
        .expect("list NetworkPolicies")
        .items
        .into_iter()
        .map(|object| ((object.namespace().unwrap(), object.name_any()), object))
        .collect()
}

fn expected_names(example: &Example) -> BTreeSet<(String, String)> {
    let id = &example.id;
    let mut names = BTreeSet::new();
    for tier in TIERS {
        for purpose in ["default-deny", "dns", "monitoring", "egress-external-https"] {
            names.insert((example.namespace(tier), format!("mn-{id}-{purpose}")));
        }
    }
    names.insert((example.namespace("dmz"), format!("mn-{id}-zone-dmz")));
    names.insert((example.namespace("app"), format!("mn-{id}-zone-app")));
    names.insert((example.namespace("data"), format!("mn-{id}-zone-database")));
    names.insert((
        example.namespace("monitoring"),
        format!("mn-{id}-monitoring-egress"),
    ));
    names
}

async fn wait_for_names(
    client: &Client,
    policy: &str,
    expected: &BTreeSet<(String, String)>,
    what: &str,
) {
    wait_for(what, WATCH_DEADLINE, || async {
        let names: BTreeSet<_> = generated(client, policy).await.into_keys().collect();
        (names == *expected).then_some(())
    })
    .await;
}

async fn policy_status(client: &Client, name: &str) -> MediaNestSecurityPolicy {
    Api::<MediaNestSecurityPolicy>::all(client.clone())
        .get(name)
        .await
        .expect("get policy")
}

fn condition<'a>(
    policy: &'a MediaNestSecurityPolicy,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    policy
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|condition| condition.type_ == type_)
}

async fn wait_ready(
    client: &Client,
    name: &str,
    generation_at_least: i64,
) -> MediaNestSecurityPolicy {
    wait_for(
        &format!("policy {name} Ready=True"),
        WATCH_DEADLINE,
        || async {
            let policy = policy_status(client, name).await;
            let ready = condition(&policy, "Ready")?;
            let observed = policy.status.as_ref()?.observed_generation?;
            (ready.status == "True" && observed >= generation_at_least).then_some(policy)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn example_policies_generated_with_status() {
    let client = client().await;
    let example = Example::create(&client, "ex").await;
    let operator = Operator::start(&example.id, LONG_RESYNC).await;
    example.apply_policy(&client, &example.policy()).await;

    let expected = expected_names(&example);
    wait_for_names(
        &client,
        &example.id,
        &expected,
        "the example's NetworkPolicies",
    )
    .await;
    let policy = wait_ready(&client, &example.id, 1).await;

    let status = policy.status.clone().unwrap();
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(status.governed_namespace_count, 4);
    assert_eq!(status.network_policy_count, expected.len() as i32);
    assert_eq!(status.drift_corrections, 0);
    let mut governed = example.namespaces.clone();
    governed.sort();
    assert_eq!(status.governed_namespaces, governed);
    // Each object is written once: the reconciles that the operator's own writes trigger find
    // nothing to do. The status may be written twice, when a reconcile starts before the
    // first status write has reached the cache; the second write changes nothing.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        operator.requests.mutating_for("networkpolicies"),
        expected.len() as u64
    );
    let status_writes = operator
        .requests
        .mutating_for("medianestsecuritypolicies/status");
    assert!(
        (1..=2).contains(&status_writes),
        "{status_writes} status writes"
    );
    assert_eq!(
        operator.requests.mutating_for("events"),
        0,
        "no Event for a first enforcement"
    );

    let network = condition(&policy, "NetworkReady").expect("NetworkReady condition");
    assert_eq!(network.status, "True");
    assert_eq!(network.reason, "Reconciled");

    // Every generated object is owned by the policy and labelled.
    for object in generated(&client, &example.id).await.values() {
        let owner = &object.owner_references()[0];
        assert_eq!(owner.kind, "MediaNestSecurityPolicy");
        assert_eq!(owner.uid, policy.uid().unwrap());
        assert_eq!(
            object.labels()["app.kubernetes.io/managed-by"],
            "medianest-operator"
        );
    }

    operator.stop().await;
    example.cleanup(&client).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn edited_policy_restored_in_place() {
    let client = client().await;
    let example = Example::create(&client, "edit").await;
    let operator = Operator::start(&example.id, LONG_RESYNC).await;
    example.apply_policy(&client, &example.policy()).await;
    wait_for_names(
        &client,
        &example.id,
        &expected_names(&example),
        "generated policies",
    )
    .await;
    wait_ready(&client, &example.id, 1).await;

    let namespace = example.namespace("data");
    let name = format!("mn-{}-zone-database", example.id);
    let api: Api<NetworkPolicy> = Api::namespaced(client.clone(), &namespace);
    let original = api.get(&name).await.unwrap();

    // A person opens the database to everything: another port and an allow-all peer.
    let mut edited = original.clone();
    let spec = edited.spec.as_mut().unwrap();
    let rule = &mut spec.ingress.as_mut().unwrap()[0];
    rule.ports.as_mut().unwrap()[0].port =
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(2222));
    // An ingress rule with no peers and no ports allows everything.
    spec.ingress.as_mut().unwrap().push(Default::default());
    api.replace(&name, &PostParams::default(), &edited)
        .await
        .expect("edit by a person");

    let restored = wait_for(
        "the edited NetworkPolicy to be restored",
        WATCH_DEADLINE,
        || async {
            let current = api.get(&name).await.ok()?;
            (current.spec == original.spec).then_some(current)
        },
    )
    .await;
    assert_eq!(
        restored.uid(),
        original.uid(),
        "restored in place, not re-created"
    );

    let policy = wait_for("drift to be counted", WATCH_DEADLINE, || async {
        let policy = policy_status(&client, &example.id).await;
        (policy.status.as_ref()?.drift_corrections >= 1).then_some(policy)
    })
    .await;
    assert_eq!(policy.status.unwrap().drift_corrections, 1);

    operator.stop().await;
    example.cleanup(&client).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn narrowed_selector_restored() {
    let client = client().await;
    let example = Example::create(&client, "narrow").await;
    let operator = Operator::start(&example.id, LONG_RESYNC).await;
    example.apply_policy(&client, &example.policy()).await;
    wait_for_names(
        &client,
        &example.id,
        &expected_names(&example),
        "generated policies",
    )
    .await;
    wait_ready(&client, &example.id, 1).await;

    // Narrowing the default deny's pod selector would exempt pods from it. The field is one
    // the operator never sets, so server-side apply alone would keep it.
    let namespace = example.namespace("app");
    let name = format!("mn-{}-default-deny", example.id);
    let api: Api<NetworkPolicy> = Api::namespaced(client.clone(), &namespace);
    let original = api.get(&name).await.unwrap();
    let patch = json!({"spec": {"podSelector": {"matchLabels": {"exempt": "yes"}}}});
    api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();

    let restored = wait_for(
        "the narrowed default deny to be restored",
        WATCH_DEADLINE,
        || async {
            let current = api.get(&name).await.ok()?;
            let selector = current
                .spec
                .as_ref()?
                .pod_selector
                .clone()
                .unwrap_or_default();
            (selector.match_labels.unwrap_or_default().is_empty()).then_some(current)
        },
    )
    .await;
    assert_eq!(restored.uid(), original.uid());

    operator.stop().await;
    example.cleanup(&client).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deleted_policy_recreated() {
    let client = client().await;
    let example = Example::create(&client, "del").await;
    let operator = Operator::start(&example.id, LONG_RESYNC).await;
    example.apply_policy(&client, &example.policy()).await;
    let expected = expected_names(&example);
    wait_for_names(&client, &example.id, &expected, "generated policies").await;
    wait_ready(&client, &example.id, 1).await;

    let namespace = example.namespace("app");
    let name = format!("mn-{}-default-deny", example.id);
    let api: Api<NetworkPolicy> = Api::namespaced(client.clone(), &namespace);
    let original = api.get(&name).await.unwrap();
    api.delete(&name, &DeleteParams::default()).await.unwrap();

    let recreated = wait_for(
        "the deleted default deny to be recreated",
        WATCH_DEADLINE,
        || async {
            let current = api.get_opt(&name).await.ok()??;
            (current.uid() != original.uid()).then_some(current)
        },
    )
    .await;
    assert_eq!(recreated.spec, original.spec);

    let policy = wait_for("drift to be counted", WATCH_DEADLINE, || async {
        let policy = policy_status(&client, &example.id).await;
        (policy.status.as_ref()?.drift_corrections >= 1).then_some(policy)
    })
    .await;
    assert_eq!(policy.status.unwrap().drift_corrections, 1);

    operator.stop().await;
    example.cleanup(&client).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn removed_zone_policy_deleted() {
    let client = client().await;
    let example = Example::create(&client, "zone").await;
    let operator = Operator::start(&example.id, LONG_RESYNC).await;
    example.apply_policy(&client, &example.policy()).await;
    let mut expected = expected_names(&example);
    wait_for_names(&client, &example.id, &expected, "generated policies").await;
    let app_policy = generated(&client, &example.id).await[&(
        example.namespace("app"),
        format!("mn-{}-zone-app", example.id),
    )]
        .clone();

    // Remove the database zone: its policy goes, and the app zone loses its egress to it.
    let mut policy = example.policy();
    policy
        .spec
        .network
        .zones
        .retain(|zone| zone.name != "database");
    example.apply_policy(&client, &policy).await;
    expected.remove(&(
        example.namespace("data"),
        format!("mn-{}-zone-database", example.id),
    ));
    wait_for_names(
        &client,
        &example.id,
        &expected,
        "the database zone policy to be deleted",
    )
    .await;

    let updated = wait_for(
        "the app zone to lose its egress",
        WATCH_DEADLINE,
        || async {
            let objects = generated(&client, &example.id).await;
            let current = objects[&(
                example.namespace("app"),
                format!("mn-{}-zone-app", example.id),
            )]
                .clone();
            current.spec.as_ref()?.egress.is_none().then_some(current)
        },
    )
    .await;
    assert_eq!(updated.uid(), app_policy.uid(), "updated in place");
    assert_eq!(updated.spec.unwrap().policy_types.unwrap(), ["Ingress"]);

    let status = wait_ready(&client, &example.id, 2).await.status.unwrap();
    assert_eq!(
        status.drift_corrections, 0,
        "a change of the policy is not drift"
    );

    operator.stop().await;
    example.cleanup(&client).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deleted_resource_garbage_collected() {
    let client = client().await;
    let example = Example::create(&client, "gc").await;
    let operator = Operator::start(&example.id, LONG_RESYNC).await;
    example.apply_policy(&client, &example.policy()).await;
    wait_for_names(
        &client,
        &example.id,
        &expected_names(&example),
        "generated policies",
    )
    .await;

    let api: Api<MediaNestSecurityPolicy> = Api::all(client.clone());
    api.delete(&example.id, &DeleteParams::default())
        .await
        .unwrap();
    wait_for_names(
        &client,
        &example.id,
        &BTreeSet::new(),
        "garbage collection of every generated policy",
    )
    .await;

    operator.stop().await;
    example.cleanup(&client).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn labelled_namespace_gets_policies() {
    let client = client().await;
    let example = Example::create(&client, "label").await;
    let operator = Operator::start(&example.id, LONG_RESYNC).await;
    example.apply_policy(&client, &example.policy()).await;
    let mut expected = expected_names(&example);
    wait_for_names(&client, &example.id, &expected, "generated policies").await;

    // A namespace created without the label is not governed; labelling it brings it in.
    let late = format!("{}-late", example.id);
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace = Namespace {
        metadata: kube::api::ObjectMeta {
            name: Some(late.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    namespaces
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let names: BTreeSet<_> = generated(&client, &example.id).await.into_keys().collect();
    assert_eq!(names, expected, "an unlabelled namespace is not governed");

    let patch = json!({"metadata": {"labels": {TEST_LABEL: example.id}}});
    namespaces
        .patch(&late, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    for purpose in ["default-deny", "dns", "monitoring", "egress-external-https"] {
        expected.insert((late.clone(), format!("mn-{}-{purpose}", example.id)));
    }
    wait_for_names(
        &client,
        &example.id,
        &expected,
        "policies in the newly labelled namespace",
    )
    .await;

    // Removing the label again removes exactly those policies.
    let patch = json!({"metadata": {"labels": {TEST_LABEL: null}}});
    namespaces
        .patch(&late, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    expected.retain(|(namespace, _)| namespace != &late);
    wait_for_names(
        &client,
        &example.id,
        &expected,
        "policies to leave the unlabelled namespace",
    )
    .await;

    operator.stop().await;
    let _ = namespaces.delete(&late, &DeleteParams::default()).await;
    example.cleanup(&client).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn steady_resync_writes_nothing() {
    let client = client().await;
    let example = Example::create(&client, "idle").await;
    // A short resync, so that several happen during the observation window.
    let operator = Operator::start(&example.id, Duration::from_secs(1)).await;
    example.apply_policy(&client, &example.policy()).await;
    wait_for_names(
        &client,
        &example.id,
        &expected_names(&example),
        "generated policies",
    )
    .await;
    wait_ready(&client, &example.id, 1).await;
    // Let the reconciles triggered by the operator's own writes settle.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let before_objects = generated(&client, &example.id).await;
    let before_policy = policy_status(&client, &example.id).await;
    let before_writes = operator.requests.mutating();
    let before_reads = operator.requests.reads();
    tokio::time::sleep(Duration::from_secs(4)).await;

    let reconciles = operator.metrics.encode();
    assert!(
        reconciles.contains("medianest_reconciles_total"),
        "resyncs ran: {reconciles}"
    );
    assert_eq!(
        operator.requests.mutating(),
        before_writes,
        "a resync that changes nothing writes nothing"
    );
    let after_objects = generated(&client, &example.id).await;
    for (key, before) in &before_objects {
        assert_eq!(
            after_objects[key].resource_version(),
            before.resource_version(),
            "{key:?}"
        );
    }
    let after_policy = policy_status(&client, &example.id).await;
    assert_eq!(
        after_policy.resource_version(),
        before_policy.resource_version()
    );
    // Steady state reads come from the caches, not from the API server.
    assert_eq!(
        operator.requests.reads(),
        before_reads,
        "a resync reads only from the caches"
    );

    operator.stop().await;
    example.cleanup(&client).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_mode_writes_only_status() {
    let client = client().await;
    let example = Example::create(&client, "audit").await;
    let operator = Operator::start(&example.id, LONG_RESYNC).await;
    let mut policy = example.policy();
    policy.spec.mode = medianest_operator::api::policy::Mode::Audit;
    example.apply_policy(&client, &policy).await;

    let audited = wait_for(
        "the audit to list pending changes",
        WATCH_DEADLINE,
        || async {
            let policy = policy_status(&client, &example.id).await;
            let status = policy.status.clone()?;
            (!status.pending_changes.is_empty()).then_some(policy)
        },
    )
    .await;
    let status = audited.status.clone().unwrap();
    assert_eq!(status.pending_changes.len(), expected_names(&example).len());
    assert!(
        status
            .pending_changes
            .iter()
            .all(|change| change.action == "Create")
    );
    assert_eq!(
        condition(&audited, "NetworkReady").unwrap().reason,
        "ChangesPending"
    );
    assert!(
        generated(&client, &example.id).await.is_empty(),
        "Audit writes no NetworkPolicy"
    );

    // Switch to Enforce: the policies appear. Back to Audit: nothing is removed.
    policy.spec.mode = medianest_operator::api::policy::Mode::Enforce;
    example.apply_policy(&client, &policy).await;
    let expected = expected_names(&example);
    wait_for_names(
        &client,
        &example.id,
        &expected,
        "Enforce to write the policies",
    )
    .await;
    policy.spec.mode = medianest_operator::api::policy::Mode::Audit;
    example.apply_policy(&client, &policy).await;
    let audited = wait_for("the audit after Enforce", WATCH_DEADLINE, || async {
        let policy = policy_status(&client, &example.id).await;
        (condition(&policy, "NetworkReady")?.reason == "Audited").then_some(policy)
    })
    .await;
    assert!(audited.status.unwrap().pending_changes.is_empty());
    let names: BTreeSet<_> = generated(&client, &example.id).await.into_keys().collect();
    assert_eq!(names, expected, "switching to Audit removes nothing");

    operator.stop().await;
    example.cleanup(&client).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_change_keeps_policies() {
    let client = client().await;
    let example = Example::create(&client, "bad").await;
    let operator = Operator::start(&example.id, LONG_RESYNC).await;
    example.apply_policy(&client, &example.policy()).await;
    let expected = expected_names(&example);
    wait_for_names(&client, &example.id, &expected, "generated policies").await;
    wait_ready(&client, &example.id, 1).await;
    let before = generated(&client, &example.id).await;

    // A label value the schema admits but the API server would reject in a NetworkPolicy.
    let mut policy = example.policy();
    policy.spec.network.zones[0].pod_selector = match_labels([("app", "-not-a-label-value-")]);
    example.apply_policy(&client, &policy).await;

    let rejected = wait_for("Ready=False with InvalidSpec", WATCH_DEADLINE, || async {
        let policy = policy_status(&client, &example.id).await;
        let ready = condition(&policy, "Ready")?;
        (ready.reason == "InvalidSpec" && policy.status.as_ref()?.observed_generation == Some(2))
            .then_some(policy)
    })
    .await;
    let message = &condition(&rejected, "Ready").unwrap().message;
    assert!(
        message.contains("spec.network.zones[0].podSelector.matchLabels[\"app\"]"),
        "{message}"
    );
    assert!(message.contains("-not-a-label-value-"), "{message}");

    // Fails closed: the previous policies stay, unchanged. No tight retry loop either.
    let writes = operator.requests.mutating();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        operator.requests.mutating(),
        writes,
        "an invalid spec waits for a change"
    );
    let after = generated(&client, &example.id).await;
    for (key, object) in &before {
        assert_eq!(
            after[key].resource_version(),
            object.resource_version(),
            "{key:?} unchanged"
        );
    }

    operator.stop().await;
    example.cleanup(&client).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn many_namespaces_written_once() {
    let client = client().await;
    let id = unique_id("many");
    let mut namespaces = Vec::new();
    for index in 0..24 {
        let name = format!("{id}-{index}");
        create_namespace(
            &client,
            &name,
            &id,
            &[("medianest.io/tier", TIERS[index % TIERS.len()])],
        )
        .await;
        namespaces.push(name);
    }
    let operator = Operator::start(&id, LONG_RESYNC).await;
    let example = Example {
        id: id.clone(),
        namespaces: namespaces.clone(),
    };
    example.apply_policy(&client, &example.policy()).await;

    // Four policies in every namespace, plus one for its tier.
    let expected = 5 * namespaces.len();
    wait_for("every NetworkPolicy", WATCH_DEADLINE, || async {
        (generated(&client, &id).await.len() == expected).then_some(())
    })
    .await;
    wait_ready(&client, &id, 1).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Events about generated objects must lead to one reconcile of their policy, not one per
    // namespace: concurrent reconciles of one policy would write the same objects again.
    assert_eq!(
        operator.requests.mutating_for("networkpolicies"),
        expected as u64
    );

    operator.stop().await;
    example.cleanup(&client).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stripped_owner_and_opened_restored() {
    let client = client().await;
    let example = Example::create(&client, "strip").await;
    let operator = Operator::start(&example.id, LONG_RESYNC).await;
    example.apply_policy(&client, &example.policy()).await;
    wait_for_names(
        &client,
        &example.id,
        &expected_names(&example),
        "generated policies",
    )
    .await;
    wait_ready(&client, &example.id, 1).await;

    // One patch that cuts the object from its owner and opens the database to everyone.
    let namespace = example.namespace("data");
    let name = format!("mn-{}-zone-database", example.id);
    let api: Api<NetworkPolicy> = Api::namespaced(client.clone(), &namespace);
    let original = api.get(&name).await.unwrap();
    let patch = json!([
        { "op": "remove", "path": "/metadata/ownerReferences" },
        { "op": "add", "path": "/spec/ingress/-", "value": {} },
    ]);
    let patch: json_patch::Patch = serde_json::from_value(patch).unwrap();
    api.patch(&name, &PatchParams::default(), &Patch::Json::<()>(patch))
        .await
        .unwrap();

    let restored = wait_for(
        "the owner and the spec to be restored",
        WATCH_DEADLINE,
        || async {
            let current = api.get(&name).await.ok()?;
            let owned = current.owner_references() == original.owner_references();
            (owned && current.spec == original.spec).then_some(current)
        },
    )
    .await;
    assert_eq!(restored.uid(), original.uid());

    operator.stop().await;
    example.cleanup(&client).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn owner_pointed_elsewhere_restored() {
    let client = client().await;
    let example = Example::create(&client, "steal").await;
    let operator = Operator::start(&example.id, LONG_RESYNC).await;
    example.apply_policy(&client, &example.policy()).await;
    wait_for_names(
        &client,
        &example.id,
        &expected_names(&example),
        "generated policies",
    )
    .await;

    // A second policy of the same test, governing nothing, becomes the default deny's owner.
    let other_name = format!("{}-other", example.id);
    let mut other = example.policy();
    other.metadata.name = Some(other_name.clone());
    other.spec.namespace_selector = match_labels([("medianest.io/none", "none")]);
    let policies: Api<MediaNestSecurityPolicy> = Api::all(client.clone());
    let other = policies
        .patch(
            &other_name,
            &PatchParams::apply("medianest-tests"),
            &Patch::Apply(&other),
        )
        .await
        .unwrap();
    wait_ready(&client, &other_name, 1).await;

    let namespace = example.namespace("app");
    let name = format!("mn-{}-default-deny", example.id);
    let api: Api<NetworkPolicy> = Api::namespaced(client.clone(), &namespace);
    let original = api.get(&name).await.unwrap();
    let patch = json!({ "metadata": { "ownerReferences": [{
        "apiVersion": "security.medianest.io/v1alpha1",
        "kind": "MediaNestSecurityPolicy",
        "name": other_name,
        "uid": other.uid().unwrap(),
        "controller": true,
    }]}});
    api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();

    let restored = wait_for(
        "the owner reference to be restored",
        WATCH_DEADLINE,
        || async {
            let current = api.get_opt(&name).await.ok()??;
            (current.owner_references() == original.owner_references()).then_some(current)
        },
    )
    .await;
    assert_eq!(
        restored.uid(),
        original.uid(),
        "the other policy must not delete it"
    );

    operator.stop().await;
    let _ = policies.delete(&other_name, &DeleteParams::default()).await;
    example.cleanup(&client).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn foreign_object_with_generated_name_untouched() {
    let client = client().await;
    let example = Example::create(&client, "foreign").await;
    let namespace = example.namespace("app");
    let name = format!("mn-{}-dns", example.id);
    let api: Api<NetworkPolicy> = Api::namespaced(client.clone(), &namespace);
    let handmade: NetworkPolicy = serde_json::from_value(json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": { "name": name },
        "spec": { "podSelector": { "matchLabels": { "team": "platform" } }, "policyTypes": ["Ingress"] },
    }))
    .unwrap();
    let created = api.create(&PostParams::default(), &handmade).await.unwrap();

    let operator = Operator::start(&example.id, LONG_RESYNC).await;
    example.apply_policy(&client, &example.policy()).await;
    let conflicted = wait_for(
        "NetworkReady=False with NameConflict",
        WATCH_DEADLINE,
        || async {
            let policy = policy_status(&client, &example.id).await;
            (condition(&policy, "NetworkReady")?.reason == "NameConflict").then_some(policy)
        },
    )
    .await;
    let message = &condition(&conflicted, "NetworkReady").unwrap().message;
    assert!(
        message.contains(&format!("{namespace}/{name}")),
        "{message}"
    );
    let current = api.get(&name).await.unwrap();
    assert_eq!(
        current.resource_version(),
        created.resource_version(),
        "the hand-made object is untouched"
    );
    assert!(current.owner_references().is_empty());

    // The other generated objects are there.
    let mut expected = expected_names(&example);
    expected.remove(&(namespace.clone(), name.clone()));
    wait_for_names(
        &client,
        &example.id,
        &expected,
        "the other generated policies",
    )
    .await;

    operator.stop().await;
    let _ = api.delete(&name, &DeleteParams::default()).await;
    example.cleanup(&client).await;
}
