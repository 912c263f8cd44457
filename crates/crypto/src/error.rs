use std::path::PathBuf;

use kiseki_types::TenantId;

use crate::{CryptoError, DekEpoch, KekVersion};

/// Why a key could not be created, found, wrapped, unwrapped or stored.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The tenant has no KEK (or no key record) here.
    #[error("unknown tenant {0}: no keys exist for it")]
    UnknownTenant(TenantId),
    /// The tenant's KEK was destroyed: its keys are unrecoverable by design (crypto-shred).
    #[error("the KEK of tenant {0} was destroyed: its keys are unrecoverable")]
    KekDestroyed(TenantId),
    /// A wrapped key names a KEK version the backend does not hold.
    #[error("tenant {tenant} has no KEK version {version}")]
    UnknownKekVersion {
        /// The tenant.
        tenant: TenantId,
        /// The KEK version the wrapped key names.
        version: KekVersion,
    },
    /// The tenant has no DEK of this epoch.
    #[error("tenant {tenant} has no DEK of epoch {}", epoch.0)]
    UnknownEpoch {
        /// The tenant.
        tenant: TenantId,
        /// The epoch asked for.
        epoch: DekEpoch,
    },
    /// Authentication of a wrapped key failed: wrong tenant or KEK, wrong purpose, or tampering.
    #[error("cannot unwrap a key of tenant {0}: wrong KEK or tampered wrapped key")]
    UnwrapFailed(TenantId),
    /// The tenant already has as many DEK epochs as allowed.
    #[error("tenant {0} reached the maximum number of DEK epochs")]
    TooManyEpochs(TenantId),
    /// Reading or writing a key file failed.
    #[error("key file I/O on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating-system error.
        #[source]
        source: std::io::Error,
    },
    /// A key file exists but is not a valid key file (truncated, bit rot, wrong master key).
    #[error("corrupt key file {path}: {reason}")]
    CorruptKeyFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Key material received or built does not form a valid keyring.
    #[error("invalid key material for tenant {tenant}: {reason}")]
    InvalidMaterial {
        /// The tenant.
        tenant: TenantId,
        /// What is wrong with it.
        reason: String,
    },
    /// A remote key source could not answer.
    #[error("key service: {0}")]
    Remote(String),
    /// A primitive failed (random generator, key setup).
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

impl KeyError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        KeyError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        KeyError::CorruptKeyFile {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
