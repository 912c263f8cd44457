//! The namespace calls of the native client path: chunks arrive and leave sealed (the client
//! holds the tenant's keys and seals and opens them itself, so no plaintext crosses the
//! network), file layouts are handed out as extents, and extents of chunks the client stored are
//! committed with one delta.

use bytes::Bytes;
use kiseki_chunk::SealedKept;
use kiseki_log::{CarriedFrame, Delta, CARRIED_FRAME_BYTES_MAX};
use kiseki_types::limits::DELTA_EXTENTS_MAX;
use kiseki_types::{ChunkId, ErrorKind, Extent, InodeId, NamespaceError, Timestamp};

use crate::error::from_chunk_error;
use crate::{TenantNamespace, WrittenData};

/// User-metadata key that marks a POSIX special file (FIFO, socket, device), kept as an empty
/// file: the value is `<S_IFMT bits> <rdev>` in decimal. Only the native client interprets it;
/// over S3 such a file is an empty object.
pub const POSIX_SPECIAL_KEY: &str = "kiseki-posix-special";

/// The extents of a byte range of a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileLayout {
    /// The file's size.
    pub size: u64,
    /// Extents (clipped to the range) in file order.
    pub extents: Vec<Extent>,
    /// Whether `extents` stopped at the caller's bound before the end of the range.
    pub truncated: bool,
}

impl TenantNamespace {
    /// Bytes per data chunk of this namespace.
    pub fn chunk_size_bytes(&self) -> u32 {
        let (_, _, chunk_size) = self.chunk_parts();
        u32::try_from(chunk_size).unwrap_or(u32::MAX)
    }

    /// Stores chunk `id` sealed by a client (running as `workload`, when its identity names
    /// one: the placement policy may give a workload its own pool); checks the frame's header
    /// and checksums, opens it and checks that its plaintext has content address `id` first.
    /// Returns `true` when the tenant already had the chunk (nothing written).
    pub async fn store_sealed_chunk(
        &self,
        id: ChunkId,
        frame: Bytes,
        workload: Option<&str>,
    ) -> Result<bool, NamespaceError> {
        let (chunks, keyring, _) = self.chunk_parts();
        let key_for_epoch = |epoch| keyring.epoch(epoch).ok();
        chunks
            .store_sealed(
                self.tenant(),
                id,
                frame,
                workload,
                keyring.addressing(),
                &key_for_epoch,
            )
            .await
            .map_err(|error| from_chunk_error(error, &format!("storing chunk {id}")))
    }

    /// Stores a small file's sealed frame (`extent.chunk`, from a client running as `workload`)
    /// and commits it as `extent` of `inode`, with the checks of [`Self::store_sealed_chunk`].
    /// When the frame is small enough and its pool's store can, the frame rides in the log
    /// entry of the write (`Delta::Carried`): one log `fdatasync` makes the write durable;
    /// applying the entry writes the chunk file, which is synced before a snapshot drops the
    /// entry. Otherwise the chunk is stored durably first, as separate calls would. Returns
    /// `true` when the tenant already had the chunk.
    pub async fn commit_small_write(
        &self,
        inode: InodeId,
        extent: Extent,
        frame: Bytes,
        workload: Option<&str>,
    ) -> Result<bool, NamespaceError> {
        check_extents(std::slice::from_ref(&extent))?;
        if frame.len() > CARRIED_FRAME_BYTES_MAX {
            let deduplicated = self
                .store_sealed_chunk(extent.chunk, frame, workload)
                .await?;
            self.commit_extents(inode, 0, vec![extent], false).await?;
            return Ok(deduplicated);
        }
        let (chunks, keyring, _) = self.chunk_parts();
        let key_for_epoch = |epoch| keyring.epoch(epoch).ok();
        let id = extent.chunk;
        let kept = chunks
            .keep_sealed_for_log(
                self.tenant(),
                id,
                &frame,
                workload,
                keyring.addressing(),
                &key_for_epoch,
            )
            .await
            .map_err(|error| from_chunk_error(error, &format!("storing chunk {id}")))?;
        let pool = match kept {
            SealedKept::AlreadyStored | SealedKept::Stored => {
                self.commit_extents(inode, 0, vec![extent], false).await?;
                return Ok(kept == SealedKept::AlreadyStored);
            }
            SealedKept::ToCarry(pool) => pool,
        };
        let write = Delta::Write {
            inode,
            extents: vec![extent],
            time: Timestamp::now(),
        };
        let carried = Delta::Carried {
            frames: vec![CarriedFrame {
                chunk: id,
                pool: pool.0,
                frame: frame.to_vec(),
            }],
            delta: Box::new(write),
        };
        self.propose(carried, &format!("write {inode}")).await?;
        self.count_carried(frame.len() as u64).await;
        Ok(false)
    }

