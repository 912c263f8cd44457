//! `kiseki-server`: a Kiseki storage node. Today it runs a single-node cluster: per-tenant shard
//! logs (openraft, one voter), the chunk store, the namespace, an embedded key manager (or a
//! remote `kiseki-keyserver`) and Prometheus metrics. Protocol gateways (S3, NFS) join here as
//! they land.
//!
//! This binary owns process wiring only: config, logging, listeners, start-up and shutdown.
//! Semantics live in the library crates; it must never hold protocol logic of its own.

mod access_keys;
mod cluster;
mod config;
mod dev_mount;
mod metrics;
mod native;
mod nfs;
mod node;
mod placements;
mod pools;
mod s3;

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
    #[arg(long, short, env = "KISEKI_CONFIG", value_name = "FILE", global = true)]
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

    /// Address of the native client service (kiseki-client-fuse connects here).
    #[arg(long, env = "KISEKI_NATIVE_LISTEN", value_name = "ADDR")]
    native_listen: Option<SocketAddr>,

    /// Address of the native bulk channel: sealed chunk frames over plain TCP, on connections
    /// proven with a session granted over TLS (port 0 picks a free one).
    #[arg(long, env = "KISEKI_NATIVE_BULK_LISTEN", value_name = "ADDR")]
    native_bulk_listen: Option<SocketAddr>,

    /// PEM certificate chain of the native client service (default: issued from a development
    /// CA kept in DATA_DIR/tls/, whose ca.pem clients pass as --ca).
    #[arg(
        long,
        env = "KISEKI_NATIVE_TLS_CERT",
        value_name = "FILE",
        requires = "native_tls_key"
    )]
    native_tls_cert: Option<PathBuf>,

    /// PEM private key of --native-tls-cert.
    #[arg(
        long,
        env = "KISEKI_NATIVE_TLS_KEY",
        value_name = "FILE",
        requires = "native_tls_cert"
    )]
    native_tls_key: Option<PathBuf>,

    /// Serve the native client service over plain TCP (tests and trusted links only).
    #[arg(long, conflicts_with = "native_tls_cert")]
    native_insecure_plaintext: bool,

    /// Address of the S3 endpoint (default 127.0.0.1:9000; port 0 picks a free port).
    #[arg(long, env = "KISEKI_S3_LISTEN", value_name = "ADDR")]
    s3_listen: Option<SocketAddr>,

    /// Address serving NFSv3 and MOUNT (with --dev and no exports configured: export `/dev`,
    /// the development tenant's root, to 127.0.0.0/8).
    #[arg(long, env = "KISEKI_NFS_LISTEN", value_name = "ADDR")]
    nfs_listen: Option<SocketAddr>,

    /// Create the development tenant (id 1) with an S3 access key, and print the key.
    #[arg(long)]
    dev: bool,

    /// Development: mount the dev tenant's namespace here with kiseki-client-fuse (found next
    /// to this binary) once the server is ready; unmounted at shutdown.
    #[arg(long, value_name = "DIR")]
    dev_mount: Option<PathBuf>,

    /// Run one repair pass over the erasure-coded pools instead of serving.
    #[command(subcommand)]
    command: Option<RepairCommand>,
}

/// Offline repair of erasure-coded pools (best with the server stopped). In a cluster the pass
/// covers every node's devices of the pool (through the peers) and may run next to the node.
#[derive(Debug, clap::Subcommand)]
enum RepairCommand {
    /// Read and verify every fragment; regenerate corrupt and missing ones from parity.
    Scrub,
    /// Regenerate missing fragments (a lost or replaced device) until full redundancy returns;
    /// in a cluster also send this node's plain-pool chunks to their shard's other replicas.
    Rebuild,
    /// Cluster administration (CA, node certificates, shard membership).
    #[command(flatten)]
    Cluster(cluster::admin::Command),
    /// Print the recorded placement (node, device) of every fragment of an object's chunks
    /// (opens the node's shard logs: run it with the node stopped).
    Placement(placements::PlacementQuery),
}

