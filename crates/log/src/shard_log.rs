//! [`ShardLog`]: the handle other crates use to propose deltas to a shard and watch its log.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use kiseki_types::limits::{LOG_ENTRIES_PER_SNAPSHOT, SHARD_PROPOSALS_INFLIGHT_MAX};
use kiseki_types::ShardId;
use openraft::{BasicNode, Config, Raft, ServerState, SnapshotPolicy};
use tokio::sync::{mpsc, Semaphore};

use crate::batcher::{self, Proposal};
use crate::dedupe::Proposer;
use crate::error::ErrorContext;
use crate::log_store::{LogStore, StorageFailure};
use crate::metrics::LogCounters;
use crate::{
    ClusterLayout, ClusterNetworkFactory, Delta, DeltaOutcome, LogError, ShardLogMetrics,
    ShardState, SingleNodeNetworkFactory, StateMachineStore, TypeConfig,
};

/// The Raft node id of a single-node server in every shard group.
const NODE_ID: u64 = 1;
/// The log directory (segments and meta file) inside a shard directory.
const LOG_DIR_NAME: &str = "log";
/// The log database of the redb-based store this crate used before segment files.
const LEGACY_LOG_FILE_NAME: &str = "log.redb";

/// Tunables of a shard log; `Default` gives the production values.
#[derive(Clone, Debug)]
pub struct ShardLogOptions {
    /// Entries between snapshots; each snapshot is followed by log compaction.
    pub entries_per_snapshot: u64,
    /// Entries kept in the log behind a snapshot (the rest is purged).
    pub entries_kept_after_snapshot: u64,
    /// How long `open` waits for this node to lead the group.
    pub leader_wait_ms_max: u64,
    /// Most proposals waiting for the log at once.
    pub proposals_inflight_max: usize,
}

impl Default for ShardLogOptions {
    fn default() -> Self {
        ShardLogOptions {
            entries_per_snapshot: LOG_ENTRIES_PER_SNAPSHOT,
            entries_kept_after_snapshot: 64,
            leader_wait_ms_max: 10_000,
            proposals_inflight_max: SHARD_PROPOSALS_INFLIGHT_MAX,
        }
    }
}

/// The log of one shard: proposes deltas, answers with their applied outcomes.
pub struct ShardLog {
    core: Arc<Core>,
    batcher: tokio::task::JoinHandle<()>,
    writer_thread: Option<std::thread::JoinHandle<()>>,
    counters: Arc<LogCounters>,
}

/// What proposing needs, shared with the [`crate::ShardPeer`] handles the cluster service uses.
pub(crate) struct Core {
    pub(crate) shard: ShardId,
    pub(crate) node_id: u64,
    pub(crate) raft: Raft<TypeConfig>,
    pub(crate) proposals: mpsc::Sender<Proposal>,
    pub(crate) inflight: Arc<Semaphore>,
    pub(crate) errors: ErrorContext,
    pub(crate) cluster: Option<ClusterLayout>,
    /// Tags this node's proposals (cluster shards only: a single node never re-sends).
    pub(crate) proposer: Option<Proposer>,
}

impl ShardLog {
    /// Opens (or creates) the log of `shard` in `dir`, restores `state` from the last snapshot,
    /// replays the log after it, and returns once this node leads the group and has applied
    /// every entry in the log.
    pub async fn open<S: ShardState>(
        dir: &Path,
        shard: ShardId,
        state: Arc<RwLock<S>>,
        options: ShardLogOptions,
    ) -> Result<ShardLog, LogError> {
        let log = Self::open_with(dir, shard, state, &options, None).await?;
        match log.become_leader(options.leader_wait_ms_max).await {
            Ok(()) => Ok(log),
            Err(error) => {
                log.shutdown().await;
                Err(error)
            }
        }
    }

