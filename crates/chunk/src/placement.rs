use std::fmt;

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
