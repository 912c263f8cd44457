//! The Kiseki native client: a tenant's namespace as POSIX files, over a [`Transport`] to a
//! `kiseki-server`. It holds the file-system semantics of a mount (close-to-open consistency,
//! write buffering into chunks, the chunk cache with read-ahead, attribute caching), so the
//! FUSE adapter (`kiseki-client-fuse`), and later the Python SDK and C FFI, stay thin.
//!
//! Chunks are sealed and opened here with the tenant's keys: plaintext never crosses the
//! network. This crate never maps errors to errno (the FUSE adapter does, in one place) and
//! never decides namespace semantics the server's namespace owns (names, links, renames).

pub mod agent;
mod attr_cache;
mod bulk;
mod cache;
mod client;
mod dirty;
mod transport;

pub use bulk::BulkGrant;
pub use cache::{
    human_bytes, CacheError, CacheMode, CacheStatus, ChunkCache, MemoryChunkCache, NodeCache,
    NodeCacheConfig, PinHolder, PinInfo, PinPlan, Released, TierUsage, VerifyReport,
};
pub use client::{
    Caller, Client, ClientOptions, DatasetWalk, DATASET_NODES_MAX, HIDDEN_PREFIX, XATTR_USER_PREFIX,
};
pub use dirty::DirtyRanges;
pub use transport::{
    AttrUpdate, ChannelSecurity, ClientCertificate, DirEntry, FsStats, GrpcOptions, GrpcTransport,
    Layout, NewNode, Node, Opened, Result, SessionInfo, Special, Transport,
};
pub use transport::{CountingTransport, RequestCounts, RequestCountsSnapshot};