    /// Opens (or creates) this node's copy of `shard` in a cluster: restores the state, starts
    /// the group member, and on a voter of the layout initializes a pristine group with the
    /// layout's voters. Returns at once, without waiting for a leader: the group forms when
    /// the other replicas open it (they are asked to) and a read barrier or proposal waits for
    /// it, bounded.
    pub async fn open_in_cluster<S: ShardState>(
        dir: &Path,
        shard: ShardId,
        state: Arc<RwLock<S>>,
        options: ShardLogOptions,
        layout: ClusterLayout,
    ) -> Result<ShardLog, LogError> {
        let log = Self::open_with(dir, shard, state, &options, Some(layout)).await?;
        if let Err(error) = crate::peer::join_group(&log.core).await {
            log.shutdown().await;
            return Err(error);
        }
        Ok(log)
    }

    async fn open_with<S: ShardState>(
        dir: &Path,
        shard: ShardId,
        state: Arc<RwLock<S>>,
        options: &ShardLogOptions,
        cluster: Option<ClusterLayout>,
    ) -> Result<ShardLog, LogError> {
        let open_error = |path: &Path, source: io::Error| LogError::Open {
            shard,
            path: path.to_path_buf(),
            source: Arc::new(source),
        };
        std::fs::create_dir_all(dir).map_err(|e| open_error(dir, e))?;
        let counters = Arc::new(LogCounters::default());
        let errors = ErrorContext {
            shard,
            failure: Arc::new(StorageFailure::default()),
        };
        let legacy = dir.join(LEGACY_LOG_FILE_NAME);
        if legacy.exists() {
            // Refused rather than ignored: entries after the last snapshot would be lost.
            let message = "shard log in the old redb format; no migration exists (pre-release)";
            return Err(open_error(
                &legacy,
                io::Error::new(io::ErrorKind::InvalidData, message),
            ));
        }
        let log_path = dir.join(LOG_DIR_NAME);
        let mut log_store =
            LogStore::open_with(&log_path, counters.clone(), errors.failure.clone())
                .map_err(|e| open_error(&log_path, e))?;
        let writer_thread = log_store.take_writer_thread();
        let state_machine = StateMachineStore::open(dir, state).map_err(|e| open_error(dir, e))?;
        let config = raft_config(options, &errors, cluster.is_some())?;
        let (node_id, raft) = match &cluster {
            None => (
                NODE_ID,
                Raft::new(
                    NODE_ID,
                    config,
                    SingleNodeNetworkFactory,
                    log_store,
                    state_machine,
                )
                .await,
            ),
            Some(layout) => (
                layout.node_id,
                Raft::new(
                    layout.node_id,
                    config,
                    ClusterNetworkFactory::new(shard, Arc::clone(&layout.transport)),
                    log_store,
                    state_machine,
                )
                .await,
            ),
        };
        let raft = raft.map_err(|fatal| errors.fatal(fatal))?;
        let (proposals, proposals_rx) = mpsc::channel(options.proposals_inflight_max.max(1));
        let batcher = batcher::spawn(raft.clone(), proposals_rx, errors.clone());
        Ok(ShardLog {
            core: Arc::new(Core {
                shard,
                node_id,
                raft,
                proposals,
                inflight: Arc::new(Semaphore::new(options.proposals_inflight_max.max(1))),
                errors,
                proposer: cluster.as_ref().map(|layout| Proposer::new(layout.node_id)),
                cluster,
            }),
            batcher,
            writer_thread,
            counters,
        })
    }

    /// Initializes a pristine group, then waits for leadership and for the replay of the log.
    async fn become_leader(&self, wait_ms_max: u64) -> Result<(), LogError> {
        let core = &self.core;
        let initialized = core
            .raft
            .is_initialized()
            .await
            .map_err(|e| core.errors.fatal(e))?;
        if !initialized {
            let members = BTreeMap::from([(NODE_ID, BasicNode::default())]);
            core.raft
                .initialize(members)
                .await
                .map_err(|e| core.errors.raft(e))?;
        }
        let timeout = Some(Duration::from_millis(wait_ms_max));
        let timed_out = |_| LogError::LeaderTimeout {
            shard: core.shard,
            waited_ms: wait_ms_max,
        };
        let metrics = core
            .raft
            .wait(timeout)
            .state(ServerState::Leader, "leader")
            .await
            .map_err(timed_out)?;
        core.raft
            .wait(timeout)
            .applied_index_at_least(metrics.last_log_index, "log replayed")
            .await
            .map_err(timed_out)?;
        tracing::info!(shard = %core.shard, last_log_index = ?metrics.last_log_index, "shard log open");
        Ok(())
    }

