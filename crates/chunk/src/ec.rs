//! Erasure-coding profiles and the codec that cuts a sealed chunk frame into fragment files and
//! puts it back together from any `k` of them.
//!
//! This module owns the arithmetic only: it never does I/O, never picks devices and never looks
//! inside a frame (it pads it, records its length and cuts the padding off again).

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use kiseki_types::{ChunkId, TenantId};
use reed_solomon_erasure::galois_8::ReedSolomon;

use crate::fragment::{FragmentHeader, FragmentKey, FragmentKind, FRAGMENT_HEADER_BYTES};
use crate::ChunkError;

/// Most fragments one chunk may have (data + parity, or copies).
pub const FRAGMENTS_MAX: usize = 32;
/// Encode buffers kept for reuse once every fragment of a chunk has been dropped.
pub const ENCODE_BUFFERS_POOLED_MAX: usize = 8;

/// How a chunk is made redundant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EcProfile {
    /// Reed-Solomon with `k` data and `m` parity fragments: survives the loss of any `m`.
    ReedSolomon {
        /// Data fragments.
        k: u8,
        /// Parity fragments.
        m: u8,
    },
    /// Whole copies of the frame: survives the loss of `copies − 1`.
    Replicate {
        /// Number of copies.
        copies: u8,
    },
}

/// A profile that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("invalid erasure-coding profile {0:?}: expected k+m (k ≥ 1, m ≥ 1, k+m ≤ 32) or replicate:N (1 ≤ N ≤ 32)")]
pub struct InvalidProfile(pub String);

impl EcProfile {
    /// A checked profile.
    pub fn new(self) -> Result<Self, InvalidProfile> {
        let ok = match self {
            EcProfile::ReedSolomon { k, m } => {
                k >= 1 && m >= 1 && (k as usize + m as usize) <= FRAGMENTS_MAX
            }
            EcProfile::Replicate { copies } => copies >= 1 && copies as usize <= FRAGMENTS_MAX,
        };
        if ok {
            Ok(self)
        } else {
            Err(InvalidProfile(self.to_string()))
        }
    }

    /// Fragments needed to read the chunk.
    pub fn data_fragments(&self) -> usize {
        match self {
            EcProfile::ReedSolomon { k, .. } => *k as usize,
            EcProfile::Replicate { .. } => 1,
        }
    }

    /// Fragments that may be lost without losing the chunk.
    pub fn parity_fragments(&self) -> usize {
        match self {
            EcProfile::ReedSolomon { m, .. } => *m as usize,
            EcProfile::Replicate { copies } => *copies as usize - 1,
        }
    }

    /// All fragments of a chunk.
    pub fn total_fragments(&self) -> usize {
        self.data_fragments() + self.parity_fragments()
    }

    fn kind(&self) -> FragmentKind {
        match self {
            EcProfile::ReedSolomon { .. } => FragmentKind::ReedSolomon,
            EcProfile::Replicate { .. } => FragmentKind::Replica,
        }
    }

    /// The profile a fragment header records.
    pub fn from_header(header: &FragmentHeader) -> Self {
        match header.kind {
            FragmentKind::ReedSolomon => EcProfile::ReedSolomon {
                k: header.k,
                m: header.m,
            },
            FragmentKind::Replica => EcProfile::Replicate {
                copies: header.m.saturating_add(1),
            },
        }
    }

    /// Body bytes of each fragment for a frame of `frame_len` bytes.
    pub fn fragment_body_len(&self, frame_len: usize) -> usize {
        let k = self.data_fragments();
        // Rounded up to a multiple of 64 bytes so the SIMD kernels work on whole vectors.
        frame_len.div_ceil(k).div_ceil(64).max(1) * 64
    }
}

impl fmt::Display for EcProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EcProfile::ReedSolomon { k, m } => write!(f, "{k}+{m}"),
            EcProfile::Replicate { copies } => write!(f, "replicate:{copies}"),
        }
    }
}

