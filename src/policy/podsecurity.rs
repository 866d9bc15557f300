//! Evaluator of the Kubernetes Pod Security Standards at the `baseline` and `restricted` levels.
//!
//! The checks mirror the `k8s.io/pod-security-admission/policy` package at policy version
//! `latest` for Kubernetes v1.37, read from that repository at tag v0.37.0-alpha.2. Check ids
//! are upstream's `CheckID` strings. Only the checks are covered: the admission plugin's
//! exemptions (users, runtime classes, namespaces) and older policy versions are not.
//!
//! Upstream, some restricted checks replace a baseline check at the restricted level
//! (`capabilities_restricted`, `procMount_restricted`, `restrictedVolumes` and
//! `seccompProfile_restricted`). Here the baseline check keeps running and the restricted check
//! reports only what the baseline check does not. Each problem therefore appears once, tagged
//! with the lowest level that forbids it, and `check(Restricted, ..)` contains every violation
//! of `check(Baseline, ..)`. For every pod that passes API validation, each level admits the
//! same pods as upstream. `capabilities_restricted` notes the invalid pods where results differ.
//!
//! NOTE: v1.37 was not yet released at that tag. Compared with v1.36, its only policy change
//! adds the sysctls `net.ipv4.tcp_slow_start_after_idle` and `net.ipv4.tcp_notsent_lowat` to
//! the safe set.

use std::fmt;

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EphemeralContainer, Lifecycle, PodSecurityContext, PodSpec, Probe,
    SecurityContext, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// A Pod Security Standards level, ordered from least to most restrictive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Level {
    /// No restrictions.
    Privileged,
    /// Forbids known privilege escalations.
    Baseline,
    /// Baseline plus current pod hardening practice.
    Restricted,
}

impl Level {
    /// Returns the level's name as used in `pod-security.kubernetes.io/*` namespace labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        }
    }

    /// Parses a level name. Like upstream, the match is exact and case-sensitive, so
    /// `"Restricted"` returns `None`.
    pub fn parse(text: &str) -> Option<Level> {
        match text {
            "privileged" => Some(Level::Privileged),
            "baseline" => Some(Level::Baseline),
            "restricted" => Some(Level::Restricted),
            _ => None,
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// One field value of a pod that a Pod Security Standards check forbids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Upstream check id, such as `"capabilities_restricted"` or `"hostNamespaces"`.
    pub check: &'static str,
    /// Lowest level that forbids the value: `Baseline` or `Restricted`.
    pub level: Level,
    /// Human-readable description naming the pod or container, the field and the forbidden value.
    pub message: String,
}

/// Evaluates the checks of `level` and returns every violation, one per offending pod field,
/// container, volume or annotation.
///
/// `Privileged` returns no violations. `Baseline` runs the baseline checks. `Restricted` runs
/// the baseline and restricted checks, so its result contains all violations of `Baseline`
/// (with `level == Baseline`) plus the restricted ones. The order is deterministic: by check,
/// and within a check pod-level fields first, then init, regular and ephemeral containers in
/// spec order, then annotations.
pub fn check(level: Level, metadata: &ObjectMeta, spec: &PodSpec) -> Vec<Violation> {
    let pod = PodView::new(metadata, spec);
    let mut violations = Vec::new();
    for rule in RULES.iter().filter(|rule| rule.level <= level) {
        for message in (rule.evaluate)(&pod) {
            violations.push(Violation {
                check: rule.id,
                level: rule.level,
                message,
            });
        }
    }
    violations
}

/// Returns the strictest level whose checks the pod passes: `Restricted`, `Baseline` or
/// `Privileged`.
pub fn strictest_admitting_level(metadata: &ObjectMeta, spec: &PodSpec) -> Level {
    let violations = check(Level::Restricted, metadata, spec);
    if violations.is_empty() {
        Level::Restricted
    } else if violations
        .iter()
        .all(|violation| violation.level == Level::Restricted)
    {
        Level::Baseline
    } else {
        Level::Privileged
    }
}

/// One upstream check: its id, its level and the function that returns its violation messages.
struct Rule {
    id: &'static str,
    level: Level,
    evaluate: fn(&PodView<'_>) -> Vec<String>,
}

/// Baseline checks, then restricted checks, each group sorted by id as upstream orders them.
const RULES: [Rule; 19] = [
    Rule {
        id: "appArmorProfile",
        level: Level::Baseline,
        evaluate: app_armor_profile,
    },
    Rule {
        id: "capabilities_baseline",
        level: Level::Baseline,
        evaluate: capabilities_baseline,
    },
    Rule {
        id: "hostNamespaces",
        level: Level::Baseline,
        evaluate: host_namespaces,
    },
    Rule {
        id: "hostPathVolumes",
        level: Level::Baseline,
        evaluate: host_path_volumes,
    },
    Rule {
        id: "hostPorts",
        level: Level::Baseline,
        evaluate: host_ports,
    },
    Rule {
        id: "hostProbesAndHostLifecycle",
        level: Level::Baseline,
        evaluate: host_probes_and_host_lifecycle,
    },
    Rule {
        id: "privileged",
        level: Level::Baseline,
        evaluate: privileged,
    },
    Rule {
        id: "procMount",
        level: Level::Baseline,
        evaluate: proc_mount_baseline,
    },
    Rule {
        id: "seLinuxOptions",
        level: Level::Baseline,
        evaluate: se_linux_options,
    },
    Rule {
        id: "seccompProfile_baseline",
        level: Level::Baseline,
        evaluate: seccomp_profile_baseline,
    },
    Rule {
        id: "sysctls",
        level: Level::Baseline,
        evaluate: sysctls,
    },
    Rule {
        id: "windowsHostProcess",
        level: Level::Baseline,
        evaluate: windows_host_process,
    },
    Rule {
        id: "allowPrivilegeEscalation",
        level: Level::Restricted,
        evaluate: allow_privilege_escalation,
    },
    Rule {
        id: "capabilities_restricted",
        level: Level::Restricted,
        evaluate: capabilities_restricted,
    },
    Rule {
        id: "procMount_restricted",
        level: Level::Restricted,
        evaluate: proc_mount_restricted,
    },
    Rule {
        id: "restrictedVolumes",
        level: Level::Restricted,
        evaluate: restricted_volumes,
    },
    Rule {
        id: "runAsNonRoot",
        level: Level::Restricted,
        evaluate: run_as_non_root,
    },
    Rule {
        id: "runAsUser",
        level: Level::Restricted,
        evaluate: run_as_user,
    },
    Rule {
        id: "seccompProfile_restricted",
        level: Level::Restricted,
        evaluate: seccomp_profile_restricted,
    },
];

/// Capabilities that baseline lets a container add, as listed by upstream's
/// `capabilities_baseline` check.
const BASELINE_CAPABILITIES: [&str; 13] = [
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// The only capability that restricted lets a container add.
const RESTRICTED_ADDABLE_CAPABILITY: &str = "NET_BIND_SERVICE";

/// Capability that restricted requires in `capabilities.drop`. Upstream compares it
/// case-sensitively, so `"all"` does not count.
const DROP_ALL_CAPABILITIES: &str = "ALL";

/// Sysctls that baseline allows, the safe set of policy version 1.37.
const SAFE_SYSCTLS: [&str; 14] = [
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
    "net.ipv4.tcp_slow_start_after_idle",
    "net.ipv4.tcp_notsent_lowat",
];

/// SELinux types that baseline allows. The empty string stands for an unset type.
const ALLOWED_SELINUX_TYPES: [&str; 5] = [
    "",
    "container_t",
    "container_init_t",
    "container_kvm_t",
    "container_engine_t",
];

/// Volume types that restricted allows, in the API's camelCase spelling.
const RESTRICTED_VOLUME_TYPES: [&str; 9] = [
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "image",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

const APP_ARMOR_ANNOTATION_PREFIX: &str = "container.apparmor.security.beta.kubernetes.io/";
const APP_ARMOR_ANNOTATION_RUNTIME_DEFAULT: &str = "runtime/default";
const APP_ARMOR_ANNOTATION_LOCALHOST_PREFIX: &str = "localhost/";
const PROC_MOUNT_DEFAULT: &str = "Default";
const WINDOWS_OS_NAME: &str = "windows";

/// A pod as the checks see it, with all containers in upstream's visiting order.
struct PodView<'a> {
    metadata: &'a ObjectMeta,
    spec: &'a PodSpec,
    containers: Vec<ContainerView<'a>>,
}

impl<'a> PodView<'a> {
    fn new(metadata: &'a ObjectMeta, spec: &'a PodSpec) -> Self {
        let init = spec
            .init_containers
            .iter()
            .flatten()
            .map(|container| ContainerView::from_container(ContainerKind::Init, container));
        let regular = spec
            .containers
            .iter()
            .map(|container| ContainerView::from_container(ContainerKind::Regular, container));
        let ephemeral = spec
            .ephemeral_containers
            .iter()
            .flatten()
            .map(ContainerView::from_ephemeral);
        let containers = init.chain(regular).chain(ephemeral).collect();
        Self {
            metadata,
            spec,
            containers,
        }
    }

    fn security_context(&self) -> Option<&'a PodSecurityContext> {
        self.spec.security_context.as_ref()
    }

    fn volumes(&self) -> &'a [Volume] {
        self.spec.volumes.as_deref().unwrap_or_default()
    }

    /// Returns whether `spec.os.name` is `windows`. Upstream exempts such pods from the
    /// restricted checks on fields that API validation rejects for Windows pods.
    fn is_windows(&self) -> bool {
        self.spec
            .os
            .as_ref()
            .is_some_and(|os| os.name == WINDOWS_OS_NAME)
    }

    /// Returns whether the pod runs in its own user namespace (`hostUsers: false`), which
    /// relaxes the baseline procMount check and the restricted runAsNonRoot and runAsUser checks.
    fn uses_user_namespace(&self) -> bool {
        self.spec.host_users == Some(false)
    }
}

#[derive(Clone, Copy)]
enum ContainerKind {
    Init,
    Regular,
    Ephemeral,
}

/// The fields of a container or ephemeral container that the checks read.
struct ContainerView<'a> {
    kind: ContainerKind,
    name: &'a str,
    security_context: Option<&'a SecurityContext>,
    ports: &'a [ContainerPort],
    liveness_probe: Option<&'a Probe>,
    readiness_probe: Option<&'a Probe>,
    startup_probe: Option<&'a Probe>,
    lifecycle: Option<&'a Lifecycle>,
}

