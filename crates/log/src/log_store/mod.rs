//! Durable log storage of a shard (openraft storage-v2 `RaftLogStorage`): entries in
//! append-only segment files, the vote, committed and last-purged ids in a small meta file beside
//! them, all written only by the writer thread.

mod meta;
mod reader;
mod segment_writer;
mod segments;
mod writer;

use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;

use kiseki_types::limits::LOG_GROUP_COMMIT_ENTRIES_MAX;
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{EntryPayload, RaftLogReader, StorageIOError, Vote};
use tokio::sync::{mpsc, oneshot};

pub use reader::LogReader;
pub(crate) use writer::{copy_io_error, StorageFailure};

use crate::metrics::LogCounters;
use crate::type_config::{Entry, LogId, StorageError};
use crate::TypeConfig;
use reader::Tail;
use segments::SegmentIndex;
use writer::{EncodedEntry, WriteOp, WriterShared};

/// The durable log of one shard. Owned by openraft; reads go through [`LogReader`].
pub struct LogStore {
    reader: LogReader,
    writer: mpsc::Sender<WriteOp>,
    writer_thread: Option<JoinHandle<()>>,
    vote: Option<Vote<u64>>,
    committed: Option<LogId>,
    last_purged: Option<LogId>,
    counters: Arc<LogCounters>,
    failure: Arc<StorageFailure>,
}

impl LogStore {
    /// Opens (or creates) the log in directory `dir` and starts its writer thread. A torn write
    /// at the end of the log (a crash during a group commit that was never acknowledged) is
    /// dropped.
    pub fn open(dir: &Path) -> io::Result<LogStore> {
        Self::open_with(dir, Arc::default(), Arc::default())
    }

    pub(crate) fn open_with(
        dir: &Path,
        counters: Arc<LogCounters>,
        failure: Arc<StorageFailure>,
    ) -> io::Result<LogStore> {
        Self::open_configured(dir, counters, failure, segments::SEGMENT_BYTES_TARGET)
    }

    fn open_configured(
        dir: &Path,
        counters: Arc<LogCounters>,
        failure: Arc<StorageFailure>,
        segment_bytes_target: u64,
    ) -> io::Result<LogStore> {
        std::fs::create_dir_all(dir)?;
        let meta = meta::read(dir)?;
        let index = Arc::new(RwLock::new(SegmentIndex::open(dir, meta.last_purged)?));
        counters.set_committed(meta.committed.map(|log_id: LogId| log_id.index));
        let tail = Arc::new(Tail::default());
        let (tx, rx) = mpsc::channel(LOG_GROUP_COMMIT_ENTRIES_MAX);
        let shared = WriterShared {
            dir: dir.to_path_buf(),
            index: index.clone(),
            meta,
            tail: tail.clone(),
            counters: counters.clone(),
            failure: failure.clone(),
            segment_bytes_target,
        };
        let name = format!("kiseki-log-writer-{}", dir.display());
        let writer_thread = writer::spawn(name, shared, rx)?;
        Ok(LogStore {
            reader: LogReader { index, tail },
            writer: tx,
            writer_thread: Some(writer_thread),
            vote: meta.vote,
            committed: meta.committed,
            last_purged: meta.last_purged,
            counters,
            failure,
        })
    }

    /// The writer thread, to join after openraft dropped the store (the files close then).
    pub fn take_writer_thread(&mut self) -> Option<JoinHandle<()>> {
        self.writer_thread.take()
    }

    /// Queues a write and waits until it is durable.
    async fn write_durably(
        &self,
        op: impl FnOnce(oneshot::Sender<io::Result<()>>) -> WriteOp,
    ) -> io::Result<()> {
        let (reply, done) = oneshot::channel();
        self.submit(op(reply)).await?;
        done.await.map_err(|_| writer_gone())?
    }

    async fn submit(&self, op: WriteOp) -> io::Result<()> {
        if let Some(error) = self.failure.get() {
            return Err(copy_io_error(&error));
        }
        self.writer.send(op).await.map_err(|_| writer_gone())
    }
}

fn writer_gone() -> io::Error {
    io::Error::other("shard log writer thread is gone")
}

fn encode_entry(entry: &Entry) -> io::Result<EncodedEntry> {
    let deltas = match &entry.payload {
        EntryPayload::Normal(batch) => batch.deltas.len() as u64,
        _ => 0,
    };
    Ok(EncodedEntry {
        log_id: entry.log_id,
        record: segments::encode_record(entry)?,
        deltas,
    })
}

