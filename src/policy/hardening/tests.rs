use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Value, json};

use super::*;

fn template(spec: Value) -> PodTemplateSpec {
    serde_json::from_value(json!({ "spec": spec })).expect("valid pod template")
}

fn defaults() -> WorkloadsSpec {
    WorkloadsSpec::default()
}

fn workload() -> WorkloadId {
    WorkloadId {
        kind: WorkloadKind::Deployment,
        namespace: "media".into(),
        name: "api".into(),
    }
}

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(seconds).unwrap()
}

fn effective(spec: &WorkloadsSpec) -> Effective {
    merge(&[spec], &workload(), at(1_000_000))
}

fn apply(template: &PodTemplateSpec, patch: &Value) -> PodTemplateSpec {
    apply_to_template(template, patch)
}

fn change_paths(hardening: &Hardening) -> Vec<String> {
    hardening
        .changes
        .iter()
        .map(|change| change.path.clone())
        .collect()
}

#[test]
fn root_image_gets_uid_from_range() {
    let template = template(json!({ "containers": [{ "name": "app", "image": "nginx" }] }));
    let result = harden(&template, &effective(&defaults()), &Owned::default());
    let pod = &result.template_patch["spec"]["securityContext"];
    assert_eq!(pod["runAsNonRoot"], json!(true));
    assert_eq!(pod["runAsUser"], json!(10001));
    assert_eq!(pod["runAsGroup"], json!(10001));
    assert_eq!(pod["fsGroup"], json!(10001));
    assert_eq!(pod["seccompProfile"]["type"], json!("RuntimeDefault"));
    assert_eq!(pod["appArmorProfile"]["type"], json!("RuntimeDefault"));
    let container = &result.template_patch["spec"]["containers"][0];
    assert_eq!(container["name"], json!("app"));
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"],
        json!(false)
    );
    assert_eq!(container["securityContext"]["privileged"], json!(false));
    assert_eq!(
        container["securityContext"]["readOnlyRootFilesystem"],
        json!(true)
    );
    assert_eq!(
        container["securityContext"]["capabilities"]["drop"],
        json!(["ALL"])
    );
    assert_eq!(
        container["resources"]["limits"],
        json!({ "cpu": "2", "memory": "1Gi" })
    );
    assert!(!result.changes.is_empty());
}

#[test]
fn explicit_root_user_replaced() {
    let template = template(json!({
        "securityContext": { "runAsUser": 0 },
        "containers": [{ "name": "app", "securityContext": { "runAsUser": 0, "runAsGroup": 0 } }],
    }));
    let result = harden(&template, &effective(&defaults()), &Owned::default());
    assert_eq!(
        result.template_patch["spec"]["securityContext"]["runAsUser"],
        json!(10001)
    );
    let container = &result.template_patch["spec"]["containers"][0]["securityContext"];
    assert_eq!(container["runAsUser"], json!(10001));
    assert_eq!(container["runAsGroup"], json!(10001));
    assert!(
        change_paths(&result)
            .contains(&"spec.containers[app].securityContext.runAsUser".to_string())
    );
}

#[test]
fn uid_inside_range_kept() {
    let template = template(json!({
        "securityContext": { "runAsUser": 10003, "runAsGroup": 10002, "fsGroup": 10004 },
        "containers": [{ "name": "app", "securityContext": { "runAsUser": 10002 } }],
    }));
    let result = harden(&template, &effective(&defaults()), &Owned::default());
    let pod = &result.template_patch["spec"]["securityContext"];
    assert_eq!(pod["runAsUser"], json!(10003));
    assert_eq!(pod["runAsGroup"], json!(10002));
    assert_eq!(pod["fsGroup"], json!(10004));
    let container = &result.template_patch["spec"]["containers"][0]["securityContext"];
    assert!(
        container.get("runAsUser").is_none(),
        "a UID inside the range is left alone"
    );
}

#[test]
fn uid_outside_range_replaced() {
    let template = template(json!({
        "securityContext": { "runAsUser": 1000 },
        "containers": [{ "name": "app" }],
    }));
    let result = harden(&template, &effective(&defaults()), &Owned::default());
    assert_eq!(
        result.template_patch["spec"]["securityContext"]["runAsUser"],
        json!(10001)
    );
}

