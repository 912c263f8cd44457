//! Fragments: the pieces an erasure-coded (or replicated) chunk frame is cut into, one per
//! device. This module owns the fragment file format, the [`FragmentStore`] trait a device (local
//! directory or, through a node-to-node service, a peer's device) implements, and
//! [`FsFragmentStore`], one local data directory.
//!
//! A fragment store never decodes, reconstructs or decrypts: it keeps opaque, self-checking
//! fragment files and answers for their durability. It never sees plaintext or keys.
//!
//! Fragment file, format version 1, little-endian:
//!
//! | offset | bytes | field |
//! |-------:|------:|-------|
//! | 0  | 8  | magic `KSKFRAGM` |
//! | 8  | 2  | format version (1) |
//! | 10 | 2  | header length (80) |
//! | 12 | 8  | tenant id |
//! | 20 | 32 | chunk id |
//! | 52 | 1  | fragment index |
//! | 53 | 1  | profile kind (0 Reed-Solomon, 1 replication) |
//! | 54 | 1  | k (data fragments; 1 for replication) |
//! | 55 | 1  | m (parity fragments; copies − 1 for replication) |
//! | 56 | 4  | length of the original chunk frame |
//! | 60 | 4  | length of the fragment body |
//! | 64 | 4  | CRC32C of the body |
//! | 68 | 8  | generation: one value per encoding of the frame |
//! | 76 | 4  | CRC32C of bytes 0..76 |
//! | 80 | n  | body |
//!
//! The generation tells fragments of two encodings of one chunk apart (the same content sealed
//! twice has two nonces, so two different frames): a reader only combines fragments that agree
//! on it.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use kiseki_types::{ChunkId, TenantId};

use crate::{durable_file, tenant_dirs};
use crate::{ChunkError, DeviceClass, StoreFuture};

/// First bytes of every fragment file.
pub const FRAGMENT_MAGIC: [u8; 8] = *b"KSKFRAGM";
/// The fragment format version this code writes.
pub const FRAGMENT_VERSION: u16 = 1;
/// Bytes of the version-1 fragment header.
pub const FRAGMENT_HEADER_BYTES: usize = 80;

/// One device that holds fragments: a data directory of a node, tagged with a device class.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DeviceInfo {
    /// The node the device is attached to (its failure domain above the device).
    pub node: u64,
    /// The device's name, unique within its node and stable across restarts.
    pub device: String,
    /// The class of the device.
    pub class: DeviceClass,
}

impl std::fmt::Display for DeviceInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "node {} device {}", self.node, self.device)
    }
}

/// Names one fragment: fragment `index` of chunk `chunk` of `tenant`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FragmentKey {
    /// Owner of the chunk.
    pub tenant: TenantId,
    /// The chunk the fragment belongs to.
    pub chunk: ChunkId,
    /// Position of the fragment: `0..k` data, `k..k+m` parity (any for replication).
    pub index: u8,
}

/// Keeps fragment files on one device. The bytes passed to `put_fragment` and returned by
/// `get_fragment` are whole fragment files (header and body, see the module docs); stores keep
/// them opaque, readers check them with [`FragmentHeader::decode`].
pub trait FragmentStore: Send + Sync + 'static {
    /// The device this store writes to.
    fn device(&self) -> &DeviceInfo;
    /// Stores a fragment durably (on return it survives a crash); replaces an existing one.
    fn put_fragment(&self, key: FragmentKey, bytes: Bytes) -> StoreFuture<'_, ()>;
    /// Returns a fragment; [`ChunkError::NotFound`] if absent.
    fn get_fragment(&self, key: FragmentKey) -> StoreFuture<'_, Bytes>;
    /// Removes a fragment; removing a missing one is not an error.
    fn delete_fragment(&self, key: FragmentKey) -> StoreFuture<'_, ()>;
    /// Every fragment the device holds.
    fn list_fragments(&self) -> StoreFuture<'_, Vec<FragmentKey>>;
    /// At least the first [`FRAGMENT_HEADER_BYTES`] of a fragment (rebuild reads only headers
    /// of chunks whose fragments are all present). The default reads the whole fragment.
    fn get_fragment_header(&self, key: FragmentKey) -> StoreFuture<'_, Bytes> {
        self.get_fragment(key)
    }
}

/// How a chunk was cut into fragments, as a fragment header records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FragmentKind {
    /// Reed-Solomon: `k` data fragments (the padded frame cut in `k`) and `m` parity fragments.
    ReedSolomon,
    /// Whole copies of the frame; `k` is 1 and `m` is copies − 1.
    Replica,
}

