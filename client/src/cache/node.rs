//! The node cache: L1 in memory over L2 files, with pins. One per compute node (the agent's),
//! shared by every process and job on it.
//!
//! L2 holds two kinds of chunks in one byte budget: pinned ones (kept while pinned, counted
//! against the budget from the moment they are pinned, fetched or not) and organic ones (the
//! rest of the budget, replaced by the segmented LRU). Organic chunks reach L2 when L1 lets
//! them go (L2 is L1's victim cache): a working set that fits in memory costs no cache file,
//! and a streaming read writes to local disk only what memory cannot keep. They go through a
//! bounded writer queue, so a read never waits for a cache file; when the queue is full the
//! chunk is not kept. L2 does not outlive the process, so nothing is lost by writing late.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use kiseki_types::ChunkId;
use serde::{Deserialize, Serialize};

use super::disk::{CacheKey, DiskFiles, ReadFailure};
use super::memory::{MemoryChunkCache, CORRELATION_WINDOW};
use super::pins::{PinTable, Released};
use super::slru::Slru;
use super::{CacheError, ChunkCache};

/// Chunks waiting for their organic L2 write.
const L2_WRITE_QUEUE: usize = 16;

/// Where and how big the node cache is.
#[derive(Clone, Debug)]
pub struct NodeCacheConfig {
    /// L1 bytes (plaintext in memory).
    pub memory_bytes: u64,
    /// The L2 directory on local NVMe. Its contents are discarded at open.
    pub disk_dir: PathBuf,
    /// L2 bytes (plaintext bytes of cached chunks; files add 52 bytes each).
    pub disk_bytes: u64,
}

/// Bytes used and available in one tier.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierUsage {
    /// Bytes cached.
    pub bytes: u64,
    /// The tier's size.
    pub capacity: u64,
}

/// One pinned dataset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinInfo {
    /// The dataset (a namespace path).
    pub dataset: String,
    /// The jobs holding it.
    pub jobs: Vec<String>,
    /// Bytes it pins.
    pub bytes: u64,
    /// Chunks it pins.
    pub chunks: u64,
    /// Of those, chunks in L2 now.
    pub cached_chunks: u64,
}

/// The cache's state for `kiseki status`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheStatus {
    /// Memory tier.
    pub l1: TierUsage,
    /// Disk tier (pinned and organic).
    pub l2: TierUsage,
    /// Bytes reserved by pins (cached or still to be staged).
    pub pinned_bytes: u64,
    /// Reads served from memory.
    pub l1_hits: u64,
    /// Reads served from disk.
    pub l2_hits: u64,
    /// Reads the cache could not serve.
    pub misses: u64,
    /// L2 files refused on read (corrupt, truncated, stale key) and deleted.
    pub corrupt_dropped: u64,
    /// Organic L2 writes skipped because the writer queue was full.
    pub l2_writes_skipped: u64,
    /// Pinned datasets.
    pub pins: Vec<PinInfo>,
}

/// What a pin call leaves to fetch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PinPlan {
    /// Chunks of the pin not in L2 yet, in request order, without duplicates.
    pub missing: Vec<ChunkId>,
    /// Bytes of the pin already in L2.
    pub cached_bytes: u64,
}

/// The outcome of [`NodeCache::verify`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    /// L2 chunks checked.
    pub checked: u64,
    /// Chunks whose file failed authentication or whose bytes failed the caller's check.
    pub bad: u64,
    /// Chunks dropped from L2 (bad ones and files gone from disk).
    pub dropped: u64,
}

struct L2 {
    key: Arc<CacheKey>,
    organic: Slru<ChunkId>,
    /// Pinned chunks whose file is in L2, with their sizes.
    pinned_present: HashMap<ChunkId, u64>,
    pinned_present_bytes: u64,
    pins: PinTable,
}

impl L2 {
    fn holds(&self, id: &ChunkId) -> bool {
        self.pinned_present.contains_key(id) || self.organic.contains(id)
    }

    /// Resizes the organic share after pins changed; returns the evicted chunks.
    fn fit_organic(&mut self, disk_bytes: u64) -> Vec<(ChunkId, u64)> {
        let share = disk_bytes.saturating_sub(self.pins.pinned_bytes());
        self.organic.set_capacity(share);
        self.organic.shrink_to(share)
    }

