//! Erasure-coded chunk stores over local device directories: round trips, degraded reads after a
//! device is lost, rebuild to full redundancy, scrub repair of flipped bytes, placement on
//! distinct devices and nodes, and a clear error when more than `m` devices are gone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use kiseki_chunk::{
    ChunkError, ChunkService, ChunkStore, Codec, DeviceClass, DeviceInfo, EcPolicy, EcProfile,
    ErasureChunkStore, FailureDomain, FragmentKey, FragmentStore, FsFragmentStore, Placement,
    PlacementEngine, PoolName, FRAGMENT_HEADER_BYTES,
};
use kiseki_crypto::{AddressingKey, DataKey, DekEpoch, KEY_BYTES};
use kiseki_types::{ChunkId, TenantId};
use proptest::prelude::*;

const TENANT: TenantId = TenantId(7);

struct Pool {
    _dir: tempfile::TempDir,
    roots: Vec<PathBuf>,
    stores: Vec<Arc<FsFragmentStore>>,
    store: Arc<ErasureChunkStore>,
    service: ChunkService,
    addressing: AddressingKey,
    key: Arc<DataKey>,
}

fn device(node: u64, name: &str) -> DeviceInfo {
    DeviceInfo {
        node,
        device: name.to_owned(),
        class: DeviceClass::BulkNvme,
    }
}

fn pool(devices: usize, policy: EcPolicy) -> Pool {
    let dir = tempfile::tempdir().unwrap();
    let roots: Vec<PathBuf> = (0..devices)
        .map(|i| dir.path().join(format!("dev{i}")))
        .collect();
    let stores: Vec<Arc<FsFragmentStore>> = roots
        .iter()
        .enumerate()
        .map(|(i, root)| {
            Arc::new(FsFragmentStore::open(device(1, &format!("dev{i}")), root).unwrap())
        })
        .collect();
    let dyn_stores = stores
        .iter()
        .map(|s| Arc::clone(s) as Arc<dyn FragmentStore>)
        .collect();
    let store =
        Arc::new(ErasureChunkStore::open(PoolName("bulk".into()), dyn_stores, policy, 1).unwrap());
    let service = ChunkService::new(
        Arc::clone(&store) as Arc<dyn ChunkStore>,
        Placement {
            pool: PoolName("bulk".into()),
        },
    );
    Pool {
        _dir: dir,
        roots,
        stores,
        store,
        service,
        addressing: AddressingKey::new([3; KEY_BYTES]),
        key: Arc::new(DataKey::new(DekEpoch(1), &[4; KEY_BYTES]).unwrap()),
    }
}

fn rs(k: u8, m: u8) -> EcProfile {
    EcProfile::ReedSolomon { k, m }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 11) as u8)
        .collect()
}

impl Pool {
    async fn write(&self, data: &[u8]) -> ChunkId {
        self.service
            .write(TENANT, &self.addressing, &self.key, data)
            .await
            .unwrap()
            .id
    }

    async fn read(&self, id: ChunkId) -> Result<Bytes, ChunkError> {
        let key = Arc::clone(&self.key);
        self.service
            .read(TENANT, id, &move |epoch| {
                (epoch == key.epoch()).then(|| Arc::clone(&key))
            })
            .await
    }

    /// Fragment indices of a chunk found on every device.
    fn fragments_on_disk(&self, id: ChunkId) -> BTreeSet<u8> {
        let mut found = BTreeSet::new();
        for store in &self.stores {
            for index in 0..32u8 {
                let key = FragmentKey {
                    tenant: TENANT,
                    chunk: id,
                    index,
                };
                if store.fragment_path(key).exists() {
                    found.insert(index);
                }
            }
        }
        found
    }

    /// The device index (into `stores`) holding fragment `index` of `id`.
    fn holder(&self, id: ChunkId, index: u8) -> usize {
        let key = FragmentKey {
            tenant: TENANT,
            chunk: id,
            index,
        };
        self.stores
            .iter()
            .position(|s| s.fragment_path(key).exists())
            .unwrap()
    }
}

fn wipe(root: &Path) {
    std::fs::remove_dir_all(root).unwrap();
}

