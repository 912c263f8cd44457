//! The namespace API over real shard logs, chunk store and keys: streaming writes and range
//! reads, POSIX-style changes, restart, corruption and tenant isolation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;

use common::{content, open_namespace, OWNER};
use kiseki_namespace::{ListEntry, ListRequest, TenantNamespace};
use kiseki_types::{ErrorKind, InodeId, TenantId};

async fn put(namespace: &TenantNamespace, path: &str, data: &[u8]) -> InodeId {
    let mut writer = namespace.writer();
    for piece in data.chunks(10_000) {
        writer.write(piece).await.unwrap();
    }
    let written = writer.finish().await.unwrap();
    namespace
        .put_file(OWNER, path, written, BTreeMap::new())
        .await
        .unwrap()
}

#[tokio::test]
async fn streaming_write_then_range_reads_return_the_exact_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (namespace, _) = open_namespace(dir.path(), 10_000);
    let tenant = namespace.tenant(TenantId(1)).await.unwrap();
    let data = content(1, 5 * 64 * 1024 + 17);
    let inode = put(&tenant, "bucket/dir/file.bin", &data).await;
    assert_eq!(tenant.attributes(inode).unwrap().size, data.len() as u64);

    let whole = tenant
        .read(inode, 0, u64::MAX)
        .unwrap()
        .read_to_end()
        .await
        .unwrap();
    assert_eq!(whole, data);
    for (offset, len) in [
        (0u64, 1u64),
        (65_535, 2),
        (100_000, 200_000),
        (data.len() as u64 - 3, 100),
        (data.len() as u64 + 5, 10),
    ] {
        let got = tenant
            .read(inode, offset, len)
            .unwrap()
            .read_to_end()
            .await
            .unwrap();
        let start = (offset as usize).min(data.len());
        let end = (offset + len).min(data.len() as u64) as usize;
        assert_eq!(got, &data[start..end], "range {offset}+{len}");
    }
    namespace.shutdown().await;
}

#[tokio::test]
async fn append_positional_write_and_truncate_compose() {
    let dir = tempfile::tempdir().unwrap();
    let (namespace, _) = open_namespace(dir.path(), 10_000);
    let tenant = namespace.tenant(TenantId(1)).await.unwrap();
    let dir_inode = tenant
        .mkdir(OWNER, InodeId::ROOT, "d", 0o755)
        .await
        .unwrap();
    let file = tenant
        .create(OWNER, dir_inode, "f", 0o644, true)
        .await
        .unwrap();
    assert_eq!(
        tenant
            .create(OWNER, dir_inode, "f", 0o644, true)
            .await
            .unwrap_err()
            .kind,
        ErrorKind::AlreadyExists
    );

    let mut expected = Vec::new();
    for round in 0..3u64 {
        let piece = content(round + 10, 70_000);
        let mut writer = tenant.writer();
        writer.write(&piece).await.unwrap();
        tenant
            .append(file, writer.finish().await.unwrap())
            .await
            .unwrap();
        expected.extend_from_slice(&piece);
    }
    let patch = content(99, 1000);
    let mut writer = tenant.writer();
    writer.write(&patch).await.unwrap();
    tenant
        .write_at(file, 65_000, writer.finish().await.unwrap())
        .await
        .unwrap();
    expected[65_000..66_000].copy_from_slice(&patch);
    tenant.truncate(file, 150_000).await.unwrap();
    expected.truncate(150_000);
    tenant.truncate(file, 160_000).await.unwrap();
    expected.resize(160_000, 0);

    let got = tenant
        .read(file, 0, u64::MAX)
        .unwrap()
        .read_to_end()
        .await
        .unwrap();
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "content differs from the byte model");
    namespace.shutdown().await;
}

#[tokio::test]
async fn restart_rebuilds_the_view_from_snapshot_and_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut expected = Vec::new();
    {
        // A small snapshot interval makes the restart go through snapshot + compacted log.
        let (namespace, _) = open_namespace(dir.path(), 16);
        let tenant = namespace.tenant(TenantId(7)).await.unwrap();
        for i in 0..60u64 {
            let data = content(i, (i as usize * 997) % 20_000);
            put(&tenant, &format!("b/k{i:03}"), &data).await;
            expected.push(data);
        }
        let dir_inode = tenant.resolve("b").unwrap();
        tenant
            .rename(dir_inode, "k000", dir_inode, "renamed", false)
            .await
            .unwrap();
        tenant.unlink(dir_inode, "k001").await.unwrap();
        namespace.shutdown().await;
    }
    let (namespace, _) = open_namespace(dir.path(), 16);
    let tenant = namespace.tenant(TenantId(7)).await.unwrap();
    let metrics = tenant.log_metrics().await.unwrap();
    assert!(
        metrics.snapshot_index.is_some(),
        "log was compacted behind a snapshot: {metrics:?}"
    );
    assert_eq!(
        tenant.resolve("b/k000").unwrap_err().kind,
        ErrorKind::NotFound
    );
    assert_eq!(
        tenant.resolve("b/k001").unwrap_err().kind,
        ErrorKind::NotFound
    );
    let renamed = tenant
        .read_path("b/renamed", 0, u64::MAX)
        .unwrap()
        .read_to_end()
        .await
        .unwrap();
    assert_eq!(renamed, expected[0]);
    for (i, data) in expected.iter().enumerate().skip(2) {
        let got = tenant
            .read_path(&format!("b/k{i:03}"), 0, u64::MAX)
            .unwrap()
            .read_to_end()
            .await
            .unwrap();
        assert_eq!(&got, data, "key {i}");
    }
    let page = tenant
        .list(ListRequest {
            prefix: "b/",
            delimiter: Some("/"),
            start_after: None,
            max_entries: 1000,
        })
        .unwrap();
    assert_eq!(page.entries.len(), 59);
    assert!(matches!(&page.entries[0], ListEntry::Object { key, .. } if key == "b/k002"));
    namespace.shutdown().await;
}

