//! Operations plumbing every Kiseki daemon shares: `tracing` set-up, the Prometheus `/metrics`
//! endpoint (OpenMetrics text, served with hyper on its own listener) and waiting for SIGTERM.
//!
//! This crate knows no storage semantics and holds no data; daemons register their own metrics.

mod metrics_endpoint;

pub use metrics_endpoint::{serve_metrics, MetricsSource};

use anyhow::Context;

/// Logs to stderr, filtered by the environment variable `filter_variable` (a `tracing` filter
/// such as `info,kiseki_log=debug`; default `info`).
pub fn init_tracing(filter_variable: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env(filter_variable)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Resolves on SIGTERM or Ctrl-C (SIGINT).
pub async fn shutdown_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    tokio::select! {
        _ = terminate.recv() => {}
        result = tokio::signal::ctrl_c() => result.context("waiting for Ctrl-C")?,
    }
    Ok(())
}
