//! The operator binary against the local control plane: it becomes ready, serves metrics,
//! reconciles every policy and stops on SIGTERM, restart after restart.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use kube::Api;
use serde_json::json;

use common::{TEST_LABEL, WATCH_DEADLINE, client, create_namespace, unique_id, wait_for};
use medianest_operator::api::MediaNestSecurityPolicy;

/// Sends a GET to `path` on 127.0.0.1:`port` and returns the status code and body.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    Some((status, body))
}

/// Polls `path` until it returns 200, panicking after `deadline`.
fn wait_ok(port: u16, path: &str, deadline: Duration) {
    let started = Instant::now();
    while get(port, path).map(|(status, _)| status) != Some(200) {
        assert!(
            started.elapsed() < deadline,
            "{path} did not return 200 within {deadline:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running operator binary whose standard error is read continuously, so that a full pipe
/// never blocks its logging.
struct Running {
    child: Child,
    logs: std::thread::JoinHandle<String>,
}

fn start(id: &str, port: u16) -> Running {
    start_with(id, port, &[], &[])
}

/// Starts the operator like `start`, with extra environment variables and arguments.
fn start_with(id: &str, port: u16, env: &[(&str, &str)], args: &[&str]) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_medianest-operator"))
        .envs(env.iter().copied())
        .args([
            "run",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--log-format",
            "json",
        ])
        .args(["--policy-selector", &format!("{TEST_LABEL}={id}")])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the operator binary");
    let mut stderr = child.stderr.take().unwrap();
    let logs = std::thread::spawn(move || {
        let mut logs = Vec::new();
        let _ = stderr.read_to_end(&mut logs);
        String::from_utf8_lossy(&logs).into_owned()
    });
    Running { child, logs }
}

/// Sends SIGTERM and returns the logs once the process has exited.
fn stop(running: Running) -> String {
    let Running { mut child, logs } = running;
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let stopping = Instant::now();
    let exit = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if stopping.elapsed() > Duration::from_secs(15) {
            let _ = child.kill();
            let _ = child.wait();
            let logs = logs.join().unwrap_or_default();
            panic!("no exit within 15 s of SIGTERM; logs:\n{logs}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(exit.success(), "{exit:?}");
    logs.join().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn binary_restarts_cleanly() {
    let client = client().await;
    let id = unique_id("bin");
    // Several policies to reconcile while the caches load: every reconcile waits for them,
    // which must not keep them, or the readiness probe, from loading.
    let mut names = Vec::new();
    for index in 0..4 {
        let name = format!("{id}-{index}");
        create_namespace(
            &client,
            &name,
            &id,
            &[("medianest.io/slot", &index.to_string())],
        )
        .await;
        let policy: MediaNestSecurityPolicy = serde_json::from_value(json!({
            "apiVersion": "security.medianest.io/v1alpha1",
            "kind": "MediaNestSecurityPolicy",
            "metadata": { "name": name, "labels": { TEST_LABEL: id } },
            "spec": {
                "namespaceSelector": { "matchLabels": { "medianest.io/slot": index.to_string(), TEST_LABEL: id } },
                "workloads": {},
            },
        }))
        .unwrap();
        Api::<MediaNestSecurityPolicy>::all(client.clone())
            .create(&Default::default(), &policy)
            .await
            .unwrap();
        names.push(name);
    }

    for round in 0..3 {
        let port = free_port();
        let child = start(&id, port);
        let started = Instant::now();
        let mut ready = false;
        while started.elapsed() < Duration::from_secs(30) {
            if let Some((200, _)) = get(port, "/readyz") {
                ready = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if !ready {
            let logs = stop(child);
            panic!("round {round}: /readyz did not return 200 within 30 s; logs:\n{logs}");
        }
        let (status, metrics) = get(port, "/metrics").expect("metrics");
        assert_eq!(status, 200);
        assert!(
            metrics.contains("medianest_api_requests_total"),
            "{metrics}"
        );
        assert_eq!(get(port, "/healthz").map(|(status, _)| status), Some(200));

        for name in &names {
            let api = Api::<MediaNestSecurityPolicy>::all(client.clone());
            wait_for(
                &format!("round {round}: policy {name} reconciled"),
                WATCH_DEADLINE,
                || async {
                    let policy = api.get(name).await.ok()?;
                    (policy.status?.governed_namespace_count == 1).then_some(())
                },
            )
            .await;
        }

        let logs = stop(child);
        for line in logs.lines() {
            assert!(
                serde_json::from_str::<serde_json::Value>(line).is_ok(),
                "not a JSON log line: {line}"
            );
        }
        assert!(logs.contains("Caches loaded"), "{logs}");
        // The next round starts from scratch, so every policy must be reconciled again.
        for name in &names {
            let patch = json!({ "status": null });
            let _ = Api::<MediaNestSecurityPolicy>::all(client.clone())
                .patch_status(name, &Default::default(), &kube::api::Patch::Merge(&patch))
                .await;
        }
    }

    let api = Api::<MediaNestSecurityPolicy>::all(client.clone());
    for name in &names {
        let _ = api.delete(name, &Default::default()).await;
    }
    common::delete_namespaces(&client, &names).await;
}

/// Writes a copy of the admin kubeconfig that impersonates `user`, and returns its path.
fn impersonating_kubeconfig(user: &str) -> std::path::PathBuf {
    let admin = std::env::var("KUBECONFIG").expect("KUBECONFIG");
    let mut config: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(admin).unwrap()).unwrap();
    for entry in config["users"].as_sequence_mut().unwrap() {
        entry["user"]["as"] = serde_yaml::Value::from(user);
    }
    let path = std::env::temp_dir().join(format!("{user}.kubeconfig"));
    std::fs::write(&path, serde_yaml::to_string(&config).unwrap()).unwrap();
    path
}

/// RBAC that lets the operator list everything but SecretRotations keeps that one cache from
/// loading: the operator is never ready and still stops promptly on SIGTERM.
#[tokio::test(flavor = "multi_thread")]
async fn binary_stops_without_loaded_cache() {
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};

    let client = client().await;
    let id = unique_id("binrbac");
    let user = format!("{id}-operator");
    let role: ClusterRole = serde_json::from_value(json!({
        "metadata": { "name": id, "labels": { TEST_LABEL: id } },
        "rules": [
            {
                "apiGroups": ["", "apps", "batch", "networking.k8s.io", "events.k8s.io"],
                "resources": ["*"],
                "verbs": ["*"],
            },
            {
                "apiGroups": ["security.medianest.io"],
                "resources": ["medianestsecuritypolicies", "medianestsecuritypolicies/status"],
                "verbs": ["*"],
            },
        ],
    }))
    .unwrap();
    let binding: ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": { "name": id, "labels": { TEST_LABEL: id } },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": id },
        "subjects": [{ "apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user }],
    }))
    .unwrap();
    let roles = Api::<ClusterRole>::all(client.clone());
    let bindings = Api::<ClusterRoleBinding>::all(client.clone());
    roles.create(&Default::default(), &role).await.unwrap();
    bindings
        .create(&Default::default(), &binding)
        .await
        .unwrap();
    let kubeconfig = impersonating_kubeconfig(&user);
    // A policy whose reconcile waits for the caches when the shutdown begins.
    let policy: MediaNestSecurityPolicy = serde_json::from_value(json!({
        "apiVersion": "security.medianest.io/v1alpha1",
        "kind": "MediaNestSecurityPolicy",
        "metadata": { "name": id, "labels": { TEST_LABEL: id } },
        "spec": { "namespaceSelector": { "matchLabels": { TEST_LABEL: id } } },
    }))
    .unwrap();
    let policies = Api::<MediaNestSecurityPolicy>::all(client.clone());
    policies.create(&Default::default(), &policy).await.unwrap();

    let port = free_port();
    let running = start_with(
        &id,
        port,
        &[("KUBECONFIG", kubeconfig.to_str().unwrap())],
        &[],
    );
    wait_ok(port, "/healthz", Duration::from_secs(30));
    // Every other list succeeds within this time on the local control plane.
    std::thread::sleep(Duration::from_secs(2));
    let readiness = get(port, "/readyz").map(|(status, _)| status);

    let logs = stop(running);
    let _ = policies.delete(&id, &Default::default()).await;
    let _ = bindings.delete(&id, &Default::default()).await;
    let _ = roles.delete(&id, &Default::default()).await;
    let _ = std::fs::remove_file(&kubeconfig);
    assert_eq!(
        readiness,
        Some(503),
        "ready although SecretRotations cannot be listed"
    );
    assert!(
        logs.lines().any(|line| line.contains("Watch failed")
            && line.contains("SecretRotation")
            && line.contains("forbidden")),
        "no warning names the forbidden list: {logs}"
    );
    assert!(
        logs.contains("Stopped before the cache of this kind loaded"),
        "{logs}"
    );
    assert!(!logs.contains("Caches loaded"), "{logs}");
    // The shutdown cut the reconcile's wait for the caches short.
    let (_, after_shutdown) = logs
        .split_once("Shutdown requested")
        .expect("the shutdown is logged");
    assert!(
        !after_shutdown.contains("Caches are still loading"),
        "{after_shutdown}"
    );
}

/// An API server that accepts connections and never responds: the probes are served and
/// SIGTERM stops the operator cleanly all the same.
#[tokio::test(flavor = "multi_thread")]
async fn silent_api_server_still_probed() {
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let connections = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let holder = connections.clone();
    std::thread::spawn(move || {
        for stream in silent.incoming().flatten() {
            holder.lock().unwrap().push(stream);
        }
    });
    let id = unique_id("binsilent");
    let kubeconfig = std::env::temp_dir().join(format!("{id}.kubeconfig"));
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: silent\n  cluster:\n    \
             server: https://127.0.0.1:{silent_port}\n    insecure-skip-tls-verify: true\n\
             users:\n- name: silent\n  user:\n    token: unused\ncontexts:\n- name: silent\n  \
             context:\n    cluster: silent\n    user: silent\ncurrent-context: silent\n"
        ),
    )
    .unwrap();

    let port = free_port();
    let running = start_with(
        &id,
        port,
        &[("KUBECONFIG", kubeconfig.to_str().unwrap())],
        &[],
    );
    wait_ok(port, "/healthz", Duration::from_secs(10));
    assert_eq!(get(port, "/readyz").map(|(status, _)| status), Some(503));

    let logs = stop(running);
    let _ = std::fs::remove_file(&kubeconfig);
    assert!(logs.contains("Shutdown requested"), "{logs}");
    assert!(logs.contains("\"Stopped\""), "{logs}");
    assert!(
        !connections.lock().unwrap().is_empty(),
        "the operator never connected"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_namespace_warned() {
    let _client = client().await;
    let id = unique_id("binns");
    let port = free_port();
    let namespace = format!("{id}-missing");
    let running = start_with(&id, port, &[], &["--namespace", &namespace]);
    wait_ok(port, "/readyz", Duration::from_secs(30));

    let logs = stop(running);
    let warning = logs
        .lines()
        .find(|line| line.contains("namespace does not exist"))
        .unwrap_or_else(|| panic!("no warning about the missing namespace: {logs}"));
    assert!(warning.contains(&namespace), "{warning}");
    assert!(warning.contains("\"level\":\"WARN\""), "{warning}");
}

#[tokio::test(flavor = "multi_thread")]
async fn busy_listen_port_fails_startup() {
    let _client = client().await;
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let Running { mut child, logs } = start("binary-busy-port", port);
    let started = Instant::now();
    let exit = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(15) {
            let _ = child.kill();
            panic!("the operator kept running without its probe and metrics server");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!exit.success());
    let logs = logs.join().unwrap();
    assert!(
        logs.contains(&port.to_string()),
        "the error names the address: {logs}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn generated_values_never_logged() {
    let client = client().await;
    let id = unique_id("binlog");
    let namespace = format!("{id}-app");
    create_namespace(&client, &namespace, &id, &[]).await;
    let port = free_port();
    let running = start_with(
        &id,
        port,
        &[],
        &["--min-rotation-interval", "1s", "--log-filter", "trace"],
    );

    let rotation: medianest_operator::api::SecretRotation = serde_json::from_value(json!({
        "apiVersion": "security.medianest.io/v1alpha1",
        "kind": "SecretRotation",
        "metadata": { "name": "tokens", "namespace": namespace, "labels": { TEST_LABEL: id } },
        "spec": {
            "secretName": "tokens",
            "keys": [
                { "name": "jwt", "generator": { "jwtHmac": { "algorithm": "HS512", "length": 64, "encoding": "hex" } } },
                { "name": "password", "generator": { "password": { "length": 40 } } },
                { "name": "signing", "generator": { "keyPair": { "algorithm": "ES256" } } },
            ],
            "interval": "2s",
            "previous": { "keep": true, "gracePeriod": "1s" },
        },
    }))
    .unwrap();
    Api::<medianest_operator::api::SecretRotation>::namespaced(client.clone(), &namespace)
        .create(&Default::default(), &rotation)
        .await
        .unwrap();

    // Collect every value the Secret holds across a few rotations.
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(client.clone(), &namespace);
    let mut values: Vec<Vec<u8>> = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(8) {
        if let Ok(Some(secret)) = secrets.get_opt("tokens").await {
            for value in secret.data.unwrap_or_default().into_values() {
                if !values.contains(&value.0) {
                    values.push(value.0);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let logs = stop(running);

    assert!(
        values.len() >= 6,
        "several rotations happened: {} values",
        values.len()
    );
    assert!(logs.lines().count() > 100, "trace logging was on");
    for value in &values {
        let text = String::from_utf8_lossy(value).into_owned();
        // Search for a distinctive piece: the whole value, and its base64 form as the API
        // server sends it.
        let needle: String = text
            .lines()
            .filter(|line| !line.starts_with("-----"))
            .collect::<String>();
        let needle = needle.chars().take(40).collect::<String>();
        assert!(
            !logs.contains(&needle),
            "a generated value appears in the logs"
        );
        let encoded = STANDARD.encode(value);
        assert!(
            !logs.contains(&encoded[..encoded.len().min(40)]),
            "a generated value appears base64-encoded in the logs"
        );
    }

    let _ = Api::<medianest_operator::api::SecretRotation>::namespaced(client.clone(), &namespace)
        .delete("tokens", &Default::default())
        .await;
    common::delete_namespaces(&client, &[namespace]).await;
}
