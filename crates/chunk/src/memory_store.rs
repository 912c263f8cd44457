use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use kiseki_types::{ChunkId, TenantId};

use crate::{ChunkError, ChunkStore, Placement, StoreFuture};

/// A chunk store in memory: for tests and for benchmarks that must leave the disk out.
#[derive(Default)]
pub struct MemoryChunkStore {
    frames: Mutex<HashMap<(TenantId, ChunkId), Bytes>>,
}

impl MemoryChunkStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies `damage` to the stored frame of a chunk (fault injection for tests).
    pub fn damage(&self, tenant: TenantId, id: ChunkId, damage: impl FnOnce(&mut Vec<u8>)) -> bool {
        let mut frames = self
            .frames
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(frame) = frames.get_mut(&(tenant, id)) else {
            return false;
        };
        let mut bytes = frame.to_vec();
        damage(&mut bytes);
        *frame = Bytes::from(bytes);
        true
    }

    fn frames(&self) -> std::sync::MutexGuard<'_, HashMap<(TenantId, ChunkId), Bytes>> {
        self.frames
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl ChunkStore for MemoryChunkStore {
    fn put<'a>(
        &'a self,
        tenant: TenantId,
        id: ChunkId,
        frame: Bytes,
        _: &'a Placement,
    ) -> StoreFuture<'a, ()> {
        self.frames().insert((tenant, id), frame);
        Box::pin(async { Ok(()) })
    }

    fn get(&self, tenant: TenantId, id: ChunkId) -> StoreFuture<'_, Bytes> {
        let found = self.frames().get(&(tenant, id)).cloned();
        Box::pin(async move { found.ok_or(ChunkError::NotFound { tenant, id }) })
    }

    fn contains(&self, tenant: TenantId, id: ChunkId) -> StoreFuture<'_, bool> {
        let found = self.frames().contains_key(&(tenant, id));
        Box::pin(async move { Ok(found) })
    }

    fn delete(&self, tenant: TenantId, id: ChunkId) -> StoreFuture<'_, ()> {
        self.frames().remove(&(tenant, id));
        Box::pin(async { Ok(()) })
    }
}
