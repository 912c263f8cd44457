//! The multi-node cluster of a server: its config section (`cluster:`), the mTLS identity of
//! the node, the connections to its peers, the node-to-node gRPC service and the replicated
//! chunk store. Without a `cluster` section the server is a single-node cluster and none of
//! this runs.
//!
//! Owns wiring only: replication semantics live in the log crate (shard groups, forwarding,
//! read barriers) and in `chunks` (chunk copies); this module must never decide placement on
//! its own beyond `kiseki_log::ClusterLayout`.

pub mod admin;
pub mod chunks;
pub mod fragments;
pub mod peers;
pub mod recopy;
pub mod rereplicate;
pub mod service;
pub mod tls;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use kiseki_chunk::{ChunkStore, DeviceInfo, FragmentStore, Placement, PoolName};
use kiseki_log::ClusterLayout;
use kiseki_namespace::Namespace;
use kiseki_proto::cluster::v1::cluster_server::ClusterServer;
use kiseki_proto::cluster::v1::fragments_server::FragmentsServer;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;

use self::peers::{GrpcTransport, Peers};
use self::rereplicate::{RereplicationConfig, RereplicationMetrics, Rereplicator};
use self::tls::NodeTls;

/// Largest node-to-node gRPC message (a chunk frame or a snapshot chunk, with headroom).
pub const CLUSTER_MESSAGE_BYTES_MAX: usize = kiseki_log::PEER_PAYLOAD_BYTES_MAX + 1024 * 1024;
/// Most concurrent node-to-node calls per connection.
const CALLS_PER_CONNECTION_MAX: usize = 256;

/// The `cluster` section of the server config.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// This node's id (a positive integer, unique in the cluster, also its certificate name
    /// `node-<id>.kiseki`).
    pub node_id: u64,
    /// Address of the node-to-node service.
    pub listen: SocketAddr,
    /// Every node of the cluster, this one included.
    pub peers: Vec<PeerConfig>,
    /// Voters per shard group; every other node follows the shard as a learner.
    #[serde(default = "default_replicas")]
    pub replicas: usize,
    /// The cluster CA and this node's certificate.
    pub tls: ClusterTlsConfig,
    /// Periodic re-replication of plain-pool chunks to replicas that lack them (off when
    /// absent).
    #[serde(default)]
    pub rereplication: Option<RereplicationConfig>,
}

/// One node of the cluster.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// Node id.
    pub id: u64,
    /// `host:port` of its node-to-node service.
    pub address: String,
}

/// Certificates of node-to-node mTLS.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterTlsConfig {
    /// PEM certificate of the cluster CA.
    pub ca_cert: PathBuf,
    /// PEM key of the CA: when given (development and tests), the node issues its own
    /// certificate on start instead of reading `cert`/`key`.
    #[serde(default)]
    pub ca_key: Option<PathBuf>,
    /// This node's certificate (`kiseki-server cluster-ca issue-node-cert`).
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// Key of `cert`.
    #[serde(default)]
    pub key: Option<PathBuf>,
}

fn default_replicas() -> usize {
    3
}

impl ClusterConfig {
    /// Checks what serde cannot.
    pub fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.node_id > 0, "cluster.node_id must be positive");
        anyhow::ensure!(self.replicas >= 1, "cluster.replicas must be at least 1");
        let mut ids: Vec<u64> = self.peers.iter().map(|peer| peer.id).collect();
        ids.sort_unstable();
        ids.dedup();
        anyhow::ensure!(
            ids.len() == self.peers.len(),
            "cluster.peers: node ids must be unique"
        );
        anyhow::ensure!(
            ids.contains(&self.node_id),
            "cluster.peers must list this node ({})",
            self.node_id
        );
        anyhow::ensure!(
            ids.iter().all(|id| *id > 0),
            "cluster.peers: node ids must be positive"
        );
        anyhow::ensure!(
            self.tls.ca_key.is_some() || (self.tls.cert.is_some() && self.tls.key.is_some()),
            "cluster.tls needs cert and key (or ca_key to issue them)"
        );
        if let Some(rereplication) = &self.rereplication {
            rereplication.check()?;
        }
        Ok(())
    }

    /// Loads (or, with the CA key, issues into `data_dir/cluster-tls/`) this node's TLS
    /// material.
    pub fn node_tls(&self, data_dir: &Path) -> anyhow::Result<NodeTls> {
        let (cert, key) = match (&self.tls.cert, &self.tls.key, &self.tls.ca_key) {
            (Some(cert), Some(key), _) => (cert.clone(), key.clone()),
            (_, _, Some(ca_key)) => {
                let (cert, key) = tls::issue_node_cert(ca_key, self.node_id)?;
                tls::write_node_cert(&data_dir.join("cluster-tls"), self.node_id, &cert, &key)?
            }
            _ => anyhow::bail!("cluster.tls needs cert and key (or ca_key)"),
        };
        NodeTls::load(&self.tls.ca_cert, &cert, &key)
    }
}

