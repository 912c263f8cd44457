//! S3 request counters by operation and HTTP status, in the server's Prometheus registry.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    operation: String,
    status: u16,
}

/// The gateway's counters.
#[derive(Clone, Default)]
pub struct S3Metrics {
    requests: Family<RequestLabels, Counter>,
}

impl S3Metrics {
    /// Registers the counters (`kiseki_s3_requests_total{operation, status}`).
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = S3Metrics::default();
        registry.register(
            "s3_requests",
            "S3 requests answered, by operation and HTTP status",
            metrics.requests.clone(),
        );
        metrics
    }

    /// Counts one answered request.
    pub fn record(&self, operation: &str, status: u16) {
        self.requests
            .get_or_create(&RequestLabels {
                operation: operation.to_owned(),
                status,
            })
            .inc();
    }
}