#[tokio::test]
async fn chunks_round_trip_and_fragments_land_on_distinct_devices() {
    let pool = pool(8, EcPolicy::uniform(rs(4, 2)));
    for (seed, len) in [(1u8, 1 << 20), (2, 4 << 20), (3, 100), (4, 65_537)] {
        let data = pattern(len, seed);
        let id = pool.write(&data).await;
        assert_eq!(pool.read(id).await.unwrap(), data);
        assert_eq!(pool.fragments_on_disk(id), (0..6).collect());
        let holders: BTreeSet<usize> = (0..6).map(|i| pool.holder(id, i)).collect();
        assert_eq!(holders.len(), 6, "6 fragments on 6 distinct devices");
    }
    let written = pool.store.counters().snapshot().fragments_written;
    assert_eq!(written, 24);
    assert_eq!(pool.store.counters().snapshot().degraded_reads, 0);
}

#[tokio::test]
async fn writing_the_same_content_again_dedups() {
    let pool = pool(6, EcPolicy::uniform(rs(4, 2)));
    let data = pattern(300_000, 9);
    let first = pool
        .service
        .write(TENANT, &pool.addressing, &pool.key, &data)
        .await
        .unwrap();
    let again = pool
        .service
        .write(TENANT, &pool.addressing, &pool.key, &data)
        .await
        .unwrap();
    assert!(!first.deduplicated);
    assert!(again.deduplicated);
}

#[tokio::test]
async fn small_chunks_are_replicated_by_policy() {
    let mut policy = EcPolicy::uniform(rs(4, 2));
    policy.small_chunk_bytes_max = 64 * 1024;
    policy.small_profile = EcProfile::Replicate { copies: 3 };
    let pool = pool(6, policy);
    let small = pattern(1000, 5);
    let id = pool.write(&small).await;
    assert_eq!(pool.fragments_on_disk(id), (0..3).collect());
    for index in 0..3 {
        let key = FragmentKey {
            tenant: TENANT,
            chunk: id,
            index,
        };
        let bytes = std::fs::read(pool.stores[pool.holder(id, index)].fragment_path(key)).unwrap();
        // Each copy holds the whole frame (header + 1000 bytes + GCM tag).
        assert_eq!(bytes.len(), FRAGMENT_HEADER_BYTES + 88 + 1000 + 16);
    }
    // Losing two of three copies still reads.
    wipe(&pool.roots[pool.holder(id, 0)]);
    wipe(&pool.roots[pool.holder(id, 1)]);
    assert_eq!(pool.read(id).await.unwrap(), small);
    let large = pattern(200_000, 6);
    let id = pool.write(&large).await;
    assert_eq!(pool.fragments_on_disk(id), (0..6).collect());
}

#[tokio::test]
async fn lost_device_reads_degraded_then_rebuild_and_scrub_restore_full_redundancy() {
    let pool = pool(6, EcPolicy::uniform(rs(4, 2)));
    let mut chunks = Vec::new();
    for seed in 0..12u8 {
        let data = pattern(200_000 + seed as usize * 1000, seed);
        chunks.push((pool.write(&data).await, data));
    }
    wipe(&pool.roots[2]);
    for (id, data) in &chunks {
        assert_eq!(&pool.read(*id).await.unwrap(), data, "degraded read");
    }
    let stats = pool.store.counters().snapshot();
    assert!(stats.degraded_reads > 0, "{stats:?}");

    let report = pool.store.rebuild().await.unwrap();
    assert_eq!(report.chunks_scanned, 12);
    assert_eq!(report.chunks_unrecoverable, 0);
    assert_eq!(
        report.fragments_missing, 12,
        "one fragment of every chunk was on dev2"
    );
    assert_eq!(report.fragments_rebuilt, 12);
    for (id, _) in &chunks {
        assert_eq!(
            pool.fragments_on_disk(*id),
            (0..6).collect(),
            "full redundancy"
        );
    }
    let scrub = pool.store.scrub().await.unwrap();
    assert!(scrub.clean(), "{scrub:?}");
    assert_eq!(scrub.fragments_checked, 72);
    let degraded_before = pool.store.counters().snapshot().degraded_reads;
    for (id, data) in &chunks {
        assert_eq!(&pool.read(*id).await.unwrap(), data);
    }
    assert_eq!(
        pool.store.counters().snapshot().degraded_reads,
        degraded_before,
        "reads after rebuild are not degraded"
    );
}