/// Runs a repair command; fails when a chunk cannot be recovered.
async fn repair(
    command: &RepairCommand,
    pools: &pools::Pools,
    cluster: Option<&cluster::ClusterNode>,
) -> anyhow::Result<()> {
    let verify = matches!(command, RepairCommand::Scrub);
    let mut lost = 0;
    for (pool, report) in pools.repair_all(verify).await? {
        println!(
            "pool {pool}: {} chunks, {} healthy, {} fragments checked, {} missing, {} corrupt, {} rebuilt ({} bytes), {} unrecoverable{}",
            report.chunks_scanned,
            report.chunks_healthy,
            report.fragments_checked,
            report.fragments_missing,
            report.fragments_corrupt,
            report.fragments_rebuilt,
            report.bytes_rebuilt,
            report.chunks_unrecoverable,
            if report.clean() { " (clean)" } else { "" },
        );
        for (tenant, chunk, reason) in &report.lost {
            println!("  lost: tenant {tenant} chunk {chunk}: {reason}");
        }
        for device in &report.devices_unreachable {
            println!("  unreachable: {device}");
        }
        lost += report.chunks_unrecoverable;
    }
    if let (Some(cluster), RepairCommand::Rebuild) = (cluster, command) {
        // Whole chunk copies of plain pools: back to every replica of their shard.
        let report = cluster
            .recopy(Arc::clone(&pools.store), pools.directories.clone())
            .await?;
        println!(
            "chunk copies: {} chunks, {} copies sent to replicas, {} failed",
            report.chunks_scanned, report.copies_sent, report.copies_failed
        );
        for failure in &report.failures {
            println!("  failed: {failure}");
        }
    }
    anyhow::ensure!(lost == 0, "{lost} chunks cannot be recovered");
    Ok(())
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
    if let Some(listen) = args.s3_listen {
        config.s3_listen = listen;
    }
    if let Some(listen) = args.native_bulk_listen {
        config.native_bulk_listen = Some(listen);
    }
    if let Some(listen) = args.native_listen {
        config.native_listen = listen;
    }
    if let (Some(cert), Some(key)) = (&args.native_tls_cert, &args.native_tls_key) {
        config.native_tls.cert = Some(cert.clone());
        config.native_tls.key = Some(key.clone());
        config.native_tls.insecure_plaintext = false;
    }
    if args.native_insecure_plaintext {
        config.native_tls = native::tls::NativeTlsConfig {
            insecure_plaintext: true,
            ..Default::default()
        };
    }
    if let Some(keyserver) = &args.keyserver {
        config.keyserver = keyserver.clone();
    }
    if let Some(mount_point) = &args.dev_mount {
        config.dev_mount = Some(dev_mount::DevMountConfig::Path(mount_point.clone()));
    }
    if args.dev && config.dev_tenant.is_none() {
        config.dev_tenant = Some(DevTenantConfig {
            id: 1,
            workload: "dev".into(),
        });
    }
    if let Some(listen) = args.nfs_listen {
        config
            .nfs
            .get_or_insert_with(|| nfs::NfsConfig::with_listen(listen))
            .listen = listen;
        if let (Some(nfs), Some(dev)) = (config.nfs.as_mut(), &config.dev_tenant) {
            if nfs.exports.is_empty() {
                nfs.exports
                    .push(nfs::config::ExportConfig::development(dev.id));
            }
        }
    }
    config.check()?;
    Ok(config)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    kiseki_chunk::keep_chunk_buffers_in_heap();
    kiseki_telemetry::init_tracing("KISEKI_LOG");
    let shutdown_signal = kiseki_telemetry::ShutdownSignal::install()?;
    let mut args = Args::parse();
    match args.command.take() {
        Some(RepairCommand::Cluster(command)) => {
            return cluster::admin::run(command, args.config.clone()).await;
        }
        other => args.command = other,
    }
    let config = load_config(&args)?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;

    let (keys, key_material) = node::key_source(&config)?;
    let cluster_node = node::cluster_node(&config)?;
    let pools = pools::Pools::open_in(
        &config,
        cluster_node
            .as_ref()
            .map(|node| node as &dyn pools::ClusterDevices),
    )?;
    if let Some(RepairCommand::Placement(query)) = &args.command {
        let (namespace, _) = node::storage(
            &config,
            keys,
            Arc::clone(&pools.store),
            cluster_node,
            pools.erasure_names(),
        )?;
        namespace.use_placement_journal(Arc::clone(&pools.journal));
        let shown = placements::show(&namespace, &pools, &config.data_dir, query).await;
        namespace.shutdown().await;
        return shown;
    }
    if let Some(command) = &args.command {
        let repaired = repair(command, &pools, cluster_node.as_ref()).await;
        // Fragments this pass moved: recorded by the node (now if it runs, else at its start).
        if let Some((file, count)) = placements::save_moved(&pools.journal, &config.data_dir)? {
            println!(
                "placements: {count} moved chunks left in {} for the node to record",
                file.display()
            );
        }
        return repaired;
    }
    let (namespace, cluster) = node::storage(
        &config,
        keys,
        Arc::clone(&pools.store),
        cluster_node,
        pools.erasure_names(),
    )?;
    let namespace = Arc::new(namespace);
    namespace.use_placement_journal(Arc::clone(&pools.journal));
    let (shutdown_sender, shutdown) = watch::channel(false);
    let cluster = node::serve_cluster(cluster, &namespace, &pools, shutdown.clone()).await?;
    let mut registry = metrics::start(Arc::clone(&namespace), shutdown.clone());
    let nfs_metrics = nfs::NfsMetrics::register(&mut registry);
    let s3_metrics = s3::S3Metrics::register(&mut registry);
    let bulk_metrics = native::bulk::BulkMetrics::register(&mut registry);
    let request_metrics = native::request_metrics::RequestMetrics::register(&mut registry);
    pools.register_metrics(&mut registry);
    if let Some(cluster) = &cluster {
        cluster.rereplication.register(&mut registry);
    }
    pools.start_scrubs(shutdown.clone());
    placements::start_recorder(
        Arc::clone(&pools.journal),
        Arc::clone(&namespace),
        config.data_dir.clone(),
        shutdown.clone(),
    );
    let (metrics_address, metrics_task) = kiseki_telemetry::serve_metrics(
        config.metrics_listen,
        Arc::new(registry),
        shutdown.clone(),
    )
    .await
    .with_context(|| format!("binding the metrics listener {}", config.metrics_listen))?;

    let native_security = native::tls::NativeSecurity::prepare(
        &config.native_tls,
        &config.data_dir,
        config.native_listen,
        config.cluster.as_ref().map_or(1, |cluster| cluster.node_id),
    )
    .context("setting up TLS of the native client service")?;
    let bulk = match config.native_bulk_listen {
        Some(listen) => Some(
            native::bulk::serve(
                listen,
                Arc::clone(&namespace),
                bulk_metrics,
                shutdown.clone(),
            )
            .await
            .with_context(|| format!("binding the native bulk listener {listen}"))?,
        ),
        None => None,
    };
    let (native_address, native_task) = native::serve(
        config.native_listen,
        &native_security,
        native::NativeBackends {
            namespace: Arc::clone(&namespace),
            data_dir: config.data_dir.clone(),
            keys: key_material,
            bulk: bulk.as_ref().map(|(sessions, _, _)| Arc::clone(sessions)),
            metrics: request_metrics,
        },
        shutdown.clone(),
    )
    .await
    .with_context(|| {
        format!(
            "binding the native client listener {}",
            config.native_listen
        )
    })?;

    let nfs = match &config.nfs {
        Some(nfs_config) => Some(
            nfs::NfsServer::start(
                nfs_config,
                &namespace,
                &config.data_dir,
                nfs_metrics,
                shutdown.clone(),
            )
            .await?,
        ),
        None => None,
    };

    let mut access_keys = AccessKeys::load(&config.data_dir)?;
    let dev_key = match &config.dev_tenant {
        Some(dev) => Some(access_keys.ensure(dev.id, &dev.workload)?),
        None => None,
    };
    let dev_client_cert = match &config.dev_tenant {
        Some(dev) => native_security
            .issue_dev_client_cert(&config.data_dir, dev.id, &dev.workload)
            .context("issuing the development client certificate")?,
        None => None,
    };
    let s3 = s3::start(
        config.s3_listen,
        Arc::clone(&namespace),
        Arc::new(access_keys),
        s3_metrics,
        shutdown.clone(),
    )
    .await?;

    match &cluster {
        Some(cluster) => println!(
            "Kiseki cluster node\n  cluster:        {}",
            cluster.description
        ),
        None => println!("Kiseki single-node cluster"),
    }
    println!("  data dir:       {}", config.data_dir.display());
    println!("  key manager:    {}", config.keyserver);
    println!("  metrics:        http://{metrics_address}/metrics");
    match &native_security {
        native::tls::NativeSecurity::Tls {
            dev_ca_path: Some(ca),
            ..
        } => {
            let identity = match &dev_client_cert {
                Some((cert, key)) => format!(" --cert {} --key {}", cert.display(), key.display()),
                None => String::new(),
            };
            println!("  native client:  https://{native_address} (kiseki-client-fuse --server https://{native_address} --ca {}{identity})", ca.display());
            println!("  native CA:      {}", ca.display());
        }
        native::tls::NativeSecurity::Tls { cert_path, .. } => {
            println!(
                "  native client:  https://{native_address} (TLS certificate {})",
                cert_path.display()
            );
        }
        native::tls::NativeSecurity::InsecurePlaintext => {
            println!("  native client:  http://{native_address} (PLAINTEXT: kiseki-client-fuse --server http://{native_address} --insecure-plaintext)");
        }
    }
    if let Some((_, address, _)) = &bulk {
        println!("  native bulk:    {address} (sealed chunk frames, sessions granted over TLS)");
    }
    if let Some(nfs) = &nfs {
        println!("  NFS exports:    {}", nfs.describe());
    }
    if let Some(dev) = &config.dev_tenant {
        namespace
            .open_tenant(TenantId(dev.id))
            .await
            .context("opening the development tenant")?;
        println!("  dev tenant:     {} (workload {})", dev.id, dev.workload);
        if let Some((cert, key)) = &dev_client_cert {
            println!(
                "  client cert:    {} (key {}; kiseki-client-fuse --cert/--key, mutual TLS)",
                cert.display(),
                key.display()
            );
        }
        if let Some(key) = &dev_key {
            println!("  S3 access key:  {}", key.access_key_id);
            println!("  S3 secret key:  {}", key.secret_access_key);
        }
    }
    println!(
        "  S3 endpoint:    http://{} (path-style, SigV4, region us-east-1)",
        s3.address
    );
    let dev_mount = start_dev_mount(
        &config,
        &native_security,
        native_address,
        dev_key.as_ref(),
        dev_client_cert.as_ref(),
    )?;
    if let Some(mount) = &dev_mount {
        println!(
            "  FUSE mount:     {} (dev tenant, kiseki-client-fuse)",
            mount.mount_point().display()
        );
    }
    println!("ready");
    tracing::info!(metrics = %metrics_address, "kiseki-server ready");

    shutdown_signal.wait().await;
    tracing::info!("shutting down");
    if let Some(mount) = dev_mount {
        mount.stop().await;
    }
    shutdown_sender.send_replace(true);
    // Calls in flight are answered before the shard logs close; a client that keeps its
    // connection open does not hold the shutdown up for long.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), native_task).await;
    if let Some((_, _, bulk_task)) = bulk {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), bulk_task).await;
    }
    if let Some(nfs) = nfs {
        nfs.shutdown().await;
    }
    s3.stopped().await?;
    namespace.shutdown().await;
    // Moved placements not recorded yet: left for the next start.
    if let Err(error) = placements::save_moved(&pools.journal, &config.data_dir) {
        tracing::error!(%error, "saving moved chunk placements");
    }
    if let Some(cluster) = cluster {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), cluster.task).await;
    }
    metrics_task.await.context("metrics task")?;
    tracing::info!("stopped");
    Ok(())
}

/// Mounts the dev tenant with the FUSE client when `dev_mount` is configured.
fn start_dev_mount(
    config: &ServerConfig,
    security: &native::tls::NativeSecurity,
    native_address: std::net::SocketAddr,
    dev_key: Option<&access_keys::AccessKey>,
    dev_client_cert: Option<&(std::path::PathBuf, std::path::PathBuf)>,
) -> anyhow::Result<Option<dev_mount::DevMount>> {
    let Some(mount) = &config.dev_mount else {
        return Ok(None);
    };
    let key = dev_key.context("dev_mount needs dev_tenant (or --dev)")?;
    let native::tls::NativeSecurity::Tls {
        dev_ca_path: Some(ca),
        ..
    } = security
    else {
        anyhow::bail!("dev_mount needs the development CA the server creates (no native_tls certificate configured)");
    };
    let url = format!("https://{native_address}");
    let identity = match dev_client_cert {
        Some((cert, key)) => dev_mount::DevIdentity::Certificate { cert, key },
        None => dev_mount::DevIdentity::AccessKey(key),
    };
    dev_mount::DevMount::start(mount, &config.data_dir, &url, ca, identity).map(Some)
}
