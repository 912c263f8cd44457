//! Chunk placement in the shard log: the namespace side of [`PlacementJournal`].
//!
//! When a delta that references chunks (a composition: `PutObject`, `PutFile`, `PutPart`,
//! `Write`, `Append`) is proposed, the fresh layouts the erasure-coded stores noted for those
//! chunks are taken from the journal and the delta is wrapped in `Delta::Placed`: one log entry,
//! no extra quorum round, and a chunk referenced by an acknowledged write has its placement in
//! the log. Layouts a repair moved are proposed as `Delta::RecordPlacement` by the server.
//! Chunk stores read recorded layouts back through [`ViewBook`], a [`PlacementBook`] over the
//! open tenants' views.
//!
//! This module converts and routes records; it decides nothing about where fragments go.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use kiseki_chunk::{
    DeviceId, EcProfile, PlacementBook, PlacementJournal, PoolName, RecordedLayout,
};
use kiseki_log::{ChunkPlacement, Delta, FragmentSite, PLACEMENTS_PER_DELTA_MAX};
use kiseki_types::{ChunkId, Extent, InodeId, NamespaceError, TenantId};

use crate::{NamespaceView, TenantNamespace};

/// The journal a [`crate::Namespace`] shares with its tenants, set once.
pub(crate) type JournalCell = Arc<OnceLock<Arc<PlacementJournal>>>;
/// The open tenants' views.
pub(crate) type Views = Arc<RwLock<HashMap<TenantId, Arc<RwLock<NamespaceView>>>>>;

/// The log record of a layout.
pub fn record_of_layout(chunk: ChunkId, layout: &RecordedLayout) -> ChunkPlacement {
    let (data_fragments, parity_fragments, replicated) = match layout.profile {
        EcProfile::ReedSolomon { k, m } => (k, m, false),
        EcProfile::Replicate { copies } => (1, copies.saturating_sub(1), true),
    };
    ChunkPlacement {
        chunk,
        pool: layout.pool.0.clone(),
        data_fragments,
        parity_fragments,
        replicated,
        generation: layout.generation,
        fragments: layout
            .fragments
            .iter()
            .map(|(node, device)| FragmentSite {
                node: *node,
                device: device.0,
            })
            .collect(),
    }
}

/// The layout a log record names, if its profile is valid.
pub fn layout_of_record(record: &ChunkPlacement) -> Option<RecordedLayout> {
    let profile = if record.replicated {
        EcProfile::Replicate {
            copies: record.parity_fragments.checked_add(1)?,
        }
    } else {
        EcProfile::ReedSolomon {
            k: record.data_fragments,
            m: record.parity_fragments,
        }
    }
    .new()
    .ok()?;
    Some(RecordedLayout {
        pool: PoolName(record.pool.clone()),
        profile,
        generation: record.generation,
        fragments: record
            .fragments
            .iter()
            .map(|site| (site.node, DeviceId(site.device)))
            .collect(),
    })
}

/// Recorded layouts, looked up in the views of the open tenants.
pub(crate) struct ViewBook {
    views: Views,
}

impl ViewBook {
    pub(crate) fn new(views: Views) -> Self {
        ViewBook { views }
    }
}

impl PlacementBook for ViewBook {
    fn recorded(&self, tenant: TenantId, chunk: ChunkId) -> Option<RecordedLayout> {
        let view = {
            let views = self
                .views
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            Arc::clone(views.get(&tenant)?)
        };
        let view = view.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        view.placement(chunk).and_then(layout_of_record)
    }
}

/// One extent of a file and the recorded placement of its chunk.
#[derive(Clone, Debug)]
pub struct ChunkPlacementInfo {
    /// The extent.
    pub extent: Extent,
    /// Its chunk's recorded placement (`None`: not recorded; found by derivation).
    pub placement: Option<ChunkPlacement>,
}

/// The chunks a delta references (compositions), in order, without repeats.
fn referenced_chunks(delta: &Delta) -> Vec<ChunkId> {
    let extents: &[Extent] = match delta {
        Delta::PutFile { content, .. }
        | Delta::PutObject { content, .. }
        | Delta::PutPart { content, .. } => &content.extents,
        Delta::Write { extents, .. } | Delta::Append { extents, .. } => extents,
        _ => return Vec::new(),
    };
    let mut chunks: Vec<ChunkId> = Vec::with_capacity(extents.len());
    for extent in extents {
        if chunks.last() != Some(&extent.chunk) {
            chunks.push(extent.chunk);
        }
    }
    chunks.sort_unstable();
    chunks.dedup();
    chunks
}

