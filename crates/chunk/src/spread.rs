//! The placement engine: which device of a pool holds which fragment of a chunk.
//!
//! The derived placement: rendezvous hashing of (tenant, chunk, node, device) ranks
//! every device of the pool, the ranking is interleaved across nodes (best device of each node
//! first, then the second best of each, ...) and fragment `i` goes to position `i`. Anyone who
//! knows the device list recomputes it; adding a device moves only the fragments it wins. The
//! devices after the first `n` positions are the spares a rebuild falls back to when a device is
//! unreachable, in that order. The engine's epoch names the device list a layout was computed
//! with ([`device_list_epoch`]): adding a device changes it and the ranking, which is why the
//! layout of every written chunk is also recorded in its shard's log (see `placement.rs`).
//!
//! This module does no I/O and never reads fragments.

use std::collections::BTreeMap;

use kiseki_types::{ChunkId, TenantId};

use crate::ec::EcProfile;
use crate::fragment::DeviceInfo;

/// What fragments of one chunk must not share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureDomain {
    /// Distinct devices; spread as evenly as possible over nodes.
    Device,
    /// Distinct nodes (and so distinct devices).
    Node,
}

/// The placement engine refused a chunk.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error(
    "cannot place {fragments} fragments ({profile}) on {domains} distinct {domain}s of the pool"
)]
pub struct PlacementRefused {
    /// Fragments the profile needs.
    pub fragments: usize,
    /// The profile.
    pub profile: EcProfile,
    /// Failure domains available.
    pub domains: usize,
    /// `device` or `node`.
    pub domain: &'static str,
}

/// Where each fragment of a chunk goes: `fragments[i]` holds fragment `i`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkLayout {
    /// The device-list epoch the layout was computed with.
    pub epoch: u64,
    /// The profile the chunk was cut with.
    pub profile: EcProfile,
    /// The device of each fragment, in fragment order.
    pub fragments: Vec<DeviceInfo>,
}

/// Ranks a pool's devices per chunk.
#[derive(Clone, Debug)]
pub struct PlacementEngine {
    devices: Vec<DeviceInfo>,
    epoch: u64,
    domain: FailureDomain,
}

impl PlacementEngine {
    /// An engine over `devices` (one device class). The failure domain is the node when there
    /// are at least `fragments_max` nodes, else the device.
    pub fn new(devices: Vec<DeviceInfo>, epoch: u64, fragments_max: usize) -> Self {
        let nodes = distinct_nodes(&devices);
        let domain = if nodes >= fragments_max && nodes > 1 {
            FailureDomain::Node
        } else {
            FailureDomain::Device
        };
        PlacementEngine {
            devices,
            epoch,
            domain,
        }
    }

    /// The same engine with an explicit failure domain.
    pub fn with_domain(mut self, domain: FailureDomain) -> Self {
        self.domain = domain;
        self
    }

    /// The devices, in configuration order.
    pub fn devices(&self) -> &[DeviceInfo] {
        &self.devices
    }

    /// The device-list epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The failure domain in force.
    pub fn domain(&self) -> FailureDomain {
        self.domain
    }

    /// Checks that chunks of `profile` can be placed at all.
    pub fn check(&self, profile: EcProfile) -> Result<(), PlacementRefused> {
        let fragments = profile.total_fragments();
        let (domains, domain) = match self.domain {
            FailureDomain::Device => (self.devices.len(), "device"),
            FailureDomain::Node => (distinct_nodes(&self.devices), "node"),
        };
        if domains < fragments {
            return Err(PlacementRefused {
                fragments,
                profile,
                domains,
                domain,
            });
        }
        Ok(())
    }

    /// Every device index in preference order for this chunk: position `i < n` holds fragment
    /// `i`, the rest are spares.
    pub fn order(&self, tenant: TenantId, chunk: ChunkId) -> Vec<usize> {
        let mut scored: Vec<(u64, usize)> = self
            .devices
            .iter()
            .enumerate()
            .map(|(index, device)| (score(tenant, chunk, device), index))
            .collect();
        scored.sort_unstable_by(|a, b| b.cmp(a));
        // Interleave nodes: each node's devices in score order, nodes in order of their best.
        let mut per_node: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
        let mut node_order = Vec::new();
        for &(_, index) in &scored {
            let node = self.devices[index].node;
            let list = per_node.entry(node).or_default();
            if list.is_empty() {
                node_order.push(node);
            }
            list.push(index);
        }
        let mut order = Vec::with_capacity(self.devices.len());
        let mut round = 0;
        while order.len() < self.devices.len() {
            for node in &node_order {
                if let Some(&index) = per_node.get(node).and_then(|list| list.get(round)) {
                    order.push(index);
                }
            }
            round += 1;
        }
        order
    }

    /// The layout of a chunk cut with `profile`, or a refusal naming why it cannot be placed.
    pub fn layout(
        &self,
        tenant: TenantId,
        chunk: ChunkId,
        profile: EcProfile,
    ) -> Result<ChunkLayout, PlacementRefused> {
        self.check(profile)?;
        let fragments = self
            .order(tenant, chunk)
            .into_iter()
            .take(profile.total_fragments())
            .map(|index| self.devices[index].clone())
            .collect();
        Ok(ChunkLayout {
            epoch: self.epoch,
            profile,
            fragments,
        })
    }
}

/// The epoch of a device list: a hash of its (node, device name) pairs, order-independent, so
/// it changes whenever a device is added or removed and is equal on every node of a cluster.
pub fn device_list_epoch(devices: &[DeviceInfo]) -> u64 {
    let mut names: Vec<(u64, &str)> = devices
        .iter()
        .map(|device| (device.node, device.device.as_str()))
        .collect();
    names.sort_unstable();
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"kiseki-device-list-v1");
    for (node, name) in names {
        hasher.update(&node.to_le_bytes());
        hasher.update(&(name.len() as u64).to_le_bytes());
        hasher.update(name.as_bytes());
    }
    let mut first = [0u8; 8];
    first.copy_from_slice(&hasher.finalize().as_bytes()[..8]);
    u64::from_le_bytes(first)
}

fn distinct_nodes(devices: &[DeviceInfo]) -> usize {
    let mut nodes: Vec<u64> = devices.iter().map(|device| device.node).collect();
    nodes.sort_unstable();
    nodes.dedup();
    nodes.len()
}

fn score(tenant: TenantId, chunk: ChunkId, device: &DeviceInfo) -> u64 {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"kiseki-placement-v1");
    hasher.update(&tenant.0.to_le_bytes());
    hasher.update(&chunk.0);
    hasher.update(&device.node.to_le_bytes());
    hasher.update(device.device.as_bytes());
    let hash = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash.as_bytes()[..8]);
    u64::from_le_bytes(first)
}
