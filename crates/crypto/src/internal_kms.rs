//! The built-in tenant KMS backend ("Kiseki-Internal"): every tenant's KEK versions live in one
//! file, `kek.store`, sealed with AES-256-GCM under a node master key kept in `master.key`.
//!
//! This protects KEKs against a leak of the store file alone (a backup, a copied disk image
//! without `master.key`). It is not an HSM: whoever reads both files holds every KEK. And
//! destroying a KEK only removes it from the current store: an older copy of `kek.store`
//! (a backup, unreclaimed disk blocks) still opens under the same master key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use kiseki_types::TenantId;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use crate::durable::{
    create_dir, create_new, decode_frame, encode_frame, read_optional, write_atomic,
};
use crate::kms::wrap_aad;
use crate::{open_in_place, seal_in_place, DataKey, DekEpoch, KekVersion, KeyError, KeyPurpose};
use crate::{TenantKms, WrappedKey, KEY_BYTES, NONCE_BYTES, TAG_BYTES};

const MASTER_KEY_FILE: &str = "master.key";
const STORE_FILE: &str = "kek.store";
const STORE_MAGIC: &[u8; 8] = b"KISEKIKK";
const STORE_VERSION: u16 = 1;
const STORE_AAD: &[u8] = b"kiseki.kek-store.v1";

/// The KEK versions of one tenant; a destroyed tenant keeps an empty, marked entry so its KEK
/// is never silently re-created.
#[derive(Clone, Default, Serialize, Deserialize)]
struct TenantKeks {
    current: u32,
    versions: Vec<(u32, [u8; KEY_BYTES])>,
    destroyed: bool,
}

impl TenantKeks {
    fn version(&self, version: KekVersion) -> Option<&[u8; KEY_BYTES]> {
        self.versions
            .iter()
            .find(|(number, _)| *number == version.0)
            .map(|(_, key)| key)
    }

    fn add_version(&mut self) -> Result<KekVersion, KeyError> {
        let next = self
            .current
            .checked_add(1)
            .ok_or(crate::CryptoError::InvalidKey)?;
        self.versions.push((next, random_key()?));
        self.current = next;
        Ok(KekVersion(next))
    }
}

impl Drop for TenantKeks {
    fn drop(&mut self) {
        for (_, key) in &mut self.versions {
            key.zeroize();
        }
    }
}

#[derive(Clone, Default, Serialize, Deserialize)]
struct KekStore {
    tenants: BTreeMap<u64, TenantKeks>,
}

/// The built-in KMS backend: KEKs in a file sealed under a master key. See the module docs for
/// what it does and does not protect against.
pub struct InternalKms {
    store_path: PathBuf,
    master: DataKey,
    store: Mutex<KekStore>,
}

impl InternalKms {
    /// Opens (or creates) the backend in `dir`: creates `master.key` (32 random bytes, mode
    /// 0600) on first start, and refuses to create one if a store exists without it.
    pub fn open(dir: &Path) -> Result<Self, KeyError> {
        create_dir(dir)?;
        let store_path = dir.join(STORE_FILE);
        let master = load_or_create_master_key(&dir.join(MASTER_KEY_FILE), &store_path)?;
        let store = load_store(&store_path, &master)?;
        tracing::info!(dir = %dir.display(), tenants = store.tenants.len(), "internal KMS opened");
        Ok(InternalKms {
            store_path,
            master,
            store: Mutex::new(store),
        })
    }

    fn lock_store(&self) -> std::sync::MutexGuard<'_, KekStore> {
        self.store
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Applies `change` to a copy of the store, persists it, and only then makes it current.
    fn update<R>(
        &self,
        change: impl FnOnce(&mut KekStore) -> Result<R, KeyError>,
    ) -> Result<R, KeyError> {
        let mut guard = self.lock_store();
        let mut next = guard.clone();
        let result = change(&mut next)?;
        persist_store(&self.store_path, &self.master, &next)?;
        *guard = next;
        Ok(result)
    }

    fn with_kek<R>(
        &self,
        tenant: TenantId,
        version: Option<KekVersion>,
        use_kek: impl FnOnce(KekVersion, &DataKey) -> Result<R, KeyError>,
    ) -> Result<R, KeyError> {
        let guard = self.lock_store();
        let keks = guard
            .tenants
            .get(&tenant.0)
            .ok_or(KeyError::UnknownTenant(tenant))?;
        if keks.destroyed {
            return Err(KeyError::KekDestroyed(tenant));
        }
        let version = version.unwrap_or(KekVersion(keks.current));
        let bytes = keks
            .version(version)
            .ok_or(KeyError::UnknownKekVersion { tenant, version })?;
        // A KEK is used exactly like a DEK: AES-256-GCM with a fresh random nonce per wrap.
        let kek = DataKey::new(DekEpoch(0), bytes)?;
        use_kek(version, &kek)
    }
}

