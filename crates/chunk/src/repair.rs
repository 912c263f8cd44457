//! Rebuild and scrub of an [`ErasureChunkStore`]: find chunks whose fragments are missing (a lost
//! or replaced device) or corrupt, regenerate those fragments from the surviving ones and write
//! them back until every chunk has all its fragments again.
//!
//! Rebuild looks at which fragments exist (a directory listing per device) and reads fragments
//! only of chunks that miss some; scrub reads and verifies every fragment. Neither ever writes a
//! fragment it did not regenerate from `k` verified ones.
//!
//! A chunk whose fragments a repair wrote is noted (its full new layout: where every fragment
//! now is) in the store's placement journal, for the node to record in the shard log.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{self, StreamExt};
use kiseki_types::{ChunkId, TenantId};

use crate::ec::EcProfile;
use crate::erasure_store::{EcCounters, ErasureChunkStore, Gathered};
use crate::fragment::{FragmentHeader, FragmentKey};
use crate::{ChunkError, RecordedLayout};

/// Chunks repaired at the same time.
pub const REPAIR_CONCURRENCY_MAX: usize = 4;
/// Unrecoverable chunks a report names (the count is exact).
pub const REPORT_LOST_MAX: usize = 100;

/// What a rebuild or scrub found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RepairReport {
    /// Chunks looked at.
    pub chunks_scanned: u64,
    /// Chunks that had every fragment, verified (scrub) or present (rebuild).
    pub chunks_healthy: u64,
    /// Fragments read and verified.
    pub fragments_checked: u64,
    /// Fragments found missing.
    pub fragments_missing: u64,
    /// Fragments found corrupt.
    pub fragments_corrupt: u64,
    /// Fragments regenerated and written.
    pub fragments_rebuilt: u64,
    /// Bytes of fragments regenerated.
    pub bytes_rebuilt: u64,
    /// Chunks with fewer than `k` good fragments.
    pub chunks_unrecoverable: u64,
    /// Up to [`REPORT_LOST_MAX`] unrecoverable chunks and why.
    pub lost: Vec<(TenantId, ChunkId, String)>,
    /// Devices that could not be listed (unreachable).
    pub devices_unreachable: Vec<String>,
}

impl RepairReport {
    /// Whether everything was (or is now) at full redundancy.
    pub fn clean(&self) -> bool {
        self.fragments_missing == 0
            && self.fragments_corrupt == 0
            && self.chunks_unrecoverable == 0
            && self.devices_unreachable.is_empty()
    }

    fn merge(&mut self, chunk: ChunkOutcome) {
        self.chunks_scanned += 1;
        self.fragments_checked += chunk.checked;
        self.fragments_missing += chunk.missing;
        self.fragments_corrupt += chunk.corrupt;
        self.fragments_rebuilt += chunk.rebuilt;
        self.bytes_rebuilt += chunk.bytes;
        if chunk.missing == 0 && chunk.corrupt == 0 && chunk.lost.is_none() {
            self.chunks_healthy += 1;
        }
        if let Some(lost) = chunk.lost {
            self.chunks_unrecoverable += 1;
            if self.lost.len() < REPORT_LOST_MAX {
                self.lost.push(lost);
            }
        }
    }
}

#[derive(Default)]
struct ChunkOutcome {
    checked: u64,
    missing: u64,
    corrupt: u64,
    rebuilt: u64,
    bytes: u64,
    lost: Option<(TenantId, ChunkId, String)>,
}

/// For each chunk, which fragment indices exist and on which device (an index of `devices`).
type Inventory = BTreeMap<(TenantId, ChunkId), BTreeMap<u8, usize>>;

impl ErasureChunkStore {
    /// Regenerates every missing fragment (e.g. after a device was lost or replaced by an empty
    /// one) onto its placement device, or onto a spare when that device is unreachable.
    pub async fn rebuild(&self) -> Result<RepairReport, ChunkError> {
        self.repair(false).await
    }

    /// Reads and verifies every fragment, regenerating corrupt and missing ones from parity.
    pub async fn scrub(&self) -> Result<RepairReport, ChunkError> {
        self.repair(true).await
    }

    async fn inventory(&self, report: &mut RepairReport) -> Inventory {
        let lists =
            futures::future::join_all(self.devices.iter().map(|d| d.list_fragments())).await;
        let mut inventory = Inventory::new();
        for (position, (device, list)) in self.devices.iter().zip(lists).enumerate() {
            match list {
                Ok(keys) => {
                    for key in keys {
                        inventory
                            .entry((key.tenant, key.chunk))
                            .or_default()
                            .insert(key.index, position);
                    }
                }
                Err(error) => {
                    tracing::warn!(device = %device.device(), %error, "cannot list device");
                    report.devices_unreachable.push(device.device().to_string());
                }
            }
        }
        inventory
    }

