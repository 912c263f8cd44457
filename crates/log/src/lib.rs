//! The per-shard log of Kiseki. Every metadata mutation of a shard is a typed [`Delta`]; this
//! crate orders deltas in the shard's openraft group, makes them durable, applies them to the
//! shard's materialized state ([`ShardState`], implemented by the namespace crate) and answers the
//! proposer with the applied [`DeltaOutcome`]. It owns the durable log storage (redb, written by
//! one group-commit thread per shard), the state-machine snapshots and log compaction.
//!
//! This crate never knows namespace semantics (it applies deltas through [`ShardState`] without
//! looking inside them) and never talks to gateways or clients. Each shard is a single-tenant Raft
//! group with one voter for now; peers arrive with the multi-node cluster work, which changes the
//! membership and the network factory, not the storage.
//!
//! # Storage choice
//! Log entries, the vote, the committed id and the last purged id live in one redb database per
//! shard (`log.redb`). redb gives crash-safe, checksummed copy-on-write commits with a single
//! commit path, so truncate and purge are range deletes inside the same transaction as the
//! appends that precede them: no segment rolling, torn-tail recovery or index files of our own to
//! get wrong. Every stored value is a versioned record (version byte, crc32c, bincode 2), so the
//! format can evolve (see `codec`).
//!
//! # Group commit
//! openraft 0.9's core waits for each `append` to be flushed before it handles the next client
//! write, so coalescing at the storage layer alone would give one entry per fsync. Group commit
//! therefore happens twice: [`ShardLog::propose`] hands deltas to a batcher that packs everything
//! queued while the previous batch was being committed into one Raft entry (a [`DeltaBatch`]), and
//! the log store's writer thread drains every queued write (appends, votes, truncations, purges)
//! into one redb transaction and one fsync. The second stage pays off as soon as openraft
//! pipelines appends (0.10) or followers append replicated batches.

mod batch;
mod batcher;
mod codec;
mod delta;
mod error;
mod log_store;
mod metrics;
mod network;
mod shard_log;
mod snapshot_file;
mod state;
mod state_machine;
mod type_config;

pub use batch::DeltaBatch;
pub use delta::{Applied, AttrChanges, Delta, DeltaOutcome, NewNode, Owner};
pub use error::LogError;
pub use log_store::{LogReader, LogStore};
pub use metrics::ShardLogMetrics;
pub use network::{SingleNodeNetwork, SingleNodeNetworkFactory};
pub use shard_log::{ShardLog, ShardLogOptions};
pub use state::{ShardState, SnapshotError};
pub use state_machine::{SnapshotBuilder, StateMachineStore};
pub use type_config::{BatchOutcome, TypeConfig};
