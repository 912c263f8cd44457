//! The system key manager: per tenant, an addressing key and DEK epochs, generated here and
//! stored only wrapped by the tenant's KEK (one record file per tenant). Unwrapped keyrings are
//! cached in memory, one per tenant.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use kiseki_types::TenantId;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::durable::{create_dir, decode_frame, encode_frame, read_optional, write_atomic};
use crate::internal_kms::random_key;
use crate::{DekEpoch, KekVersion, KeyError, KeyPurpose, TenantKeyMaterial, TenantKeyring};
use crate::{TenantKms, WrappedKey, DEK_EPOCHS_MAX};

const RECORD_MAGIC: &[u8; 8] = b"KISEKIKR";
const RECORD_VERSION: u16 = 1;

/// What is persisted for one tenant: only wrapped keys.
#[derive(Clone, Serialize, Deserialize)]
struct TenantRecord {
    tenant: TenantId,
    addressing: WrappedKey,
    current: DekEpoch,
    deks: Vec<(DekEpoch, WrappedKey)>,
}

/// The system key manager. Mutations are serialized; cached keyrings are served without
/// waiting for them.
pub struct KeyManager {
    dir: PathBuf,
    kms: Arc<dyn TenantKms>,
    /// Records loaded so far. Held while loading, mutating or building a keyring, and always
    /// taken before `keyrings`.
    records: Mutex<HashMap<TenantId, TenantRecord>>,
    keyrings: RwLock<HashMap<TenantId, Arc<TenantKeyring>>>,
}

impl KeyManager {
    /// Opens the key manager storing its records in `dir`, with KEKs held by `kms`.
    pub fn open(dir: &Path, kms: Arc<dyn TenantKms>) -> Result<Self, KeyError> {
        create_dir(dir)?;
        tracing::info!(dir = %dir.display(), kms = kms.backend_name(), "key manager opened");
        Ok(KeyManager {
            dir: dir.to_owned(),
            kms,
            records: Mutex::new(HashMap::new()),
            keyrings: RwLock::new(HashMap::new()),
        })
    }

    /// Creates the tenant's KEK, addressing key and DEK epoch 1 unless they exist.
    pub fn ensure_tenant(&self, tenant: TenantId) -> Result<(), KeyError> {
        let mut records = self.lock_records();
        match self.record(&mut records, tenant) {
            Ok(_) => return Ok(()),
            Err(KeyError::UnknownTenant(_)) => {}
            Err(error) => return Err(error),
        }
        // create_kek is idempotent, so a crash before the record is written is harmless.
        self.kms.create_kek(tenant)?;
        let addressing = self.wrap_new(tenant, KeyPurpose::Addressing)?;
        let first = DekEpoch(1);
        let dek = self.wrap_new(tenant, KeyPurpose::Dek(first))?;
        let record = TenantRecord {
            tenant,
            addressing,
            current: first,
            deks: vec![(first, dek)],
        };
        self.persist(&record)?;
        records.insert(tenant, record);
        tracing::info!(%tenant, "tenant keys created");
        Ok(())
    }

    /// The tenant's unwrapped keys, from the cache or unwrapped through the KMS.
    pub fn keyring(&self, tenant: TenantId) -> Result<Arc<TenantKeyring>, KeyError> {
        if let Some(keyring) = self.cached(tenant) {
            return Ok(keyring);
        }
        let mut records = self.lock_records();
        // Another caller may have built it while this one waited for the lock.
        if let Some(keyring) = self.cached(tenant) {
            return Ok(keyring);
        }
        let record = self.record(&mut records, tenant)?;
        let keyring = Arc::new(TenantKeyring::from_material(&self.unwrap_all(record)?)?);
        self.write_keyrings().insert(tenant, Arc::clone(&keyring));
        Ok(keyring)
    }

    /// The tenant's keys as bytes, for the key server to send to a storage node.
    pub fn tenant_material(&self, tenant: TenantId) -> Result<TenantKeyMaterial, KeyError> {
        let mut records = self.lock_records();
        let record = self.record(&mut records, tenant)?;
        self.unwrap_all(record)
    }

    /// Adds a DEK epoch that new writes use from now on; older epochs stay readable.
    pub fn rotate_dek(&self, tenant: TenantId) -> Result<DekEpoch, KeyError> {
        let mut records = self.lock_records();
        let mut record = self.record(&mut records, tenant)?.clone();
        if record.deks.len() >= DEK_EPOCHS_MAX {
            return Err(KeyError::TooManyEpochs(tenant));
        }
        let last = record
            .deks
            .iter()
            .map(|(epoch, _)| epoch.0)
            .max()
            .unwrap_or(0);
        let epoch = DekEpoch(last.checked_add(1).ok_or(KeyError::TooManyEpochs(tenant))?);
        let wrapped = self.wrap_new(tenant, KeyPurpose::Dek(epoch))?;
        record.deks.push((epoch, wrapped));
        record.current = epoch;
        self.persist(&record)?;
        records.insert(tenant, record);
        self.write_keyrings().remove(&tenant);
        tracing::info!(%tenant, epoch = epoch.0, "DEK rotated");
        Ok(epoch)
    }

