//! Reading the log: the unflushed in-memory tail first, then the segment files.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use openraft::{RaftLogReader, StorageIOError};

use super::segments::SegmentIndex;
use crate::type_config::{Entry, LogId, StorageError};
use crate::TypeConfig;

/// Entries appended but not yet durable. openraft must be able to read an entry as soon as
/// `append` returns; the writer drops entries from here once they are committed to disk.
#[derive(Debug, Default)]
pub(crate) struct Tail(Mutex<BTreeMap<u64, Entry>>);

impl Tail {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Entry>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn insert(&self, entries: &[Entry]) {
        let mut tail = self.lock();
        for entry in entries {
            tail.insert(entry.log_id.index, entry.clone());
        }
    }

    /// Drops flushed entries, unless a later append replaced them (same index, other log id).
    pub(super) fn remove_flushed(&self, flushed: impl Iterator<Item = LogId>) {
        let mut tail = self.lock();
        for log_id in flushed {
            if tail
                .get(&log_id.index)
                .is_some_and(|entry| entry.log_id == log_id)
            {
                tail.remove(&log_id.index);
            }
        }
    }

    pub(super) fn remove_since(&self, since: u64) {
        self.lock().split_off(&since);
    }

    pub(super) fn remove_upto(&self, upto: u64) {
        let mut tail = self.lock();
        *tail = tail.split_off(&upto.saturating_add(1));
    }

    pub(super) fn last_log_id(&self) -> Option<LogId> {
        self.lock().last_key_value().map(|(_, entry)| entry.log_id)
    }

    fn range(&self, range: (Bound<u64>, Bound<u64>)) -> BTreeMap<u64, Entry> {
        let tail = self.lock();
        tail.range(range)
            .map(|(index, entry)| (*index, entry.clone()))
            .collect()
    }
}

/// Reads a shard log; cheap to clone (openraft hands one to each replication stream).
#[derive(Clone)]
pub struct LogReader {
    pub(super) index: Arc<RwLock<SegmentIndex>>,
    pub(super) tail: Arc<Tail>,
}

impl LogReader {
    /// Entries in `range`: the tail is read before the segments, and the writer removes an entry
    /// from the tail only after it is in the segment index, so every entry is seen in at least one
    /// of them. The index stays read-locked while records are read, so the writer cannot
    /// truncate them away meanwhile.
    fn read_range(&self, range: (Bound<u64>, Bound<u64>)) -> io::Result<Vec<Entry>> {
        let mut entries = self.tail.range(range);
        self.index
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .read_into(range, &mut entries)?;
        Ok(entries.into_values().collect())
    }

    /// The log id of the last entry in the segments.
    pub(super) fn last_stored_log_id(&self) -> Option<LogId> {
        self.index
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .last_log_id()
    }
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let bounds = (range.start_bound().cloned(), range.end_bound().cloned());
        self.read_range(bounds)
            .map_err(|error| StorageIOError::read_logs(&error).into())
    }
}
