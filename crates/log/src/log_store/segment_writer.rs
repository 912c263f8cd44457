//! Changes to the segment files, made only by the writer thread: appends (buffered, one `write`
//! per run of appends), truncation, purge and rolling to a new segment. Nothing here syncs file
//! data except where an ordering needs it; the caller syncs every file [`SegmentWriter::dirty`]
//! names once per group commit.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock, RwLockWriteGuard};

use super::segments::{
    segment_path, sync_dir, zero_range, RecordLocation, Segment, SegmentIndex, ZERO_FILL_STEP_BYTES,
};
use super::writer::EncodedEntry;

/// Free space (in zero-fill steps) a zero fill must leave on the filesystem.
const ZERO_FILL_RESERVE_STEPS: u64 = 4;

/// The segment appends go to.
struct Active {
    first_index: u64,
    file: Arc<File>,
    /// Offset just past the last record written.
    end: u64,
    /// Everything from `end` up to here is zeros on disk.
    zero_filled_end: u64,
    next_index: u64,
    /// A zero fill of this segment failed (a full disk): records are appended instead.
    zero_fill_failed: bool,
}

/// Writes the segments of one shard log.
pub(super) struct SegmentWriter {
    dir: PathBuf,
    index: Arc<RwLock<SegmentIndex>>,
    active: Option<Active>,
    /// Records appended but not yet written, starting at `active.end`.
    buffer: Vec<u8>,
    pending: Vec<RecordLocation>,
    /// Files written since the last sync.
    dirty: Vec<Arc<File>>,
    /// A segment is closed once a record would take it past this size.
    segment_bytes_target: u64,
}

impl SegmentWriter {
    pub(super) fn new(
        dir: PathBuf,
        index: Arc<RwLock<SegmentIndex>>,
        segment_bytes_target: u64,
    ) -> io::Result<Self> {
        let mut writer = SegmentWriter {
            dir,
            index,
            active: None,
            buffer: Vec::new(),
            pending: Vec::new(),
            dirty: Vec::new(),
            segment_bytes_target,
        };
        writer.active = writer.last_segment_as_active()?;
        Ok(writer)
    }

    fn lock_index(&self) -> RwLockWriteGuard<'_, SegmentIndex> {
        self.index.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The last segment of the index, to append to.
    fn last_segment_as_active(&self) -> io::Result<Option<Active>> {
        let index = self.index.read().unwrap_or_else(PoisonError::into_inner);
        let Some((_, segment)) = index.segments.last_key_value() else {
            return Ok(None);
        };
        Ok(Some(Active {
            first_index: segment.first_index,
            file: segment.file.clone(),
            end: segment.end(),
            zero_filled_end: segment.file.metadata()?.len().max(segment.end()),
            next_index: segment.next_index(),
            zero_fill_failed: false,
        }))
    }

    /// Buffers `entries` after the log's last entry, rolling to a new segment when one is full.
    pub(super) fn append(&mut self, entries: &[EncodedEntry]) -> io::Result<()> {
        for entry in entries {
            self.make_room(entry.log_id.index, entry.record.len() as u64)?;
            let record_len = entry.record.len() as u64;
            let Some(active) = self.active.as_mut() else {
                unreachable!("roll makes a segment active");
            };
            self.pending.push(RecordLocation {
                log_id: entry.log_id,
                offset: active.end + self.buffer.len() as u64,
                len: u32::try_from(record_len)
                    .map_err(|_| io::Error::other("log record over 4 GiB"))?,
            });
            self.buffer.extend_from_slice(&entry.record);
            active.next_index += 1;
        }
        Ok(())
    }

    /// Makes the active segment ready for entry `index`: openraft truncates before it appends
    /// over stored entries and never leaves a gap, but its storage suite does both, so an append
    /// over stored entries truncates them first and an append after a gap starts a new segment
    /// (a log with a gap is refused at the next open).
    fn make_room(&mut self, index: u64, record_len: u64) -> io::Result<()> {
        if self
            .active
            .as_ref()
            .is_some_and(|active| index < active.next_index)
        {
            self.truncate(index)?;
        }
        let roll = match &self.active {
            None => true,
            Some(active) if active.next_index != index => {
                tracing::warn!(
                    index,
                    next = active.next_index,
                    "shard log append leaves a gap"
                );
                true
            }
            Some(active) => {
                let used = active.end + self.buffer.len() as u64;
                used > 0 && used + record_len > self.segment_bytes_target
            }
        };
        if roll {
            self.roll(index)?;
        }
        Ok(())
    }

    /// Writes the buffered records with one `write` and publishes them to readers.
    pub(super) fn write_buffered(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let Some(active) = self.active.as_mut() else {
            unreachable!("records are buffered only for an active segment");
        };
        let end = active.end + self.buffer.len() as u64;
        if end > active.zero_filled_end {
            zero_fill(active, end);
        }
        active.file.write_all_at(&self.buffer, active.end)?;
        active.end = end;
        let first_index = active.first_index;
        mark_dirty(&mut self.dirty, &active.file);
        self.buffer.clear();
        let pending = std::mem::take(&mut self.pending);
        let mut index = self.lock_index();
        let Some(segment) = index.segments.get_mut(&first_index) else {
            unreachable!("the active segment is in the index");
        };
        segment.records.extend(pending);
        Ok(())
    }

