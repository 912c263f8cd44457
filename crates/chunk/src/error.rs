use kiseki_types::{ChunkId, TenantId};

/// A chunk could not be written, found, or trusted.
#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    /// No chunk with this id exists for the tenant.
    #[error("chunk {id} of tenant {tenant} not found")]
    NotFound {
        /// Tenant.
        tenant: TenantId,
        /// Chunk.
        id: ChunkId,
    },
    /// The stored bytes failed a check (framing, checksum, authentication tag, id).
    #[error("chunk {id} of tenant {tenant} is corrupt: {reason}")]
    Corrupt {
        /// Tenant.
        tenant: TenantId,
        /// Chunk.
        id: ChunkId,
        /// Which check failed.
        reason: String,
    },
    /// The device has no room for the chunk.
    #[error("no space left in pool {pool} for chunk {id}")]
    NoSpace {
        /// Pool that is full.
        pool: String,
        /// Chunk that did not fit.
        id: ChunkId,
    },
    /// The placement names a pool this store does not have.
    #[error("unknown pool {0}")]
    UnknownPool(String),
    /// The pool's store cannot keep frames carried in the log (see `ChunkStore::put_carried`).
    #[error("pool {0} does not keep frames carried in the log")]
    CarryUnsupported(String),
    /// The chunk is larger than the store accepts.
    #[error("chunk of {0} bytes exceeds the maximum chunk size")]
    TooLarge(usize),
    /// Encryption failed (not an integrity failure).
    #[error("encryption failed: {0}")]
    Crypto(#[from] kiseki_crypto::CryptoError),
    /// The tenant's keys do not include the epoch the chunk was sealed with.
    #[error("chunk {id} of tenant {tenant} needs key epoch {epoch}, which is not available")]
    MissingKey {
        /// Tenant.
        tenant: TenantId,
        /// Chunk.
        id: ChunkId,
        /// Epoch the chunk header records.
        epoch: u32,
    },
    /// Any other I/O failure of the device.
    #[error("chunk store I/O error on {path}: {source}")]
    Io {
        /// The file or directory concerned.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// A blocking task failed to run.
    #[error("chunk store task failed: {0}")]
    Task(String),
}
