//! The native client protocol (`kiseki.namespace.v1`): its bounds, credential headers, and the
//! conversion of its messages to and from domain types and of namespace errors to statuses.

use kiseki_types::{
    Attributes, ChunkId, ErrorKind, Extent, FileKind, InodeId, NamespaceError, Timestamp,
};
use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

use crate::namespace::v1 as wire;

/// Version of the native protocol this code speaks.
pub const NATIVE_PROTOCOL_VERSION: u32 = 1;
/// Largest message either side of the native protocol accepts.
pub const NATIVE_MESSAGE_BYTES_MAX: usize = 12 * 1024 * 1024;
/// Largest HTTP/2 frame either side of the native protocol accepts (the default, 16 KiB, cut
/// every chunk into hundreds of frames, each parsed and woken on separately).
pub const H2_FRAME_BYTES_MAX: u32 = 1024 * 1024;
/// Bytes of chunk frame per streamed piece: a default 4 MiB chunk's frame (with its header and
/// tag) fits in one piece, which the receiver then uses without copying.
pub const CHUNK_PIECE_BYTES: usize = 4 * 1024 * 1024 + 4096;
/// Most entries one `ReadDir` returns.
pub const READDIR_ENTRIES_MAX: u32 = 1024;
/// Most extents one `Layout` returns.
pub const LAYOUT_EXTENTS_MAX: usize = 4096;
/// Metadata header carrying the caller's access key id.
pub const ACCESS_KEY_HEADER: &str = "x-kiseki-access-key";
/// Metadata header carrying the caller's secret key.
pub const SECRET_KEY_HEADER: &str = "x-kiseki-secret-key";
/// Metadata header of a failed call carrying the namespace error kind.
pub const ERROR_KIND_HEADER: &str = "x-kiseki-error-kind";

const _: () = assert!(CHUNK_PIECE_BYTES * 2 <= NATIVE_MESSAGE_BYTES_MAX);
const _: () = assert!(LAYOUT_EXTENTS_MAX * 64 <= NATIVE_MESSAGE_BYTES_MAX);
const _: () = assert!(READDIR_ENTRIES_MAX as usize * 600 <= NATIVE_MESSAGE_BYTES_MAX);

const ERROR_KINDS: [ErrorKind; 14] = [
    ErrorKind::NotFound,
    ErrorKind::AlreadyExists,
    ErrorKind::NotADirectory,
    ErrorKind::IsADirectory,
    ErrorKind::NotEmpty,
    ErrorKind::InvalidArgument,
    ErrorKind::NameTooLong,
    ErrorKind::CrossShard,
    ErrorKind::NoSpace,
    ErrorKind::Stale,
    ErrorKind::Corrupt,
    ErrorKind::PermissionDenied,
    ErrorKind::Unsupported,
    ErrorKind::Unavailable,
];

/// The status a native server answers for `error`, with its kind in [`ERROR_KIND_HEADER`].
pub fn namespace_error_status(error: &NamespaceError) -> Status {
    let code = match error.kind {
        ErrorKind::NotFound | ErrorKind::Stale => Code::NotFound,
        ErrorKind::AlreadyExists => Code::AlreadyExists,
        ErrorKind::PermissionDenied => Code::PermissionDenied,
        ErrorKind::NoSpace => Code::ResourceExhausted,
        ErrorKind::Unsupported => Code::Unimplemented,
        ErrorKind::Corrupt => Code::DataLoss,
        ErrorKind::Unavailable => Code::Unavailable,
        ErrorKind::InvalidArgument | ErrorKind::NameTooLong => Code::InvalidArgument,
        ErrorKind::NotADirectory
        | ErrorKind::IsADirectory
        | ErrorKind::NotEmpty
        | ErrorKind::CrossShard => Code::FailedPrecondition,
    };
    let mut status = Status::new(code, error.message.clone());
    if let Ok(value) = MetadataValue::try_from(format!("{:?}", error.kind)) {
        status.metadata_mut().insert(ERROR_KIND_HEADER, value);
    }
    status
}

