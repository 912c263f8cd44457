//! L2 files: one file per chunk under the cache directory, sealed with AES-256-GCM under a key
//! that exists only in this process's memory. A new key (process start, wipe) makes every older
//! file unreadable: crypto-shred first, deletion after. Every read is authenticated against the
//! key, the file's header and the chunk id it is filed under, so a corrupt, truncated, stale or
//! swapped file is refused, never served.
//!
//! Files are written to a temporary name, with direct I/O where the file system has it (no
//! page-cache copy), and renamed, unsynced: the cache is discarded on restart anyway, so
//! durability buys nothing here.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use kiseki_crypto::{open_in_place, seal_in_place, DataKey, DekEpoch, NONCE_BYTES, TAG_BYTES};
use kiseki_types::ChunkId;

use super::CacheError;

const MAGIC: &[u8; 4] = b"KSL2";
const VERSION: u8 = 1;
/// magic 4 | version 1 | reserved 3 | key generation 8 | plaintext length 8 | nonce 12.
const HEADER_BYTES: usize = 36;
const AUTHENTICATED_HEADER_BYTES: usize = 24;

/// The key L2 files are sealed with, and its generation (counts keys since process start).
pub(crate) struct CacheKey {
    key: DataKey,
    generation: u64,
}

impl CacheKey {
    /// A fresh random key of `generation`.
    pub(crate) fn generate(generation: u64) -> Result<Self, CacheError> {
        let key = DataKey::random(DekEpoch(generation as u32)).map_err(|_| CacheError::Key)?;
        Ok(CacheKey { key, generation })
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }
}

/// Why an L2 file was not served.
#[derive(Debug)]
pub(crate) enum ReadFailure {
    /// No file.
    Missing,
    /// The file exists but failed a check (the reason is for logs).
    Rejected(String),
}

impl std::fmt::Display for ReadFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadFailure::Missing => f.write_str("file missing"),
            ReadFailure::Rejected(why) => f.write_str(why),
        }
    }
}

/// Why writing an L2 file failed: the file system, or the caller's fill.
enum WriteFailure<E> {
    Io(io::Error),
    Fill(E),
}

impl<E> From<io::Error> for WriteFailure<E> {
    fn from(error: io::Error) -> Self {
        WriteFailure::Io(error)
    }
}

/// The directory of L2 files.
pub(crate) struct DiskFiles {
    dir: PathBuf,
    temp_counter: AtomicU64,
}

