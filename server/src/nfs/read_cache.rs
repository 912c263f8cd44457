//! Sequential READs without re-reading chunks. A client reads a file as many READs of at most
//! 1 MiB, while a chunk is 4 MiB: fetching (verifying, decrypting) the chunk for every READ
//! would do the work four times. Each recently read file keeps its open [`RangeReader`] (which
//! fetches the next chunk while this one is served) and its last few decrypted pieces, so
//! consecutive and slightly reordered READs are served from memory.
//!
//! The cache is dropped when the file's size or times change, so a READ never returns bytes of
//! an older version than the one GETATTR reports.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use kiseki_namespace::{RangeReader, TenantNamespace};
use kiseki_types::{Attributes, InodeId, NamespaceError, TenantId, Timestamp};

/// Files whose readers and pieces are kept.
const FILES_MAX: usize = 8;
/// Decrypted pieces (up to a chunk each) kept per file.
const PIECES_PER_FILE: usize = 3;

type Key = (TenantId, InodeId);
type Version = (u64, Timestamp, Timestamp);

struct FileReads {
    version: Version,
    pieces: VecDeque<(u64, Bytes)>,
    reader: Option<(u64, RangeReader)>,
}

struct Entry {
    key: Key,
    last_used: u64,
    reads: Arc<tokio::sync::Mutex<FileReads>>,
}

/// Open readers and recent pieces of recently read files.
#[derive(Default)]
pub struct ReadCache {
    entries: Mutex<(u64, Vec<Entry>)>,
}

impl ReadCache {
    fn file(&self, key: Key, version: Version) -> Arc<tokio::sync::Mutex<FileReads>> {
        let mut guard = self
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (clock, entries) = &mut *guard;
        *clock += 1;
        if let Some(entry) = entries.iter_mut().find(|entry| entry.key == key) {
            entry.last_used = *clock;
            return Arc::clone(&entry.reads);
        }
        if entries.len() >= FILES_MAX {
            if let Some(oldest) = entries
                .iter()
                .enumerate()
                .min_by_key(|(_, entry)| entry.last_used)
                .map(|(index, _)| index)
            {
                entries.swap_remove(oldest);
            }
        }
        let reads = Arc::new(tokio::sync::Mutex::new(FileReads {
            version,
            pieces: VecDeque::new(),
            reader: None,
        }));
        entries.push(Entry {
            key,
            last_used: *clock,
            reads: Arc::clone(&reads),
        });
        reads
    }

    /// Up to `count` bytes at `offset` of file `inode` whose current attributes are `attrs`, as
    /// pieces (slices of cached chunks, not copies).
    pub async fn read(
        &self,
        namespace: &TenantNamespace,
        inode: InodeId,
        attrs: &Attributes,
        offset: u64,
        count: u64,
    ) -> Result<Vec<Bytes>, NamespaceError> {
        let end = offset.saturating_add(count).min(attrs.size);
        if offset >= end {
            return Ok(Vec::new());
        }
        let version = (attrs.size, attrs.mtime, attrs.ctime);
        let file = self.file((namespace.tenant(), inode), version);
        let mut reads = file.lock().await;
        if reads.version != version {
            *reads = FileReads {
                version,
                pieces: VecDeque::new(),
                reader: None,
            };
        }
        let mut out = Vec::new();
        let mut position = offset;
        while position < end {
            if let Some(slice) = reads.cached(position, end) {
                position += slice.len() as u64;
                out.push(slice);
                continue;
            }
            let reader_at = reads.reader.as_ref().map(|(at, _)| *at);
            if reader_at != Some(position) {
                let reader = namespace.read(inode, position, attrs.size - position)?;
                reads.reader = Some((position, reader));
            }
            let Some((at, reader)) = reads.reader.as_mut() else {
                break;
            };
            let piece = match reader.next_piece().await {
                Some(piece) => piece,
                None => break,
            };
            let piece = match piece {
                Ok(piece) => piece,
                Err(error) => {
                    reads.reader = None;
                    return Err(error);
                }
            };
            let piece_offset = *at;
            *at += piece.len() as u64;
            if piece.is_empty() {
                break;
            }
            if reads.pieces.len() == PIECES_PER_FILE {
                reads.pieces.pop_front();
            }
            reads.pieces.push_back((piece_offset, piece));
        }
        Ok(out)
    }
}

impl FileReads {
    /// The cached bytes from `position` (up to `end`), if a kept piece holds `position`.
    fn cached(&self, position: u64, end: u64) -> Option<Bytes> {
        self.pieces.iter().find_map(|(start, piece)| {
            let piece_end = start + piece.len() as u64;
            (*start <= position && position < piece_end).then(|| {
                let from = (position - start) as usize;
                let to = (end.min(piece_end) - start) as usize;
                piece.slice(from..to)
            })
        })
    }
}