#[tokio::test]
async fn flipped_bytes_are_detected_repaired_and_never_returned() {
    let pool = pool(6, EcPolicy::uniform(rs(4, 2)));
    let data = pattern(1 << 20, 11);
    let id = pool.write(&data).await;
    // Corrupt a data fragment body and a parity fragment header.
    for (index, offset) in [(1u8, FRAGMENT_HEADER_BYTES + 5000), (5, 20)] {
        let key = FragmentKey {
            tenant: TENANT,
            chunk: id,
            index,
        };
        let path = pool.stores[pool.holder(id, index)].fragment_path(key);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[offset] ^= 0x5a;
        std::fs::write(&path, &bytes).unwrap();
    }
    assert_eq!(pool.read(id).await.unwrap(), data);
    assert!(pool.store.counters().snapshot().corrupt_fragments >= 1);

    let scrub = pool.store.scrub().await.unwrap();
    assert_eq!(scrub.fragments_corrupt, 2, "{scrub:?}");
    assert_eq!(scrub.fragments_rebuilt, 2);
    assert_eq!(pool.store.counters().snapshot().scrub_repaired, 2);
    let again = pool.store.scrub().await.unwrap();
    assert!(again.clean(), "{again:?}");
    assert_eq!(again.fragments_checked, 6);
    assert_eq!(pool.read(id).await.unwrap(), data);
}

#[tokio::test]
async fn truncated_fragment_is_detected_and_repaired() {
    let pool = pool(6, EcPolicy::uniform(rs(4, 2)));
    let data = pattern(500_000, 12);
    let id = pool.write(&data).await;
    let key = FragmentKey {
        tenant: TENANT,
        chunk: id,
        index: 0,
    };
    let path = pool.stores[pool.holder(id, 0)].fragment_path(key);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    assert_eq!(pool.read(id).await.unwrap(), data);
    let scrub = pool.store.scrub().await.unwrap();
    assert_eq!(scrub.fragments_corrupt, 1);
    assert_eq!(
        std::fs::read(&path).unwrap(),
        bytes,
        "regenerated byte-exact"
    );
}

#[tokio::test]
async fn losing_more_than_m_devices_is_a_clear_error_naming_the_chunk() {
    let pool = pool(6, EcPolicy::uniform(rs(4, 2)));
    let data = pattern(300_000, 13);
    let id = pool.write(&data).await;
    for root in &pool.roots[..3] {
        wipe(root);
    }
    let error = pool.read(id).await.unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, ChunkError::Corrupt { .. }), "{message}");
    assert!(message.contains(&id.to_hex()), "{message}");
    assert!(
        message.contains("3 of 6 fragments readable, 4 needed"),
        "{message}"
    );
    let report = pool.store.rebuild().await.unwrap();
    assert_eq!(report.chunks_unrecoverable, 1);
    assert_eq!(report.lost[0].1, id);
    assert!(!report.clean());
}

#[tokio::test]
async fn a_missing_chunk_is_not_found() {
    let pool = pool(6, EcPolicy::uniform(rs(4, 2)));
    let id = ChunkId([9; 32]);
    assert!(matches!(
        pool.store.get(TENANT, id).await,
        Err(ChunkError::NotFound { .. })
    ));
    assert!(!pool.store.contains(TENANT, id).await.unwrap());
}

#[tokio::test]
async fn delete_removes_every_fragment() {
    let pool = pool(6, EcPolicy::uniform(rs(4, 2)));
    let id = pool.write(&pattern(100_000, 14)).await;
    pool.store.delete(TENANT, id).await.unwrap();
    assert!(pool.fragments_on_disk(id).is_empty());
    assert!(!pool.store.contains(TENANT, id).await.unwrap());
}

#[test]
fn placement_refuses_when_there_are_too_few_failure_domains() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let devices = |n: usize| -> Vec<Arc<dyn FragmentStore>> {
        (0..n)
            .map(|i| {
                Arc::new(
                    FsFragmentStore::open(device(1, &format!("d{i}")), dir.join(format!("d{i}")))
                        .unwrap(),
                ) as Arc<dyn FragmentStore>
            })
            .collect()
    };
    let refused = ErasureChunkStore::open(
        PoolName("p".into()),
        devices(5),
        EcPolicy::uniform(rs(4, 2)),
        1,
    )
    .err()
    .expect("5 devices cannot hold 4+2");
    assert_eq!(refused.fragments, 6);
    assert_eq!(refused.domains, 5);
    assert!(refused
        .to_string()
        .contains("cannot place 6 fragments (4+2)"));

    // Six devices on three nodes: node-distinct placement of 6 fragments is impossible.
    let on_nodes: Vec<DeviceInfo> = (0..6).map(|i| device(i / 2, &format!("d{i}"))).collect();
    let engine = PlacementEngine::new(on_nodes, 1, 6).with_domain(FailureDomain::Node);
    let refused = engine.check(rs(4, 2)).unwrap_err();
    assert_eq!((refused.domains, refused.domain), (3, "node"));
    assert!(engine.check(EcProfile::Replicate { copies: 3 }).is_ok());
}