impl FromStr for EcProfile {
    type Err = InvalidProfile;

    /// Parses `4+2` or `replicate:3`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidProfile(text.to_owned());
        let text = text.trim();
        let profile = if let Some(copies) = text.strip_prefix("replicate:") {
            EcProfile::Replicate {
                copies: copies.trim().parse().map_err(|_| invalid())?,
            }
        } else {
            let (k, m) = text.split_once('+').ok_or_else(invalid)?;
            EcProfile::ReedSolomon {
                k: k.trim().parse().map_err(|_| invalid())?,
                m: m.trim().parse().map_err(|_| invalid())?,
            }
        };
        profile.new()
    }
}

/// Which profile a chunk gets: per tenant, with small chunks replicated instead of coded (a
/// small frame cut in `k` pieces costs more in headers and I/Os than whole copies).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EcPolicy {
    /// The pool's profile.
    pub default: EcProfile,
    /// Frames shorter than this many bytes use `small_profile`.
    pub small_chunk_bytes_max: usize,
    /// The profile for small frames.
    pub small_profile: EcProfile,
    /// Tenants whose chunks use another profile (small chunks still use `small_profile`).
    pub tenants: HashMap<TenantId, EcProfile>,
}

impl EcPolicy {
    /// One profile for every chunk.
    pub fn uniform(profile: EcProfile) -> Self {
        EcPolicy {
            default: profile,
            small_chunk_bytes_max: 0,
            small_profile: profile,
            tenants: HashMap::new(),
        }
    }

    /// The profile for a frame of `frame_len` bytes of `tenant`.
    pub fn profile_for(&self, tenant: TenantId, frame_len: usize) -> EcProfile {
        if frame_len < self.small_chunk_bytes_max {
            return self.small_profile;
        }
        self.tenants.get(&tenant).copied().unwrap_or(self.default)
    }

    /// Every profile the policy may choose.
    pub fn profiles(&self) -> impl Iterator<Item = EcProfile> + '_ {
        [self.default, self.small_profile]
            .into_iter()
            .chain(self.tenants.values().copied())
    }
}

/// Encodes frames into fragment files and decodes them back. Keeps one Reed-Solomon matrix per
/// profile (building one is the expensive part) and writes every fragment of a chunk into one
/// allocation, so encoding costs one copy of the frame plus the parity arithmetic.
///
/// The buffer behind a chunk's fragment files returns to a small pool when the last of them is
/// dropped (after the writes), so steady-state encoding touches no fresh pages.
#[derive(Default)]
pub struct Codec {
    matrices: Mutex<HashMap<(u8, u8), Arc<ReedSolomon>>>,
    buffers: Arc<BufferPool>,
}

/// Spare encode buffers.
#[derive(Default)]
struct BufferPool {
    free: Mutex<Vec<Vec<u8>>>,
}

impl BufferPool {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
        self.free
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// An empty buffer with room for `capacity` bytes, reused when one is spare.
    fn take(&self, capacity: usize) -> Vec<u8> {
        let spare = self.lock().pop();
        let mut buffer = spare.unwrap_or_default();
        buffer.clear();
        buffer.reserve(capacity);
        buffer
    }

    fn give_back(&self, buffer: Vec<u8>) {
        let mut free = self.lock();
        if free.len() < ENCODE_BUFFERS_POOLED_MAX {
            free.push(buffer);
        }
    }
}

/// Owns an encode buffer while fragment files point into it; hands it back on drop.
struct PooledBuffer {
    buffer: Vec<u8>,
    pool: Arc<BufferPool>,
}

impl AsRef<[u8]> for PooledBuffer {
    fn as_ref(&self) -> &[u8] {
        &self.buffer
    }
}

impl Drop for PooledBuffer {
    fn drop(&mut self) {
        self.pool.give_back(std::mem::take(&mut self.buffer));
    }
}

