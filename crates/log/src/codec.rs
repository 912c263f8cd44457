//! The record format of every value the log store persists: a format version byte, the crc32c
//! of the payload (little endian) and the payload in bincode 2 (serde, standard config). A new
//! format gets a new version byte; old versions stay decodable.

use std::io;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The current (and only) record format.
const RECORD_FORMAT_V1: u8 = 1;
const HEADER_BYTES: usize = 1 + 4;

/// Encodes `value` as a version-1 record.
pub(crate) fn encode<T: Serialize>(value: &T) -> io::Result<Vec<u8>> {
    let payload = bincode::serde::encode_to_vec(value, bincode::config::standard())
        .map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, error))?;
    let mut record = Vec::with_capacity(HEADER_BYTES + payload.len());
    record.push(RECORD_FORMAT_V1);
    record.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    record.extend_from_slice(&payload);
    Ok(record)
}

/// Decodes a record written by [`encode`], checking its version and checksum.
pub(crate) fn decode<T: DeserializeOwned>(record: &[u8]) -> io::Result<T> {
    let Some((&version, rest)) = record.split_first() else {
        return Err(invalid("empty record".to_string()));
    };
    if version != RECORD_FORMAT_V1 {
        return Err(invalid(format!(
            "unsupported record format version {version}"
        )));
    }
    let Some((crc_bytes, payload)) = rest.split_first_chunk::<4>() else {
        return Err(invalid("record shorter than its header".to_string()));
    };
    if crc32c::crc32c(payload) != u32::from_le_bytes(*crc_bytes) {
        return Err(invalid("record checksum mismatch".to_string()));
    }
    let (value, used) = bincode::serde::decode_from_slice(payload, bincode::config::standard())
        .map_err(|error| invalid(error.to_string()))?;
    if used != payload.len() {
        return Err(invalid(format!(
            "{} trailing bytes after record",
            payload.len() - used
        )));
    }
    Ok(value)
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption() {
        let record = encode(&(7u64, "seven".to_string())).unwrap();
        assert_eq!(record[0], RECORD_FORMAT_V1);
        let back: (u64, String) = decode(&record).unwrap();
        assert_eq!(back, (7, "seven".to_string()));

        let mut flipped = record.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(decode::<(u64, String)>(&flipped).is_err());

        let mut future = record;
        future[0] = 2;
        assert!(decode::<(u64, String)>(&future).is_err());
    }
}
