//! Segment files of a shard log and the in-memory index over them.
//!
//! A segment is a file named by the index of its first entry (`{first_index:020}.seg`) holding
//! consecutive records, each `magic "KSLR" | format version u8 | payload length u32 | crc32c u32 |
//! payload` (little endian; the crc covers the version, the length and the payload; the payload
//! is the entry in bincode 2; version 2 added the deltas' exactly-once tags to the batch, and
//! version 1 records, written before, are still read). Segments are zero-filled ahead of the write position, so that
//! appending a record and `fdatasync` write data only (no file-size change to journal) and the end
//! of the log is the first position where no valid record starts.
//!
//! Only the writer thread changes segments; readers take the index's read lock for the whole
//! read, so they never see a record while it is being truncated away.

use std::collections::btree_map::Entry as Slot;
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::ops::{Bound, RangeBounds};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::EntryPayload;
use serde::{Deserialize, Serialize};

use crate::batch::DeltaBatchV1;
use crate::type_config::{Entry, LogId};
use crate::DeltaBatch;

/// A segment is closed once a record would take it past this size (a segment always holds at
/// least one record, so one larger than this gets a segment of its own).
pub(super) const SEGMENT_BYTES_TARGET: u64 = 16 << 20;
/// The zero-filled region ahead of the write position grows by this much at a time.
pub(super) const ZERO_FILL_STEP_BYTES: u64 = 1 << 20;
/// Largest payload a record may claim; anything larger is garbage, not a record.
const RECORD_PAYLOAD_BYTES_MAX: usize = 1 << 30;

const RECORD_MAGIC: [u8; 4] = *b"KSLR";
/// Entries whose batches have no tags (read only).
const RECORD_FORMAT_V1: u8 = 1;
/// Entries whose batches carry tags (written).
const RECORD_FORMAT_V2: u8 = 2;
const RECORD_HEADER_BYTES: usize = 4 + 1 + 4 + 4;
const SEGMENT_SUFFIX: &str = ".seg";

/// Encodes `entry` as one record.
pub(super) fn encode_record(entry: &Entry) -> io::Result<Vec<u8>> {
    let mut record = vec![0u8; RECORD_HEADER_BYTES];
    bincode::serde::encode_into_std_write(entry, &mut record, bincode::config::standard())
        .map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, error))?;
    let payload_len = u32::try_from(record.len() - RECORD_HEADER_BYTES)
        .ok()
        .filter(|len| *len as usize <= RECORD_PAYLOAD_BYTES_MAX)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "log entry too large"))?;
    record[..4].copy_from_slice(&RECORD_MAGIC);
    record[4] = RECORD_FORMAT_V2;
    record[5..9].copy_from_slice(&payload_len.to_le_bytes());
    let crc = crc32c::crc32c_append(
        crc32c::crc32c(&record[4..9]),
        &record[RECORD_HEADER_BYTES..],
    );
    record[9..13].copy_from_slice(&crc.to_le_bytes());
    Ok(record)
}

/// What starts at a position of a segment.
enum Parsed {
    /// A valid record: the entry and the record's length in bytes.
    Record(Box<Entry>, usize),
    /// No valid record: the end of the log, or a torn write.
    Nothing,
}

/// Parses the record at the start of `bytes`. A record of an unknown format version is an error
/// (a newer Kiseki wrote it), not the end of the log.
fn parse_record(bytes: &[u8]) -> io::Result<Parsed> {
    let Some(header) = bytes.get(..RECORD_HEADER_BYTES) else {
        return Ok(Parsed::Nothing);
    };
    if header[..4] != RECORD_MAGIC {
        return Ok(Parsed::Nothing);
    }
    let version = header[4];
    if version != RECORD_FORMAT_V1 && version != RECORD_FORMAT_V2 {
        return Err(invalid(format!(
            "unsupported log record format version {}",
            header[4]
        )));
    }
    let payload_len = u32::from_le_bytes([header[5], header[6], header[7], header[8]]) as usize;
    let crc = u32::from_le_bytes([header[9], header[10], header[11], header[12]]);
    if payload_len > RECORD_PAYLOAD_BYTES_MAX {
        return Ok(Parsed::Nothing);
    }
    let Some(payload) = bytes.get(RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + payload_len) else {
        return Ok(Parsed::Nothing);
    };
    if crc32c::crc32c_append(crc32c::crc32c(&header[4..9]), payload) != crc {
        return Ok(Parsed::Nothing);
    }
    let decoded = if version == RECORD_FORMAT_V1 {
        bincode::serde::decode_from_slice::<EntryV1, _>(payload, bincode::config::standard())
            .map(|(entry, used)| (entry.upgrade(), used))
    } else {
        bincode::serde::decode_from_slice(payload, bincode::config::standard())
    };
    match decoded {
        Ok((entry, used)) if used == payload_len => Ok(Parsed::Record(
            Box::new(entry),
            RECORD_HEADER_BYTES + payload_len,
        )),
        // The checksum matched, so this is not a torn write: a bug or an unknown layout.
        Ok(_) => Err(invalid("trailing bytes in a log record".to_string())),
        Err(error) => Err(invalid(format!("undecodable log record: {error}"))),
    }
}