impl Codec {
    /// A codec with no matrices built yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn matrix(&self, k: u8, m: u8) -> Result<Arc<ReedSolomon>, ChunkError> {
        let mut matrices = self
            .matrices
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(matrix) = matrices.get(&(k, m)) {
            return Ok(Arc::clone(matrix));
        }
        let matrix = Arc::new(
            ReedSolomon::new(k as usize, m as usize)
                .map_err(|error| ChunkError::Task(format!("Reed-Solomon {k}+{m}: {error:?}")))?,
        );
        matrices.insert((k, m), Arc::clone(&matrix));
        Ok(matrix)
    }

    /// Cuts `frame` of chunk `chunk` into the fragment files of `profile`, in index order, under
    /// a new generation.
    pub fn encode(
        &self,
        profile: EcProfile,
        tenant: TenantId,
        chunk: ChunkId,
        frame: &[u8],
    ) -> Result<Vec<Bytes>, ChunkError> {
        self.encode_as(profile, tenant, chunk, frame, next_generation())
    }

    fn encode_as(
        &self,
        profile: EcProfile,
        tenant: TenantId,
        chunk: ChunkId,
        frame: &[u8],
        generation: u64,
    ) -> Result<Vec<Bytes>, ChunkError> {
        let frame_len =
            u32::try_from(frame.len()).map_err(|_| ChunkError::TooLarge(frame.len()))?;
        let n = profile.total_fragments();
        let k = profile.data_fragments();
        let body_len = match profile {
            EcProfile::Replicate { .. } => frame.len(),
            EcProfile::ReedSolomon { .. } => profile.fragment_body_len(frame.len()),
        };
        let slot = FRAGMENT_HEADER_BYTES + body_len;
        // Filled in order rather than zeroed first: only headers, padding and parity start as
        // zeroes, the data bodies are written once by the copy.
        let mut buffer = self.buffers.take(slot * n);
        for index in 0..n {
            buffer.resize(buffer.len() + FRAGMENT_HEADER_BYTES, 0);
            let end = buffer.len() + body_len;
            match profile {
                EcProfile::Replicate { .. } => buffer.extend_from_slice(frame),
                EcProfile::ReedSolomon { .. } if index < k => {
                    let start = (index * body_len).min(frame.len());
                    let stop = ((index + 1) * body_len).min(frame.len());
                    buffer.extend_from_slice(&frame[start..stop]);
                }
                EcProfile::ReedSolomon { .. } => {}
            }
            buffer.resize(end, 0);
        }
        if let EcProfile::ReedSolomon { k: dk, m } = profile {
            debug_assert!(frame.len() <= k * body_len);
            let mut bodies: Vec<&mut [u8]> = buffer
                .chunks_exact_mut(slot)
                .map(|slot| &mut slot[FRAGMENT_HEADER_BYTES..])
                .collect();
            self.matrix(dk, m)?
                .encode(&mut bodies)
                .map_err(|error| ChunkError::Task(format!("encode: {error:?}")))?;
        }
        for (index, slot) in buffer.chunks_exact_mut(slot).enumerate() {
            let (head, body) = slot.split_at_mut(FRAGMENT_HEADER_BYTES);
            header(profile, tenant, chunk, index, frame_len, body, generation).encode_into(head);
        }
        let buffer = Bytes::from_owner(PooledBuffer {
            buffer,
            pool: Arc::clone(&self.buffers),
        });
        Ok((0..n)
            .map(|index| buffer.slice(index * slot..(index + 1) * slot))
            .collect())
    }

    /// Rebuilds the frame from fragment files (index → checked fragment file; `None` for missing
    /// or rejected ones). Needs any `k` of them.
    pub fn decode(
        &self,
        profile: EcProfile,
        key: FragmentKey,
        frame_len: usize,
        fragments: &[Option<Bytes>],
    ) -> Result<Bytes, ChunkError> {
        let k = profile.data_fragments();
        let present = fragments.iter().filter(|f| f.is_some()).count();
        if present < k {
            return Err(ChunkError::Corrupt {
                tenant: key.tenant,
                id: key.chunk,
                reason: format!(
                    "only {present} of {} fragments readable, {k} needed ({profile})",
                    profile.total_fragments()
                ),
            });
        }
        if let EcProfile::Replicate { .. } = profile {
            let whole = FRAGMENT_HEADER_BYTES + frame_len;
            if let Some(copy) = fragments.iter().flatten().find(|f| f.len() == whole) {
                return Ok(copy.slice(FRAGMENT_HEADER_BYTES..whole));
            }
            return Err(ChunkError::Corrupt {
                tenant: key.tenant,
                id: key.chunk,
                reason: "no copy has the recorded frame length".into(),
            });
        }
        let body_len = profile.fragment_body_len(frame_len);
        let whole = FRAGMENT_HEADER_BYTES + body_len;
        let data_present = fragments.len() >= k
            && fragments
                .iter()
                .take(k)
                .all(|f| f.as_ref().is_some_and(|f| f.len() == whole));
        let mut frame = Vec::with_capacity(k * body_len);
        if data_present {
            for fragment in fragments.iter().take(k).flatten() {
                frame.extend_from_slice(&fragment[FRAGMENT_HEADER_BYTES..]);
            }
        } else {
            frame = self.reconstruct(profile, body_len, fragments, k)?;
        }
        frame.truncate(frame_len);
        Ok(Bytes::from(frame))
    }

    /// Recomputes every fragment file of a chunk (for rebuild and scrub repair).
    pub fn regenerate(
        &self,
        profile: EcProfile,
        key: FragmentKey,
        frame_len: usize,
        fragments: &[Option<Bytes>],
    ) -> Result<Vec<Bytes>, ChunkError> {
        let generation = generation_of(key, fragments)?;
        let frame = self.decode(profile, key, frame_len, fragments)?;
        self.encode_as(profile, key.tenant, key.chunk, &frame, generation)
    }

    /// Recomputes only the fragment files `wanted` (in that order) from any `k` of `fragments`:
    /// the library reconstructs just the missing bodies, data or parity, without decoding the
    /// frame and encoding it again.
    pub fn rebuild_fragments(
        &self,
        profile: EcProfile,
        key: FragmentKey,
        frame_len: usize,
        fragments: &[Option<Bytes>],
        wanted: &[usize],
    ) -> Result<Vec<Bytes>, ChunkError> {
        let frame_len_u32 =
            u32::try_from(frame_len).map_err(|_| ChunkError::TooLarge(frame_len))?;
        let generation = generation_of(key, fragments)?;
        let n = profile.total_fragments();
        if wanted.iter().any(|&index| index >= n) {
            return Err(ChunkError::Task(format!("fragment index beyond {profile}")));
        }
        let file = |index: usize, body: &[u8]| {
            let mut out = Vec::with_capacity(FRAGMENT_HEADER_BYTES + body.len());
            out.resize(FRAGMENT_HEADER_BYTES, 0);
            out.extend_from_slice(body);
            header(
                profile,
                key.tenant,
                key.chunk,
                index,
                frame_len_u32,
                body,
                generation,
            )
            .encode_into(&mut out[..FRAGMENT_HEADER_BYTES]);
            Bytes::from(out)
        };
        let EcProfile::ReedSolomon { k: dk, m } = profile else {
            let copy = self.decode(profile, key, frame_len, fragments)?;
            return Ok(wanted.iter().map(|&index| file(index, &copy)).collect());
        };
        let k = profile.data_fragments();
        let body_len = profile.fragment_body_len(frame_len);
        let whole = FRAGMENT_HEADER_BYTES + body_len;
        let usable = fragments
            .iter()
            .filter(|f| f.as_ref().is_some_and(|f| f.len() == whole))
            .count();
        if usable < k {
            return Err(ChunkError::Corrupt {
                tenant: key.tenant,
                id: key.chunk,
                reason: format!("only {usable} of {n} fragments readable, {k} needed ({profile})"),
            });
        }
        let mut buffer = vec![0u8; n * body_len];
        {
            let mut shards: Vec<(&mut [u8], bool)> = buffer
                .chunks_exact_mut(body_len)
                .zip(fragments.iter().chain(std::iter::repeat(&None)))
                .enumerate()
                .map(|(index, (slot, fragment))| match fragment {
                    Some(bytes) if bytes.len() == whole && !wanted.contains(&index) => {
                        slot.copy_from_slice(&bytes[FRAGMENT_HEADER_BYTES..]);
                        (slot, true)
                    }
                    _ => (slot, false),
                })
                .collect();
            self.matrix(dk, m)?
                .reconstruct(&mut shards)
                .map_err(|error| ChunkError::Task(format!("reconstruct: {error:?}")))?;
        }
        Ok(wanted
            .iter()
            .map(|&index| file(index, &buffer[index * body_len..(index + 1) * body_len]))
            .collect())
    }

    /// Reconstructs the `k` data bodies, concatenated, into one buffer that also holds room for
    /// the parity bodies (the library needs them as scratch).
    fn reconstruct(
        &self,
        profile: EcProfile,
        body_len: usize,
        fragments: &[Option<Bytes>],
        k: usize,
    ) -> Result<Vec<u8>, ChunkError> {
        let EcProfile::ReedSolomon { k: dk, m } = profile else {
            return Err(ChunkError::Task(
                "reconstruct needs a Reed-Solomon profile".into(),
            ));
        };
        let n = profile.total_fragments();
        let mut buffer = vec![0u8; n * body_len];
        {
            let mut shards: Vec<(&mut [u8], bool)> = buffer
                .chunks_exact_mut(body_len)
                .zip(fragments.iter().chain(std::iter::repeat(&None)))
                .map(|(slot, fragment)| match fragment {
                    Some(bytes) if bytes.len() == FRAGMENT_HEADER_BYTES + body_len => {
                        slot.copy_from_slice(&bytes[FRAGMENT_HEADER_BYTES..]);
                        (slot, true)
                    }
                    _ => (slot, false),
                })
                .collect();
            self.matrix(dk, m)?
                .reconstruct_data(&mut shards)
                .map_err(|error| ChunkError::Task(format!("reconstruct: {error:?}")))?;
        }
        buffer.truncate(k * body_len);
        Ok(buffer)
    }
}

