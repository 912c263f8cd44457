//! Pools, device classes and placement records: [`Placement`] (where a chunk goes) and the
//! [`PlacementPolicy`] that picks it per tenant and workload,
//! [`DeviceId`] and [`RecordedLayout`] (where an erasure-coded chunk's fragments are, as
//! recorded in its shard's log) and the [`PlacementJournal`] that carries layouts between chunk
//! stores and the namespace. No I/O here.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use kiseki_types::{ChunkId, TenantId};
use serde::{Deserialize, Serialize};

/// A class of devices with similar speed and cost; pools are made of one class.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceClass {
    /// Fast NVMe: metadata-heavy and small-chunk traffic.
    FastNvme,
    /// Bulk NVMe: capacity.
    BulkNvme,
}

/// The name of an affinity pool, as the site config spells it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PoolName(pub String);

impl fmt::Display for PoolName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a chunk goes. Today a pool is one local directory; with erasure coding the placement
/// engine will turn this into fragments on distinct nodes and devices.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Placement {
    /// The pool that stores the chunk.
    pub pool: PoolName,
}

/// Which pool a writer's new chunks go to: a rule for a tenant's workload beats a rule for the
/// tenant, which beats the default (a pool names its device class and its erasure-coding
/// profile, so this is how a tenant or workload gets fast NVMe, or 8+3 instead of 4+2). Only
/// new chunks follow it: a chunk already stored stays where it is, and deduplication finds it
/// in any pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlacementPolicy {
    default: Placement,
    tenants: HashMap<TenantId, Placement>,
    workloads: HashMap<TenantId, HashMap<String, Placement>>,
}

impl PlacementPolicy {
    /// Every chunk to `default`.
    pub fn new(default: Placement) -> Self {
        PlacementPolicy {
            default,
            tenants: HashMap::new(),
            workloads: HashMap::new(),
        }
    }

    /// Sends `tenant`'s chunks (of workloads without their own rule) to `placement`.
    pub fn with_tenant(mut self, tenant: TenantId, placement: Placement) -> Self {
        self.tenants.insert(tenant, placement);
        self
    }

    /// Sends the chunks of `tenant`'s workload `workload` to `placement`.
    pub fn with_workload(mut self, tenant: TenantId, workload: &str, placement: Placement) -> Self {
        self.workloads
            .entry(tenant)
            .or_default()
            .insert(workload.to_owned(), placement);
        self
    }

    /// Where chunks without a rule go.
    pub fn default_placement(&self) -> &Placement {
        &self.default
    }

    /// Where a new chunk of `tenant`, written by `workload` when the writer's workload is
    /// known, goes.
    pub fn placement_for(&self, tenant: TenantId, workload: Option<&str>) -> &Placement {
        workload
            .and_then(|workload| self.workloads.get(&tenant)?.get(workload))
            .or_else(|| self.tenants.get(&tenant))
            .unwrap_or(&self.default)
    }
}

/// A device's id within its pool: a stable 32-bit hash of the device's name, so placement
/// records stay small and stay valid when devices are added to (or reordered in) the config.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId(pub u32);

impl DeviceId {
    /// The id of the device named `name` (the same on every node that names it so).
    pub fn of(name: &str) -> Self {
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"kiseki-device-id-v1");
        hasher.update(name.as_bytes());
        let hash = hasher.finalize();
        let mut first = [0u8; 4];
        first.copy_from_slice(&hash.as_bytes()[..4]);
        DeviceId(u32::from_le_bytes(first))
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

/// Where the fragments of one chunk are, as recorded (or to be recorded) in its shard's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedLayout {
    /// The erasure-coded pool.
    pub pool: PoolName,
    /// The profile the chunk was cut with.
    pub profile: crate::EcProfile,
    /// The encoding's generation (from the fragment headers).
    pub generation: u64,
    /// `(node, device)` of fragment `i`, in fragment order.
    pub fragments: Vec<(u64, DeviceId)>,
}

