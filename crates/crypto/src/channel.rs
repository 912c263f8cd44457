//! Keys that prove a connection belongs to a session granted over TLS (the native bulk
//! channel): the server hands the key out inside the TLS channel, the client proves it holds
//! it with an HMAC-SHA256 over a fresh server nonce, so the key itself never crosses the plain
//! connection and a recorded proof is worthless for the next connection.

use std::fmt;

use aws_lc_rs::hmac;
use zeroize::Zeroizing;

use crate::{CryptoError, KEY_BYTES};

/// Bytes of a proof.
pub const CHANNEL_PROOF_BYTES: usize = 32;

/// A session's secret key.
pub struct ChannelKey(Zeroizing<[u8; KEY_BYTES]>);

impl ChannelKey {
    /// A fresh key from the system random generator.
    pub fn random() -> Result<Self, CryptoError> {
        let mut bytes = Zeroizing::new([0u8; KEY_BYTES]);
        aws_lc_rs::rand::fill(bytes.as_mut()).map_err(|_| CryptoError::Random)?;
        Ok(ChannelKey(bytes))
    }

    /// The key a server handed out, if it has the right length.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let bytes: [u8; KEY_BYTES] = bytes.try_into().map_err(|_| CryptoError::InvalidKey)?;
        Ok(ChannelKey(Zeroizing::new(bytes)))
    }

    /// The raw key, to hand to the client inside TLS.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_ref()
    }

    /// The proof of holding this key for `context` (the server's nonce and the session id).
    pub fn prove(&self, context: &[u8]) -> [u8; CHANNEL_PROOF_BYTES] {
        let tag = hmac::sign(&self.hmac_key(), context);
        let mut proof = [0u8; CHANNEL_PROOF_BYTES];
        proof.copy_from_slice(tag.as_ref());
        proof
    }

    /// Whether `proof` proves this key for `context` (compared in constant time).
    pub fn verify(&self, context: &[u8], proof: &[u8]) -> bool {
        hmac::verify(&self.hmac_key(), context, proof).is_ok()
    }

    /// Random bytes for a nonce or a session id.
    pub fn random_bytes<const N: usize>() -> Result<[u8; N], CryptoError> {
        let mut bytes = [0u8; N];
        aws_lc_rs::rand::fill(&mut bytes).map_err(|_| CryptoError::Random)?;
        Ok(bytes)
    }

    fn hmac_key(&self) -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, self.0.as_ref())
    }
}

impl fmt::Debug for ChannelKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ChannelKey(..)")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_holds_only_for_its_key_and_context() {
        let key = ChannelKey::random().unwrap();
        let other = ChannelKey::random().unwrap();
        let proof = key.prove(b"nonce-1|session");
        assert!(key.verify(b"nonce-1|session", &proof));
        assert!(!key.verify(b"nonce-2|session", &proof));
        assert!(!other.verify(b"nonce-1|session", &proof));
        let copy = ChannelKey::from_bytes(key.as_bytes()).unwrap();
        assert!(copy.verify(b"nonce-1|session", &proof));
        assert!(ChannelKey::from_bytes(&[0u8; 16]).is_err());
    }
}
