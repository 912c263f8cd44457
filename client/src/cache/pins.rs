//! Pins: which datasets hold which chunks for which jobs. A dataset stays pinned while any job
//! holds it; a chunk stays pinned while any pinned dataset lists it, and counts once however
//! many datasets share it. Pinning is all-or-nothing against the L2 capacity.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use kiseki_types::ChunkId;
use serde::{Deserialize, Serialize};

/// A dataset pinned by some jobs, as reported when a pin does not fit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinHolder {
    /// The dataset (a namespace path).
    pub dataset: String,
    /// The jobs holding it.
    pub jobs: Vec<String>,
    /// Bytes it pins.
    pub bytes: u64,
}

/// What one release did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Released {
    /// The dataset.
    pub dataset: String,
    /// The job that released it.
    pub job: String,
    /// Jobs still holding the dataset (empty: it is no longer pinned).
    pub still_pinned_by: Vec<String>,
}

/// A pin refused because it does not fit; nothing was pinned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DoesNotFit {
    pub needed: u64,
    pub free: u64,
    pub pinned_by: Vec<PinHolder>,
}

#[derive(Default)]
struct DatasetPin {
    jobs: BTreeSet<String>,
    chunks: HashSet<ChunkId>,
    bytes: u64,
}

struct ChunkPin {
    size: u64,
    datasets: u32,
}

/// The pin table of one node cache.
#[derive(Default)]
pub(crate) struct PinTable {
    datasets: BTreeMap<String, DatasetPin>,
    chunks: HashMap<ChunkId, ChunkPin>,
    pinned_bytes: u64,
}

impl PinTable {
    /// Bytes of all pinned chunks (cached or not yet).
    pub(crate) fn pinned_bytes(&self) -> u64 {
        self.pinned_bytes
    }

    pub(crate) fn is_pinned(&self, id: &ChunkId) -> bool {
        self.chunks.contains_key(id)
    }

    /// Pins `chunks` for `job` under `dataset` within `capacity` bytes of pins. Returns the
    /// chunks that became pinned by this call; on refusal nothing changes.
    pub(crate) fn pin(
        &mut self,
        job: &str,
        dataset: &str,
        chunks: &[(ChunkId, u64)],
        capacity: u64,
    ) -> Result<Vec<(ChunkId, u64)>, DoesNotFit> {
        let known = self.datasets.get(dataset);
        let mut fresh: HashMap<ChunkId, u64> = HashMap::new();
        for (id, size) in chunks {
            if known.is_some_and(|pin| pin.chunks.contains(id)) {
                continue;
            }
            fresh.insert(*id, *size);
        }
        let needed: u64 = fresh
            .iter()
            .filter(|(id, _)| !self.chunks.contains_key(id))
            .map(|(_, size)| size)
            .sum();
        let free = capacity.saturating_sub(self.pinned_bytes);
        if needed > free {
            return Err(DoesNotFit {
                needed,
                free,
                pinned_by: self.holders(),
            });
        }
        let mut newly_pinned = Vec::new();
        let pin = self.datasets.entry(dataset.to_owned()).or_default();
        pin.jobs.insert(job.to_owned());
        for (id, size) in fresh {
            pin.chunks.insert(id);
            pin.bytes += size;
            let entry = self
                .chunks
                .entry(id)
                .or_insert(ChunkPin { size, datasets: 0 });
            entry.datasets += 1;
            if entry.datasets == 1 {
                self.pinned_bytes += size;
                newly_pinned.push((id, size));
            }
        }
        Ok(newly_pinned)
    }