    async fn repair(&self, verify: bool) -> Result<RepairReport, ChunkError> {
        let mut report = RepairReport::default();
        let inventory = self.inventory(&mut report).await;
        let counters = Arc::clone(&self.counters);
        counters
            .rebuild_chunks_total
            .store(inventory.len() as u64, Ordering::Relaxed);
        counters.rebuild_chunks_scanned.store(0, Ordering::Relaxed);
        let mut outcomes = stream::iter(inventory)
            .map(|((tenant, chunk), present)| async move {
                let outcome = self.repair_chunk(tenant, chunk, &present, verify).await;
                EcCounters::add(&self.counters.rebuild_chunks_scanned, 1);
                outcome
            })
            .buffer_unordered(REPAIR_CONCURRENCY_MAX);
        while let Some(outcome) = outcomes.next().await {
            report.merge(outcome?);
        }
        tracing::info!(?report, verify, "repair pass finished");
        Ok(report)
    }

    async fn repair_chunk(
        &self,
        tenant: TenantId,
        chunk: ChunkId,
        present: &BTreeMap<u8, usize>,
        verify: bool,
    ) -> Result<ChunkOutcome, ChunkError> {
        let mut outcome = ChunkOutcome::default();
        if !verify && self.all_listed(tenant, chunk, present).await {
            return Ok(outcome);
        }
        let _writing = self.lock_chunk(chunk).await;
        let gathered = match self.gather(tenant, chunk, verify).await {
            Ok((gathered, _)) => gathered,
            Err(ChunkError::NotFound { .. }) => return Ok(outcome),
            Err(error @ ChunkError::Corrupt { .. }) => {
                outcome.lost = Some((tenant, chunk, error.to_string()));
                EcCounters::add(&self.counters.chunks_unrecoverable, 1);
                return Ok(outcome);
            }
            Err(error) => return Err(error),
        };
        let n = gathered.profile.total_fragments();
        let listed_missing: Vec<usize> = (0..n)
            .filter(|&i| !present.contains_key(&(i as u8)))
            .collect();
        let bad: Vec<usize> = if verify {
            outcome.checked = gathered.fragments.iter().filter(|f| f.is_some()).count() as u64;
            EcCounters::add(&self.counters.scrub_fragments_checked, outcome.checked);
            (0..n)
                .filter(|&i| gathered.fragments[i].is_none() && present.contains_key(&(i as u8)))
                .collect()
        } else {
            Vec::new()
        };
        outcome.missing = listed_missing.len() as u64;
        outcome.corrupt = bad.len() as u64;
        let mut todo = listed_missing;
        todo.extend(bad);
        if todo.is_empty() {
            return Ok(outcome);
        }
        let valid = gathered.fragments.iter().filter(|f| f.is_some()).count();
        let gathered = if valid < gathered.profile.data_fragments() {
            // Rebuild read only the first positions: read everything before giving up.
            self.gather(tenant, chunk, true).await?.0
        } else {
            gathered
        };
        if gathered.fragments.iter().filter(|f| f.is_some()).count()
            < gathered.profile.data_fragments()
        {
            let error = Self::lost(tenant, chunk, &gathered);
            tracing::error!(%error, "chunk cannot be repaired");
            outcome.lost = Some((tenant, chunk, error.to_string()));
            EcCounters::add(&self.counters.chunks_unrecoverable, 1);
            return Ok(outcome);
        }
        let (profile, generation) = (gathered.profile, gathered.generation);
        let mut devices: Vec<Option<usize>> = (0..n)
            .map(|i| gathered.devices[i].or_else(|| present.get(&(i as u8)).copied()))
            .collect();
        let fresh = self
            .regenerate(tenant, chunk, gathered, todo.clone())
            .await?;
        for (index, bytes) in todo.into_iter().zip(fresh) {
            let (written, device) = self.place_fragment(tenant, chunk, index, n, bytes).await?;
            devices[index] = Some(device);
            outcome.rebuilt += 1;
            outcome.bytes += written;
        }
        if let Some(devices) = devices.into_iter().collect::<Option<Vec<usize>>>() {
            self.note_moved(tenant, chunk, self.record_of(profile, generation, &devices));
        }
        EcCounters::add(&self.counters.fragments_rebuilt, outcome.rebuilt);
        EcCounters::add(&self.counters.bytes_rebuilt, outcome.bytes);
        if verify {
            EcCounters::add(&self.counters.scrub_repaired, outcome.rebuilt);
        }
        Ok(outcome)
    }