impl DiskFiles {
    /// Opens `dir`, discarding whatever an earlier process left there: its key died with it.
    pub(crate) fn open(dir: &Path) -> Result<Self, CacheError> {
        let files = DiskFiles {
            dir: dir.to_path_buf(),
            temp_counter: AtomicU64::new(0),
        };
        files.clear()?;
        Ok(files)
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Deletes every file (the directory itself stays).
    pub(crate) fn clear(&self) -> Result<(), CacheError> {
        let io_error = |source| CacheError::Io {
            path: self.dir.clone(),
            source,
        };
        fs::create_dir_all(&self.dir).map_err(io_error)?;
        for entry in fs::read_dir(&self.dir).map_err(io_error)? {
            let path = entry.map_err(io_error)?.path();
            let removed = if path.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            removed.map_err(|source| CacheError::Io {
                path: path.clone(),
                source,
            })?;
        }
        Ok(())
    }

    /// The path of chunk `id`'s file (two-hex-digit fan-out).
    pub(crate) fn path(&self, id: &ChunkId) -> PathBuf {
        let hex = id.to_hex();
        self.dir.join(&hex[..2]).join(hex)
    }

    /// Seals `plaintext` under `key` and writes it as chunk `id`'s file.
    pub(crate) fn write(
        &self,
        key: &CacheKey,
        id: &ChunkId,
        plaintext: &[u8],
    ) -> Result<(), CacheError> {
        self.write_with(key, id, plaintext.len(), |out: &mut [u8]| {
            out[..plaintext.len()].copy_from_slice(plaintext);
            Ok::<(), CacheError>(())
        })
    }

    /// Writes chunk `id`'s file of `plaintext_len` bytes: `fill` puts the plaintext at the start
    /// of the slice it gets (which has [`TAG_BYTES`] more room, usable as scratch), straight
    /// into the file's write buffer, where it is sealed in place.
    pub(crate) fn write_with<E: From<CacheError>>(
        &self,
        key: &CacheKey,
        id: &ChunkId,
        plaintext_len: usize,
        fill: impl FnOnce(&mut [u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let path = self.path(id);
        let io_error = |source| CacheError::Io {
            path: path.clone(),
            source,
        };
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|e| E::from(io_error(e)))?;
        }
        let serial = self.temp_counter.fetch_add(1, Ordering::Relaxed);
        let temp = path.with_extension(format!("tmp{serial}"));
        let file_len = HEADER_BYTES + plaintext_len + TAG_BYTES;
        let written = kiseki_chunk::create_direct_with(
            &temp,
            file_len,
            kiseki_chunk::FileSync::None,
            |file: &mut [u8]| {
                let (header, body) = file.split_at_mut(HEADER_BYTES);
                fill(body).map_err(WriteFailure::Fill)?;
                header[..4].copy_from_slice(MAGIC);
                header[4..8].copy_from_slice(&[VERSION, 0, 0, 0]);
                header[8..16].copy_from_slice(&key.generation.to_le_bytes());
                header[16..24].copy_from_slice(&(plaintext_len as u64).to_le_bytes());
                let aad = associated_data(&header[..AUTHENTICATED_HEADER_BYTES], id);
                let (plaintext, tag_room) = body.split_at_mut(plaintext_len);
                let (nonce, tag) = seal_in_place(&key.key, &aad, plaintext)
                    .map_err(|_| WriteFailure::Fill(E::from(CacheError::Key)))?;
                header[AUTHENTICATED_HEADER_BYTES..].copy_from_slice(&nonce);
                tag_room.copy_from_slice(&tag);
                Ok(())
            },
        );
        let renamed = match written {
            Ok(()) => fs::rename(&temp, &path).map_err(|e| E::from(io_error(e))),
            Err(WriteFailure::Io(e)) => Err(E::from(io_error(e))),
            Err(WriteFailure::Fill(e)) => Err(e),
        };
        if renamed.is_err() {
            let _ = fs::remove_file(&temp);
        }
        renamed
    }

    /// Reads and authenticates chunk `id`'s file under `key`.
    pub(crate) fn read(&self, key: &CacheKey, id: &ChunkId) -> Result<Bytes, ReadFailure> {
        let mut file = match fs::read(self.path(id)) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                return Err(ReadFailure::Missing)
            }
            Err(error) => return Err(ReadFailure::Rejected(format!("unreadable: {error}"))),
        };
        let reject = |why: &str| Err(ReadFailure::Rejected(why.to_owned()));
        if file.len() < HEADER_BYTES + TAG_BYTES {
            return reject("truncated header");
        }
        if &file[..4] != MAGIC || file[4] != VERSION {
            return reject("not an L2 cache file of this version");
        }
        let generation = u64::from_le_bytes(field(&file[8..16]));
        if generation != key.generation {
            return reject("sealed under an earlier cache key");
        }
        let length = u64::from_le_bytes(field(&file[16..24]));
        if (file.len() - HEADER_BYTES - TAG_BYTES) as u64 != length {
            return reject("length does not match the header (truncated or extended)");
        }
        let nonce: [u8; NONCE_BYTES] = field(&file[AUTHENTICATED_HEADER_BYTES..HEADER_BYTES]);
        let aad = associated_data(&file[..AUTHENTICATED_HEADER_BYTES], id);
        if open_in_place(&key.key, nonce, &aad, &mut file[HEADER_BYTES..]).is_err() {
            return reject("authentication failed (altered, or filed under another id)");
        }
        let end = HEADER_BYTES + length as usize;
        Ok(Bytes::from(file).slice(HEADER_BYTES..end))
    }

    /// Deletes chunk `id`'s file; a missing file is not an error.
    pub(crate) fn remove(&self, id: &ChunkId) {
        let path = self.path(id);
        if let Err(error) = fs::remove_file(&path) {
            if error.kind() != io::ErrorKind::NotFound {
                tracing::warn!(path = %path.display(), %error, "could not delete an L2 cache file");
            }
        }
    }
}