#[tokio::test]
async fn a_corrupted_chunk_is_an_error_naming_the_object() {
    let dir = tempfile::tempdir().unwrap();
    let (namespace, _) = open_namespace(dir.path(), 10_000);
    let tenant = namespace.tenant(TenantId(1)).await.unwrap();
    let data = content(5, 200_000);
    put(&tenant, "photos/cat.jpg", &data).await;
    let chunk_files = walk(&common::chunks_dir(dir.path()));
    assert!(
        chunk_files.len() >= 4,
        "200 000 bytes make four 64 KiB chunks"
    );
    // Flip one byte in the body of every chunk file: every read of the object must fail.
    for path in &chunk_files {
        let mut bytes = std::fs::read(path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x40;
        std::fs::write(path, bytes).unwrap();
    }
    let error = tenant
        .read_path("photos/cat.jpg", 0, u64::MAX)
        .unwrap()
        .read_to_end()
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Corrupt);
    assert!(
        error.message.contains("photos/cat.jpg"),
        "error names the object: {}",
        error.message
    );
    namespace.shutdown().await;
}

#[tokio::test]
async fn tenants_do_not_see_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let (namespace, _) = open_namespace(dir.path(), 10_000);
    let tenant_a = namespace.tenant(TenantId(1)).await.unwrap();
    let tenant_b = namespace.tenant(TenantId(2)).await.unwrap();
    let data = content(3, 1000);
    let inode = put(&tenant_a, "shared-name/file", &data).await;
    assert_eq!(
        tenant_b.resolve("shared-name/file").unwrap_err().kind,
        ErrorKind::NotFound
    );
    assert!(tenant_b
        .list(ListRequest {
            max_entries: 100,
            ..ListRequest::default()
        })
        .unwrap()
        .entries
        .is_empty());
    // Even the same inode number in tenant B names nothing of tenant A.
    assert!(tenant_b.read(inode, 0, 10).is_err());
    // Equal content in B is stored under a different chunk id (addressing keys differ).
    put(&tenant_b, "x", &data).await;
    let files = walk(&common::chunks_dir(dir.path()));
    assert_eq!(
        files.len(),
        2,
        "equal content in two tenants is two chunks: {files:?}"
    );
    namespace.shutdown().await;
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// A small write from a native client: the frame rides in the write's log entry (one log
/// fsync), its chunk file is synced by the snapshot that the carried bytes ask for, and every
/// file reads back after a restart.
#[tokio::test]
async fn small_native_writes_ride_in_the_log_until_a_byte_bound_snapshot_syncs_them() {
    use kiseki_chunk::{ChunkService, ChunkStore};
    use kiseki_types::Extent;

    let dir = tempfile::tempdir().unwrap();
    let tenant_id = TenantId(7);
    let mut expected = Vec::new();
    {
        // Snapshots by entry count never come here: only the carried bytes (32 KiB) ask.
        let (namespace, store, keys) =
            common::open_namespace_with_keys(dir.path(), 1_000_000, 32 * 1024);
        let tenant = namespace.tenant(tenant_id).await.unwrap();
        let keyring = keys.keyring(tenant_id).unwrap();
        for i in 0..24u64 {
            let data = content(i, 3000);
            let id = keyring.addressing().chunk_id(&data);
            let frame = ChunkService::seal(tenant_id, id, &keyring.current(), &data).unwrap();
            let name = format!("small{i:02}");
            let inode = tenant
                .create(OWNER, InodeId::ROOT, &name, 0o644, true)
                .await
                .unwrap();
            let extent = Extent {
                file_offset: 0,
                len: 3000,
                chunk: id,
                chunk_offset: 0,
            };
            let deduplicated = tenant
                .commit_small_write(inode, extent, frame, None)
                .await
                .unwrap();
            assert!(!deduplicated);
            expected.push((name, id, data));
        }
        // About 3 KiB carried per file: a snapshot was asked for after the 11th.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while tenant.log_metrics().await.unwrap().snapshot_index.is_none() {
            assert!(std::time::Instant::now() < deadline, "no snapshot");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        // The snapshot synced the first files' chunks: they now count as stored.
        let (_, first, _) = &expected[0];
        assert!(store.contains(tenant_id, *first).await.unwrap());
        namespace.shutdown().await;
    }
    let (namespace, _, _) = common::open_namespace_with_keys(dir.path(), 1_000_000, 32 * 1024);
    let tenant = namespace.tenant(tenant_id).await.unwrap();
    for (name, _, data) in &expected {
        let got = tenant
            .read_path(name, 0, u64::MAX)
            .unwrap()
            .read_to_end()
            .await
            .unwrap();
        assert_eq!(&got, data, "{name}");
    }
    namespace.shutdown().await;
}
