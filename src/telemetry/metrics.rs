//! Prometheus metrics, all prefixed `medianest_`.

use std::time::Duration;

use http::Method;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ControllerLabels {
    controller: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    controller: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: &'static str,
}

/// The operator's metrics and the registry that exposes them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ControllerLabels, Counter>,
    failures: Family<FailureLabels, Counter>,
    duration: Family<ControllerLabels, Histogram>,
    drift_corrections: Family<KindLabels, Counter>,
    api_requests: Family<MethodLabels, Counter>,
    managed_objects: Family<KindLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("medianest");
        let reconciles = Family::<ControllerLabels, Counter>::default();
        let failures = Family::<FailureLabels, Counter>::default();
        let duration = Family::<ControllerLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 16))
        });
        let drift_corrections = Family::<KindLabels, Counter>::default();
        let api_requests = Family::<MethodLabels, Counter>::default();
        let managed_objects = Family::<KindLabels, Gauge>::default();

        registry.register(
            "reconciles",
            "Reconciles run, by controller",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_failures",
            "Reconciles that failed, by controller and reason",
            failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconcile, by controller",
            duration.clone(),
        );
        registry.register(
            "drift_corrections",
            "Generated objects restored after another client changed or deleted them, by kind",
            drift_corrections.clone(),
        );
        registry.register(
            "api_requests",
            "Requests the operator sent to the Kubernetes API, by HTTP method",
            api_requests.clone(),
        );
        registry.register(
            "managed_objects",
            "Objects the operator generated and keeps, by kind",
            managed_objects.clone(),
        );

        Self {
            registry,
            reconciles,
            failures,
            duration,
            drift_corrections,
            api_requests,
            managed_objects,
        }
    }

    pub fn record_reconcile(&self, controller: &'static str, elapsed: Duration) {
        let labels = ControllerLabels { controller };
        self.reconciles.get_or_create(&labels).inc();
        self.duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    pub fn record_failure(&self, controller: &'static str, reason: &'static str) {
        self.failures
            .get_or_create(&FailureLabels { controller, reason })
            .inc();
    }

    pub fn record_drift(&self, kind: &'static str, count: u64) {
        self.drift_corrections
            .get_or_create(&KindLabels { kind })
            .inc_by(count);
    }

    pub fn set_managed(&self, kind: &'static str, count: i64) {
        self.managed_objects
            .get_or_create(&KindLabels { kind })
            .set(count);
    }

    pub fn record_api_request(&self, method: &Method) {
        let method = match *method {
            Method::GET => "GET",
            Method::POST => "POST",
            Method::PUT => "PUT",
            Method::PATCH => "PATCH",
            Method::DELETE => "DELETE",
            _ => "OTHER",
        };
        self.api_requests
            .get_or_create(&MethodLabels { method })
            .inc();
    }

    /// Renders every metric in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_includes_prefixed_families() {
        let metrics = Metrics::new();
        metrics.record_reconcile("policy", Duration::from_millis(3));
        metrics.record_failure("policy", "ApplyFailed");
        metrics.record_api_request(&Method::PATCH);
        let text = metrics.encode();
        assert!(
            text.contains("medianest_reconciles_total{controller=\"policy\"} 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "medianest_reconcile_failures_total{controller=\"policy\",reason=\"ApplyFailed\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("medianest_api_requests_total{method=\"PATCH\"} 1"),
            "{text}"
        );
    }
}
