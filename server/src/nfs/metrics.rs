//! NFS request counters in the server's Prometheus registry: `kiseki_nfs_requests_total`
//! by program, procedure and outcome status.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    program: &'static str,
    procedure: &'static str,
    status: &'static str,
}

/// Counters of NFS and MOUNT requests.
#[derive(Clone, Default)]
pub struct NfsMetrics {
    requests: Family<RequestLabels, Counter>,
}

impl NfsMetrics {
    /// Counters registered in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = NfsMetrics::default();
        registry.register(
            "nfs_requests",
            "NFS and MOUNT requests by procedure and outcome",
            metrics.requests.clone(),
        );
        metrics
    }

    /// Counts one request.
    pub fn count(&self, program: &'static str, procedure: &'static str, ok: bool) {
        let status = if ok { "ok" } else { "error" };
        self.requests
            .get_or_create(&RequestLabels {
                program,
                procedure,
                status,
            })
            .inc();
    }
}