    /// The sealed frame of chunk `id`, its header checked (the client that opens it
    /// authenticates the body); with `check_body`, its body's checksum too (see
    /// `ChunkService::read_sealed`).
    pub async fn sealed_chunk(
        &self,
        id: ChunkId,
        check_body: bool,
    ) -> Result<Bytes, NamespaceError> {
        let (chunks, _, _) = self.chunk_parts();
        chunks
            .read_sealed(self.tenant(), id, check_body)
            .await
            .map_err(|error| from_chunk_error(error, &format!("reading chunk {id}")))
    }

    /// The extents covering `[offset, offset + len)` of file `inode`, at most `extents_max`.
    pub fn layout(
        &self,
        inode: InodeId,
        offset: u64,
        len: u64,
        extents_max: usize,
    ) -> Result<FileLayout, NamespaceError> {
        let composition = self.view().composition(inode)?;
        let mut extents: Vec<Extent> = composition
            .extents_in(offset, len)
            .take(extents_max + 1)
            .collect();
        let truncated = extents.len() > extents_max;
        extents.truncate(extents_max);
        Ok(FileLayout {
            size: composition.size,
            extents,
            truncated,
        })
    }

    /// Commits extents of chunks the client stored with [`Self::store_sealed_chunk`]: at
    /// `offset` (extent offsets relative to it) or, with `append`, at the end of the file as of
    /// the commit. Extents must be sorted, non-overlapping, non-empty and name stored chunks.
    pub async fn commit_extents(
        &self,
        inode: InodeId,
        offset: u64,
        extents: Vec<Extent>,
        append: bool,
    ) -> Result<(), NamespaceError> {
        check_extents(&extents)?;
        let (chunks, _, _) = self.chunk_parts();
        let mut checked: Vec<ChunkId> = Vec::new();
        for extent in &extents {
            if checked.contains(&extent.chunk) {
                continue;
            }
            let stored = chunks
                .store()
                .contains(self.tenant(), extent.chunk)
                .await
                .map_err(|error| {
                    from_chunk_error(error, &format!("checking chunk {}", extent.chunk))
                })?;
            if !stored {
                return Err(NamespaceError::new(
                    ErrorKind::InvalidArgument,
                    format!("chunk {} is not stored", extent.chunk),
                ));
            }
            checked.push(extent.chunk);
        }
        let size = extents.last().map_or(0, Extent::end);
        let data = WrittenData {
            extents,
            size,
            deduplicated_chunks: 0,
        };
        if append {
            self.append(inode, data).await
        } else {
            self.write_at(inode, offset, data).await
        }
    }
}

fn check_extents(extents: &[Extent]) -> Result<(), NamespaceError> {
    let invalid = |reason: &str| {
        Err(NamespaceError::new(
            ErrorKind::InvalidArgument,
            reason.to_owned(),
        ))
    };
    if extents.len() > DELTA_EXTENTS_MAX {
        return invalid("too many extents in one write");
    }
    let mut end = 0;
    for extent in extents {
        if extent.len == 0 {
            return invalid("empty extent");
        }
        if extent.file_offset < end {
            return invalid("extents overlap or are out of order");
        }
        end = extent.end();
    }
    Ok(())
}
