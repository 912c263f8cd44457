//! Streaming writes: bytes are cut into fixed-size chunks as they arrive, each chunk sealed and
//! stored while the next fills, with a bound on chunks in flight, so a write of any size holds
//! at most a few chunks in memory.

use std::collections::VecDeque;
use std::sync::Arc;

use kiseki_chunk::{ChunkBuffer, ChunkService, WrittenChunk};
use kiseki_crypto::TenantKeyring;
use kiseki_types::{Extent, NamespaceError, TenantId};
use tokio::task::JoinHandle;

use crate::error::from_chunk_error;

/// Chunks being sealed and stored at once by one writer.
const CHUNKS_IN_FLIGHT_MAX: usize = 4;

/// The durable result of a streaming write: extents from offset zero, ready for one delta.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WrittenData {
    /// Extents laid end to end from offset zero.
    pub extents: Vec<Extent>,
    /// Total bytes written.
    pub size: u64,
    /// Chunks that were already stored (deduplicated) and not written again.
    pub deduplicated_chunks: u32,
}

/// Cuts a byte stream into chunks and stores them; [`ChunkWriter::finish`] returns the extents.
/// Nothing is visible in the namespace until the caller commits the extents with a delta.
pub struct ChunkWriter {
    tenant: TenantId,
    chunks: ChunkService,
    keyring: Arc<TenantKeyring>,
    chunk_size: usize,
    buffer: ChunkBuffer,
    in_flight: VecDeque<(
        u64,
        JoinHandle<Result<WrittenChunk, kiseki_chunk::ChunkError>>,
    )>,
    stored_bytes: u64,
    result: WrittenData,
    /// The writer's workload, when its identity names one (placement policy).
    workload: Option<Arc<str>>,
}

impl ChunkWriter {
    pub(crate) fn new(
        tenant: TenantId,
        chunks: ChunkService,
        keyring: Arc<TenantKeyring>,
        chunk_size: usize,
    ) -> Self {
        ChunkWriter {
            tenant,
            chunks,
            keyring,
            chunk_size,
            buffer: ChunkBuffer::with_capacity(chunk_size),
            in_flight: VecDeque::new(),
            stored_bytes: 0,
            result: WrittenData::default(),
            workload: None,
        }
    }

    /// Writes as `workload`: new chunks go to the pool the placement policy names for it.
    pub fn for_workload(mut self, workload: &str) -> Self {
        self.workload = Some(Arc::from(workload));
        self
    }

    /// Adds bytes to the stream.
    pub async fn write(&mut self, mut data: &[u8]) -> Result<(), NamespaceError> {
        while !data.is_empty() {
            let take = (self.chunk_size - self.buffer.len()).min(data.len());
            self.buffer.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buffer.len() == self.chunk_size {
                self.seal_buffer().await?;
            }
        }
        Ok(())
    }

    /// Bytes accepted so far.
    pub fn len(&self) -> u64 {
        self.stored_bytes + self.buffer.len() as u64
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stores the last partial chunk, waits for every chunk to be durable and returns the extents.
    pub async fn finish(mut self) -> Result<WrittenData, NamespaceError> {
        if !self.buffer.is_empty() {
            self.seal_buffer().await?;
        }
        while !self.in_flight.is_empty() {
            self.complete_oldest().await?;
        }
        self.result.size = self.stored_bytes;
        Ok(std::mem::take(&mut self.result))
    }

    async fn seal_buffer(&mut self) -> Result<(), NamespaceError> {
        if self.in_flight.len() >= CHUNKS_IN_FLIGHT_MAX {
            self.complete_oldest().await?;
        }
        let data = std::mem::replace(
            &mut self.buffer,
            ChunkBuffer::with_capacity(self.chunk_size),
        );
        let offset = self.stored_bytes;
        self.stored_bytes += data.len() as u64;
        let (tenant, chunks, keyring, workload) = (
            self.tenant,
            self.chunks.clone(),
            Arc::clone(&self.keyring),
            self.workload.clone(),
        );
        let task = tokio::spawn(async move {
            let key = keyring.current();
            chunks
                .write_buffer_for(
                    tenant,
                    workload.as_deref(),
                    keyring.addressing(),
                    &key,
                    data,
                )
                .await
        });
        self.in_flight.push_back((offset, task));
        Ok(())
    }

    async fn complete_oldest(&mut self) -> Result<(), NamespaceError> {
        let Some((offset, task)) = self.in_flight.pop_front() else {
            return Ok(());
        };
        let written = task
            .await
            .map_err(|error| {
                NamespaceError::new(
                    kiseki_types::ErrorKind::Unavailable,
                    format!("chunk task failed: {error}"),
                )
            })?
            .map_err(|error| from_chunk_error(error, "write"))?;
        if written.deduplicated {
            self.result.deduplicated_chunks += 1;
        }
        if written.len > 0 {
            self.result.extents.push(Extent {
                file_offset: offset,
                len: written.len,
                chunk: written.id,
                chunk_offset: 0,
            });
        }
        Ok(())
    }
}

impl Drop for ChunkWriter {
    fn drop(&mut self) {
        // An abandoned write stops storing chunks; those already stored are unreferenced and are
        // left to garbage collection.
        for (_, task) in &self.in_flight {
            task.abort();
        }
    }
}