#[test]
fn init_containers_hardened() {
    let template = template(json!({
        "initContainers": [{ "name": "migrate", "securityContext": { "privileged": true } }],
        "containers": [{ "name": "app" }],
    }));
    let result = harden(&template, &effective(&defaults()), &Owned::default());
    let init = &result.template_patch["spec"]["initContainers"][0];
    assert_eq!(init["name"], json!("migrate"));
    assert_eq!(init["securityContext"]["privileged"], json!(false));
    assert_eq!(
        init["securityContext"]["capabilities"]["drop"],
        json!(["ALL"])
    );
    assert!(
        change_paths(&result)
            .contains(&"spec.initContainers[migrate].securityContext.privileged".to_string())
    );
}

#[test]
fn existing_drop_list_kept() {
    let template = template(json!({
        "containers": [{ "name": "app", "securityContext": { "capabilities": { "drop": ["NET_RAW"] } } }],
    }));
    let result = harden(&template, &effective(&defaults()), &Owned::default());
    let drop =
        &result.template_patch["spec"]["containers"][0]["securityContext"]["capabilities"]["drop"];
    assert_eq!(drop, &json!(["NET_RAW", "ALL"]));
}

#[test]
fn lowercase_drop_all_gets_uppercase() {
    // Pod Security Admission compares the list exactly, so "all" alone fails restricted.
    let template = template(json!({
        "containers": [{ "name": "app", "securityContext": { "capabilities": { "drop": ["all"] } } }],
    }));
    let result = harden(&template, &effective(&defaults()), &Owned::default());
    let drop =
        &result.template_patch["spec"]["containers"][0]["securityContext"]["capabilities"]["drop"];
    assert_eq!(drop, &json!(["all", "ALL"]));
}

#[test]
fn hardened_template_passes_restricted() {
    use crate::policy::podsecurity::{Level, check};
    let original = template(json!({
        "securityContext": { "runAsUser": 0 },
        "initContainers": [{ "name": "init", "image": "busybox", "securityContext": { "privileged": true } }],
        "containers": [{
            "name": "app",
            "image": "nginx",
            "securityContext": { "capabilities": { "add": ["SYS_ADMIN"], "drop": ["all"] }, "seccompProfile": { "type": "Unconfined" } },
        }],
    }));
    let before = check(
        Level::Restricted,
        &Default::default(),
        original.spec.as_ref().unwrap(),
    );
    assert!(!before.is_empty());
    let result = harden(&original, &effective(&defaults()), &Owned::default());
    let hardened = apply(&original, &result.template_patch);
    let after = check(
        Level::Restricted,
        &Default::default(),
        hardened.spec.as_ref().unwrap(),
    );
    assert_eq!(after, Vec::new(), "the hardened template passes restricted");
}

#[test]
fn unexempted_capabilities_removed() {
    let template = template(json!({
        "containers": [{ "name": "app", "securityContext": { "capabilities": { "add": ["NET_ADMIN"] } } }],
    }));
    let result = harden(&template, &effective(&defaults()), &Owned::default());
    let add =
        &result.template_patch["spec"]["containers"][0]["securityContext"]["capabilities"]["add"];
    assert_eq!(add, &json!([]));
}

#[test]
fn stricter_limits_kept() {
    let template = template(json!({
        "containers": [{ "name": "app", "resources": { "limits": { "memory": "256Mi" } } }],
    }));
    let result = harden(&template, &effective(&defaults()), &Owned::default());
    let limits = &result.template_patch["spec"]["containers"][0]["resources"]["limits"];
    assert!(
        limits.get("memory").is_none(),
        "an existing memory limit stays"
    );
    assert_eq!(limits["cpu"], json!("2"));
}

#[test]
fn limit_never_below_request() {
    let template = template(json!({
        "containers": [{ "name": "app", "resources": { "requests": { "memory": "4Gi" } } }],
    }));
    let result = harden(&template, &effective(&defaults()), &Owned::default());
    let limits = &result.template_patch["spec"]["containers"][0]["resources"]["limits"];
    assert_eq!(limits["memory"], json!("4Gi"));
}

#[test]
fn writable_path_mounted_once() {
    let mut spec = defaults();
    spec.writable_paths = vec![WritablePath {
        path: "/tmp".into(),
        size_limit: Some(Quantity("64Mi".into())),
    }];
    let template = template(json!({
        "containers": [
            { "name": "app" },
            { "name": "sidecar", "volumeMounts": [{ "name": "scratch", "mountPath": "/tmp" }] },
        ],
        "volumes": [{ "name": "scratch", "emptyDir": {} }],
    }));
    let result = harden(&template, &effective(&spec), &Owned::default());
    let containers = result.template_patch["spec"]["containers"]
        .as_array()
        .unwrap();
    let app = containers.iter().find(|c| c["name"] == "app").unwrap();
    let sidecar = containers.iter().find(|c| c["name"] == "sidecar").unwrap();
    assert_eq!(
        app["volumeMounts"],
        json!([{ "name": "mn-tmp", "mountPath": "/tmp" }])
    );
    assert!(
        sidecar.get("volumeMounts").is_none(),
        "the sidecar already mounts /tmp"
    );
    assert_eq!(
        result.template_patch["spec"]["volumes"],
        json!([{ "name": "mn-tmp", "emptyDir": { "sizeLimit": "64Mi" } }])
    );
}