    /// Releases `job`'s pin on `dataset` (or on every dataset when `None`). Returns what was
    /// released and the chunks no longer pinned by anything.
    pub(crate) fn release(
        &mut self,
        job: &str,
        dataset: Option<&str>,
    ) -> (Vec<Released>, Vec<ChunkId>) {
        let names: Vec<String> = self
            .datasets
            .iter()
            .filter(|(name, pin)| dataset.is_none_or(|d| d == *name) && pin.jobs.contains(job))
            .map(|(name, _)| name.clone())
            .collect();
        let mut released = Vec::new();
        let mut unpinned = Vec::new();
        for name in names {
            let Some(pin) = self.datasets.get_mut(&name) else {
                continue;
            };
            pin.jobs.remove(job);
            let still_pinned_by: Vec<String> = pin.jobs.iter().cloned().collect();
            if still_pinned_by.is_empty() {
                if let Some(pin) = self.datasets.remove(&name) {
                    for id in pin.chunks {
                        self.unref(id, &mut unpinned);
                    }
                }
            }
            released.push(Released {
                dataset: name,
                job: job.to_owned(),
                still_pinned_by,
            });
        }
        (released, unpinned)
    }

    fn unref(&mut self, id: ChunkId, unpinned: &mut Vec<ChunkId>) {
        if let Some(entry) = self.chunks.get_mut(&id) {
            entry.datasets -= 1;
            if entry.datasets == 0 {
                self.pinned_bytes -= entry.size;
                self.chunks.remove(&id);
                unpinned.push(id);
            }
        }
    }

    /// Every pinned dataset with its jobs and bytes.
    pub(crate) fn holders(&self) -> Vec<PinHolder> {
        self.datasets
            .iter()
            .map(|(dataset, pin)| PinHolder {
                dataset: dataset.clone(),
                jobs: pin.jobs.iter().cloned().collect(),
                bytes: pin.bytes,
            })
            .collect()
    }

    /// The chunks `dataset` pins.
    pub(crate) fn chunks_of(&self, dataset: &str) -> impl Iterator<Item = &ChunkId> {
        self.datasets
            .get(dataset)
            .into_iter()
            .flat_map(|pin| pin.chunks.iter())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn id(n: u8) -> ChunkId {
        ChunkId([n; 32])
    }

    #[test]
    fn the_first_release_keeps_a_dataset_two_jobs_pinned() {
        let mut pins = PinTable::default();
        let chunks = [(id(1), 10), (id(2), 10)];
        assert_eq!(pins.pin("job-1", "/ds", &chunks, 100).unwrap().len(), 2);
        assert!(pins.pin("job-2", "/ds", &chunks, 100).unwrap().is_empty());
        assert_eq!(pins.pinned_bytes(), 20);

        let (released, unpinned) = pins.release("job-1", None);
        assert_eq!(released[0].still_pinned_by, vec!["job-2".to_owned()]);
        assert!(unpinned.is_empty() && pins.is_pinned(&id(1)));

        let (released, unpinned) = pins.release("job-2", Some("/ds"));
        assert!(released[0].still_pinned_by.is_empty());
        assert_eq!(unpinned.len(), 2);
        assert_eq!(pins.pinned_bytes(), 0);
        assert!(
            pins.release("job-2", None).0.is_empty(),
            "releasing twice is a no-op"
        );
    }

    #[test]
    fn a_pin_that_does_not_fit_is_refused_whole_with_the_numbers() {
        let mut pins = PinTable::default();
        pins.pin("a", "/small", &[(id(1), 60)], 100).unwrap();
        let refused = pins
            .pin("b", "/big", &[(id(2), 30), (id(3), 30)], 100)
            .unwrap_err();
        assert_eq!((refused.needed, refused.free), (60, 40));
        assert_eq!(refused.pinned_by[0].dataset, "/small");
        assert_eq!(refused.pinned_by[0].jobs, vec!["a".to_owned()]);
        assert!(!pins.is_pinned(&id(2)) && !pins.is_pinned(&id(3)));
        assert_eq!(pins.holders().len(), 1);
    }

    #[test]
    fn shared_chunks_count_once_and_stay_while_any_dataset_holds_them() {
        let mut pins = PinTable::default();
        pins.pin("a", "/x", &[(id(1), 50), (id(2), 50)], 100)
            .unwrap();
        assert!(pins.pin("a", "/y", &[(id(2), 50)], 100).is_ok());
        assert_eq!(pins.pinned_bytes(), 100);
        let (_, unpinned) = pins.release("a", Some("/x"));
        assert_eq!(unpinned, vec![id(1)]);
        assert!(pins.is_pinned(&id(2)));
    }
}
