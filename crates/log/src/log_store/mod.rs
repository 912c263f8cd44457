//! Durable log storage of a shard (openraft storage-v2 `RaftLogStorage`): entries, vote,
//! committed and last-purged ids in one redb database, written only by the writer thread.

mod reader;
mod tables;
mod writer;

use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

use kiseki_types::limits::LOG_GROUP_COMMIT_ENTRIES_MAX;
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{EntryPayload, RaftLogReader, StorageIOError, Vote};
use redb::{Database, ReadableDatabase, ReadableTable};
use tokio::sync::{mpsc, oneshot};

pub use reader::LogReader;
pub(crate) use writer::{copy_io_error, StorageFailure};

use crate::codec;
use crate::metrics::LogCounters;
use crate::type_config::{Entry, LogId, StorageError};
use crate::TypeConfig;
use reader::Tail;
use tables::{redb_io, COMMITTED, FORMAT, FORMAT_MAGIC_V1, LAST_PURGED, LOGS, META, VOTE};
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
    /// Opens (or creates) the log database at `path` and starts its writer thread.
    pub fn open(path: &Path) -> io::Result<LogStore> {
        Self::open_with(path, Arc::default(), Arc::default())
    }

    pub(crate) fn open_with(
        path: &Path,
        counters: Arc<LogCounters>,
        failure: Arc<StorageFailure>,
    ) -> io::Result<LogStore> {
        let db = Arc::new(Database::create(path).map_err(redb_io)?);
        init_tables(&db)?;
        let (vote, committed, last_purged) = read_meta(&db)?;
        counters.set_committed(committed.map(|log_id: LogId| log_id.index));
        let tail = Arc::new(Tail::default());
        let (tx, rx) = mpsc::channel(LOG_GROUP_COMMIT_ENTRIES_MAX);
        let shared = WriterShared {
            db: db.clone(),
            tail: tail.clone(),
            counters: counters.clone(),
            failure: failure.clone(),
        };
        let name = format!("kiseki-log-writer-{}", path.display());
        let writer_thread = writer::spawn(name, shared, rx)?;
        Ok(LogStore {
            reader: LogReader { db, tail },
            writer: tx,
            writer_thread: Some(writer_thread),
            vote,
            committed,
            last_purged,
            counters,
            failure,
        })
    }

    /// The writer thread, to join after openraft dropped the store (the database closes then).
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

fn init_tables(db: &Database) -> io::Result<()> {
    let txn = db.begin_write().map_err(redb_io)?;
    {
        txn.open_table(LOGS).map_err(redb_io)?;
        let mut meta = txn.open_table(META).map_err(redb_io)?;
        let format = meta
            .get(FORMAT)
            .map_err(redb_io)?
            .map(|value| value.value().to_vec());
        match format {
            None => {
                meta.insert(FORMAT, FORMAT_MAGIC_V1).map_err(redb_io)?;
            }
            Some(found) if found == FORMAT_MAGIC_V1 => {}
            Some(found) => {
                let message = format!("unknown shard log format marker {found:?}");
                return Err(io::Error::new(io::ErrorKind::InvalidData, message));
            }
        }
    }
    txn.commit().map_err(redb_io)
}

type Meta = (Option<Vote<u64>>, Option<LogId>, Option<LogId>);

fn read_meta(db: &Database) -> io::Result<Meta> {
    let txn = db.begin_read().map_err(redb_io)?;
    let meta = txn.open_table(META).map_err(redb_io)?;
    let read = |key: &str| -> io::Result<Option<Vec<u8>>> {
        Ok(meta
            .get(key)
            .map_err(redb_io)?
            .map(|value| value.value().to_vec()))
    };
    let vote = read(VOTE)?
        .map(|record| codec::decode(&record))
        .transpose()?;
    // Saved as `Option<LogId>`: openraft may save "nothing committed".
    let committed: Option<Option<LogId>> = read(COMMITTED)?
        .map(|record| codec::decode(&record))
        .transpose()?;
    let committed = committed.flatten();
    let purged = read(LAST_PURGED)?
        .map(|record| codec::decode(&record))
        .transpose()?;
    Ok((vote, committed, purged))
}

fn encode_entry(entry: &Entry) -> io::Result<EncodedEntry> {
    let deltas = match &entry.payload {
        EntryPayload::Normal(batch) => batch.deltas.len() as u64,
        _ => 0,
    };
    Ok(EncodedEntry {
        log_id: entry.log_id,
        record: codec::encode(entry)?,
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
        let stored = self
            .reader
            .last_stored_log_id()
            .map_err(|e| StorageIOError::read_logs(&e))?;
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
        let record = codec::encode(vote).map_err(|e| StorageIOError::write_vote(&e))?;
        let op = |reply| WriteOp::Meta {
            key: VOTE,
            record,
            reply: Some(reply),
        };
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
        // Not waited for: the committed id is an optimization for restart; it rides along with
        // the next durable write (see openraft's docs on optionally persisted `committed`).
        let record = codec::encode(&committed).map_err(|e| write_error(&e))?;
        self.submit(WriteOp::Meta {
            key: COMMITTED,
            record,
            reply: None,
        })
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
        // After the durable delete, so readers never see the database's stale entries alone.
        self.reader.tail.remove_since(since);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let record = codec::encode(&log_id).map_err(|e| write_error(&e))?;
        let upto = log_id.index;
        let op = |reply| WriteOp::Purge {
            upto,
            record,
            reply,
        };
        self.write_durably(op).await.map_err(|e| write_error(&e))?;
        self.reader.tail.remove_upto(upto);
        self.last_purged = Some(log_id);
        Ok(())
    }
}
