//! The key hierarchy end to end: internal KMS + key manager on a temporary directory.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::task::{Context, Poll};

use kiseki_crypto::{
    open_in_place, seal_in_place, DataKey, DekEpoch, InternalKms, KeyError, KeyManager, KeyPurpose,
    KeySource, TenantKeyMaterial, TenantKms, KEY_BYTES,
};
use kiseki_types::TenantId;

const A: TenantId = TenantId(1);
const B: TenantId = TenantId(2);

fn open(dir: &Path) -> (Arc<InternalKms>, KeyManager) {
    let kms = Arc::new(InternalKms::open(&dir.join("kms")).unwrap());
    let manager = KeyManager::open(&dir.join("keys"), kms.clone()).unwrap();
    (kms, manager)
}

fn seal(key: &DataKey, plaintext: &[u8]) -> ([u8; 12], Vec<u8>) {
    let mut data = plaintext.to_vec();
    let (nonce, tag) = seal_in_place(key, b"chunk", &mut data).unwrap();
    data.extend_from_slice(&tag);
    (nonce, data)
}

fn opens(key: &DataKey, sealed: &([u8; 12], Vec<u8>), plaintext: &[u8]) -> bool {
    let mut data = sealed.1.clone();
    matches!(open_in_place(key, sealed.0, b"chunk", &mut data), Ok(p) if p == plaintext)
}

fn same_material(left: &TenantKeyMaterial, right: &TenantKeyMaterial) -> bool {
    let deks = |m: &TenantKeyMaterial| -> Vec<(u32, [u8; KEY_BYTES])> {
        m.deks.iter().map(|(epoch, key)| (epoch.0, **key)).collect()
    };
    left.tenant == right.tenant
        && *left.addressing == *right.addressing
        && left.current == right.current
        && deks(left) == deks(right)
}

/// Polls a future that is ready at once (the embedded key source never waits).
fn ready<T>(future: impl std::future::Future<Output = T>) -> T {
    let mut future = std::pin::pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(std::task::Waker::noop()))
    {
        Poll::Ready(value) => value,
        Poll::Pending => panic!("embedded key source was not ready"),
    }
}

#[test]
fn keys_round_trip_through_the_hierarchy() {
    let dir = tempfile::tempdir().unwrap();
    let (kms, manager) = open(dir.path());
    assert!(matches!(
        manager.keyring(A),
        Err(KeyError::UnknownTenant(A))
    ));
    manager.ensure_tenant(A).unwrap();
    manager.ensure_tenant(A).unwrap();
    let keyring = manager.keyring(A).unwrap();
    assert_eq!(keyring.current().epoch(), DekEpoch(1));
    let sealed = seal(&keyring.current(), b"payload");
    assert!(opens(
        &keyring.epoch(DekEpoch(1)).unwrap(),
        &sealed,
        b"payload"
    ));
    assert!(matches!(
        keyring.epoch(DekEpoch(9)),
        Err(KeyError::UnknownEpoch { .. })
    ));

    let wrapped = kms
        .wrap(A, KeyPurpose::Addressing, &[5; KEY_BYTES])
        .unwrap();
    assert_eq!(
        *kms.unwrap(A, KeyPurpose::Addressing, &wrapped).unwrap(),
        [5; KEY_BYTES]
    );

    let material = manager.tenant_material(A).unwrap();
    let rebuilt = kiseki_crypto::TenantKeyring::from_material(&material).unwrap();
    assert!(opens(&rebuilt.current(), &sealed, b"payload"));
    assert_eq!(
        rebuilt.addressing().chunk_id(b"x"),
        keyring.addressing().chunk_id(b"x")
    );
    assert!(!format!("{material:?}").contains(&format!("{:?}", &material.addressing[..4])));
}

