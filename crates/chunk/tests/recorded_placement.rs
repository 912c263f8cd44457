//! Recorded placement in an erasure-coded store: every put notes where its fragments went; once
//! those layouts are recorded (here in a plain map standing in for the shard state), reads find
//! every fragment at its recorded device with no probing, even after devices were added to the
//! pool (new epoch, new ranking), while the derived ranking alone has to probe; a rebuild that
//! moves a fragment onto a spare notes a layout naming the spare.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use kiseki_chunk::{
    device_list_epoch, ChunkService, ChunkStore, DeviceClass, DeviceId, DeviceInfo, EcPolicy,
    EcProfile, ErasureChunkStore, FragmentKey, FragmentStore, FsFragmentStore, Placement,
    PlacementBook, PlacementJournal, PoolName, RecordedLayout,
};
use kiseki_crypto::{AddressingKey, DataKey, DekEpoch, KEY_BYTES};
use kiseki_types::{ChunkId, TenantId};

const TENANT: TenantId = TenantId(3);

/// The recorded layouts (what the shard state holds).
#[derive(Default)]
struct Book(Mutex<HashMap<ChunkId, RecordedLayout>>);

impl PlacementBook for Book {
    fn recorded(&self, tenant: TenantId, chunk: ChunkId) -> Option<RecordedLayout> {
        assert_eq!(tenant, TENANT);
        self.0.lock().unwrap().get(&chunk).cloned()
    }
}

impl Book {
    fn record(&self, layouts: Vec<(ChunkId, RecordedLayout)>) {
        self.0.lock().unwrap().extend(layouts);
    }
}

fn info(name: &str) -> DeviceInfo {
    DeviceInfo {
        node: 1,
        device: name.to_owned(),
        class: DeviceClass::BulkNvme,
    }
}

struct Pool {
    roots: Vec<PathBuf>,
    store: Arc<ErasureChunkStore>,
    service: ChunkService,
}

fn open(root: &std::path::Path, devices: usize, journal: Option<Arc<PlacementJournal>>) -> Pool {
    let roots: Vec<PathBuf> = (0..devices).map(|i| root.join(format!("dev{i}"))).collect();
    let stores: Vec<Arc<dyn FragmentStore>> = roots
        .iter()
        .enumerate()
        .map(|(i, dir)| {
            Arc::new(FsFragmentStore::open(info(&format!("dev{i}")), dir).unwrap())
                as Arc<dyn FragmentStore>
        })
        .collect();
    let infos: Vec<DeviceInfo> = stores.iter().map(|s| s.device().clone()).collect();
    let policy = EcPolicy::uniform(EcProfile::ReedSolomon { k: 4, m: 2 });
    let mut store = ErasureChunkStore::open(
        PoolName("bulk".into()),
        stores,
        policy,
        device_list_epoch(&infos),
    )
    .unwrap();
    if let Some(journal) = journal {
        store = store.with_journal(journal);
    }
    let store = Arc::new(store);
    let service = ChunkService::new(
        Arc::clone(&store) as Arc<dyn ChunkStore>,
        Placement {
            pool: PoolName("bulk".into()),
        },
    );
    Pool {
        roots,
        store,
        service,
    }
}

fn keys() -> (AddressingKey, Arc<DataKey>) {
    (
        AddressingKey::new([5; KEY_BYTES]),
        Arc::new(DataKey::new(DekEpoch(1), &[6; KEY_BYTES]).unwrap()),
    )
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

async fn read_all(pool: &Pool, chunks: &[(ChunkId, Vec<u8>)]) {
    let (_, key) = keys();
    for (id, data) in chunks {
        let key = Arc::clone(&key);
        let back = pool
            .service
            .read(TENANT, *id, &move |epoch| {
                (epoch == key.epoch()).then(|| Arc::clone(&key))
            })
            .await
            .unwrap();
        assert_eq!(&back[..], &data[..]);
    }
}

#[tokio::test]
async fn recorded_layouts_find_fragments_after_devices_are_added_and_follow_rebuilds() {
    let dir = tempfile::tempdir().unwrap();
    let book = Arc::new(Book::default());
    let journal = Arc::new(PlacementJournal::new());
    journal.set_book(Arc::clone(&book) as Arc<dyn PlacementBook>);
    let pool = open(dir.path(), 6, Some(Arc::clone(&journal)));
    let (addressing, key) = keys();
    let mut chunks = Vec::new();
    for seed in 0..12u8 {
        let data = pattern(50_000 + usize::from(seed) * 1000, seed);
        let written = pool
            .service
            .write(TENANT, &addressing, &key, &data)
            .await
            .unwrap();
        chunks.push((written.id, data));
    }
    let ids: Vec<ChunkId> = chunks.iter().map(|(id, _)| *id).collect();
    let fresh = journal.take_fresh(TENANT, &ids);
    assert_eq!(fresh.len(), chunks.len(), "every put noted its layout");
    for (id, layout) in &fresh {
        assert_eq!(layout.profile, EcProfile::ReedSolomon { k: 4, m: 2 });
        assert_ne!(layout.generation, 0);
        for (index, (node, device)) in layout.fragments.iter().enumerate() {
            let holder = pool.store.device_of(*node, *device).expect("a pool device");
            let key = FragmentKey {
                tenant: TENANT,
                chunk: *id,
                index: index as u8,
            };
            assert!(
                holder.get_fragment(key).await.is_ok(),
                "fragment {index} where recorded"
            );
        }
    }
    book.record(fresh);
    drop(pool);

    // Six more devices: a new epoch and a new ranking.
    let derived_only = open(dir.path(), 12, None);
    read_all(&derived_only, &chunks).await;
    assert!(
        derived_only.store.counters().snapshot().placement_scans > 0,
        "the new ranking alone misses fragments"
    );
    let journal = Arc::new(PlacementJournal::new());
    journal.set_book(Arc::clone(&book) as Arc<dyn PlacementBook>);
    let recorded = open(dir.path(), 12, Some(Arc::clone(&journal)));
    read_all(&recorded, &chunks).await;
    let stats = recorded.store.counters().snapshot();
    assert_eq!(stats.placement_scans, 0, "{stats:?}");
    assert!(stats.placement_recorded_lookups >= chunks.len() as u64);

    // dev1 dies for good: the rebuild writes its fragments onto spares and notes them.
    let dead = DeviceId::of("dev1");
    std::fs::remove_dir_all(&recorded.roots[1]).unwrap();
    std::fs::write(&recorded.roots[1], b"dead device").unwrap();
    let report = recorded.store.rebuild().await.unwrap();
    assert!(report.fragments_rebuilt > 0, "{report:?}");
    let moved = journal.take_moved(usize::MAX);
    assert_eq!(
        moved.len() as u64,
        report.chunks_scanned - report.chunks_healthy
    );
    for (tenant, id, layout) in &moved {
        assert_eq!(*tenant, TENANT);
        assert!(!layout.fragments.iter().any(|(_, device)| *device == dead));
        let before = book.recorded(TENANT, *id).unwrap();
        let spare = layout
            .fragments
            .iter()
            .zip(&before.fragments)
            .find(|(now, then)| now != then)
            .map(|(now, _)| now.1)
            .expect("one fragment moved");
        assert!(recorded.store.device_of(1, spare).is_some());
    }
    book.record(
        moved
            .into_iter()
            .map(|(_, id, layout)| (id, layout))
            .collect(),
    );
    let scans = recorded.store.counters().snapshot().placement_scans;
    read_all(&recorded, &chunks).await;
    assert_eq!(recorded.store.counters().snapshot().placement_scans, scans);
}
