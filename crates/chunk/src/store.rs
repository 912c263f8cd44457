use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use kiseki_types::{ChunkId, TenantId};

use crate::{ChunkError, Placement, PoolName};

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

    /// Whether frames placed in `pool` can be kept with [`ChunkStore::put_carried`].
    fn carries(&self, _pool: &PoolName) -> bool {
        false
    }

    /// Keeps a frame whose durable copy is the shard-log entry that carries it, without waiting
    /// for the disk; blocking. It becomes durable by [`ChunkStore::sync_carried`], which must
    /// run before that entry leaves the log. Until then [`ChunkStore::contains`] reports the
    /// chunk absent, so a write that deduplicates against it stores it durably with `put`.
    fn put_carried(
        &self,
        _tenant: TenantId,
        _id: ChunkId,
        _frame: &[u8],
        placement: &Placement,
    ) -> Result<(), ChunkError> {
        Err(ChunkError::CarryUnsupported(placement.pool.0.clone()))
    }

    /// Makes every frame kept with [`ChunkStore::put_carried`] durable; blocking.
    fn sync_carried(&self) -> Result<(), ChunkError> {
        Ok(())
    }
}