#[test]
fn unused_writable_volume_not_added() {
    let mut spec = defaults();
    spec.writable_paths = vec![WritablePath {
        path: "/tmp".into(),
        size_limit: None,
    }];
    let template = template(json!({
        "containers": [{ "name": "app", "volumeMounts": [{ "name": "scratch", "mountPath": "/tmp" }] }],
        "volumes": [{ "name": "scratch", "emptyDir": {} }],
    }));
    let result = harden(&template, &effective(&spec), &Owned::default());
    assert!(result.template_patch["spec"].get("volumes").is_none());
}

fn exemption(container: Option<&str>) -> Exemption {
    Exemption {
        kind: WorkloadKind::Deployment,
        namespace: "media".into(),
        name: "api".into(),
        container: container.map(str::to_string),
        add_capabilities: vec!["NET_BIND_SERVICE".into()],
        allow_privilege_escalation: false,
        writable_root_filesystem: false,
        run_as_root: false,
        reason: "binds port 80".into(),
        expires: None,
    }
}

#[test]
fn container_exemption_adds_capability() {
    let mut spec = defaults();
    spec.exemptions = vec![exemption(Some("proxy"))];
    let template = template(json!({ "containers": [{ "name": "proxy" }, { "name": "exporter" }] }));
    let result = harden(&template, &effective(&spec), &Owned::default());
    let containers = result.template_patch["spec"]["containers"]
        .as_array()
        .unwrap();
    let proxy = containers.iter().find(|c| c["name"] == "proxy").unwrap();
    let exporter = containers.iter().find(|c| c["name"] == "exporter").unwrap();
    assert_eq!(
        proxy["securityContext"]["capabilities"]["add"],
        json!(["NET_BIND_SERVICE"])
    );
    assert_eq!(
        proxy["securityContext"]["capabilities"]["drop"],
        json!(["ALL"])
    );
    assert!(
        exporter["securityContext"]["capabilities"]
            .get("add")
            .is_none()
    );
    assert_eq!(result.exemptions.len(), 1);
}

#[test]
fn exemption_for_other_workload_ignored() {
    let mut spec = defaults();
    let mut other = exemption(None);
    other.name = "web".into();
    spec.exemptions = vec![other];
    assert!(effective(&spec).exemptions.is_empty());
}

#[test]
fn expired_exemption_ignored() {
    let mut spec = defaults();
    let mut expiring = exemption(None);
    expiring.expires = Some(Time(at(500)));
    spec.exemptions = vec![expiring.clone()];
    assert!(
        merge(&[&spec], &workload(), at(1_000))
            .exemptions
            .is_empty()
    );
    assert_eq!(
        merge(&[&spec], &workload(), at(100)).exemptions,
        vec![expiring]
    );
}

#[test]
fn run_as_root_exemption_per_container() {
    let mut spec = defaults();
    let mut root = exemption(Some("init-perms"));
    root.add_capabilities = Vec::new();
    root.run_as_root = true;
    spec.exemptions = vec![root];
    let template = template(json!({
        "initContainers": [{ "name": "init-perms", "securityContext": { "runAsUser": 0 } }],
        "containers": [{ "name": "app" }],
    }));
    let result = harden(&template, &effective(&spec), &Owned::default());
    let init = &result.template_patch["spec"]["initContainers"][0]["securityContext"];
    assert_eq!(init["runAsNonRoot"], json!(false));
    assert!(
        init.get("runAsUser").is_none(),
        "the exempted container keeps user 0"
    );
    assert_eq!(
        result.template_patch["spec"]["securityContext"]["runAsNonRoot"],
        json!(true)
    );
}

#[test]
fn privilege_escalation_exemption() {
    let mut spec = defaults();
    let mut escalation = exemption(None);
    escalation.add_capabilities = Vec::new();
    escalation.allow_privilege_escalation = true;
    spec.exemptions = vec![escalation];
    let template = template(json!({ "containers": [{ "name": "app" }] }));
    let result = harden(&template, &effective(&spec), &Owned::default());
    let context = &result.template_patch["spec"]["containers"][0]["securityContext"];
    assert!(context.get("allowPrivilegeEscalation").is_none());
}

