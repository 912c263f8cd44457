//! The log writer: one thread per shard that owns every write to the log database. It drains all
//! queued writes (bounded by `LOG_GROUP_COMMIT_ENTRIES_MAX` entries), applies them in order in one
//! redb transaction, commits with one fsync, and only then completes every waiter of the batch.
//! One thread serializes vote, append, truncate and purge I/O, as openraft requires.

use std::io;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use kiseki_types::limits::LOG_GROUP_COMMIT_ENTRIES_MAX;
use openraft::storage::LogFlushed;
use redb::{Database, Durability};
use tokio::sync::{mpsc, oneshot};

use super::reader::Tail;
use super::tables::{redb_io, LOGS, META};
use crate::metrics::LogCounters;
use crate::type_config::LogId;
use crate::TypeConfig;

/// One encoded log entry on its way to disk.
pub(super) struct EncodedEntry {
    pub(super) log_id: LogId,
    pub(super) record: Vec<u8>,
    pub(super) deltas: u64,
}

/// A write for the writer thread; waiters are completed after the batch holding it is durable.
pub(super) enum WriteOp {
    Append {
        entries: Vec<EncodedEntry>,
        callback: LogFlushed<TypeConfig>,
    },
    Meta {
        key: &'static str,
        record: Vec<u8>,
        reply: Option<oneshot::Sender<io::Result<()>>>,
    },
    Truncate {
        since: u64,
        reply: oneshot::Sender<io::Result<()>>,
    },
    Purge {
        upto: u64,
        record: Vec<u8>,
        reply: oneshot::Sender<io::Result<()>>,
    },
}

impl WriteOp {
    fn entry_count(&self) -> usize {
        match self {
            WriteOp::Append { entries, .. } => entries.len(),
            _ => 1,
        }
    }

    /// Whether a waiter needs this write durable (only the committed id may ride along lazily).
    fn needs_durability(&self) -> bool {
        !matches!(self, WriteOp::Meta { reply: None, .. })
    }
}

/// The first I/O error the writer hit; once set, the log is broken until reopened.
#[derive(Debug, Default)]
pub(crate) struct StorageFailure(Mutex<Option<Arc<io::Error>>>);

impl StorageFailure {
    pub(crate) fn get(&self) -> Option<Arc<io::Error>> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn record(&self, error: &io::Error) {
        let mut slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(Arc::new(copy_io_error(error)));
        }
    }
}

/// What the writer thread shares with the store.
pub(super) struct WriterShared {
    pub(super) db: Arc<Database>,
    pub(super) tail: Arc<Tail>,
    pub(super) counters: Arc<LogCounters>,
    pub(super) failure: Arc<StorageFailure>,
}

/// Starts the writer thread; it ends when every sender of `rx` is gone.
pub(super) fn spawn(
    name: String,
    shared: WriterShared,
    rx: mpsc::Receiver<WriteOp>,
) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name)
        .spawn(move || run(shared, rx))
}

fn run(shared: WriterShared, mut rx: mpsc::Receiver<WriteOp>) {
    while let Some(first) = rx.blocking_recv() {
        let mut entries = first.entry_count();
        let mut batch = vec![first];
        while entries < LOG_GROUP_COMMIT_ENTRIES_MAX {
            let Ok(op) = rx.try_recv() else { break };
            entries += op.entry_count();
            batch.push(op);
        }
        let durable = batch.iter().any(WriteOp::needs_durability);
        let result = write_batch(&shared.db, &batch, durable);
        match &result {
            Ok(()) => {
                if durable {
                    let (entries, deltas) = appended_counts(&batch);
                    shared.counters.record_flush(entries, deltas);
                }
            }
            Err(error) => {
                tracing::error!(%error, ops = batch.len(), "shard log write failed");
                shared.failure.record(error);
            }
        }
        complete(batch, &result, &shared.tail);
    }
    tracing::debug!("shard log writer exits");
}

fn appended_counts(batch: &[WriteOp]) -> (u64, u64) {
    let mut counts = (0u64, 0u64);
    for op in batch {
        if let WriteOp::Append { entries, .. } = op {
            counts.0 += entries.len() as u64;
            counts.1 += entries.iter().map(|entry| entry.deltas).sum::<u64>();
        }
    }
    counts
}

/// Applies the batch in order in one transaction and commits it.
fn write_batch(db: &Database, batch: &[WriteOp], durable: bool) -> io::Result<()> {
    let mut txn = db.begin_write().map_err(redb_io)?;
    if !durable {
        // Only the committed id: it becomes durable with the next durable commit.
        txn.set_durability(Durability::None).map_err(redb_io)?;
    }
    {
        let mut logs = txn.open_table(LOGS).map_err(redb_io)?;
        let mut meta = txn.open_table(META).map_err(redb_io)?;
        for op in batch {
            match op {
                WriteOp::Append { entries, .. } => {
                    for entry in entries {
                        logs.insert(entry.log_id.index, entry.record.as_slice())
                            .map_err(redb_io)?;
                    }
                }
                WriteOp::Meta { key, record, .. } => {
                    meta.insert(*key, record.as_slice()).map_err(redb_io)?;
                }
                WriteOp::Truncate { since, .. } => {
                    logs.retain_in(*since.., |_, _| false).map_err(redb_io)?;
                }
                WriteOp::Purge { upto, record, .. } => {
                    meta.insert(super::tables::LAST_PURGED, record.as_slice())
                        .map_err(redb_io)?;
                    logs.retain_in(..=*upto, |_, _| false).map_err(redb_io)?;
                }
            }
        }
    }
    txn.commit().map_err(redb_io)
}

/// Completes every waiter of a written batch and drops flushed entries from the unflushed tail.
fn complete(batch: Vec<WriteOp>, result: &io::Result<()>, tail: &Tail) {
    for op in batch {
        let outcome = match result {
            Ok(()) => Ok(()),
            Err(error) => Err(copy_io_error(error)),
        };
        match op {
            WriteOp::Append { entries, callback } => {
                if outcome.is_ok() {
                    tail.remove_flushed(entries.iter().map(|entry| entry.log_id));
                }
                callback.log_io_completed(outcome);
            }
            WriteOp::Meta { reply, .. } => {
                if let Some(reply) = reply {
                    let _ = reply.send(outcome);
                }
            }
            WriteOp::Truncate { reply, .. } | WriteOp::Purge { reply, .. } => {
                let _ = reply.send(outcome);
            }
        }
    }
}

/// io::Error is not Clone: rebuild one with the same OS error code (and so the same message) or
/// the same kind and message.
pub(crate) fn copy_io_error(error: &io::Error) -> io::Error {
    match error.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::new(error.kind(), error.to_string()),
    }
}