impl<'a> ContainerView<'a> {
    fn from_container(kind: ContainerKind, container: &'a Container) -> Self {
        Self {
            kind,
            name: &container.name,
            security_context: container.security_context.as_ref(),
            ports: container.ports.as_deref().unwrap_or_default(),
            liveness_probe: container.liveness_probe.as_ref(),
            readiness_probe: container.readiness_probe.as_ref(),
            startup_probe: container.startup_probe.as_ref(),
            lifecycle: container.lifecycle.as_ref(),
        }
    }

    fn from_ephemeral(container: &'a EphemeralContainer) -> Self {
        Self {
            kind: ContainerKind::Ephemeral,
            name: &container.name,
            security_context: container.security_context.as_ref(),
            ports: container.ports.as_deref().unwrap_or_default(),
            liveness_probe: container.liveness_probe.as_ref(),
            readiness_probe: container.readiness_probe.as_ref(),
            startup_probe: container.startup_probe.as_ref(),
            lifecycle: container.lifecycle.as_ref(),
        }
    }

    fn added_capabilities(&self) -> &'a [String] {
        self.security_context
            .and_then(|context| context.capabilities.as_ref())
            .and_then(|capabilities| capabilities.add.as_deref())
            .unwrap_or_default()
    }

    fn dropped_capabilities(&self) -> &'a [String] {
        self.security_context
            .and_then(|context| context.capabilities.as_ref())
            .and_then(|capabilities| capabilities.drop.as_deref())
            .unwrap_or_default()
    }
}

/// Formats as `container "app"`, `init container "setup"` or `ephemeral container "debug"`.
impl fmt::Display for ContainerView<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            ContainerKind::Init => "init container",
            ContainerKind::Regular => "container",
            ContainerKind::Ephemeral => "ephemeral container",
        };
        write!(formatter, "{kind} {:?}", self.name)
    }
}

/// Formats `values` as `"a", "b"`, dropping repeats and keeping the first occurrence's order.
fn quote_list<'v>(values: impl IntoIterator<Item = &'v str>) -> String {
    let mut unique: Vec<&str> = Vec::new();
    for value in values {
        if !unique.contains(&value) {
            unique.push(value);
        }
    }
    let quoted: Vec<String> = unique.iter().map(|value| format!("{value:?}")).collect();
    quoted.join(", ")
}

fn is_allowed_profile_type(profile_type: &str) -> bool {
    profile_type == "RuntimeDefault" || profile_type == "Localhost"
}

fn app_armor_profile(pod: &PodView<'_>) -> Vec<String> {
    let mut messages = Vec::new();
    let pod_profile = pod
        .security_context()
        .and_then(|context| context.app_armor_profile.as_ref());
    if let Some(profile) = pod_profile
        && !is_allowed_profile_type(&profile.type_)
    {
        messages.push(format!(
            "pod must not set securityContext.appArmorProfile.type to {:?}",
            profile.type_
        ));
    }
    for container in &pod.containers {
        let profile = container
            .security_context
            .and_then(|context| context.app_armor_profile.as_ref());
        if let Some(profile) = profile
            && !is_allowed_profile_type(&profile.type_)
        {
            messages.push(format!(
                "{container} must not set securityContext.appArmorProfile.type to {:?}",
                profile.type_
            ));
        }
    }
    // The deprecated per-container annotations are checked whether or not a container with
    // that name exists, as upstream does.
    for (key, value) in pod.metadata.annotations.iter().flatten() {
        let allowed = value.is_empty()
            || value == APP_ARMOR_ANNOTATION_RUNTIME_DEFAULT
            || value.starts_with(APP_ARMOR_ANNOTATION_LOCALHOST_PREFIX);
        if key.starts_with(APP_ARMOR_ANNOTATION_PREFIX) && !allowed {
            messages.push(format!(
                "annotation {key:?} must be \"runtime/default\" or \"localhost/<profile>\", not {value:?}"
            ));
        }
    }
    messages
}

fn capabilities_baseline(pod: &PodView<'_>) -> Vec<String> {
    let mut messages = Vec::new();
    for container in &pod.containers {
        let forbidden = container
            .added_capabilities()
            .iter()
            .map(String::as_str)
            .filter(|capability| !BASELINE_CAPABILITIES.contains(capability));
        let forbidden = quote_list(forbidden);
        if !forbidden.is_empty() {
            messages.push(format!(
                "{container} must not include {forbidden} in securityContext.capabilities.add"
            ));
        }
    }
    messages
}

fn host_namespaces(pod: &PodView<'_>) -> Vec<String> {
    let namespaces = [
        ("hostNetwork", pod.spec.host_network),
        ("hostPID", pod.spec.host_pid),
        ("hostIPC", pod.spec.host_ipc),
    ];
    namespaces
        .into_iter()
        .filter(|(_, value)| *value == Some(true))
        .map(|(field, _)| format!("pod must not set {field}=true"))
        .collect()
}

fn host_path_volumes(pod: &PodView<'_>) -> Vec<String> {
    pod.volumes()
        .iter()
        .filter_map(|volume| {
            let host_path = volume.host_path.as_ref()?;
            Some(format!(
                "volume {:?} must not use hostPath {:?}",
                volume.name, host_path.path
            ))
        })
        .collect()
}

fn host_ports(pod: &PodView<'_>) -> Vec<String> {
    let mut messages = Vec::new();
    for container in &pod.containers {
        let mut ports: Vec<i32> = Vec::new();
        for host_port in container.ports.iter().filter_map(|port| port.host_port) {
            if host_port != 0 && !ports.contains(&host_port) {
                ports.push(host_port);
            }
        }
        if ports.is_empty() {
            continue;
        }
        let noun = if ports.len() == 1 {
            "hostPort"
        } else {
            "hostPorts"
        };
        let ports: Vec<String> = ports.iter().map(i32::to_string).collect();
        messages.push(format!(
            "{container} must not use {noun} {}",
            ports.join(", ")
        ));
    }
    messages
}

