//! Coalescing of NFS writes. Clients send a file as many small WRITEs at increasing offsets,
//! often several in flight and slightly out of order; committing each as its own delta with its
//! own chunk would cut files into tiny chunks and cost a log commit per WRITE. Instead each file
//! being written has a stream: bytes that continue the current run go straight into one
//! [`ChunkWriter`] (full chunks are sealed and stored as they fill), WRITEs that arrive ahead of
//! the run wait parked (bounded) until the gap fills, and the run is committed to the namespace
//! with one `write_at` when the client asks for durability (COMMIT, or a DATA_SYNC/FILE_SYNC
//! WRITE), when the file is read or truncated, when the stream is idle, and at shutdown.
//!
//! What a client sees: an UNSTABLE WRITE is acknowledged once its bytes are held here; it is
//! durable, and visible to other protocols, after the next COMMIT (or idle flush). A server
//! restart changes the write verifier, so clients resend what they had not committed. READs and
//! GETATTRs through NFS see uncommitted bytes (a READ commits the stream first; GETATTR reports
//! the size including them). A FILE_SYNC WRITE is durable before its reply.
//!
//! Protocol-neutral on purpose: an NFSv4 front end shares it.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kiseki_namespace::{ChunkWriter, TenantNamespace};
use kiseki_types::{ErrorKind, InodeId, NamespaceError, TenantId};

/// Files with a stream at once; a new one beyond this first commits the least recently written.
/// With [`PARKED_BYTES_MAX`] and a chunk writer's buffers (a chunk filling, two in flight), this
/// bounds the memory the write-back holds to about 32 x (16 + 12) MiB with 4 MiB chunks.
const STREAMS_MAX: usize = 32;
/// Bytes parked ahead of a run per file; beyond it the run is committed and a new one starts.
const PARKED_BYTES_MAX: usize = 16 * 1024 * 1024;

type Key = (TenantId, InodeId);

struct Run {
    writer: ChunkWriter,
    start: u64,
    end: u64,
}

struct Stream {
    namespace: Arc<TenantNamespace>,
    inode: InodeId,
    run: Option<Run>,
    parked: BTreeMap<u64, Vec<u8>>,
    parked_bytes: usize,
    /// A commit that failed in the background (idle flush), reported on the next call.
    failed: Option<NamespaceError>,
}

struct Slot {
    stream: tokio::sync::Mutex<Stream>,
    /// End of the bytes held (for GETATTR), 0 when nothing is held.
    held_end: AtomicU64,
    /// Milliseconds since the write-back started, of the last write.
    last_write_ms: AtomicU64,
}

/// The write streams of every file being written over NFS.
pub struct WriteBack {
    slots: Mutex<HashMap<Key, Arc<Slot>>>,
    epoch: Instant,
}

impl Default for WriteBack {
    fn default() -> Self {
        WriteBack {
            slots: Mutex::new(HashMap::new()),
            epoch: Instant::now(),
        }
    }
}

impl Stream {
    fn held_end(&self) -> u64 {
        let run_end = self.run.as_ref().map_or(0, |run| run.end);
        let parked_end = self
            .parked
            .iter()
            .next_back()
            .map_or(0, |(offset, data)| offset + data.len() as u64);
        run_end.max(parked_end)
    }

    fn is_empty(&self) -> bool {
        self.run.is_none() && self.parked.is_empty() && self.failed.is_none()
    }