/// An entry as a version-1 record holds it: openraft's `Entry` with a batch without tags.
#[derive(Debug, Serialize, Deserialize)]
struct EntryV1 {
    log_id: LogId,
    payload: PayloadV1,
}

/// openraft's `EntryPayload`, variant for variant, with the version-1 batch.
#[derive(Debug, Serialize, Deserialize)]
enum PayloadV1 {
    Blank,
    Normal(DeltaBatchV1),
    Membership(openraft::Membership<u64, openraft::BasicNode>),
}

impl EntryV1 {
    fn upgrade(self) -> Entry {
        let payload = match self.payload {
            PayloadV1::Blank => EntryPayload::Blank,
            PayloadV1::Normal(batch) => EntryPayload::Normal(DeltaBatch {
                deltas: batch.deltas,
                tags: Vec::new(),
            }),
            PayloadV1::Membership(membership) => EntryPayload::Membership(membership),
        };
        Entry {
            log_id: self.log_id,
            payload,
        }
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// Where one entry's record is.
#[derive(Clone, Copy, Debug)]
pub(super) struct RecordLocation {
    pub(super) log_id: LogId,
    pub(super) offset: u64,
    pub(super) len: u32,
}

impl RecordLocation {
    fn end(&self) -> u64 {
        self.offset + u64::from(self.len)
    }
}

/// One segment file and the records in it, in index order from `first_index`.
#[derive(Debug)]
pub(super) struct Segment {
    pub(super) path: PathBuf,
    pub(super) file: Arc<File>,
    pub(super) first_index: u64,
    pub(super) records: Vec<RecordLocation>,
}

impl Segment {
    /// Offset just past the last record.
    pub(super) fn end(&self) -> u64 {
        self.records.last().map_or(0, RecordLocation::end)
    }

    /// Index the next record of this segment gets.
    pub(super) fn next_index(&self) -> u64 {
        self.first_index + self.records.len() as u64
    }

    fn read(&self, location: &RecordLocation) -> io::Result<Entry> {
        let mut bytes = vec![0u8; location.len as usize];
        self.file.read_exact_at(&mut bytes, location.offset)?;
        match parse_record(&bytes)? {
            Parsed::Record(entry, _) if entry.log_id == location.log_id => Ok(*entry),
            _ => Err(invalid(format!(
                "{}: record of entry {} at offset {} is corrupt",
                self.path.display(),
                location.log_id,
                location.offset
            ))),
        }
    }
}

/// Every segment of a shard log, by first index, and the first index not purged.
#[derive(Debug, Default)]
pub(super) struct SegmentIndex {
    pub(super) segments: BTreeMap<u64, Segment>,
    pub(super) first_readable: u64,
}

impl SegmentIndex {
    /// Reads the stored, unpurged entries in `range` into `out`, skipping indexes `out` holds.
    pub(super) fn read_into(
        &self,
        range: (Bound<u64>, Bound<u64>),
        out: &mut BTreeMap<u64, Entry>,
    ) -> io::Result<()> {
        let start = match range.0 {
            Bound::Included(start) => start,
            Bound::Excluded(start) => start.saturating_add(1),
            Bound::Unbounded => 0,
        }
        .max(self.first_readable);
        let from = self
            .segments
            .range(..=start)
            .next_back()
            .map_or(start, |(first_index, _)| *first_index);
        for segment in self.segments.range(from..).map(|(_, segment)| segment) {
            let skip =
                usize::try_from(start.saturating_sub(segment.first_index)).unwrap_or(usize::MAX);
            for (position, location) in segment.records.iter().enumerate().skip(skip) {
                let index = segment.first_index + position as u64;
                if !range.contains(&index) {
                    return Ok(());
                }
                if let Slot::Vacant(slot) = out.entry(index) {
                    slot.insert(segment.read(location)?);
                }
            }
        }
        Ok(())
    }

    /// The last stored entry's log id.
    pub(super) fn last_log_id(&self) -> Option<LogId> {
        let (_, segment) = self.segments.last_key_value()?;
        let last = segment.records.last()?;
        (last.log_id.index >= self.first_readable).then_some(last.log_id)
    }

    /// Opens the segments in `dir`: scans each, drops a torn tail of the last one (zeroing it on
    /// disk), deletes segments holding only entries up to `last_purged`, and checks that the
    /// rest form one contiguous log.
    pub(super) fn open(dir: &Path, last_purged: Option<LogId>) -> io::Result<SegmentIndex> {
        let mut segments = Vec::new();
        for (first_index, path) in list_segments(dir)? {
            segments.push(scan_segment(path, first_index)?);
        }
        // A crash right after a segment was created leaves it without a valid record.
        while segments
            .last()
            .is_some_and(|(segment, _)| segment.records.is_empty())
        {
            if let Some((segment, _)) = segments.pop() {
                fs::remove_file(&segment.path)?;
            }
        }
        let count = segments.len();
        for (position, (segment, garbage)) in segments.iter().enumerate() {
            if let Some(garbage_end) = garbage {
                if position + 1 < count {
                    return Err(invalid(format!(
                        "{}: corrupt record at offset {} before the last segment",
                        segment.path.display(),
                        segment.end()
                    )));
                }
                tracing::warn!(
                    path = %segment.path.display(),
                    offset = segment.end(),
                    "dropping a torn tail of the shard log"
                );
                zero_range(&segment.file, segment.end(), *garbage_end)?;
                segment.file.sync_data()?;
            }
        }
        let first_readable = last_purged.map_or(0, |log_id| log_id.index + 1);
        let mut index = SegmentIndex {
            segments: BTreeMap::new(),
            first_readable,
        };
        for (segment, _) in segments {
            if segment.next_index() <= first_readable {
                fs::remove_file(&segment.path)?;
                continue;
            }
            index.check_follows(&segment)?;
            index.segments.insert(segment.first_index, segment);
        }
        Ok(index)
    }

    /// Checks that `segment` continues the log (contiguous indexes, non-decreasing leaders).
    fn check_follows(&self, segment: &Segment) -> io::Result<()> {
        let Some((_, previous)) = self.segments.last_key_value() else {
            if segment.first_index > self.first_readable && self.first_readable > 0 {
                return Err(invalid(format!(
                    "{}: the log starts at {}, after the last purged index {}",
                    segment.path.display(),
                    segment.first_index,
                    self.first_readable - 1
                )));
            }
            return Ok(());
        };
        let leaders_ordered = match (previous.records.last(), segment.records.first()) {
            (Some(last), Some(first)) => first.log_id.leader_id >= last.log_id.leader_id,
            _ => true,
        };
        if previous.next_index() != segment.first_index || !leaders_ordered {
            return Err(invalid(format!(
                "{} does not continue {}",
                segment.path.display(),
                previous.path.display()
            )));
        }
        Ok(())
    }
}

/// The segment files in `dir`, by first index.
fn list_segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    for dir_entry in fs::read_dir(dir)? {
        let dir_entry = dir_entry?;
        let name = dir_entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(SEGMENT_SUFFIX)) else {
            continue;
        };
        let first_index = stem
            .parse::<u64>()
            .map_err(|_| invalid(format!("unexpected segment file name {stem:?}")))?;
        found.push((first_index, dir_entry.path()));
    }
    found.sort_unstable();
    Ok(found)
}