fn associated_data(header: &[u8], id: &ChunkId) -> [u8; AUTHENTICATED_HEADER_BYTES + 32] {
    let mut aad = [0u8; AUTHENTICATED_HEADER_BYTES + 32];
    aad[..AUTHENTICATED_HEADER_BYTES].copy_from_slice(header);
    aad[AUTHENTICATED_HEADER_BYTES..].copy_from_slice(&id.0);
    aad
}

fn field<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[..N]);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, DiskFiles, CacheKey) {
        let dir = tempfile::tempdir().unwrap();
        let files = DiskFiles::open(&dir.path().join("l2")).unwrap();
        (dir, files, CacheKey::generate(1).unwrap())
    }

    #[test]
    fn a_file_reads_back_under_its_key_and_id_only() {
        let (_dir, files, key) = setup();
        let id = ChunkId([5; 32]);
        files.write(&key, &id, b"hello chunk").unwrap();
        assert_eq!(&files.read(&key, &id).unwrap()[..], b"hello chunk");

        let on_disk = fs::read(files.path(&id)).unwrap();
        assert!(
            !on_disk.windows(11).any(|w| w == b"hello chunk"),
            "plaintext is not on disk"
        );

        let other = ChunkId([6; 32]);
        fs::create_dir_all(files.path(&other).parent().unwrap()).unwrap();
        fs::copy(files.path(&id), files.path(&other)).unwrap();
        assert!(matches!(
            files.read(&key, &other),
            Err(ReadFailure::Rejected(_))
        ));

        let next = CacheKey::generate(2).unwrap();
        assert!(matches!(
            files.read(&next, &id),
            Err(ReadFailure::Rejected(_))
        ));
        assert!(matches!(
            files.read(&key, &ChunkId([9; 32])),
            Err(ReadFailure::Missing)
        ));
    }

    #[test]
    fn flipped_or_truncated_files_are_rejected() {
        let (_dir, files, key) = setup();
        let id = ChunkId([7; 32]);
        let data = vec![0xabu8; 4096];
        for offset in [0usize, 9, 17, 30, 40, 2000, 4096 + 36 + 3] {
            files.write(&key, &id, &data).unwrap();
            let mut raw = fs::read(files.path(&id)).unwrap();
            raw[offset] ^= 0x01;
            fs::write(files.path(&id), &raw).unwrap();
            assert!(
                matches!(files.read(&key, &id), Err(ReadFailure::Rejected(_))),
                "flip at {offset} is caught"
            );
        }
        files.write(&key, &id, &data).unwrap();
        let raw = fs::read(files.path(&id)).unwrap();
        fs::write(files.path(&id), &raw[..raw.len() - 100]).unwrap();
        assert!(matches!(
            files.read(&key, &id),
            Err(ReadFailure::Rejected(_))
        ));
    }

    #[test]
    fn opening_discards_what_an_earlier_process_left() {
        let dir = tempfile::tempdir().unwrap();
        let l2 = dir.path().join("l2");
        let key = CacheKey::generate(1).unwrap();
        let id = ChunkId([8; 32]);
        DiskFiles::open(&l2)
            .unwrap()
            .write(&key, &id, b"x")
            .unwrap();
        let reopened = DiskFiles::open(&l2).unwrap();
        assert!(!reopened.path(&id).exists());
        assert_eq!(fs::read_dir(&l2).unwrap().count(), 0);
    }
}
