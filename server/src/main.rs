//! `kiseki-server`: a Kiseki storage node. Today it runs a single-node cluster: per-tenant shard
//! logs (openraft, one voter), the chunk store, the namespace, an embedded key manager (or a
//! remote `kiseki-keyserver`) and Prometheus metrics. Protocol gateways (S3, NFS) join here as
//! they land.
//!
//! This binary owns process wiring only: config, logging, listeners, start-up and shutdown.
//! Semantics live in the library crates; it must never hold protocol logic of its own.

mod access_keys;
mod config;
mod metrics;
mod node;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use kiseki_types::TenantId;
use tokio::sync::watch;

use crate::access_keys::AccessKeys;
use crate::config::{DevTenantConfig, ServerConfig};

/// Kiseki storage node: shard logs, encrypted chunk store and the shared namespace that every
/// gateway serves.
#[derive(Debug, Parser)]
#[command(
    version,
    after_help = "Examples:\n  \
        kiseki-server --config site-configs/dev-single-node.yaml\n  \
        kiseki-server --data-dir /var/lib/kiseki --dev\n\n\
        Logging: KISEKI_LOG (tracing filter, default \"info\").\n\
        Stop with SIGTERM or Ctrl-C: writes in flight are answered, logs closed cleanly."
)]
struct Args {
    /// Site YAML config (the server's part). Flags below override it.
    #[arg(long, short, env = "KISEKI_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    /// Data directory (shard logs, chunks, keys, credentials). Required without --config.
    #[arg(long, env = "KISEKI_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,

    /// Address of the Prometheus /metrics endpoint.
    #[arg(long, env = "KISEKI_METRICS_LISTEN", value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,

    /// `embedded`, or the URL of a kiseki-keyserver (e.g. http://127.0.0.1:7400).
    #[arg(long, env = "KISEKI_KEYSERVER", value_name = "URL")]
    keyserver: Option<String>,

    /// Create the development tenant (id 1) with an S3 access key, and print the key.
    #[arg(long)]
    dev: bool,
}

fn load_config(args: &Args) -> anyhow::Result<ServerConfig> {
    let mut config = match (&args.config, &args.data_dir) {
        (Some(path), _) => ServerConfig::load(path)?,
        (None, Some(dir)) => ServerConfig::with_data_dir(dir.clone()),
        (None, None) => anyhow::bail!("give --config FILE or --data-dir DIR (see --help)"),
    };
    if let Some(dir) = &args.data_dir {
        config.data_dir = dir.clone();
    }
    if let Some(listen) = args.metrics_listen {
        config.metrics_listen = listen;
    }
    if let Some(keyserver) = &args.keyserver {
        config.keyserver = keyserver.clone();
    }
    if args.dev && config.dev_tenant.is_none() {
        config.dev_tenant = Some(DevTenantConfig { id: 1, workload: "dev".into() });
    }
    config.check()?;
    Ok(config)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    kiseki_telemetry::init_tracing("KISEKI_LOG");
    let shutdown_signal = kiseki_telemetry::ShutdownSignal::install()?;
    let args = Args::parse();
    let config = load_config(&args)?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;

    let keys = node::key_source(&config)?;
    let namespace = Arc::new(node::namespace(&config, keys)?);
    let (shutdown_sender, shutdown) = watch::channel(false);
    let registry = metrics::start(Arc::clone(&namespace), shutdown.clone());
    let (metrics_address, metrics_task) =
        kiseki_telemetry::serve_metrics(config.metrics_listen, Arc::new(registry), shutdown.clone())
            .await
            .with_context(|| format!("binding the metrics listener {}", config.metrics_listen))?;

    println!("Kiseki single-node cluster");
    println!("  data dir:       {}", config.data_dir.display());
    println!("  key manager:    {}", config.keyserver);
    println!("  metrics:        http://{metrics_address}/metrics");
    if let Some(dev) = &config.dev_tenant {
        namespace.tenant(TenantId(dev.id)).await.context("opening the development tenant")?;
        let key = AccessKeys::load(&config.data_dir)?.ensure(dev.id, &dev.workload)?;
        println!("  dev tenant:     {} (workload {})", dev.id, dev.workload);
        println!("  S3 access key:  {}", key.access_key_id);
        println!("  S3 secret key:  {}", key.secret_access_key);
    }
    println!("  gateways:       S3, NFS and FUSE join as their issues land");
    println!("ready");
    tracing::info!(metrics = %metrics_address, "kiseki-server ready");

    shutdown_signal.wait().await;
    tracing::info!("shutting down");
    shutdown_sender.send_replace(true);
    namespace.shutdown().await;
    metrics_task.await.context("metrics task")?;
    tracing::info!("stopped");
    Ok(())
}