#[test]
fn placement_spreads_over_nodes_and_is_deterministic() {
    // 5 nodes with 3 devices each; 4+2 wants distinct nodes only when there are 6: here the
    // failure domain is the device, spread evenly (at most 2 fragments per node).
    let devices: Vec<DeviceInfo> = (0..15)
        .map(|i| device(i / 3, &format!("n{}d{}", i / 3, i % 3)))
        .collect();
    let engine = PlacementEngine::new(devices.clone(), 1, 6);
    assert_eq!(engine.domain(), FailureDomain::Device);
    let mut first_devices = BTreeSet::new();
    for seed in 0..200u8 {
        let chunk = ChunkId([seed; 32]);
        let layout = engine.layout(TENANT, chunk, rs(4, 2)).unwrap();
        assert_eq!(layout, engine.layout(TENANT, chunk, rs(4, 2)).unwrap());
        let names: BTreeSet<&str> = layout.fragments.iter().map(|d| d.device.as_str()).collect();
        assert_eq!(names.len(), 6);
        for node in 0..5 {
            let on_node = layout.fragments.iter().filter(|d| d.node == node).count();
            assert!(on_node <= 2, "node {node} holds {on_node}");
        }
        let nodes: BTreeSet<u64> = layout.fragments.iter().take(5).map(|d| d.node).collect();
        assert_eq!(nodes.len(), 5, "the first five fragments are on five nodes");
        first_devices.insert(layout.fragments[0].device.clone());
    }
    assert!(first_devices.len() >= 12, "fragment 0 spreads over devices");

    // 6 nodes: every fragment on its own node.
    let devices: Vec<DeviceInfo> = (0..12).map(|i| device(i / 2, &format!("d{i}"))).collect();
    let engine = PlacementEngine::new(devices, 1, 6);
    assert_eq!(engine.domain(), FailureDomain::Node);
    for seed in 0..50u8 {
        let layout = engine
            .layout(TENANT, ChunkId([seed; 32]), rs(4, 2))
            .unwrap();
        let nodes: BTreeSet<u64> = layout.fragments.iter().map(|d| d.node).collect();
        assert_eq!(nodes.len(), 6);
    }
}

