//! Frames uploaded pre-sealed (by a native client) are opened and checked against their chunk
//! id before they are stored: a frame that does not hold the content its id promises is refused
//! and nothing is written, so later writes of that content are never deduplicated against it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use bytes::Bytes;
use kiseki_chunk::{
    ChunkError, ChunkService, ChunkStore, MemoryChunkStore, Placement, PoolName, HEADER_BYTES,
};
use kiseki_crypto::{AddressingKey, DataKey, DekEpoch, KEY_BYTES};
use kiseki_types::{ChunkId, TenantId};

const TENANT: TenantId = TenantId(7);

struct Fixture {
    store: Arc<MemoryChunkStore>,
    service: ChunkService,
    addressing: AddressingKey,
    key: Arc<DataKey>,
}

impl Fixture {
    fn new() -> Self {
        let store = Arc::new(MemoryChunkStore::new());
        let placement = Placement {
            pool: PoolName("default".into()),
        };
        let service = ChunkService::new(Arc::clone(&store) as Arc<dyn ChunkStore>, placement);
        Fixture {
            store,
            service,
            addressing: AddressingKey::new([3; KEY_BYTES]),
            key: Arc::new(DataKey::new(DekEpoch(1), &[4; KEY_BYTES]).unwrap()),
        }
    }

    async fn upload(&self, id: ChunkId, frame: Bytes) -> Result<bool, ChunkError> {
        let key = Arc::clone(&self.key);
        self.service
            .store_sealed(TENANT, id, frame, None, &self.addressing, &move |epoch| {
                (epoch == key.epoch()).then(|| Arc::clone(&key))
            })
            .await
    }

    async fn stored(&self, id: ChunkId) -> bool {
        self.store.contains(TENANT, id).await.unwrap()
    }
}

fn content(seed: u8) -> Vec<u8> {
    (0..100_000u32)
        .map(|i| (i as u8).wrapping_mul(13) ^ seed)
        .collect()
}

fn assert_rejected(result: Result<bool, ChunkError>, what: &str) {
    match result {
        Err(ChunkError::Corrupt { reason, .. }) => {
            assert!(
                reason.contains("uploaded frame rejected"),
                "{what}: {reason}"
            )
        }
        other => panic!("{what}: expected a rejection, got {other:?}"),
    }
}

#[tokio::test]
async fn an_honest_frame_is_stored_and_reads_back() {
    let fixture = Fixture::new();
    let plaintext = content(1);
    let id = fixture.addressing.chunk_id(&plaintext);
    let frame = ChunkService::seal(TENANT, id, &fixture.key, &plaintext).unwrap();
    assert!(!fixture.upload(id, frame.clone()).await.unwrap());
    assert!(
        fixture.upload(id, frame).await.unwrap(),
        "second upload dedups"
    );
    let key = Arc::clone(&fixture.key);
    let read = fixture
        .service
        .read(TENANT, id, &move |_| Some(Arc::clone(&key)))
        .await
        .unwrap();
    assert_eq!(&read[..], &plaintext[..]);
}

#[tokio::test]
async fn a_frame_sealed_under_another_id_is_refused_and_not_stored() {
    let fixture = Fixture::new();
    let garbage = content(2);
    let honest = content(3);
    let claimed = fixture.addressing.chunk_id(&honest);
    // Well-formed and authentic under the claimed id, but holding other content.
    let frame = ChunkService::seal(TENANT, claimed, &fixture.key, &garbage).unwrap();
    assert_rejected(fixture.upload(claimed, frame).await, "wrong content");
    assert!(!fixture.stored(claimed).await);

    // The honest write of that content is stored, not deduplicated against garbage.
    let written = fixture
        .service
        .write(TENANT, &fixture.addressing, &fixture.key, &honest)
        .await
        .unwrap();
    assert_eq!(written.id, claimed);
    assert!(!written.deduplicated);
}

#[tokio::test]
async fn a_flipped_ciphertext_byte_with_fixed_checksums_is_refused() {
    let fixture = Fixture::new();
    let plaintext = content(4);
    let id = fixture.addressing.chunk_id(&plaintext);
    let frame = ChunkService::seal(TENANT, id, &fixture.key, &plaintext).unwrap();
    let mut bytes = frame.to_vec();
    bytes[HEADER_BYTES + 1000] ^= 0x40;
    // Recompute the body CRC and then the header CRC, so only the GCM tag can notice.
    let body_crc = crc32c::crc32c(&bytes[HEADER_BYTES..]);
    bytes[76..80].copy_from_slice(&body_crc.to_le_bytes());
    let header_crc = crc32c::crc32c(&bytes[0..84]);
    bytes[84..88].copy_from_slice(&header_crc.to_le_bytes());
    assert_rejected(fixture.upload(id, Bytes::from(bytes)).await, "flipped byte");
    assert!(!fixture.stored(id).await);
}

#[tokio::test]
async fn a_frame_of_an_unknown_epoch_is_refused() {
    let fixture = Fixture::new();
    let plaintext = content(5);
    let id = fixture.addressing.chunk_id(&plaintext);
    let other_epoch = DataKey::new(DekEpoch(9), &[4; KEY_BYTES]).unwrap();
    let frame = ChunkService::seal(TENANT, id, &other_epoch, &plaintext).unwrap();
    assert!(matches!(
        fixture.upload(id, frame).await,
        Err(ChunkError::MissingKey { epoch: 9, .. })
    ));
    assert!(!fixture.stored(id).await);
}
