//! The materialized view a shard log applies its deltas to.

use crate::{Delta, DeltaOutcome};

/// A shard's materialized state, built by applying committed deltas in log order. The namespace
/// crate implements it; the log shares it as `Arc<std::sync::RwLock<S>>` between the state
/// machine (write lock while applying) and readers elsewhere (read lock).
pub trait ShardState: Send + Sync + 'static {
    /// Applies one committed delta. `log_index` is the index of the Raft entry holding it: the
    /// deltas of one group commit share an entry, so indices are non-decreasing, not unique.
    /// Must be deterministic: the same deltas in the same order give the same state and outcomes.
    fn apply(&mut self, log_index: u64, delta: &Delta) -> DeltaOutcome;

    /// Encodes the whole state for a snapshot.
    fn encode_snapshot(&self) -> Vec<u8>;

    /// Replaces the whole state with one encoded by [`ShardState::encode_snapshot`].
    fn restore_snapshot(&mut self, bytes: &[u8]) -> Result<(), SnapshotError>;

    /// Returns to the empty state (before any delta).
    fn reset(&mut self);

    /// Makes durable elsewhere what applied entries hold only in the log (frames of
    /// `Delta::Carried`); called before each snapshot, which lets the log drop those entries.
    /// An error fails the snapshot, so the entries stay.
    fn make_durable(&self) -> Result<(), String> {
        Ok(())
    }
}

/// A snapshot that could not be restored.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The bytes are not a valid encoding of the state.
    #[error("corrupt snapshot: {0}")]
    Corrupt(String),
    /// The bytes were written by a format version this build cannot read.
    #[error("unsupported snapshot format version {0}")]
    UnsupportedVersion(u32),
}
