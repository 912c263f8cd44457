//! Periodic re-replication on a running cluster node: every `cluster.rereplication.interval_s`
//! a pass lists this node's plain-pool chunks, asks each other replica of the chunk's tenant
//! shard which of them it lacks (`HasChunks`, up to 1024 ids per call) and sends only those,
//! with at most `copies_in_flight` copies at a time and at most `bytes_per_s_max` bytes per
//! second. So a replica that was down while writes happened holds every copy again within about
//! one interval of coming back, without `kiseki-server rebuild`.
//!
//! Counters on `/metrics` (`kiseki_rereplication_*`): passes, chunks checked (per replica),
//! copies sent, bytes sent, copies failed, and gauges for the last pass (missing copies found,
//! duration).
//!
//! Like `rebuild`, it never deletes, never opens frames and never sends a chunk to a node that
//! is not a replica of its shard. The listing of one pass is held in memory (about 40 bytes per
//! chunk); everything else is bounded by the batch size and the in-flight limit.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use kiseki_chunk::ChunkStore;
use kiseki_log::ClusterLayout;
use kiseki_types::{ChunkId, ShardId, TenantId};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use tokio::sync::watch;

use super::chunks::put_one;
use super::peers::Peers;
use super::recopy::{list_chunks, missing_on, HAS_CHUNKS_IDS_MAX};

/// Most copies in flight a config may ask for.
const COPIES_IN_FLIGHT_MAX: usize = 64;

/// The `cluster.rereplication` section. Absent: no periodic pass (only `rebuild`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RereplicationConfig {
    /// Seconds between the end of one pass and the start of the next; 0 turns passes off.
    pub interval_s: u64,
    /// Chunk copies sent at the same time (1 to 64).
    #[serde(default = "default_copies_in_flight")]
    pub copies_in_flight: usize,
    /// Most bytes per second a pass sends, over all replicas.
    #[serde(default = "default_bytes_per_s_max")]
    pub bytes_per_s_max: u64,
}

fn default_copies_in_flight() -> usize {
    4
}

fn default_bytes_per_s_max() -> u64 {
    64 * 1024 * 1024
}

impl RereplicationConfig {
    /// Checks what serde cannot.
    pub fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            (1..=COPIES_IN_FLIGHT_MAX).contains(&self.copies_in_flight),
            "cluster.rereplication.copies_in_flight must be 1 to {COPIES_IN_FLIGHT_MAX}"
        );
        anyhow::ensure!(
            self.bytes_per_s_max >= 1024 * 1024,
            "cluster.rereplication.bytes_per_s_max must be at least 1 MiB/s"
        );
        Ok(())
    }
}

/// The counters of the periodic passes.
#[derive(Clone, Default)]
pub struct RereplicationMetrics {
    passes: Counter,
    chunks_checked: Counter,
    copies_sent: Counter,
    bytes_sent: Counter,
    copies_failed: Counter,
    last_pass_missing: Gauge,
    last_pass_duration_ms: Gauge,
}

impl RereplicationMetrics {
    /// Registers the counters (`kiseki_rereplication_*`).
    pub fn register(&self, registry: &mut Registry) {
        let counters = [
            (
                "rereplication_passes",
                "Re-replication passes finished",
                &self.passes,
            ),
            (
                "rereplication_chunks_checked",
                "Chunk copies looked up on a replica by re-replication",
                &self.chunks_checked,
            ),
            (
                "rereplication_copies_sent",
                "Chunk copies re-replication sent to replicas that lacked them",
                &self.copies_sent,
            ),
            (
                "rereplication_bytes_sent",
                "Bytes of chunk frames re-replication sent",
                &self.bytes_sent,
            ),
            (
                "rereplication_copies_failed",
                "Chunk copies (or look-ups) re-replication could not complete",
                &self.copies_failed,
            ),
        ];
        for (name, help, counter) in counters {
            registry.register(name, help, counter.clone());
        }
        registry.register(
            "rereplication_last_pass_missing",
            "Copies the last re-replication pass found missing on replicas",
            self.last_pass_missing.clone(),
        );
        registry.register(
            "rereplication_last_pass_duration_ms",
            "Duration of the last re-replication pass in milliseconds",
            self.last_pass_duration_ms.clone(),
        );
    }
}

/// Spaces sends so that they stay under a byte rate (shared by the copies in flight).
struct Pacer {
    bytes_per_s: f64,
    next: Mutex<Instant>,
}