    fn mark_pinned_present(&mut self, id: ChunkId, size: u64) {
        if self.pinned_present.insert(id, size).is_none() {
            self.pinned_present_bytes += size;
        }
    }

    fn forget(&mut self, id: &ChunkId) {
        if let Some(size) = self.pinned_present.remove(id) {
            self.pinned_present_bytes -= size;
        }
        self.organic.remove(id);
    }
}

#[derive(Default)]
struct Counters {
    l1_hits: AtomicU64,
    l2_hits: AtomicU64,
    misses: AtomicU64,
    corrupt_dropped: AtomicU64,
    l2_writes_skipped: AtomicU64,
}

struct Shared {
    files: DiskFiles,
    disk_bytes: u64,
    l2: Mutex<L2>,
    counters: Counters,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, L2> {
        self.l2
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn delete_files(&self, evicted: &[(ChunkId, u64)]) {
        for (id, _) in evicted {
            self.files.remove(id);
        }
    }

    /// Drops `id` from L2 after a failed read, unless the key changed meanwhile.
    fn drop_unreadable(&self, id: &ChunkId, generation: u64, failure: &ReadFailure) {
        let mut l2 = self.lock();
        if l2.key.generation() != generation {
            return;
        }
        l2.forget(id);
        self.files.remove(id);
        self.counters
            .corrupt_dropped
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(chunk = %id, %failure, "L2 cache file refused and dropped; the chunk will be refetched");
    }

    /// Writes an organic chunk to L2 (the writer thread's work).
    fn write_organic(&self, id: ChunkId, plaintext: &[u8]) {
        let key = {
            let l2 = self.lock();
            if l2.holds(&id) {
                return;
            }
            Arc::clone(&l2.key)
        };
        if let Err(error) = self.files.write(&key, &id, plaintext) {
            tracing::warn!(chunk = %id, %error, "L2 cache write failed; the chunk stays in memory only");
            return;
        }
        let mut l2 = self.lock();
        if l2.key.generation() != key.generation() {
            self.files.remove(&id);
            return;
        }
        let size = plaintext.len() as u64;
        if l2.pins.is_pinned(&id) {
            l2.mark_pinned_present(id, size);
            return;
        }
        let evicted = l2.organic.insert(id, size);
        drop(l2);
        self.delete_files(&evicted);
    }
}

/// The node's chunk cache.
pub struct NodeCache {
    l1: MemoryChunkCache,
    shared: Arc<Shared>,
    writes: SyncSender<(ChunkId, Bytes)>,
}

impl NodeCache {
    /// Opens the cache: discards any earlier L2 files (their key died with the process that
    /// wrote them) and makes a fresh in-memory key.
    pub fn open(config: NodeCacheConfig) -> Result<NodeCache, CacheError> {
        Self::open_with_correlation(config, CORRELATION_WINDOW)
    }

    /// [`NodeCache::open`] with a chosen correlation window (see the segmented LRU).
    pub fn open_with_correlation(
        config: NodeCacheConfig,
        correlation: Duration,
    ) -> Result<NodeCache, CacheError> {
        if config.memory_bytes == 0 || config.disk_bytes == 0 {
            return Err(CacheError::Config(
                "memory and disk sizes must be above zero".to_owned(),
            ));
        }
        if config.disk_dir.parent().is_none() {
            return Err(CacheError::Config(format!(
                "{} cannot be the cache directory: its contents are deleted at start",
                config.disk_dir.display()
            )));
        }
        let shared = Arc::new(Shared {
            files: DiskFiles::open(&config.disk_dir)?,
            disk_bytes: config.disk_bytes,
            l2: Mutex::new(L2 {
                key: Arc::new(CacheKey::generate(1)?),
                organic: Slru::new(config.disk_bytes, correlation),
                pinned_present: HashMap::new(),
                pinned_present_bytes: 0,
                pins: PinTable::default(),
            }),
            counters: Counters::default(),
        });
        let (writes, queue) = sync_channel(L2_WRITE_QUEUE);
        let writer_shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("kiseki-l2-writer".to_owned())
            .spawn(move || write_organic_chunks(&writer_shared, &queue))
            .map_err(|source| CacheError::Io {
                path: config.disk_dir.clone(),
                source,
            })?;
        Ok(NodeCache {
            l1: MemoryChunkCache::with_correlation(config.memory_bytes, correlation),
            shared,
            writes,
        })
    }

