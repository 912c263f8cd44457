//! [`ShardLog`]: the handle other crates use to propose deltas to a shard and watch its log.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use kiseki_types::limits::{LOG_ENTRIES_PER_SNAPSHOT, SHARD_PROPOSALS_INFLIGHT_MAX};
use kiseki_types::ShardId;
use openraft::{BasicNode, Config, Raft, ServerState, SnapshotPolicy};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::batcher::{self, Proposal};
use crate::error::ErrorContext;
use crate::log_store::{LogStore, StorageFailure};
use crate::metrics::LogCounters;
use crate::{
    Delta, DeltaOutcome, LogError, ShardLogMetrics, ShardState, SingleNodeNetworkFactory,
    StateMachineStore, TypeConfig,
};

/// The Raft node id of this node in every shard group (single voter for now).
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
    shard: ShardId,
    raft: Raft<TypeConfig>,
    proposals: mpsc::Sender<Proposal>,
    inflight: Arc<Semaphore>,
    batcher: tokio::task::JoinHandle<()>,
    writer_thread: Option<std::thread::JoinHandle<()>>,
    counters: Arc<LogCounters>,
    errors: ErrorContext,
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
        let config = raft_config(&options, &errors)?;
        let raft = Raft::new(
            NODE_ID,
            config,
            SingleNodeNetworkFactory,
            log_store,
            state_machine,
        )
        .await
        .map_err(|fatal| errors.fatal(fatal))?;
        let (proposals, proposals_rx) = mpsc::channel(options.proposals_inflight_max.max(1));
        let log = ShardLog {
            shard,
            raft: raft.clone(),
            proposals,
            inflight: Arc::new(Semaphore::new(options.proposals_inflight_max.max(1))),
            batcher: batcher::spawn(raft, proposals_rx, errors.clone()),
            writer_thread,
            counters,
            errors,
        };
        match log.become_leader(options.leader_wait_ms_max).await {
            Ok(()) => Ok(log),
            Err(error) => {
                log.shutdown().await;
                Err(error)
            }
        }
    }

    /// Initializes a pristine group, then waits for leadership and for the replay of the log.
    async fn become_leader(&self, wait_ms_max: u64) -> Result<(), LogError> {
        let initialized = self
            .raft
            .is_initialized()
            .await
            .map_err(|e| self.errors.fatal(e))?;
        if !initialized {
            let members = BTreeMap::from([(NODE_ID, BasicNode::default())]);
            self.raft
                .initialize(members)
                .await
                .map_err(|e| self.errors.raft(e))?;
        }
        let timeout = Some(Duration::from_millis(wait_ms_max));
        let timed_out = |_| LogError::LeaderTimeout {
            shard: self.shard,
            waited_ms: wait_ms_max,
        };
        let metrics = self
            .raft
            .wait(timeout)
            .state(ServerState::Leader, "leader")
            .await
            .map_err(timed_out)?;
        self.raft
            .wait(timeout)
            .applied_index_at_least(metrics.last_log_index, "log replayed")
            .await
            .map_err(timed_out)?;
        tracing::info!(shard = %self.shard, last_log_index = ?metrics.last_log_index, "shard log open");
        Ok(())
    }

    /// Proposes `delta` and returns its outcome once it is committed, durable and applied.
    /// Waits for a slot when too many proposals are in flight.
    pub async fn propose(&self, delta: Delta) -> Result<DeltaOutcome, LogError> {
        let _slot = self
            .inflight
            .acquire()
            .await
            .map_err(|_| self.errors.stopped())?;
        let (reply, outcome) = oneshot::channel();
        self.proposals
            .send(Proposal { delta, reply })
            .await
            .map_err(|_| self.errors.stopped())?;
        outcome.await.map_err(|_| self.errors.stopped())?
    }

    /// Stops the group, waits for in-flight proposals to be answered and closes the log files.
    pub async fn shutdown(self) {
        let ShardLog {
            shard,
            raft,
            proposals,
            inflight,
            batcher,
            writer_thread,
            ..
        } = self;
        inflight.close();
        if let Err(error) = raft.shutdown().await {
            tracing::warn!(%shard, %error, "raft core did not stop cleanly");
        }
        drop(proposals);
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
        self.shard
    }

    /// A snapshot of the log's metrics.
    pub fn metrics(&self) -> ShardLogMetrics {
        let raft = self.raft.metrics().borrow().clone();
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

/// openraft's config for a single-voter shard group: short timeouts (no peers to wait for),
/// snapshots every `entries_per_snapshot` entries, then compaction down to a few entries.
fn raft_config(options: &ShardLogOptions, errors: &ErrorContext) -> Result<Arc<Config>, LogError> {
    let config = Config {
        cluster_name: format!("kiseki-{}", errors.shard),
        heartbeat_interval: 100,
        election_timeout_min: 300,
        election_timeout_max: 600,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(options.entries_per_snapshot.max(1)),
        max_in_snapshot_log_to_keep: options.entries_kept_after_snapshot,
        ..Config::default()
    };
    let config = config.validate().map_err(|error| errors.raft(error))?;
    Ok(Arc::new(config))
}