    /// Rotates the tenant's KEK and re-wraps every stored key under the new version. The keys
    /// themselves do not change, so no data is rewritten and cached keyrings stay valid.
    pub fn rotate_kek(&self, tenant: TenantId) -> Result<KekVersion, KeyError> {
        let mut records = self.lock_records();
        let mut record = self.record(&mut records, tenant)?.clone();
        let version = self.kms.rotate_kek(tenant)?;
        record.addressing = self.rewrap(tenant, KeyPurpose::Addressing, &record.addressing)?;
        for (epoch, wrapped) in &mut record.deks {
            *wrapped = self.rewrap(tenant, KeyPurpose::Dek(*epoch), wrapped)?;
        }
        self.persist(&record)?;
        records.insert(tenant, record);
        tracing::info!(%tenant, kek = %version, "KEK rotated, keys re-wrapped");
        Ok(version)
    }

    /// Crypto-shreds the tenant: destroys its KEK and drops its cached keys. Keyrings already
    /// handed out stay usable until their holders drop them.
    pub fn destroy_tenant_keys(&self, tenant: TenantId) -> Result<(), KeyError> {
        let _records = self.lock_records();
        self.kms.destroy_kek(tenant)?;
        self.write_keyrings().remove(&tenant);
        Ok(())
    }

    fn cached(&self, tenant: TenantId) -> Option<Arc<TenantKeyring>> {
        let keyrings = self
            .keyrings
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        keyrings.get(&tenant).cloned()
    }

    fn write_keyrings(
        &self,
    ) -> std::sync::RwLockWriteGuard<'_, HashMap<TenantId, Arc<TenantKeyring>>> {
        self.keyrings
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn lock_records(&self) -> std::sync::MutexGuard<'_, HashMap<TenantId, TenantRecord>> {
        self.records
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The tenant's record, loaded from disk on first use.
    fn record<'a>(
        &self,
        records: &'a mut HashMap<TenantId, TenantRecord>,
        tenant: TenantId,
    ) -> Result<&'a TenantRecord, KeyError> {
        match records.entry(tenant) {
            Entry::Occupied(entry) => Ok(entry.into_mut()),
            Entry::Vacant(entry) => Ok(entry.insert(self.load(tenant)?)),
        }
    }

    fn record_path(&self, tenant: TenantId) -> PathBuf {
        self.dir.join(format!("tenant-{}.keys", tenant.0))
    }

    fn load(&self, tenant: TenantId) -> Result<TenantRecord, KeyError> {
        let path = self.record_path(tenant);
        let file = read_optional(&path)?.ok_or(KeyError::UnknownTenant(tenant))?;
        let payload = decode_frame(&path, RECORD_MAGIC, RECORD_VERSION, &file)?;
        let config = bincode::config::standard();
        let (record, _): (TenantRecord, usize) = bincode::serde::decode_from_slice(payload, config)
            .map_err(|error| KeyError::corrupt(&path, format!("cannot decode: {error}")))?;
        if record.tenant != tenant {
            return Err(KeyError::corrupt(
                &path,
                format!("holds the keys of {}", record.tenant),
            ));
        }
        Ok(record)
    }

    fn persist(&self, record: &TenantRecord) -> Result<(), KeyError> {
        let path = self.record_path(record.tenant);
        let payload = bincode::serde::encode_to_vec(record, bincode::config::standard())
            .map_err(|error| KeyError::corrupt(&path, format!("cannot encode: {error}")))?;
        write_atomic(
            &path,
            &encode_frame(&path, RECORD_MAGIC, RECORD_VERSION, &payload)?,
        )
    }

    fn wrap_new(&self, tenant: TenantId, purpose: KeyPurpose) -> Result<WrappedKey, KeyError> {
        let key = Zeroizing::new(random_key()?);
        self.kms.wrap(tenant, purpose, &key)
    }

    fn rewrap(
        &self,
        tenant: TenantId,
        purpose: KeyPurpose,
        wrapped: &WrappedKey,
    ) -> Result<WrappedKey, KeyError> {
        let key = self.kms.unwrap(tenant, purpose, wrapped)?;
        self.kms.wrap(tenant, purpose, &key)
    }

    fn unwrap_all(&self, record: &TenantRecord) -> Result<TenantKeyMaterial, KeyError> {
        let tenant = record.tenant;
        let addressing = self
            .kms
            .unwrap(tenant, KeyPurpose::Addressing, &record.addressing)?;
        let mut deks = Vec::with_capacity(record.deks.len());
        for (epoch, wrapped) in &record.deks {
            deks.push((
                *epoch,
                self.kms.unwrap(tenant, KeyPurpose::Dek(*epoch), wrapped)?,
            ));
        }
        Ok(TenantKeyMaterial {
            tenant,
            addressing,
            current: record.current,
            deks,
        })
    }
}
