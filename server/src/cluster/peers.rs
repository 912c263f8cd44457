//! Connections to the other nodes of the cluster (one lazily connected mTLS gRPC channel per
//! peer) and the shard transport of the log crate over them.
//!
//! Every call is bounded by a timeout and a message size. A call that fails before reaching
//! the peer (connection refused) is reported as unreachable, anything else as failed (it may
//! have run). tonic reports a connection that broke mid-call as `Unavailable` too, so some calls
//! that did run come back as unreachable: harmless, because the log crate re-sends a forwarded
//! proposal under its exactly-once tag either way, and its other calls are idempotent.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use kiseki_log::{PeerCall, ShardTransport, TransportError, TransportFuture};
use kiseki_proto::cluster::v1::cluster_client::ClusterClient;
use kiseki_proto::cluster::v1::{ShardCall, ShardRequest};
use kiseki_types::ShardId;
use tonic::transport::{Channel, Endpoint};

use super::tls::NodeTls;
use super::CLUSTER_MESSAGE_BYTES_MAX;

/// How long establishing a connection to a peer may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest any forwarded shard call waits for its peer (the caller may retry elsewhere).
const FORWARD_TIMEOUT_MAX: Duration = Duration::from_secs(3);

/// The other nodes of the cluster.
pub struct Peers {
    node_id: u64,
    channels: HashMap<u64, Channel>,
}

impl Peers {
    /// Channels to every peer in `addresses` (id → `host:port`), connected on first use.
    pub fn new(node_id: u64, addresses: &[(u64, String)], tls: &NodeTls) -> anyhow::Result<Self> {
        let mut channels = HashMap::new();
        for (id, address) in addresses {
            if *id == node_id {
                continue;
            }
            let endpoint = Endpoint::from_shared(format!("https://{address}"))
                .with_context(|| format!("address of node {id}: {address}"))?
                .tls_config(tls.client_config(*id))
                .with_context(|| format!("TLS towards node {id}"))?
                .connect_timeout(CONNECT_TIMEOUT)
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(5))
                .keep_alive_timeout(Duration::from_secs(5))
                .initial_stream_window_size(Some(8 * 1024 * 1024))
                .initial_connection_window_size(Some(16 * 1024 * 1024));
            channels.insert(*id, endpoint.connect_lazy());
        }
        Ok(Peers { node_id, channels })
    }

    /// This node's id.
    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    /// The channel to node `node`.
    pub fn channel(&self, node: u64) -> Result<Channel, TransportError> {
        self.channels
            .get(&node)
            .cloned()
            .ok_or_else(|| TransportError::Unreachable {
                node,
                message: "not a configured peer".into(),
            })
    }

    /// A client of node `node`'s cluster service.
    pub fn client(&self, node: u64) -> Result<ClusterClient<Channel>, TransportError> {
        Ok(ClusterClient::new(self.channel(node)?)
            .max_decoding_message_size(CLUSTER_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(CLUSTER_MESSAGE_BYTES_MAX))
    }
}

/// Maps a failed gRPC call to a transport error.
pub fn status_error(node: u64, status: &tonic::Status) -> TransportError {
    let message = format!("{}: {}", status.code(), status.message());
    if status.code() == tonic::Code::Unavailable {
        TransportError::Unreachable { node, message }
    } else {
        TransportError::Failed { node, message }
    }
}

/// The shard transport over [`Peers`].
pub struct GrpcTransport {
    peers: Arc<Peers>,
}

impl GrpcTransport {
    /// A transport over `peers`.
    pub fn new(peers: Arc<Peers>) -> Self {
        GrpcTransport { peers }
    }
}

fn wire_call(call: PeerCall) -> ShardCall {
    match call {
        PeerCall::AppendEntries => ShardCall::AppendEntries,
        PeerCall::Vote => ShardCall::Vote,
        PeerCall::InstallSnapshot => ShardCall::InstallSnapshot,
        PeerCall::Propose => ShardCall::Propose,
        PeerCall::ReadIndex => ShardCall::ReadIndex,
        PeerCall::Membership => ShardCall::Membership,
        PeerCall::Open => ShardCall::Open,
    }
}

/// The log crate's call for a wire call.
pub fn peer_call(call: ShardCall) -> Option<PeerCall> {
    Some(match call {
        ShardCall::Unspecified => return None,
        ShardCall::AppendEntries => PeerCall::AppendEntries,
        ShardCall::Vote => PeerCall::Vote,
        ShardCall::InstallSnapshot => PeerCall::InstallSnapshot,
        ShardCall::Propose => PeerCall::Propose,
        ShardCall::ReadIndex => PeerCall::ReadIndex,
        ShardCall::Membership => PeerCall::Membership,
        ShardCall::Open => PeerCall::Open,
    })
}

impl ShardTransport for GrpcTransport {
    fn call(
        &self,
        target: u64,
        shard: ShardId,
        call: PeerCall,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> TransportFuture<'_> {
        Box::pin(async move {
            let timeout = match call {
                PeerCall::Propose | PeerCall::ReadIndex | PeerCall::Membership => {
                    timeout.min(FORWARD_TIMEOUT_MAX)
                }
                _ => timeout,
            };
            let mut client = self.peers.client(target)?;
            let request = ShardRequest {
                from_node: self.peers.node_id,
                tenant: shard.tenant.0,
                shard_index: u32::from(shard.index),
                call: wire_call(call) as i32,
                payload,
            };
            let mut request = tonic::Request::new(request);
            request.set_timeout(timeout);
            match tokio::time::timeout(timeout, client.shard(request)).await {
                Ok(Ok(reply)) => Ok(reply.into_inner().payload),
                Ok(Err(status)) => Err(status_error(target, &status)),
                Err(_) => Err(TransportError::Failed {
                    node: target,
                    message: format!("no answer within {} ms", timeout.as_millis()),
                }),
            }
        })
    }
}
