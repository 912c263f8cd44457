//! L1: decrypted chunks in memory, bounded in bytes, replaced by the scan-resistant [`Slru`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use kiseki_types::ChunkId;

use super::slru::Slru;
use super::ChunkCache;

/// How long after a chunk's arrival further hits count as the same use (see [`Slru`]).
pub const CORRELATION_WINDOW: Duration = Duration::from_millis(500);

struct Inner {
    index: Slru<ChunkId>,
    chunks: HashMap<ChunkId, Bytes>,
}

/// A memory cache of plaintext chunks by id.
pub struct MemoryChunkCache {
    inner: Mutex<Inner>,
}

impl MemoryChunkCache {
    /// A cache holding at most `capacity_bytes` of plaintext.
    pub fn new(capacity_bytes: usize) -> Self {
        Self::with_correlation(capacity_bytes as u64, CORRELATION_WINDOW)
    }

    /// A cache whose hits within `correlation` of a chunk's arrival do not protect it.
    pub fn with_correlation(capacity_bytes: u64, correlation: Duration) -> Self {
        MemoryChunkCache {
            inner: Mutex::new(Inner {
                index: Slru::new(capacity_bytes, correlation),
                chunks: HashMap::new(),
            }),
        }
    }

    /// Bytes cached and the capacity.
    pub fn usage(&self) -> (u64, u64) {
        let inner = self.lock();
        (inner.index.bytes(), inner.index.capacity())
    }

    /// Drops chunk `id`; returns the bytes freed.
    pub fn remove(&self, id: &ChunkId) -> u64 {
        let mut inner = self.lock();
        inner.chunks.remove(id);
        inner.index.remove(id).unwrap_or(0)
    }

    /// Drops every chunk.
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.chunks.clear();
        inner.index.clear();
    }

    /// Caches `plaintext` as chunk `id`; returns the chunks this pushed out (with `id` itself
    /// when it is larger than the whole cache), for a tier below to keep.
    pub(crate) fn insert_evicting(&self, id: ChunkId, plaintext: Bytes) -> Vec<(ChunkId, Bytes)> {
        let mut inner = self.lock();
        let fresh = !inner.index.contains(&id);
        let evicted = inner.index.insert(id, plaintext.len() as u64);
        let mut victims = Vec::with_capacity(evicted.len());
        for (victim, _) in evicted {
            if victim == id {
                victims.push((id, plaintext.clone()));
            } else if let Some(bytes) = inner.chunks.remove(&victim) {
                victims.push((victim, bytes));
            }
        }
        if fresh && inner.index.contains(&id) {
            inner.chunks.insert(id, plaintext);
        }
        victims
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl ChunkCache for MemoryChunkCache {
    fn get(&self, id: &ChunkId) -> Option<Bytes> {
        let mut inner = self.lock();
        let bytes = inner.chunks.get(id)?.clone();
        inner.index.touch(id);
        Some(bytes)
    }

    fn insert(&self, id: ChunkId, plaintext: Bytes) {
        drop(self.insert_evicting(id, plaintext));
    }

    fn contains(&self, id: &ChunkId) -> bool {
        self.lock().chunks.contains_key(id)
    }

    fn memory_capacity(&self) -> u64 {
        self.lock().index.capacity()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn id(n: u16) -> ChunkId {
        let mut bytes = [0u8; 32];
        bytes[..2].copy_from_slice(&n.to_be_bytes());
        ChunkId(bytes)
    }

    #[test]
    fn chunks_come_back_until_evicted_and_oversized_ones_are_not_kept() {
        let cache = MemoryChunkCache::with_correlation(10, Duration::ZERO);
        cache.insert(id(1), Bytes::from(vec![1; 4]));
        cache.insert(id(2), Bytes::from(vec![2; 4]));
        assert_eq!(cache.get(&id(1)).as_deref(), Some(&[1u8; 4][..]));
        cache.insert(id(3), Bytes::from(vec![3; 4]));
        assert!(cache.contains(&id(1)) && cache.contains(&id(3)));
        assert!(!cache.contains(&id(2)), "the unused chunk is evicted first");
        cache.insert(id(4), Bytes::from(vec![0; 11]));
        assert!(!cache.contains(&id(4)), "a chunk larger than the cache");
        assert_eq!(cache.usage(), (8, 10));
    }

    #[test]
    fn what_an_insert_pushes_out_comes_back_to_the_caller() {
        let cache = MemoryChunkCache::with_correlation(10, Duration::ZERO);
        assert!(cache
            .insert_evicting(id(1), Bytes::from(vec![1; 4]))
            .is_empty());
        assert!(cache
            .insert_evicting(id(2), Bytes::from(vec![2; 4]))
            .is_empty());
        let pushed = cache.insert_evicting(id(3), Bytes::from(vec![3; 4]));
        assert_eq!(pushed, vec![(id(1), Bytes::from(vec![1; 4]))]);
        let oversized = cache.insert_evicting(id(4), Bytes::from(vec![4; 11]));
        assert_eq!(oversized, vec![(id(4), Bytes::from(vec![4; 11]))]);
        assert!(cache
            .insert_evicting(id(3), Bytes::from(vec![3; 4]))
            .is_empty());
    }

    #[test]
    fn a_streamed_read_larger_than_the_cache_keeps_the_hot_chunks() {
        let cache = MemoryChunkCache::with_correlation(64, Duration::ZERO);
        for hot in 0..4 {
            cache.insert(id(hot), Bytes::from(vec![7; 8]));
            cache.get(&id(hot));
        }
        for cold in 100..200 {
            cache.insert(id(cold), Bytes::from(vec![0; 8]));
        }
        for hot in 0..4 {
            assert!(cache.get(&id(hot)).is_some(), "hot chunk {hot} survived");
        }
    }
}
