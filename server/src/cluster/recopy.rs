//! Re-replication of whole chunk copies (plain `path:` pools) in a cluster: a pass that lists
//! this node's chunk files and sends each one to the other replicas of its tenant's shard, so
//! that a replica that missed writes (it was down while a majority acknowledged them) or lost its
//! disk holds every copy again. Run by `kiseki-server rebuild --config <node config>` next to
//! the running node (after the erasure-coded pools' rebuild), and periodically by the running
//! node (`super::rereplicate`), which first asks each replica which chunks it lacks
//! ([`missing_on`]).
//!
//! A replica that already holds a chunk keeps its file (the chunk store never rewrites an
//! existing chunk), so the pass costs a transfer per copy, not a write. It never deletes, never
//! opens frames (the receiving node checks the header binds tenant and id), and never sends to a
//! node that is not a replica of the chunk's shard.

use std::path::PathBuf;
use std::sync::Arc;

use futures::stream::{self, StreamExt};
use std::time::Duration;

use kiseki_chunk::{ChunkStore, FsChunkStore};
use kiseki_log::ClusterLayout;
use kiseki_proto::cluster::v1::HasChunksRequest;
use kiseki_types::{ChunkId, ShardId, TenantId};

use super::chunks::put_one;
use super::peers::{status_error, Peers};

/// Most chunk ids one `HasChunks` call may ask about.
pub const HAS_CHUNKS_IDS_MAX: usize = 1024;
/// Longest a replica may take to answer a `HasChunks` call.
const HAS_CHUNKS_TIMEOUT: Duration = Duration::from_secs(10);

/// Chunks copied at the same time.
const COPY_CONCURRENCY_MAX: usize = 4;
/// Failures a report names (the count is exact).
const REPORT_FAILURES_MAX: usize = 20;

/// What a re-replication pass did.
#[derive(Debug, Default)]
pub struct CopyReport {
    /// Local chunks looked at.
    pub chunks_scanned: u64,
    /// Copies sent to (and stored by) other replicas.
    pub copies_sent: u64,
    /// Copies that could not be sent (replica down, ...).
    pub copies_failed: u64,
    /// Up to [`REPORT_FAILURES_MAX`] failures, for the operator.
    pub failures: Vec<String>,
}

/// Sends every chunk of the pool directories `dirs` (read through `local`) to the other replicas
/// of its tenant's shard.
pub async fn recopy(
    local: Arc<dyn ChunkStore>,
    peers: Arc<Peers>,
    layout: &ClusterLayout,
    dirs: Vec<PathBuf>,
) -> anyhow::Result<CopyReport> {
    let chunks = list_chunks(&dirs).await?;
    let mut report = CopyReport::default();
    let mut outcomes = stream::iter(chunks)
        .map(|(tenant, id)| {
            let local = Arc::clone(&local);
            let peers = Arc::clone(&peers);
            let targets: Vec<u64> = layout
                .replicas_of(ShardId { tenant, index: 0 })
                .into_iter()
                .filter(|node| *node != layout.node_id)
                .collect();
            async move {
                let frame = match local.get(tenant, id).await {
                    Ok(frame) => frame,
                    Err(error) => return vec![Err(format!("chunk {id}: {error}"))],
                };
                let mut results = Vec::new();
                for node in targets {
                    results.push(
                        put_one(&peers, node, tenant, id, frame.clone(), "")
                            .await
                            .map_err(|error| format!("chunk {id} to node {node}: {error}")),
                    );
                }
                results
            }
        })
        .buffer_unordered(COPY_CONCURRENCY_MAX);
    while let Some(results) = outcomes.next().await {
        report.chunks_scanned += 1;
        for result in results {
            match result {
                Ok(()) => report.copies_sent += 1,
                Err(failure) => {
                    report.copies_failed += 1;
                    if report.failures.len() < REPORT_FAILURES_MAX {
                        report.failures.push(failure);
                    }
                }
            }
        }
    }
    Ok(report)
}

/// Every chunk of the pool directories `dirs`, by tenant (listed off the async runtime).
pub async fn list_chunks(dirs: &[PathBuf]) -> anyhow::Result<Vec<(TenantId, ChunkId)>> {
    let mut chunks = Vec::new();
    for dir in dirs {
        let listed = tokio::task::spawn_blocking({
            let dir = dir.clone();
            move || FsChunkStore::list_pool_dir(&dir)
        })
        .await??;
        chunks.extend(listed);
    }
    chunks.sort_unstable_by_key(|(tenant, id)| (tenant.0, id.0));
    chunks.dedup();
    Ok(chunks)
}

/// Which of `ids` (at most [`HAS_CHUNKS_IDS_MAX`]) of `tenant` node `node` lacks.
pub async fn missing_on(
    peers: &Peers,
    node: u64,
    tenant: TenantId,
    ids: &[ChunkId],
) -> Result<Vec<ChunkId>, String> {
    let mut client = peers.client(node).map_err(|error| error.to_string())?;
    let mut request = tonic::Request::new(HasChunksRequest {
        from_node: peers.node_id(),
        tenant: tenant.0,
        chunk_ids: ids.iter().map(|id| id.0.to_vec()).collect(),
    });
    request.set_timeout(HAS_CHUNKS_TIMEOUT);
    let reply = match tokio::time::timeout(HAS_CHUNKS_TIMEOUT, client.has_chunks(request)).await {
        Ok(Ok(reply)) => reply.into_inner(),
        Ok(Err(status)) => return Err(status_error(node, &status).to_string()),
        Err(_) => {
            return Err(format!(
                "no answer within {} s",
                HAS_CHUNKS_TIMEOUT.as_secs()
            ))
        }
    };
    if reply.present.len() != ids.len() {
        return Err(format!(
            "node {node} answered {} of {} chunk ids",
            reply.present.len(),
            ids.len()
        ));
    }
    Ok(ids
        .iter()
        .zip(reply.present)
        .filter(|(_, present)| !present)
        .map(|(id, _)| *id)
        .collect())
}
