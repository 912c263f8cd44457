//! Exactly-once proposals. Every proposal of a cluster shard carries a [`ProposalTag`]: who
//! proposed it ([`ProposerId`]: node id and a random incarnation of the process) and a sequence
//! number. The state machine keeps, per proposer, the outcomes of the sequence numbers it applied
//! ([`DedupeTable`], part of the replicated state and of every snapshot), so a proposal that
//! reaches the log twice (re-sent after a connection broke once the leader had taken it) is
//! applied once and the second copy returns the first one's outcome.
//!
//! # Bounds
//! - Per proposer at most [`DEDUPE_ENTRIES_PER_PROPOSER_MAX`] outcomes. Each tag also carries
//!   `done_below`: the proposer has its answer for every sequence number below it, so the table
//!   forgets those outcomes; what stays is about what the proposer still has in flight (it
//!   holds at most that many proposals in flight, see [`Proposer`]). Past the bound the lowest
//!   outcome is dropped. Sequence numbers below what was forgotten (the `floor`) are refused:
//!   such a proposal is not applied and its outcome is an `Unavailable` error, so forgetting
//!   can never apply a delta twice (a very late first copy is refused too; its proposer had
//!   long given up on it).
//! - At most [`DEDUPE_PROPOSERS_MAX`] proposers; a new one evicts the proposer whose last
//!   proposal is oldest in the log. A proposer that was evicted and then re-sends a proposal
//!   could have it applied twice: that needs more than [`DEDUPE_PROPOSERS_MAX`] other
//!   proposers (node processes; every restart is a new one) writing to this shard between the
//!   first copy and the re-send, which the proposer makes within [`crate::CLUSTER_WAIT`].
//!
//! This module never decides what a delta means; it only compares tags.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use kiseki_types::{ErrorKind, NamespaceError};
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::DeltaOutcome;

/// Most outcomes the table keeps per proposer (and most proposals a proposer has in flight).
pub const DEDUPE_ENTRIES_PER_PROPOSER_MAX: usize = 4096;
/// Most proposers the table keeps per shard.
pub const DEDUPE_PROPOSERS_MAX: usize = 256;

/// Who proposed: a node, and the incarnation of its process (random, so that a restarted node,
/// whose sequence numbers start again, is a new proposer).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ProposerId {
    /// The proposing node.
    pub node: u64,
    /// Random per process.
    pub incarnation: u64,
}

/// The identity of one proposal, the same on every attempt to get it committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposalTag {
    /// Who proposed it.
    pub proposer: ProposerId,
    /// Unique per proposer.
    pub sequence: u64,
    /// The proposer has the answers of all its sequence numbers below this one.
    pub done_below: u64,
}

/// What the state machine remembers of one proposer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct ProposerRecord {
    /// Sequence numbers below this are forgotten: a proposal with one is refused.
    floor: u64,
    /// Index of the last log entry that carried a proposal of this proposer (for eviction).
    last_index: u64,
    /// Outcomes of the applied sequence numbers at or above `floor`.
    outcomes: BTreeMap<u64, DeltaOutcome>,
}

/// The per-proposer outcomes of a shard's applied proposals (see the module docs).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DedupeTable {
    proposers: BTreeMap<ProposerId, ProposerRecord>,
}

impl DedupeTable {
    /// Looks `tag` up before its delta is applied at log entry `index`: `Some(outcome)` when the
    /// delta must not be applied (a duplicate, or forgotten), `None` when it must.
    pub(crate) fn check(&mut self, tag: &ProposalTag, index: u64) -> Option<DeltaOutcome> {
        if !self.proposers.contains_key(&tag.proposer)
            && self.proposers.len() >= DEDUPE_PROPOSERS_MAX
        {
            let oldest = self
                .proposers
                .iter()
                .min_by_key(|(_, record)| record.last_index)
                .map(|(id, _)| *id);
            if let Some(oldest) = oldest {
                tracing::debug!(?oldest, "dedupe table full: forgetting a proposer");
                self.proposers.remove(&oldest);
            }
        }
        let record = self.proposers.entry(tag.proposer).or_default();
        record.last_index = index;
        if tag.done_below > record.floor {
            record.floor = tag.done_below;
            record.outcomes = record.outcomes.split_off(&tag.done_below);
        }
        if tag.sequence < record.floor {
            return Some(Err(NamespaceError::new(
                ErrorKind::Unavailable,
                format!(
                    "proposal {} of node {} came too late to be applied (its outcome may be \
                     forgotten); not applied",
                    tag.sequence, tag.proposer.node
                ),
            )));
        }
        record.outcomes.get(&tag.sequence).cloned()
    }

    /// Records the outcome of the delta `tag` carried, after it was applied.
    pub(crate) fn record(&mut self, tag: &ProposalTag, outcome: &DeltaOutcome) {
        let record = self.proposers.entry(tag.proposer).or_default();
        record.outcomes.insert(tag.sequence, outcome.clone());
        while record.outcomes.len() > DEDUPE_ENTRIES_PER_PROPOSER_MAX {
            if let Some((lowest, _)) = record.outcomes.pop_first() {
                record.floor = record.floor.max(lowest + 1);
            }
        }
    }

    /// Encodes the table for a snapshot (bincode 2).
    pub(crate) fn encode(&self) -> Result<Vec<u8>, String> {
        bincode::serde::encode_to_vec(self, bincode::config::standard())
            .map_err(|error| format!("encoding the dedupe table: {error}"))
    }

