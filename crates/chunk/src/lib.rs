//! Chunks: the unit in which Kiseki stores file and object bytes. A chunk is content-addressed
//! (keyed BLAKE3 of its plaintext under the tenant's addressing key), sealed with AES-256-GCM
//! under the tenant's current DEK, framed in a self-describing on-disk format, and kept by a
//! [`ChunkStore`] in a pool of a device class.
//!
//! This crate never sees names, paths or compositions, and never stores or returns plaintext
//! except to the caller that holds the tenant's keys.

mod buffer;
mod error;
mod format;
mod fs_store;
mod memory_store;
mod placement;
mod service;
mod store;

pub use buffer::ChunkBuffer;
pub use error::ChunkError;
pub use format::{ChunkHeader, FORMAT_VERSION, HEADER_BYTES, MAGIC};
pub use fs_store::FsChunkStore;
pub use memory_store::MemoryChunkStore;
pub use placement::{DeviceClass, Placement, PoolName};
pub use service::{ChunkService, WrittenChunk};
pub use store::{ChunkStore, StoreFuture};