/// The decoded header of a fragment file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FragmentHeader {
    /// Which fragment this is.
    pub key: FragmentKey,
    /// Erasure code or replication.
    pub kind: FragmentKind,
    /// Data fragments.
    pub k: u8,
    /// Parity fragments (or extra copies).
    pub m: u8,
    /// Length of the chunk frame the fragments encode (the padding is cut off on decode).
    pub frame_len: u32,
    /// Length of the body after the header.
    pub body_len: u32,
    /// CRC32C of the body.
    pub body_crc: u32,
    /// Which encoding of the frame the fragment belongs to.
    pub generation: u64,
}

impl FragmentHeader {
    /// Writes the header into the first [`FRAGMENT_HEADER_BYTES`] of `out`.
    pub fn encode_into(&self, out: &mut [u8]) {
        out[0..8].copy_from_slice(&FRAGMENT_MAGIC);
        out[8..10].copy_from_slice(&FRAGMENT_VERSION.to_le_bytes());
        out[10..12].copy_from_slice(&(FRAGMENT_HEADER_BYTES as u16).to_le_bytes());
        out[12..20].copy_from_slice(&self.key.tenant.0.to_le_bytes());
        out[20..52].copy_from_slice(&self.key.chunk.0);
        out[52] = self.key.index;
        out[53] = match self.kind {
            FragmentKind::ReedSolomon => 0,
            FragmentKind::Replica => 1,
        };
        out[54] = self.k;
        out[55] = self.m;
        out[56..60].copy_from_slice(&self.frame_len.to_le_bytes());
        out[60..64].copy_from_slice(&self.body_len.to_le_bytes());
        out[64..68].copy_from_slice(&self.body_crc.to_le_bytes());
        out[68..76].copy_from_slice(&self.generation.to_le_bytes());
        let crc = crc32c::crc32c(&out[0..76]);
        out[76..80].copy_from_slice(&crc.to_le_bytes());
    }

    /// Parses and checks a whole fragment file that should be fragment `expected`: magic,
    /// version, header checksum, key, lengths and body checksum. Returns the header and body.
    pub fn decode(bytes: &[u8], expected: FragmentKey) -> Result<(Self, &[u8]), ChunkError> {
        let header = Self::decode_header(bytes, expected)?;
        let body = &bytes[FRAGMENT_HEADER_BYTES..];
        let corrupt = |reason: &str| ChunkError::Corrupt {
            tenant: expected.tenant,
            id: expected.chunk,
            reason: format!("fragment {}: {reason}", expected.index),
        };
        if body.len() != header.body_len as usize {
            return Err(corrupt("truncated or overlong body"));
        }
        if crc32c::crc32c(body) != header.body_crc {
            return Err(corrupt("body checksum mismatch"));
        }
        Ok((header, body))
    }

    /// Parses and checks only the header (magic, version, header checksum, key, profile).
    pub fn decode_header(bytes: &[u8], expected: FragmentKey) -> Result<Self, ChunkError> {
        let corrupt = |reason: String| ChunkError::Corrupt {
            tenant: expected.tenant,
            id: expected.chunk,
            reason: format!("fragment {}: {reason}", expected.index),
        };
        if bytes.len() < FRAGMENT_HEADER_BYTES {
            return Err(corrupt("shorter than its header".into()));
        }
        if bytes[0..8] != FRAGMENT_MAGIC {
            return Err(corrupt("bad magic".into()));
        }
        if crc32c::crc32c(&bytes[0..76]) != read_u32(bytes, 76) {
            return Err(corrupt("header checksum mismatch".into()));
        }
        let version = u16::from_le_bytes([bytes[8], bytes[9]]);
        if version != FRAGMENT_VERSION {
            return Err(corrupt(format!("unsupported format version {version}")));
        }
        let mut chunk = [0u8; 32];
        chunk.copy_from_slice(&bytes[20..52]);
        let kind = match bytes[53] {
            0 => FragmentKind::ReedSolomon,
            1 => FragmentKind::Replica,
            other => return Err(corrupt(format!("unknown profile kind {other}"))),
        };
        let header = FragmentHeader {
            key: FragmentKey {
                tenant: TenantId(u64::from_le_bytes(
                    bytes[12..20].try_into().unwrap_or_default(),
                )),
                chunk: ChunkId(chunk),
                index: bytes[52],
            },
            kind,
            k: bytes[54],
            m: bytes[55],
            frame_len: read_u32(bytes, 56),
            body_len: read_u32(bytes, 60),
            body_crc: read_u32(bytes, 64),
            generation: u64::from_le_bytes(bytes[68..76].try_into().unwrap_or_default()),
        };
        if header.key != expected {
            return Err(corrupt("header names another fragment".into()));
        }
        if header.k == 0 || header.key.index as usize >= header.k as usize + header.m as usize {
            return Err(corrupt("impossible profile in header".into()));
        }
        Ok(header)
    }
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// A fragment store on one local data directory: fragment `i` of chunk `id` of tenant `t` lives
/// at `<dir>/t<t>/<first two hex digits>/<hex id>.<i>`. Writes go to a temporary file that is
/// synced, renamed into place and its directory synced, like [`crate::FsChunkStore`].
///
/// A deleted data directory is recreated on the next write (a replaced, empty disk), so a
/// rebuild can refill it.
pub struct FsFragmentStore {
    info: DeviceInfo,
    root: PathBuf,
}

impl FsFragmentStore {
    /// A store on directory `root` (created if missing) for device `info`.
    pub fn open(info: DeviceInfo, root: impl Into<PathBuf>) -> Result<Self, ChunkError> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(|source| io_error(&root, source))?;
        Ok(FsFragmentStore { info, root })
    }