/// A node's cluster parts, built before the namespace and served after it.
pub struct ClusterNode {
    config: ClusterConfig,
    tls: NodeTls,
    layout: ClusterLayout,
    peers: Arc<Peers>,
    rereplication: RereplicationMetrics,
}

impl ClusterNode {
    /// Sets up identity, peers and layout from `config`.
    pub fn new(config: &ClusterConfig, data_dir: &Path) -> anyhow::Result<Self> {
        config.check()?;
        let tls = config
            .node_tls(data_dir)
            .context("cluster TLS (CA and node certificate)")?;
        let addresses: Vec<(u64, String)> = config
            .peers
            .iter()
            .map(|peer| (peer.id, peer.address.clone()))
            .collect();
        let peers = Arc::new(Peers::new(config.node_id, &addresses, &tls)?);
        let mut nodes: Vec<u64> = addresses.iter().map(|(id, _)| *id).collect();
        nodes.sort_unstable();
        let layout = ClusterLayout {
            node_id: config.node_id,
            nodes,
            replicas: config.replicas,
            transport: Arc::new(GrpcTransport::new(Arc::clone(&peers))),
        };
        Ok(ClusterNode {
            config: config.clone(),
            tls,
            layout,
            peers,
            rereplication: RereplicationMetrics::default(),
        })
    }

    /// The shard layout (for the namespace).
    pub fn layout(&self) -> &ClusterLayout {
        &self.layout
    }

    /// The chunk store of this node in the cluster: `local` plus copies on the replicas, except
    /// for chunks of the `unreplicated` pools (erasure-coded across the nodes already).
    pub fn chunk_store(
        &self,
        local: Arc<dyn ChunkStore>,
        unreplicated: Vec<PoolName>,
    ) -> Arc<dyn ChunkStore> {
        Arc::new(chunks::ReplicatedChunkStore::new(
            local,
            Arc::clone(&self.peers),
            self.layout.clone(),
            unreplicated,
        ))
    }

    /// Sends every chunk of the plain pool directories `dirs` (read from `local`) to the other
    /// replicas of its shard (after a replica missed writes or lost its disk).
    pub async fn recopy(
        &self,
        local: Arc<dyn ChunkStore>,
        dirs: Vec<PathBuf>,
    ) -> anyhow::Result<recopy::CopyReport> {
        recopy::recopy(local, Arc::clone(&self.peers), &self.layout, dirs).await
    }

    /// Starts periodic re-replication of the plain pool directories `dirs` (read through
    /// `local`) when the config asks for it; it stops when `shutdown` turns true. Returns its
    /// counters (zero when it does not run), for `/metrics`.
    pub fn start_rereplication(
        &self,
        local: Arc<dyn ChunkStore>,
        dirs: Vec<PathBuf>,
        shutdown: watch::Receiver<bool>,
    ) -> RereplicationMetrics {
        let metrics = self.rereplication.clone();
        let Some(config) = self.config.rereplication.clone() else {
            return metrics;
        };
        if config.interval_s == 0 || dirs.is_empty() {
            return metrics;
        }
        tracing::info!(
            interval_s = config.interval_s,
            copies_in_flight = config.copies_in_flight,
            bytes_per_s_max = config.bytes_per_s_max,
            "periodic re-replication on"
        );
        let rereplicator = Rereplicator {
            config,
            local,
            peers: Arc::clone(&self.peers),
            layout: self.layout.clone(),
            dirs,
            metrics: metrics.clone(),
        };
        tokio::spawn(rereplicator.run(shutdown));
        metrics
    }

