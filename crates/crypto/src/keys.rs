use std::fmt;

use aws_lc_rs::aead::{LessSafeKey, UnboundKey, AES_256_GCM};
use kiseki_types::ChunkId;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::CryptoError;

/// Bytes of every symmetric key Kiseki uses.
pub const KEY_BYTES: usize = 32;

/// The epoch of a DEK: chunk headers record it, so keys rotate by adding an epoch and
/// re-wrapping, never by rewriting data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DekEpoch(pub u32);

/// A data-encryption key of one tenant and epoch, ready for AES-256-GCM.
pub struct DataKey {
    epoch: DekEpoch,
    aead: LessSafeKey,
}

impl DataKey {
    /// Builds a key from raw bytes (which the caller should zeroize).
    pub fn new(epoch: DekEpoch, bytes: &[u8]) -> Result<Self, CryptoError> {
        let unbound = UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| CryptoError::InvalidKey)?;
        Ok(DataKey {
            epoch,
            aead: LessSafeKey::new(unbound),
        })
    }

    /// A fresh key from the system random generator, for keys that live only in memory (the
    /// node cache's at-rest key).
    pub fn random(epoch: DekEpoch) -> Result<Self, CryptoError> {
        let mut bytes = Zeroizing::new([0u8; KEY_BYTES]);
        aws_lc_rs::rand::fill(bytes.as_mut()).map_err(|_| CryptoError::Random)?;
        Self::new(epoch, bytes.as_ref())
    }

    /// The key's epoch.
    pub fn epoch(&self) -> DekEpoch {
        self.epoch
    }

    pub(crate) fn aead(&self) -> &LessSafeKey {
        &self.aead
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DataKey(epoch {})", self.epoch.0)
    }
}

/// A tenant's secret for content addressing: chunk id = keyed BLAKE3 of the plaintext.
pub struct AddressingKey(Zeroizing<[u8; KEY_BYTES]>);

impl AddressingKey {
    /// Builds the key from raw bytes.
    pub fn new(bytes: [u8; KEY_BYTES]) -> Self {
        AddressingKey(Zeroizing::new(bytes))
    }

    /// The content address of `plaintext` for this tenant.
    pub fn chunk_id(&self, plaintext: &[u8]) -> ChunkId {
        ChunkId(*blake3::keyed_hash(&self.0, plaintext).as_bytes())
    }
}

impl fmt::Debug for AddressingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AddressingKey(..)")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::{open_in_place, seal_in_place};

    #[test]
    fn sealed_data_opens_only_with_the_same_key_and_aad() {
        let key = DataKey::new(DekEpoch(1), &[7u8; KEY_BYTES]).unwrap();
        let other = DataKey::new(DekEpoch(1), &[8u8; KEY_BYTES]).unwrap();
        let plaintext = b"acknowledged bytes".to_vec();
        let mut data = plaintext.clone();
        let (nonce, tag) = seal_in_place(&key, b"tenant-a", &mut data).unwrap();
        assert_ne!(data, plaintext);
        data.extend_from_slice(&tag);

        let mut wrong_key = data.clone();
        assert!(open_in_place(&other, nonce, b"tenant-a", &mut wrong_key).is_err());
        let mut wrong_aad = data.clone();
        assert!(open_in_place(&key, nonce, b"tenant-b", &mut wrong_aad).is_err());
        let opened = open_in_place(&key, nonce, b"tenant-a", &mut data).unwrap();
        assert_eq!(opened, &plaintext[..]);
    }

    #[test]
    fn chunk_ids_differ_across_tenants_for_equal_content() {
        let a = AddressingKey::new([1; KEY_BYTES]);
        let b = AddressingKey::new([2; KEY_BYTES]);
        assert_eq!(a.chunk_id(b"same"), a.chunk_id(b"same"));
        assert_ne!(a.chunk_id(b"same"), b.chunk_id(b"same"));
    }
}
