//! `kiseki-keyserver`: the system key manager as a service. It keeps every tenant's addressing
//! key and DEK epochs wrapped by the tenant's KEK (built-in KMS backend for now) and hands the
//! unwrapped keyrings to storage servers over gRPC (`kiseki.keyserver.v1.KeyService`), with
//! Prometheus metrics on a separate listener.
//!
//! This binary owns process wiring only: flags, logging, listeners, shutdown. Key handling lives
//! in `kiseki-crypto`, wire types in `kiseki-proto`. It must never log key bytes, and never
//! listen beyond loopback until mutual TLS arrives (keys cross the gRPC channel unwrapped).

mod metrics;
mod service;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use kiseki_crypto::{InternalKms, KeyManager};
use tokio::sync::watch;

/// Kiseki key server: keeps tenant keys wrapped by tenant KEKs and serves them to storage
/// servers over gRPC.
#[derive(Debug, Parser)]
#[command(
    version,
    after_help = "Logging: KISEKI_KEYSERVER_LOG (tracing filter, default \"info\").\n\
                  Stop with SIGTERM or Ctrl-C: in-flight calls finish first."
)]
struct Args {
    /// Directory for the KMS master key, the sealed KEK store and the wrapped tenant keys
    /// (created with mode 0700 if missing).
    #[arg(long, env = "KISEKI_KEYSERVER_DATA_DIR", value_name = "DIR")]
    data_dir: PathBuf,

    /// Address of the gRPC key service. Keep it on loopback: keys cross it unencrypted until
    /// mutual TLS arrives.
    #[arg(
        long,
        env = "KISEKI_KEYSERVER_LISTEN",
        default_value = "127.0.0.1:7400",
        value_name = "ADDR"
    )]
    listen: SocketAddr,

    /// Address serving Prometheus metrics at /metrics.
    #[arg(
        long,
        env = "KISEKI_KEYSERVER_METRICS_LISTEN",
        default_value = "127.0.0.1:7401",
        value_name = "ADDR"
    )]
    metrics_listen: SocketAddr,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    kiseki_telemetry::init_tracing("KISEKI_KEYSERVER_LOG");
    let shutdown_signal = kiseki_telemetry::ShutdownSignal::install()?;
    let args = Args::parse();

    let kms = InternalKms::open(&args.data_dir.join("kms")).context("opening the internal KMS")?;
    let manager = KeyManager::open(&args.data_dir.join("keys"), Arc::new(kms))
        .context("opening the key manager")?;
    let metrics = Arc::new(metrics::Metrics::new());

    let (shutdown_sender, shutdown) = watch::channel(false);
    let (metrics_address, metrics_task) = kiseki_telemetry::serve_metrics(
        args.metrics_listen,
        Arc::clone(&metrics) as _,
        shutdown.clone(),
    )
    .await
    .with_context(|| format!("binding the metrics listener {}", args.metrics_listen))?;
    let (grpc_address, grpc_task) =
        service::serve(args.listen, Arc::new(manager), metrics, shutdown)
            .await
            .with_context(|| format!("binding the key service listener {}", args.listen))?;
    tracing::info!(grpc = %grpc_address, metrics = %metrics_address, "kiseki-keyserver ready");

    shutdown_signal.wait().await;
    tracing::info!("shutting down");
    shutdown_sender.send_replace(true);
    grpc_task
        .await
        .context("key service task")?
        .context("key service")?;
    metrics_task.await.context("metrics task")?;
    tracing::info!("stopped");
    Ok(())
}
