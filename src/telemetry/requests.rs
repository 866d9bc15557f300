//! A client layer that counts the operator's own API requests by HTTP method.
//!
//! Other controllers write to the same objects, so resourceVersions cannot show whether the
//! operator itself wrote. This count can: a resync that changes nothing must leave the count
//! of mutating requests where it was.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use http::{Method, Request};
use tower::{Layer, Service};

/// Counts of requests sent, shared between the client and whoever reads them.
#[derive(Clone, Debug, Default)]
pub struct RequestCounter {
    inner: Arc<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    reads: AtomicU64,
    mutating: AtomicU64,
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

    fn record(&self, method: &Method) {
        let counter = if is_mutating(method) {
            &self.inner.mutating
        } else {
            &self.inner.reads
        };
        counter.fetch_add(1, Ordering::Relaxed);
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
        self.counter.record(request.method());
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
    fn counter_records_by_class() {
        let counter = RequestCounter::default();
        counter.record(&Method::GET);
        counter.record(&Method::PATCH);
        counter.record(&Method::PATCH);
        assert_eq!(counter.reads(), 1);
        assert_eq!(counter.mutating(), 2);
    }
}