/// The namespace error a client reports for a failed call: the kind the server named, or, for a
/// transport failure or a status without a kind, one that follows the code.
pub fn status_namespace_error(status: &Status) -> NamespaceError {
    let named = status
        .metadata()
        .get(ERROR_KIND_HEADER)
        .and_then(|value| value.to_str().ok())
        .and_then(|name| {
            ERROR_KINDS
                .iter()
                .copied()
                .find(|kind| format!("{kind:?}") == name)
        });
    let kind = named.unwrap_or(match status.code() {
        Code::NotFound => ErrorKind::NotFound,
        Code::AlreadyExists => ErrorKind::AlreadyExists,
        Code::PermissionDenied | Code::Unauthenticated => ErrorKind::PermissionDenied,
        Code::InvalidArgument | Code::OutOfRange => ErrorKind::InvalidArgument,
        Code::ResourceExhausted => ErrorKind::NoSpace,
        Code::Unimplemented => ErrorKind::Unsupported,
        Code::DataLoss => ErrorKind::Corrupt,
        _ => ErrorKind::Unavailable,
    });
    NamespaceError::new(kind, status.message().to_owned())
}

/// The wire kind of a node.
pub fn kind_to_wire(kind: FileKind) -> wire::NodeKind {
    match kind {
        FileKind::File => wire::NodeKind::File,
        FileKind::Directory => wire::NodeKind::Directory,
        FileKind::Symlink => wire::NodeKind::Symlink,
    }
}

/// The node kind of a wire kind (an unknown kind reads as a file).
pub fn kind_from_wire(kind: i32) -> FileKind {
    match wire::NodeKind::try_from(kind) {
        Ok(wire::NodeKind::Directory) => FileKind::Directory,
        Ok(wire::NodeKind::Symlink) => FileKind::Symlink,
        _ => FileKind::File,
    }
}

/// The wire attributes of `inode`, with its special-file type and device number.
pub fn attr_to_wire(inode: InodeId, attrs: &Attributes, special: (u32, u64)) -> wire::Attr {
    wire::Attr {
        inode: inode.0,
        kind: kind_to_wire(attrs.kind) as i32,
        mode: attrs.mode,
        uid: attrs.uid,
        gid: attrs.gid,
        size: attrs.size,
        nlink: attrs.nlink,
        atime_ns: attrs.atime.0,
        mtime_ns: attrs.mtime.0,
        ctime_ns: attrs.ctime.0,
        btime_ns: attrs.btime.0,
        special_type: special.0,
        rdev: special.1,
    }
}

/// The domain attributes of a wire `Attr`.
pub fn attr_from_wire(attr: &wire::Attr) -> (InodeId, Attributes) {
    let attrs = Attributes {
        kind: kind_from_wire(attr.kind),
        mode: attr.mode & 0o7777,
        uid: attr.uid,
        gid: attr.gid,
        size: attr.size,
        nlink: attr.nlink,
        atime: Timestamp(attr.atime_ns),
        mtime: Timestamp(attr.mtime_ns),
        ctime: Timestamp(attr.ctime_ns),
        btime: Timestamp(attr.btime_ns),
    };
    (InodeId(attr.inode), attrs)
}

/// The wire form of an extent.
pub fn extent_to_wire(extent: &Extent) -> wire::Extent {
    wire::Extent {
        file_offset: extent.file_offset,
        len: extent.len,
        chunk_id: extent.chunk.0.to_vec(),
        chunk_offset: extent.chunk_offset,
    }
}

/// The extent of a wire extent; `None` if its chunk id is not 32 bytes.
pub fn extent_from_wire(extent: &wire::Extent) -> Option<Extent> {
    Some(Extent {
        file_offset: extent.file_offset,
        len: extent.len,
        chunk: chunk_id_from_wire(&extent.chunk_id)?,
        chunk_offset: extent.chunk_offset,
    })
}

/// A chunk id from its 32 wire bytes.
pub fn chunk_id_from_wire(bytes: &[u8]) -> Option<ChunkId> {
    Some(ChunkId(bytes.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_error_kind_survives_a_status() {
        for kind in ERROR_KINDS {
            let status = namespace_error_status(&NamespaceError::new(kind, "x"));
            assert_eq!(status_namespace_error(&status).kind, kind);
        }
        let transport = Status::unavailable("connection refused");
        assert_eq!(
            status_namespace_error(&transport).kind,
            ErrorKind::Unavailable
        );
    }
}