    /// Pins `chunks` (id, plaintext length) for `job` under `dataset`, all or nothing; a
    /// refusal says what is needed, free and pinned by whom. Re-pinning is idempotent.
    /// Returns the chunks still to fetch (then [`NodeCache::store_pinned`] each).
    pub fn pin(
        &self,
        job: &str,
        dataset: &str,
        chunks: &[(ChunkId, u64)],
    ) -> Result<PinPlan, CacheError> {
        let shared = &self.shared;
        let mut l2 = shared.lock();
        let newly_pinned = l2
            .pins
            .pin(job, dataset, chunks, shared.disk_bytes)
            .map_err(|refused| CacheError::PinDoesNotFit {
                needed: refused.needed,
                free: refused.free,
                pinned_by: refused.pinned_by,
            })?;
        for (id, size) in newly_pinned {
            if l2.organic.remove(&id).is_some() {
                l2.mark_pinned_present(id, size);
            }
        }
        let evicted = l2.fit_organic(shared.disk_bytes);
        let mut plan = PinPlan::default();
        let mut seen = HashSet::new();
        for (id, size) in chunks {
            if !seen.insert(*id) {
                continue;
            }
            if l2.pinned_present.contains_key(id) {
                plan.cached_bytes += size;
            } else {
                plan.missing.push(*id);
            }
        }
        drop(l2);
        shared.delete_files(&evicted);
        Ok(plan)
    }

    /// Keeps the plaintext of pinned chunk `id` in L2. Blocking file I/O.
    pub fn store_pinned(&self, id: ChunkId, plaintext: &[u8]) -> Result<(), CacheError> {
        self.store_pinned_with(id, plaintext.len(), |out: &mut [u8]| {
            out[..plaintext.len()].copy_from_slice(plaintext);
            Ok::<(), CacheError>(())
        })
    }