#[test]
fn localhost_profiles_kept() {
    let template = template(json!({
        "securityContext": { "seccompProfile": { "type": "Localhost", "localhostProfile": "p.json" } },
        "containers": [{ "name": "app", "securityContext": { "seccompProfile": { "type": "Unconfined" } } }],
    }));
    let result = harden(&template, &effective(&defaults()), &Owned::default());
    assert_eq!(
        result.template_patch["spec"]["securityContext"]["seccompProfile"]["type"],
        json!("Localhost")
    );
    let container = &result.template_patch["spec"]["containers"][0]["securityContext"];
    assert_eq!(container["seccompProfile"]["type"], json!("RuntimeDefault"));
}

#[test]
fn ephemeral_containers_reported() {
    let template = template(json!({
        "containers": [{ "name": "app" }],
        "ephemeralContainers": [{ "name": "debugger" }],
    }));
    let result = harden(&template, &effective(&defaults()), &Owned::default());
    assert_eq!(result.uneditable, vec!["debugger".to_string()]);
    assert!(
        result.template_patch["spec"]
            .get("ephemeralContainers")
            .is_none()
    );
}

#[test]
fn hardened_template_is_compliant() {
    let mut spec = defaults();
    spec.writable_paths = vec![WritablePath {
        path: "/var/run/postgresql".into(),
        size_limit: None,
    }];
    spec.exemptions = vec![exemption(Some("app"))];
    let original = template(json!({
        "securityContext": { "runAsUser": 0 },
        "initContainers": [{ "name": "init", "securityContext": { "privileged": true } }],
        "containers": [{
            "name": "app",
            "securityContext": { "capabilities": { "add": ["SYS_ADMIN"], "drop": ["NET_RAW"] } },
            "resources": { "requests": { "memory": "128Mi" } },
        }],
    }));
    let effective = effective(&spec);
    let first = harden(&original, &effective, &Owned::default());
    assert!(!first.changes.is_empty());

    let hardened = apply(&original, &first.template_patch);
    let owned = Owned::new(fields_of(&first.template_patch));
    let second = harden(&hardened, &effective, &owned);
    assert_eq!(
        second.changes,
        Vec::new(),
        "a hardened template needs no change"
    );
    assert_eq!(
        second.template_patch, first.template_patch,
        "the patch is stable"
    );
}

#[test]
fn owned_fields_stay_in_patch() {
    // The operator set the memory limit and the /tmp mount earlier; another manager set the
    // cpu limit. Only the operator's own fields come back into the patch.
    let mut spec = defaults();
    spec.writable_paths = vec![WritablePath {
        path: "/tmp".into(),
        size_limit: None,
    }];
    let template = template(json!({
        "containers": [{
            "name": "app",
            "resources": { "limits": { "cpu": "500m", "memory": "1Gi" } },
            "volumeMounts": [{ "name": "mn-tmp", "mountPath": "/tmp" }],
        }],
        "volumes": [{ "name": "mn-tmp", "emptyDir": {} }],
    }));
    let owned = Owned::new(fields_of(&json!({ "spec": {
        "containers": [{
            "name": "app",
            "resources": { "limits": { "memory": "1Gi" } },
            "volumeMounts": [{ "name": "mn-tmp", "mountPath": "/tmp" }],
        }],
        "volumes": [{ "name": "mn-tmp", "emptyDir": {} }],
    }})));
    let result = harden(&template, &effective(&spec), &owned);
    let container = &result.template_patch["spec"]["containers"][0];
    assert_eq!(container["resources"]["limits"], json!({ "memory": "1Gi" }));
    assert_eq!(
        container["volumeMounts"],
        json!([{ "name": "mn-tmp", "mountPath": "/tmp" }])
    );
    assert_eq!(
        result.template_patch["spec"]["volumes"],
        json!([{ "name": "mn-tmp", "emptyDir": {} }])
    );
    let paths = change_paths(&result);
    assert!(
        !paths.iter().any(|path| path.contains("resources")),
        "{paths:?}"
    );
    assert!(
        !paths.iter().any(|path| path.contains("volume")),
        "{paths:?}"
    );
}