    /// Decodes a table written by [`DedupeTable::encode`]; empty bytes are an empty table.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, String> {
        if bytes.is_empty() {
            return Ok(DedupeTable::default());
        }
        bincode::serde::decode_from_slice(bytes, bincode::config::standard())
            .map(|(table, _)| table)
            .map_err(|error| format!("decoding the dedupe table: {error}"))
    }

    /// Outcomes kept for `proposer`.
    #[cfg(test)]
    pub(crate) fn outcomes_of(&self, proposer: &ProposerId) -> usize {
        self.proposers
            .get(proposer)
            .map_or(0, |record| record.outcomes.len())
    }
}

/// The proposing side: hands out tags, tracks which are still in flight (for `done_below`) and
/// bounds them to [`DEDUPE_ENTRIES_PER_PROPOSER_MAX`].
pub(crate) struct Proposer {
    id: ProposerId,
    pending: Arc<Mutex<BTreeSet<u64>>>,
    slots: Arc<Semaphore>,
}

/// Sequence numbers of this process, shared by its shards (so that a shard closed and opened
/// again in the same process never reuses one).
static NEXT_SEQUENCE: AtomicU64 = AtomicU64::new(1);

/// This process's incarnation: random (std's per-process random hasher keys, mixed with the
/// time and the pid).
fn incarnation() -> u64 {
    static INCARNATION: OnceLock<u64> = OnceLock::new();
    *INCARNATION.get_or_init(|| {
        let mut hasher = RandomState::new().build_hasher();
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        hasher.write_u128(nanos);
        hasher.write_u32(std::process::id());
        hasher.finish()
    })
}

/// One proposal in flight: its tag; dropping it marks the proposal answered.
pub(crate) struct Ticket {
    pub(crate) tag: ProposalTag,
    pending: Arc<Mutex<BTreeSet<u64>>>,
    _slot: OwnedSemaphorePermit,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.tag.sequence);
    }
}

impl Proposer {
    /// The proposer of this process on node `node`.
    pub(crate) fn new(node: u64) -> Self {
        Proposer {
            id: ProposerId {
                node,
                incarnation: incarnation(),
            },
            pending: Arc::new(Mutex::new(BTreeSet::new())),
            slots: Arc::new(Semaphore::new(DEDUPE_ENTRIES_PER_PROPOSER_MAX)),
        }
    }

    /// A tag for a new proposal (waits while too many are in flight); `None` once closed.
    pub(crate) async fn begin(&self) -> Option<Ticket> {
        let slot = Arc::clone(&self.slots).acquire_owned().await.ok()?;
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let sequence = NEXT_SEQUENCE.fetch_add(1, Ordering::Relaxed);
        pending.insert(sequence);
        let done_below = pending.first().copied().unwrap_or(sequence);
        drop(pending);
        Some(Ticket {
            tag: ProposalTag {
                proposer: self.id,
                sequence,
                done_below,
            },
            pending: Arc::clone(&self.pending),
            _slot: slot,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::Applied;

    fn tag(sequence: u64, done_below: u64) -> ProposalTag {
        ProposalTag {
            proposer: ProposerId {
                node: 2,
                incarnation: 9,
            },
            sequence,
            done_below,
        }
    }

    fn applied(inode: u64) -> DeltaOutcome {
        Ok(Applied {
            inode: Some(kiseki_types::InodeId(inode)),
        })
    }

    #[test]
    fn a_duplicate_returns_the_first_outcome() {
        let mut table = DedupeTable::default();
        assert_eq!(table.check(&tag(5, 5), 10), None);
        table.record(&tag(5, 5), &applied(42));
        assert_eq!(table.check(&tag(5, 5), 11), Some(applied(42)));
        let back = DedupeTable::decode(&table.encode().unwrap()).unwrap();
        assert_eq!(back, table);
    }

    #[test]
    fn answered_outcomes_are_forgotten_and_late_copies_refused() {
        let mut table = DedupeTable::default();
        for sequence in 1..=3 {
            assert_eq!(table.check(&tag(sequence, 1), 1), None);
            table.record(&tag(sequence, 1), &applied(sequence));
        }
        assert_eq!(table.check(&tag(4, 3), 2), None);
        table.record(&tag(4, 3), &applied(4));
        assert_eq!(table.outcomes_of(&tag(1, 1).proposer), 2);
        let late = table.check(&tag(2, 1), 3).unwrap();
        assert_eq!(late.unwrap_err().kind, ErrorKind::Unavailable);
        assert_eq!(table.check(&tag(3, 1), 3), Some(applied(3)));
    }

    #[test]
    fn the_table_is_bounded() {
        let mut table = DedupeTable::default();
        let count = DEDUPE_ENTRIES_PER_PROPOSER_MAX as u64 + 10;
        for sequence in 1..=count {
            table.check(&tag(sequence, 1), sequence);
            table.record(&tag(sequence, 1), &applied(sequence));
        }
        assert_eq!(
            table.outcomes_of(&tag(1, 1).proposer),
            DEDUPE_ENTRIES_PER_PROPOSER_MAX
        );
        assert!(table.check(&tag(1, 1), count + 1).unwrap().is_err());
        for node in 0..DEDUPE_PROPOSERS_MAX as u64 + 5 {
            let mut other = tag(1, 1);
            other.proposer.node = 100 + node;
            table.check(&other, count + 2 + node);
        }
        assert_eq!(table.proposers.len(), DEDUPE_PROPOSERS_MAX);
    }
}