#[test]
fn one_tenants_kek_cannot_unwrap_anothers_keys() {
    let dir = tempfile::tempdir().unwrap();
    let (kms, manager) = open(dir.path());
    manager.ensure_tenant(A).unwrap();
    manager.ensure_tenant(B).unwrap();
    let purpose = KeyPurpose::Dek(DekEpoch(1));
    let of_a = kms.wrap(A, purpose, &[1; KEY_BYTES]).unwrap();
    let of_b = kms.wrap(B, purpose, &[2; KEY_BYTES]).unwrap();
    assert!(matches!(
        kms.unwrap(B, purpose, &of_a),
        Err(KeyError::UnwrapFailed(B))
    ));
    assert!(matches!(
        kms.unwrap(A, purpose, &of_b),
        Err(KeyError::UnwrapFailed(A))
    ));
    // Another purpose (another epoch, or the addressing slot) does not unwrap either.
    assert!(kms.unwrap(A, KeyPurpose::Dek(DekEpoch(2)), &of_a).is_err());
    assert!(kms.unwrap(A, KeyPurpose::Addressing, &of_a).is_err());
    let mut tampered = of_a.clone();
    tampered.ciphertext[3] ^= 1;
    assert!(matches!(
        kms.unwrap(A, purpose, &tampered),
        Err(KeyError::UnwrapFailed(A))
    ));
    assert!(matches!(
        kms.unwrap(TenantId(99), purpose, &of_a),
        Err(KeyError::UnknownTenant(_))
    ));

    // A's record file put in B's place is refused, not served as B's keys.
    let keys = dir.path().join("keys");
    std::fs::copy(keys.join("tenant-1.keys"), keys.join("tenant-2.keys")).unwrap();
    let (_, reopened) = open(dir.path());
    assert!(matches!(
        reopened.keyring(B),
        Err(KeyError::CorruptKeyFile { .. })
    ));
}

#[test]
fn a_destroyed_kek_leaves_keys_unrecoverable() {
    let dir = tempfile::tempdir().unwrap();
    let (kms, manager) = open(dir.path());
    manager.ensure_tenant(A).unwrap();
    manager.ensure_tenant(B).unwrap();
    manager.keyring(A).unwrap();
    manager.destroy_tenant_keys(A).unwrap();
    assert!(matches!(manager.keyring(A), Err(KeyError::KekDestroyed(A))));
    assert!(matches!(kms.create_kek(A), Err(KeyError::KekDestroyed(A))));

    // Destroying through the KMS alone is just as final for a fresh manager.
    kms.destroy_kek(B).unwrap();
    drop(manager);
    let (_, reopened) = open(dir.path());
    assert!(matches!(
        reopened.keyring(A),
        Err(KeyError::KekDestroyed(A))
    ));
    assert!(matches!(
        reopened.tenant_material(B),
        Err(KeyError::KekDestroyed(B))
    ));
}

#[test]
fn kek_rotation_rewraps_the_same_keys() {
    let dir = tempfile::tempdir().unwrap();
    let (kms, manager) = open(dir.path());
    manager.ensure_tenant(A).unwrap();
    manager.rotate_dek(A).unwrap();
    let before = manager.tenant_material(A).unwrap();
    let record_before = std::fs::read(dir.path().join("keys/tenant-1.keys")).unwrap();
    let sealed = seal(&manager.keyring(A).unwrap().current(), b"old data");

    let version = manager.rotate_kek(A).unwrap();
    assert_eq!(version.0, 2);
    assert_ne!(
        std::fs::read(dir.path().join("keys/tenant-1.keys")).unwrap(),
        record_before
    );
    assert!(same_material(&before, &manager.tenant_material(A).unwrap()));
    let fresh = kms
        .wrap(A, KeyPurpose::Addressing, &[0; KEY_BYTES])
        .unwrap();
    assert_eq!(fresh.kek_version, version);

    drop(manager);
    let (_, reopened) = open(dir.path());
    assert!(same_material(
        &before,
        &reopened.tenant_material(A).unwrap()
    ));
    assert!(opens(
        &reopened.keyring(A).unwrap().current(),
        &sealed,
        b"old data"
    ));
}