fn host_probes_and_host_lifecycle(pod: &PodView<'_>) -> Vec<String> {
    let mut messages = Vec::new();
    for container in &pod.containers {
        // Each entry is a field path prefix with the httpGet and tcpSocket actions under it.
        let mut actions = Vec::new();
        let probes = [
            ("livenessProbe", container.liveness_probe),
            ("readinessProbe", container.readiness_probe),
            ("startupProbe", container.startup_probe),
        ];
        for (field, probe) in probes {
            if let Some(probe) = probe {
                actions.push((field, probe.http_get.as_ref(), probe.tcp_socket.as_ref()));
            }
        }
        let lifecycle = container.lifecycle;
        let handlers = [
            (
                "lifecycle.postStart",
                lifecycle.and_then(|lifecycle| lifecycle.post_start.as_ref()),
            ),
            (
                "lifecycle.preStop",
                lifecycle.and_then(|lifecycle| lifecycle.pre_stop.as_ref()),
            ),
        ];
        for (field, handler) in handlers {
            if let Some(handler) = handler {
                actions.push((
                    field,
                    handler.http_get.as_ref(),
                    handler.tcp_socket.as_ref(),
                ));
            }
        }

        for (field, http_get, tcp_socket) in actions {
            let hosts = [
                (
                    "httpGet",
                    http_get.and_then(|action| action.host.as_deref()),
                ),
                (
                    "tcpSocket",
                    tcp_socket.and_then(|action| action.host.as_deref()),
                ),
            ];
            for (action, host) in hosts {
                if let Some(host) = host
                    && !host.is_empty()
                {
                    messages.push(format!(
                        "{container} must not set {field}.{action}.host to {host:?}"
                    ));
                }
            }
        }
    }
    messages
}

fn privileged(pod: &PodView<'_>) -> Vec<String> {
    pod.containers
        .iter()
        .filter(|container| {
            container
                .security_context
                .is_some_and(|context| context.privileged == Some(true))
        })
        .map(|container| format!("{container} must not set securityContext.privileged=true"))
        .collect()
}

/// Returns a message for each container whose procMount is set to anything but `Default`.
fn unmasked_proc_mounts(pod: &PodView<'_>) -> Vec<String> {
    let mut messages = Vec::new();
    for container in &pod.containers {
        let proc_mount = container
            .security_context
            .and_then(|context| context.proc_mount.as_deref());
        if let Some(proc_mount) = proc_mount
            && proc_mount != PROC_MOUNT_DEFAULT
        {
            messages.push(format!(
                "{container} must not set securityContext.procMount to {proc_mount:?}"
            ));
        }
    }
    messages
}

fn proc_mount_baseline(pod: &PodView<'_>) -> Vec<String> {
    if pod.uses_user_namespace() {
        return Vec::new();
    }
    unmasked_proc_mounts(pod)
}

/// Covers the pods that the baseline procMount check lets through, so that restricted forbids
/// a non-default procMount for every pod, as upstream does.
fn proc_mount_restricted(pod: &PodView<'_>) -> Vec<String> {
    if !pod.uses_user_namespace() {
        return Vec::new();
    }
    unmasked_proc_mounts(pod)
}

fn se_linux_options(pod: &PodView<'_>) -> Vec<String> {
    let pod_options = pod
        .security_context()
        .and_then(|context| context.se_linux_options.as_ref());
    let container_options = pod.containers.iter().map(|container| {
        let options = container
            .security_context
            .and_then(|context| context.se_linux_options.as_ref());
        (container.to_string(), options)
    });
    let setters = std::iter::once(("pod".to_string(), pod_options)).chain(container_options);

    let mut messages = Vec::new();
    for (setter, options) in setters {
        let Some(options) = options else { continue };
        let selinux_type = options.type_.as_deref().unwrap_or_default();
        if !ALLOWED_SELINUX_TYPES.contains(&selinux_type) {
            messages.push(format!(
                "{setter} must not set securityContext.seLinuxOptions.type to {selinux_type:?}"
            ));
        }
        for (field, value) in [("user", &options.user), ("role", &options.role)] {
            let value = value.as_deref().unwrap_or_default();
            if !value.is_empty() {
                messages.push(format!(
                    "{setter} must not set securityContext.seLinuxOptions.{field} to {value:?}"
                ));
            }
        }
    }
    messages
}

fn seccomp_profile_baseline(pod: &PodView<'_>) -> Vec<String> {
    let mut messages = Vec::new();
    let pod_profile = pod
        .security_context()
        .and_then(|context| context.seccomp_profile.as_ref());
    if let Some(profile) = pod_profile
        && !is_allowed_profile_type(&profile.type_)
    {
        messages.push(format!(
            "pod must not set securityContext.seccompProfile.type to {:?}",
            profile.type_
        ));
    }
    for container in &pod.containers {
        let profile = container
            .security_context
            .and_then(|context| context.seccomp_profile.as_ref());
        if let Some(profile) = profile
            && !is_allowed_profile_type(&profile.type_)
        {
            messages.push(format!(
                "{container} must not set securityContext.seccompProfile.type to {:?}",
                profile.type_
            ));
        }
    }
    messages
}

fn sysctls(pod: &PodView<'_>) -> Vec<String> {
    let sysctls = pod
        .security_context()
        .and_then(|context| context.sysctls.as_deref())
        .unwrap_or_default();
    sysctls
        .iter()
        .filter(|sysctl| !SAFE_SYSCTLS.contains(&sysctl.name.as_str()))
        .map(|sysctl| {
            format!(
                "pod must not set unsafe sysctl {:?} in securityContext.sysctls",
                sysctl.name
            )
        })
        .collect()
}

fn windows_host_process(pod: &PodView<'_>) -> Vec<String> {
    let mut messages = Vec::new();
    let pod_host_process = pod
        .security_context()
        .and_then(|context| context.windows_options.as_ref())
        .and_then(|options| options.host_process);
    if pod_host_process == Some(true) {
        messages.push("pod must not set securityContext.windowsOptions.hostProcess=true".into());
    }
    for container in &pod.containers {
        let host_process = container
            .security_context
            .and_then(|context| context.windows_options.as_ref())
            .and_then(|options| options.host_process);
        if host_process == Some(true) {
            messages.push(format!(
                "{container} must not set securityContext.windowsOptions.hostProcess=true"
            ));
        }
    }
    messages
}

fn allow_privilege_escalation(pod: &PodView<'_>) -> Vec<String> {
    if pod.is_windows() {
        return Vec::new();
    }
    pod.containers
        .iter()
        .filter(|container| {
            container
                .security_context
                .and_then(|context| context.allow_privilege_escalation)
                != Some(false)
        })
        .map(|container| {
            format!("{container} must set securityContext.allowPrivilegeEscalation=false")
        })
        .collect()
}

/// Requires `drop: ["ALL"]` and rejects added capabilities from the baseline default set other
/// than NET_BIND_SERVICE. Capabilities outside the default set are left to
/// `capabilities_baseline`.
///
/// NOTE: upstream skips both capability checks at the restricted level for Windows pods, while
/// here `capabilities_baseline` still reports them. The API server rejects capabilities on
/// Windows pods, so only pods that fail validation see the difference. The same holds for
/// seccomp profiles and for volumes that set several sources at once.
fn capabilities_restricted(pod: &PodView<'_>) -> Vec<String> {
    if pod.is_windows() {
        return Vec::new();
    }
    let mut messages = Vec::new();
    for container in &pod.containers {
        let dropped = container.dropped_capabilities();
        if !dropped
            .iter()
            .any(|capability| capability == DROP_ALL_CAPABILITIES)
        {
            let near_miss = dropped
                .iter()
                .find(|capability| capability.eq_ignore_ascii_case(DROP_ALL_CAPABILITIES));
            let message = match near_miss {
                Some(found) => format!(
                    "{container} must set securityContext.capabilities.drop=[\"ALL\"] \
                     (the match is case-sensitive and {found:?} does not count)"
                ),
                None => format!("{container} must set securityContext.capabilities.drop=[\"ALL\"]"),
            };
            messages.push(message);
        }
        let forbidden = container
            .added_capabilities()
            .iter()
            .map(String::as_str)
            .filter(|capability| {
                *capability != RESTRICTED_ADDABLE_CAPABILITY
                    && BASELINE_CAPABILITIES.contains(capability)
            });
        let forbidden = quote_list(forbidden);
        if !forbidden.is_empty() {
            messages.push(format!(
                "{container} must not include {forbidden} in securityContext.capabilities.add"
            ));
        }
    }
    messages
}

