//! Command line of the MediaNest security operator.

use std::io::Read;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::{Parser, Subcommand};

use medianest_operator::api::SecretRotation;
use medianest_operator::api::duration::parse_duration;
use medianest_operator::controller::rotation::ROTATE_ANNOTATION;
use medianest_operator::controller::{self, Settings};
use medianest_operator::render::{self, Source};
use medianest_operator::server::{self, ServerState};
use medianest_operator::telemetry::logging::{self, LogFormat};
use medianest_operator::telemetry::{Metrics, RequestCounter};
use medianest_operator::{client, crd};

#[derive(Parser)]
#[command(
    name = "medianest-operator",
    version,
    about = "Zero-trust security operator for MediaNest clusters"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controllers against the cluster in KUBECONFIG, or in-cluster.
    Run(RunArgs),
    /// Print every CustomResourceDefinition as a YAML stream.
    Crds,
    /// Print the objects the controller would write for the custom resources and cluster
    /// objects in the input files.
    Render(RenderArgs),
    /// Ask for an immediate rotation of a SecretRotation's Secret.
    Rotate(RotateArgs),
    /// Print the version.
    Version,
}

#[derive(clap::Args)]
struct RotateArgs {
    /// Name of the SecretRotation.
    name: String,

    /// Namespace of the SecretRotation.
    #[arg(short = 'n', long, default_value = "default")]
    namespace: String,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Namespace the operator runs in. Policies never govern it unless they list it.
    #[arg(long, env = "POD_NAMESPACE", default_value = "medianest-system")]
    namespace: String,

    /// Interval of the periodic reconcile of every resource, a safety net behind the
    /// watches (duration such as 10m or 1h).
    #[arg(long, default_value = "10m", value_parser = parse_interval)]
    resync_interval: Duration,

    /// Reconcile only the MediaNestSecurityPolicies matching this label selector, for
    /// example shard=a. All of them by default.
    #[arg(long)]
    policy_selector: Option<String>,

    /// Shortest certificate lifetime a policy may ask for (duration such as 1h). Tests lower
    /// it to exercise renewal and CA rotation in seconds.
    #[arg(long, default_value = "1h", value_parser = parse_interval)]
    min_certificate_lifetime: Duration,

    /// Shortest rotation interval a SecretRotation may ask for (duration such as 1h). Tests
    /// lower it to rotate in seconds.
    #[arg(long, default_value = "1h", value_parser = parse_interval)]
    min_rotation_interval: Duration,

    /// Consumer restarts under way at once in one namespace after Secret rotations.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..))]
    max_concurrent_restarts: u16,

    /// Address of the HTTP server for /healthz, /readyz and /metrics.
    #[arg(long, default_value = "0.0.0.0:8080")]
    listen: SocketAddr,

    /// Log format.
    #[arg(long, value_enum, default_value = "json")]
    log_format: LogFormat,

    /// Log filter in RUST_LOG syntax, for example info or medianest_operator=debug.
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    log_filter: String,
}

#[derive(clap::Args)]
struct RenderArgs {
    /// YAML files holding custom resources and the Namespaces they act on; - reads
    /// standard input.
    #[arg(short = 'f', long = "filename", required = true)]
    files: Vec<String>,

    /// Namespace the operator would run in; it is never governed unless a policy lists it.
    #[arg(long, default_value = "medianest-system")]
    namespace: String,

    /// Print freshly generated values in the Secrets of SecretRotations instead of redacted
    /// placeholders.
    #[arg(long)]
    show_secrets: bool,

    /// Shortest rotation interval a SecretRotation may request (duration such as 1h), as the
    /// operator's flag of the same name sets it.
    #[arg(long, default_value = "1h", value_parser = parse_interval)]
    min_rotation_interval: Duration,
}

