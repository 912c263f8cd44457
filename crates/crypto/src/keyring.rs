use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use kiseki_types::TenantId;
use zeroize::Zeroizing;

use crate::{AddressingKey, DataKey, DekEpoch, KeyError, KEY_BYTES};

/// Most DEK epochs one tenant may have: bounds key records and key-service messages.
pub const DEK_EPOCHS_MAX: usize = 4096;

/// A tenant's unwrapped keys as raw bytes, for sending to a storage node (by the key server)
/// and building a [`TenantKeyring`] there. Every key is zeroized on drop.
pub struct TenantKeyMaterial {
    /// The tenant.
    pub tenant: TenantId,
    /// The addressing key.
    pub addressing: Zeroizing<[u8; KEY_BYTES]>,
    /// The epoch new writes use.
    pub current: DekEpoch,
    /// Every DEK, by epoch.
    pub deks: Vec<(DekEpoch, Zeroizing<[u8; KEY_BYTES]>)>,
}

impl fmt::Debug for TenantKeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let epochs: Vec<u32> = self.deks.iter().map(|(epoch, _)| epoch.0).collect();
        write!(
            f,
            "TenantKeyMaterial({}, current {}, epochs {epochs:?})",
            self.tenant, self.current.0
        )
    }
}

/// The unwrapped keys of one tenant, ready to use: the addressing key, the current DEK for new
/// writes and every older DEK for reads. Immutable; a rotation yields a new keyring.
pub struct TenantKeyring {
    tenant: TenantId,
    addressing: AddressingKey,
    current: Arc<DataKey>,
    deks: BTreeMap<DekEpoch, Arc<DataKey>>,
}

impl TenantKeyring {
    /// Builds a keyring, checking the material is complete and consistent.
    pub fn from_material(material: &TenantKeyMaterial) -> Result<Self, KeyError> {
        let tenant = material.tenant;
        let invalid = |reason: &str| KeyError::InvalidMaterial {
            tenant,
            reason: reason.into(),
        };
        if material.deks.len() > DEK_EPOCHS_MAX {
            return Err(invalid("more DEK epochs than allowed"));
        }
        let mut deks = BTreeMap::new();
        for (epoch, bytes) in &material.deks {
            let key = Arc::new(DataKey::new(*epoch, bytes.as_slice())?);
            if deks.insert(*epoch, key).is_some() {
                return Err(invalid("a DEK epoch appears twice"));
            }
        }
        let current = deks
            .get(&material.current)
            .cloned()
            .ok_or_else(|| invalid("no current DEK"))?;
        let addressing = AddressingKey::new(*material.addressing);
        Ok(TenantKeyring {
            tenant,
            addressing,
            current,
            deks,
        })
    }

    /// The tenant the keys belong to.
    pub fn tenant(&self) -> TenantId {
        self.tenant
    }

    /// The addressing key (content addresses of this tenant's chunks).
    pub fn addressing(&self) -> &AddressingKey {
        &self.addressing
    }

    /// The DEK new writes use.
    pub fn current(&self) -> Arc<DataKey> {
        Arc::clone(&self.current)
    }

    /// The DEK of `epoch`, as recorded in a chunk header.
    pub fn epoch(&self, epoch: DekEpoch) -> Result<Arc<DataKey>, KeyError> {
        self.deks
            .get(&epoch)
            .cloned()
            .ok_or(KeyError::UnknownEpoch {
                tenant: self.tenant,
                epoch,
            })
    }

    /// Every epoch this keyring holds, oldest first.
    pub fn epochs(&self) -> impl Iterator<Item = DekEpoch> + '_ {
        self.deks.keys().copied()
    }
}

impl fmt::Debug for TenantKeyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let current = self.current.epoch().0;
        write!(
            f,
            "TenantKeyring({}, current {current}, {} epochs)",
            self.tenant,
            self.deks.len()
        )
    }
}