    /// One line describing the node for the start banner.
    pub fn describe(&self, address: SocketAddr) -> String {
        format!(
            "node {} of {:?}, {} replicas per shard, mTLS on {address}",
            self.config.node_id, self.layout.nodes, self.layout.replicas
        )
    }

    /// Serves the node-to-node services (shards and chunks; this node's local `fragment_devices`)
    /// until `shutdown`.
    pub async fn serve(
        &self,
        namespace: Arc<Namespace>,
        local: Arc<dyn ChunkStore>,
        placement: Placement,
        fragment_devices: Vec<Arc<dyn FragmentStore>>,
        mut shutdown: watch::Receiver<bool>,
    ) -> anyhow::Result<(SocketAddr, JoinHandle<Result<(), tonic::transport::Error>>)> {
        let listener = TcpListener::bind(self.config.listen)
            .await
            .with_context(|| format!("binding the cluster listener {}", self.config.listen))?;
        let bound = listener.local_addr()?;
        let service = service::ClusterService {
            namespace,
            local,
            placement,
        };
        let service = ClusterServer::new(service)
            .max_decoding_message_size(CLUSTER_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(CLUSTER_MESSAGE_BYTES_MAX);
        let fragments = FragmentsServer::new(fragments::FragmentService::new(fragment_devices))
            .max_decoding_message_size(CLUSTER_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(CLUSTER_MESSAGE_BYTES_MAX);
        let server = tonic::transport::Server::builder()
            .tls_config(self.tls.server_config())
            .context("cluster TLS certificate or key")?
            .concurrency_limit_per_connection(CALLS_PER_CONNECTION_MAX)
            .timeout(std::time::Duration::from_secs(30))
            .tcp_nodelay(true)
            .initial_stream_window_size(Some(8 * 1024 * 1024))
            .initial_connection_window_size(Some(16 * 1024 * 1024))
            .add_service(service)
            .add_service(fragments);
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let stopped = async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        };
        Ok((
            bound,
            tokio::spawn(server.serve_with_incoming_shutdown(incoming, stopped)),
        ))
    }
}

/// Erasure-coded pools span the cluster: a peer's device is a [`fragments::RemoteFragmentStore`].
impl crate::pools::ClusterDevices for ClusterNode {
    fn node_id(&self) -> u64 {
        self.config.node_id
    }

    fn peer_ids(&self) -> Vec<u64> {
        self.layout.peers().collect()
    }

    fn remote_device(&self, info: DeviceInfo) -> Arc<dyn FragmentStore> {
        Arc::new(fragments::RemoteFragmentStore::new(
            info,
            Arc::clone(&self.peers),
        ))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::path::Path;

    use crate::config::ServerConfig;

    #[test]
    fn the_cluster_example_configs_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../site-configs/cluster-3-node");
        for node in 1..=3u64 {
            let config = ServerConfig::load(&dir.join(format!("node-{node}.yaml"))).unwrap();
            let cluster = config.cluster.unwrap();
            assert_eq!(cluster.node_id, node);
            assert_eq!(cluster.peers.len(), 3);
            assert_eq!(cluster.replicas, 3);
            let rereplication = cluster.rereplication.unwrap();
            assert_eq!(rereplication.interval_s, 300);
            rereplication.check().unwrap();
        }
    }

    #[test]
    fn the_erasure_coded_cluster_example_configs_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../site-configs/cluster-3-node/ec");
        for node in 1..=3u64 {
            let config = ServerConfig::load(&dir.join(format!("node-{node}.yaml"))).unwrap();
            assert_eq!(config.cluster.unwrap().node_id, node);
            let pool = &config.pools[0];
            crate::pools::check(pool).unwrap();
            assert_eq!(pool.devices.len(), 2);
            assert!(crate::pools::policy(pool).unwrap().is_some());
        }
    }

    #[test]
    fn a_cluster_config_must_list_its_own_node() {
        let yaml = "data_dir: /x\ncluster:\n  node_id: 4\n  listen: 127.0.0.1:1\n  peers:\n    \
                    - { id: 1, address: \"a:1\" }\n  tls: { ca_cert: /c, ca_key: /k }\n";
        let config: ServerConfig = serde_yaml::from_str(yaml).unwrap();
        let error = config.check().unwrap_err();
        assert!(error.to_string().contains("must list this node"), "{error}");
    }
}