/// Looks up recorded placements (the shard state, which the namespace owns).
pub trait PlacementBook: Send + Sync + 'static {
    /// The recorded layout of `chunk` of `tenant`, if there is one.
    fn recorded(&self, tenant: TenantId, chunk: ChunkId) -> Option<RecordedLayout>;
}

/// Layouts of fresh chunks kept until a composition claims them.
pub const JOURNAL_FRESH_MAX: usize = 65_536;
/// Layouts moved by rebuild or scrub kept until they are recorded.
pub const JOURNAL_MOVED_MAX: usize = 65_536;

type JournalKey = (TenantId, ChunkId);

#[derive(Default)]
struct Fresh {
    next: u64,
    order: BTreeMap<u64, JournalKey>,
    layouts: HashMap<JournalKey, (u64, RecordedLayout)>,
}

/// The node's meeting point between chunk stores and shard logs: erasure-coded stores note the
/// layout of every chunk they write (`fresh`) and of every chunk whose fragments a repair moved
/// (`moved`); the namespace takes fresh layouts into the delta of the composition that
/// references the chunks, and a background task proposes moved ones. Reads ask the attached
/// [`PlacementBook`] for recorded layouts. Both queues are bounded: when full, the oldest fresh
/// layout (a chunk no write committed) is dropped and new moved layouts are refused (counted);
/// such chunks stay readable through the derived placement.
#[derive(Default)]
pub struct PlacementJournal {
    fresh: Mutex<Fresh>,
    moved: Mutex<Vec<(TenantId, ChunkId, RecordedLayout)>>,
    book: OnceLock<Arc<dyn PlacementBook>>,
    dropped: AtomicU64,
}

impl PlacementJournal {
    /// An empty journal without a book.
    pub fn new() -> Self {
        Self::default()
    }

    /// Attaches the book reads consult (once; later calls are ignored).
    pub fn set_book(&self, book: Arc<dyn PlacementBook>) {
        let _ = self.book.set(book);
    }

    /// The recorded layout of a chunk: the book's, else a fresh one not yet committed.
    pub fn recorded(&self, tenant: TenantId, chunk: ChunkId) -> Option<RecordedLayout> {
        if let Some(layout) = self
            .book
            .get()
            .and_then(|book| book.recorded(tenant, chunk))
        {
            return Some(layout);
        }
        let fresh = lock(&self.fresh);
        fresh
            .layouts
            .get(&(tenant, chunk))
            .map(|(_, layout)| layout.clone())
    }