impl TenantNamespace {
    /// Wraps `delta` with the fresh placements of the chunks it references (those not already
    /// recorded exactly so); returns the layouts taken, to give back if the proposal fails.
    pub(crate) fn with_placements(&self, delta: Delta) -> (Delta, Vec<(ChunkId, RecordedLayout)>) {
        let Some(journal) = self.journal() else {
            return (delta, Vec::new());
        };
        let chunks = referenced_chunks(&delta);
        if chunks.is_empty() {
            return (delta, Vec::new());
        }
        let taken = journal.take_fresh(self.tenant(), &chunks);
        if taken.is_empty() {
            return (delta, taken);
        }
        let placements: Vec<ChunkPlacement> = {
            let view = self.view();
            taken
                .iter()
                .map(|(chunk, layout)| record_of_layout(*chunk, layout))
                .filter(|record| record.is_bounded() && !view.placement_recorded(record))
                .take(PLACEMENTS_PER_DELTA_MAX)
                .collect()
        };
        if placements.is_empty() {
            return (delta, taken);
        }
        let wrapped = Delta::Placed {
            placements,
            delta: Box::new(delta),
        };
        (wrapped, taken)
    }

    /// Returns layouts taken for a proposal that failed, so a retry of the write records them.
    pub(crate) fn untake_placements(&self, taken: Vec<(ChunkId, RecordedLayout)>) {
        if let Some(journal) = self.journal() {
            for (chunk, layout) in taken {
                journal.note_fresh(self.tenant(), chunk, layout);
            }
        }
    }

    /// Records layouts a rebuild or scrub moved (one `RecordPlacement` delta, through the
    /// shard's leader). At most [`PLACEMENTS_PER_DELTA_MAX`] per call.
    pub async fn record_placements(
        &self,
        layouts: &[(ChunkId, RecordedLayout)],
    ) -> Result<(), NamespaceError> {
        let placements: Vec<ChunkPlacement> = layouts
            .iter()
            .take(PLACEMENTS_PER_DELTA_MAX)
            .map(|(chunk, layout)| record_of_layout(*chunk, layout))
            .filter(ChunkPlacement::is_bounded)
            .collect();
        if placements.is_empty() {
            return Ok(());
        }
        let count = placements.len();
        self.propose_outcome(
            Delta::RecordPlacement { placements },
            &format!("record {count} chunk placements"),
        )
        .await
        .map(|_| ())
    }

    /// The recorded placement of `chunk`, if any.
    pub fn chunk_placement(&self, chunk: ChunkId) -> Option<ChunkPlacement> {
        self.view().placement(chunk).cloned()
    }

    /// Chunks with a recorded placement in this tenant's shard.
    pub fn placement_count(&self) -> usize {
        self.view().placement_count()
    }

    /// Every extent of file `inode` (at most `extents_max`) with its chunk's recorded placement.
    pub fn file_placements(
        &self,
        inode: InodeId,
        extents_max: usize,
    ) -> Result<Vec<ChunkPlacementInfo>, NamespaceError> {
        let layout = self.layout(inode, 0, u64::MAX, extents_max)?;
        let view = self.view();
        Ok(layout
            .extents
            .into_iter()
            .map(|extent| ChunkPlacementInfo {
                placement: view.placement(extent.chunk).cloned(),
                extent,
            })
            .collect())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn records_and_layouts_convert_both_ways() {
        for profile in [
            EcProfile::ReedSolomon { k: 4, m: 2 },
            EcProfile::Replicate { copies: 3 },
        ] {
            let layout = RecordedLayout {
                pool: PoolName("bulk".into()),
                profile,
                generation: 77,
                fragments: (0..profile.total_fragments() as u64)
                    .map(|i| (i % 3, DeviceId::of(&format!("dev{i}"))))
                    .collect(),
            };
            let record = record_of_layout(ChunkId([9; 32]), &layout);
            assert!(record.is_bounded());
            assert_eq!(layout_of_record(&record).unwrap(), layout);
        }
        let mut bad = record_of_layout(
            ChunkId([1; 32]),
            &RecordedLayout {
                pool: PoolName("p".into()),
                profile: EcProfile::ReedSolomon { k: 2, m: 1 },
                generation: 1,
                fragments: Vec::new(),
            },
        );
        bad.data_fragments = 0;
        assert!(layout_of_record(&bad).is_none());
    }
}
