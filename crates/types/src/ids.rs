use std::fmt;

use serde::{Deserialize, Serialize};

/// A tenant: the unit of key isolation. Shards, chunks and keys all belong to exactly one tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TenantId(pub u64);

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t{}", self.0)
    }
}

/// A shard: one single-tenant Raft group owning part of that tenant's namespace.
///
/// `index` is the shard's number inside its tenant; it is also the high 16 bits of every inode
/// the shard allocates, so an inode number says which shard to ask.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ShardId {
    /// The tenant owning the shard.
    pub tenant: TenantId,
    /// The shard's number inside its tenant.
    pub index: u16,
}

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-s{}", self.tenant, self.index)
    }
}

/// An inode number, unique inside one tenant: shard index in the high 16 bits, a number the
/// shard allocated in the low 48. Stable across restarts, so FUSE inodes and NFS handles stay valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct InodeId(pub u64);

impl InodeId {
    const LOCAL_BITS: u32 = 48;
    /// The largest local number a shard can allocate.
    pub const LOCAL_MAX: u64 = (1 << Self::LOCAL_BITS) - 1;

    /// The inode `local` of the shard with index `shard_index`.
    pub const fn new(shard_index: u16, local: u64) -> Self {
        InodeId(((shard_index as u64) << Self::LOCAL_BITS) | (local & Self::LOCAL_MAX))
    }

    /// The root directory of a tenant's namespace (held by shard 0).
    pub const ROOT: InodeId = InodeId::new(0, 1);

    /// The index of the shard that allocated this inode.
    pub const fn shard_index(self) -> u16 {
        (self.0 >> Self::LOCAL_BITS) as u16
    }

    /// The shard-local part of the number.
    pub const fn local(self) -> u64 {
        self.0 & Self::LOCAL_MAX
    }
}

impl fmt::Display for InodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "i{}:{}", self.shard_index(), self.local())
    }
}

/// The content address of a chunk: a keyed BLAKE3 hash of its plaintext under a per-tenant key,
/// so equal content dedups inside a tenant and reveals nothing across tenants.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ChunkId(pub [u8; 32]);

impl ChunkId {
    /// Lower-case hex of the 32 bytes.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex digits.
    pub fn from_hex(text: &str) -> Option<Self> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes).ok()?;
        Some(ChunkId(bytes))
    }
}

impl fmt::Debug for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChunkId({})", &self.to_hex()[..16])
    }
}

impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inode_numbers_carry_their_shard() {
        let inode = InodeId::new(7, 12345);
        assert_eq!(inode.shard_index(), 7);
        assert_eq!(inode.local(), 12345);
        assert_eq!(InodeId::ROOT.shard_index(), 0);
        assert_ne!(InodeId::new(1, 1), InodeId::ROOT);
    }

    #[test]
    fn chunk_ids_round_trip_through_hex() {
        let id = ChunkId([0xab; 32]);
        assert_eq!(ChunkId::from_hex(&id.to_hex()), Some(id));
        assert_eq!(ChunkId::from_hex("zz"), None);
    }
}