/// Reads a segment's records up to the first position where no valid record (with the expected
/// index and a leader no older than the previous one) starts. Returns the segment and, when
/// non-zero bytes follow that position (a torn write), the end of those bytes.
fn scan_segment(path: PathBuf, first_index: u64) -> io::Result<(Segment, Option<u64>)> {
    let file = File::options().read(true).write(true).open(&path)?;
    let bytes = fs::read(&path)?;
    let mut records = Vec::new();
    let mut offset = 0usize;
    while let Parsed::Record(entry, len) = parse_record(&bytes[offset..])? {
        let expected = first_index + records.len() as u64;
        let leader_ordered = records
            .last()
            .is_none_or(|last: &RecordLocation| entry.log_id.leader_id >= last.log_id.leader_id);
        if entry.log_id.index != expected || !leader_ordered {
            break;
        }
        records.push(RecordLocation {
            log_id: entry.log_id,
            offset: offset as u64,
            len: len as u32,
        });
        offset += len;
    }
    let garbage = bytes[offset..]
        .iter()
        .rposition(|byte| *byte != 0)
        .map(|last| (offset + last + 1) as u64);
    let segment = Segment {
        path,
        file: Arc::new(file),
        first_index,
        records,
    };
    Ok((segment, garbage))
}

/// The first indexes of the segment files in `dir`, in order.
#[cfg(test)]
pub(super) fn list_first_indexes(dir: &Path) -> Vec<u64> {
    let listed = list_segments(dir);
    listed.map_or_else(
        |_| Vec::new(),
        |found| found.into_iter().map(|(first, _)| first).collect(),
    )
}