impl Pacer {
    fn new(bytes_per_s: u64) -> Self {
        Pacer {
            bytes_per_s: bytes_per_s.max(1) as f64,
            next: Mutex::new(Instant::now()),
        }
    }

    /// Waits for the slot of `bytes` bytes.
    async fn admit(&self, bytes: usize) {
        let wait = {
            let mut next = self.next.lock().unwrap_or_else(PoisonError::into_inner);
            let now = Instant::now();
            let start = (*next).max(now);
            *next = start + Duration::from_secs_f64(bytes as f64 / self.bytes_per_s);
            start - now
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// What a periodic pass works with.
pub struct Rereplicator {
    pub(super) config: RereplicationConfig,
    pub(super) local: Arc<dyn ChunkStore>,
    pub(super) peers: Arc<Peers>,
    pub(super) layout: ClusterLayout,
    pub(super) dirs: Vec<PathBuf>,
    pub(super) metrics: RereplicationMetrics,
}

impl Rereplicator {
    /// Runs passes every interval until `shutdown` turns true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let interval = Duration::from_secs(self.config.interval_s);
        let pacer = Pacer::new(self.config.bytes_per_s_max);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
            let started = Instant::now();
            tokio::select! {
                result = self.pass(&pacer) => match result {
                    Ok(missing) => {
                        self.metrics.last_pass_missing.set(missing as i64);
                        if missing > 0 {
                            tracing::info!(missing, "re-replication sent missing chunk copies");
                        }
                    }
                    Err(error) => tracing::warn!(%error, "re-replication pass failed"),
                },
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
            self.metrics.passes.inc();
            let elapsed = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
            self.metrics.last_pass_duration_ms.set(elapsed);
        }
    }

    /// One pass; returns how many copies were missing on replicas.
    async fn pass(&self, pacer: &Pacer) -> anyhow::Result<u64> {
        let chunks = list_chunks(&self.dirs).await?;
        let mut missing_total = 0u64;
        let mut start = 0;
        while start < chunks.len() {
            // A batch holds chunks of one tenant only.
            let tenant = chunks[start].0;
            let end = chunks[start..]
                .iter()
                .take(HAS_CHUNKS_IDS_MAX)
                .take_while(|(other, _)| *other == tenant)
                .count()
                + start;
            let ids: Vec<ChunkId> = chunks[start..end].iter().map(|(_, id)| *id).collect();
            start = end;
            for node in self.targets(tenant) {
                self.metrics.chunks_checked.inc_by(ids.len() as u64);
                let missing = match missing_on(&self.peers, node, tenant, &ids).await {
                    Ok(missing) => missing,
                    Err(error) => {
                        tracing::debug!(node, %error, "re-replication: replica not checked");
                        self.metrics.copies_failed.inc();
                        continue;
                    }
                };
                missing_total += missing.len() as u64;
                self.send(node, tenant, missing, pacer).await;
            }
        }
        Ok(missing_total)
    }

    /// The replicas of `tenant`'s shard other than this node.
    fn targets(&self, tenant: TenantId) -> Vec<u64> {
        self.layout
            .replicas_of(ShardId { tenant, index: 0 })
            .into_iter()
            .filter(|node| *node != self.layout.node_id)
            .collect()
    }

    /// Sends `ids` to `node`, bounded in flight and in rate.
    async fn send(&self, node: u64, tenant: TenantId, ids: Vec<ChunkId>, pacer: &Pacer) {
        let mut copies = stream::iter(ids)
            .map(|id| async move {
                let frame = self
                    .local
                    .get(tenant, id)
                    .await
                    .map_err(|error| format!("chunk {id}: {error}"))?;
                let bytes = frame.len();
                pacer.admit(bytes).await;
                put_one(&self.peers, node, tenant, id, frame, "")
                    .await
                    .map(|()| bytes)
                    .map_err(|error| format!("chunk {id} to node {node}: {error}"))
            })
            .buffer_unordered(self.config.copies_in_flight);
        while let Some(result) = copies.next().await {
            match result {
                Ok(bytes) => {
                    self.metrics.copies_sent.inc();
                    self.metrics.bytes_sent.inc_by(bytes as u64);
                }
                Err(error) => {
                    tracing::debug!(%error, "re-replication copy failed");
                    self.metrics.copies_failed.inc();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_pacer_holds_the_rate() {
        let pacer = Pacer::new(10 * 1024 * 1024);
        let started = Instant::now();
        for _ in 0..4 {
            pacer.admit(1024 * 1024).await;
        }
        // Four 1 MiB sends at 10 MiB/s: the last starts 0.3 s after the first.
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(290), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    }
}
