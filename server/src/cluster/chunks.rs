//! Chunks in a cluster: a [`ChunkStore`] that keeps every sealed frame on this node and copies
//! it to the replicas of the tenant's shard, acknowledging a write once a majority of those
//! replicas (counting this node if it is one) holds it durably, so the delta referencing the
//! chunk is only proposed after the chunk survives the loss of a minority. Reads take the local
//! copy, else ask the shard's replicas, then every other node.
//!
//! Chunks of erasure-coded pools are the exception: their fragments are spread over the nodes'
//! devices already (the coding is their redundancy), so they are written once, through the
//! local pool, and every node reads them from the fragments.
//!
//! It never opens or verifies frames (the chunk service does, with the tenant's keys), and does
//! not delete remote copies (garbage collection is not cluster-wide); missing copies are sent
//! again by the `rebuild` command (`super::recopy`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use kiseki_chunk::{ChunkError, ChunkStore, Placement, PoolName, StoreFuture};
use kiseki_log::ClusterLayout;
use kiseki_proto::cluster::v1::{GetChunkRequest, PutChunkRequest};
use kiseki_types::{ChunkId, ShardId, TenantId};

use super::peers::{status_error, Peers};

/// Longest a replica may take to store a chunk.
const PUT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a peer may take to return a chunk.
const GET_TIMEOUT: Duration = Duration::from_secs(5);

/// Local chunk store plus copies on the shard's replicas.
pub struct ReplicatedChunkStore {
    local: Arc<dyn ChunkStore>,
    peers: Arc<Peers>,
    layout: ClusterLayout,
    /// Pools whose chunks are not copied (erasure-coded across the nodes).
    unreplicated: Vec<PoolName>,
}

impl ReplicatedChunkStore {
    /// Replicates `local`'s chunks over `peers` as `layout` places the tenants' shards, except
    /// those of the `unreplicated` pools.
    pub fn new(
        local: Arc<dyn ChunkStore>,
        peers: Arc<Peers>,
        layout: ClusterLayout,
        unreplicated: Vec<PoolName>,
    ) -> Self {
        ReplicatedChunkStore {
            local,
            peers,
            layout,
            unreplicated,
        }
    }

    /// The shard replicas other than this node, and how many of them must acknowledge.
    fn targets(&self, tenant: TenantId) -> (Vec<u64>, usize) {
        let replicas = self.layout.replicas_of(ShardId { tenant, index: 0 });
        let quorum = replicas.len() / 2 + 1;
        let local_counts = usize::from(replicas.contains(&self.layout.node_id));
        let others: Vec<u64> = replicas
            .into_iter()
            .filter(|node| *node != self.layout.node_id)
            .collect();
        (others, quorum.saturating_sub(local_counts))
    }

    async fn put_remote(
        &self,
        tenant: TenantId,
        id: ChunkId,
        frame: Bytes,
        pool: &PoolName,
    ) -> Result<(), ChunkError> {
        let (targets, needed) = self.targets(tenant);
        let mut pending: FuturesUnordered<_> = targets
            .iter()
            .map(|node| {
                let node = *node;
                let peers = Arc::clone(&self.peers);
                let frame = frame.clone();
                let pool = pool.0.clone();
                // Spawned: copies beyond the quorum complete in the background (bounded).
                tokio::spawn(async move {
                    let result = put_one(&peers, node, tenant, id, frame, &pool).await;
                    (node, result)
                })
            })
            .collect();
        let mut acknowledged = 0;
        let mut failures = Vec::new();
        while acknowledged < needed {
            let Some(joined) = pending.next().await else {
                break;
            };
            match joined {
                Ok((_, Ok(()))) => acknowledged += 1,
                Ok((node, Err(message))) => failures.push(format!("node {node}: {message}")),
                Err(error) => failures.push(error.to_string()),
            }
        }
        if acknowledged >= needed {
            return Ok(());
        }
        Err(ChunkError::Io {
            path: format!("replicas of chunk {id}"),
            source: std::io::Error::other(format!(
                "only {acknowledged} of the {needed} remote copies needed for a quorum were \
                 stored ({})",
                failures.join("; ")
            )),
        })
    }