fn header(
    profile: EcProfile,
    tenant: TenantId,
    chunk: ChunkId,
    index: usize,
    frame_len: u32,
    body: &[u8],
    generation: u64,
) -> FragmentHeader {
    FragmentHeader {
        key: FragmentKey {
            tenant,
            chunk,
            index: index as u8,
        },
        kind: profile.kind(),
        k: profile.data_fragments() as u8,
        m: profile.parity_fragments() as u8,
        frame_len,
        body_len: body.len() as u32,
        body_crc: crc32c::crc32c(body),
        generation,
    }
}

/// A generation no other encoding in this process (and, with the per-process seed, likely in
/// no other process) has used.
fn next_generation() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static SEED: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = *SEED.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos())
            .unwrap_or_default();
        let mut hasher = blake3::Hasher::new();
        hasher.update(&nanos.to_le_bytes());
        hasher.update(&std::process::id().to_le_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&hasher.finalize().as_bytes()[..8]);
        u64::from_le_bytes(first)
    });
    seed.wrapping_add(COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// The generation of the fragments given (the caller passes fragments of one encoding).
fn generation_of(key: FragmentKey, fragments: &[Option<Bytes>]) -> Result<u64, ChunkError> {
    fragments
        .iter()
        .enumerate()
        .find_map(|(index, fragment)| {
            let key = FragmentKey {
                index: u8::try_from(index).ok()?,
                ..key
            };
            FragmentHeader::decode_header(fragment.as_ref()?, key).ok()
        })
        .map(|header| header.generation)
        .ok_or_else(|| ChunkError::Corrupt {
            tenant: key.tenant,
            id: key.chunk,
            reason: "no fragment with a readable header".into(),
        })
}