fn parse_interval(text: &str) -> Result<Duration, String> {
    let interval = parse_duration(text).map_err(|error| error.to_string())?;
    if interval.is_zero() {
        return Err("the interval must be greater than zero".to_string());
    }
    Ok(interval)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // One TLS crypto provider for the whole process: the Kubernetes client, certificate
    // issuance and verification all use aws-lc-rs, so none picks another at start-up.
    if rustls::crypto::aws_lc_rs::default_provider()
        .install_default()
        .is_err()
    {
        eprintln!("error: another TLS crypto provider was installed first");
        return ExitCode::FAILURE;
    }
    match cli.command {
        Command::Run(args) => run(args),
        Command::Crds => print_crds(),
        Command::Render(args) => render_files(args),
        Command::Rotate(args) => request_rotation(args),
        Command::Version => {
            println!("medianest-operator {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
    }
}

/// Sets the rotate annotation of a SecretRotation to the current time.
fn request_rotation(args: RotateArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: failed to start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let client = client::infer(RequestCounter::default(), None)
            .await
            .map_err(|error| format!("failed to build the Kubernetes client: {error}"))?;
        let api: kube::Api<SecretRotation> = kube::Api::namespaced(client, &args.namespace);
        let requested = k8s_openapi::jiff::Timestamp::now().to_string();
        let patch =
            serde_json::json!({ "metadata": { "annotations": { ROTATE_ANNOTATION: requested } } });
        api.patch(
            &args.name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .map_err(|error| match error {
            kube::Error::Api(status) if status.code == 404 => {
                format!("SecretRotation {}/{} not found", args.namespace, args.name)
            }
            other => format!(
                "failed to request the rotation of {}/{}: {other}",
                args.namespace, args.name
            ),
        })?;
        Ok::<String, String>(requested)
    });
    match result {
        Ok(requested) => {
            println!(
                "Requested a rotation of {}/{} at {requested}",
                args.namespace, args.name
            );
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn print_crds() -> ExitCode {
    match crd::to_yaml() {
        Ok(yaml) => {
            print!("{yaml}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: failed to encode the CustomResourceDefinitions: {error}");
            ExitCode::FAILURE
        }
    }
}

fn render_files(args: RenderArgs) -> ExitCode {
    let mut sources = Vec::new();
    for file in &args.files {
        let text = if file == "-" {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).map(|_| text)
        } else {
            std::fs::read_to_string(file)
        };
        match text {
            Ok(text) => sources.push(Source {
                name: if file == "-" {
                    "<stdin>".into()
                } else {
                    file.clone()
                },
                text,
            }),
            Err(error) => {
                eprintln!("error: failed to read {file}: {error}");
                return ExitCode::FAILURE;
            }
        }
    }

    let input = match render::parse(&sources, args.min_rotation_interval) {
        Ok(input) => input,
        Err(errors) => {
            for error in errors {
                eprintln!("error: {error}");
            }
            return ExitCode::FAILURE;
        }
    };
    match render::render_with(&input, &args.namespace, args.show_secrets) {
        Ok((yaml, notes)) => {
            for note in notes {
                eprintln!("note: {note}");
            }
            print!("{yaml}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: RunArgs) -> ExitCode {
    if let Err(error) = logging::init(args.log_format, &args.log_filter) {
        eprintln!("error: {error}");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: failed to start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run_operator(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = %error, "Operator stopped");
            ExitCode::FAILURE
        }
    }
}

async fn run_operator(args: RunArgs) -> Result<(), String> {
    // Registered first, so that a SIGTERM during start-up is a graceful shutdown too.
    let terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|error| format!("failed to register the SIGTERM handler: {error}"))?;
    let listener = server::bind(args.listen).await.map_err(|error| {
        format!(
            "failed to listen on {} for probes and metrics: {error}",
            args.listen
        )
    })?;
    let metrics = Arc::new(Metrics::new());
    let client = client::infer(RequestCounter::default(), Some(metrics.clone()))
        .await
        .map_err(|error| format!("failed to build the Kubernetes client: {error}"))?;
    let settings = Settings {
        operator_namespace: args.namespace,
        resync_interval: args.resync_interval,
        policy_selector: args.policy_selector,
        min_certificate_lifetime: args.min_certificate_lifetime,
        min_rotation_interval: args.min_rotation_interval,
        max_concurrent_restarts: usize::from(args.max_concurrent_restarts),
    };
    tracing::info!(
        namespace = %settings.operator_namespace,
        resync_interval_seconds = settings.resync_interval.as_secs(),
        version = env!("CARGO_PKG_VERSION"),
        "Starting"
    );

    // In the background, so that a slow API server delays neither the probes nor shutdown.
    tokio::spawn({
        let client = client.clone();
        let namespace = settings.operator_namespace.clone();
        async move { warn_if_namespace_missing(&client, &namespace).await }
    });

    let (caches, controllers) = controller::controllers(
        client,
        settings,
        metrics.clone(),
        shutdown_signal(terminate),
    );
    let ready = Arc::new(AtomicBool::new(false));
    let server_state = ServerState {
        metrics,
        ready: ready.clone(),
    };
    let server = tokio::spawn(async move {
        if let Err(error) = server::serve(listener, server_state).await {
            tracing::error!(error = %error, "Probe and metrics server stopped");
        }
    });
    tokio::spawn(async move {
        if caches.wait_until_ready().await {
            ready.store(true, Ordering::Relaxed);
            tracing::info!("Caches loaded");
        }
    });

    controllers.await;
    server.abort();
    tracing::info!("Stopped");
    Ok(())
}

/// Warns when the operator's own namespace does not exist: the generated CAs and the key of
/// the value hashes live there, so certificates and SecretRotations fail until it exists.
async fn warn_if_namespace_missing(client: &kube::Client, namespace: &str) {
    let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> =
        kube::Api::all(client.clone());
    match namespaces.get_metadata_opt(namespace).await {
        Ok(Some(_)) => {}
        Ok(None) => tracing::warn!(
            namespace,
            "The operator's namespace does not exist, so generated CAs and secrets cannot be \
             stored; create it (kubectl create namespace {namespace}) or pass --namespace"
        ),
        // Without permission to read namespaces the writes themselves report the problem.
        Err(error) => {
            tracing::debug!(namespace, error = %error, "Failed to check whether the operator's namespace exists")
        }
    }
}

/// Completes on SIGTERM or Ctrl-C.
async fn shutdown_signal(mut terminate: tokio::signal::unix::Signal) {
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("Shutdown requested");
}
