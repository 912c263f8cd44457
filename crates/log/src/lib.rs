//! The per-shard log of Kiseki. Every metadata mutation of a shard is a typed [`Delta`]; this
//! crate orders deltas in the shard's openraft group, makes them durable, applies them to the
//! shard's materialized state ([`ShardState`], implemented by the namespace crate) and answers the
//! proposer with the applied [`DeltaOutcome`]. It owns the durable log storage (append-only
//! segment files, written by one group-commit thread per shard), the state-machine snapshots and
//! log compaction.
//!
//! This crate never knows namespace semantics (it applies deltas through [`ShardState`] without
//! looking inside them) and never talks to gateways or clients. Each shard is a single-tenant Raft
//! group: one voter on a single-node server, or in a cluster ([`ShardLog::open_in_cluster`])
//! `replicas` voters on distinct nodes plus every other node as a learner, talking through a
//! [`ShardTransport`] the server provides. A follower forwards proposals to the leader and
//! answers once its own copy applied them; [`ShardPeer::read_barrier`] gives linearizable reads
//! (read-index on the leader, then wait to apply locally).
//!
//! # Storage choice
//! Log entries live in append-only segment files in the shard's `log/` directory (see
//! `log_store::segments`): each entry is one record (magic, format version, length, crc32c,
//! bincode 2), and a group commit is one `write` and one `fdatasync`. Segments are zero-filled
//! ahead of the write position, so that `fdatasync` writes data only, with no file size for the
//! filesystem to journal. The vote, the committed id and the last purged id live in a small `meta`
//! file replaced atomically (temp file, fsync, rename, directory fsync) when the vote or the purge
//! point changes; the committed id, which openraft does not need durable, rides along and is
//! saved at shutdown. An in-memory index maps each entry to its record.
//!
//! This replaced a redb database: a redb commit rewrote ~11 copy-on-write B-tree pages around its
//! fsync and cost 2–3 bare fdatasyncs, which capped the 16-writer append rate near 3× the fsync
//! rate. The price of our own format is recovery code: on open, the end of the log is the first
//! position of the last segment where no valid record starts (a torn, never acknowledged group
//! commit); bytes after it are zeroed so a later shorter write can never resurrect them, and a bad
//! record before the last segment refuses the open instead of dropping entries. Truncation zeroes
//! the tail of a segment after deleting later segments (durably), purge deletes whole segments
//! after the meta file records the purge point, and a segment is synced before the next one is
//! started, so every crash leaves a prefix of the log.
//!
//! # Group commit
//! openraft 0.9's core waits for each `append` to be flushed before it handles the next client
//! write, so coalescing at the storage layer alone would give one entry per fsync. Group commit
//! therefore happens twice: [`ShardLog::propose`] hands deltas to a batcher that packs everything
//! queued while the previous batch was being committed into one Raft entry (a [`DeltaBatch`]),
//! lingering up to 200 µs for the writers it just answered so they join the next batch instead
//! of alternating with the others (see `batcher`); and the log store's writer thread drains every
//! queued write (appends, votes, truncations, purges) into one `write` and one fsync. The second
//! stage pays off as soon as openraft pipelines appends (0.10) or followers append replicated
//! batches.

mod batch;
mod batcher;
mod cluster;
mod codec;
mod dedupe;
mod delta;
mod error;
mod log_store;
mod metrics;
mod network;
mod peer;
mod shard_log;
mod snapshot_file;
mod state;
mod state_machine;
mod type_config;

pub use batch::DeltaBatch;
pub use cluster::{
    ClusterLayout, MembershipChange, PeerCall, ShardTransport, TransportError, TransportFuture,
    PEER_PAYLOAD_BYTES_MAX,
};
pub use dedupe::{ProposalTag, ProposerId, DEDUPE_ENTRIES_PER_PROPOSER_MAX, DEDUPE_PROPOSERS_MAX};
pub use delta::{
    Applied, AttrChanges, CarriedFrame, ChunkPlacement, Delta, DeltaOutcome, FragmentSite, NewNode,
    ObjectWrite, Owner, PutCondition, CARRIED_FRAMES_PER_DELTA_MAX, CARRIED_FRAME_BYTES_MAX,
    PLACEMENTS_PER_DELTA_MAX, PLACEMENT_FRAGMENTS_MAX, PLACEMENT_POOL_NAME_BYTES_MAX,
};
pub use error::LogError;
pub use log_store::{LogReader, LogStore};
pub use metrics::ShardLogMetrics;
pub use network::{
    ClusterNetwork, ClusterNetworkFactory, SingleNodeNetwork, SingleNodeNetworkFactory,
};
pub use peer::{ShardPeer, CLUSTER_WAIT};
pub use shard_log::{ShardLog, ShardLogOptions};
pub use state::{ShardState, SnapshotError};
pub use state_machine::{SnapshotBuilder, StateMachineStore};
pub use type_config::{BatchOutcome, TypeConfig};
