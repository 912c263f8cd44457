//! Test support shared by the namespace integration tests: a namespace over real parts in a
//! temporary directory (segment-log shard logs, the file chunk store, the internal KMS with the
//! system key manager).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kiseki_chunk::{ChunkService, DeviceClass, FsChunkStore, Placement, PoolName};
use kiseki_crypto::{InternalKms, KeyManager};
use kiseki_log::ShardLogOptions;
use kiseki_namespace::{Namespace, NamespaceConfig, Owner};

/// Owner of everything the tests create.
pub const OWNER: Owner = Owner {
    uid: 1000,
    gid: 1000,
};
/// A small chunk size, so that small files span several chunks.
pub const CHUNK_SIZE: u32 = 64 * 1024;

/// The one chunk pool.
pub fn pool() -> PoolName {
    PoolName("default".into())
}

/// Where the pool keeps chunk files.
pub fn chunks_dir(root: &Path) -> PathBuf {
    root.join("chunks")
}

/// Opens (or reopens) a namespace whose state lives under `root`.
pub fn open_namespace(root: &Path, entries_per_snapshot: u64) -> (Namespace, Arc<FsChunkStore>) {
    let (namespace, store, _) = open_namespace_with_keys(
        root,
        entries_per_snapshot,
        kiseki_namespace::CARRIED_BYTES_PER_SNAPSHOT_DEFAULT,
    );
    (namespace, store)
}

/// Like [`open_namespace`], with the bound on bytes carried in the log between snapshots, and
/// the key manager (to seal chunks as a native client does).
pub fn open_namespace_with_keys(
    root: &Path,
    entries_per_snapshot: u64,
    carried_bytes_per_snapshot: u64,
) -> (Namespace, Arc<FsChunkStore>, Arc<KeyManager>) {
    let kms = Arc::new(InternalKms::open(&root.join("kms")).unwrap());
    let keys = Arc::new(KeyManager::open(&root.join("keys"), kms).unwrap());
    let store =
        Arc::new(FsChunkStore::open([(pool(), chunks_dir(root), DeviceClass::FastNvme)]).unwrap());
    let chunks = ChunkService::new(Arc::clone(&store) as _, Placement { pool: pool() });
    let mut config = NamespaceConfig::new(root.join("shards"));
    config.chunk_size = CHUNK_SIZE;
    config.log = ShardLogOptions {
        entries_per_snapshot,
        ..ShardLogOptions::default()
    };
    config.carried_bytes_per_snapshot = carried_bytes_per_snapshot;
    let namespace = Namespace::new(config, Arc::clone(&keys) as _, chunks).unwrap();
    (namespace, store, keys)
}

/// Deterministic content for file `seed`.
pub fn content(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}
