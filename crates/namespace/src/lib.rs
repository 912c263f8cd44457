//! The one namespace API every Kiseki gateway calls (S3, NFS, FUSE through the native client):
//! lookups, attributes, directories, ordered listings, streaming reads of a range, streaming
//! writes, appends, truncation, atomic rename, removal and user metadata, over a tenant's shards.
//!
//! Semantics live here once: names and their order ([`names`]), what each delta does to the
//! materialized view ([`NamespaceView`]), how bytes become chunks and compositions
//! ([`ChunkWriter`]) and back ([`RangeReader`]). S3 buckets are top-level directories and `/` in
//! keys makes directories, so the same bytes are a file over POSIX and an object over S3.
//!
//! This crate never parses a wire protocol, never maps errors to protocol codes, and never holds
//! a tenant's data of one tenant where another tenant's handle can reach it: every handle
//! ([`TenantNamespace`]) is bound to one tenant's shards and keys.

mod access;
mod cursors;
mod error;
pub mod names;
mod native;
pub mod object;
mod placements;
mod reader;
mod registry;
mod streaming_md5;
mod tenant;
mod uploads;
mod view;
mod writer;

pub use access::{Caller, Permissions};
pub use error::{from_chunk_error, from_key_error, from_log_error};
pub use kiseki_log::{AttrChanges, Owner, PutCondition};
pub use native::{FileLayout, POSIX_SPECIAL_KEY};
pub use placements::{layout_of_record, record_of_layout, ChunkPlacementInfo};
pub use reader::RangeReader;
pub use registry::{Namespace, NamespaceConfig, CARRIED_BYTES_PER_SNAPSHOT_DEFAULT};
pub use tenant::TenantNamespace;
pub use uploads::{PartInfo, UploadInfo};
pub use view::{DirectoryEntry, ListEntry, ListPage, ListRequest, NamespaceView};
pub use writer::{ChunkWriter, WrittenData};