fn write_error(error: &io::Error) -> StorageError {
    StorageIOError::write_logs(error).into()
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        self.reader.try_get_log_entries(range).await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let stored = self.reader.last_stored_log_id();
        let last = self
            .reader
            .tail
            .last_log_id()
            .max(stored)
            .max(self.last_purged);
        Ok(LogState {
            last_purged_log_id: self.last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> LogReader {
        self.reader.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError> {
        let op = |reply| WriteOp::Vote { vote: *vote, reply };
        self.write_durably(op)
            .await
            .map_err(|e| StorageIOError::write_vote(&e))?;
        self.vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError> {
        Ok(self.vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not waited for: the committed id is an optimization for restart (see openraft's docs
        // on optionally persisted `committed`); it is saved with the next vote or purge, and at
        // shutdown.
        self.submit(WriteOp::Committed { committed })
            .await
            .map_err(|e| write_error(&e))?;
        self.committed = committed;
        self.counters
            .set_committed(committed.map(|log_id| log_id.index));
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let encoded: Vec<EncodedEntry> = entries
            .iter()
            .map(encode_entry)
            .collect::<io::Result<_>>()
            .map_err(|e| write_error(&e))?;
        // Readable as soon as `append` returns; durable when the callback fires.
        self.reader.tail.insert(&entries);
        self.submit(WriteOp::Append {
            entries: encoded,
            callback,
        })
        .await
        .map_err(|e| write_error(&e))
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let since = log_id.index;
        let op = |reply| WriteOp::Truncate { since, reply };
        self.write_durably(op).await.map_err(|e| write_error(&e))?;
        // After the durable truncation, so readers never see the segments' stale entries alone.
        self.reader.tail.remove_since(since);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let op = |reply| WriteOp::Purge { log_id, reply };
        self.write_durably(op).await.map_err(|e| write_error(&e))?;
        self.reader.tail.remove_upto(log_id.index);
        self.last_purged = Some(log_id);
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use openraft::storage::RaftLogStorageExt;
    use openraft::testing::log_id;

    use super::*;
    use crate::DeltaBatch;

    fn entry(term: u64, index: u64) -> Entry {
        Entry {
            log_id: log_id(term, 1, index),
            payload: EntryPayload::Normal(DeltaBatch::default()),
        }
    }

    /// A store whose segments close after about 256 bytes (about 10 entries).
    fn open_small(dir: &Path) -> LogStore {
        LogStore::open_configured(dir, Arc::default(), Arc::default(), 256).unwrap()
    }

    fn close(mut store: LogStore) {
        let writer = store.take_writer_thread().unwrap();
        drop(store);
        writer.join().unwrap();
    }

    fn segment_count(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "seg")
            })
            .count()
    }

    async fn log_ids(store: &mut LogStore) -> Vec<LogId> {
        let entries = store.try_get_log_entries(0..1000).await.unwrap();
        entries.iter().map(|entry| entry.log_id).collect()
    }

    #[tokio::test]
    async fn segments_roll_truncate_and_purge_across_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open_small(dir.path());
        store
            .blocking_append((1..=100).map(|i| entry(1, i)))
            .await
            .unwrap();
        let segments = segment_count(dir.path());
        assert!(segments >= 5, "{segments} segments for 100 entries");

        // Truncate in the middle of an earlier segment: the later ones go.
        store.truncate(log_id(1, 1, 35)).await.unwrap();
        store
            .blocking_append((35..=50).map(|i| entry(2, i)))
            .await
            .unwrap();
        store.purge(log_id(1, 1, 22)).await.unwrap();
        let expected: Vec<LogId> = (23..=34)
            .map(|i| log_id(1, 1, i))
            .chain((35..=50).map(|i| log_id(2, 1, i)))
            .collect();
        assert_eq!(log_ids(&mut store).await, expected);
        assert!(segment_count(dir.path()) < segments);
        close(store);

        let mut store = open_small(dir.path());
        assert_eq!(log_ids(&mut store).await, expected);
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(log_id(1, 1, 22)));
        assert_eq!(state.last_log_id, Some(log_id(2, 1, 50)));

        // Truncate exactly at a segment's first entry, then purge past the end of the log.
        let first_of_last = segments::list_first_indexes(dir.path()).pop().unwrap();
        store.truncate(log_id(2, 1, first_of_last)).await.unwrap();
        assert_eq!(
            log_ids(&mut store).await.last().map(|id| id.index),
            Some(first_of_last - 1)
        );
        store.purge(log_id(2, 1, 60)).await.unwrap();
        assert_eq!(log_ids(&mut store).await, Vec::<LogId>::new());
        assert_eq!(segment_count(dir.path()), 0);
        store
            .blocking_append((61..=70).map(|i| entry(3, i)))
            .await
            .unwrap();
        close(store);
        let mut store = open_small(dir.path());
        let expected: Vec<LogId> = (61..=70).map(|i| log_id(3, 1, i)).collect();
        assert_eq!(log_ids(&mut store).await, expected);
        close(store);
    }

    #[tokio::test]
    async fn corruption_before_the_last_segment_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open_small(dir.path());
        store
            .blocking_append((1..=40).map(|i| entry(1, i)))
            .await
            .unwrap();
        close(store);
        let first = segments::list_first_indexes(dir.path())[0];
        let path = segments::segment_path(dir.path(), first);
        let mut image = std::fs::read(&path).unwrap();
        image[20] ^= 0xff;
        std::fs::write(&path, &image).unwrap();
        let error = LogStore::open(dir.path()).err().unwrap();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{error}");
    }
}
