//! XDR (RFC 4506) encoding and decoding: big-endian 4-byte units, opaque data padded to four
//! bytes. Hand-written because every NFS message is a handful of fields; decoding is bounded (a
//! length is checked against what is left and against the caller's limit before anything is
//! allocated).

use std::fmt;

/// A decoding failure: the message is malformed (answered with `GARBAGE_ARGS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XdrError(pub &'static str);

impl fmt::Display for XdrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed XDR: {}", self.0)
    }
}

impl std::error::Error for XdrError {}

/// Reads XDR values from a byte slice.
pub struct Reader<'a> {
    bytes: &'a [u8],
}

fn padding(len: usize) -> usize {
    (4 - len % 4) % 4
}

impl<'a> Reader<'a> {
    /// A reader over `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes }
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], XdrError> {
        if self.bytes.len() < len {
            return Err(XdrError("message too short"));
        }
        let (head, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Ok(head)
    }

    /// A 32-bit unsigned integer.
    pub fn u32(&mut self) -> Result<u32, XdrError> {
        let bytes = self.take(4)?;
        Ok(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    /// A 64-bit unsigned integer.
    pub fn u64(&mut self) -> Result<u64, XdrError> {
        Ok((u64::from(self.u32()?) << 32) | u64::from(self.u32()?))
    }

    /// A boolean.
    pub fn bool(&mut self) -> Result<bool, XdrError> {
        match self.u32()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(XdrError("boolean out of range")),
        }
    }

    /// Fixed-length opaque data.
    pub fn fixed<const N: usize>(&mut self) -> Result<[u8; N], XdrError> {
        let bytes = self.take(N + padding(N))?;
        let mut out = [0u8; N];
        out.copy_from_slice(&bytes[..N]);
        Ok(out)
    }

    /// Variable-length opaque data of at most `max` bytes, borrowed from the message.
    pub fn opaque(&mut self, max: usize) -> Result<&'a [u8], XdrError> {
        let len = self.u32()? as usize;
        if len > max {
            return Err(XdrError("opaque longer than allowed"));
        }
        let bytes = self.take(len + padding(len))?;
        Ok(&bytes[..len])
    }

    /// A string of at most `max` bytes that must be UTF-8 (Kiseki names are).
    pub fn string(&mut self, max: usize) -> Result<&'a str, XdrError> {
        std::str::from_utf8(self.opaque(max)?).map_err(|_| XdrError("string is not UTF-8"))
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.bytes.len()
    }

    /// Skips an opaque value (for fields the server does not use).
    pub fn skip_opaque(&mut self, max: usize) -> Result<(), XdrError> {
        self.opaque(max).map(drop)
    }
}

/// Appends XDR values to a byte buffer.
#[derive(Default)]
pub struct Writer {
    bytes: Vec<u8>,
}

impl Writer {
    /// A writer with room for `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Self {
        Writer {
            bytes: Vec::with_capacity(capacity),
        }
    }

    /// The encoded bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// A 32-bit unsigned integer.
    pub fn u32(&mut self, value: u32) -> &mut Self {
        self.bytes.extend_from_slice(&value.to_be_bytes());
        self
    }

    /// A 64-bit unsigned integer.
    pub fn u64(&mut self, value: u64) -> &mut Self {
        self.bytes.extend_from_slice(&value.to_be_bytes());
        self
    }

    /// A boolean.
    pub fn bool(&mut self, value: bool) -> &mut Self {
        self.u32(u32::from(value))
    }

    /// Fixed-length opaque data.
    pub fn fixed(&mut self, bytes: &[u8]) -> &mut Self {
        self.bytes.extend_from_slice(bytes);
        self.bytes
            .extend_from_slice(&[0u8; 3][..padding(bytes.len())]);
        self
    }

    /// Variable-length opaque data.
    pub fn opaque(&mut self, bytes: &[u8]) -> &mut Self {
        // Every opaque the server sends is bounded far below 4 GiB (names, handles, one READ).
        self.u32(bytes.len() as u32);
        self.fixed(bytes)
    }

    /// A string.
    pub fn string(&mut self, text: &str) -> &mut Self {
        self.opaque(text.as_bytes())
    }

    /// Opaque data assembled from several pieces (a READ reply), without joining them first.
    pub fn opaque_pieces(&mut self, pieces: &[bytes::Bytes]) -> &mut Self {
        let len: usize = pieces.iter().map(bytes::Bytes::len).sum();
        self.u32(len as u32);
        for piece in pieces {
            self.bytes.extend_from_slice(piece);
        }
        self.bytes.extend_from_slice(&[0u8; 3][..padding(len)]);
        self
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_with_padding() {
        let mut writer = Writer::default();
        writer
            .u32(7)
            .u64(u64::MAX - 1)
            .bool(true)
            .string("abcde")
            .fixed(&[1, 2, 3, 4, 5, 6, 7, 8]);
        let bytes = writer.into_bytes();
        assert_eq!(bytes.len(), 4 + 8 + 4 + (4 + 8) + 8);
        let mut reader = Reader::new(&bytes);
        assert_eq!(reader.u32().unwrap(), 7);
        assert_eq!(reader.u64().unwrap(), u64::MAX - 1);
        assert!(reader.bool().unwrap());
        assert_eq!(reader.string(255).unwrap(), "abcde");
        assert_eq!(reader.fixed::<8>().unwrap(), [1, 2, 3, 4, 5, 6, 7, 8]);
        assert!(reader.u32().is_err());
    }

    #[test]
    fn lengths_are_bounded_before_allocation() {
        let mut writer = Writer::default();
        writer.u32(1 << 30);
        let bytes = writer.into_bytes();
        assert!(Reader::new(&bytes).opaque(64).is_err());
        assert!(
            Reader::new(&bytes).opaque(usize::MAX).is_err(),
            "length beyond the message"
        );
    }
}