#[test]
fn dek_rotation_adds_an_epoch_and_keeps_the_old_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (_, manager) = open(dir.path());
    manager.ensure_tenant(A).unwrap();
    let first = manager.keyring(A).unwrap();
    let sealed = seal(&first.current(), b"epoch one");
    assert_eq!(manager.rotate_dek(A).unwrap(), DekEpoch(2));
    let second = manager.keyring(A).unwrap();
    assert_eq!(second.current().epoch(), DekEpoch(2));
    assert!(!opens(&second.current(), &sealed, b"epoch one"));
    assert!(opens(
        &second.epoch(DekEpoch(1)).unwrap(),
        &sealed,
        b"epoch one"
    ));
    assert_eq!(
        second.epochs().collect::<Vec<_>>(),
        vec![DekEpoch(1), DekEpoch(2)]
    );
    assert_eq!(
        first.addressing().chunk_id(b"x"),
        second.addressing().chunk_id(b"x")
    );
}

#[test]
fn a_restart_gives_identical_keys() {
    let dir = tempfile::tempdir().unwrap();
    let (_, manager) = open(dir.path());
    ready(KeySource::ensure_tenant(&manager, A)).unwrap();
    manager.rotate_dek(A).unwrap();
    let before = manager.tenant_material(A).unwrap();
    let keyring = ready(KeySource::keyring(&manager, A)).unwrap();
    let sealed = seal(&keyring.epoch(DekEpoch(1)).unwrap(), b"durable");
    drop((keyring, manager));

    let (_, reopened) = open(dir.path());
    assert!(same_material(
        &before,
        &reopened.tenant_material(A).unwrap()
    ));
    let keyring = reopened.keyring(A).unwrap();
    assert_eq!(keyring.current().epoch(), DekEpoch(2));
    assert!(opens(
        &keyring.epoch(DekEpoch(1)).unwrap(),
        &sealed,
        b"durable"
    ));
    let mode = std::fs::metadata(dir.path().join("kms/master.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn corrupt_key_files_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (_, manager) = open(dir.path());
    manager.ensure_tenant(A).unwrap();
    drop(manager);

    let record = dir.path().join("keys/tenant-1.keys");
    let mut bytes = std::fs::read(&record).unwrap();
    bytes[20] ^= 0x10;
    std::fs::write(&record, &bytes).unwrap();
    let (_, reopened) = open(dir.path());
    let error = reopened.keyring(A).unwrap_err();
    assert!(matches!(error, KeyError::CorruptKeyFile { .. }), "{error}");
    assert!(error.to_string().contains("tenant-1.keys"), "{error}");
    std::fs::write(&record, &bytes[..10]).unwrap();
    assert!(matches!(
        reopened.keyring(A),
        Err(KeyError::CorruptKeyFile { .. })
    ));
    drop(reopened);

    let store = dir.path().join("kms/kek.store");
    let good_store = std::fs::read(&store).unwrap();
    let mut damaged = good_store.clone();
    let last = damaged.len() - 10;
    damaged[last] ^= 1;
    std::fs::write(&store, &damaged).unwrap();
    let kms_open = |dir: &Path| InternalKms::open(&dir.join("kms")).err().unwrap();
    assert!(matches!(
        kms_open(dir.path()),
        KeyError::CorruptKeyFile { .. }
    ));

    std::fs::write(&store, &good_store).unwrap();
    let master = dir.path().join("kms/master.key");
    std::fs::write(&master, [9u8; KEY_BYTES]).unwrap();
    let error = kms_open(dir.path());
    assert!(error.to_string().contains("master.key"), "{error}");
    std::fs::write(&master, [9u8; 5]).unwrap();
    assert!(matches!(
        kms_open(dir.path()),
        KeyError::CorruptKeyFile { .. }
    ));
    std::fs::remove_file(&master).unwrap();
    let error = kms_open(dir.path());
    assert!(error.to_string().contains("refusing"), "{error}");
    assert!(!master.exists());
}
