//! The snapshot file of a shard: what a restart restores before openraft replays the log.
//!
//! Layout (little endian): magic `KSKSNAP1` | format version u8 | header length u32 | header
//! (bincode 2: last applied log id, last membership, snapshot id) | state length u64 | state bytes
//! (`ShardState::encode_snapshot`) | (version 2 only) dedupe length u64 | dedupe table (bincode 2,
//! see `dedupe`) | crc32c u32 of everything before it. Version 1 (no dedupe table) is still read,
//! as an empty table. The same bytes are the snapshot data openraft ships to followers.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use openraft::{BasicNode, SnapshotMeta, StoredMembership};
use serde::{Deserialize, Serialize};

use crate::type_config::LogId;

const MAGIC: &[u8; 8] = b"KSKSNAP1";
const FORMAT_V1: u8 = 1;
const FORMAT_V2: u8 = 2;
const FILE_NAME: &str = "snapshot.bin";
const TEMP_PREFIX: &str = "snapshot.tmp-";

/// What a snapshot covers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SnapshotHeader {
    pub(crate) last_applied: Option<LogId>,
    pub(crate) membership: StoredMembership<u64, BasicNode>,
    pub(crate) snapshot_id: String,
}

impl SnapshotHeader {
    pub(crate) fn meta(&self) -> SnapshotMeta<u64, BasicNode> {
        SnapshotMeta {
            last_log_id: self.last_applied,
            last_membership: self.membership.clone(),
            snapshot_id: self.snapshot_id.clone(),
        }
    }
}

/// The parts of a snapshot image.
pub(crate) struct SnapshotParts<'a> {
    pub(crate) header: SnapshotHeader,
    pub(crate) state: &'a [u8],
    /// The encoded dedupe table (empty in a version-1 image).
    pub(crate) dedupe: &'a [u8],
}

/// Encodes a snapshot file image.
pub(crate) fn encode(header: &SnapshotHeader, state: &[u8], dedupe: &[u8]) -> io::Result<Vec<u8>> {
    let header_bytes = bincode::serde::encode_to_vec(header, bincode::config::standard())
        .map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, error))?;
    let header_len = u32::try_from(header_bytes.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "snapshot header too large"))?;
    let capacity = 8 + 1 + 4 + header_bytes.len() + 8 + state.len() + 8 + dedupe.len() + 4;
    let mut image = Vec::with_capacity(capacity);
    image.extend_from_slice(MAGIC);
    image.push(FORMAT_V2);
    image.extend_from_slice(&header_len.to_le_bytes());
    image.extend_from_slice(&header_bytes);
    image.extend_from_slice(&(state.len() as u64).to_le_bytes());
    image.extend_from_slice(state);
    image.extend_from_slice(&(dedupe.len() as u64).to_le_bytes());
    image.extend_from_slice(dedupe);
    image.extend_from_slice(&crc32c::crc32c(&image).to_le_bytes());
    Ok(image)
}

/// Decodes and verifies a snapshot file image.
pub(crate) fn decode(image: &[u8]) -> io::Result<SnapshotParts<'_>> {
    let (body, crc) = image
        .split_last_chunk::<4>()
        .ok_or_else(|| corrupt("snapshot shorter than its checksum"))?;
    if crc32c::crc32c(body) != u32::from_le_bytes(*crc) {
        return Err(corrupt("snapshot checksum mismatch"));
    }
    let rest = body
        .strip_prefix(MAGIC.as_slice())
        .ok_or_else(|| corrupt("not a snapshot"))?;
    let (&version, rest) = rest
        .split_first()
        .ok_or_else(|| corrupt("snapshot truncated"))?;
    if version != FORMAT_V1 && version != FORMAT_V2 {
        return Err(corrupt(&format!(
            "unsupported snapshot format version {version}"
        )));
    }
    let (header_len, rest) = rest
        .split_first_chunk::<4>()
        .ok_or_else(|| corrupt("truncated"))?;
    let header_len = u32::from_le_bytes(*header_len) as usize;
    let (header_bytes, rest) = rest
        .split_at_checked(header_len)
        .ok_or_else(|| corrupt("snapshot header truncated"))?;
    let (header, _): (SnapshotHeader, usize) =
        bincode::serde::decode_from_slice(header_bytes, bincode::config::standard())
            .map_err(|error| corrupt(&error.to_string()))?;
    let (state, rest) = length_prefixed(rest)?;
    let dedupe = if version == FORMAT_V1 {
        rest
    } else {
        let (dedupe, rest) = length_prefixed(rest)?;
        if !rest.is_empty() {
            return Err(corrupt("trailing bytes in snapshot"));
        }
        dedupe
    };
    if version == FORMAT_V1 && !dedupe.is_empty() {
        return Err(corrupt("snapshot state length mismatch"));
    }
    Ok(SnapshotParts {
        header,
        state,
        dedupe,
    })
}

