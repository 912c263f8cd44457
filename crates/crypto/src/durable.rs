//! Key files on disk: a frame of magic, version, length and crc32c around a payload, written
//! atomically (temporary file, fsync, rename, fsync of the directory) with mode 0600.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::KeyError;

/// Bytes of magic at the start of every key file.
pub(crate) const MAGIC_BYTES: usize = 8;
const HEADER_BYTES: usize = MAGIC_BYTES + 2 + 4;
const CRC_BYTES: usize = 4;
/// Largest key file this code reads: bounds memory on a damaged length field.
const FILE_BYTES_MAX: usize = 64 * 1024 * 1024;
const _: () = assert!(FILE_BYTES_MAX <= u32::MAX as usize);

/// Wraps `payload` in a frame: magic, version (u16 LE), length (u32 LE), payload, crc32c (LE)
/// of everything before it.
pub(crate) fn encode_frame(
    path: &Path,
    magic: &[u8; MAGIC_BYTES],
    version: u16,
    payload: &[u8],
) -> Result<Vec<u8>, KeyError> {
    if payload.len() > FILE_BYTES_MAX - HEADER_BYTES - CRC_BYTES {
        let error = std::io::Error::new(ErrorKind::InvalidInput, "key file would exceed 64 MiB");
        return Err(KeyError::io(path, error));
    }
    let mut out = Vec::with_capacity(HEADER_BYTES + payload.len() + CRC_BYTES);
    out.extend_from_slice(magic);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// Checks a frame read from `path` and returns its payload. `version` is the only version
/// this code writes; older versions would be migrated here.
pub(crate) fn decode_frame<'a>(
    path: &Path,
    magic: &[u8; MAGIC_BYTES],
    version: u16,
    bytes: &'a [u8],
) -> Result<&'a [u8], KeyError> {
    if bytes.len() < HEADER_BYTES + CRC_BYTES {
        return Err(KeyError::corrupt(
            path,
            format!("too short ({} bytes)", bytes.len()),
        ));
    }
    if &bytes[..MAGIC_BYTES] != magic {
        return Err(KeyError::corrupt(
            path,
            "wrong magic: not a Kiseki key file of this kind",
        ));
    }
    let found_version = u16::from_le_bytes([bytes[8], bytes[9]]);
    if found_version != version {
        return Err(KeyError::corrupt(
            path,
            format!("unsupported format version {found_version}"),
        ));
    }
    let length = u32::from_le_bytes([bytes[10], bytes[11], bytes[12], bytes[13]]) as usize;
    if bytes.len() != HEADER_BYTES + length + CRC_BYTES {
        return Err(KeyError::corrupt(
            path,
            "length does not match the file size (truncated?)",
        ));
    }
    let (body, crc_bytes) = bytes.split_at(HEADER_BYTES + length);
    let stored = u32::from_le_bytes([crc_bytes[0], crc_bytes[1], crc_bytes[2], crc_bytes[3]]);
    if crc32c::crc32c(body) != stored {
        return Err(KeyError::corrupt(path, "checksum mismatch"));
    }
    Ok(&body[HEADER_BYTES..])
}

/// Reads a whole key file; `Ok(None)` if it does not exist.
pub(crate) fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, KeyError> {
    let metadata = match fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(KeyError::io(path, error)),
    };
    if metadata.len() > FILE_BYTES_MAX as u64 {
        return Err(KeyError::corrupt(
            path,
            format!("too large ({} bytes)", metadata.len()),
        ));
    }
    fs::read(path)
        .map(Some)
        .map_err(|error| KeyError::io(path, error))
}

/// Replaces `path` with `bytes` atomically and durably.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = Path::new(&temporary);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(temporary)
        .map_err(|error| KeyError::io(temporary, error))?;
    file.write_all(bytes)
        .map_err(|error| KeyError::io(temporary, error))?;
    file.sync_all()
        .map_err(|error| KeyError::io(temporary, error))?;
    drop(file);
    fs::rename(temporary, path).map_err(|error| KeyError::io(path, error))?;
    sync_parent(path)
}

/// Creates `path` with `bytes` only if it does not exist yet (mode 0600), durably.
/// Returns `Ok(false)` if it already existed.
pub(crate) fn create_new(path: &Path, bytes: &[u8]) -> Result<bool, KeyError> {
    let mut file = match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(file) => file,
        Err(error) if error.kind() == ErrorKind::AlreadyExists => return Ok(false),
        Err(error) => return Err(KeyError::io(path, error)),
    };
    file.write_all(bytes)
        .map_err(|error| KeyError::io(path, error))?;
    file.sync_all().map_err(|error| KeyError::io(path, error))?;
    sync_parent(path)?;
    Ok(true)
}

/// Creates `dir` (and parents) with mode 0700 if missing.
pub(crate) fn create_dir(dir: &Path) -> Result<(), KeyError> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|error| KeyError::io(dir, error))
}

fn sync_parent(path: &Path) -> Result<(), KeyError> {
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    File::open(parent)
        .and_then(|dir| dir.sync_all())
        .map_err(|error| KeyError::io(parent, error))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_reject_damage() {
        let path = Path::new("x");
        let frame = encode_frame(path, b"KISEKITT", 1, b"payload").unwrap();
        assert_eq!(
            decode_frame(path, b"KISEKITT", 1, &frame).unwrap(),
            b"payload"
        );
        assert!(decode_frame(path, b"KISEKIXX", 1, &frame).is_err());
        assert!(decode_frame(path, b"KISEKITT", 2, &frame).is_err());
        assert!(decode_frame(path, b"KISEKITT", 1, &frame[..frame.len() - 1]).is_err());
        for index in 0..frame.len() {
            let mut damaged = frame.clone();
            damaged[index] ^= 0x40;
            assert!(
                decode_frame(path, b"KISEKITT", 1, &damaged).is_err(),
                "byte {index}"
            );
        }
    }
}
