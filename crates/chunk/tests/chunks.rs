//! Chunk round trips, corruption detection, tenant isolation and disk-full behaviour.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use kiseki_chunk::{
    ChunkError, ChunkService, ChunkStore, DeviceClass, FsChunkStore, MemoryChunkStore, Placement,
    PoolName, SealedKept,
};
use kiseki_crypto::{AddressingKey, DataKey, DekEpoch, KEY_BYTES};
use kiseki_types::TenantId;

struct Tenant {
    id: TenantId,
    addressing: AddressingKey,
    key: Arc<DataKey>,
}

impl Tenant {
    fn new(id: u64, seed: u8) -> Self {
        Tenant {
            id: TenantId(id),
            addressing: AddressingKey::new([seed; KEY_BYTES]),
            key: Arc::new(DataKey::new(DekEpoch(1), &[seed.wrapping_add(1); KEY_BYTES]).unwrap()),
        }
    }

    fn keys(&self) -> impl Fn(DekEpoch) -> Option<Arc<DataKey>> + Sync + '_ {
        move |epoch| (epoch == self.key.epoch()).then(|| Arc::clone(&self.key))
    }
}

fn default_pool() -> Placement {
    Placement {
        pool: PoolName("default".into()),
    }
}

fn fs_service(dir: &Path) -> (Arc<FsChunkStore>, ChunkService) {
    let store = Arc::new(
        FsChunkStore::open([(
            PoolName("default".into()),
            dir.to_path_buf(),
            DeviceClass::FastNvme,
        )])
        .unwrap(),
    );
    (Arc::clone(&store), ChunkService::new(store, default_pool()))
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[tokio::test]
async fn chunk_round_trips_through_the_disk_and_dedups() {
    let dir = tempfile::tempdir().unwrap();
    let (store, service) = fs_service(dir.path());
    let tenant = Tenant::new(1, 10);
    let data = pattern(1 << 20, 3);
    let written = service
        .write(tenant.id, &tenant.addressing, &tenant.key, &data)
        .await
        .unwrap();
    assert!(!written.deduplicated);
    let again = service
        .write(tenant.id, &tenant.addressing, &tenant.key, &data)
        .await
        .unwrap();
    assert_eq!(again.id, written.id);
    assert!(again.deduplicated);

    let path = store
        .chunk_path(&PoolName("default".into()), tenant.id, written.id)
        .unwrap();
    let on_disk = std::fs::read(&path).unwrap();
    assert!(
        !on_disk.windows(64).any(|window| window == &data[..64]),
        "plaintext must not reach the disk"
    );

    let read = service
        .read(tenant.id, written.id, &tenant.keys())
        .await
        .unwrap();
    assert_eq!(&read[..], &data[..]);
}

#[tokio::test]
async fn a_flipped_byte_on_disk_is_detected_never_returned() {
    let dir = tempfile::tempdir().unwrap();
    let (store, service) = fs_service(dir.path());
    let tenant = Tenant::new(1, 10);
    let data = pattern(100_000, 5);
    let written = service
        .write(tenant.id, &tenant.addressing, &tenant.key, &data)
        .await
        .unwrap();
    let path = store
        .chunk_path(&PoolName("default".into()), tenant.id, written.id)
        .unwrap();
    for offset in [3usize, 30, 200, 50_000, 100_090] {
        let original = std::fs::read(&path).unwrap();
        let mut damaged = original.clone();
        damaged[offset] ^= 0x01;
        std::fs::write(&path, &damaged).unwrap();
        let error = service
            .read(tenant.id, written.id, &tenant.keys())
            .await
            .unwrap_err();
        assert!(
            matches!(error, ChunkError::Corrupt { .. }),
            "offset {offset}: {error}"
        );
        std::fs::write(&path, &original).unwrap();
    }
    assert_eq!(
        &service
            .read(tenant.id, written.id, &tenant.keys())
            .await
            .unwrap()[..],
        &data[..]
    );
}

/// The native client's path: a frame opened straight into a caller's buffer (staging into the
/// node cache) without the body checksum, so the authentication tag alone must catch every
/// damaged byte, and a failed open must leave no plaintext behind.
#[tokio::test]
async fn opening_into_a_buffer_returns_the_plaintext_or_nothing() {
    let store = Arc::new(MemoryChunkStore::new());
    let service = ChunkService::new(Arc::clone(&store) as Arc<dyn ChunkStore>, default_pool());
    let tenant = Tenant::new(1, 10);
    let other = Tenant::new(1, 77);
    let data = pattern(70_000, 9);
    let written = service
        .write(tenant.id, &tenant.addressing, &tenant.key, &data)
        .await
        .unwrap();
    let frame = store.get(tenant.id, written.id).await.unwrap();
    let len = ChunkService::plaintext_len(&frame).unwrap();
    assert_eq!(len, data.len());
    let mut out = vec![0u8; len];

    let opened =
        ChunkService::open_into(tenant.id, written.id, &frame, &tenant.keys(), &mut out).unwrap();
    assert_eq!(&out[..opened], &data[..]);

    let header_bytes = kiseki_chunk::HEADER_BYTES;
    for offset in [5usize, header_bytes, header_bytes + 1_000, frame.len() - 1] {
        let mut damaged = frame.to_vec();
        damaged[offset] ^= 0x40;
        out.fill(0xAA);
        let error =
            ChunkService::open_into(tenant.id, written.id, &damaged, &tenant.keys(), &mut out)
                .unwrap_err();
        assert!(
            matches!(error, ChunkError::Corrupt { .. }),
            "offset {offset}: {error}"
        );
        assert!(
            !out.windows(64)
                .any(|window| data.windows(64).next() == Some(window)),
            "offset {offset}: plaintext left in the buffer"
        );
    }
    let error = ChunkService::open_into(tenant.id, written.id, &frame, &other.keys(), &mut out)
        .unwrap_err();
    assert!(matches!(error, ChunkError::Corrupt { .. }), "{error}");
    assert!(
        out[..len].iter().all(|byte| *byte == 0),
        "wrong key: buffer not wiped"
    );
    let mut small = vec![0u8; len - 1];
    assert!(
        ChunkService::open_into(tenant.id, written.id, &frame, &tenant.keys(), &mut small).is_err(),
        "a buffer too small for the plaintext is refused"
    );
}

#[tokio::test]
async fn a_chunk_does_not_open_under_another_tenant_or_key() {
    let store = Arc::new(MemoryChunkStore::new());
    let service = ChunkService::new(Arc::clone(&store) as Arc<dyn ChunkStore>, default_pool());
    let tenant_a = Tenant::new(1, 10);
    let tenant_b = Tenant::new(2, 20);
    let written = service
        .write(
            tenant_a.id,
            &tenant_a.addressing,
            &tenant_a.key,
            b"tenant a secret",
        )
        .await
        .unwrap();

    // Tenant B cannot even name the chunk: its lookup is scoped to its own tenant id.
    assert!(matches!(
        service
            .read(tenant_b.id, written.id, &tenant_b.keys())
            .await,
        Err(ChunkError::NotFound { .. })
    ));
    // The right frame with tenant B's key fails authentication.
    let frame = store.get(tenant_a.id, written.id).await.unwrap();
    let error =
        ChunkService::open(tenant_a.id, written.id, frame.clone(), &tenant_b.keys()).unwrap_err();
    assert!(matches!(error, ChunkError::Corrupt { .. }), "{error}");
    // Relabelled as tenant B's chunk, the frame fails its header check.
    assert!(ChunkService::open(tenant_b.id, written.id, frame, &tenant_a.keys()).is_err());
}

#[tokio::test]
async fn a_missing_key_epoch_is_reported() {
    let store = Arc::new(MemoryChunkStore::new());
    let service = ChunkService::new(store, default_pool());
    let tenant = Tenant::new(1, 10);
    let written = service
        .write(tenant.id, &tenant.addressing, &tenant.key, b"x")
        .await
        .unwrap();
    let error = service
        .read(tenant.id, written.id, &|_| None)
        .await
        .unwrap_err();
    assert!(
        matches!(error, ChunkError::MissingKey { epoch: 1, .. }),
        "{error}"
    );
}

/// A tmpfs mounted on a temporary directory for the life of the value (unmounted on drop).
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status();
        assert!(
            matches!(status, Ok(status) if status.success()),
            "mounting a tmpfs needs root (the test command runs as root)"
        );
        SmallDisk { dir }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// A pool on a 2 MiB tmpfs: the write that does not fit fails with `NoSpace`, earlier chunks stay
/// readable and no temporary file is left behind.
#[tokio::test]
async fn a_full_pool_refuses_writes_and_keeps_serving_reads() {
    let disk = SmallDisk::mount("2m");
    let (_store, service) = fs_service(disk.dir.path());
    let tenant = Tenant::new(1, 10);
    let first = pattern(512 * 1024, 1);
    let kept = service
        .write(tenant.id, &tenant.addressing, &tenant.key, &first)
        .await
        .unwrap();
    let mut refused = None;
    for seed in 2..10u8 {
        if let Err(error) = service
            .write(
                tenant.id,
                &tenant.addressing,
                &tenant.key,
                &pattern(512 * 1024, seed),
            )
            .await
        {
            refused = Some(error);
            break;
        }
    }
    let refused = refused.expect("a 2 MiB pool cannot take 4.5 MiB");
    assert!(matches!(refused, ChunkError::NoSpace { .. }), "{refused}");
    assert!(refused.to_string().contains("no space"), "{refused}");
    let read = service
        .read(tenant.id, kept.id, &tenant.keys())
        .await
        .unwrap();
    assert_eq!(&read[..], &first[..]);
    let leftovers = walk(disk.dir.path())
        .into_iter()
        .filter(|name| name.contains(".tmp."))
        .count();
    assert_eq!(leftovers, 0, "temporary files left behind");
}

fn walk(dir: &Path) -> Vec<String> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            names.extend(walk(&path));
        } else {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names
}

