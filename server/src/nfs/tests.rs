//! The write-back against a real namespace (temp dir, embedded keys): out-of-order and
//! overlapping WRITEs land where they belong, stable writes are durable before they return,
//! and held bytes show in the size before they are committed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use kiseki_namespace::{Namespace, Owner, TenantNamespace};
use kiseki_types::{InodeId, TenantId};

use super::write_back::WriteBack;
use crate::config::ServerConfig;

async fn tenant(dir: &std::path::Path) -> (Namespace, Arc<TenantNamespace>) {
    let mut config = ServerConfig::with_data_dir(dir.to_path_buf());
    config.chunk_size_bytes = 64 * 1024;
    let (keys, _) = crate::node::key_source(&config).unwrap();
    let namespace = crate::node::namespace(&config, keys).unwrap();
    let tenant = namespace.tenant(TenantId(1)).await.unwrap();
    (namespace, tenant)
}

async fn contents(tenant: &TenantNamespace, inode: InodeId) -> Vec<u8> {
    let size = tenant.attributes(inode).unwrap().size;
    tenant
        .read(inode, 0, size)
        .unwrap()
        .read_to_end()
        .await
        .unwrap()
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    // Not periodic, so no two chunks are equal (equal chunks would be deduplicated).
    (0..len as u64)
        .map(|index| (index.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8 ^ seed)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reordered_overlapping_and_sparse_writes_match_a_byte_model() {
    let dir = tempfile::tempdir().unwrap();
    let (namespace, tenant) = tenant(dir.path()).await;
    let inode = tenant
        .create(Owner { uid: 0, gid: 0 }, InodeId::ROOT, "f", 0o644, true)
        .await
        .unwrap();
    let write_back = WriteBack::default();
    let mut model = vec![0u8; 0];
    let block = 48 * 1024;
    // Blocks 1 and 2 arrive before block 0; block 6 leaves a hole; block 1 is rewritten; block 9
    // is written twice while parked ahead of the run.
    let order = [
        (1, 1u8),
        (2, 2),
        (0, 3),
        (3, 4),
        (6, 5),
        (1, 6),
        (4, 7),
        (9, 8),
        (9, 9),
        (8, 10),
    ];
    for (index, seed) in order {
        let data = pattern(block, seed);
        let offset = index * block;
        write_back
            .write(&tenant, inode, offset as u64, &data, false)
            .await
            .unwrap();
        if model.len() < offset + block {
            model.resize(offset + block, 0);
        }
        model[offset..offset + block].copy_from_slice(&data);
        assert_eq!(
            write_back.size_with_held(
                tenant.tenant(),
                inode,
                tenant.attributes(inode).unwrap().size
            ),
            model.len() as u64
        );
    }
    write_back.commit(tenant.tenant(), inode).await.unwrap();
    assert_eq!(contents(&tenant, inode).await, model);

    // A stable write is in the namespace when it returns; an idle stream commits by itself.
    write_back
        .write(&tenant, inode, 10, b"stable", true)
        .await
        .unwrap();
    model[10..16].copy_from_slice(b"stable");
    assert_eq!(contents(&tenant, inode).await, model);
    write_back
        .write(&tenant, inode, model.len() as u64, b"tail", false)
        .await
        .unwrap();
    model.extend_from_slice(b"tail");
    tokio::time::sleep(Duration::from_millis(20)).await;
    write_back.commit_idle(Duration::from_millis(10)).await;
    assert_eq!(contents(&tenant, inode).await, model);
    namespace.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_writes_are_cut_into_whole_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let (namespace, tenant) = tenant(dir.path()).await;
    let inode = tenant
        .create(Owner { uid: 0, gid: 0 }, InodeId::ROOT, "f", 0o644, true)
        .await
        .unwrap();
    let write_back = WriteBack::default();
    let data = pattern(1024 * 1024, 9);
    for (index, piece) in data.chunks(4096).enumerate() {
        write_back
            .write(&tenant, inode, (index * 4096) as u64, piece, false)
            .await
            .unwrap();
    }
    write_back.commit(tenant.tenant(), inode).await.unwrap();
    assert_eq!(contents(&tenant, inode).await, data);
    // 1 MiB in 64 KiB chunks: 16 extents, not 256.
    let chunk_files = count_files(&dir.path().join("chunks"));
    assert!(
        (16..=17).contains(&chunk_files),
        "{chunk_files} chunk files for 16 chunks of data"
    );
    namespace.shutdown().await;
}

fn count_files(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| {
            if entry.path().is_dir() {
                count_files(&entry.path())
            } else {
                1
            }
        })
        .sum()
}
