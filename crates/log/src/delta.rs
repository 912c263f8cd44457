//! The typed deltas: every metadata mutation of a shard is one of these, appended to the shard's
//! log and applied, in log order, to the shard's state (see [`crate::ShardState`]).
//!
//! Deltas carry everything their application needs (including the time, chosen by the proposer),
//! so applying the same log always yields the same state.

use std::collections::BTreeMap;

use kiseki_types::{ChunkId, Composition, Extent, InodeId, NamespaceError, Timestamp};
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
    /// Records where the fragments of chunks of erasure-coded pools are, then applies `delta`
    /// (the composition that references them): one log entry, so a chunk referenced by an
    /// acknowledged write always has its placement in the log. The outcome is `delta`'s; the
    /// placements are recorded even when `delta` is refused (the chunks are stored either way).
    Placed {
        /// One record per newly stored chunk (at most [`PLACEMENTS_PER_DELTA_MAX`]).
        placements: Vec<ChunkPlacement>,
        /// The delta that references the chunks (never itself `Placed`).
        delta: Box<Delta>,
    },
    /// Records new placements of chunks whose fragments a rebuild or scrub moved.
    RecordPlacement {
        /// The new records (at most [`PLACEMENTS_PER_DELTA_MAX`]); each replaces the chunk's
        /// earlier one.
        placements: Vec<ChunkPlacement>,
    },
    /// Applies `delta` (a write of a small file) and keeps the sealed frames of the chunks it
    /// references in the chunk store: the entry is their durable copy until the store syncs
    /// them, so one log `fdatasync` makes a small write durable. The outcome is `delta`'s; the
    /// frames are kept only when it applies.
    Carried {
        /// The frames (at most [`CARRIED_FRAMES_PER_DELTA_MAX`], each at most
        /// [`CARRIED_FRAME_BYTES_MAX`] bytes).
        frames: Vec<CarriedFrame>,
        /// The write that references them (never itself `Carried` or `Placed`).
        delta: Box<Delta>,
    },
}

/// Largest sealed frame a delta may carry.
pub const CARRIED_FRAME_BYTES_MAX: usize = 64 * 1024;
/// Frames one delta may carry.
pub const CARRIED_FRAMES_PER_DELTA_MAX: usize = 16;

/// A small chunk's sealed frame (ciphertext, as stored), carried in the log entry that commits
/// the write referencing it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CarriedFrame {
    /// The chunk.
    pub chunk: ChunkId,
    /// The pool the frame is kept in.
    pub pool: String,
    /// The sealed frame.
    pub frame: Vec<u8>,
}

impl CarriedFrame {
    /// Whether the frame is within its bounds (checked when proposed and when applied).
    pub fn is_bounded(&self) -> bool {
        self.frame.len() <= CARRIED_FRAME_BYTES_MAX
            && self.pool.len() <= PLACEMENT_POOL_NAME_BYTES_MAX
    }
}

/// Placement records one delta may carry: one per chunk of a maximal composition.
pub const PLACEMENTS_PER_DELTA_MAX: usize = kiseki_types::limits::DELTA_EXTENTS_MAX;
/// Fragments one placement record may name (the chunk crate's `FRAGMENTS_MAX`).
pub const PLACEMENT_FRAGMENTS_MAX: usize = 32;
/// Bytes of a pool name in a placement record.
pub const PLACEMENT_POOL_NAME_BYTES_MAX: usize = 64;

/// Where the fragments of one chunk of an erasure-coded pool are: a compact record (device ids,
/// not paths) of bounded size (at most [`PLACEMENT_FRAGMENTS_MAX`] fragments and a pool name of
/// at most [`PLACEMENT_POOL_NAME_BYTES_MAX`] bytes, so under 600 bytes encoded).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkPlacement {
    /// The chunk.
    pub chunk: ChunkId,
    /// The erasure-coded pool holding its fragments.
    pub pool: String,
    /// The profile: `k` data fragments (1 for whole copies) ...
    pub data_fragments: u8,
    /// ... and `m` parity fragments (for copies: copies − 1).
    pub parity_fragments: u8,
    /// Whether the fragments are whole copies (`replicate: N`) rather than Reed-Solomon.
    pub replicated: bool,
    /// The encoding's generation (from the fragment headers).
    pub generation: u64,
    /// The device of fragment `i`, in fragment order.
    pub fragments: Vec<FragmentSite>,
}

/// One fragment's device: the node and the device's id within its pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FragmentSite {
    /// The node the device belongs to.
    pub node: u64,
    /// The device id (a stable hash of the device's name; see `kiseki_chunk::DeviceId`).
    pub device: u32,
}

impl ChunkPlacement {
    /// Whether the record is within its bounds (checked before it is proposed and applied).
    pub fn is_bounded(&self) -> bool {
        self.fragments.len() <= PLACEMENT_FRAGMENTS_MAX
            && self.pool.len() <= PLACEMENT_POOL_NAME_BYTES_MAX
    }
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn placement(fragments: usize) -> ChunkPlacement {
        ChunkPlacement {
            chunk: ChunkId([7; 32]),
            pool: "bulk".into(),
            data_fragments: 8,
            parity_fragments: 3,
            replicated: false,
            generation: u64::MAX,
            fragments: (0..fragments as u64)
                .map(|node| FragmentSite {
                    node,
                    device: u32::MAX,
                })
                .collect(),
        }
    }

    #[test]
    fn placement_deltas_round_trip_and_stay_small() {
        let inner = Delta::Truncate {
            inode: InodeId(9),
            size: 1,
            time: Timestamp(2),
        };
        for delta in [
            Delta::Placed {
                placements: vec![placement(11), placement(3)],
                delta: Box::new(inner.clone()),
            },
            Delta::RecordPlacement {
                placements: vec![placement(11)],
            },
        ] {
            let bytes = bincode::serde::encode_to_vec(&delta, bincode::config::standard()).unwrap();
            let (back, _): (Delta, _) =
                bincode::serde::decode_from_slice(&bytes, bincode::config::standard()).unwrap();
            assert_eq!(back, delta);
        }
        // The largest bounded record stays well under a kilobyte.
        let mut largest = placement(PLACEMENT_FRAGMENTS_MAX);
        largest.pool = "p".repeat(PLACEMENT_POOL_NAME_BYTES_MAX);
        assert!(largest.is_bounded());
        let bytes = bincode::serde::encode_to_vec(&largest, bincode::config::standard()).unwrap();
        assert!(bytes.len() < 600, "{}", bytes.len());
        // A typical 4+2 record over small node numbers is about 100 bytes.
        let typical =
            bincode::serde::encode_to_vec(placement(6), bincode::config::standard()).unwrap();
        assert!(typical.len() <= 110, "{}", typical.len());
        largest.fragments.push(FragmentSite { node: 0, device: 0 });
        assert!(!largest.is_bounded());
    }
}