#[tokio::test]
async fn a_frame_kept_for_the_log_counts_as_stored_only_once_synced() {
    let dir = tempfile::tempdir().unwrap();
    let (store, service) = fs_service(dir.path());
    let tenant = Tenant::new(1, 10);
    let data = pattern(3000, 5);
    let id = tenant.addressing.chunk_id(&data);
    let frame = ChunkService::seal(tenant.id, id, &tenant.key, &data).unwrap();
    let keys = tenant.keys();
    let keep =
        || service.keep_sealed_for_log(tenant.id, id, &frame, None, &tenant.addressing, &keys);
    // Checked, not written: the log entry that carries it will keep it.
    let kept = keep().await.unwrap();
    assert_eq!(kept, SealedKept::ToCarry(PoolName("default".into())));
    assert!(service.read(tenant.id, id, &tenant.keys()).await.is_err());

    // Kept (as applying the entry does): readable at once, but not yet a chunk to deduplicate
    // against, since it may not be on disk.
    store
        .put_carried(tenant.id, id, &frame, &default_pool())
        .unwrap();
    assert_eq!(
        service.read(tenant.id, id, &tenant.keys()).await.unwrap(),
        data
    );
    assert!(!store.contains(tenant.id, id).await.unwrap());

    // A write of the same content stores it durably (syncing the kept file) ...
    let written = service
        .write(tenant.id, &tenant.addressing, &tenant.key, &data)
        .await
        .unwrap();
    assert_eq!(written.id, id);
    assert!(store.contains(tenant.id, id).await.unwrap());
    // ... and one already stored is not carried again.
    let again = keep().await.unwrap();
    assert_eq!(again, SealedKept::AlreadyStored);

    // Kept frames count once the store syncs them (before a snapshot drops their log entries).
    let other = pattern(2000, 6);
    let other_id = tenant.addressing.chunk_id(&other);
    let other_frame = ChunkService::seal(tenant.id, other_id, &tenant.key, &other).unwrap();
    store
        .put_carried(tenant.id, other_id, &other_frame, &default_pool())
        .unwrap();
    assert!(!store.contains(tenant.id, other_id).await.unwrap());
    store.sync_carried().unwrap();
    assert!(store.contains(tenant.id, other_id).await.unwrap());

    // A frame that fails its checks (a flipped ciphertext byte) is refused.
    let third = pattern(1000, 7);
    let third_id = tenant.addressing.chunk_id(&third);
    let mut altered = ChunkService::seal(tenant.id, third_id, &tenant.key, &third)
        .unwrap()
        .to_vec();
    let last = altered.len() - 1;
    altered[last] ^= 1;
    let refused = service
        .keep_sealed_for_log(
            tenant.id,
            third_id,
            &bytes::Bytes::from(altered),
            None,
            &tenant.addressing,
            &tenant.keys(),
        )
        .await;
    assert!(
        matches!(refused, Err(ChunkError::Corrupt { .. })),
        "{refused:?}"
    );
}
