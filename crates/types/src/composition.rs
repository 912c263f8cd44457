use serde::{Deserialize, Serialize};

use crate::ChunkId;

/// A run of file bytes stored in (a part of) one chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extent {
    /// Offset of the run in the file.
    pub file_offset: u64,
    /// Length of the run in bytes (never zero).
    pub len: u32,
    /// The chunk holding the bytes.
    pub chunk: ChunkId,
    /// Offset of the run inside the chunk's plaintext.
    pub chunk_offset: u32,
}

impl Extent {
    /// One past the last file byte of the run.
    pub fn end(&self) -> u64 {
        self.file_offset + u64::from(self.len)
    }

    /// The part of this extent that covers file bytes `[from, to)`, if any.
    fn clip(&self, from: u64, to: u64) -> Option<Extent> {
        let start = self.file_offset.max(from);
        let end = self.end().min(to);
        (start < end).then(|| Extent {
            file_offset: start,
            len: (end - start) as u32,
            chunk: self.chunk,
            chunk_offset: self.chunk_offset + (start - self.file_offset) as u32,
        })
    }
}

/// One version of a file or object: its size and the ordered, non-overlapping extents that hold
/// its bytes. Bytes not covered by an extent (below `size`) read as zeros (sparse files).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Composition {
    /// Logical size of the file.
    pub size: u64,
    /// Extents sorted by `file_offset`, non-overlapping, all ending at or before `size`.
    pub extents: Vec<Extent>,
}

impl Composition {
    /// A composition of `extents` laid end to end from offset zero.
    pub fn from_sequential(extents: Vec<Extent>) -> Self {
        let size = extents.last().map_or(0, Extent::end);
        Composition { size, extents }
    }

