//! The openraft type configuration of a shard group.

use std::io::Cursor;

use openraft::{BasicNode, TokioRuntime};

use crate::{DeltaBatch, DeltaOutcome};

/// The outcomes of one applied entry: one per delta of its [`DeltaBatch`], in order (empty for
/// blank and membership entries).
pub type BatchOutcome = Vec<DeltaOutcome>;

openraft::declare_raft_types!(
    /// Types of a shard's Raft group: entries carry batches of deltas, node ids are `u64`.
    pub TypeConfig:
        D = DeltaBatch,
        R = BatchOutcome,
        NodeId = u64,
        Node = BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = TokioRuntime,
);

/// An entry of a shard log.
pub(crate) type Entry = openraft::Entry<TypeConfig>;
/// A log id of a shard log.
pub(crate) type LogId = openraft::LogId<u64>;
/// A storage error as openraft wants it.
pub(crate) type StorageError = openraft::StorageError<u64>;