#[test]
fn profiles_parse_and_reject_nonsense() {
    assert_eq!("4+2".parse::<EcProfile>().unwrap(), rs(4, 2));
    assert_eq!("8+3".parse::<EcProfile>().unwrap(), rs(8, 3));
    assert_eq!(
        "replicate:3".parse::<EcProfile>().unwrap(),
        EcProfile::Replicate { copies: 3 }
    );
    for bad in ["0+2", "4+0", "30+3", "replicate:0", "4-2", ""] {
        assert!(bad.parse::<EcProfile>().is_err(), "{bad}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any frame, any profile, any set of up to `m` lost or corrupted fragments: decode returns
    /// the frame byte-exact; one more loss is an error, never wrong bytes.
    #[test]
    fn decode_survives_up_to_m_erasures(
        len in 1usize..20_000,
        seed in any::<u8>(),
        k in 1u8..10,
        m in 1u8..5,
        erasure_seed in any::<u64>(),
    ) {
        let codec = Codec::new();
        let profile = rs(k, m);
        let n = (k + m) as usize;
        let frame = pattern(len, seed);
        let chunk = ChunkId([seed; 32]);
        let fragments = codec.encode(profile, TENANT, chunk, &frame).unwrap();
        prop_assert_eq!(fragments.len(), n);
        let mut order: Vec<usize> = (0..n).collect();
        let mut state = erasure_seed;
        for i in (1..n).rev() {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            order.swap(i, (state >> 33) as usize % (i + 1));
        }
        let key = FragmentKey { tenant: TENANT, chunk, index: 0 };
        let lost = (erasure_seed % (m as u64 + 1)) as usize;
        let mut held: Vec<Option<Bytes>> = fragments.iter().cloned().map(Some).collect();
        for &i in &order[..lost] {
            held[i] = None;
        }
        let decoded = codec.decode(profile, key, len, &held).unwrap();
        prop_assert_eq!(&decoded[..], &frame[..]);
        let regenerated = codec.regenerate(profile, key, len, &held).unwrap();
        prop_assert_eq!(&regenerated, &fragments);
        let lost_indices: Vec<usize> = order[..lost].to_vec();
        let rebuilt = codec.rebuild_fragments(profile, key, len, &held, &lost_indices).unwrap();
        for (index, bytes) in lost_indices.iter().zip(&rebuilt) {
            prop_assert_eq!(bytes, &fragments[*index], "fragment {} rebuilt byte-exact", index);
        }
        for &i in &order[..=m as usize] {
            held[i] = None;
        }
        prop_assert!(codec.decode(profile, key, len, &held).is_err());
    }
}

#[tokio::test]
async fn rebuild_uses_a_spare_device_when_one_is_unusable() {
    let pool = pool(7, EcPolicy::uniform(rs(4, 2)));
    let mut chunks = Vec::new();
    for seed in 0..6u8 {
        let data = pattern(100_000, seed);
        chunks.push((pool.write(&data).await, data));
    }
    // Device 3 dies for good: its directory becomes a plain file, so writes there fail.
    wipe(&pool.roots[3]);
    std::fs::write(&pool.roots[3], b"dead device").unwrap();
    let report = pool.store.rebuild().await.unwrap();
    assert_eq!(report.chunks_unrecoverable, 0, "{report:?}");
    assert_eq!(report.fragments_rebuilt, report.fragments_missing);
    for (id, data) in &chunks {
        assert_eq!(
            pool.fragments_on_disk(*id),
            (0..6).collect(),
            "full redundancy"
        );
        assert_eq!(&pool.read(*id).await.unwrap(), data);
    }
    let scrub = pool.store.scrub().await.unwrap();
    assert_eq!(scrub.fragments_missing, 0, "{scrub:?}");
    assert_eq!(scrub.fragments_corrupt, 0, "{scrub:?}");
    // New writes go around the dead device too.
    let data = pattern(123_456, 99);
    let id = pool.write(&data).await;
    assert_eq!(pool.fragments_on_disk(id), (0..6).collect());
    assert_eq!(pool.read(id).await.unwrap(), data);
}

#[tokio::test]
async fn writing_a_degraded_chunk_again_restores_its_fragments() {
    let pool = pool(6, EcPolicy::uniform(rs(4, 2)));
    let data = pattern(250_000, 21);
    let id = pool.write(&data).await;
    assert!(pool.store.contains(TENANT, id).await.unwrap());
    wipe(&pool.roots[pool.holder(id, 4)]);
    assert!(
        !pool.store.contains(TENANT, id).await.unwrap(),
        "a chunk short of a fragment is not complete"
    );
    let again = pool
        .service
        .write(TENANT, &pool.addressing, &pool.key, &data)
        .await
        .unwrap();
    assert!(!again.deduplicated, "the write went through");
    assert_eq!(pool.fragments_on_disk(id), (0..6).collect());
    assert!(pool.store.contains(TENANT, id).await.unwrap());
    assert_eq!(pool.read(id).await.unwrap(), data);
}

#[tokio::test]
async fn fragments_of_another_encoding_are_never_mixed_in() {
    let pool = pool(6, EcPolicy::uniform(rs(4, 2)));
    let data = pattern(400_000, 23);
    let id = pool.write(&data).await;
    let originals: Vec<(PathBuf, Vec<u8>)> = (0..6u8)
        .map(|index| {
            let key = FragmentKey {
                tenant: TENANT,
                chunk: id,
                index,
            };
            let path = pool.stores[pool.holder(id, index)].fragment_path(key);
            let bytes = std::fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect();
    // Another encoding of a frame of the same length (as a second seal of the same content
    // would be: another nonce) lands on fragments 0 and 1, as after a crash mid-rewrite.
    let mut other = pool.store.get(TENANT, id).await.unwrap().to_vec();
    other[200] ^= 1;
    let codec = Codec::new();
    let foreign = codec.encode(rs(4, 2), TENANT, id, &other).unwrap();
    for index in [0usize, 1] {
        std::fs::write(&originals[index].0, &foreign[index]).unwrap();
    }
    assert_eq!(
        pool.read(id).await.unwrap(),
        data,
        "only the leading encoding is used"
    );
    let scrub = pool.store.scrub().await.unwrap();
    assert_eq!(scrub.fragments_corrupt, 2, "{scrub:?}");
    for (path, bytes) in &originals {
        assert_eq!(&std::fs::read(path).unwrap(), bytes, "{}", path.display());
    }
    assert!(pool.store.scrub().await.unwrap().clean());
}
