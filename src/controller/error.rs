//! Errors of the reconcilers, each with a fixed category for Event reasons and metric labels.

/// A failed reconcile step.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to apply NetworkPolicy {namespace}/{name}")]
    ApplyNetworkPolicy {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },

    #[error("failed to read NetworkPolicy {namespace}/{name}")]
    ReadNetworkPolicy {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },

    #[error("failed to delete NetworkPolicy {namespace}/{name}")]
    DeleteNetworkPolicy {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },

    #[error("failed to apply the hardening of {workload}")]
    ApplyWorkload {
        workload: String,
        #[source]
        source: kube::Error,
    },

    #[error("failed to write the Pod Security labels of namespace {namespace}")]
    ApplyNamespaceLabels {
        namespace: String,
        #[source]
        source: kube::Error,
    },

    #[error("failed to read Secret {secret}")]
    ReadSecret {
        secret: String,
        #[source]
        source: kube::Error,
    },

    #[error("failed to write Secret {secret}")]
    ApplySecret {
        secret: String,
        #[source]
        source: kube::Error,
    },

    #[error("failed to write ConfigMap {config_map}")]
    ApplyConfigMap {
        config_map: String,
        #[source]
        source: kube::Error,
    },

    #[error("failed to generate the {what} key: {message}")]
    GenerateKey { what: String, message: String },

    #[error("failed to write the status of {kind} {name}")]
    PatchStatus {
        kind: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },

    #[error("{kind} has no {field}")]
    MissingField {
        kind: &'static str,
        field: &'static str,
    },
}

impl Error {
    /// A short, fixed name for the failure, used as the Event reason and metric label.
    pub fn category(&self) -> &'static str {
        match self {
            Error::ApplyNetworkPolicy { .. } => "ApplyNetworkPolicyFailed",
            Error::DeleteNetworkPolicy { .. } => "DeleteNetworkPolicyFailed",
            Error::ReadNetworkPolicy { .. } => "ReadNetworkPolicyFailed",
            Error::PatchStatus { .. } => "PatchStatusFailed",
            Error::ApplyWorkload { .. } => "ApplyWorkloadFailed",
            Error::ApplyNamespaceLabels { .. } => "ApplyNamespaceLabelsFailed",
            Error::ReadSecret { .. } => "ReadSecretFailed",
            Error::ApplySecret { .. } => "ApplySecretFailed",
            Error::ApplyConfigMap { .. } => "ApplyConfigMapFailed",
            Error::GenerateKey { .. } => "GenerateKeyFailed",
            Error::MissingField { .. } => "InvalidObject",
        }
    }

    /// Returns whether retrying cannot help until the object changes: the API server rejected
    /// the request as invalid or forbidden rather than failing to serve it.
    pub fn is_permanent(&self) -> bool {
        let source = match self {
            Error::ApplyNetworkPolicy { source, .. }
            | Error::DeleteNetworkPolicy { source, .. }
            | Error::ReadNetworkPolicy { source, .. }
            | Error::ApplyWorkload { source, .. }
            | Error::ApplyNamespaceLabels { source, .. }
            | Error::ReadSecret { source, .. }
            | Error::ApplySecret { source, .. }
            | Error::ApplyConfigMap { source, .. }
            | Error::PatchStatus { source, .. } => source,
            Error::MissingField { .. } => return true,
            Error::GenerateKey { .. } => return false,
        };
        matches!(source, kube::Error::Api(status) if status.code == 422 || status.code == 400)
    }
}

/// Formats an error with its sources, as `outer: inner: root`, cut to `max` bytes.
///
/// An error response of the API server is shown by its message, not as a debug dump.
pub fn chain(error: &(dyn std::error::Error + 'static), max: usize) -> String {
    let mut parts = vec![describe(error)];
    let mut source = error.source();
    while let Some(cause) = source {
        parts.push(describe(cause));
        source = cause.source();
    }
    parts.dedup();
    crate::api::condition::truncate(&parts.join(": "), max)
}

fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    match error.downcast_ref::<kube::Error>() {
        Some(kube::Error::Api(status)) => {
            format!("{} ({} {})", status.message, status.code, status.reason)
        }
        _ => error.to_string(),
    }
}
