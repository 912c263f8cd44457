//! The key server's Prometheus metrics, served at `/metrics` by `kiseki-telemetry`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    rpc: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    rpc: &'static str,
    code: String,
}

/// The key server's metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<RpcLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RpcLabels, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "kiseki_keyserver_requests",
            "Key service requests received, by RPC",
            requests.clone(),
        );
        registry.register(
            "kiseki_keyserver_request_errors",
            "Key service requests that failed, by RPC and gRPC status code",
            errors.clone(),
        );
        Metrics {
            registry,
            requests,
            errors,
        }
    }

    /// Counts a request to `rpc`.
    pub fn request(&self, rpc: &'static str) {
        self.requests.get_or_create(&RpcLabels { rpc }).inc();
    }

    /// Counts a failed request to `rpc`.
    pub fn error(&self, rpc: &'static str, code: tonic::Code) {
        let labels = ErrorLabels {
            rpc,
            code: format!("{code:?}"),
        };
        self.errors.get_or_create(&labels).inc();
    }
}

impl kiseki_telemetry::MetricsSource for Metrics {
    fn encode(&self) -> Result<String, std::fmt::Error> {
        kiseki_telemetry::MetricsSource::encode(&self.registry)
    }
}
