//! A client layer that counts the operator's own API requests by HTTP method.
//!
//! Other controllers write to the same objects, so resourceVersions cannot show whether the
//! operator itself wrote. This count can: a resync that changes nothing must leave the count
//! of mutating requests where it was.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use http::{Method, Request};
use tower::{Layer, Service};

/// Counts of requests sent, shared between the client and the code that reads them.
#[derive(Clone, Debug, Default)]
pub struct RequestCounter {
    inner: Arc<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    reads: AtomicU64,
    mutating: AtomicU64,
    mutating_by_resource: Mutex<BTreeMap<String, u64>>,
}

impl RequestCounter {
    /// Requests that may change state: POST, PUT, PATCH and DELETE.
    pub fn mutating(&self) -> u64 {
        self.inner.mutating.load(Ordering::Relaxed)
    }

    /// GET requests, including lists and watches.
    pub fn reads(&self) -> u64 {
        self.inner.reads.load(Ordering::Relaxed)
    }

    /// Mutating requests to one resource, such as `networkpolicies` or
    /// `medianestsecuritypolicies/status`.
    pub fn mutating_for(&self, resource: &str) -> u64 {
        let counts = self
            .inner
            .mutating_by_resource
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        counts.get(resource).copied().unwrap_or(0)
    }

    fn record(&self, method: &Method, path: &str) {
        if !is_mutating(method) {
            self.inner.reads.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.inner.mutating.fetch_add(1, Ordering::Relaxed);
        let mut counts = self
            .inner
            .mutating_by_resource
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *counts.entry(resource_of(path)).or_insert(0) += 1;
    }
}

/// Extracts the resource (and subresource) from an API path: `networkpolicies` from
/// `/apis/networking.k8s.io/v1/namespaces/a/networkpolicies/b`, `namespaces` from
/// `/api/v1/namespaces/a`, `medianestsecuritypolicies/status` from a status path.
pub fn resource_of(path: &str) -> String {
    let segments: Vec<&str> = path
        .split('?')
        .next()
        .unwrap_or("")
        .split('/')
        .filter(|segment| !segment.is_empty())
        .collect();
    // Skip "api/VERSION" or "apis/GROUP/VERSION".
    let rest = match segments.first() {
        Some(&"api") => segments.get(2..),
        Some(&"apis") => segments.get(3..),
        _ => None,
    };
    let Some(rest) = rest else {
        return String::new();
    };
    // A namespaced path is "namespaces/NAME/RESOURCE/..."; "namespaces/NAME" alone is a
    // Namespace itself.
    let rest = match rest {
        ["namespaces", _, resource @ ..] if !resource.is_empty() => resource,
        other => other,
    };
    match rest {
        [resource, _name, subresource, ..] => format!("{resource}/{subresource}"),
        [resource, ..] => resource.to_string(),
        [] => String::new(),
    }
}

/// Returns whether a request with `method` may change state on the API server.
pub fn is_mutating(method: &Method) -> bool {
    matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    )
}

/// The tower layer that feeds a [`RequestCounter`].
#[derive(Clone, Debug)]
pub struct RequestCountingLayer {
    counter: RequestCounter,
    metrics: Option<Arc<super::Metrics>>,
}

impl RequestCountingLayer {
    pub fn new(counter: RequestCounter, metrics: Option<Arc<super::Metrics>>) -> Self {
        Self { counter, metrics }
    }
}

impl<S> Layer<S> for RequestCountingLayer {
    type Service = RequestCounting<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestCounting {
            inner,
            counter: self.counter.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

/// The service produced by [`RequestCountingLayer`].
#[derive(Clone, Debug)]
pub struct RequestCounting<S> {
    inner: S,
    counter: RequestCounter,
    metrics: Option<Arc<super::Metrics>>,
}

impl<S, B> Service<Request<B>> for RequestCounting<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        self.counter.record(request.method(), request.uri().path());
        if let Some(metrics) = &self.metrics {
            metrics.record_api_request(request.method());
        }
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutating_methods_classified() {
        for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            assert!(is_mutating(&method), "{method}");
        }
        for method in [Method::GET, Method::HEAD, Method::OPTIONS] {
            assert!(!is_mutating(&method), "{method}");
        }
    }

    #[test]
    fn resource_extracted_from_path() {
        let cases = [
            (
                "/apis/networking.k8s.io/v1/namespaces/a/networkpolicies/b",
                "networkpolicies",
            ),
            (
                "/apis/networking.k8s.io/v1/namespaces/a/networkpolicies?fieldManager=x",
                "networkpolicies",
            ),
            ("/api/v1/namespaces/a", "namespaces"),
            ("/api/v1/namespaces", "namespaces"),
            ("/api/v1/namespaces/a/secrets/s", "secrets"),
            (
                "/apis/security.medianest.io/v1alpha1/medianestsecuritypolicies/p/status",
                "medianestsecuritypolicies/status",
            ),
            ("/apis/events.k8s.io/v1/namespaces/default/events", "events"),
            ("/version", ""),
        ];
        for (path, expected) in cases {
            assert_eq!(resource_of(path), expected, "{path}");
        }
    }

    #[test]
    fn counter_records_by_class() {
        let counter = RequestCounter::default();
        counter.record(&Method::GET, "/api/v1/namespaces");
        counter.record(
            &Method::PATCH,
            "/apis/networking.k8s.io/v1/namespaces/a/networkpolicies/b",
        );
        counter.record(
            &Method::PATCH,
            "/apis/networking.k8s.io/v1/namespaces/a/networkpolicies/c",
        );
        assert_eq!(counter.reads(), 1);
        assert_eq!(counter.mutating(), 2);
        assert_eq!(counter.mutating_for("networkpolicies"), 2);
        assert_eq!(counter.mutating_for("namespaces"), 0);
    }
}
