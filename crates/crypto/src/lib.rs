//! Envelope encryption for Kiseki: system data-encryption keys (DEKs) encrypt chunk data with
//! AES-256-GCM (aws-lc-rs); tenant key-encryption keys (KEKs), held by a tenant KMS backend
//! ([`TenantKms`], built-in [`InternalKms`]), wrap the DEKs. A per-tenant addressing key makes
//! chunk ids content addresses that reveal nothing across tenants. The system key manager
//! ([`KeyManager`]) generates DEKs and addressing keys, stores them only wrapped, and hands out
//! [`TenantKeyring`]s; storage servers get keyrings through a [`KeySource`].
//!
//! This crate owns key material and the AEAD calls. It must never log or persist a key in plain
//! text (KEKs are persisted only sealed under the internal backend's master key), never do
//! network I/O, and never decide where data lives.

mod aead;
mod channel;
mod durable;
mod error;
mod internal_kms;
mod keyring;
mod keys;
mod kms;
mod manager;
mod source;

pub use aead::{open_in_place, open_into, seal_in_place, CryptoError, NONCE_BYTES, TAG_BYTES};
pub use channel::{ChannelKey, CHANNEL_PROOF_BYTES};
pub use error::KeyError;
pub use internal_kms::InternalKms;
pub use keyring::{TenantKeyMaterial, TenantKeyring, DEK_EPOCHS_MAX};
pub use keys::{AddressingKey, DataKey, DekEpoch, KEY_BYTES};
pub use kms::{wrap_aad, KekVersion, KeyPurpose, TenantKms, WrappedKey};
pub use manager::KeyManager;
pub use source::{KeyFuture, KeySource};
