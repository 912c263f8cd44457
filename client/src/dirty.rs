//! Bytes written to an open file and not yet sealed into chunks: non-overlapping ranges by
//! offset, newest bytes winning where writes overlap. Sequential writes grow one range in place.
//!
//! Each range is a [`ChunkBuffer`]: plaintext with room for the frame header before it and the
//! tag after it, so a chunk-sized range is sealed where it lies. A range that streams (holds
//! [`STREAMING_BYTES`] or more) is given room up to the end of its chunk at once, so the writes
//! that fill the chunk are the only copies of its bytes on the client.

use std::collections::BTreeMap;

use kiseki_chunk::ChunkBuffer;

/// A range this long is taken for a sequential writer's: it gets room for its whole chunk.
/// Smaller ranges (small files) grow as a `Vec` does.
const STREAMING_BYTES: usize = 64 << 10;

/// Dirty ranges of one file, cut into pieces at multiples of `unit` (the chunk size).
#[derive(Debug)]
pub struct DirtyRanges {
    ranges: BTreeMap<u64, ChunkBuffer>,
    bytes: usize,
    unit: usize,
}

impl DirtyRanges {
    /// No dirty bytes; pieces will be cut at multiples of `unit` bytes (at least 1).
    pub fn new(unit: usize) -> Self {
        DirtyRanges {
            ranges: BTreeMap::new(),
            bytes: 0,
            unit: unit.max(1),
        }
    }

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
            let unit = self.unit;
            if let Some(range) = self.ranges.get_mut(&only).filter(|_| only <= offset) {
                // The common case: extend or overwrite inside one range, in place.
                let at = (offset - only) as usize;
                let old_len = range.len();
                reserve_for(range, only, at + data.len(), unit);
                if at == old_len {
                    // Appending (sequential writes): no zeroing of bytes about to be written.
                    range.extend_from_slice(data);
                } else {
                    if at + data.len() > old_len {
                        range.resize(at + data.len());
                    }
                    range.plaintext_mut()[at..at + data.len()].copy_from_slice(data);
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
        let merged_len = (merged_end - start) as usize;
        let mut merged = ChunkBuffer::with_capacity(0);
        reserve_for(&mut merged, start, merged_len, self.unit);
        merged.resize(merged_len);
        for key in touching {
            if let Some(range) = self.ranges.remove(&key) {
                self.bytes -= range.len();
                let at = (key - start) as usize;
                merged.plaintext_mut()[at..at + range.len()].copy_from_slice(range.plaintext());
            }
        }
        let at = (offset - start) as usize;
        merged.plaintext_mut()[at..at + data.len()].copy_from_slice(data);
        self.bytes += merged.len();
        self.ranges.insert(start, merged);
    }

    /// Takes every whole unit-aligned piece (`[k * unit, (k + 1) * unit)` of the file) that a
    /// range covers, leaving the rest dirty. Cutting at aligned offsets only keeps chunk
    /// boundaries where a sequential writer puts them even when its writes arrive out of order
    /// (the kernel sends large writes as concurrent requests). Pieces come in file order.
    pub fn take_full(&mut self) -> Vec<(u64, ChunkBuffer)> {
        let unit_bytes = self.unit as u64;
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
                std::mem::replace(&mut data, ChunkBuffer::with_capacity(0))
            } else {
                data.split_off((first - start) as usize)
            };
            for (offset, rest) in [(start, data), (last, tail)] {
                if !rest.is_empty() {
                    self.bytes += rest.len();
                    self.ranges.insert(offset, rest);
                }
            }
            split_into(&mut pieces, first, full, self.unit);
        }
        pieces
    }

    /// Takes everything, cut into pieces of at most `unit` bytes, in file order.
    pub fn take_all(&mut self) -> Vec<(u64, ChunkBuffer)> {
        let mut pieces = Vec::new();
        for (start, data) in std::mem::take(&mut self.ranges) {
            split_into(&mut pieces, start, data, self.unit);
        }
        self.bytes = 0;
        pieces
    }

    /// The dirty bytes that fall in `[offset, offset + len)`, as their own ranges.
    pub fn clip(&self, offset: u64, len: u64) -> DirtyRanges {
        let end = offset.saturating_add(len);
        let mut clipped = DirtyRanges::new(self.unit);
        for (start, data) in self.ranges.range(..end) {
            let range_end = start + data.len() as u64;
            if range_end <= offset {
                continue;
            }
            let from = offset.max(*start);
            let to = end.min(range_end);
            let bytes = &data.plaintext()[(from - start) as usize..(to - start) as usize];
            clipped.bytes += bytes.len();
            clipped
                .ranges
                .insert(from, ChunkBuffer::from_plaintext(bytes));
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
                .copy_from_slice(&data.plaintext()[(from - start) as usize..(to - start) as usize]);
        }
    }
}