/// The path of the segment starting at `first_index`.
pub(super) fn segment_path(dir: &Path, first_index: u64) -> PathBuf {
    dir.join(format!("{first_index:020}{SEGMENT_SUFFIX}"))
}

/// Writes zeros over `[start, end)` of `file`.
pub(super) fn zero_range(file: &File, start: u64, end: u64) -> io::Result<()> {
    static ZEROS: [u8; 64 * 1024] = [0u8; 64 * 1024];
    let mut offset = start;
    while offset < end {
        let len = (end - offset).min(ZEROS.len() as u64) as usize;
        file.write_all_at(&ZEROS[..len], offset)?;
        offset += len as u64;
    }
    Ok(())
}

/// Makes renames, creations and deletions in `dir` durable.
pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use openraft::testing::log_id;

    use super::*;

    #[test]
    fn record_round_trip_and_corruption() {
        let entry = Entry {
            log_id: log_id(2, 1, 9),
            payload: EntryPayload::Normal(DeltaBatch::default()),
        };
        let record = encode_record(&entry).unwrap();
        match parse_record(&record).unwrap() {
            Parsed::Record(back, len) => {
                assert_eq!((*back, len), (entry, record.len()));
            }
            Parsed::Nothing => panic!("valid record not parsed"),
        }
        for position in [5, record.len() - 1] {
            let mut flipped = record.clone();
            flipped[position] ^= 1;
            assert!(matches!(parse_record(&flipped).unwrap(), Parsed::Nothing));
        }
        assert!(matches!(
            parse_record(&record[..record.len() - 1]).unwrap(),
            Parsed::Nothing
        ));
        assert!(matches!(parse_record(&[0u8; 64]).unwrap(), Parsed::Nothing));
        let mut future = record;
        future[4] = 3;
        assert!(parse_record(&future).is_err());
    }

    /// Records written before tags existed (format 1) still read, as batches without tags.
    #[test]
    fn version_1_records_are_read() {
        let delta = crate::Delta::Unlink {
            parent: kiseki_types::InodeId(1),
            name: "old".into(),
            time: kiseki_types::Timestamp(0),
        };
        let old = EntryV1 {
            log_id: log_id(3, 1, 12),
            payload: PayloadV1::Normal(DeltaBatchV1 {
                deltas: vec![delta.clone()],
            }),
        };
        let payload = bincode::serde::encode_to_vec(&old, bincode::config::standard()).unwrap();
        let mut record = Vec::new();
        record.extend_from_slice(&RECORD_MAGIC);
        record.push(RECORD_FORMAT_V1);
        record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        let crc = crc32c::crc32c_append(crc32c::crc32c(&record[4..9]), &payload);
        record.extend_from_slice(&crc.to_le_bytes());
        record.extend_from_slice(&payload);
        match parse_record(&record).unwrap() {
            Parsed::Record(entry, len) => {
                assert_eq!(len, record.len());
                assert_eq!(entry.log_id, log_id(3, 1, 12));
                assert_eq!(
                    entry.payload,
                    EntryPayload::Normal(DeltaBatch::single(delta))
                );
            }
            Parsed::Nothing => panic!("version-1 record not parsed"),
        }
    }
}
