use serde::{Deserialize, Serialize};

/// What went wrong with a namespace operation, in terms every gateway can map: to an errno for
/// FUSE, an NFS3 status, an S3 error code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorKind {
    /// No such file, directory or key (ENOENT).
    NotFound,
    /// The name is taken (EEXIST).
    AlreadyExists,
    /// A path component is not a directory (ENOTDIR).
    NotADirectory,
    /// A directory where a file was needed (EISDIR).
    IsADirectory,
    /// Directory not empty (ENOTEMPTY).
    NotEmpty,
    /// Malformed name, path or argument (EINVAL).
    InvalidArgument,
    /// Name or path longer than the limits allow (ENAMETOOLONG).
    NameTooLong,
    /// The operation would cross shards (EXDEV).
    CrossShard,
    /// Out of space or over quota (ENOSPC).
    NoSpace,
    /// A handle that no longer names a live node (ESTALE).
    Stale,
    /// Stored data failed verification: corrupt, or undecryptable with the keys at hand (EIO).
    Corrupt,
    /// Not permitted (EPERM / AccessDenied).
    PermissionDenied,
    /// The operation is not supported by the data model (ENOTSUP).
    Unsupported,
    /// A storage service could not be reached or failed (EIO).
    Unavailable,
}

/// An error from the namespace with a message naming what it concerns.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{kind:?}: {message}")]
pub struct NamespaceError {
    /// The kind, for mapping to protocol codes.
    pub kind: ErrorKind,
    /// Human-readable detail naming the object concerned.
    pub message: String,
}

impl NamespaceError {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        NamespaceError {
            kind,
            message: message.into(),
        }
    }
}