/// Classification of one volume by the restricted volume check.
enum VolumeSource {
    /// At least one source of `RESTRICTED_VOLUME_TYPES` is set.
    Allowed,
    /// The first forbidden source set, by its camelCase field name.
    Forbidden(&'static str),
    /// No source is set.
    Missing,
}

fn classify_volume(volume: &Volume) -> VolumeSource {
    let allowed = [
        volume.config_map.is_some(),
        volume.csi.is_some(),
        volume.downward_api.is_some(),
        volume.empty_dir.is_some(),
        volume.ephemeral.is_some(),
        volume.image.is_some(),
        volume.persistent_volume_claim.is_some(),
        volume.projected.is_some(),
        volume.secret.is_some(),
    ];
    if allowed.into_iter().any(|set| set) {
        return VolumeSource::Allowed;
    }
    let forbidden = [
        ("hostPath", volume.host_path.is_some()),
        ("gcePersistentDisk", volume.gce_persistent_disk.is_some()),
        (
            "awsElasticBlockStore",
            volume.aws_elastic_block_store.is_some(),
        ),
        ("gitRepo", volume.git_repo.is_some()),
        ("nfs", volume.nfs.is_some()),
        ("iscsi", volume.iscsi.is_some()),
        ("glusterfs", volume.glusterfs.is_some()),
        ("rbd", volume.rbd.is_some()),
        ("flexVolume", volume.flex_volume.is_some()),
        ("cinder", volume.cinder.is_some()),
        ("cephfs", volume.cephfs.is_some()),
        ("flocker", volume.flocker.is_some()),
        ("fc", volume.fc.is_some()),
        ("azureFile", volume.azure_file.is_some()),
        ("vsphereVolume", volume.vsphere_volume.is_some()),
        ("quobyte", volume.quobyte.is_some()),
        ("azureDisk", volume.azure_disk.is_some()),
        (
            "photonPersistentDisk",
            volume.photon_persistent_disk.is_some(),
        ),
        ("portworxVolume", volume.portworx_volume.is_some()),
        ("scaleIO", volume.scale_io.is_some()),
        ("storageos", volume.storageos.is_some()),
    ];
    match forbidden.into_iter().find(|(_, set)| *set) {
        Some((name, _)) => VolumeSource::Forbidden(name),
        None => VolumeSource::Missing,
    }
}

/// Rejects volume types outside the restricted set. hostPath volumes are left to
/// `host_path_volumes`.
///
/// NOTE: a volume with no source is rejected, as upstream's code does. The API server defaults
/// such a volume to emptyDir, so this only matters for specs that were never defaulted, such as
/// rendered manifests.
fn restricted_volumes(pod: &PodView<'_>) -> Vec<String> {
    let mut messages = Vec::new();
    for volume in pod.volumes() {
        match classify_volume(volume) {
            VolumeSource::Allowed | VolumeSource::Forbidden("hostPath") => {}
            VolumeSource::Forbidden(volume_type) => messages.push(format!(
                "volume {:?} must not use volume type {volume_type:?}",
                volume.name
            )),
            VolumeSource::Missing => messages.push(format!(
                "volume {:?} must set one of the volume types {}",
                volume.name,
                RESTRICTED_VOLUME_TYPES.join(", ")
            )),
        }
    }
    messages
}

/// Requires runAsNonRoot=true on each container, directly or through the pod. A pod-level false
/// is reported once for the pod instead of once per container that inherits it.
fn run_as_non_root(pod: &PodView<'_>) -> Vec<String> {
    if pod.uses_user_namespace() {
        return Vec::new();
    }
    let mut messages = Vec::new();
    let pod_value = pod
        .security_context()
        .and_then(|context| context.run_as_non_root);
    if pod_value == Some(false) {
        messages.push("pod must not set securityContext.runAsNonRoot=false".into());
    }
    for container in &pod.containers {
        let value = container
            .security_context
            .and_then(|context| context.run_as_non_root);
        match (value, pod_value) {
            (Some(true), _) | (None, Some(true)) | (None, Some(false)) => {}
            (Some(false), _) => messages.push(format!(
                "{container} must not set securityContext.runAsNonRoot=false"
            )),
            (None, None) => messages.push(format!(
                "pod or {container} must set securityContext.runAsNonRoot=true"
            )),
        }
    }
    messages
}

fn run_as_user(pod: &PodView<'_>) -> Vec<String> {
    if pod.uses_user_namespace() {
        return Vec::new();
    }
    let mut messages = Vec::new();
    let pod_value = pod
        .security_context()
        .and_then(|context| context.run_as_user);
    if pod_value == Some(0) {
        messages.push("pod must not set securityContext.runAsUser=0".into());
    }
    for container in &pod.containers {
        let value = container
            .security_context
            .and_then(|context| context.run_as_user);
        if value == Some(0) {
            messages.push(format!(
                "{container} must not set securityContext.runAsUser=0"
            ));
        }
    }
    messages
}

/// Requires a RuntimeDefault or Localhost seccomp profile on each container, directly or
/// through the pod. Forbidden explicit values, and containers that inherit a forbidden
/// pod-level value, are left to `seccomp_profile_baseline`.
fn seccomp_profile_restricted(pod: &PodView<'_>) -> Vec<String> {
    if pod.is_windows() {
        return Vec::new();
    }
    let pod_profile_set = pod
        .security_context()
        .is_some_and(|context| context.seccomp_profile.is_some());
    if pod_profile_set {
        return Vec::new();
    }
    pod.containers
        .iter()
        .filter(|container| {
            container
                .security_context
                .is_none_or(|context| context.seccomp_profile.is_none())
        })
        .map(|container| {
            format!(
                "pod or {container} must set securityContext.seccompProfile.type to \
                 \"RuntimeDefault\" or \"Localhost\""
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::{Value, json};

    use super::*;

    const INIT_CONTEXT: &str = "/spec/initContainers/0/securityContext";
    const APP_CONTEXT: &str = "/spec/containers/0/securityContext";
    const DEBUG_CONTEXT: &str = "/spec/ephemeralContainers/0/securityContext";

    fn restricted_container_context() -> Value {
        json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}})
    }

    /// Builds a pod that passes every restricted check, with one init container ("setup"), one
    /// regular container ("app") and one ephemeral container ("debug").
    fn restricted_pod() -> Value {
        json!({
            "metadata": {"name": "web", "namespace": "media"},
            "spec": {
                "securityContext": {
                    "runAsNonRoot": true,
                    "seccompProfile": {"type": "RuntimeDefault"}
                },
                "initContainers": [{
                    "name": "setup",
                    "image": "busybox",
                    "securityContext": restricted_container_context()
                }],
                "containers": [{
                    "name": "app",
                    "image": "nginx",
                    "ports": [{"containerPort": 8080}],
                    "securityContext": restricted_container_context()
                }],
                "ephemeralContainers": [{
                    "name": "debug",
                    "image": "busybox",
                    "securityContext": restricted_container_context()
                }],
                "volumes": [
                    {"name": "config", "configMap": {"name": "web-config"}},
                    {"name": "cache", "emptyDir": {}},
                    {"name": "token", "projected": {"sources": []}}
                ]
            }
        })
    }

    /// Sets the value at a JSON pointer, creating missing object members on the way. A null
    /// value leaves the field unset once deserialized.
    fn set(document: &mut Value, pointer: &str, value: Value) {
        let mut current = document;
        for token in pointer.split('/').skip(1) {
            let token = token.replace("~1", "/").replace("~0", "~");
            current = match current {
                Value::Array(items) => {
                    let index: usize = token.parse().expect("array index should be a number");
                    &mut items[index]
                }
                other => {
                    if !other.is_object() {
                        *other = json!({});
                    }
                    let members = other.as_object_mut().expect("value was made an object");
                    members.entry(token).or_insert(Value::Null)
                }
            };
        }
        *current = value;
    }

    fn parse(document: &Value) -> (ObjectMeta, PodSpec) {
        let metadata = serde_json::from_value(document["metadata"].clone())
            .expect("test metadata should deserialize");
        let spec =
            serde_json::from_value(document["spec"].clone()).expect("test spec should deserialize");
        (metadata, spec)
    }

    fn patched(patches: &[(&str, Value)]) -> (ObjectMeta, PodSpec) {
        let mut document = restricted_pod();
        for (pointer, value) in patches {
            set(&mut document, pointer, value.clone());
        }
        parse(&document)
    }

    /// JSON pointer and value pairs applied to `restricted_pod()`.
    type Patches = Vec<(&'static str, Value)>;

    fn messages(violations: &[Violation]) -> Vec<&str> {
        violations
            .iter()
            .map(|violation| violation.message.as_str())
            .collect()
    }

    struct Case {
        name: &'static str,
        patches: Patches,
        expected_level: Level,
        expected_checks: &'static [&'static str],
    }

    fn case(
        name: &'static str,
        patches: Patches,
        expected_level: Level,
        expected_checks: &'static [&'static str],
    ) -> Case {
        Case {
            name,
            patches,
            expected_level,
            expected_checks,
        }
    }

