//! Bytes written to an open file and not yet sealed into chunks: non-overlapping ranges by
//! offset, newest bytes winning where writes overlap. Sequential writes grow one range in place.

use std::collections::BTreeMap;

/// Dirty ranges of one file.
#[derive(Debug, Default)]
pub struct DirtyRanges {
    ranges: BTreeMap<u64, Vec<u8>>,
    bytes: usize,
}

impl DirtyRanges {
    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// One past the last dirty byte (0 when empty).
    pub fn end(&self) -> u64 {
        self.ranges
            .iter()
            .next_back()
            .map_or(0, |(start, data)| start + data.len() as u64)
    }

    /// Places `data` at `offset`, over whatever was dirty there.
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let end = offset + data.len() as u64;
        // Ranges that overlap or touch [offset, end).
        let touching: Vec<u64> = self
            .ranges
            .range(..=end)
            .rev()
            .take_while(|(start, range)| **start + range.len() as u64 >= offset)
            .map(|(start, _)| *start)
            .collect();
        if let [only] = touching[..] {
            if let Some(range) = self.ranges.get_mut(&only).filter(|_| only <= offset) {
                // The common case: extend or overwrite inside one range, in place.
                let at = (offset - only) as usize;
                let old_len = range.len();
                if at == old_len {
                    // Appending (sequential writes): no zeroing of bytes about to be written.
                    range.extend_from_slice(data);
                } else {
                    if at + data.len() > old_len {
                        range.resize(at + data.len(), 0);
                    }
                    range[at..at + data.len()].copy_from_slice(data);
                }
                self.bytes += range.len() - old_len;
                return;
            }
        }
        let start = touching
            .iter()
            .copied()
            .min()
            .map_or(offset, |first| first.min(offset));
        let mut merged_end = end;
        for key in &touching {
            merged_end = merged_end.max(key + self.ranges[key].len() as u64);
        }
        let mut merged = vec![0u8; (merged_end - start) as usize];
        for key in touching {
            if let Some(range) = self.ranges.remove(&key) {
                self.bytes -= range.len();
                let at = (key - start) as usize;
                merged[at..at + range.len()].copy_from_slice(&range);
            }
        }
        let at = (offset - start) as usize;
        merged[at..at + data.len()].copy_from_slice(data);
        self.bytes += merged.len();
        self.ranges.insert(start, merged);
    }

    /// Takes every whole `unit`-aligned piece (`[k * unit, (k + 1) * unit)` of the file) that
    /// a range covers, leaving the rest dirty. Cutting at aligned offsets only keeps chunk
    /// boundaries where a sequential writer puts them even when its writes arrive out of order
    /// (the kernel sends large writes as concurrent requests). Pieces come in file order.
    pub fn take_full(&mut self, unit: usize) -> Vec<(u64, Vec<u8>)> {
        let unit_bytes = unit as u64;
        let covering: Vec<u64> = self
            .ranges
            .iter()
            .filter(|(start, data)| {
                let end = **start + data.len() as u64;
                end / unit_bytes * unit_bytes
                    >= start.div_ceil(unit_bytes) * unit_bytes + unit_bytes
            })
            .map(|(start, _)| *start)
            .collect();
        let mut pieces = Vec::new();
        for start in covering {
            let Some(mut data) = self.ranges.remove(&start) else {
                continue;
            };
            self.bytes -= data.len();
            let end = start + data.len() as u64;
            let first = start.div_ceil(unit_bytes) * unit_bytes;
            let last = end / unit_bytes * unit_bytes;
            let tail = data.split_off((last - start) as usize);
            // `split_off` copies what it splits off: an aligned range is taken whole instead.
            let full = if first == start {
                std::mem::take(&mut data)
            } else {
                data.split_off((first - start) as usize)
            };
            for (offset, rest) in [(start, data), (last, tail)] {
                if !rest.is_empty() {
                    self.bytes += rest.len();
                    self.ranges.insert(offset, rest);
                }
            }
            split_into(&mut pieces, first, full, unit);
        }
        pieces
    }

    /// Takes everything, cut into pieces of at most `unit` bytes, in file order.
    pub fn take_all(&mut self, unit: usize) -> Vec<(u64, Vec<u8>)> {
        let mut pieces = Vec::new();
        for (start, data) in std::mem::take(&mut self.ranges) {
            split_into(&mut pieces, start, data, unit);
        }
        self.bytes = 0;
        pieces
    }

    /// The dirty bytes that fall in `[offset, offset + len)`, as their own ranges.
    pub fn clip(&self, offset: u64, len: u64) -> DirtyRanges {
        let end = offset.saturating_add(len);
        let mut clipped = DirtyRanges::default();
        for (start, data) in self.ranges.range(..end) {
            let range_end = start + data.len() as u64;
            if range_end <= offset {
                continue;
            }
            let from = offset.max(*start);
            let to = end.min(range_end);
            clipped.write(from, &data[(from - start) as usize..(to - start) as usize]);
        }
        clipped
    }

    /// Copies the dirty bytes that fall in `[offset, offset + out.len())` over `out`.
    pub fn overlay(&self, offset: u64, out: &mut [u8]) {
        let end = offset + out.len() as u64;
        for (start, data) in self.ranges.range(..end) {
            let range_end = start + data.len() as u64;
            if range_end <= offset {
                continue;
            }
            let from = offset.max(*start);
            let to = end.min(range_end);
            out[(from - offset) as usize..(to - offset) as usize]
                .copy_from_slice(&data[(from - start) as usize..(to - start) as usize]);
        }
    }
}