    /// Proposes `delta` and returns its outcome once it is committed, durable and applied.
    /// Waits for a slot when too many proposals are in flight. In a cluster, a follower forwards
    /// the delta to the leader and returns once its own state has applied the entry, so a write
    /// is visible on the node that took it when the call returns.
    pub async fn propose(&self, delta: Delta) -> Result<DeltaOutcome, LogError> {
        self.core.propose(delta).await
    }

    /// Asks for a snapshot now (it is taken between applies, then the log is compacted behind
    /// it), beside the one every `entries_per_snapshot` entries: for callers that bound what
    /// the log holds in bytes.
    pub async fn trigger_snapshot(&self) -> Result<(), LogError> {
        self.core
            .raft
            .trigger()
            .snapshot()
            .await
            .map_err(|_| LogError::Stopped {
                shard: self.core.shard,
            })
    }

    /// A handle for the cluster service: serves peers' calls to this shard and offers the
    /// cluster operations, without keeping the log open.
    pub fn peer(&self) -> crate::ShardPeer {
        crate::ShardPeer::new(&self.core)
    }

    /// Stops the group, waits for in-flight proposals to be answered and closes the log files.
    pub async fn shutdown(self) {
        let ShardLog {
            core,
            batcher,
            writer_thread,
            ..
        } = self;
        let shard = core.shard;
        let raft = core.raft.clone();
        core.inflight.close();
        if let Err(error) = raft.shutdown().await {
            tracing::warn!(%shard, %error, "raft core did not stop cleanly");
        }
        // Peer handles hold the core only briefly (weakly otherwise): once the last call in
        // flight is answered, the proposal channel closes and the batcher ends.
        drop(core);
        let _ = batcher.await;
        // The core dropped the log store: the writer drains its queue and closes the database.
        drop(raft);
        if let Some(thread) = writer_thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        tracing::info!(%shard, "shard log shut down");
    }

    /// The shard this log belongs to.
    pub fn shard(&self) -> ShardId {
        self.core.shard
    }

    /// A snapshot of the log's metrics.
    pub fn metrics(&self) -> ShardLogMetrics {
        let raft = self.core.raft.metrics().borrow().clone();
        let counters = &self.counters;
        ShardLogMetrics {
            last_log_index: raft.last_log_index,
            last_applied_index: raft.last_applied.map(|log_id| log_id.index),
            committed_index: counters.committed(),
            snapshot_index: raft.snapshot.map(|log_id| log_id.index),
            purged_index: raft.purged.map(|log_id| log_id.index),
            is_leader: raft.state == ServerState::Leader,
            group_commits: counters
                .group_commits
                .load(std::sync::atomic::Ordering::Relaxed),
            entries_flushed: counters
                .entries_flushed
                .load(std::sync::atomic::Ordering::Relaxed),
            deltas_flushed: counters
                .deltas_flushed
                .load(std::sync::atomic::Ordering::Relaxed),
        }
    }
}

/// openraft's config for a shard group: short timeouts (a single voter has no peers to wait
/// for; cluster peers are on a LAN), snapshots every `entries_per_snapshot` entries, then
/// compaction down to a few entries.
fn raft_config(
    options: &ShardLogOptions,
    errors: &ErrorContext,
    cluster: bool,
) -> Result<Arc<Config>, LogError> {
    let config = Config {
        cluster_name: format!("kiseki-{}", errors.shard),
        heartbeat_interval: 100,
        election_timeout_min: if cluster { 500 } else { 300 },
        election_timeout_max: if cluster { 1000 } else { 600 },
        // Bounded snapshot chunks, well inside the transport's message limit.
        snapshot_max_chunk_size: 4 * 1024 * 1024,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(options.entries_per_snapshot.max(1)),
        max_in_snapshot_log_to_keep: options.entries_kept_after_snapshot,
        ..Config::default()
    };
    let config = config.validate().map_err(|error| errors.raft(error))?;
    Ok(Arc::new(config))
}
