//! The placement table of a shard: where the fragments of each chunk of an erasure-coded pool
//! were put, as recorded in the log. Chunk stores read it to find fragments without deriving
//! (or scanning for) them; it is part of the shard's snapshot.
//!
//! Entries are replaced by newer records of the same chunk and never removed yet: chunk garbage
//! collection does not exist; when it does, deleting a chunk removes its entry in the same delta.

use kiseki_log::ChunkPlacement;
use kiseki_types::ChunkId;

use super::NamespaceView;

impl NamespaceView {
    /// Records placements (a newer record of a chunk replaces the older). Records over their
    /// bounds are skipped: the same on every replica, and the chunk stays readable by derivation.
    pub(crate) fn record_placements(&mut self, placements: &[ChunkPlacement]) {
        for placement in placements {
            if placement.is_bounded() {
                self.placements.insert(placement.chunk, placement.clone());
            }
        }
    }

    /// The recorded placement of `chunk`, if any.
    pub fn placement(&self, chunk: ChunkId) -> Option<&ChunkPlacement> {
        self.placements.get(&chunk)
    }

    /// Whether `placement` is already recorded exactly so (a re-write of a stored chunk).
    pub fn placement_recorded(&self, placement: &ChunkPlacement) -> bool {
        self.placements.get(&placement.chunk) == Some(placement)
    }

    /// Chunks with a recorded placement.
    pub fn placement_count(&self) -> usize {
        self.placements.len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeMap;

    use kiseki_log::{Delta, FragmentSite, Owner, ShardState};
    use kiseki_types::{ChunkId, Composition, ErrorKind, Extent, Timestamp};

    use super::*;

    fn record(chunk: u8, device: u32) -> ChunkPlacement {
        ChunkPlacement {
            chunk: ChunkId([chunk; 32]),
            pool: "bulk".into(),
            data_fragments: 2,
            parity_fragments: 1,
            replicated: false,
            generation: 42,
            fragments: (0..3)
                .map(|node| FragmentSite {
                    node,
                    device: device + node as u32,
                })
                .collect(),
        }
    }

    fn put_file(name: &str, chunk: u8) -> Delta {
        Delta::PutFile {
            path: vec![name.into()],
            content: Composition::from_sequential(vec![Extent {
                file_offset: 0,
                len: 10,
                chunk: ChunkId([chunk; 32]),
                chunk_offset: 0,
            }]),
            user_metadata: BTreeMap::new(),
            mode: 0o644,
            owner: Owner { uid: 0, gid: 0 },
            time: Timestamp(1),
        }
    }

    #[test]
    fn placed_records_then_applies_the_composition() {
        let mut view = NamespaceView::new(0);
        let delta = Delta::Placed {
            placements: vec![record(1, 10)],
            delta: Box::new(put_file("a", 1)),
        };
        let applied = view.apply(1, &delta).unwrap();
        assert!(applied.inode.is_some(), "the inner delta's outcome");
        assert_eq!(view.placement(ChunkId([1; 32])), Some(&record(1, 10)));
        assert!(view.resolve(&["a".to_owned()]).is_ok());

        // A refused composition still records (its chunks are stored either way).
        let refused = Delta::Placed {
            placements: vec![record(2, 20)],
            delta: Box::new(Delta::Unlink {
                parent: kiseki_types::InodeId::ROOT,
                name: "missing".into(),
                time: Timestamp(2),
            }),
        };
        assert_eq!(
            view.apply(2, &refused).unwrap_err().kind,
            ErrorKind::NotFound
        );
        assert!(view.placement(ChunkId([2; 32])).is_some());

        // Nesting is refused; a moved record replaces the old one.
        let nested = Delta::Placed {
            placements: Vec::new(),
            delta: Box::new(delta),
        };
        assert!(view.apply(3, &nested).is_err());
        view.apply(
            4,
            &Delta::RecordPlacement {
                placements: vec![record(1, 99)],
            },
        )
        .unwrap();
        assert_eq!(view.placement(ChunkId([1; 32])), Some(&record(1, 99)));
        assert!(view.placement_recorded(&record(1, 99)));
        assert_eq!(view.placement_count(), 2);

        // Records over their bounds are skipped the same way everywhere.
        let mut huge = record(3, 1);
        huge.pool = "p".repeat(kiseki_log::PLACEMENT_POOL_NAME_BYTES_MAX + 1);
        view.apply(
            5,
            &Delta::RecordPlacement {
                placements: vec![huge],
            },
        )
        .unwrap();
        assert!(view.placement(ChunkId([3; 32])).is_none());
    }

    #[test]
    fn snapshots_keep_the_table_and_old_snapshots_still_restore() {
        let mut view = NamespaceView::new(0);
        view.apply(
            1,
            &Delta::Placed {
                placements: vec![record(1, 10), record(2, 20)],
                delta: Box::new(put_file("a", 1)),
            },
        )
        .unwrap();
        let bytes = view.encode_snapshot();
        let mut restored = NamespaceView::new(0);
        restored.restore_snapshot(&bytes).unwrap();
        assert_eq!(restored.placement(ChunkId([2; 32])), Some(&record(2, 20)));
        assert_eq!(restored.placement_count(), 2);
        assert!(restored.resolve(&["a".to_owned()]).is_ok());

        // Version 2: the view alone, as earlier builds wrote it.
        let mut old = vec![2u8];
        old.extend(bincode::serde::encode_to_vec(&view, bincode::config::standard()).unwrap());
        let mut restored = NamespaceView::new(0);
        restored.restore_snapshot(&old).unwrap();
        assert_eq!(restored.placement_count(), 0);
        assert!(restored.resolve(&["a".to_owned()]).is_ok());

        // A version-3 snapshot cut inside its table is refused, not half-restored.
        let mut restored = NamespaceView::new(0);
        assert!(restored
            .restore_snapshot(&bytes[..bytes.len() - 5])
            .is_err());
    }
}