fn split_into(pieces: &mut Vec<(u64, Vec<u8>)>, start: u64, data: Vec<u8>, unit: usize) {
    if data.len() <= unit {
        pieces.push((start, data));
        return;
    }
    for (index, piece) in data.chunks(unit).enumerate() {
        pieces.push((start + (index * unit) as u64, piece.to_vec()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model_apply(model: &mut Vec<Option<u8>>, offset: u64, data: &[u8]) {
        let end = offset as usize + data.len();
        if model.len() < end {
            model.resize(end, None);
        }
        for (i, byte) in data.iter().enumerate() {
            model[offset as usize + i] = Some(*byte);
        }
    }

    #[test]
    fn overlapping_writes_match_a_byte_model() {
        let mut dirty = DirtyRanges::default();
        let mut model = Vec::new();
        let mut seed = 7u64;
        for step in 0..400u32 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let offset = (seed >> 33) % 300;
            let len = 1 + ((seed >> 20) % 40) as usize;
            let data = vec![(step % 251) as u8; len];
            dirty.write(offset, &data);
            model_apply(&mut model, offset, &data);
            let mut out = vec![0u8; model.len()];
            dirty.overlay(0, &mut out);
            for (i, expected) in model.iter().enumerate() {
                if let Some(byte) = expected {
                    assert_eq!(out[i], *byte, "byte {i} after step {step}");
                }
            }
            assert_eq!(dirty.bytes(), model.iter().filter(|b| b.is_some()).count());
        }
        let pieces = dirty.take_all(16);
        assert!(pieces.iter().all(|(_, data)| data.len() <= 16));
        assert!(dirty.is_empty());
    }

    #[test]
    fn a_clip_holds_only_dirty_bytes() {
        let mut dirty = DirtyRanges::default();
        dirty.write(10, &[1; 5]);
        dirty.write(30, &[2; 5]);
        let clip = dirty.clip(12, 20);
        let mut out = vec![9u8; 20];
        clip.overlay(12, &mut out);
        assert_eq!(&out[..3], &[1, 1, 1]);
        assert!(
            out[3..18].iter().all(|byte| *byte == 9),
            "bytes that are not dirty stay untouched"
        );
        assert_eq!(&out[18..], &[2, 2]);
    }

    /// Offset and length of each piece.
    fn spans(pieces: &[(u64, Vec<u8>)]) -> Vec<(u64, usize)> {
        pieces
            .iter()
            .map(|(offset, data)| (*offset, data.len()))
            .collect()
    }

    #[test]
    fn full_pieces_are_cut_and_tails_stay() {
        let mut dirty = DirtyRanges::default();
        for i in 0..10u64 {
            dirty.write(i * 3, &[1, 2, 3]);
        }
        let pieces = dirty.take_full(8);
        assert_eq!(spans(&pieces), vec![(0, 8), (8, 8), (16, 8)]);
        assert_eq!(dirty.bytes(), 6);
        assert_eq!(dirty.end(), 30);
    }

    #[test]
    fn pieces_are_cut_at_aligned_offsets_whatever_the_write_order() {
        let mut dirty = DirtyRanges::default();
        // Units of 8 written as 4-byte writes, the second half of each pair first.
        for i in [1u64, 0, 3, 2, 5] {
            dirty.write(i * 4, &[i as u8; 4]);
            assert!(dirty.take_full(8).iter().all(|(offset, _)| offset % 8 == 0));
        }
        let mut dirty = DirtyRanges::default();
        dirty.write(3, &[7; 20]);
        let pieces = dirty.take_full(8);
        assert_eq!(
            spans(&pieces),
            vec![(8, 8)],
            "[3, 23) holds one whole aligned unit"
        );
        assert_eq!(
            dirty.bytes(),
            12,
            "the head [3, 8) and the tail [16, 23) stay"
        );
        let mut out = vec![0u8; 23];
        dirty.overlay(0, &mut out);
        assert_eq!(&out[3..8], &[7; 5]);
        assert_eq!(&out[8..16], &[0; 8]);
        assert_eq!(&out[16..23], &[7; 7]);
    }
}