impl TenantKms for InternalKms {
    fn backend_name(&self) -> &'static str {
        "Kiseki-Internal"
    }

    fn create_kek(&self, tenant: TenantId) -> Result<KekVersion, KeyError> {
        if let Some(keks) = self.lock_store().tenants.get(&tenant.0) {
            if keks.destroyed {
                return Err(KeyError::KekDestroyed(tenant));
            }
            return Ok(KekVersion(keks.current));
        }
        self.update(|store| {
            let keks = store.tenants.entry(tenant.0).or_default();
            if keks.destroyed {
                return Err(KeyError::KekDestroyed(tenant));
            }
            if keks.current > 0 {
                return Ok(KekVersion(keks.current));
            }
            keks.add_version()
        })
    }

    fn wrap(
        &self,
        tenant: TenantId,
        purpose: KeyPurpose,
        key: &[u8; KEY_BYTES],
    ) -> Result<WrappedKey, KeyError> {
        self.with_kek(tenant, None, |version, kek| {
            let mut ciphertext = key.to_vec();
            let aad = wrap_aad(tenant, version, purpose);
            let (nonce, tag) = seal_in_place(kek, &aad, &mut ciphertext)?;
            ciphertext.extend_from_slice(&tag);
            Ok(WrappedKey {
                kek_version: version,
                nonce,
                ciphertext,
            })
        })
    }

    fn unwrap(
        &self,
        tenant: TenantId,
        purpose: KeyPurpose,
        wrapped: &WrappedKey,
    ) -> Result<Zeroizing<[u8; KEY_BYTES]>, KeyError> {
        if wrapped.ciphertext.len() != KEY_BYTES + TAG_BYTES {
            return Err(KeyError::UnwrapFailed(tenant));
        }
        self.with_kek(tenant, Some(wrapped.kek_version), |version, kek| {
            let mut sealed = Zeroizing::new(wrapped.ciphertext.clone());
            let aad = wrap_aad(tenant, version, purpose);
            let opened = open_in_place(kek, wrapped.nonce, &aad, &mut sealed)
                .map_err(|_| KeyError::UnwrapFailed(tenant))?;
            let mut key = Zeroizing::new([0u8; KEY_BYTES]);
            key.copy_from_slice(opened);
            Ok(key)
        })
    }

    fn rotate_kek(&self, tenant: TenantId) -> Result<KekVersion, KeyError> {
        self.update(|store| {
            let keks = store
                .tenants
                .get_mut(&tenant.0)
                .ok_or(KeyError::UnknownTenant(tenant))?;
            if keks.destroyed {
                return Err(KeyError::KekDestroyed(tenant));
            }
            keks.add_version()
        })
    }

    fn destroy_kek(&self, tenant: TenantId) -> Result<(), KeyError> {
        self.update(|store| {
            let keks = store
                .tenants
                .get_mut(&tenant.0)
                .ok_or(KeyError::UnknownTenant(tenant))?;
            keks.destroyed = true;
            for (_, key) in &mut keks.versions {
                key.zeroize();
            }
            keks.versions.clear();
            Ok(())
        })?;
        tracing::warn!(%tenant, "tenant KEK destroyed: its keys are unrecoverable");
        Ok(())
    }
}

/// 32 bytes from the system random generator.
pub(crate) fn random_key() -> Result<[u8; KEY_BYTES], KeyError> {
    let mut key = [0u8; KEY_BYTES];
    aws_lc_rs::rand::fill(&mut key).map_err(|_| crate::CryptoError::Random)?;
    Ok(key)
}

fn load_or_create_master_key(path: &Path, store_path: &Path) -> Result<DataKey, KeyError> {
    let bytes = match read_optional(path)? {
        Some(bytes) => Zeroizing::new(bytes),
        None => {
            if store_path.exists() {
                return Err(KeyError::corrupt(
                    path,
                    "missing while kek.store exists: refusing to create a new master key",
                ));
            }
            let fresh = Zeroizing::new(random_key()?);
            if create_new(path, fresh.as_slice())? {
                tracing::info!(path = %path.display(), "created a new KMS master key");
                Zeroizing::new(fresh.to_vec())
            } else {
                Zeroizing::new(read_optional(path)?.unwrap_or_default())
            }
        }
    };
    if bytes.len() != KEY_BYTES {
        let reason = format!("holds {} bytes, a master key has {KEY_BYTES}", bytes.len());
        return Err(KeyError::corrupt(path, reason));
    }
    Ok(DataKey::new(DekEpoch(0), &bytes)?)
}

fn load_store(path: &Path, master: &DataKey) -> Result<KekStore, KeyError> {
    let Some(file) = read_optional(path)? else {
        return Ok(KekStore::default());
    };
    let body = decode_frame(path, STORE_MAGIC, STORE_VERSION, &file)?;
    if body.len() < NONCE_BYTES + TAG_BYTES {
        return Err(KeyError::corrupt(path, "sealed store too short"));
    }
    let mut nonce = [0u8; NONCE_BYTES];
    nonce.copy_from_slice(&body[..NONCE_BYTES]);
    let mut sealed = Zeroizing::new(body[NONCE_BYTES..].to_vec());
    let plaintext = open_in_place(master, nonce, STORE_AAD, &mut sealed).map_err(|_| {
        KeyError::corrupt(
            path,
            "cannot authenticate under master.key: wrong key or altered file",
        )
    })?;
    let config = bincode::config::standard();
    let (store, _): (KekStore, usize) = bincode::serde::decode_from_slice(plaintext, config)
        .map_err(|error| KeyError::corrupt(path, format!("cannot decode: {error}")))?;
    Ok(store)
}

fn persist_store(path: &Path, master: &DataKey, store: &KekStore) -> Result<(), KeyError> {
    let config = bincode::config::standard();
    let mut plaintext = Zeroizing::new(
        bincode::serde::encode_to_vec(store, config)
            .map_err(|error| KeyError::corrupt(path, format!("cannot encode: {error}")))?,
    );
    let (nonce, tag) = seal_in_place(master, STORE_AAD, &mut plaintext)?;
    let mut body = Vec::with_capacity(NONCE_BYTES + plaintext.len() + TAG_BYTES);
    body.extend_from_slice(&nonce);
    body.extend_from_slice(&plaintext);
    body.extend_from_slice(&tag);
    write_atomic(
        path,
        &encode_frame(path, STORE_MAGIC, STORE_VERSION, &body)?,
    )
}
