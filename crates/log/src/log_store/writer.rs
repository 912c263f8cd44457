//! The log writer: one thread per shard that owns every write to the log files. It drains all
//! queued writes (bounded by `LOG_GROUP_COMMIT_ENTRIES_MAX` entries), applies them in order to the
//! segments (appends become one `write`) and the meta file, syncs once, and only then completes
//! every waiter of the batch. One thread serializes vote, append, truncate and purge I/O, as
//! openraft requires.

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;

use kiseki_types::limits::LOG_GROUP_COMMIT_ENTRIES_MAX;
use openraft::storage::LogFlushed;
use openraft::Vote;
use tokio::sync::{mpsc, oneshot};

use super::meta::{self, LogMeta};
use super::reader::Tail;
use super::segment_writer::SegmentWriter;
use super::segments::SegmentIndex;
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
    Vote {
        vote: Vote<u64>,
        reply: oneshot::Sender<io::Result<()>>,
    },
    /// Not waited for: written with the next meta write (vote, purge) or at shutdown.
    Committed { committed: Option<LogId> },
    Truncate {
        since: u64,
        reply: oneshot::Sender<io::Result<()>>,
    },
    Purge {
        log_id: LogId,
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
        !matches!(self, WriteOp::Committed { .. })
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
    pub(super) dir: PathBuf,
    pub(super) index: Arc<RwLock<SegmentIndex>>,
    pub(super) meta: LogMeta,
    pub(super) tail: Arc<Tail>,
    pub(super) counters: Arc<LogCounters>,
    pub(super) failure: Arc<StorageFailure>,
    pub(super) segment_bytes_target: u64,
}

/// Starts the writer thread; it ends when every sender of `rx` is gone.
pub(super) fn spawn(
    name: String,
    shared: WriterShared,
    rx: mpsc::Receiver<WriteOp>,
) -> io::Result<JoinHandle<()>> {
    let segments = SegmentWriter::new(
        shared.dir.clone(),
        shared.index.clone(),
        shared.segment_bytes_target,
    )?;
    let writer = Writer {
        meta: shared.meta,
        meta_unsaved: false,
        segments,
        shared,
    };
    std::thread::Builder::new()
        .name(name)
        .spawn(move || writer.run(rx))
}

struct Writer {
    shared: WriterShared,
    segments: SegmentWriter,
    /// The meta state as the store last asked for it.
    meta: LogMeta,
    /// Whether `meta` holds a committed id not yet in the meta file.
    meta_unsaved: bool,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<WriteOp>) {
        while let Some(first) = rx.blocking_recv() {
            let mut entries = first.entry_count();
            let mut batch = vec![first];
            while entries < LOG_GROUP_COMMIT_ENTRIES_MAX {
                let Ok(op) = rx.try_recv() else { break };
                entries += op.entry_count();
                batch.push(op);
            }
            let result = match self.shared.failure.get() {
                // After a failure the files' state is unknown: refuse everything until reopened.
                Some(error) => Err(copy_io_error(&error)),
                None => self.write_batch(&batch),
            };
            if let Err(error) = &result {
                tracing::error!(%error, ops = batch.len(), "shard log write failed");
                self.shared.failure.record(error);
            }
            complete(batch, &result, &self.shared.tail);
        }
        if self.meta_unsaved && self.shared.failure.get().is_none() {
            if let Err(error) = meta::write(&self.shared.dir, &self.meta) {
                tracing::warn!(%error, "could not save the committed id of the shard log");
            }
        }
        tracing::debug!("shard log writer exits");
    }

    /// Applies the batch in order, then syncs once if any waiter needs it durable.
    fn write_batch(&mut self, batch: &[WriteOp]) -> io::Result<()> {
        for op in batch {
            match op {
                WriteOp::Append { entries, .. } => self.segments.append(entries)?,
                WriteOp::Vote { vote, .. } => {
                    self.meta.vote = Some(*vote);
                    self.save_meta()?;
                }
                WriteOp::Committed { committed } => {
                    self.meta.committed = *committed;
                    self.meta_unsaved = true;
                }
                WriteOp::Truncate { since, .. } => self.segments.truncate(*since)?,
                WriteOp::Purge { log_id, .. } => {
                    // Durable before any segment goes, so a crash never loses unpurged entries.
                    self.segments.write_buffered()?;
                    self.meta.last_purged = Some(*log_id);
                    self.save_meta()?;
                    self.segments.purge(log_id.index)?;
                }
            }
        }
        if batch.iter().any(WriteOp::needs_durability) {
            self.segments.sync()?;
            let (entries, deltas) = appended_counts(batch);
            self.shared.counters.record_flush(entries, deltas);
        }
        Ok(())
    }

    fn save_meta(&mut self) -> io::Result<()> {
        meta::write(&self.shared.dir, &self.meta)?;
        self.meta_unsaved = false;
        Ok(())
    }
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
            WriteOp::Committed { .. } => {}
            WriteOp::Vote { reply, .. }
            | WriteOp::Truncate { reply, .. }
            | WriteOp::Purge { reply, .. } => {
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