    /// Notes the layout of a chunk just written.
    pub fn note_fresh(&self, tenant: TenantId, chunk: ChunkId, layout: RecordedLayout) {
        let mut fresh = lock(&self.fresh);
        let key = (tenant, chunk);
        let seq = fresh.next;
        fresh.next += 1;
        if let Some((old, _)) = fresh.layouts.insert(key, (seq, layout)) {
            fresh.order.remove(&old);
        }
        fresh.order.insert(seq, key);
        while fresh.layouts.len() > JOURNAL_FRESH_MAX {
            let Some((_, oldest)) = fresh.order.pop_first() else {
                break;
            };
            fresh.layouts.remove(&oldest);
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Takes the fresh layouts of `chunks` (those noted and not yet taken).
    pub fn take_fresh(
        &self,
        tenant: TenantId,
        chunks: &[ChunkId],
    ) -> Vec<(ChunkId, RecordedLayout)> {
        let mut fresh = lock(&self.fresh);
        if fresh.layouts.is_empty() {
            return Vec::new();
        }
        let mut taken = Vec::new();
        for &chunk in chunks {
            if let Some((seq, layout)) = fresh.layouts.remove(&(tenant, chunk)) {
                fresh.order.remove(&seq);
                taken.push((chunk, layout));
            }
        }
        taken
    }

    /// Notes a chunk whose fragments a repair moved; refused (counted) when the queue is full.
    pub fn note_moved(&self, tenant: TenantId, chunk: ChunkId, layout: RecordedLayout) {
        let mut moved = lock(&self.moved);
        if moved.len() >= JOURNAL_MOVED_MAX {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        moved.push((tenant, chunk, layout));
    }

    /// Takes up to `max` moved layouts, oldest first.
    pub fn take_moved(&self, max: usize) -> Vec<(TenantId, ChunkId, RecordedLayout)> {
        let mut moved = lock(&self.moved);
        let count = moved.len().min(max);
        moved.drain(..count).collect()
    }

    /// Layouts dropped or refused because a queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The guarded maps stay consistent between statements; a panic elsewhere does not break them.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Magic of a file of moved layouts an offline repair left for the node to record.
pub const MOVED_FILE_MAGIC: &[u8; 8] = b"KSKPLMOV";
/// Version of that file's format.
pub const MOVED_FILE_VERSION: u32 = 1;
const MOVED_FILE_HEADER_BYTES: usize = 8 + 4 + 4 + 4;

/// Encodes moved layouts for a file: magic, version, count, CRC32C of the body, then per entry
/// tenant, chunk, pool name (≤ 255 bytes), profile, generation and `(node, device)` pairs.
pub fn encode_moved(entries: &[(TenantId, ChunkId, RecordedLayout)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (tenant, chunk, layout) in entries {
        let pool = layout.pool.0.as_bytes();
        let pool = &pool[..pool.len().min(255)];
        body.extend_from_slice(&tenant.0.to_le_bytes());
        body.extend_from_slice(&chunk.0);
        body.push(pool.len() as u8);
        body.extend_from_slice(pool);
        let (kind, a, b) = match layout.profile {
            crate::EcProfile::ReedSolomon { k, m } => (0u8, k, m),
            crate::EcProfile::Replicate { copies } => (1u8, copies, 0),
        };
        body.extend_from_slice(&[kind, a, b]);
        body.extend_from_slice(&layout.generation.to_le_bytes());
        let fragments = &layout.fragments[..layout.fragments.len().min(crate::FRAGMENTS_MAX)];
        body.push(fragments.len() as u8);
        for (node, device) in fragments {
            body.extend_from_slice(&node.to_le_bytes());
            body.extend_from_slice(&device.0.to_le_bytes());
        }
    }
    let mut bytes = Vec::with_capacity(MOVED_FILE_HEADER_BYTES + body.len());
    bytes.extend_from_slice(MOVED_FILE_MAGIC);
    bytes.extend_from_slice(&MOVED_FILE_VERSION.to_le_bytes());
    bytes.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
    bytes.extend_from_slice(&body);
    bytes
}

/// A file of moved layouts that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("moved-placement file: {0}")]
pub struct MovedFileError(String);

/// Decodes [`encode_moved`]'s bytes; refuses a wrong magic or version, a bad checksum or a
/// truncated body.
pub fn decode_moved(
    bytes: &[u8],
) -> Result<Vec<(TenantId, ChunkId, RecordedLayout)>, MovedFileError> {
    let bad = |why: &str| MovedFileError(why.to_owned());
    if bytes.len() < MOVED_FILE_HEADER_BYTES || &bytes[..8] != MOVED_FILE_MAGIC {
        return Err(bad("not a moved-placement file"));
    }
    let word =
        |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    if word(8) != MOVED_FILE_VERSION {
        return Err(MovedFileError(format!("unsupported version {}", word(8))));
    }
    let count = word(12) as usize;
    let body = &bytes[MOVED_FILE_HEADER_BYTES..];
    if crc32c::crc32c(body) != word(16) {
        return Err(bad("checksum mismatch"));
    }
    let mut reader = Reader { bytes: body };
    let mut entries = Vec::with_capacity(count.min(JOURNAL_MOVED_MAX));
    for _ in 0..count {
        let entry = reader.entry().ok_or_else(|| bad("truncated"))?;
        entries.push(entry);
    }
    Ok(entries)
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn take(&mut self, len: usize) -> Option<&[u8]> {
        if self.bytes.len() < len {
            return None;
        }
        let (head, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Some(head)
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn entry(&mut self) -> Option<(TenantId, ChunkId, RecordedLayout)> {
        let tenant = TenantId(self.u64()?);
        let chunk = ChunkId(self.take(32)?.try_into().ok()?);
        let pool_len = self.u8()? as usize;
        let pool = String::from_utf8(self.take(pool_len)?.to_vec()).ok()?;
        let (kind, a, b) = (self.u8()?, self.u8()?, self.u8()?);
        let profile = match kind {
            0 => crate::EcProfile::ReedSolomon { k: a, m: b },
            _ => crate::EcProfile::Replicate { copies: a },
        }
        .new()
        .ok()?;
        let generation = self.u64()?;
        let count = self.u8()? as usize;
        let mut fragments = Vec::with_capacity(count);
        for _ in 0..count {
            fragments.push((self.u64()?, DeviceId(self.u32()?)));
        }
        let layout = RecordedLayout {
            pool: PoolName(pool),
            profile,
            generation,
            fragments,
        };
        Some((tenant, chunk, layout))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::EcProfile;

    fn layout(generation: u64) -> RecordedLayout {
        RecordedLayout {
            pool: PoolName("bulk".into()),
            profile: EcProfile::ReedSolomon { k: 4, m: 2 },
            generation,
            fragments: (0..6)
                .map(|i| (i, DeviceId::of(&format!("dev{i}"))))
                .collect(),
        }
    }

    #[test]
    fn device_ids_are_stable_and_distinct() {
        assert_eq!(DeviceId::of("dev0"), DeviceId::of("dev0"));
        assert_ne!(DeviceId::of("dev0"), DeviceId::of("dev1"));
    }

    #[test]
    fn journal_hands_out_fresh_layouts_once_and_prefers_the_book() {
        struct Book;
        impl PlacementBook for Book {
            fn recorded(&self, _: TenantId, chunk: ChunkId) -> Option<RecordedLayout> {
                (chunk.0[0] == 7).then(|| layout(99))
            }
        }
        let journal = PlacementJournal::new();
        let (tenant, a, b) = (TenantId(1), ChunkId([1; 32]), ChunkId([7; 32]));
        journal.note_fresh(tenant, a, layout(1));
        assert_eq!(journal.recorded(tenant, a).unwrap().generation, 1);
        assert!(journal.take_fresh(TenantId(2), &[a]).is_empty());
        assert_eq!(journal.take_fresh(tenant, &[a, b]).len(), 1);
        assert!(journal.take_fresh(tenant, &[a]).is_empty());
        journal.set_book(Arc::new(Book));
        assert_eq!(journal.recorded(tenant, b).unwrap().generation, 99);
        assert!(journal.recorded(tenant, a).is_none());
    }

    #[test]
    fn fresh_layouts_are_bounded() {
        let journal = PlacementJournal::new();
        for i in 0..JOURNAL_FRESH_MAX + 3 {
            let mut id = [0u8; 32];
            id[..8].copy_from_slice(&(i as u64).to_le_bytes());
            journal.note_fresh(TenantId(1), ChunkId(id), layout(1));
        }
        assert_eq!(journal.dropped(), 3);
        // The oldest went first.
        assert!(journal.recorded(TenantId(1), ChunkId([0; 32])).is_none());
    }

    #[test]
    fn moved_files_round_trip_and_refuse_damage() {
        let entries = vec![
            (TenantId(1), ChunkId([3; 32]), layout(5)),
            (
                TenantId(2),
                ChunkId([4; 32]),
                RecordedLayout {
                    profile: EcProfile::Replicate { copies: 3 },
                    fragments: vec![(1, DeviceId(9)); 3],
                    ..layout(6)
                },
            ),
        ];
        let bytes = encode_moved(&entries);
        assert_eq!(decode_moved(&bytes).unwrap(), entries);
        let mut damaged = bytes.clone();
        let last = damaged.len() - 1;
        damaged[last] ^= 1;
        assert!(decode_moved(&damaged).is_err());
        assert!(decode_moved(&bytes[..bytes.len() - 3]).is_err());
        let mut version = bytes;
        version[8] = 9;
        assert!(decode_moved(&version).is_err());
    }
}
