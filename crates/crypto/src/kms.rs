use std::fmt;

use kiseki_types::TenantId;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::{DekEpoch, KeyError, KEY_BYTES, NONCE_BYTES};

/// The version of a tenant's KEK: rotation adds a version; wrapped keys record the one used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct KekVersion(pub u32);

impl fmt::Display for KekVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.0)
    }
}

/// What a wrapped key is for. It is bound into the wrapping's associated data, so a wrapped
/// key moved to another slot (another epoch, or addressing vs. data) fails to unwrap.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyPurpose {
    /// The tenant's addressing key (keyed BLAKE3 content addresses).
    Addressing,
    /// The tenant's DEK of one epoch.
    Dek(DekEpoch),
}

impl KeyPurpose {
    /// A stable label for the purpose, as bound into associated data.
    pub fn label(self) -> String {
        match self {
            KeyPurpose::Addressing => "addressing".to_owned(),
            KeyPurpose::Dek(epoch) => format!("dek:{}", epoch.0),
        }
    }
}

/// A key sealed by a tenant KEK: AES-256-GCM over the 32 key bytes, with the tenant id, the
/// purpose label and the KEK version in the associated data.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrappedKey {
    /// The KEK version that sealed the key.
    pub kek_version: KekVersion,
    /// The AES-GCM nonce.
    pub nonce: [u8; NONCE_BYTES],
    /// The sealed key followed by its 16-byte tag.
    pub ciphertext: Vec<u8>,
}

impl fmt::Debug for WrappedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "WrappedKey(kek {}, {} bytes)",
            self.kek_version,
            self.ciphertext.len()
        )
    }
}

/// The associated data of a wrapping: version tag, tenant, KEK version and purpose.
pub fn wrap_aad(tenant: TenantId, kek_version: KekVersion, purpose: KeyPurpose) -> Vec<u8> {
    let mut aad = b"kiseki.wrap.v1\0".to_vec();
    aad.extend_from_slice(&tenant.0.to_le_bytes());
    aad.extend_from_slice(&kek_version.0.to_le_bytes());
    aad.extend_from_slice(purpose.label().as_bytes());
    aad
}

/// A tenant KMS backend: it holds the tenants' KEKs and wraps and unwraps keys with them.
/// Plain KEKs never leave it. Implementations: [`crate::InternalKms`] now; Vault, KMIP,
/// AWS KMS and PKCS#11 later.
///
/// The calls are synchronous; an async caller runs them where blocking is allowed
/// (`spawn_blocking`), since backends may do disk or network I/O.
pub trait TenantKms: Send + Sync {
    /// A name for logs and errors (for example "Kiseki-Internal").
    fn backend_name(&self) -> &'static str;

    /// Creates the tenant's KEK if it has none; returns its current version. Idempotent, but
    /// fails with [`KeyError::KekDestroyed`] once the tenant's KEK was destroyed.
    fn create_kek(&self, tenant: TenantId) -> Result<KekVersion, KeyError>;

    /// Seals `key` under the tenant's current KEK for `purpose`.
    fn wrap(
        &self,
        tenant: TenantId,
        purpose: KeyPurpose,
        key: &[u8; KEY_BYTES],
    ) -> Result<WrappedKey, KeyError>;

    /// Opens a key sealed by [`TenantKms::wrap`] for the same tenant and purpose.
    fn unwrap(
        &self,
        tenant: TenantId,
        purpose: KeyPurpose,
        wrapped: &WrappedKey,
    ) -> Result<Zeroizing<[u8; KEY_BYTES]>, KeyError>;

    /// Adds a new KEK version used by later wraps; older versions still unwrap.
    fn rotate_kek(&self, tenant: TenantId) -> Result<KekVersion, KeyError>;

    /// Destroys every version of the tenant's KEK: keys wrapped by it become unrecoverable.
    fn destroy_kek(&self, tenant: TenantId) -> Result<(), KeyError>;
}
