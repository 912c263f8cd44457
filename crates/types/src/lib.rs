//! The vocabulary every Kiseki crate shares: newtype ids (tenant, shard, inode, chunk), the
//! composition that maps a file's bytes onto chunks, node attributes, the limits that bound every
//! buffer and request, and the error kinds the namespace reports.
//!
//! This crate holds plain data only. It must never do I/O, hold keys, or know a wire protocol.

mod attrs;
mod composition;
mod error;
mod ids;
pub mod limits;

pub use attrs::{Attributes, FileKind, Timestamp};
pub use composition::{Composition, Extent};
pub use error::{ErrorKind, NamespaceError};
pub use ids::{ChunkId, InodeId, ShardId, TenantId};