    /// Regenerates the missing or corrupt fragments of a stored chunk that is still readable
    /// (the caller holds the chunk's write lock). Returns its layout (where every fragment now
    /// is), or `None` when the chunk is absent or unreadable.
    pub(crate) async fn heal(
        &self,
        tenant: TenantId,
        chunk: ChunkId,
    ) -> Result<Option<RecordedLayout>, ChunkError> {
        let gathered = match self.gather(tenant, chunk, true).await {
            Ok((gathered, _)) => gathered,
            Err(ChunkError::NotFound { .. } | ChunkError::Corrupt { .. }) => return Ok(None),
            Err(error) => return Err(error),
        };
        let profile = gathered.profile;
        let valid = gathered.fragments.iter().filter(|f| f.is_some()).count();
        if valid < profile.data_fragments() {
            return Ok(None);
        }
        let todo: Vec<usize> = (0..profile.total_fragments())
            .filter(|&i| gathered.fragments[i].is_none())
            .collect();
        let generation = gathered.generation;
        let mut devices = gathered.devices.clone();
        if !todo.is_empty() {
            let fresh = self
                .regenerate(tenant, chunk, gathered, todo.clone())
                .await?;
            let mut bytes = 0;
            for (index, fragment) in todo.iter().zip(fresh) {
                let (written, device) = self
                    .place_fragment(tenant, chunk, *index, profile.total_fragments(), fragment)
                    .await?;
                bytes += written;
                devices[*index] = Some(device);
            }
            EcCounters::add(&self.counters.fragments_rebuilt, todo.len() as u64);
            EcCounters::add(&self.counters.bytes_rebuilt, bytes);
        }
        let devices: Vec<usize> = devices.into_iter().flatten().collect();
        Ok(Some(self.record_of(profile, generation, &devices)))
    }

    async fn regenerate(
        &self,
        tenant: TenantId,
        chunk: ChunkId,
        gathered: Gathered,
        wanted: Vec<usize>,
    ) -> Result<Vec<Bytes>, ChunkError> {
        let codec = Arc::clone(&self.codec);
        let key = FragmentKey {
            tenant,
            chunk,
            index: 0,
        };
        tokio::task::spawn_blocking(move || {
            codec.rebuild_fragments(
                gathered.profile,
                key,
                gathered.frame_len,
                &gathered.fragments,
                &wanted,
            )
        })
        .await
        .map_err(|error| ChunkError::Task(error.to_string()))?
    }

    /// Writes a regenerated fragment to its placement device (recorded, else derived), or to
    /// the first spare that takes it. Returns the bytes written and the device (an index).
    async fn place_fragment(
        &self,
        tenant: TenantId,
        chunk: ChunkId,
        index: usize,
        n: usize,
        bytes: Bytes,
    ) -> Result<(u64, usize), ChunkError> {
        let (order, _) = self.order_for(tenant, chunk);
        let key = FragmentKey {
            tenant,
            chunk,
            index: index as u8,
        };
        let candidates = std::iter::once(order[index]).chain(order[n..].iter().copied());
        let mut last = None;
        for device in candidates {
            match self.devices[device].put_fragment(key, bytes.clone()).await {
                Ok(()) => return Ok((bytes.len() as u64, device)),
                Err(error) => {
                    tracing::warn!(device = %self.devices[device].device(), %error, "rebuild write failed");
                    last = Some(error);
                }
            }
        }
        Err(last.unwrap_or(ChunkError::Task(format!(
            "no device takes fragment {index} of chunk {chunk}"
        ))))
    }

    /// Whether the listing shows every fragment of the chunk, judged by the profile in the
    /// header of one of them (a short read).
    async fn all_listed(
        &self,
        tenant: TenantId,
        chunk: ChunkId,
        present: &BTreeMap<u8, usize>,
    ) -> bool {
        let Some((&index, &device)) = present.iter().next() else {
            return false;
        };
        let key = FragmentKey {
            tenant,
            chunk,
            index,
        };
        let Ok(bytes) = self.devices[device].get_fragment_header(key).await else {
            return false;
        };
        let Ok(header) = FragmentHeader::decode_header(&bytes, key) else {
            return false;
        };
        let n = EcProfile::from_header(&header).total_fragments();
        (0..n).all(|i| present.contains_key(&(i as u8)))
    }
}