    async fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), NamespaceError> {
        if let Some(error) = self.failed.take() {
            return Err(error);
        }
        let run_end = self.run.as_ref().map(|run| run.end);
        match run_end {
            None => {
                self.run = Some(Run {
                    writer: self.namespace.writer(),
                    start: offset,
                    end: offset,
                });
                self.append(data).await?;
            }
            Some(end) if offset == end => self.append(data).await?,
            Some(end)
                if offset > end
                    && self.parked_bytes + data.len() <= PARKED_BYTES_MAX
                    && !self.overlaps_parked(offset, data.len() as u64) =>
            {
                self.parked_bytes += data.len();
                self.parked.insert(offset, data.to_vec());
                return Ok(());
            }
            // Behind the run (a rewrite), over a parked write, or too far ahead: commit what is
            // held, in arrival order, so the later write wins where they overlap.
            Some(_) => {
                self.commit().await?;
                self.run = Some(Run {
                    writer: self.namespace.writer(),
                    start: offset,
                    end: offset,
                });
                self.append(data).await?;
            }
        }
        self.drain_parked().await
    }

    fn overlaps_parked(&self, offset: u64, len: u64) -> bool {
        let end = offset + len;
        let before = self.parked.range(..end).next_back();
        before.is_some_and(|(start, data)| start + data.len() as u64 > offset)
    }

    async fn append(&mut self, data: &[u8]) -> Result<(), NamespaceError> {
        let Some(run) = self.run.as_mut() else {
            return Ok(());
        };
        run.writer.write(data).await?;
        run.end += data.len() as u64;
        Ok(())
    }

    /// Moves parked writes that the run has reached into it.
    async fn drain_parked(&mut self) -> Result<(), NamespaceError> {
        loop {
            let Some(end) = self.run.as_ref().map(|run| run.end) else {
                return Ok(());
            };
            let Some((&offset, _)) = self.parked.iter().next() else {
                return Ok(());
            };
            if offset > end {
                return Ok(());
            }
            let Some(data) = self.parked.remove(&offset) else {
                return Ok(());
            };
            self.parked_bytes -= data.len();
            let skip = (end - offset) as usize;
            if skip < data.len() {
                self.append(&data[skip..]).await?;
            }
        }
    }

    /// Commits the run, then every parked write, to the namespace.
    async fn commit(&mut self) -> Result<(), NamespaceError> {
        let result = self.commit_inner().await;
        self.parked.clear();
        self.parked_bytes = 0;
        match result {
            // The file went away while being written: there is nothing left to write to.
            Err(error) if matches!(error.kind, ErrorKind::NotFound | ErrorKind::Stale) => Ok(()),
            other => other,
        }
    }

    async fn commit_inner(&mut self) -> Result<(), NamespaceError> {
        if let Some(run) = self.run.take() {
            let written = run.writer.finish().await?;
            if written.size > 0 {
                self.namespace
                    .write_at(self.inode, run.start, written)
                    .await?;
            }
        }
        for (offset, data) in std::mem::take(&mut self.parked) {
            let mut writer = self.namespace.writer();
            writer.write(&data).await?;
            self.namespace
                .write_at(self.inode, offset, writer.finish().await?)
                .await?;
        }
        Ok(())
    }
}

