use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use kiseki_types::{ChunkId, TenantId};

use crate::{ChunkError, Placement};

/// The future every store operation returns (boxed so stores can be used as trait objects).
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, ChunkError>> + Send + 'a>>;

/// Keeps sealed chunk frames. A store never sees plaintext or keys: it stores and returns frames
/// and answers for their durability.
pub trait ChunkStore: Send + Sync + 'static {
    /// Stores the frame of chunk `id` durably (on return it survives a crash). Storing an id that
    /// already exists is allowed and keeps one copy.
    fn put<'a>(
        &'a self,
        tenant: TenantId,
        id: ChunkId,
        frame: Bytes,
        placement: &'a Placement,
    ) -> StoreFuture<'a, ()>;

    /// Returns the frame of chunk `id`, unverified (the caller verifies).
    fn get(&self, tenant: TenantId, id: ChunkId) -> StoreFuture<'_, Bytes>;

    /// Whether chunk `id` is stored.
    fn contains(&self, tenant: TenantId, id: ChunkId) -> StoreFuture<'_, bool>;

    /// Removes chunk `id`; removing a missing chunk is not an error.
    fn delete(&self, tenant: TenantId, id: ChunkId) -> StoreFuture<'_, ()>;
}