    /// The data directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file a fragment occupies (for scrub and corruption tests).
    pub fn fragment_path(&self, key: FragmentKey) -> PathBuf {
        fragment_path(&self.root, key)
    }
}

fn fragment_path(root: &Path, key: FragmentKey) -> PathBuf {
    tenant_dirs::fan_out_dir(root, key.tenant, &key.chunk).join(format!(
        "{}.{}",
        key.chunk.to_hex(),
        key.index
    ))
}

fn io_error(path: &Path, source: io::Error) -> ChunkError {
    ChunkError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn read_prefix(path: &Path, len: usize) -> io::Result<Bytes> {
    use std::io::Read;
    let mut buffer = Vec::with_capacity(len);
    File::open(path)?
        .take(len as u64)
        .read_to_end(&mut buffer)?;
    Ok(Bytes::from(buffer))
}

/// Parses `<hex id>.<index>` file names; anything else (temporary files) is skipped.
fn parse_name(tenant: TenantId, name: &str) -> Option<FragmentKey> {
    let (hex, index) = name.split_once('.')?;
    Some(FragmentKey {
        tenant,
        chunk: ChunkId::from_hex(hex)?,
        index: index.parse().ok()?,
    })
}

fn list_dir(root: &Path) -> io::Result<Vec<FragmentKey>> {
    let mut keys = Vec::new();
    tenant_dirs::for_each_file(root, |tenant, name| {
        keys.extend(parse_name(tenant, name));
    })?;
    keys.sort();
    Ok(keys)
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ChunkError> + Send + 'static,
) -> Result<T, ChunkError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| ChunkError::Task(error.to_string()))?
}

impl FragmentStore for FsFragmentStore {
    fn device(&self) -> &DeviceInfo {
        &self.info
    }

    fn put_fragment(&self, key: FragmentKey, bytes: Bytes) -> StoreFuture<'_, ()> {
        let path = fragment_path(&self.root, key);
        Box::pin(blocking(move || {
            durable_file::replace_durably(&path, &bytes).map_err(|source| io_error(&path, source))
        }))
    }

    fn get_fragment(&self, key: FragmentKey) -> StoreFuture<'_, Bytes> {
        let path = fragment_path(&self.root, key);
        Box::pin(blocking(move || {
            fs::read(&path)
                .map(Bytes::from)
                .map_err(|source| match source.kind() {
                    io::ErrorKind::NotFound => ChunkError::NotFound {
                        tenant: key.tenant,
                        id: key.chunk,
                    },
                    _ => io_error(&path, source),
                })
        }))
    }

    fn delete_fragment(&self, key: FragmentKey) -> StoreFuture<'_, ()> {
        let path = fragment_path(&self.root, key);
        Box::pin(blocking(move || {
            fs::remove_file(&path).or_else(|source| match source.kind() {
                io::ErrorKind::NotFound => Ok(()),
                _ => Err(io_error(&path, source)),
            })
        }))
    }

    fn get_fragment_header(&self, key: FragmentKey) -> StoreFuture<'_, Bytes> {
        let path = fragment_path(&self.root, key);
        Box::pin(blocking(move || {
            read_prefix(&path, FRAGMENT_HEADER_BYTES).map_err(|source| match source.kind() {
                io::ErrorKind::NotFound => ChunkError::NotFound {
                    tenant: key.tenant,
                    id: key.chunk,
                },
                _ => io_error(&path, source),
            })
        }))
    }

    fn list_fragments(&self) -> StoreFuture<'_, Vec<FragmentKey>> {
        let root = self.root.clone();
        Box::pin(blocking(move || {
            list_dir(&root).map_err(|source| io_error(&root, source))
        }))
    }
}
