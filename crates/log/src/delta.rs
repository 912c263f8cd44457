//! The typed deltas: every metadata mutation of a shard is one of these, appended to the shard's
//! log and applied, in log order, to the shard's state (see [`crate::ShardState`]).
//!
//! Deltas carry everything their application needs (including the time, chosen by the proposer),
//! so applying the same log always yields the same state.

use std::collections::BTreeMap;

use kiseki_types::{Composition, Extent, InodeId, NamespaceError, Timestamp};
use serde::{Deserialize, Serialize};

/// Owner of a new node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// What a `Create` delta creates.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NewNode {
    /// An empty regular file.
    File,
    /// An empty directory.
    Directory,
    /// A symbolic link to `target`.
    Symlink {
        /// The link's target, stored verbatim.
        target: String,
    },
}

/// Attribute changes of a `SetAttr` delta; `None` leaves a field alone.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttrChanges {
    /// New permission bits.
    pub mode: Option<u32>,
    /// New owner.
    pub uid: Option<u32>,
    /// New group.
    pub gid: Option<u32>,
    /// New access time.
    pub atime: Option<Timestamp>,
    /// New modification time.
    pub mtime: Option<Timestamp>,
}

/// One metadata mutation of a shard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Delta {
    /// Creates a node named `name` in directory `parent`. With `exclusive`, an existing name is
    /// an error; without, an existing file of the same kind is returned as is (O_CREAT).
    Create {
        /// Directory to create in.
        parent: InodeId,
        /// New name.
        name: String,
        /// What to create.
        node: NewNode,
        /// Permission bits.
        mode: u32,
        /// Owner.
        owner: Owner,
        /// Fail if the name exists.
        exclusive: bool,
        /// Proposal time.
        time: Timestamp,
    },
    /// Creates or atomically replaces the file at `path` (components from the tenant root),
    /// creating missing parent directories: one S3 PUT or multipart completion.
    PutFile {
        /// Path components, the last one the file name.
        path: Vec<String>,
        /// The new content.
        content: Composition,
        /// User metadata replacing the old (S3 semantics).
        user_metadata: BTreeMap<String, Vec<u8>>,
        /// Permission bits for created nodes.
        mode: u32,
        /// Owner for created nodes.
        owner: Owner,
        /// Proposal time.
        time: Timestamp,
    },
    /// Places extents over byte ranges of a file (random write), growing it if they reach past
    /// the end.
    Write {
        /// The file.
        inode: InodeId,
        /// Sorted, non-overlapping extents with absolute file offsets.
        extents: Vec<Extent>,
        /// Proposal time.
        time: Timestamp,
    },
    /// Appends extents at the file's end as of application (O_APPEND is atomic): the extents'
    /// `file_offset`s are relative to that end.
    Append {
        /// The file.
        inode: InodeId,
        /// Extents relative to the end of the file.
        extents: Vec<Extent>,
        /// Proposal time.
        time: Timestamp,
    },
    /// Cuts or extends a file.
    Truncate {
        /// The file.
        inode: InodeId,
        /// New size.
        size: u64,
        /// Proposal time.
        time: Timestamp,
    },
    /// Moves `from_parent/from_name` to `to_parent/to_name` atomically, replacing a compatible
    /// target unless `no_replace`.
    Rename {
        /// Source directory.
        from_parent: InodeId,
        /// Source name.
        from_name: String,
        /// Target directory.
        to_parent: InodeId,
        /// Target name.
        to_name: String,
        /// Fail instead of replacing an existing target.
        no_replace: bool,
        /// Proposal time.
        time: Timestamp,
    },
    /// Removes a non-directory name.
    Unlink {
        /// Directory.
        parent: InodeId,
        /// Name to remove.
        name: String,
        /// Proposal time.
        time: Timestamp,
    },
    /// Removes an empty directory.
    Rmdir {
        /// Directory.
        parent: InodeId,
        /// Name to remove.
        name: String,
        /// Proposal time.
        time: Timestamp,
    },
    /// Adds a name for an existing non-directory node (hard link).
    Link {
        /// The node.
        inode: InodeId,
        /// Directory of the new name.
        new_parent: InodeId,
        /// The new name.
        new_name: String,
        /// Proposal time.
        time: Timestamp,
    },
    /// Changes attributes.
    SetAttr {
        /// The node.
        inode: InodeId,
        /// The changes.
        changes: AttrChanges,
        /// Proposal time (becomes ctime).
        time: Timestamp,
    },
    /// Sets (`Some`) or removes (`None`) one user-metadata entry (xattr / x-amz-meta).
    SetUserMetadata {
        /// The node.
        inode: InodeId,
        /// Entry name.
        key: String,
        /// New value, or `None` to remove.
        value: Option<Vec<u8>>,
        /// Proposal time.
        time: Timestamp,
    },
    /// Creates or atomically replaces the object at `path` (an S3 PUT, copy or multipart
    /// completion): like `PutFile`, but the bucket (first component) must exist, S3 system
    /// metadata (ETag, Content-Type, ...) is stored apart from user metadata, and `condition`
    /// is checked in log order (conditional writes).
    PutObject {
        /// The object's write.
        object: ObjectWrite,
        /// The new content.
        content: Composition,
        /// What must hold for the put to apply.
        condition: Option<PutCondition>,
    },
    /// Starts a multipart upload of the object `object.path`.
    CreateUpload {
        /// Upload id, chosen by the proposer.
        upload_id: String,
        /// The object the completed upload becomes (its content comes from the parts).
        object: ObjectWrite,
    },
    /// Adds or replaces one part of a multipart upload.
    PutPart {
        /// Upload id.
        upload_id: String,
        /// Part number (1..=10000).
        part_number: u32,
        /// MD5 of the part, lowercase hex.
        etag: String,
        /// The part's bytes, from offset zero.
        content: Composition,
        /// Proposal time.
        time: Timestamp,
    },
    /// Completes a multipart upload: the listed parts, concatenated, become the object in one
    /// composition (no data is copied) and the upload is removed.
    CompleteUpload {
        /// Upload id.
        upload_id: String,
        /// Part numbers (ascending) and the ETags the client expects them to have.
        parts: Vec<(u32, String)>,
        /// Smallest size every part but the last must have.
        part_size_min: u64,
        /// ETag of the completed object (`-N` form).
        etag: String,
        /// Proposal time.
        time: Timestamp,
    },
    /// Abandons a multipart upload and its parts.
    AbortUpload {
        /// Upload id.
        upload_id: String,
        /// Proposal time.
        time: Timestamp,
    },
}

/// The naming and metadata of an object write (S3), shared by `PutObject` and `CreateUpload`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectWrite {
    /// Path components from the tenant root: the bucket, then the key's components.
    pub path: Vec<String>,
    /// User metadata (x-amz-meta-*), replacing the old.
    pub user_metadata: BTreeMap<String, Vec<u8>>,
    /// S3 system metadata (ETag, Content-Type, ...), replacing the old; never shown as xattrs.
    pub system_metadata: BTreeMap<String, String>,
    /// Owner of created nodes.
    pub owner: Owner,
    /// Proposal time.
    pub time: Timestamp,
}

/// A condition of a `PutObject`, evaluated when the delta is applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PutCondition {
    /// No object may exist at the path (`If-None-Match: *`).
    Absent,
    /// The object must exist with this ETag (`If-Match`).
    ETag(String),
}

/// What applying a delta produced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// The node the delta created or changed, when there is one.
    pub inode: Option<InodeId>,
}

/// The outcome of applying a delta: a delta that is committed but invalid against the state
/// (a name that exists, a directory not empty) is an error outcome, decided in log order.
pub type DeltaOutcome = Result<Applied, NamespaceError>;
