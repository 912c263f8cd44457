//! Re-replication of whole chunk copies (plain `path:` pools) in a cluster: a pass that lists
//! this node's chunk files and sends each one to the other replicas of its tenant's shard, so
//! that a replica that missed writes (it was down while a majority acknowledged them) or lost its
//! disk holds every copy again. Run by `kiseki-server rebuild --config <node config>` next to
//! the running node (after the erasure-coded pools' rebuild).
//!
//! A replica that already holds a chunk keeps its file (the chunk store never rewrites an
//! existing chunk), so the pass costs a transfer per copy, not a write. It never deletes, never
//! opens frames (the receiving node checks the header binds tenant and id), and never sends to a
//! node that is not a replica of the chunk's shard.

use std::path::PathBuf;
use std::sync::Arc;

use futures::stream::{self, StreamExt};
use kiseki_chunk::{ChunkStore, FsChunkStore};
use kiseki_log::ClusterLayout;
use kiseki_types::ShardId;

use super::chunks::put_one;
use super::peers::Peers;

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
    let mut chunks = Vec::new();
    for dir in &dirs {
        let listed = tokio::task::spawn_blocking({
            let dir = dir.clone();
            move || FsChunkStore::list_pool_dir(&dir)
        })
        .await??;
        chunks.extend(listed);
    }
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
                        put_one(&peers, node, tenant, id, frame.clone())
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
