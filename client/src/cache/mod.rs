//! The client's chunk caches. A chunk id names its bytes forever (content addressing), so a
//! cached chunk never goes stale; only capacity, pins and wipes remove it.
//!
//! - [`MemoryChunkCache`]: L1, plaintext in memory.
//! - [`NodeCache`]: the node's cache agent: L1 plus L2 files on local NVMe sealed under a key
//!   that lives only in memory, with pins per job and dataset.
//!
//! Both replace chunks with a segmented LRU that a one-pass stream cannot flush. This module
//! never fetches from servers and never decides which paths are pinned or bypassed: the agent
//! does, and hands it chunks.

mod disk;
mod memory;
mod node;
mod pins;
mod slru;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use bytes::Bytes;
use kiseki_types::ChunkId;
use serde::{Deserialize, Serialize};

pub use memory::MemoryChunkCache;
pub use node::{
    CacheStatus, NodeCache, NodeCacheConfig, PinInfo, PinPlan, TierUsage, VerifyReport,
};
pub use pins::{PinHolder, Released};

/// A cache of plaintext chunks by id.
pub trait ChunkCache: Send + Sync + 'static {
    /// The cached plaintext of `id`.
    fn get(&self, id: &ChunkId) -> Option<Bytes>;
    /// Keeps `plaintext` of `id`, evicting as needed.
    fn insert(&self, id: ChunkId, plaintext: Bytes);
    /// Whether `id` is cached (without touching its recency).
    fn contains(&self, id: &ChunkId) -> bool;
    /// Bytes the memory tier holds at most: read-ahead lands there, so it must not outrun it.
    fn memory_capacity(&self) -> u64;
}

/// How the node caches a path's data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheMode {
    /// Staged data stays in L2 while any job pins it.
    Pinned,
    /// Cached on use, replaced by the scan-resistant policy.
    Organic,
    /// Never cached: reads and writes go straight to the servers (e.g. checkpoints).
    Bypass,
}

impl fmt::Display for CacheMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CacheMode::Pinned => "pinned",
            CacheMode::Organic => "organic",
            CacheMode::Bypass => "bypass",
        })
    }
}

impl FromStr for CacheMode {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "pinned" => Ok(CacheMode::Pinned),
            "organic" => Ok(CacheMode::Organic),
            "bypass" => Ok(CacheMode::Bypass),
            other => Err(format!(
                "unknown cache mode {other:?} (expected pinned, organic or bypass)"
            )),
        }
    }
}

/// A node cache operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The L2 directory or one of its files could not be used.
    #[error("node cache file {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The in-memory cache key could not be made or used.
    #[error("node cache key unavailable (system random generator or AES-GCM failed)")]
    Key,
    /// A pin was refused whole because it does not fit; nothing was pinned.
    #[error(
        "pin refused: needs {} but only {} of the node cache is free for pins; pinned now: {}",
        human_bytes(*needed),
        human_bytes(*free),
        describe_holders(pinned_by)
    )]
    PinDoesNotFit {
        /// Bytes the pin needs beyond what is already pinned.
        needed: u64,
        /// Bytes available to pins.
        free: u64,
        /// What holds the rest.
        pinned_by: Vec<PinHolder>,
    },
    /// `store_pinned` for a chunk no dataset pins.
    #[error("chunk {0} is not pinned by any dataset")]
    NotPinned(ChunkId),
    /// The configuration is unusable.
    #[error("node cache configuration: {0}")]
    Config(String),
}

fn describe_holders(holders: &[PinHolder]) -> String {
    if holders.is_empty() {
        return "nothing".to_owned();
    }
    holders
        .iter()
        .map(|holder| {
            format!(
                "{} ({}) by job(s) {}",
                holder.dataset,
                human_bytes(holder.bytes),
                holder.jobs.join(", ")
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// `bytes` in binary units with one decimal ("1.5 GiB").
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_print_as_users_type_them() {
        for mode in [CacheMode::Pinned, CacheMode::Organic, CacheMode::Bypass] {
            assert_eq!(mode.to_string().parse::<CacheMode>(), Ok(mode));
        }
        assert!("fast".parse::<CacheMode>().unwrap_err().contains("fast"));
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(3 << 29), "1.5 GiB");
    }
}