impl WriteBack {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn slot(&self, key: Key) -> Option<Arc<Slot>> {
        self.slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&key)
            .cloned()
    }

    /// The slot of a file, created when missing; also picks a stream to evict when full.
    fn slot_or_insert(
        &self,
        namespace: &Arc<TenantNamespace>,
        inode: InodeId,
    ) -> (Arc<Slot>, Option<(Key, Arc<Slot>)>) {
        let mut slots = self
            .slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let key = (namespace.tenant(), inode);
        if let Some(slot) = slots.get(&key) {
            return (Arc::clone(slot), None);
        }
        let evict = (slots.len() >= STREAMS_MAX)
            .then(|| {
                slots
                    .iter()
                    .min_by_key(|(_, slot)| slot.last_write_ms.load(Ordering::Relaxed))
                    .map(|(key, slot)| (*key, Arc::clone(slot)))
            })
            .flatten();
        let stream = Stream {
            namespace: Arc::clone(namespace),
            inode,
            run: None,
            parked: BTreeMap::new(),
            parked_bytes: 0,
            failed: None,
        };
        let slot = Arc::new(Slot {
            stream: tokio::sync::Mutex::new(stream),
            held_end: AtomicU64::new(0),
            last_write_ms: AtomicU64::new(self.now_ms()),
        });
        slots.insert(key, Arc::clone(&slot));
        (slot, evict)
    }

    /// Takes `data` at `offset` of file `inode`; with `stable`, it and everything held before it
    /// for the file are durable when this returns.
    pub async fn write(
        &self,
        namespace: &Arc<TenantNamespace>,
        inode: InodeId,
        offset: u64,
        data: &[u8],
        stable: bool,
    ) -> Result<(), NamespaceError> {
        let (slot, evict) = self.slot_or_insert(namespace, inode);
        if let Some(((tenant, evicted), evict)) = evict {
            let result = self.commit_slot(&evict).await;
            self.forget_if_empty(tenant, evicted, &evict);
            result?;
        }
        let mut stream = slot.stream.lock().await;
        slot.last_write_ms.store(self.now_ms(), Ordering::Relaxed);
        let mut result = stream.write(offset, data).await;
        if result.is_ok() && stable {
            result = stream.commit().await;
        }
        if result.is_err() {
            // Whatever the stream held is dropped with the error the client now sees.
            stream.run = None;
            stream.parked.clear();
            stream.parked_bytes = 0;
        }
        slot.held_end.store(stream.held_end(), Ordering::Relaxed);
        drop(stream);
        self.forget_if_empty(namespace.tenant(), inode, &slot);
        result
    }

    /// Commits what is held for file `inode` (COMMIT; before a READ, truncate or rename).
    pub async fn commit(&self, tenant: TenantId, inode: InodeId) -> Result<(), NamespaceError> {
        let Some(slot) = self.slot((tenant, inode)) else {
            return Ok(());
        };
        let result = self.commit_slot(&slot).await;
        self.forget_if_empty(tenant, inode, &slot);
        result
    }

    async fn commit_slot(&self, slot: &Slot) -> Result<(), NamespaceError> {
        let mut stream = slot.stream.lock().await;
        let result = match stream.failed.take() {
            Some(error) => Err(error),
            None => stream.commit().await,
        };
        slot.held_end.store(stream.held_end(), Ordering::Relaxed);
        result
    }

    /// The size of file `inode` counting bytes held here, given its committed size.
    pub fn size_with_held(&self, tenant: TenantId, inode: InodeId, committed: u64) -> u64 {
        self.slot((tenant, inode)).map_or(committed, |slot| {
            committed.max(slot.held_end.load(Ordering::Relaxed))
        })
    }

    fn forget_if_empty(&self, tenant: TenantId, inode: InodeId, slot: &Arc<Slot>) {
        let mut slots = self
            .slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Two references: the map's and the caller's. More means another call is about to use it.
        if Arc::strong_count(slot) > 2 {
            return;
        }
        if let Ok(stream) = slot.stream.try_lock() {
            if stream.is_empty() {
                slots.remove(&(tenant, inode));
            }
        }
    }

    /// Commits streams not written for `idle`; a failure is kept for the file's next call.
    pub async fn commit_idle(&self, idle: Duration) {
        let deadline = self.now_ms().saturating_sub(idle.as_millis() as u64);
        let idle_slots: Vec<(Key, Arc<Slot>)> = {
            let slots = self
                .slots
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            slots
                .iter()
                .filter(|(_, slot)| slot.last_write_ms.load(Ordering::Relaxed) <= deadline)
                .map(|(key, slot)| (*key, Arc::clone(slot)))
                .collect()
        };
        for ((tenant, inode), slot) in idle_slots {
            let mut stream = slot.stream.lock().await;
            if stream.failed.is_none() {
                if let Err(error) = stream.commit().await {
                    tracing::warn!(%tenant, %inode, %error, "committing idle NFS writes failed");
                    stream.failed = Some(error);
                }
            }
            slot.held_end.store(stream.held_end(), Ordering::Relaxed);
            drop(stream);
            self.forget_if_empty(tenant, inode, &slot);
        }
    }

    /// Commits every stream (at shutdown).
    pub async fn commit_all(&self) {
        self.commit_idle(Duration::ZERO).await;
    }
}
