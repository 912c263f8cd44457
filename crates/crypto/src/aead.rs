use aws_lc_rs::aead::{Aad, Nonce, Tag};

use crate::DataKey;

/// Bytes of an AES-GCM nonce.
pub const NONCE_BYTES: usize = 12;
/// Bytes of an AES-GCM authentication tag.
pub const TAG_BYTES: usize = 16;

/// A cryptographic operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// Authentication failed: wrong key, wrong associated data, or altered ciphertext.
    #[error("authentication failed: wrong key or altered data")]
    Authentication,
    /// Key material had the wrong length or could not be used.
    #[error("invalid key material")]
    InvalidKey,
    /// The system random generator failed.
    #[error("random generator failed")]
    Random,
}

/// Encrypts `data` in place under `key`, binding `aad`; returns the fresh random nonce and the tag.
pub fn seal_in_place(
    key: &DataKey,
    aad: &[u8],
    data: &mut [u8],
) -> Result<([u8; NONCE_BYTES], [u8; TAG_BYTES]), CryptoError> {
    let mut nonce = [0u8; NONCE_BYTES];
    aws_lc_rs::rand::fill(&mut nonce).map_err(|_| CryptoError::Random)?;
    let tag: Tag = key
        .aead()
        .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), data)
        .map_err(|_| CryptoError::InvalidKey)?;
    let mut tag_bytes = [0u8; TAG_BYTES];
    tag_bytes.copy_from_slice(tag.as_ref());
    Ok((nonce, tag_bytes))
}

/// Decrypts `sealed` = ciphertext followed by its tag into `out` (exactly the ciphertext's
/// length), checking the tag and `aad`: for callers that need the plaintext somewhere else
/// anyway, it saves copying the ciphertext there first. On failure `out` is zeroed.
pub fn open_into(
    key: &DataKey,
    nonce: [u8; NONCE_BYTES],
    aad: &[u8],
    sealed: &[u8],
    out: &mut [u8],
) -> Result<(), CryptoError> {
    let ciphertext_len = sealed
        .len()
        .checked_sub(TAG_BYTES)
        .ok_or(CryptoError::Authentication)?;
    if out.len() != ciphertext_len {
        return Err(CryptoError::Authentication);
    }
    let (ciphertext, tag) = sealed.split_at(ciphertext_len);
    let opened = key.aead().open_separate_gather(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(aad),
        ciphertext,
        tag,
        out,
    );
    opened.map_err(|_| {
        out.fill(0);
        CryptoError::Authentication
    })
}

/// Decrypts in place `sealed` = ciphertext followed by its tag, checking the tag and `aad`;
/// returns the plaintext part. On failure `sealed` holds no usable plaintext.
pub fn open_in_place<'a>(
    key: &DataKey,
    nonce: [u8; NONCE_BYTES],
    aad: &[u8],
    sealed: &'a mut [u8],
) -> Result<&'a mut [u8], CryptoError> {
    key.aead()
        .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad), sealed)
        .map_err(|_| CryptoError::Authentication)
}
