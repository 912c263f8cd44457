//! Operations plumbing every Kiseki daemon shares: `tracing` set-up, the Prometheus `/metrics`
//! endpoint (OpenMetrics text, served with hyper on its own listener) and waiting for SIGTERM.
//!
//! This crate knows no storage semantics and holds no data; daemons register their own metrics.

mod metrics_endpoint;

pub use metrics_endpoint::{serve_metrics, MetricsSource};

use anyhow::Context;

/// The log filter when none is given.
const DEFAULT_LOG_FILTER: &str = "info,s3s=warn,openraft=warn";

/// Logs to stderr, filtered by the environment variable `filter_variable` (a `tracing` filter
/// such as `info,kiseki_log=debug`). The default is `info`, with the S3 protocol library at
/// `warn` (it reports every client error, 403 or 404, at ERROR level, which is not a server
/// fault) and openraft at `warn` (its INFO lines narrate every election and start-up step).
pub fn init_tracing(filter_variable: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env(filter_variable)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// SIGTERM and SIGINT (Ctrl-C) handlers, installed when created: create it before telling anyone
/// the process is ready, so that a signal sent right after "ready" is never lost to the default
/// action (which would kill the process without a clean shutdown).
pub struct ShutdownSignal {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl ShutdownSignal {
    /// Installs the handlers (must be called inside a Tokio runtime).
    pub fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(ShutdownSignal {
            terminate: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            interrupt: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
        })
    }

    /// Resolves on the first SIGTERM or SIGINT.
    pub async fn wait(mut self) {
        tokio::select! {
            _ = self.terminate.recv() => {}
            _ = self.interrupt.recv() => {}
        }
    }
}