    /// The extents (clipped) that cover file bytes `[offset, offset + len)`: exactly the chunks a
    /// range read must fetch. Found by binary search, so cost grows with the range, not the file.
    pub fn extents_in(&self, offset: u64, len: u64) -> impl Iterator<Item = Extent> + '_ {
        let end = offset.saturating_add(len).min(self.size);
        let first = self
            .extents
            .partition_point(|extent| extent.end() <= offset);
        self.extents[first..]
            .iter()
            .take_while(move |extent| extent.file_offset < end)
            .filter_map(move |extent| extent.clip(offset, end))
    }

    /// Places `new` extents (sorted, non-overlapping, possibly with gaps between them) over the
    /// file, replacing exactly the bytes they cover, and grows the size to cover them. Bytes in
    /// the gaps between new extents keep their old content.
    pub fn overwrite(&mut self, new: &[Extent]) {
        let mut run_start = 0;
        for index in 1..=new.len() {
            let run_ends = index == new.len() || new[index].file_offset != new[index - 1].end();
            if run_ends {
                self.replace_range(&new[run_start..index]);
                run_start = index;
            }
        }
    }

    /// Replaces the bytes covered by `run`, a contiguous run of extents.
    fn replace_range(&mut self, run: &[Extent]) {
        let (Some(first), Some(last)) = (run.first(), run.last()) else {
            return;
        };
        let (from, to) = (first.file_offset, last.end());
        let mut merged = Vec::with_capacity(self.extents.len() + run.len() + 1);
        let mut inserted = false;
        for extent in &self.extents {
            if extent.end() <= from || extent.file_offset >= to {
                if !inserted && extent.file_offset >= to {
                    merged.extend_from_slice(run);
                    inserted = true;
                }
                merged.push(*extent);
                continue;
            }
            if let Some(head) = extent.clip(extent.file_offset, from) {
                merged.push(head);
            }
            if !inserted {
                merged.extend_from_slice(run);
                inserted = true;
            }
            if let Some(tail) = extent.clip(to, extent.end()) {
                merged.push(tail);
            }
        }
        if !inserted {
            merged.extend_from_slice(run);
        }
        self.extents = merged;
        self.size = self.size.max(to);
    }

    /// Cuts or extends the file to `size`; extension reads as zeros.
    pub fn truncate(&mut self, size: u64) {
        if size < self.size {
            self.extents.retain(|extent| extent.file_offset < size);
            if let Some(last) = self.extents.last_mut() {
                if last.end() > size {
                    last.len = (size - last.file_offset) as u32;
                }
            }
        }
        self.size = size;
    }

    /// Every distinct chunk the composition references.
    pub fn chunk_ids(&self) -> impl Iterator<Item = ChunkId> + '_ {
        self.extents.iter().map(|extent| extent.chunk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn extent(file_offset: u64, len: u32, tag: u8) -> Extent {
        Extent {
            file_offset,
            len,
            chunk: ChunkId([tag; 32]),
            chunk_offset: 0,
        }
    }

    /// Byte-level model: which chunk tag and chunk offset serves each file byte (None = hole).
    fn model(composition: &Composition) -> Vec<Option<(u8, u32)>> {
        let mut bytes = vec![None; composition.size as usize];
        for extent in &composition.extents {
            for i in 0..extent.len {
                bytes[(extent.file_offset + u64::from(i)) as usize] =
                    Some((extent.chunk.0[0], extent.chunk_offset + i));
            }
        }
        bytes
    }

    #[test]
    fn range_lookup_touches_only_the_needed_extents() {
        let composition = Composition::from_sequential(vec![
            extent(0, 100, 1),
            extent(100, 100, 2),
            extent(200, 50, 3),
        ]);
        let hit: Vec<_> = composition.extents_in(150, 60).collect();
        assert_eq!(hit.len(), 2);
        assert_eq!(
            (hit[0].file_offset, hit[0].len, hit[0].chunk_offset),
            (150, 50, 50)
        );
        assert_eq!(
            (hit[1].file_offset, hit[1].len, hit[1].chunk_offset),
            (200, 10, 0)
        );
        assert_eq!(composition.extents_in(250, 10).count(), 0);
    }

    #[test]
    fn overwrite_matches_a_byte_model() {
        let mut composition =
            Composition::from_sequential(vec![extent(0, 100, 1), extent(100, 100, 2)]);
        let mut expected = model(&composition);
        let patch = Extent {
            file_offset: 50,
            len: 100,
            chunk: ChunkId([9; 32]),
            chunk_offset: 7,
        };
        composition.overwrite(&[patch]);
        for i in 0..100u32 {
            expected[50 + i as usize] = Some((9, 7 + i));
        }
        assert_eq!(model(&composition), expected);
        assert_eq!(composition.extents.len(), 3);

        composition.overwrite(&[extent(300, 10, 4)]);
        assert_eq!(composition.size, 310);
        assert_eq!(model(&composition)[250], None, "gap reads as a hole");
    }

    #[test]
    fn extents_with_gaps_between_them_keep_the_bytes_in_the_gaps() {
        let mut composition = Composition::from_sequential(vec![extent(0, 300, 1)]);
        let mut expected = model(&composition);
        let patches = [
            Extent {
                file_offset: 10,
                len: 10,
                chunk: ChunkId([7; 32]),
                chunk_offset: 0,
            },
            Extent {
                file_offset: 100,
                len: 10,
                chunk: ChunkId([8; 32]),
                chunk_offset: 0,
            },
        ];
        composition.overwrite(&patches);
        for patch in &patches {
            for i in 0..patch.len {
                expected[(patch.file_offset + u64::from(i)) as usize] = Some((patch.chunk.0[0], i));
            }
        }
        assert_eq!(model(&composition), expected);
    }

    #[test]
    fn truncate_cuts_and_extends() {
        let mut composition =
            Composition::from_sequential(vec![extent(0, 100, 1), extent(100, 100, 2)]);
        composition.truncate(150);
        assert_eq!(composition.extents.len(), 2);
        assert_eq!(composition.extents[1].len, 50);
        composition.truncate(1000);
        assert_eq!(composition.size, 1000);
        assert_eq!(composition.extents_in(150, 850).count(), 0);
        composition.truncate(0);
        assert!(composition.extents.is_empty());
    }
}
