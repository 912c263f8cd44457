//! The on-disk (and on-wire) frame of one chunk, format version 1, little-endian:
//!
//! | offset | bytes | field |
//! |-------:|------:|-------|
//! | 0  | 8  | magic `KSKCHUNK` |
//! | 8  | 2  | format version (1) |
//! | 10 | 2  | header length (88) |
//! | 12 | 4  | flags (0) |
//! | 16 | 8  | tenant id |
//! | 24 | 32 | chunk id (keyed BLAKE3 of the plaintext) |
//! | 56 | 4  | DEK epoch the chunk is sealed under |
//! | 60 | 12 | AES-GCM nonce |
//! | 72 | 4  | plaintext length |
//! | 76 | 4  | CRC32C of ciphertext + tag |
//! | 80 | 4  | reserved (0) |
//! | 84 | 4  | CRC32C of bytes 0..84 |
//! | 88 | n  | ciphertext |
//! | 88+n | 16 | GCM tag |
//!
//! The CRCs let a scrub find corruption without keys; the GCM tag, with the tenant and chunk id
//! as associated data, makes a chunk moved to another name or tenant fail to open. The epoch lets
//! keys rotate by re-wrapping DEKs instead of rewriting chunks.

use kiseki_crypto::{DekEpoch, NONCE_BYTES, TAG_BYTES};
use kiseki_types::{ChunkId, TenantId};

use crate::ChunkError;

/// First bytes of every chunk frame.
pub const MAGIC: [u8; 8] = *b"KSKCHUNK";
/// The format version this code writes.
pub const FORMAT_VERSION: u16 = 1;
/// Bytes of the version-1 header.
pub const HEADER_BYTES: usize = 88;
/// Largest frame: the header, the largest chunk and the GCM tag.
pub const FRAME_BYTES_MAX: usize =
    HEADER_BYTES + kiseki_types::limits::CHUNK_SIZE_BYTES_MAX as usize + TAG_BYTES;

/// The decoded header of a chunk frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkHeader {
    /// Owner.
    pub tenant: TenantId,
    /// Content address.
    pub id: ChunkId,
    /// Key epoch.
    pub epoch: DekEpoch,
    /// AES-GCM nonce.
    pub nonce: [u8; NONCE_BYTES],
    /// Plaintext length.
    pub plaintext_len: u32,
    /// CRC32C of ciphertext and tag.
    pub body_crc: u32,
}

impl ChunkHeader {
    /// Total frame length for this header.
    pub fn frame_len(&self) -> usize {
        HEADER_BYTES + self.plaintext_len as usize + TAG_BYTES
    }

    /// Writes the header into the first [`HEADER_BYTES`] of `out`.
    pub fn encode_into(&self, out: &mut [u8]) {
        out[0..8].copy_from_slice(&MAGIC);
        out[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        out[10..12].copy_from_slice(&(HEADER_BYTES as u16).to_le_bytes());
        out[12..16].copy_from_slice(&0u32.to_le_bytes());
        out[16..24].copy_from_slice(&self.tenant.0.to_le_bytes());
        out[24..56].copy_from_slice(&self.id.0);
        out[56..60].copy_from_slice(&self.epoch.0.to_le_bytes());
        out[60..72].copy_from_slice(&self.nonce);
        out[72..76].copy_from_slice(&self.plaintext_len.to_le_bytes());
        out[76..80].copy_from_slice(&self.body_crc.to_le_bytes());
        out[80..84].copy_from_slice(&0u32.to_le_bytes());
        let crc = crc32c::crc32c(&out[0..84]);
        out[84..88].copy_from_slice(&crc.to_le_bytes());
    }

    /// Parses and checks the header of `frame`, which should hold chunk `id` of `tenant`, and
    /// the body's checksum.
    pub fn decode(frame: &[u8], tenant: TenantId, id: ChunkId) -> Result<Self, ChunkError> {
        let header = Self::decode_header(frame, tenant, id)?;
        if crc32c::crc32c(&frame[HEADER_BYTES..]) != header.body_crc {
            return Err(ChunkError::Corrupt {
                tenant,
                id,
                reason: "body checksum mismatch".to_owned(),
            });
        }
        Ok(header)
    }

    /// Like [`Self::decode`] without the body's checksum: for a caller that opens the body,
    /// whose authentication tag covers every byte of it (one pass over the data fewer).
    pub fn decode_header(frame: &[u8], tenant: TenantId, id: ChunkId) -> Result<Self, ChunkError> {
        let corrupt = |reason: &str| ChunkError::Corrupt {
            tenant,
            id,
            reason: reason.to_owned(),
        };
        if frame.len() < HEADER_BYTES + TAG_BYTES {
            return Err(corrupt("frame shorter than header and tag"));
        }
        if frame[0..8] != MAGIC {
            return Err(corrupt("bad magic"));
        }
        if crc32c::crc32c(&frame[0..84]) != read_u32(frame, 84) {
            return Err(corrupt("header checksum mismatch"));
        }
        let version = u16::from_le_bytes([frame[8], frame[9]]);
        if version != FORMAT_VERSION {
            return Err(corrupt(&format!("unsupported format version {version}")));
        }
        let mut stored_id = [0u8; 32];
        stored_id.copy_from_slice(&frame[24..56]);
        let mut nonce = [0u8; NONCE_BYTES];
        nonce.copy_from_slice(&frame[60..72]);
        let header = ChunkHeader {
            tenant: TenantId(u64::from_le_bytes(
                frame[16..24].try_into().unwrap_or_default(),
            )),
            id: ChunkId(stored_id),
            epoch: DekEpoch(read_u32(frame, 56)),
            nonce,
            plaintext_len: read_u32(frame, 72),
            body_crc: read_u32(frame, 76),
        };
        if header.tenant != tenant || header.id != id {
            return Err(corrupt("header names another tenant or chunk"));
        }
        if header.frame_len() != frame.len() {
            return Err(corrupt("frame length does not match the header"));
        }
        Ok(header)
    }
}

/// Associated data binding a sealed chunk to its tenant and id.
pub(crate) fn associated_data(tenant: TenantId, id: ChunkId) -> [u8; 48] {
    let mut aad = [0u8; 48];
    aad[0..8].copy_from_slice(b"kschunk1");
    aad[8..16].copy_from_slice(&tenant.0.to_le_bytes());
    aad[16..48].copy_from_slice(&id.0);
    aad
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}
