//! Counters of a shard log, for Prometheus and the benchmarks.

use std::sync::atomic::{AtomicU64, Ordering};

/// A point-in-time view of one shard log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShardLogMetrics {
    /// Index of the last entry in the log.
    pub last_log_index: Option<u64>,
    /// Index of the last entry applied to the state.
    pub last_applied_index: Option<u64>,
    /// Index of the last committed entry, as last saved by the log store.
    pub committed_index: Option<u64>,
    /// Index covered by the current snapshot.
    pub snapshot_index: Option<u64>,
    /// Index up to which the log was purged (compacted away).
    pub purged_index: Option<u64>,
    /// Whether this node leads the shard's group.
    pub is_leader: bool,
    /// Durable commits (one fsync each) of the log writer.
    pub group_commits: u64,
    /// Log entries made durable.
    pub entries_flushed: u64,
    /// Deltas made durable (a log entry carries a batch of deltas).
    pub deltas_flushed: u64,
}

impl ShardLogMetrics {
    /// Deltas made durable per fsync, the figure group commit exists for.
    pub fn deltas_per_group_commit(&self) -> f64 {
        if self.group_commits == 0 {
            return 0.0;
        }
        self.deltas_flushed as f64 / self.group_commits as f64
    }
}

/// Counters the log writer thread and the log store update.
#[derive(Debug, Default)]
pub(crate) struct LogCounters {
    pub(crate) group_commits: AtomicU64,
    pub(crate) entries_flushed: AtomicU64,
    pub(crate) deltas_flushed: AtomicU64,
    /// Committed index + 1; 0 when nothing is committed.
    committed_plus_one: AtomicU64,
}

impl LogCounters {
    pub(crate) fn record_flush(&self, entries: u64, deltas: u64) {
        self.group_commits.fetch_add(1, Ordering::Relaxed);
        self.entries_flushed.fetch_add(entries, Ordering::Relaxed);
        self.deltas_flushed.fetch_add(deltas, Ordering::Relaxed);
    }

    pub(crate) fn set_committed(&self, index: Option<u64>) {
        let value = index.map_or(0, |index| index.saturating_add(1));
        self.committed_plus_one.store(value, Ordering::Relaxed);
    }

    pub(crate) fn committed(&self) -> Option<u64> {
        self.committed_plus_one
            .load(Ordering::Relaxed)
            .checked_sub(1)
    }
}