    fn cases() -> Vec<Case> {
        use Level::{Baseline, Privileged, Restricted};
        vec![
            case("compliant pod", vec![], Restricted, &[]),
            // Host namespaces.
            case(
                "hostNetwork",
                vec![("/spec/hostNetwork", json!(true))],
                Privileged,
                &["hostNamespaces"],
            ),
            case(
                "hostPID",
                vec![("/spec/hostPID", json!(true))],
                Privileged,
                &["hostNamespaces"],
            ),
            case(
                "hostIPC",
                vec![("/spec/hostIPC", json!(true))],
                Privileged,
                &["hostNamespaces"],
            ),
            case(
                "host namespaces explicitly false",
                vec![
                    ("/spec/hostNetwork", json!(false)),
                    ("/spec/hostPID", json!(false)),
                    ("/spec/hostIPC", json!(false)),
                ],
                Restricted,
                &[],
            ),
            // Privileged containers.
            case(
                "privileged container",
                vec![("/spec/containers/0/securityContext/privileged", json!(true))],
                Privileged,
                &["privileged"],
            ),
            case(
                "privileged ephemeral container",
                vec![(
                    "/spec/ephemeralContainers/0/securityContext/privileged",
                    json!(true),
                )],
                Privileged,
                &["privileged"],
            ),
            case(
                "privileged false",
                vec![(
                    "/spec/containers/0/securityContext/privileged",
                    json!(false),
                )],
                Restricted,
                &[],
            ),
            // Capabilities.
            case(
                "add SYS_ADMIN",
                vec![(
                    "/spec/containers/0/securityContext/capabilities/add",
                    json!(["SYS_ADMIN"]),
                )],
                Privileged,
                &["capabilities_baseline"],
            ),
            case(
                "add CHOWN",
                vec![(
                    "/spec/containers/0/securityContext/capabilities/add",
                    json!(["CHOWN"]),
                )],
                Baseline,
                &["capabilities_restricted"],
            ),
            case(
                "add NET_BIND_SERVICE",
                vec![(
                    "/spec/containers/0/securityContext/capabilities/add",
                    json!(["NET_BIND_SERVICE"]),
                )],
                Restricted,
                &[],
            ),
            case(
                "add lower-case chown",
                vec![(
                    "/spec/containers/0/securityContext/capabilities/add",
                    json!(["chown"]),
                )],
                Privileged,
                &["capabilities_baseline"],
            ),
            case(
                "add CAP_ prefixed name",
                vec![(
                    "/spec/containers/0/securityContext/capabilities/add",
                    json!(["CAP_NET_BIND_SERVICE"]),
                )],
                Privileged,
                &["capabilities_baseline"],
            ),
            case(
                "init adds SYS_ADMIN and CHOWN",
                vec![(
                    "/spec/initContainers/0/securityContext/capabilities/add",
                    json!(["SYS_ADMIN", "CHOWN"]),
                )],
                Privileged,
                &["capabilities_baseline", "capabilities_restricted"],
            ),
            case(
                "drop lower-case all",
                vec![(
                    "/spec/containers/0/securityContext/capabilities/drop",
                    json!(["all"]),
                )],
                Baseline,
                &["capabilities_restricted"],
            ),
            case(
                "drop NET_RAW only",
                vec![(
                    "/spec/containers/0/securityContext/capabilities/drop",
                    json!(["NET_RAW"]),
                )],
                Baseline,
                &["capabilities_restricted"],
            ),
            case(
                "drop ALL among others",
                vec![(
                    "/spec/containers/0/securityContext/capabilities/drop",
                    json!(["NET_RAW", "ALL"]),
                )],
                Restricted,
                &[],
            ),
            case(
                "ephemeral without capabilities",
                vec![(
                    "/spec/ephemeralContainers/0/securityContext/capabilities",
                    Value::Null,
                )],
                Baseline,
                &["capabilities_restricted"],
            ),
            // Volumes.
            case(
                "hostPath volume",
                vec![(
                    "/spec/volumes/0",
                    json!({"name": "docker", "hostPath": {"path": "/var/run/docker.sock"}}),
                )],
                Privileged,
                &["hostPathVolumes"],
            ),
            case(
                "nfs volume",
                vec![(
                    "/spec/volumes/0",
                    json!({"name": "media", "nfs": {"server": "nas", "path": "/media"}}),
                )],
                Baseline,
                &["restrictedVolumes"],
            ),
            case(
                "gitRepo volume",
                vec![(
                    "/spec/volumes/0",
                    json!({"name": "src", "gitRepo": {"repository": "https://example.com/r.git"}}),
                )],
                Baseline,
                &["restrictedVolumes"],
            ),
            case(
                "image volume",
                vec![(
                    "/spec/volumes/0",
                    json!({"name": "models", "image": {"reference": "registry.example/models:v1"}}),
                )],
                Restricted,
                &[],
            ),
            case(
                "all other restricted volume types",
                vec![(
                    "/spec/volumes",
                    json!([
                        {"name": "a", "csi": {"driver": "secrets-store.csi.k8s.io"}},
                        {"name": "b", "persistentVolumeClaim": {"claimName": "data"}},
                        {"name": "c", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}},
                        {"name": "d", "secret": {"secretName": "tls"}},
                        {"name": "e", "downwardAPI": {"items": []}}
                    ]),
                )],
                Restricted,
                &[],
            ),
            case(
                "volume without source",
                vec![("/spec/volumes/0", json!({"name": "bare"}))],
                Baseline,
                &["restrictedVolumes"],
            ),
            // Host ports.
            case(
                "hostPort",
                vec![("/spec/containers/0/ports/0/hostPort", json!(8080))],
                Privileged,
                &["hostPorts"],
            ),
            case(
                "hostPort zero",
                vec![("/spec/containers/0/ports/0/hostPort", json!(0))],
                Restricted,
                &[],
            ),
            case(
                "hostPort in init container",
                vec![(
                    "/spec/initContainers/0/ports",
                    json!([{"containerPort": 80, "hostPort": 80}]),
                )],
                Privileged,
                &["hostPorts"],
            ),
            // Probe and lifecycle hosts.
            case(
                "liveness probe httpGet host",
                vec![(
                    "/spec/containers/0/livenessProbe",
                    json!({"httpGet": {"port": 8080, "host": "169.254.169.254"}}),
                )],
                Privileged,
                &["hostProbesAndHostLifecycle"],
            ),
            case(
                "preStop tcpSocket host",
                vec![(
                    "/spec/initContainers/0/lifecycle",
                    json!({"preStop": {"tcpSocket": {"port": 80, "host": "10.0.0.1"}}}),
                )],
                Privileged,
                &["hostProbesAndHostLifecycle"],
            ),
            case(
                "probe with empty host",
                vec![(
                    "/spec/containers/0/readinessProbe",
                    json!({"httpGet": {"port": 8080, "host": ""}}),
                )],
                Restricted,
                &[],
            ),
            // AppArmor.
            case(
                "AppArmor Unconfined on pod",
                vec![(
                    "/spec/securityContext/appArmorProfile",
                    json!({"type": "Unconfined"}),
                )],
                Privileged,
                &["appArmorProfile"],
            ),
            case(
                "AppArmor Unconfined on init container",
                vec![(
                    "/spec/initContainers/0/securityContext/appArmorProfile",
                    json!({"type": "Unconfined"}),
                )],
                Privileged,
                &["appArmorProfile"],
            ),
            case(
                "AppArmor Localhost and RuntimeDefault",
                vec![
                    (
                        "/spec/containers/0/securityContext/appArmorProfile",
                        json!({"type": "Localhost", "localhostProfile": "k8s-nginx"}),
                    ),
                    (
                        "/spec/securityContext/appArmorProfile",
                        json!({"type": "RuntimeDefault"}),
                    ),
                ],
                Restricted,
                &[],
            ),
            case(
                "AppArmor annotation unconfined",
                vec![(
                    "/metadata/annotations/container.apparmor.security.beta.kubernetes.io~1app",
                    json!("unconfined"),
                )],
                Privileged,
                &["appArmorProfile"],
            ),
            case(
                "AppArmor annotations allowed values",
                vec![
                    (
                        "/metadata/annotations/container.apparmor.security.beta.kubernetes.io~1app",
                        json!("localhost/k8s-nginx"),
                    ),
                    (
                        "/metadata/annotations/container.apparmor.security.beta.kubernetes.io~1setup",
                        json!("runtime/default"),
                    ),
                    (
                        "/metadata/annotations/container.apparmor.security.beta.kubernetes.io~1debug",
                        json!(""),
                    ),
                ],
                Restricted,
                &[],
            ),
            // SELinux.
            case(
                "SELinux spc_t on pod",
                vec![(
                    "/spec/securityContext/seLinuxOptions",
                    json!({"type": "spc_t"}),
                )],
                Privileged,
                &["seLinuxOptions"],
            ),
            case(
                "SELinux container_engine_t",
                vec![(
                    "/spec/containers/0/securityContext/seLinuxOptions",
                    json!({"type": "container_engine_t"}),
                )],
                Restricted,
                &[],
            ),
            case(
                "SELinux user",
                vec![(
                    "/spec/containers/0/securityContext/seLinuxOptions",
                    json!({"user": "system_u"}),
                )],
                Privileged,
                &["seLinuxOptions"],
            ),
            case(
                "SELinux role on init container",
                vec![(
                    "/spec/initContainers/0/securityContext/seLinuxOptions",
                    json!({"role": "system_r"}),
                )],
                Privileged,
                &["seLinuxOptions"],
            ),
            case(
                "SELinux level only",
                vec![(
                    "/spec/securityContext/seLinuxOptions",
                    json!({"level": "s0:c123,c456", "user": ""}),
                )],
                Restricted,
                &[],
            ),
            // /proc mount.
            case(
                "procMount Unmasked",
                vec![(
                    "/spec/containers/0/securityContext/procMount",
                    json!("Unmasked"),
                )],
                Privileged,
                &["procMount"],
            ),
            case(
                "procMount Unmasked with hostUsers false",
                vec![
                    (
                        "/spec/containers/0/securityContext/procMount",
                        json!("Unmasked"),
                    ),
                    ("/spec/hostUsers", json!(false)),
                ],
                Baseline,
                &["procMount_restricted"],
            ),
            case(
                "procMount Default",
                vec![(
                    "/spec/ephemeralContainers/0/securityContext/procMount",
                    json!("Default"),
                )],
                Restricted,
                &[],
            ),
            // Seccomp.
            case(
                "seccomp Unconfined on pod",
                vec![(
                    "/spec/securityContext/seccompProfile",
                    json!({"type": "Unconfined"}),
                )],
                Privileged,
                &["seccompProfile_baseline"],
            ),
            case(
                "seccomp Unconfined on ephemeral container",
                vec![(
                    "/spec/ephemeralContainers/0/securityContext/seccompProfile",
                    json!({"type": "Unconfined"}),
                )],
                Privileged,
                &["seccompProfile_baseline"],
            ),
            case(
                "seccomp unset everywhere",
                vec![("/spec/securityContext/seccompProfile", Value::Null)],
                Baseline,
                &["seccompProfile_restricted"],
            ),
            case(
                "seccomp only on containers",
                vec![
                    ("/spec/securityContext/seccompProfile", Value::Null),
                    (
                        "/spec/initContainers/0/securityContext/seccompProfile",
                        json!({"type": "RuntimeDefault"}),
                    ),
                    (
                        "/spec/containers/0/securityContext/seccompProfile",
                        json!({"type": "Localhost", "localhostProfile": "profiles/app.json"}),
                    ),
                    (
                        "/spec/ephemeralContainers/0/securityContext/seccompProfile",
                        json!({"type": "RuntimeDefault"}),
                    ),
                ],
                Restricted,
                &[],
            ),
            case(
                "seccomp missing on ephemeral container",
                vec![
                    ("/spec/securityContext/seccompProfile", Value::Null),
                    (
                        "/spec/initContainers/0/securityContext/seccompProfile",
                        json!({"type": "RuntimeDefault"}),
                    ),
                    (
                        "/spec/containers/0/securityContext/seccompProfile",
                        json!({"type": "RuntimeDefault"}),
                    ),
                ],
                Baseline,
                &["seccompProfile_restricted"],
            ),
            case(
                "seccomp Localhost container under pod default",
                vec![(
                    "/spec/containers/0/securityContext/seccompProfile",
                    json!({"type": "Localhost", "localhostProfile": "profiles/app.json"}),
                )],
                Restricted,
                &[],
            ),
            case(
                "seccomp Unconfined container under pod default",
                vec![(
                    "/spec/containers/0/securityContext/seccompProfile",
                    json!({"type": "Unconfined"}),
                )],
                Privileged,
                &["seccompProfile_baseline"],
            ),
            // Sysctls.
            case(
                "safe sysctls",
                vec![(
                    "/spec/securityContext/sysctls",
                    json!([
                        {"name": "net.ipv4.tcp_notsent_lowat", "value": "16384"},
                        {"name": "net.ipv4.tcp_slow_start_after_idle", "value": "0"},
                        {"name": "net.ipv4.tcp_rmem", "value": "4096 87380 6291456"},
                        {"name": "kernel.shm_rmid_forced", "value": "1"}
                    ]),
                )],
                Restricted,
                &[],
            ),
            case(
                "unsafe sysctl",
                vec![(
                    "/spec/securityContext/sysctls",
                    json!([{"name": "kernel.msgmax", "value": "65536"}]),
                )],
                Privileged,
                &["sysctls"],
            ),
            // Windows HostProcess.
            case(
                "hostProcess on pod",
                vec![(
                    "/spec/securityContext/windowsOptions",
                    json!({"hostProcess": true}),
                )],
                Privileged,
                &["windowsHostProcess"],
            ),
            case(
                "hostProcess on container",
                vec![(
                    "/spec/containers/0/securityContext/windowsOptions",
                    json!({"hostProcess": true}),
                )],
                Privileged,
                &["windowsHostProcess"],
            ),
            // Privilege escalation.
            case(
                "allowPrivilegeEscalation true in init container",
                vec![(
                    "/spec/initContainers/0/securityContext/allowPrivilegeEscalation",
                    json!(true),
                )],
                Baseline,
                &["allowPrivilegeEscalation"],
            ),
            case(
                "allowPrivilegeEscalation unset in ephemeral container",
                vec![(
                    "/spec/ephemeralContainers/0/securityContext/allowPrivilegeEscalation",
                    Value::Null,
                )],
                Baseline,
                &["allowPrivilegeEscalation"],
            ),
            // Windows pods are exempt from the Linux-only restricted fields.
            case(
                "windows pod without Linux fields",
                vec![
                    ("/spec/os", json!({"name": "windows"})),
                    ("/spec/securityContext/seccompProfile", Value::Null),
                    (INIT_CONTEXT, Value::Null),
                    (APP_CONTEXT, Value::Null),
                    (DEBUG_CONTEXT, Value::Null),
                ],
                Restricted,
                &[],
            ),
            case(
                "linux pod without Linux fields",
                vec![
                    ("/spec/os", json!({"name": "linux"})),
                    ("/spec/securityContext/seccompProfile", Value::Null),
                    (INIT_CONTEXT, Value::Null),
                    (APP_CONTEXT, Value::Null),
                    (DEBUG_CONTEXT, Value::Null),
                ],
                Baseline,
                &[
                    "allowPrivilegeEscalation",
                    "capabilities_restricted",
                    "seccompProfile_restricted",
                ],
            ),
            // Non-root.
            case(
                "runAsNonRoot false in one container",
                vec![(
                    "/spec/containers/0/securityContext/runAsNonRoot",
                    json!(false),
                )],
                Baseline,
                &["runAsNonRoot"],
            ),
            case(
                "runAsNonRoot only on containers",
                vec![
                    ("/spec/securityContext/runAsNonRoot", Value::Null),
                    (
                        "/spec/initContainers/0/securityContext/runAsNonRoot",
                        json!(true),
                    ),
                    (
                        "/spec/containers/0/securityContext/runAsNonRoot",
                        json!(true),
                    ),
                    (
                        "/spec/ephemeralContainers/0/securityContext/runAsNonRoot",
                        json!(true),
                    ),
                ],
                Restricted,
                &[],
            ),
            case(
                "runAsNonRoot missing on ephemeral container",
                vec![
                    ("/spec/securityContext/runAsNonRoot", Value::Null),
                    (
                        "/spec/initContainers/0/securityContext/runAsNonRoot",
                        json!(true),
                    ),
                    (
                        "/spec/containers/0/securityContext/runAsNonRoot",
                        json!(true),
                    ),
                ],
                Baseline,
                &["runAsNonRoot"],
            ),
            case(
                "runAsNonRoot false on pod despite containers",
                vec![
                    ("/spec/securityContext/runAsNonRoot", json!(false)),
                    (
                        "/spec/initContainers/0/securityContext/runAsNonRoot",
                        json!(true),
                    ),
                    (
                        "/spec/containers/0/securityContext/runAsNonRoot",
                        json!(true),
                    ),
                    (
                        "/spec/ephemeralContainers/0/securityContext/runAsNonRoot",
                        json!(true),
                    ),
                ],
                Baseline,
                &["runAsNonRoot"],
            ),
            case(
                "runAsNonRoot unset with hostUsers false",
                vec![
                    ("/spec/securityContext/runAsNonRoot", Value::Null),
                    ("/spec/hostUsers", json!(false)),
                ],
                Restricted,
                &[],
            ),
            case(
                "runAsNonRoot unset with hostUsers true",
                vec![
                    ("/spec/securityContext/runAsNonRoot", Value::Null),
                    ("/spec/hostUsers", json!(true)),
                ],
                Baseline,
                &["runAsNonRoot"],
            ),
            // Root user.
            case(
                "runAsUser 0 on pod",
                vec![("/spec/securityContext/runAsUser", json!(0))],
                Baseline,
                &["runAsUser"],
            ),
            case(
                "runAsUser 0 in ephemeral container",
                vec![(
                    "/spec/ephemeralContainers/0/securityContext/runAsUser",
                    json!(0),
                )],
                Baseline,
                &["runAsUser"],
            ),
            case(
                "runAsUser 0 on pod despite container override",
                vec![
                    ("/spec/securityContext/runAsUser", json!(0)),
                    ("/spec/containers/0/securityContext/runAsUser", json!(1000)),
                ],
                Baseline,
                &["runAsUser"],
            ),
            case(
                "runAsUser 0 with hostUsers false",
                vec![
                    ("/spec/securityContext/runAsUser", json!(0)),
                    ("/spec/hostUsers", json!(false)),
                ],
                Restricted,
                &[],
            ),
            case(
                "runAsUser 1000",
                vec![("/spec/securityContext/runAsUser", json!(1000))],
                Restricted,
                &[],
            ),
            // Several at once.
            case(
                "hostNetwork and runAsUser 0",
                vec![
                    ("/spec/hostNetwork", json!(true)),
                    ("/spec/containers/0/securityContext/runAsUser", json!(0)),
                ],
                Privileged,
                &["hostNamespaces", "runAsUser"],
            ),
        ]
    }

    #[test]
    fn table_cases() {
        let rule_levels: Vec<(&str, Level)> =
            RULES.iter().map(|rule| (rule.id, rule.level)).collect();
        for case in cases() {
            let name = case.name;
            let (metadata, spec) = patched(&case.patches);
            let restricted = check(Level::Restricted, &metadata, &spec);
            let baseline = check(Level::Baseline, &metadata, &spec);

            let found: BTreeSet<&str> =
                restricted.iter().map(|violation| violation.check).collect();
            let expected: BTreeSet<&str> = case.expected_checks.iter().copied().collect();
            assert_eq!(
                found,
                expected,
                "{name}: checks, messages {:?}",
                messages(&restricted)
            );

            let level = strictest_admitting_level(&metadata, &spec);
            assert_eq!(
                level, case.expected_level,
                "{name}: strictest admitting level"
            );

            for violation in &restricted {
                let rule_level = rule_levels
                    .iter()
                    .find(|(id, _)| *id == violation.check)
                    .map(|(_, level)| *level);
                assert_eq!(
                    rule_level,
                    Some(violation.level),
                    "{name}: level of {violation:?}"
                );
            }

            let baseline_part: Vec<&Violation> = restricted
                .iter()
                .filter(|violation| violation.level == Level::Baseline)
                .collect();
            let baseline_refs: Vec<&Violation> = baseline.iter().collect();
            assert_eq!(baseline_part, baseline_refs, "{name}: baseline subset");

            assert!(
                check(Level::Privileged, &metadata, &spec).is_empty(),
                "{name}: privileged"
            );
        }
    }

    #[test]
    fn level_names_round_trip() {
        for level in [Level::Privileged, Level::Baseline, Level::Restricted] {
            assert_eq!(Level::parse(level.as_str()), Some(level));
            assert_eq!(level.to_string(), level.as_str());
        }
    }

    #[test]
    fn level_parse_rejects_other_spellings() {
        for text in ["Restricted", "BASELINE", " privileged", "", "latest"] {
            assert_eq!(Level::parse(text), None, "{text:?}");
        }
    }

    #[test]
    fn level_order() {
        assert!(Level::Privileged < Level::Baseline);
        assert!(Level::Baseline < Level::Restricted);
    }

    #[test]
    fn messages_per_container_kind() {
        let (metadata, spec) = patched(&[
            (
                "/spec/initContainers/0/securityContext/allowPrivilegeEscalation",
                Value::Null,
            ),
            (
                "/spec/containers/0/securityContext/allowPrivilegeEscalation",
                json!(true),
            ),
            (DEBUG_CONTEXT, Value::Null),
        ]);
        let violations = check(Level::Restricted, &metadata, &spec);
        assert_eq!(
            messages(&violations),
            [
                "init container \"setup\" must set securityContext.allowPrivilegeEscalation=false",
                "container \"app\" must set securityContext.allowPrivilegeEscalation=false",
                "ephemeral container \"debug\" must set securityContext.allowPrivilegeEscalation=false",
                "ephemeral container \"debug\" must set securityContext.capabilities.drop=[\"ALL\"]",
            ]
        );
    }

    #[test]
    fn message_texts() {
        let cases: Vec<(Patches, Vec<&str>)> = vec![
            (
                vec![("/spec/hostNetwork", json!(true))],
                vec!["pod must not set hostNetwork=true"],
            ),
            (
                vec![(
                    "/spec/containers/0/securityContext/capabilities/add",
                    json!(["SYS_ADMIN", "NET_RAW", "SYS_ADMIN", "NET_BIND_SERVICE"]),
                )],
                vec![
                    "container \"app\" must not include \"SYS_ADMIN\", \"NET_RAW\" in securityContext.capabilities.add",
                ],
            ),
            (
                vec![(
                    "/spec/containers/0/securityContext/capabilities",
                    json!({"drop": ["all"], "add": ["CHOWN", "KILL"]}),
                )],
                vec![
                    "container \"app\" must set securityContext.capabilities.drop=[\"ALL\"] (the match is case-sensitive and \"all\" does not count)",
                    "container \"app\" must not include \"CHOWN\", \"KILL\" in securityContext.capabilities.add",
                ],
            ),
            (
                vec![(
                    "/spec/containers/0/ports",
                    json!([
                        {"containerPort": 8080, "hostPort": 8080},
                        {"containerPort": 9090, "hostPort": 9090},
                        {"containerPort": 8081, "hostPort": 8080, "protocol": "UDP"}
                    ]),
                )],
                vec!["container \"app\" must not use hostPorts 8080, 9090"],
            ),
            (
                vec![(
                    "/spec/volumes/0",
                    json!({"name": "docker", "hostPath": {"path": "/var/run/docker.sock"}}),
                )],
                vec!["volume \"docker\" must not use hostPath \"/var/run/docker.sock\""],
            ),
            (
                vec![(
                    "/spec/volumes/0",
                    json!({"name": "media", "nfs": {"server": "nas", "path": "/media"}}),
                )],
                vec!["volume \"media\" must not use volume type \"nfs\""],
            ),
            (
                vec![("/spec/volumes/0", json!({"name": "bare"}))],
                vec![
                    "volume \"bare\" must set one of the volume types configMap, csi, downwardAPI, emptyDir, ephemeral, image, persistentVolumeClaim, projected, secret",
                ],
            ),
            (
                vec![(
                    "/spec/containers/0/startupProbe",
                    json!({"tcpSocket": {"port": 8080, "host": "db.internal"}}),
                )],
                vec![
                    "container \"app\" must not set startupProbe.tcpSocket.host to \"db.internal\"",
                ],
            ),
            (
                vec![(
                    "/spec/containers/0/lifecycle",
                    json!({"postStart": {"httpGet": {"port": 80, "host": "169.254.169.254"}}}),
                )],
                vec![
                    "container \"app\" must not set lifecycle.postStart.httpGet.host to \"169.254.169.254\"",
                ],
            ),
            (
                vec![(
                    "/metadata/annotations/container.apparmor.security.beta.kubernetes.io~1app",
                    json!("unconfined"),
                )],
                vec![
                    "annotation \"container.apparmor.security.beta.kubernetes.io/app\" must be \"runtime/default\" or \"localhost/<profile>\", not \"unconfined\"",
                ],
            ),
            (
                vec![(
                    "/spec/initContainers/0/securityContext/appArmorProfile",
                    json!({"type": "Unconfined"}),
                )],
                vec![
                    "init container \"setup\" must not set securityContext.appArmorProfile.type to \"Unconfined\"",
                ],
            ),
            (
                vec![(
                    "/spec/securityContext/seLinuxOptions",
                    json!({"type": "spc_t", "user": "system_u", "role": "system_r"}),
                )],
                vec![
                    "pod must not set securityContext.seLinuxOptions.type to \"spc_t\"",
                    "pod must not set securityContext.seLinuxOptions.user to \"system_u\"",
                    "pod must not set securityContext.seLinuxOptions.role to \"system_r\"",
                ],
            ),
            (
                vec![(
                    "/spec/containers/0/securityContext/procMount",
                    json!("Unmasked"),
                )],
                vec!["container \"app\" must not set securityContext.procMount to \"Unmasked\""],
            ),
            (
                vec![(
                    "/spec/securityContext/seccompProfile",
                    json!({"type": "Unconfined"}),
                )],
                vec!["pod must not set securityContext.seccompProfile.type to \"Unconfined\""],
            ),
            (
                vec![(
                    "/spec/securityContext/sysctls",
                    json!([
                        {"name": "net.ipv4.tcp_syncookies", "value": "1"},
                        {"name": "kernel.msgmax", "value": "65536"}
                    ]),
                )],
                vec!["pod must not set unsafe sysctl \"kernel.msgmax\" in securityContext.sysctls"],
            ),
            (
                vec![(
                    "/spec/securityContext/windowsOptions",
                    json!({"hostProcess": true}),
                )],
                vec!["pod must not set securityContext.windowsOptions.hostProcess=true"],
            ),
            (
                vec![
                    ("/spec/securityContext/runAsNonRoot", Value::Null),
                    (
                        "/spec/initContainers/0/securityContext/runAsNonRoot",
                        json!(true),
                    ),
                    (
                        "/spec/containers/0/securityContext/runAsNonRoot",
                        json!(false),
                    ),
                ],
                vec![
                    "container \"app\" must not set securityContext.runAsNonRoot=false",
                    "pod or ephemeral container \"debug\" must set securityContext.runAsNonRoot=true",
                ],
            ),
            (
                vec![("/spec/securityContext/runAsNonRoot", json!(false))],
                vec!["pod must not set securityContext.runAsNonRoot=false"],
            ),
            (
                vec![
                    ("/spec/securityContext/runAsUser", json!(0)),
                    ("/spec/containers/0/securityContext/runAsUser", json!(0)),
                ],
                vec![
                    "pod must not set securityContext.runAsUser=0",
                    "container \"app\" must not set securityContext.runAsUser=0",
                ],
            ),
            (
                vec![
                    ("/spec/securityContext/seccompProfile", Value::Null),
                    (
                        "/spec/initContainers/0/securityContext/seccompProfile",
                        json!({"type": "RuntimeDefault"}),
                    ),
                ],
                vec![
                    "pod or container \"app\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\"",
                    "pod or ephemeral container \"debug\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\"",
                ],
            ),
            (
                vec![
                    ("/spec/hostPID", json!(true)),
                    ("/spec/containers/0/securityContext/runAsUser", json!(0)),
                    ("/spec/containers/0/securityContext/privileged", json!(true)),
                ],
                vec![
                    "pod must not set hostPID=true",
                    "container \"app\" must not set securityContext.privileged=true",
                    "container \"app\" must not set securityContext.runAsUser=0",
                ],
            ),
        ];
        for (patches, expected) in cases {
            let (metadata, spec) = patched(&patches);
            let violations = check(Level::Restricted, &metadata, &spec);
            assert_eq!(messages(&violations), expected, "patches {patches:?}");
        }
    }

    #[test]
    fn replaced_checks_report_once() {
        let cases: Vec<(Patches, &str)> = vec![
            (
                vec![(
                    "/spec/containers/0/securityContext/capabilities/add",
                    json!(["SYS_ADMIN"]),
                )],
                "capabilities_baseline",
            ),
            (
                vec![(
                    "/spec/securityContext/seccompProfile",
                    json!({"type": "Unconfined"}),
                )],
                "seccompProfile_baseline",
            ),
            (
                vec![(
                    "/spec/volumes/0",
                    json!({"name": "logs", "hostPath": {"path": "/var/log"}}),
                )],
                "hostPathVolumes",
            ),
            (
                vec![(
                    "/spec/containers/0/securityContext/procMount",
                    json!("Unmasked"),
                )],
                "procMount",
            ),
        ];
        for (patches, expected_check) in cases {
            let (metadata, spec) = patched(&patches);
            let violations = check(Level::Restricted, &metadata, &spec);
            assert_eq!(violations.len(), 1, "{expected_check}: {violations:?}");
            assert_eq!(violations[0].check, expected_check);
            assert_eq!(violations[0].level, Level::Baseline, "{expected_check}");
        }
    }

    #[test]
    fn baseline_skips_restricted_checks() {
        let (metadata, spec) = patched(&[
            ("/spec/securityContext/runAsUser", json!(0)),
            ("/spec/securityContext/runAsNonRoot", Value::Null),
            ("/spec/securityContext/seccompProfile", Value::Null),
            (APP_CONTEXT, Value::Null),
            (
                "/spec/volumes/0",
                json!({"name": "media", "nfs": {"server": "nas", "path": "/media"}}),
            ),
        ]);
        assert_eq!(check(Level::Baseline, &metadata, &spec), []);
        assert!(!check(Level::Restricted, &metadata, &spec).is_empty());
    }

    #[test]
    fn privileged_level_has_no_checks() {
        let (metadata, spec) = patched(&[
            ("/spec/hostNetwork", json!(true)),
            ("/spec/containers/0/securityContext/privileged", json!(true)),
        ]);
        assert_eq!(check(Level::Privileged, &metadata, &spec), []);
    }

    #[test]
    fn strictest_level_examples() {
        let minimal = json!({
            "metadata": {"name": "minimal"},
            "spec": {"containers": [{"name": "app", "image": "nginx"}]}
        });
        let node_agent = json!({
            "metadata": {"name": "node-exporter"},
            "spec": {
                "hostNetwork": true,
                "hostPID": true,
                "containers": [{
                    "name": "exporter",
                    "image": "prom/node-exporter",
                    "ports": [{"containerPort": 9100, "hostPort": 9100}],
                    "securityContext": {"privileged": true}
                }],
                "volumes": [{"name": "root", "hostPath": {"path": "/"}}]
            }
        });
        let hardened_without_pod_context = json!({
            "metadata": {"name": "hardened"},
            "spec": {
                "containers": [{
                    "name": "app",
                    "image": "nginx",
                    "securityContext": {
                        "allowPrivilegeEscalation": false,
                        "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
                        "runAsNonRoot": true,
                        "runAsUser": 101,
                        "seccompProfile": {"type": "RuntimeDefault"}
                    }
                }]
            }
        });
        let examples = [
            ("minimal", minimal, Level::Baseline),
            ("node agent", node_agent, Level::Privileged),
            ("hardened", hardened_without_pod_context, Level::Restricted),
            ("restricted fixture", restricted_pod(), Level::Restricted),
        ];
        for (name, document, expected) in examples {
            let (metadata, spec) = parse(&document);
            assert_eq!(
                strictest_admitting_level(&metadata, &spec),
                expected,
                "{name}"
            );
        }
    }

    #[test]
    fn pod_without_containers_is_restricted() {
        let level = strictest_admitting_level(&ObjectMeta::default(), &PodSpec::default());
        assert_eq!(level, Level::Restricted);
    }
}
