//! The Kubernetes client, with the request counter in its stack.

use std::sync::Arc;

use kube::client::ClientBuilder;
use kube::{Client, Config};

use crate::telemetry::{Metrics, RequestCounter, RequestCountingLayer};

/// Builds a client from `config` whose requests are counted by `counter` and, when given,
/// by the `api_requests` metric.
pub fn build(
    config: Config,
    counter: RequestCounter,
    metrics: Option<Arc<Metrics>>,
) -> Result<Client, kube::Error> {
    let builder = ClientBuilder::try_from(config)?;
    Ok(builder
        .with_layer(&RequestCountingLayer::new(counter, metrics))
        .build())
}

/// Loads the configuration from `KUBECONFIG`, `~/.kube/config` or the in-cluster service
/// account, in that order, and builds a counted client.
pub async fn infer(
    counter: RequestCounter,
    metrics: Option<Arc<Metrics>>,
) -> Result<Client, kube::Error> {
    let config = Config::infer().await.map_err(kube::Error::InferConfig)?;
    build(config, counter, metrics)
}
