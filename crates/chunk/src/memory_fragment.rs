//! [`MemoryFragmentStore`]: a device in memory, for tests and for benchmarks that must leave the
//! disk out. It keeps fragment files as given and never inspects them.

use std::collections::BTreeMap;
use std::sync::Mutex;

use bytes::Bytes;

use crate::fragment::{DeviceInfo, FragmentKey, FragmentStore};
use crate::{ChunkError, StoreFuture};

/// Fragment files in a map.
pub struct MemoryFragmentStore {
    info: DeviceInfo,
    fragments: Mutex<BTreeMap<FragmentKey, Bytes>>,
}

impl MemoryFragmentStore {
    /// An empty device.
    pub fn new(info: DeviceInfo) -> Self {
        MemoryFragmentStore {
            info,
            fragments: Mutex::new(BTreeMap::new()),
        }
    }

    /// Forgets every fragment (a lost device replaced by an empty one).
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Fragments held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the device holds no fragment.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<FragmentKey, Bytes>> {
        self.fragments
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl FragmentStore for MemoryFragmentStore {
    fn device(&self) -> &DeviceInfo {
        &self.info
    }

    fn put_fragment(&self, key: FragmentKey, bytes: Bytes) -> StoreFuture<'_, ()> {
        self.lock().insert(key, bytes);
        Box::pin(async { Ok(()) })
    }

    fn get_fragment(&self, key: FragmentKey) -> StoreFuture<'_, Bytes> {
        let found = self.lock().get(&key).cloned();
        Box::pin(async move {
            found.ok_or(ChunkError::NotFound {
                tenant: key.tenant,
                id: key.chunk,
            })
        })
    }

    fn delete_fragment(&self, key: FragmentKey) -> StoreFuture<'_, ()> {
        self.lock().remove(&key);
        Box::pin(async { Ok(()) })
    }

    fn list_fragments(&self) -> StoreFuture<'_, Vec<FragmentKey>> {
        let keys = self.lock().keys().copied().collect();
        Box::pin(async move { Ok(keys) })
    }
}