/// Splits `length u64 | bytes` off the front of `bytes`.
fn length_prefixed(bytes: &[u8]) -> io::Result<(&[u8], &[u8])> {
    let (len, rest) = bytes
        .split_first_chunk::<8>()
        .ok_or_else(|| corrupt("snapshot truncated"))?;
    usize::try_from(u64::from_le_bytes(*len))
        .ok()
        .and_then(|len| rest.split_at_checked(len))
        .ok_or_else(|| corrupt("snapshot length mismatch"))
}

fn corrupt(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_string())
}

/// The snapshot file of one shard directory.
#[derive(Clone, Debug)]
pub(crate) struct SnapshotFile {
    dir: PathBuf,
}

impl SnapshotFile {
    pub(crate) fn new(dir: &Path) -> Self {
        SnapshotFile {
            dir: dir.to_path_buf(),
        }
    }

    /// The current snapshot image, if there is one.
    pub(crate) fn read(&self) -> io::Result<Option<Vec<u8>>> {
        match fs::read(self.dir.join(FILE_NAME)) {
            Ok(image) => Ok(Some(image)),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Replaces the snapshot atomically: write a temp file, fsync, rename, fsync the directory.
    pub(crate) fn write(&self, image: &[u8], snapshot_id: &str) -> io::Result<()> {
        let temp = self.dir.join(format!("{TEMP_PREFIX}{snapshot_id}"));
        let mut file = File::create(&temp)?;
        let written = file.write_all(image).and_then(|()| file.sync_all());
        if let Err(error) = written {
            let _ = fs::remove_file(&temp);
            return Err(error);
        }
        fs::rename(&temp, self.dir.join(FILE_NAME))?;
        File::open(&self.dir)?.sync_all()
    }

    /// Removes temp files a crash left behind.
    pub(crate) fn remove_leftovers(&self) -> io::Result<()> {
        for dir_entry in fs::read_dir(&self.dir)? {
            let dir_entry = dir_entry?;
            if dir_entry
                .file_name()
                .to_string_lossy()
                .starts_with(TEMP_PREFIX)
            {
                fs::remove_file(dir_entry.path())?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption() {
        let header = SnapshotHeader {
            last_applied: None,
            membership: StoredMembership::default(),
            snapshot_id: "0-1".to_string(),
        };
        let image = encode(&header, b"state", b"dedupe").unwrap();
        let parts = decode(&image).unwrap();
        assert_eq!(
            (parts.header, parts.state, parts.dedupe),
            (header.clone(), b"state".as_slice(), b"dedupe".as_slice())
        );
        let mut flipped = image.clone();
        flipped[10] ^= 0x40;
        assert!(decode(&flipped).is_err());
        assert!(decode(&image[..image.len() - 1]).is_err());
    }

    /// A version-1 image (no dedupe table) still reads, with an empty table.
    #[test]
    fn version_1_images_are_read() {
        let header = SnapshotHeader {
            last_applied: None,
            membership: StoredMembership::default(),
            snapshot_id: "0-2".to_string(),
        };
        let header_bytes =
            bincode::serde::encode_to_vec(&header, bincode::config::standard()).unwrap();
        let mut image = MAGIC.to_vec();
        image.push(FORMAT_V1);
        image.extend_from_slice(&(header_bytes.len() as u32).to_le_bytes());
        image.extend_from_slice(&header_bytes);
        image.extend_from_slice(&5u64.to_le_bytes());
        image.extend_from_slice(b"state");
        image.extend_from_slice(&crc32c::crc32c(&image).to_le_bytes());
        let parts = decode(&image).unwrap();
        assert_eq!(parts.header, header);
        assert_eq!(parts.state, b"state");
        assert!(parts.dedupe.is_empty());
    }
}
