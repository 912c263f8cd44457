//! Streaming range reads: only the chunks that hold the range are fetched, the next one while the
//! current is returned (read-ahead of one chunk), each verified and decrypted before any byte of
//! it is handed out. Holes read as zeros.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use kiseki_chunk::ChunkService;
use kiseki_crypto::TenantKeyring;
use kiseki_types::{ChunkId, Composition, ErrorKind, NamespaceError, TenantId};
use tokio::task::JoinHandle;

use crate::error::from_chunk_error;

/// Largest zero-filled piece returned for a hole.
const HOLE_PIECE_BYTES_MAX: u64 = 1024 * 1024;
/// Chunks fetched ahead of the one being returned.
const CHUNKS_READ_AHEAD: usize = 1;

enum Piece {
    Hole(u64),
    Data {
        chunk: ChunkId,
        start: usize,
        len: usize,
    },
}

type Fetch = JoinHandle<Result<Bytes, kiseki_chunk::ChunkError>>;

/// The bytes of a file range, produced piece by piece with [`RangeReader::next_piece`].
pub struct RangeReader {
    tenant: TenantId,
    chunks: ChunkService,
    keyring: Arc<TenantKeyring>,
    label: String,
    pieces: VecDeque<Piece>,
    fetches: VecDeque<(ChunkId, Fetch)>,
    last: Option<(ChunkId, Bytes)>,
    remaining: u64,
}

impl RangeReader {
    pub(crate) fn new(
        tenant: TenantId,
        chunks: ChunkService,
        keyring: Arc<TenantKeyring>,
        composition: &Composition,
        offset: u64,
        len: u64,
        label: String,
    ) -> Self {
        let end = offset.saturating_add(len).min(composition.size);
        let mut pieces = VecDeque::new();
        let mut position = offset.min(end);
        for extent in composition.extents_in(offset, len) {
            if extent.file_offset > position {
                pieces.push_back(Piece::Hole(extent.file_offset - position));
            }
            pieces.push_back(Piece::Data {
                chunk: extent.chunk,
                start: extent.chunk_offset as usize,
                len: extent.len as usize,
            });
            position = extent.end();
        }
        if end > position {
            pieces.push_back(Piece::Hole(end - position));
        }
        let remaining = end.saturating_sub(offset);
        RangeReader {
            tenant,
            chunks,
            keyring,
            label,
            pieces,
            fetches: VecDeque::new(),
            last: None,
            remaining,
        }
    }

    /// Bytes still to come.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// The next piece of the range, `None` at the end. A piece that fails verification is an
    /// error naming the file; no byte of it is returned.
    pub async fn next_piece(&mut self) -> Option<Result<Bytes, NamespaceError>> {
        let piece = self.pieces.pop_front()?;
        let bytes = match piece {
            Piece::Hole(len) => {
                let now = len.min(HOLE_PIECE_BYTES_MAX);
                if len > now {
                    self.pieces.push_front(Piece::Hole(len - now));
                }
                Ok(Bytes::from(vec![0u8; now as usize]))
            }
            Piece::Data { chunk, start, len } => self.chunk(chunk).await.and_then(|plaintext| {
                plaintext
                    .get(start..start + len)
                    .map(|_| plaintext.slice(start..start + len))
                    .ok_or_else(|| {
                        NamespaceError::new(
                            ErrorKind::Corrupt,
                            format!("{}: chunk {chunk} is shorter than its extent", self.label),
                        )
                    })
            }),
        };
        if let Ok(bytes) = &bytes {
            self.remaining -= bytes.len() as u64;
        } else {
            self.pieces.clear();
        }
        Some(bytes)
    }

    /// Reads the whole range into one buffer (for small ranges and tests).
    pub async fn read_to_end(mut self) -> Result<Vec<u8>, NamespaceError> {
        let mut out = Vec::with_capacity(self.remaining as usize);
        while let Some(piece) = self.next_piece().await {
            out.extend_from_slice(&piece?);
        }
        Ok(out)
    }

    async fn chunk(&mut self, id: ChunkId) -> Result<Bytes, NamespaceError> {
        if let Some((last_id, bytes)) = &self.last {
            if *last_id == id {
                return Ok(bytes.clone());
            }
        }
        self.schedule_fetches(id);
        let fetched = match self.fetches.pop_front() {
            Some((_, fetch)) => fetch
                .await
                .unwrap_or_else(|error| Err(kiseki_chunk::ChunkError::Task(error.to_string()))),
            None => Err(kiseki_chunk::ChunkError::Task("no fetch scheduled".into())),
        };
        let bytes = fetched.map_err(|error| from_chunk_error(error, &self.label))?;
        self.last = Some((id, bytes.clone()));
        Ok(bytes)
    }

    /// Makes sure `current` is being fetched first and the next chunks of the range after it.
    fn schedule_fetches(&mut self, current: ChunkId) {
        if self.fetches.front().map(|(id, _)| *id) != Some(current) {
            for (_, fetch) in self.fetches.drain(..) {
                fetch.abort();
            }
            let fetch = self.spawn_fetch(current);
            self.fetches.push_back((current, fetch));
        }
        let mut upcoming: Vec<ChunkId> = Vec::new();
        for piece in &self.pieces {
            if let Piece::Data { chunk, .. } = piece {
                if *chunk != current && !upcoming.contains(chunk) {
                    upcoming.push(*chunk);
                }
                if upcoming.len() == CHUNKS_READ_AHEAD {
                    break;
                }
            }
        }
        for id in upcoming {
            if !self.fetches.iter().any(|(fetching, _)| *fetching == id) {
                let fetch = self.spawn_fetch(id);
                self.fetches.push_back((id, fetch));
            }
        }
    }

    fn spawn_fetch(&self, id: ChunkId) -> Fetch {
        let (tenant, chunks, keyring) =
            (self.tenant, self.chunks.clone(), Arc::clone(&self.keyring));
        tokio::spawn(async move {
            chunks
                .read(tenant, id, &|epoch| keyring.epoch(epoch).ok())
                .await
        })
    }
}

impl Drop for RangeReader {
    fn drop(&mut self) {
        for (_, fetch) in &self.fetches {
            fetch.abort();
        }
    }
}
