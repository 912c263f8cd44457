//! NFS status codes, and the one place namespace errors become them.

use kiseki_types::{ErrorKind, NamespaceError};

/// An `nfsstat3` value (RFC 1813 section 2.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status(pub u32);

#[allow(missing_docs)]
impl Status {
    pub const OK: Status = Status(0);
    pub const PERM: Status = Status(1);
    pub const NOENT: Status = Status(2);
    pub const IO: Status = Status(5);
    pub const ACCES: Status = Status(13);
    pub const EXIST: Status = Status(17);
    pub const XDEV: Status = Status(18);
    pub const NOTDIR: Status = Status(20);
    pub const ISDIR: Status = Status(21);
    pub const INVAL: Status = Status(22);
    pub const FBIG: Status = Status(27);
    pub const NOSPC: Status = Status(28);
    pub const ROFS: Status = Status(30);
    pub const NAMETOOLONG: Status = Status(63);
    pub const NOTEMPTY: Status = Status(66);
    pub const STALE: Status = Status(70);
    pub const BADHANDLE: Status = Status(10001);
    pub const NOT_SYNC: Status = Status(10002);
    pub const BAD_COOKIE: Status = Status(10003);
    pub const NOTSUPP: Status = Status(10004);
    pub const TOOSMALL: Status = Status(10005);
    pub const JUKEBOX: Status = Status(10008);
}

/// The NFS status for a namespace error kind.
pub fn status_of(kind: ErrorKind) -> Status {
    match kind {
        ErrorKind::NotFound => Status::NOENT,
        ErrorKind::AlreadyExists => Status::EXIST,
        ErrorKind::NotADirectory => Status::NOTDIR,
        ErrorKind::IsADirectory => Status::ISDIR,
        ErrorKind::NotEmpty => Status::NOTEMPTY,
        ErrorKind::InvalidArgument => Status::INVAL,
        ErrorKind::NameTooLong => Status::NAMETOOLONG,
        ErrorKind::CrossShard => Status::XDEV,
        ErrorKind::NoSpace => Status::NOSPC,
        ErrorKind::Stale => Status::STALE,
        ErrorKind::Corrupt => Status::IO,
        ErrorKind::PermissionDenied => Status::ACCES,
        ErrorKind::Unsupported => Status::NOTSUPP,
        // The namespace is shutting down or a store is unreachable: the client retries later.
        ErrorKind::Unavailable => Status::JUKEBOX,
    }
}

impl From<NamespaceError> for Status {
    fn from(error: NamespaceError) -> Self {
        // Logged here, where the error is handled; what the client gets is only the code.
        match error.kind {
            ErrorKind::Corrupt | ErrorKind::Unavailable | ErrorKind::NoSpace => {
                tracing::warn!(%error, "NFS request failed");
            }
            _ => tracing::debug!(%error, "NFS request failed"),
        }
        status_of(error.kind)
    }
}
