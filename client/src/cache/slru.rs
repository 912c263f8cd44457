//! A segmented LRU index (keys and their sizes, no values), the replacement policy of both cache
//! tiers. New keys enter a probation segment; a key hit again after the correlation window moves
//! to the protected segment. Eviction takes probation's least recent key first, so a one-pass
//! stream larger than the cache only churns probation and leaves the hot set alone.
//!
//! Hits within the correlation window of the key's arrival do not promote it: a sequential
//! reader touches a chunk several times in a burst (one FUSE read per MiB of a multi-MiB chunk),
//! and that burst is one use, not reuse.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::time::{Duration, Instant};

/// The protected segment's share of the capacity, in percent.
const PROTECTED_PERCENT: u64 = 80;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Segment {
    Probation,
    Protected,
}

struct Entry {
    segment: Segment,
    tick: u64,
    size: u64,
    arrived: Instant,
}

/// The index; the caller stores the values and acts on what [`Slru::insert`] evicts.
pub(crate) struct Slru<K> {
    capacity: u64,
    correlation: Duration,
    entries: HashMap<K, Entry>,
    probation: BTreeMap<u64, K>,
    protected: BTreeMap<u64, K>,
    protected_bytes: u64,
    bytes: u64,
    tick: u64,
}

impl<K: Hash + Eq + Copy> Slru<K> {
    /// An index holding at most `capacity` bytes; hits within `correlation` of a key's arrival
    /// do not promote it.
    pub(crate) fn new(capacity: u64, correlation: Duration) -> Self {
        Slru {
            capacity,
            correlation,
            entries: HashMap::new(),
            probation: BTreeMap::new(),
            protected: BTreeMap::new(),
            protected_bytes: 0,
            bytes: 0,
            tick: 0,
        }
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }

    pub(crate) fn contains(&self, key: &K) -> bool {
        self.entries.contains_key(key)
    }

    /// Every indexed key, in no particular order.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &K> {
        self.entries.keys()
    }

    /// Changes the capacity (the caller evicts with [`Slru::shrink_to`]).
    pub(crate) fn set_capacity(&mut self, capacity: u64) {
        self.capacity = capacity;
    }

    /// Records a hit on `key`; false when the key is not indexed.
    pub(crate) fn touch(&mut self, key: &K) -> bool {
        self.tick += 1;
        let tick = self.tick;
        let Some(entry) = self.entries.get_mut(key) else {
            return false;
        };
        let old = (entry.segment, entry.tick);
        let promote =
            entry.segment == Segment::Probation && entry.arrived.elapsed() >= self.correlation;
        entry.tick = tick;
        if promote {
            entry.segment = Segment::Protected;
            self.protected_bytes += entry.size;
        }
        let segment = entry.segment;
        self.segment_mut(old.0).remove(&old.1);
        self.segment_mut(segment).insert(tick, *key);
        if promote {
            self.demote_overflow();
        }
        true
    }

    /// Indexes `key` of `size` bytes in probation and returns the keys evicted to make room. A
    /// key larger than the whole capacity is not indexed (and returned as evicted).
    pub(crate) fn insert(&mut self, key: K, size: u64) -> Vec<(K, u64)> {
        if self.entries.contains_key(&key) {
            self.touch(&key);
            return Vec::new();
        }
        if size > self.capacity {
            return vec![(key, size)];
        }
        self.tick += 1;
        let entry = Entry {
            segment: Segment::Probation,
            tick: self.tick,
            size,
            arrived: Instant::now(),
        };
        self.entries.insert(key, entry);
        self.probation.insert(self.tick, key);
        self.bytes += size;
        self.shrink_to(self.capacity)
    }

    /// Removes `key`; returns its size when it was indexed.
    pub(crate) fn remove(&mut self, key: &K) -> Option<u64> {
        let entry = self.entries.remove(key)?;
        self.segment_mut(entry.segment).remove(&entry.tick);
        self.bytes -= entry.size;
        if entry.segment == Segment::Protected {
            self.protected_bytes -= entry.size;
        }
        Some(entry.size)
    }

    /// Evicts until at most `limit` bytes are indexed; returns the evicted keys.
    pub(crate) fn shrink_to(&mut self, limit: u64) -> Vec<(K, u64)> {
        let mut evicted = Vec::new();
        while self.bytes > limit {
            let victim = match self.probation.first_key_value() {
                Some((_, key)) => *key,
                None => match self.protected.first_key_value() {
                    Some((_, key)) => *key,
                    None => break,
                },
            };
            if let Some(size) = self.remove(&victim) {
                evicted.push((victim, size));
            }
        }
        evicted
    }

    /// Drops every key.
    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.probation.clear();
        self.protected.clear();
        self.protected_bytes = 0;
        self.bytes = 0;
    }

    /// Moves the protected segment's least recent keys back to probation (as most recent there)
    /// while the segment is over its share.
    fn demote_overflow(&mut self) {
        let limit = (u128::from(self.capacity) * u128::from(PROTECTED_PERCENT) / 100) as u64;
        while self.protected_bytes > limit {
            let Some((_, key)) = self.protected.pop_first() else {
                break;
            };
            self.tick += 1;
            let tick = self.tick;
            if let Some(entry) = self.entries.get_mut(&key) {
                entry.segment = Segment::Probation;
                entry.tick = tick;
                self.protected_bytes -= entry.size;
                self.probation.insert(tick, key);
            }
        }
    }

    fn segment_mut(&mut self, segment: Segment) -> &mut BTreeMap<u64, K> {
        match segment {
            Segment::Probation => &mut self.probation,
            Segment::Protected => &mut self.protected,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_one_pass_stream_does_not_flush_the_hot_set() {
        let mut index = Slru::new(100, Duration::ZERO);
        for hot in 0..5u32 {
            assert!(index.insert(hot, 10).is_empty());
        }
        for hot in 0..5u32 {
            assert!(index.touch(&hot), "hot key {hot} is indexed");
        }
        // A stream of 1,000 keys, each used once, ten times the capacity.
        for cold in 1000..2000u32 {
            index.insert(cold, 10);
        }
        for hot in 0..5u32 {
            assert!(index.contains(&hot), "hot key {hot} survived the scan");
        }
        assert!(index.bytes() <= 100);
    }

    #[test]
    fn hits_within_the_correlation_window_do_not_promote() {
        let mut index = Slru::new(30, Duration::from_secs(3600));
        index.insert(1u32, 10);
        index.touch(&1);
        index.touch(&1);
        for cold in 100..110u32 {
            index.insert(cold, 10);
        }
        assert!(
            !index.contains(&1),
            "a burst of hits right after arrival is one use: the key stays evictable"
        );
    }

    #[test]
    fn the_protected_segment_keeps_to_its_share() {
        let mut index = Slru::new(100, Duration::ZERO);
        for key in 0..10u32 {
            index.insert(key, 10);
            index.touch(&key);
        }
        assert!(index.protected_bytes <= 80);
        assert_eq!(index.bytes(), 100);
        let evicted = index.insert(99, 10);
        assert_eq!(evicted.len(), 1, "one key makes room for the newcomer");
        assert!(index.contains(&99));
    }

    #[test]
    fn oversized_keys_are_refused_and_removal_frees_their_bytes() {
        let mut index = Slru::new(10, Duration::ZERO);
        assert_eq!(index.insert(1u32, 11), vec![(1, 11)]);
        assert!(!index.contains(&1));
        index.insert(2, 6);
        assert_eq!(index.remove(&2), Some(6));
        assert_eq!(index.bytes(), 0);
        assert_eq!(index.remove(&2), None);
    }
}
