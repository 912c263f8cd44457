//! Calls to the native service counted by method (`kiseki_native_requests_total{method}`):
//! what a client's workload costs the server, call by call.

use std::convert::Infallible;
use std::task::{Context, Poll};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tonic::body::Body;
use tonic::codegen::{http, Service};
use tonic::server::NamedService;

/// The native service's methods, as they appear in the request path.
const METHODS: &[&str] = &[
    "Hello",
    "GetTenantKeys",
    "Lookup",
    "GetAttr",
    "Open",
    "SetAttr",
    "ReadDir",
    "Create",
    "Mkdir",
    "Symlink",
    "ReadLink",
    "Link",
    "Unlink",
    "Rmdir",
    "Rename",
    "Truncate",
    "Write",
    "Layout",
    "GetMetadata",
    "SetMetadata",
    "StatFs",
    "PutChunk",
    "GetChunk",
    "OpenBulkSession",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabel {
    method: &'static str,
}

/// The per-method counters, and what the service found wrong with the chunks it serves.
#[derive(Clone, Default)]
pub struct RequestMetrics {
    requests: Family<MethodLabel, Counter>,
    /// Frames a client could not open whose copy here then failed its checksum.
    pub damaged_chunks: Counter,
}

impl RequestMetrics {
    /// Registers the counters.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = RequestMetrics::default();
        registry.register(
            "native_requests",
            "Native service calls received, by method",
            metrics.requests.clone(),
        );
        registry.register(
            "native_damaged_chunks",
            "Chunk frames a native client could not open whose copy on this server then failed \
             its checksum (damaged on disk)",
            metrics.damaged_chunks.clone(),
        );
        metrics
    }

    fn count(&self, path: &str) {
        let name = path.rsplit('/').next().unwrap_or_default();
        // Only the service's own names become labels: a client cannot grow the family.
        let method = METHODS
            .iter()
            .find(|known| **known == name)
            .copied()
            .unwrap_or("unknown");
        self.requests.get_or_create(&MethodLabel { method }).inc();
    }
}

/// Wraps the generated service: counts each call, then hands it on unchanged.
#[derive(Clone)]
pub struct Counted<S> {
    inner: S,
    metrics: RequestMetrics,
}

impl<S> Counted<S> {
    pub fn new(inner: S, metrics: RequestMetrics) -> Self {
        Counted { inner, metrics }
    }
}

impl<S: NamedService> NamedService for Counted<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<Body>> for Counted<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        self.metrics.count(request.uri().path());
        self.inner.call(request)
    }
}
