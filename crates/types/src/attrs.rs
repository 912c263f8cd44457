use serde::{Deserialize, Serialize};

/// Nanoseconds since the Unix epoch. Assigned by the proposer of a delta so that applying the log
/// is deterministic.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The current wall-clock time.
    pub fn now() -> Self {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp(i64::try_from(since.as_nanos()).unwrap_or(i64::MAX))
    }

    /// Whole seconds and the nanoseconds within the second.
    pub fn to_parts(self) -> (i64, u32) {
        (
            self.0.div_euclid(1_000_000_000),
            self.0.rem_euclid(1_000_000_000) as u32,
        )
    }
}

/// What a namespace node is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FileKind {
    /// A regular file / S3 object.
    File,
    /// A directory / S3 prefix.
    Directory,
    /// A symbolic link.
    Symlink,
}

/// POSIX attributes of a namespace node, as every gateway reports them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attributes {
    /// File, directory or symlink.
    pub kind: FileKind,
    /// Permission bits (07777), without the file-type bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes (for a symlink: length of the target).
    pub size: u64,
    /// Number of names referring to the node.
    pub nlink: u32,
    /// Last access.
    pub atime: Timestamp,
    /// Last content change.
    pub mtime: Timestamp,
    /// Last attribute change.
    pub ctime: Timestamp,
    /// Creation.
    pub btime: Timestamp,
}
