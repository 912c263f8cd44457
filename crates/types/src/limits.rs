//! Every bound Kiseki enforces, named in one place. Relations between them are checked at
//! compile time below.

/// Default size of a data chunk: a byte range maps straight to chunk indices.
pub const CHUNK_SIZE_BYTES_DEFAULT: u32 = 4 * 1024 * 1024;
/// Largest chunk the store accepts (configurable chunk size must stay below it).
pub const CHUNK_SIZE_BYTES_MAX: u32 = 16 * 1024 * 1024;
/// Smallest configurable chunk size.
pub const CHUNK_SIZE_BYTES_MIN: u32 = 64 * 1024;
/// Longest single name in a directory (POSIX NAME_MAX).
pub const NAME_BYTES_MAX: usize = 255;
/// Longest path / S3 key.
pub const PATH_BYTES_MAX: usize = 4096;
/// Longest symlink target.
pub const SYMLINK_TARGET_BYTES_MAX: usize = 4096;
/// Most user-metadata entries on one node.
pub const USER_METADATA_ENTRIES_MAX: usize = 128;
/// Most bytes of user metadata (keys + values) on one node.
pub const USER_METADATA_BYTES_MAX: usize = 64 * 1024;
/// Most extents in one composition (a file of 16 TiB in 4 MiB chunks fits).
pub const COMPOSITION_EXTENTS_MAX: usize = 4 * 1024 * 1024;
/// Most extents one write/append delta may add: bounds the size of a log entry.
pub const DELTA_EXTENTS_MAX: usize = 64 * 1024;
/// Largest object one S3 PUT (or one multipart part) may carry.
pub const OBJECT_PUT_BYTES_MAX: u64 = 5 * 1024 * 1024 * 1024;
/// Smallest size of every multipart part but the last.
pub const MULTIPART_PART_BYTES_MIN: u64 = 5 * 1024 * 1024;
/// Highest multipart part number.
pub const MULTIPART_PART_NUMBER_MAX: u32 = 10_000;
/// Most multipart uploads in progress in one tenant at once.
pub const MULTIPART_UPLOADS_MAX: usize = 100_000;
/// Most entries one listing page returns.
pub const LIST_PAGE_ENTRIES_MAX: usize = 10_000;
/// Most client proposals waiting for one shard's log at once.
pub const SHARD_PROPOSALS_INFLIGHT_MAX: usize = 4096;
/// Most log entries the log writer flushes in one group commit.
pub const LOG_GROUP_COMMIT_ENTRIES_MAX: usize = 4096;
/// Log entries between two state-machine snapshots (log compaction follows each snapshot).
pub const LOG_ENTRIES_PER_SNAPSHOT: u64 = 10_000;

const _: () = assert!(CHUNK_SIZE_BYTES_MIN <= CHUNK_SIZE_BYTES_DEFAULT);
const _: () = assert!(CHUNK_SIZE_BYTES_DEFAULT <= CHUNK_SIZE_BYTES_MAX);
const _: () = assert!(NAME_BYTES_MAX < PATH_BYTES_MAX);
const _: () = assert!(DELTA_EXTENTS_MAX <= COMPOSITION_EXTENTS_MAX);
const _: () = assert!(MULTIPART_PART_BYTES_MIN <= OBJECT_PUT_BYTES_MAX);
