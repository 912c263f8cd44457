//! Builds a storage node from its config: key source, chunk pools, namespace, and in a cluster
//! the node's cluster parts (replicated chunk store, shard layout, node-to-node service).

use std::sync::Arc;

use anyhow::Context;
use kiseki_chunk::{ChunkService, ChunkStore, Placement, PoolName};
use kiseki_crypto::{InternalKms, KeyManager, KeySource};
use kiseki_namespace::{Namespace, NamespaceConfig};
use kiseki_proto::RemoteKeySource;

use crate::cluster::ClusterNode;
use crate::config::ServerConfig;
use crate::native::keys::KeyMaterialSource;

/// The key source the config asks for: an embedded key manager, or a remote key server; and
/// the same keys' raw material for the native client service.
pub fn key_source(
    config: &ServerConfig,
) -> anyhow::Result<(Arc<dyn KeySource>, KeyMaterialSource)> {
    if config.keyserver == "embedded" {
        let keys_dir = config.data_dir.join("keyserver");
        let kms = InternalKms::open(&keys_dir.join("kms"))
            .context("opening the embedded internal KMS")?;
        let manager = KeyManager::open(&keys_dir.join("keys"), Arc::new(kms))
            .context("opening the embedded key manager")?;
        let manager = Arc::new(manager);
        return Ok((manager.clone(), KeyMaterialSource::Embedded(manager)));
    }
    let remote = RemoteKeySource::connect_lazy(&config.keyserver)
        .with_context(|| format!("key server address {}", config.keyserver))?;
    let material = KeyMaterialSource::remote(&config.keyserver)
        .with_context(|| format!("key server address {}", config.keyserver))?;
    Ok((Arc::new(remote), material))
}

/// A cluster node's parts the namespace does not hold.
pub struct Cluster {
    node: ClusterNode,
    local: Arc<dyn ChunkStore>,
    placement: Placement,
}

/// The cluster service once it serves.
pub struct ServedCluster {
    /// One line for the start banner.
    pub description: String,
    /// The server task.
    pub task: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
    /// Counters of periodic re-replication, for `/metrics`.
    pub rereplication: crate::cluster::rereplicate::RereplicationMetrics,
}

/// The cluster parts of a node with a `cluster` section (identity, peers, layout), built before
/// the pools because erasure-coded pools span the peers' devices.
pub fn cluster_node(config: &ServerConfig) -> anyhow::Result<Option<ClusterNode>> {
    config
        .cluster
        .as_ref()
        .map(|cluster| ClusterNode::new(cluster, &config.data_dir))
        .transpose()
}

/// The namespace over the configured pools; new chunks go to the first pool. In a cluster,
/// chunks are replicated (those of the `erasure` pools excepted: their fragments are spread
/// over the nodes) and shards are groups over the cluster's nodes.
pub fn storage(
    config: &ServerConfig,
    keys: Arc<dyn KeySource>,
    store: Arc<dyn ChunkStore>,
    cluster: Option<ClusterNode>,
    erasure: Vec<PoolName>,
) -> anyhow::Result<(Namespace, Option<Cluster>)> {
    let policy = config.placement.policy(&config.pools)?;
    // Copies that peers send without naming a pool go to the default pool.
    let placement = policy.default_placement().clone();
    let mut namespace_config = NamespaceConfig::new(config.data_dir.join("shards"));
    namespace_config.chunk_size = config.chunk_size_bytes;
    let (chunks, cluster) = match cluster {
        None => (ChunkService::with_policy(store, policy), None),
        Some(node) => {
            namespace_config.cluster = Some(node.layout().clone());
            let chunks =
                ChunkService::with_policy(node.chunk_store(Arc::clone(&store), erasure), policy);
            (
                chunks,
                Some(Cluster {
                    node,
                    local: store,
                    placement,
                }),
            )
        }
    };
    let namespace =
        Namespace::new(namespace_config, keys, chunks).context("namespace configuration")?;
    Ok((namespace, cluster))
}

/// The namespace of a single-node server over the configured pools (unit tests).
#[cfg(test)]
pub fn namespace(config: &ServerConfig, keys: Arc<dyn KeySource>) -> anyhow::Result<Namespace> {
    let pools = crate::pools::Pools::open(config)?;
    Ok(storage(config, keys, pools.store, None, Vec::new())?.0)
}

/// Starts the node-to-node service of a cluster node (nothing for a single-node server).
pub async fn serve_cluster(
    cluster: Option<Cluster>,
    namespace: &Arc<Namespace>,
    pools: &crate::pools::Pools,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Option<ServedCluster>> {
    let Some(cluster) = cluster else {
        return Ok(None);
    };
    // This node's own fragment devices (erasure-coded pools), served to its peers.
    let devices: Vec<Arc<dyn kiseki_chunk::FragmentStore>> = pools
        .erasure
        .iter()
        .flat_map(|pool| pool.local_devices.iter().cloned())
        .collect();
    let rereplication = cluster.node.start_rereplication(
        Arc::clone(&cluster.local),
        pools.directories.clone(),
        shutdown.clone(),
    );
    let (address, task) = cluster
        .node
        .serve(
            Arc::clone(namespace),
            cluster.local,
            cluster.placement,
            devices,
            shutdown,
        )
        .await?;
    Ok(Some(ServedCluster {
        description: cluster.node.describe(address),
        task,
        rereplication,
    }))
}
