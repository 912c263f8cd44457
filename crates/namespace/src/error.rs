//! Errors of the layers below, turned into namespace errors that name what they concern.

use kiseki_chunk::ChunkError;
use kiseki_crypto::KeyError;
use kiseki_log::LogError;
use kiseki_types::{ErrorKind, NamespaceError};

/// A chunk error met while serving `what` (a path or inode).
pub fn from_chunk_error(error: ChunkError, what: &str) -> NamespaceError {
    let kind = match &error {
        ChunkError::NotFound { .. }
        | ChunkError::Corrupt { .. }
        | ChunkError::MissingKey { .. } => ErrorKind::Corrupt,
        ChunkError::NoSpace { .. } => ErrorKind::NoSpace,
        ChunkError::TooLarge(_) | ChunkError::UnknownPool(_) => ErrorKind::InvalidArgument,
        ChunkError::Crypto(_)
        | ChunkError::Io { .. }
        | ChunkError::Task(_)
        | ChunkError::CarryUnsupported(_) => ErrorKind::Unavailable,
    };
    NamespaceError::new(kind, format!("{what}: {error}"))
}

/// A log error met while changing `what`.
pub fn from_log_error(error: LogError, what: &str) -> NamespaceError {
    let kind = if error.is_no_space() {
        ErrorKind::NoSpace
    } else {
        ErrorKind::Unavailable
    };
    NamespaceError::new(kind, format!("{what}: {error}"))
}

/// A key error met while serving `what`.
pub fn from_key_error(error: KeyError, what: &str) -> NamespaceError {
    NamespaceError::new(
        ErrorKind::Unavailable,
        format!("{what}: keys unavailable: {error}"),
    )
}