#[test]
fn owned_fields_found_in_workload_tree() {
    let fields = json!({ "f:spec": { "f:template": { "f:spec": { "f:containers": {
        "k:{\"name\":\"app\"}": { ".": {}, "f:resources": { "f:limits": { "f:cpu": {} } } }
    }}}}});
    let owned = Owned::from_workload(&fields, &["spec", "template"]);
    let target = Target::Container {
        init: false,
        name: "app".into(),
    };
    assert!(owned.owns(&target, "resources.limits.cpu"));
    assert!(!owned.owns(&target, "resources.limits.memory"));
    assert!(!owned.owns(
        &Target::Container {
            init: true,
            name: "app".into()
        },
        "resources.limits.cpu"
    ));
}

#[test]
fn merge_takes_strictest() {
    let mut loose = defaults();
    loose.uid_range = UidRange {
        min: 10000,
        max: 20000,
    };
    loose.run_as_non_root = false;
    loose.pod_security_level = PodSecurityLevel::Baseline;
    loose
        .default_resources
        .limits
        .insert("memory".into(), Quantity("2Gi".into()));
    let mut strict = defaults();
    strict.uid_range = UidRange {
        min: 15000,
        max: 30000,
    };
    strict
        .default_resources
        .limits
        .insert("memory".into(), Quantity("512Mi".into()));

    let merged = merge(&[&loose, &strict], &workload(), at(0));
    assert_eq!(
        merged.uid_range,
        UidRange {
            min: 15000,
            max: 20000
        }
    );
    assert!(merged.run_as_non_root);
    assert_eq!(merged.pod_security_level, PodSecurityLevel::Restricted);
    assert_eq!(merged.limits["memory"], Quantity("512Mi".into()));
    assert!(merged.conflicts.is_empty());
}

#[test]
fn merge_reports_disjoint_ranges() {
    let mut first = defaults();
    first.uid_range = UidRange { min: 100, max: 200 };
    let mut second = defaults();
    second.uid_range = UidRange { min: 300, max: 400 };
    let merged = merge(&[&first, &second], &workload(), at(0));
    assert_eq!(merged.uid_range, UidRange { min: 100, max: 200 });
    assert_eq!(merged.conflicts.len(), 1);
}

#[test]
fn quantities_parse() {
    let cases = [
        ("2", 2.0),
        ("500m", 0.5),
        ("1Gi", 1073741824.0),
        ("64Mi", 67108864.0),
        ("1k", 1000.0),
        ("1e3", 1000.0),
    ];
    for (text, expected) in cases {
        assert_eq!(
            parse_quantity(&Quantity(text.into())),
            Some(expected),
            "{text}"
        );
    }
    assert_eq!(parse_quantity(&Quantity("lots".into())), None);
}

#[test]
fn removed_capabilities_stay_converged() {
    // The operator empties an added list, and the API server then omits the empty list. The
    // omitted list is what the operator asked for, not drift.
    let spec = defaults();
    let original = template(json!({
        "containers": [{
            "name": "app",
            "securityContext": { "capabilities": { "add": ["NET_RAW"] } },
        }],
    }));
    let effective = effective(&spec);
    let first = harden(&original, &effective, &Owned::default());
    assert!(
        change_paths(&first)
            .iter()
            .any(|path| path.ends_with("capabilities.add"))
    );

    let mut stored = serde_json::to_value(apply(&original, &first.template_patch)).unwrap();
    let capabilities = &mut stored["spec"]["containers"][0]["securityContext"]["capabilities"];
    assert_eq!(capabilities["add"], json!([]));
    capabilities.as_object_mut().unwrap().remove("add");
    let stored: PodTemplateSpec = serde_json::from_value(stored).unwrap();

    let owned = Owned::new(fields_of(&first.template_patch));
    let second = harden(&stored, &effective, &owned);
    assert_eq!(second.changes, Vec::new());
}

#[test]
fn default_request_capped_at_own_limit() {
    // The container limits its memory to 512Mi and requests nothing: a default request of 1Gi
    // would make the pod invalid.
    let mut spec = defaults();
    spec.default_resources.requests =
        BTreeMap::from([("memory".to_string(), Quantity("1Gi".into()))]);
    let template = template(json!({
        "containers": [{ "name": "app", "resources": { "limits": { "memory": "512Mi" } } }],
    }));
    let result = harden(&template, &effective(&spec), &Owned::default());
    let resources = &result.template_patch["spec"]["containers"][0]["resources"];
    assert_eq!(resources["requests"]["memory"], json!("512Mi"));
    assert!(resources["limits"].get("memory").is_none(), "{resources}");
}
