//! The payload of one Raft entry: the deltas of one group commit, applied in order.

use kiseki_types::limits::{DELTA_EXTENTS_MAX, LOG_GROUP_COMMIT_ENTRIES_MAX};
use serde::{Deserialize, Serialize};

use crate::{Delta, ProposalTag};

/// The deltas that one group commit packed into one Raft entry. They are applied in order and
/// each gets its own outcome; an invalid delta does not affect the others.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeltaBatch {
    /// The deltas, in proposal order.
    pub deltas: Vec<Delta>,
    /// The tag of each delta (same positions; empty when no delta is tagged): a tagged delta
    /// is applied at most once per tag (see `dedupe`).
    pub tags: Vec<Option<ProposalTag>>,
}

impl DeltaBatch {
    /// A batch of one delta.
    pub fn single(delta: Delta) -> Self {
        DeltaBatch {
            deltas: vec![delta],
            tags: Vec::new(),
        }
    }

    /// The tag of the delta at `position`, if it has one.
    pub fn tag(&self, position: usize) -> Option<ProposalTag> {
        self.tags.get(position).copied().flatten()
    }
}

/// A batch as log records of format version 1 hold it (before tags); read, never written.
#[derive(Debug, Deserialize, Serialize)]
pub(crate) struct DeltaBatchV1 {
    pub(crate) deltas: Vec<Delta>,
}

/// Bounds what one batch may hold: at most [`LOG_GROUP_COMMIT_ENTRIES_MAX`] deltas and about
/// [`DELTA_EXTENTS_MAX`] extents, so one log entry stays about as large as one maximal delta.
#[derive(Debug, Default)]
pub(crate) struct BatchBudget {
    deltas: usize,
    extents: usize,
}

impl BatchBudget {
    /// Takes `delta` into the budget if it fits; an empty batch always takes one delta.
    pub(crate) fn try_take(&mut self, delta: &Delta) -> bool {
        let extents = extent_count(delta);
        let empty = self.deltas == 0;
        let fits = self.deltas < LOG_GROUP_COMMIT_ENTRIES_MAX
            && self.extents.saturating_add(extents) <= DELTA_EXTENTS_MAX;
        if empty || fits {
            self.deltas += 1;
            self.extents = self.extents.saturating_add(extents);
            true
        } else {
            false
        }
    }
}

/// Extents a delta carries: what makes a delta large.
fn extent_count(delta: &Delta) -> usize {
    match delta {
        Delta::Write { extents, .. } | Delta::Append { extents, .. } => extents.len(),
        Delta::PutFile { content, .. }
        | Delta::PutObject { content, .. }
        | Delta::PutPart { content, .. } => content.extents.len(),
        // A placement record is about as large as a few extents.
        Delta::Placed { placements, delta } => placements.len() + extent_count(delta),
        Delta::RecordPlacement { placements } => placements.len(),
        // A carried frame weighs as many extents as take its bytes (an extent is ~64 bytes),
        // so a batch of carried frames stays about as large as one maximal delta.
        Delta::Carried { frames, delta } => {
            frames
                .iter()
                .map(|frame| frame.frame.len() / 64 + 1)
                .sum::<usize>()
                + extent_count(delta)
        }
        _ => 0,
    }
}
