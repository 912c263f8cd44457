use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use kiseki_types::{ChunkId, TenantId};

use crate::carried::CarriedFiles;
use crate::{durable_file, tenant_dirs};
use crate::{ChunkError, ChunkStore, DeviceClass, Placement, PoolName, StoreFuture};

/// A chunk store on local directories, one per pool: chunk `id` of tenant `t` lives at
/// `<pool dir>/t<t>/<first two hex digits>/<hex id>`.
///
/// A chunk is written to a temporary file, synced, renamed into place and its directory synced,
/// so a crash leaves either the whole frame under its name or nothing. A frame carried in the
/// log ([`ChunkStore::put_carried`]) is written the same way without the syncs, which come in
/// [`ChunkStore::sync_carried`] (see `carried.rs`).
pub struct FsChunkStore {
    pools: Arc<BTreeMap<PoolName, Pool>>,
    carried: Arc<CarriedFiles>,
}

struct Pool {
    root: PathBuf,
    class: DeviceClass,
}

impl FsChunkStore {
    /// A store over `pools` (name, directory, device class); directories are created if missing.
    pub fn open(
        pools: impl IntoIterator<Item = (PoolName, PathBuf, DeviceClass)>,
    ) -> Result<Self, ChunkError> {
        let mut map = BTreeMap::new();
        for (name, root, class) in pools {
            fs::create_dir_all(&root).map_err(|source| io_error(&root, source))?;
            map.insert(name, Pool { root, class });
        }
        Ok(FsChunkStore {
            pools: Arc::new(map),
            carried: Arc::default(),
        })
    }

    /// The device class of a pool.
    pub fn device_class(&self, pool: &PoolName) -> Option<DeviceClass> {
        self.pools.get(pool).map(|pool| pool.class)
    }

    /// Every chunk stored under pool directory `root` (temporary files skipped); blocking.
    pub fn list_pool_dir(root: &Path) -> io::Result<Vec<(TenantId, ChunkId)>> {
        let mut chunks = Vec::new();
        tenant_dirs::for_each_file(root, |tenant, name| {
            chunks.extend(ChunkId::from_hex(name).map(|id| (tenant, id)));
        })?;
        Ok(chunks)
    }

    /// The file a chunk occupies in a pool (used by scrub and by corruption tests).
    pub fn chunk_path(&self, pool: &PoolName, tenant: TenantId, id: ChunkId) -> Option<PathBuf> {
        self.pools
            .get(pool)
            .map(|pool| chunk_path(&pool.root, tenant, id))
    }
}

fn chunk_path(root: &Path, tenant: TenantId, id: ChunkId) -> PathBuf {
    tenant_dirs::fan_out_dir(root, tenant, &id).join(id.to_hex())
}

fn io_error(path: &Path, source: io::Error) -> ChunkError {
    ChunkError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn is_no_space(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::StorageFull
        || matches!(
            error.raw_os_error(),
            Some(libc::ENOSPC) | Some(libc::EDQUOT)
        )
}

/// A failed write of chunk `id` to `path` in `pool`: `NoSpace` when the device is full.
fn write_error(pool: String, id: ChunkId, path: &Path, source: io::Error) -> ChunkError {
    if is_no_space(&source) {
        ChunkError::NoSpace { pool, id }
    } else {
        io_error(path, source)
    }
}

fn write_durably(carried: &CarriedFiles, path: &Path, frame: &[u8]) -> io::Result<()> {
    if carried.is_unsynced(path) {
        // Kept for a log entry so far: what this write promises needs it on disk now.
        match carried.sync_one(path) {
            Err(error) if error.kind() == io::ErrorKind::NotFound => {} // deleted: write anew
            synced => return synced,
        }
    }
    if path.exists() {
        return Ok(());
    }
    durable_file::replace_durably(path, frame)
}

impl FsChunkStore {
    fn locate(&self, tenant: TenantId, id: ChunkId) -> Option<PathBuf> {
        self.pools
            .values()
            .map(|pool| chunk_path(&pool.root, tenant, id))
            .find(|path| path.exists())
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ChunkError> + Send + 'static,
) -> Result<T, ChunkError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| ChunkError::Task(error.to_string()))?
}

impl ChunkStore for FsChunkStore {
    fn put<'a>(
        &'a self,
        tenant: TenantId,
        id: ChunkId,
        frame: Bytes,
        placement: &'a Placement,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let pool = self
                .pools
                .get(&placement.pool)
                .ok_or_else(|| ChunkError::UnknownPool(placement.pool.0.clone()))?;
            let path = chunk_path(&pool.root, tenant, id);
            let pool_name = placement.pool.0.clone();
            let carried = Arc::clone(&self.carried);
            blocking(move || {
                write_durably(&carried, &path, &frame)
                    .map_err(|source| write_error(pool_name, id, &path, source))
            })
            .await
        })
    }

    fn get(&self, tenant: TenantId, id: ChunkId) -> StoreFuture<'_, Bytes> {
        let (pools, carried) = (Arc::clone(&self.pools), Arc::clone(&self.carried));
        Box::pin(blocking(move || {
            let store = FsChunkStore { pools, carried };
            let path = store
                .locate(tenant, id)
                .ok_or(ChunkError::NotFound { tenant, id })?;
            durable_file::read_whole(&path).map_err(|source| match source.kind() {
                io::ErrorKind::NotFound => ChunkError::NotFound { tenant, id },
                _ => io_error(&path, source),
            })
        }))
    }

    fn contains(&self, tenant: TenantId, id: ChunkId) -> StoreFuture<'_, bool> {
        let found = self
            .locate(tenant, id)
            .is_some_and(|path| !self.carried.is_unsynced(&path));
        Box::pin(async move { Ok(found) })
    }

    fn delete(&self, tenant: TenantId, id: ChunkId) -> StoreFuture<'_, ()> {
        let path = self.locate(tenant, id);
        Box::pin(blocking(move || match path {
            Some(path) => fs::remove_file(&path).or_else(|source| match source.kind() {
                io::ErrorKind::NotFound => Ok(()),
                _ => Err(io_error(&path, source)),
            }),
            None => Ok(()),
        }))
    }

    fn carries(&self, pool: &PoolName) -> bool {
        self.pools.contains_key(pool)
    }

    fn put_carried(
        &self,
        tenant: TenantId,
        id: ChunkId,
        frame: &[u8],
        placement: &Placement,
    ) -> Result<(), ChunkError> {
        let pool = self
            .pools
            .get(&placement.pool)
            .ok_or_else(|| ChunkError::UnknownPool(placement.pool.0.clone()))?;
        let path = chunk_path(&pool.root, tenant, id);
        self.carried
            .write(&path, frame)
            .map_err(|source| write_error(placement.pool.0.clone(), id, &path, source))
    }

    fn sync_carried(&self) -> Result<(), ChunkError> {
        self.carried
            .sync()
            .map_err(|source| io_error(Path::new("carried chunk files"), source))
    }
}
