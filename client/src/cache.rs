//! The client's chunk cache: verified, decrypted chunks by content address. A chunk id names
//! its bytes forever (content addressing), so a cached chunk never goes stale; only capacity
//! evicts. This is the small in-memory cache of the native client; the node cache (L1 memory,
//! L2 NVMe, pins) implements the same trait later.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use bytes::Bytes;
use kiseki_types::ChunkId;

/// A cache of plaintext chunks by id.
pub trait ChunkCache: Send + Sync + 'static {
    /// The cached plaintext of `id`.
    fn get(&self, id: &ChunkId) -> Option<Bytes>;
    /// Keeps `plaintext` of `id`, evicting as needed.
    fn insert(&self, id: ChunkId, plaintext: Bytes);
    /// Whether `id` is cached (without touching its recency).
    fn contains(&self, id: &ChunkId) -> bool;
}

struct Lru {
    entries: HashMap<ChunkId, (Bytes, u64)>,
    order: BTreeMap<u64, ChunkId>,
    bytes: usize,
    tick: u64,
}

/// A least-recently-used cache bounded in bytes.
pub struct MemoryChunkCache {
    capacity_bytes: usize,
    inner: Mutex<Lru>,
}

impl MemoryChunkCache {
    /// A cache holding at most `capacity_bytes` of plaintext.
    pub fn new(capacity_bytes: usize) -> Self {
        MemoryChunkCache {
            capacity_bytes,
            inner: Mutex::new(Lru {
                entries: HashMap::new(),
                order: BTreeMap::new(),
                bytes: 0,
                tick: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lru> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl ChunkCache for MemoryChunkCache {
    fn get(&self, id: &ChunkId) -> Option<Bytes> {
        let mut lru = self.lock();
        lru.tick += 1;
        let tick = lru.tick;
        let (bytes, old) = {
            let entry = lru.entries.get_mut(id)?;
            let old = entry.1;
            entry.1 = tick;
            (entry.0.clone(), old)
        };
        lru.order.remove(&old);
        lru.order.insert(tick, *id);
        Some(bytes)
    }

    fn insert(&self, id: ChunkId, plaintext: Bytes) {
        if plaintext.len() > self.capacity_bytes {
            return;
        }
        let mut lru = self.lock();
        lru.tick += 1;
        let tick = lru.tick;
        if let Some((old, old_tick)) = lru.entries.insert(id, (plaintext.clone(), tick)) {
            lru.bytes -= old.len();
            lru.order.remove(&old_tick);
        }
        lru.bytes += plaintext.len();
        lru.order.insert(tick, id);
        while lru.bytes > self.capacity_bytes {
            let Some((_, victim)) = lru.order.pop_first() else {
                break;
            };
            if let Some((bytes, _)) = lru.entries.remove(&victim) {
                lru.bytes -= bytes.len();
            }
        }
    }

    fn contains(&self, id: &ChunkId) -> bool {
        self.lock().entries.contains_key(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_recently_used_chunks_go_first() {
        let cache = MemoryChunkCache::new(10);
        let id = |n: u8| ChunkId([n; 32]);
        cache.insert(id(1), Bytes::from(vec![0; 4]));
        cache.insert(id(2), Bytes::from(vec![0; 4]));
        assert!(cache.get(&id(1)).is_some());
        cache.insert(id(3), Bytes::from(vec![0; 4]));
        assert!(cache.contains(&id(1)) && cache.contains(&id(3)));
        assert!(
            !cache.contains(&id(2)),
            "the least recently used chunk is evicted"
        );
        cache.insert(id(4), Bytes::from(vec![0; 11]));
        assert!(
            !cache.contains(&id(4)),
            "a chunk larger than the cache is not kept"
        );
    }
}
