//! A chunk's plaintext laid out inside the frame it will be sealed into, so that sealing
//! encrypts in place: no zero-fill and no copy of the chunk on the write path.

use bytes::BytesMut;
use kiseki_crypto::TAG_BYTES;

use crate::HEADER_BYTES;

/// Plaintext of one chunk, with room before it for the frame header and after it for the tag.
pub struct ChunkBuffer {
    frame: BytesMut,
}

impl ChunkBuffer {
    /// An empty buffer for up to `plaintext_capacity` bytes (it grows if needed).
    pub fn with_capacity(plaintext_capacity: usize) -> Self {
        let mut frame = BytesMut::with_capacity(HEADER_BYTES + plaintext_capacity + TAG_BYTES);
        frame.resize(HEADER_BYTES, 0);
        ChunkBuffer { frame }
    }

    /// A buffer holding a copy of `plaintext`.
    pub fn from_plaintext(plaintext: &[u8]) -> Self {
        let mut buffer = Self::with_capacity(plaintext.len());
        buffer.extend_from_slice(plaintext);
        buffer
    }

    /// Appends plaintext.
    pub fn extend_from_slice(&mut self, data: &[u8]) {
        self.frame.extend_from_slice(data);
    }

    /// The plaintext so far.
    pub fn plaintext(&self) -> &[u8] {
        &self.frame[HEADER_BYTES..]
    }

    /// Bytes of plaintext.
    pub fn len(&self) -> usize {
        self.frame.len() - HEADER_BYTES
    }

    /// Whether no plaintext was added.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn into_frame(self) -> BytesMut {
        self.frame
    }
}