    /// Keeps pinned chunk `id` (`plaintext_len` bytes) in L2, where `fill` writes the plaintext
    /// straight into the file's write buffer (see [`DiskFiles::write_with`]): staging opens the
    /// server's frame there, so the bytes are copied once on their way to disk. `fill` is not
    /// called when the chunk is already present. Blocking file I/O.
    pub fn store_pinned_with<E: From<CacheError>>(
        &self,
        id: ChunkId,
        plaintext_len: usize,
        fill: impl FnOnce(&mut [u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let shared = &self.shared;
        let key = {
            let l2 = shared.lock();
            if !l2.pins.is_pinned(&id) {
                return Err(CacheError::NotPinned(id).into());
            }
            if l2.pinned_present.contains_key(&id) {
                return Ok(());
            }
            Arc::clone(&l2.key)
        };
        shared.files.write_with(&key, &id, plaintext_len, fill)?;
        let mut l2 = shared.lock();
        if l2.key.generation() == key.generation() && l2.pins.is_pinned(&id) {
            l2.organic.remove(&id);
            l2.mark_pinned_present(id, plaintext_len as u64);
        } else if !l2.holds(&id) {
            shared.files.remove(&id);
        }
        Ok(())
    }

    /// Releases `job`'s pin on `dataset`, or on all its datasets. Chunks no longer pinned stay
    /// in L2 as organic data (evictable).
    pub fn release(&self, job: &str, dataset: Option<&str>) -> Vec<Released> {
        let shared = &self.shared;
        let mut l2 = shared.lock();
        let (released, unpinned) = l2.pins.release(job, dataset);
        let mut evicted = l2.fit_organic(shared.disk_bytes);
        for id in unpinned {
            if let Some(size) = l2.pinned_present.remove(&id) {
                l2.pinned_present_bytes -= size;
                evicted.extend(l2.organic.insert(id, size));
            }
        }
        drop(l2);
        shared.delete_files(&evicted);
        released
    }

    /// Drops `ids` from both tiers unless pinned; returns the bytes freed.
    pub fn evict(&self, ids: &[ChunkId]) -> u64 {
        let shared = &self.shared;
        let mut freed = 0;
        let mut removed = Vec::new();
        {
            let mut l2 = shared.lock();
            for id in ids {
                if l2.pins.is_pinned(id) {
                    continue;
                }
                freed += self.l1.remove(id);
                if let Some(size) = l2.organic.remove(id) {
                    freed += size;
                    removed.push((*id, size));
                }
            }
        }
        shared.delete_files(&removed);
        freed
    }

    /// Makes every L2 file unreadable (new key) and deletes them all, and empties L1. Pin
    /// records stay: their datasets need staging again.
    pub fn wipe(&self) -> Result<(), CacheError> {
        let shared = &self.shared;
        let mut l2 = shared.lock();
        let generation = l2.key.generation() + 1;
        l2.key = Arc::new(CacheKey::generate(generation)?);
        l2.organic.clear();
        l2.pinned_present.clear();
        l2.pinned_present_bytes = 0;
        self.l1.clear();
        shared.files.clear()
    }

    /// Reads every L2 chunk back and checks it with `check` (e.g. against its content
    /// address); drops those that fail.
    pub fn verify(&self, check: &(dyn Fn(&ChunkId, &[u8]) -> bool + Sync)) -> VerifyReport {
        let shared = &self.shared;
        let (key, ids) = {
            let l2 = shared.lock();
            let ids: Vec<ChunkId> = l2
                .pinned_present
                .keys()
                .chain(l2.organic.keys())
                .copied()
                .collect();
            (Arc::clone(&l2.key), ids)
        };
        let mut report = VerifyReport::default();
        for id in ids {
            report.checked += 1;
            let failure = match shared.files.read(&key, &id) {
                Ok(bytes) if check(&id, &bytes) => continue,
                Ok(_) => ReadFailure::Rejected("content address mismatch".to_owned()),
                Err(failure) => failure,
            };
            if matches!(failure, ReadFailure::Rejected(_)) {
                report.bad += 1;
            }
            report.dropped += 1;
            self.l1.remove(&id);
            shared.drop_unreadable(&id, key.generation(), &failure);
        }
        report
    }

    /// Usage, hit counts and pins.
    pub fn status(&self) -> CacheStatus {
        let shared = &self.shared;
        let counters = &shared.counters;
        let (l1_bytes, l1_capacity) = self.l1.usage();
        let l2 = shared.lock();
        let pins = l2
            .pins
            .holders()
            .into_iter()
            .map(|holder| {
                let (mut chunks, mut cached_chunks) = (0, 0);
                for id in l2.pins.chunks_of(&holder.dataset) {
                    chunks += 1;
                    if l2.pinned_present.contains_key(id) {
                        cached_chunks += 1;
                    }
                }
                PinInfo {
                    dataset: holder.dataset,
                    jobs: holder.jobs,
                    bytes: holder.bytes,
                    chunks,
                    cached_chunks,
                }
            })
            .collect();
        CacheStatus {
            l1: TierUsage {
                bytes: l1_bytes,
                capacity: l1_capacity,
            },
            l2: TierUsage {
                bytes: l2.organic.bytes() + l2.pinned_present_bytes,
                capacity: shared.disk_bytes,
            },
            pinned_bytes: l2.pins.pinned_bytes(),
            l1_hits: counters.l1_hits.load(Ordering::Relaxed),
            l2_hits: counters.l2_hits.load(Ordering::Relaxed),
            misses: counters.misses.load(Ordering::Relaxed),
            corrupt_dropped: counters.corrupt_dropped.load(Ordering::Relaxed),
            l2_writes_skipped: counters.l2_writes_skipped.load(Ordering::Relaxed),
            pins,
        }
    }

    /// Writes `plaintext` of `id` into L2 as organic data now (blocking file I/O), not through
    /// the bounded background queue and not into L1: organic staging (`kiseki stage --mode
    /// organic`) warms L2 without skipping chunks or flushing L1's hot set.
    pub fn store_organic(&self, id: ChunkId, plaintext: &[u8]) {
        self.shared.write_organic(id, plaintext);
    }

    /// Queues chunks L1 let go of for their organic L2 write (those L2 has are skipped).
    fn keep_in_l2(&self, victims: Vec<(ChunkId, Bytes)>) {
        for (id, plaintext) in victims {
            if self.shared.lock().holds(&id) {
                continue;
            }
            if let Err(TrySendError::Full(_)) = self.writes.try_send((id, plaintext)) {
                self.shared
                    .counters
                    .l2_writes_skipped
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Where chunk `id`'s L2 file lives (tests and `kiseki cache` diagnostics).
    pub fn l2_path(&self, id: &ChunkId) -> PathBuf {
        self.shared.files.path(id)
    }

    /// The L2 directory.
    pub fn l2_dir(&self) -> PathBuf {
        self.shared.files.dir().to_path_buf()
    }
}

impl ChunkCache for NodeCache {
    fn get(&self, id: &ChunkId) -> Option<Bytes> {
        let counters = &self.shared.counters;
        if let Some(bytes) = self.l1.get(id) {
            counters.l1_hits.fetch_add(1, Ordering::Relaxed);
            return Some(bytes);
        }
        let key = {
            let mut l2 = self.shared.lock();
            let present = l2.pinned_present.contains_key(id) || l2.organic.touch(id);
            if !present {
                counters.misses.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            Arc::clone(&l2.key)
        };
        match self.shared.files.read(&key, id) {
            Ok(bytes) => {
                counters.l2_hits.fetch_add(1, Ordering::Relaxed);
                self.keep_in_l2(self.l1.insert_evicting(*id, bytes.clone()));
                Some(bytes)
            }
            Err(failure) => {
                self.shared.drop_unreadable(id, key.generation(), &failure);
                counters.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    fn insert(&self, id: ChunkId, plaintext: Bytes) {
        self.keep_in_l2(self.l1.insert_evicting(id, plaintext));
    }

    fn contains(&self, id: &ChunkId) -> bool {
        self.l1.contains(id) || self.shared.lock().holds(id)
    }

    fn memory_capacity(&self) -> u64 {
        self.l1.memory_capacity()
    }
}

fn write_organic_chunks(shared: &Shared, queue: &Receiver<(ChunkId, Bytes)>) {
    while let Ok((id, plaintext)) = queue.recv() {
        shared.write_organic(id, &plaintext);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn id(n: u16) -> ChunkId {
        let mut bytes = [0u8; 32];
        bytes[..2].copy_from_slice(&n.to_be_bytes());
        ChunkId(bytes)
    }

    fn chunk(n: u16, size: usize) -> Bytes {
        Bytes::from(vec![(n % 251) as u8; size])
    }

    fn open(memory: u64, disk: u64) -> (tempfile::TempDir, NodeCache) {
        let dir = tempfile::tempdir().unwrap();
        let config = NodeCacheConfig {
            memory_bytes: memory,
            disk_dir: dir.path().join("l2"),
            disk_bytes: disk,
        };
        let cache = NodeCache::open_with_correlation(config, Duration::ZERO).unwrap();
        (dir, cache)
    }

    fn wait_for_l2(cache: &NodeCache, n: u16) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cache.shared.lock().holds(&id(n)) {
            assert!(Instant::now() < deadline, "chunk {n} never reached L2");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn organic_chunks_move_to_disk_and_are_served_from_there() {
        let (_dir, cache) = open(100, 1000);
        cache.insert(id(1), chunk(1, 80));
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            !cache.l2_path(&id(1)).exists(),
            "a chunk L1 keeps costs no file"
        );
        cache.insert(id(2), chunk(2, 80)); // pushes chunk 1 out of L1, into L2
        wait_for_l2(&cache, 1);
        let l1_only = cache.status().l1;
        assert!(l1_only.bytes <= 100);
        assert_eq!(cache.get(&id(1)), Some(chunk(1, 80)));
        let status = cache.status();
        assert_eq!(status.l2_hits, 1, "{status:?}");
        let on_disk = std::fs::read(cache.l2_path(&id(1))).unwrap();
        assert!(!on_disk.windows(80).any(|w| w == &chunk(1, 80)[..]));
    }

    #[test]
    fn pinned_chunks_stay_under_organic_pressure_until_released() {
        let (_dir, cache) = open(10, 300);
        let plan = cache
            .pin("job-1", "/ds", &[(id(1), 100), (id(2), 100)])
            .unwrap();
        assert_eq!(plan.missing, vec![id(1), id(2)]);
        cache.store_pinned(id(1), &chunk(1, 100)).unwrap();
        cache.store_pinned(id(2), &chunk(2, 100)).unwrap();
        for n in 10..40 {
            cache.insert(id(n), chunk(n, 90));
        }
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(cache.get(&id(1)), Some(chunk(1, 100)));
        assert_eq!(cache.get(&id(2)), Some(chunk(2, 100)));
        let status = cache.status();
        assert!(status.l2.bytes <= 300, "{status:?}");
        assert_eq!(status.pins[0].cached_chunks, 2);

        let again = cache
            .pin("job-1", "/ds", &[(id(1), 100), (id(2), 100)])
            .unwrap();
        assert!(
            again.missing.is_empty() && again.cached_bytes == 200,
            "restaging skips"
        );

        cache.release("job-1", None);
        assert_eq!(cache.status().pinned_bytes, 0);
        assert!(
            cache.get(&id(1)).is_some(),
            "released data stays cached organically"
        );
    }

    #[test]
    fn a_pin_larger_than_the_disk_tier_is_refused_and_pins_nothing() {
        let (_dir, cache) = open(10, 150);
        cache.pin("a", "/one", &[(id(1), 100)]).unwrap();
        let error = cache
            .pin("b", "/two", &[(id(2), 40), (id(3), 40)])
            .unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("80 B") && message.contains("50 B"),
            "{message}"
        );
        assert!(
            message.contains("/one") && message.contains('a'),
            "{message}"
        );
        assert_eq!(cache.status().pins.len(), 1);
        assert!(matches!(
            cache.store_pinned(id(2), &chunk(2, 40)),
            Err(CacheError::NotPinned(_))
        ));
    }

    #[test]
    fn a_corrupt_l2_file_is_dropped_not_served() {
        let (_dir, cache) = open(10, 1000);
        cache.pin("j", "/ds", &[(id(1), 100)]).unwrap();
        cache.store_pinned(id(1), &chunk(1, 100)).unwrap();
        let path = cache.l2_path(&id(1));
        let mut raw = std::fs::read(&path).unwrap();
        raw[60] ^= 0x40;
        std::fs::write(&path, raw).unwrap();
        assert_eq!(cache.get(&id(1)), None);
        assert!(!path.exists());
        let status = cache.status();
        assert_eq!(status.corrupt_dropped, 1);
        assert_eq!(
            status.pins[0].cached_chunks, 0,
            "the pin needs the chunk again"
        );
        let plan = cache.pin("j", "/ds", &[(id(1), 100)]).unwrap();
        assert_eq!(plan.missing, vec![id(1)]);
        cache.store_pinned(id(1), &chunk(1, 100)).unwrap();
        assert_eq!(cache.get(&id(1)), Some(chunk(1, 100)));
    }

    #[test]
    fn a_wipe_makes_saved_files_unreadable() {
        let (dir, cache) = open(10, 1000);
        cache.pin("j", "/ds", &[(id(1), 100)]).unwrap();
        cache.store_pinned(id(1), &chunk(1, 100)).unwrap();
        let path = cache.l2_path(&id(1));
        let saved = dir.path().join("saved");
        std::fs::copy(&path, &saved).unwrap();
        cache.wipe().unwrap();
        assert!(!path.exists());
        assert_eq!(cache.status().pins[0].cached_chunks, 0);
        // Restoring the old file does not bring the data back: its key is gone.
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::copy(&saved, &path).unwrap();
        cache.shared.lock().mark_pinned_present(id(1), 100);
        assert_eq!(cache.get(&id(1)), None);
        assert_eq!(cache.status().corrupt_dropped, 1);
    }

    #[test]
    fn verify_drops_chunks_that_fail_the_callers_check() {
        let (_dir, cache) = open(10, 1000);
        cache.pin("j", "/ds", &[(id(1), 10), (id(2), 10)]).unwrap();
        cache.store_pinned(id(1), &chunk(1, 10)).unwrap();
        cache.store_pinned(id(2), &chunk(2, 10)).unwrap();
        let report = cache.verify(&|chunk_id, bytes| *chunk_id != id(2) && bytes.len() == 10);
        assert_eq!((report.checked, report.bad, report.dropped), (2, 1, 1));
        assert!(cache.get(&id(2)).is_none());
        assert!(cache.get(&id(1)).is_some());
    }

    #[test]
    fn evict_spares_pinned_chunks() {
        let (_dir, cache) = open(15, 1000);
        cache.pin("j", "/ds", &[(id(1), 10)]).unwrap();
        cache.store_pinned(id(1), &chunk(1, 10)).unwrap();
        cache.insert(id(2), chunk(2, 10));
        cache.insert(id(3), chunk(3, 10)); // pushes chunk 2 into L2
        wait_for_l2(&cache, 2);
        assert!(cache.get(&id(2)).is_some()); // and back into L1
        let freed = cache.evict(&[id(1), id(2)]);
        assert_eq!(freed, 20, "L1 and L2 copies of the organic chunk");
        assert!(cache.contains(&id(1)) && !cache.contains(&id(2)));
    }
}
