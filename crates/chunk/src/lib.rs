//! Chunks: the unit in which Kiseki stores file and object bytes. A chunk is content-addressed
//! (keyed BLAKE3 of its plaintext under the tenant's addressing key), sealed with AES-256-GCM
//! under the tenant's current DEK, framed in a self-describing on-disk format, and kept by a
//! [`ChunkStore`] in a pool of a device class.
//!
//! This crate never sees names, paths or compositions, and never stores or returns plaintext
//! except to the caller that holds the tenant's keys.

mod buffer;
mod carried;
mod durable_file;
mod ec;
mod erasure_store;
mod error;
mod format;
mod fragment;
mod fs_store;
mod memory_fragment;
mod memory_store;
mod placement;
mod repair;
mod service;
mod spread;
mod store;
mod tenant_dirs;

pub use buffer::{keep_chunk_buffers_in_heap, ChunkBuffer};
pub use durable_file::{create_direct, create_direct_with, Sync as FileSync};
pub use ec::{Codec, EcPolicy, EcProfile, InvalidProfile, FRAGMENTS_MAX};
pub use erasure_store::{EcCounters, EcStats, ErasureChunkStore};
pub use error::ChunkError;
pub use format::{ChunkHeader, FORMAT_VERSION, FRAME_BYTES_MAX, HEADER_BYTES, MAGIC};
pub use fragment::{
    DeviceInfo, FragmentHeader, FragmentKey, FragmentKind, FragmentStore, FsFragmentStore,
    FRAGMENT_HEADER_BYTES, FRAGMENT_MAGIC, FRAGMENT_VERSION,
};
pub use fs_store::FsChunkStore;
pub use memory_fragment::MemoryFragmentStore;
pub use memory_store::MemoryChunkStore;
pub use placement::{
    decode_moved, encode_moved, DeviceClass, DeviceId, MovedFileError, Placement, PlacementBook,
    PlacementJournal, PlacementPolicy, PoolName, RecordedLayout, JOURNAL_FRESH_MAX,
    JOURNAL_MOVED_MAX, MOVED_FILE_MAGIC, MOVED_FILE_VERSION,
};
pub use repair::{RepairReport, REPAIR_CONCURRENCY_MAX, REPORT_LOST_MAX};
pub use service::{ChunkService, SealedKept, WrittenChunk};
pub use spread::{
    device_list_epoch, ChunkLayout, FailureDomain, PlacementEngine, PlacementRefused,
};
pub use store::{ChunkStore, StoreFuture};