    /// Closes the active segment (written and synced, so a later segment never follows a torn
    /// one) and starts a new one at `first_index`.
    fn roll(&mut self, first_index: u64) -> io::Result<()> {
        self.write_buffered()?;
        if let Some(active) = self.active.take() {
            active.file.sync_data()?;
            self.dirty.retain(|file| !Arc::ptr_eq(file, &active.file));
        }
        let path = segment_path(&self.dir, first_index);
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        let file = Arc::new(file);
        let mut active = Active {
            first_index,
            file: file.clone(),
            end: 0,
            zero_filled_end: 0,
            next_index: first_index,
            zero_fill_failed: false,
        };
        zero_fill(&mut active, 1);
        file.sync_all()?;
        sync_dir(&self.dir)?;
        self.lock_index().segments.insert(
            first_index,
            Segment {
                path,
                file,
                first_index,
                records: Vec::new(),
            },
        );
        self.active = Some(active);
        Ok(())
    }

    /// Removes every entry from `since` on. Later segments are deleted (and the deletion made
    /// durable) before the tail of the segment holding `since` is zeroed, so a crash in between
    /// leaves the old log, never a gap.
    pub(super) fn truncate(&mut self, since: u64) -> io::Result<()> {
        self.write_buffered()?;
        let mut removed = Vec::new();
        let mut zero = None;
        {
            let mut index = self.lock_index();
            while let Some(entry) = index.segments.last_entry() {
                if entry.key() < &since {
                    break;
                }
                removed.push(entry.remove());
            }
            if let Some((_, segment)) = index.segments.range_mut(..since).next_back() {
                let keep = (since - segment.first_index) as usize;
                if keep < segment.records.len() {
                    zero = Some((
                        segment.file.clone(),
                        segment.records[keep].offset,
                        segment.end(),
                    ));
                    segment.records.truncate(keep);
                }
            }
        }
        for segment in &removed {
            fs::remove_file(&segment.path)?;
        }
        if !removed.is_empty() {
            sync_dir(&self.dir)?;
        }
        if let Some((file, start, end)) = zero {
            zero_range(&file, start, end)?;
            mark_dirty(&mut self.dirty, &file);
        }
        self.dirty.retain(|file| {
            !removed
                .iter()
                .any(|segment| Arc::ptr_eq(file, &segment.file))
        });
        self.active = self.last_segment_as_active()?;
        Ok(())
    }

    /// Forgets entries up to `upto` and deletes the segments holding only such entries. The
    /// caller has made the purge durable in the meta file first: a deleted segment that comes
    /// back after a crash is dropped again at open.
    pub(super) fn purge(&mut self, upto: u64) -> io::Result<()> {
        self.write_buffered()?;
        let mut removed = Vec::new();
        {
            let mut index = self.lock_index();
            index.first_readable = index.first_readable.max(upto.saturating_add(1));
            while let Some(entry) = index.segments.first_entry() {
                if entry.get().next_index() > upto.saturating_add(1) {
                    break;
                }
                removed.push(entry.remove());
            }
        }
        for segment in &removed {
            fs::remove_file(&segment.path)?;
        }
        self.dirty.retain(|file| {
            !removed
                .iter()
                .any(|segment| Arc::ptr_eq(file, &segment.file))
        });
        self.active = self.last_segment_as_active()?;
        Ok(())
    }

    /// Syncs the data of every file written since the last call.
    pub(super) fn sync(&mut self) -> io::Result<()> {
        self.write_buffered()?;
        for file in self.dirty.drain(..) {
            file.sync_data()?;
        }
        Ok(())
    }
}

fn mark_dirty(dirty: &mut Vec<Arc<File>>, file: &Arc<File>) {
    if !dirty.iter().any(|known| Arc::ptr_eq(known, file)) {
        dirty.push(file.clone());
    }
}

/// Grows the zero-filled region of `active` past `needed_end` (in steps, so most group commits
/// overwrite zeros and their `fdatasync` has no file size to journal). Best effort: when it fails
/// (a full disk), the file is cut back so the fill takes no space, and this segment's records go
/// past the end of the file instead; that write reports the error if there really is no room.
/// The fill never takes the last few steps of free space: the meta file needs room too.
fn zero_fill(active: &mut Active, needed_end: u64) {
    if active.zero_fill_failed {
        return;
    }
    let target = needed_end.div_ceil(ZERO_FILL_STEP_BYTES) * ZERO_FILL_STEP_BYTES;
    let start = active.zero_filled_end.max(active.end);
    let reserve = ZERO_FILL_RESERVE_STEPS * ZERO_FILL_STEP_BYTES;
    let room = match rustix::fs::fstatvfs(&*active.file) {
        Ok(stat) => stat.f_bavail.saturating_mul(stat.f_frsize),
        Err(_) => 0,
    };
    if room < (target - start).saturating_add(reserve) {
        tracing::debug!(
            room,
            "too little free space to zero-fill the shard log ahead"
        );
        active.zero_fill_failed = true;
        return;
    }
    let Err(error) = zero_range(&active.file, start, target) else {
        active.zero_filled_end = target;
        return;
    };
    tracing::debug!(%error, "could not zero-fill the shard log segment ahead");
    active.zero_fill_failed = true;
    if let Err(error) = active.file.set_len(start) {
        tracing::debug!(%error, "could not cut back a failed zero fill");
    }
    active.zero_filled_end = start;
}
