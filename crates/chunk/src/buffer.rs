//! A chunk's plaintext laid out inside the frame it will be sealed into, so that sealing
//! encrypts in place: no zero-fill and no copy of the chunk on the write path. Also how the
//! daemons keep freed chunk-sized buffers for reuse.

use bytes::BytesMut;
use kiseki_crypto::TAG_BYTES;

use crate::HEADER_BYTES;

/// Largest allocation glibc serves from its heap after [`keep_chunk_buffers_in_heap`].
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const HEAP_ALLOCATION_BYTES_MAX: i32 = 64 << 20;
/// Free memory at the top of the heap kept for reuse instead of returned to the system.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const HEAP_TRIM_BYTES: i32 = 512 << 20;

/// Makes freed chunk-sized buffers reusable by the next allocation (call once, early in a
/// daemon's `main`). By default glibc maps every allocation of 128 KiB or more (a chunk, a
/// frame, a decode buffer) with its own `mmap` and unmaps it on free, so each chunk that passes
/// through pays page faults and zero-filling of fresh pages; measured here that was about a
/// tenth of the CPU of staging. Process memory stays bounded by the queues that bound the
/// buffers in flight, plus [`HEAP_TRIM_BYTES`] kept free.
#[allow(unsafe_code)] // one libc call, no memory handed over
pub fn keep_chunk_buffers_in_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is thread-safe in glibc.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, HEAP_ALLOCATION_BYTES_MAX);
        libc::mallopt(libc::M_TRIM_THRESHOLD, HEAP_TRIM_BYTES);
    }
}

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
        self.reserve(data.len());
        self.frame.extend_from_slice(data);
    }

    /// Makes room for `additional` more bytes of plaintext (and the tag after them), growing
    /// the allocation as a `Vec` does when it must.
    pub fn reserve(&mut self, additional: usize) {
        self.frame.reserve(additional + TAG_BYTES);
    }

    /// Bytes of plaintext the buffer holds without growing.
    pub fn capacity(&self) -> usize {
        self.frame
            .capacity()
            .saturating_sub(HEADER_BYTES + TAG_BYTES)
    }

    /// Sets the plaintext's length, zero-filling any new bytes.
    pub fn resize(&mut self, plaintext_len: usize) {
        self.reserve(plaintext_len.saturating_sub(self.len()));
        self.frame.resize(HEADER_BYTES + plaintext_len, 0);
    }

    /// Moves the plaintext from `at` on into a new buffer (a copy of those bytes).
    pub fn split_off(&mut self, at: usize) -> ChunkBuffer {
        let tail = ChunkBuffer::from_plaintext(&self.plaintext()[at..]);
        self.frame.truncate(HEADER_BYTES + at);
        tail
    }

    /// The plaintext so far.
    pub fn plaintext(&self) -> &[u8] {
        &self.frame[HEADER_BYTES..]
    }

    /// The plaintext so far, to change in place.
    pub fn plaintext_mut(&mut self) -> &mut [u8] {
        &mut self.frame[HEADER_BYTES..]
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

impl std::fmt::Debug for ChunkBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkBuffer")
            .field("len", &self.len())
            .finish()
    }
}