    async fn get_remote(&self, tenant: TenantId, id: ChunkId) -> Result<Bytes, ChunkError> {
        let (mut order, _) = self.targets(tenant);
        order.extend(
            self.layout
                .peers()
                .filter(|node| !order.contains(node))
                .collect::<Vec<_>>(),
        );
        for node in order {
            let Ok(mut client) = self.peers.client(node) else {
                continue;
            };
            let mut request = tonic::Request::new(GetChunkRequest {
                from_node: self.layout.node_id,
                tenant: tenant.0,
                chunk_id: id.0.to_vec(),
            });
            request.set_timeout(GET_TIMEOUT);
            match tokio::time::timeout(GET_TIMEOUT, client.get_chunk(request)).await {
                Ok(Ok(reply)) => {
                    let reply = reply.into_inner();
                    if reply.found {
                        return Ok(Bytes::from(reply.frame));
                    }
                }
                Ok(Err(status)) => {
                    tracing::debug!(node, error = %status_error(node, &status), %id, "chunk fetch failed")
                }
                Err(_) => tracing::debug!(node, %id, "chunk fetch timed out"),
            }
        }
        Err(ChunkError::NotFound { tenant, id })
    }
}

/// Sends a copy of a chunk to `node`, for its pool `pool` (empty: the node's default pool).
pub(super) async fn put_one(
    peers: &Peers,
    node: u64,
    tenant: TenantId,
    id: ChunkId,
    frame: Bytes,
    pool: &str,
) -> Result<(), String> {
    let mut client = peers.client(node).map_err(|error| error.to_string())?;
    let mut request = tonic::Request::new(PutChunkRequest {
        from_node: peers.node_id(),
        tenant: tenant.0,
        chunk_id: id.0.to_vec(),
        frame: frame.to_vec(),
        pool: pool.to_owned(),
    });
    request.set_timeout(PUT_TIMEOUT);
    match tokio::time::timeout(PUT_TIMEOUT, client.put_chunk(request)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(status)) => Err(status_error(node, &status).to_string()),
        Err(_) => Err(format!("no answer within {} s", PUT_TIMEOUT.as_secs())),
    }
}

impl ChunkStore for ReplicatedChunkStore {
    fn put<'a>(
        &'a self,
        tenant: TenantId,
        id: ChunkId,
        frame: Bytes,
        placement: &'a Placement,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            if self.unreplicated.contains(&placement.pool) {
                return self.local.put(tenant, id, frame, placement).await;
            }
            // The local copy and the remote ones are written at the same time: one device
            // latency per chunk instead of two.
            let (local, remote) = tokio::join!(
                self.local.put(tenant, id, frame.clone(), placement),
                self.put_remote(tenant, id, frame, &placement.pool)
            );
            local.and(remote)
        })
    }

    fn get(&self, tenant: TenantId, id: ChunkId) -> StoreFuture<'_, Bytes> {
        Box::pin(async move {
            match self.local.get(tenant, id).await {
                Err(ChunkError::NotFound { .. }) => self.get_remote(tenant, id).await,
                other => other,
            }
        })
    }

    /// Always `false`: a local copy does not prove that the replicas have one (its first
    /// write may have missed the quorum), so every write replicates again. Deduplication
    /// across writes of the same content is therefore off in a cluster.
    fn contains(&self, _tenant: TenantId, _id: ChunkId) -> StoreFuture<'_, bool> {
        Box::pin(async { Ok(false) })
    }

    fn delete(&self, tenant: TenantId, id: ChunkId) -> StoreFuture<'_, ()> {
        self.local.delete(tenant, id)
    }
}