/// Makes room in `range` (starting at file offset `start`) for `len` bytes of plaintext. A
/// streaming range gets room up to the end of its chunk at once, when that is enough.
fn reserve_for(range: &mut ChunkBuffer, start: u64, len: usize, unit: usize) {
    if len <= range.capacity() {
        return;
    }
    let unit_bytes = unit as u64;
    let to_chunk_end = ((start / unit_bytes + 1) * unit_bytes - start) as usize;
    let wanted = if (STREAMING_BYTES..=to_chunk_end).contains(&len) {
        to_chunk_end
    } else {
        len.max(range.capacity() * 2)
    };
    range.reserve(wanted - range.len());
}

fn split_into(pieces: &mut Vec<(u64, ChunkBuffer)>, start: u64, data: ChunkBuffer, unit: usize) {
    if data.len() <= unit {
        pieces.push((start, data));
        return;
    }
    for (index, piece) in data.plaintext().chunks(unit).enumerate() {
        pieces.push((
            start + (index * unit) as u64,
            ChunkBuffer::from_plaintext(piece),
        ));
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
        let mut dirty = DirtyRanges::new(16);
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
        let pieces = dirty.take_all();
        assert!(pieces.iter().all(|(_, data)| data.len() <= 16));
        assert!(dirty.is_empty());
    }

    #[test]
    fn a_clip_holds_only_dirty_bytes() {
        let mut dirty = DirtyRanges::new(8);
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
    fn spans(pieces: &[(u64, ChunkBuffer)]) -> Vec<(u64, usize)> {
        pieces
            .iter()
            .map(|(offset, data)| (*offset, data.len()))
            .collect()
    }

    #[test]
    fn full_pieces_are_cut_and_tails_stay() {
        let mut dirty = DirtyRanges::new(8);
        for i in 0..10u64 {
            dirty.write(i * 3, &[1, 2, 3]);
        }
        let pieces = dirty.take_full();
        assert_eq!(spans(&pieces), vec![(0, 8), (8, 8), (16, 8)]);
        assert_eq!(dirty.bytes(), 6);
        assert_eq!(dirty.end(), 30);
    }

    #[test]
    fn pieces_are_cut_at_aligned_offsets_whatever_the_write_order() {
        let mut dirty = DirtyRanges::new(8);
        // Units of 8 written as 4-byte writes, the second half of each pair first.
        for i in [1u64, 0, 3, 2, 5] {
            dirty.write(i * 4, &[i as u8; 4]);
            assert!(dirty.take_full().iter().all(|(offset, _)| offset % 8 == 0));
        }
        let mut dirty = DirtyRanges::new(8);
        dirty.write(3, &[7; 20]);
        let pieces = dirty.take_full();
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

    #[test]
    fn a_streaming_chunk_is_filled_and_taken_where_it_lies() {
        let unit = 1 << 20;
        let mut dirty = DirtyRanges::new(unit);
        let piece = vec![7u8; STREAMING_BYTES];
        let mut home = None;
        for index in 0..unit / STREAMING_BYTES + 1 {
            dirty.write((index * STREAMING_BYTES) as u64, &piece);
            let pieces = dirty.take_full();
            let range = home.get_or_insert_with(|| dirty.ranges[&0].plaintext().as_ptr());
            if index + 1 < unit / STREAMING_BYTES {
                assert!(pieces.is_empty());
                assert_eq!(
                    dirty.ranges[&0].plaintext().as_ptr(),
                    *range,
                    "no reallocation while the chunk fills (write {index})"
                );
            } else if index + 1 == unit / STREAMING_BYTES {
                assert_eq!(spans(&pieces), vec![(0, unit)]);
                assert_eq!(
                    pieces[0].1.plaintext().as_ptr(),
                    *range,
                    "taken, not copied"
                );
                assert!(pieces[0].1.plaintext().iter().all(|byte| *byte == 7));
            }
        }
        assert_eq!(dirty.bytes(), STREAMING_BYTES, "the next chunk has begun");
        // A small file keeps a small buffer.
        let mut small = DirtyRanges::new(unit);
        small.write(0, &[1; 4096]);
        assert!(small.ranges[&0].capacity() < 2 * 4096);
    }
}
