//! The namespaces of all tenants a server holds, opened on first use.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use kiseki_chunk::ChunkService;
use kiseki_crypto::KeySource;
use kiseki_log::{ShardLog, ShardLogOptions};
use kiseki_types::limits::{CHUNK_SIZE_BYTES_DEFAULT, CHUNK_SIZE_BYTES_MAX, CHUNK_SIZE_BYTES_MIN};
use kiseki_types::{ErrorKind, NamespaceError, ShardId, TenantId};

use crate::error::{from_key_error, from_log_error};
use crate::{NamespaceView, TenantNamespace};

/// How a server lays out namespaces.
#[derive(Clone, Debug)]
pub struct NamespaceConfig {
    /// Directory holding one sub-directory per shard log.
    pub shards_dir: PathBuf,
    /// Bytes per data chunk.
    pub chunk_size: u32,
    /// Shard log tunables.
    pub log: ShardLogOptions,
}

impl NamespaceConfig {
    /// Default tunables with shard logs under `shards_dir`.
    pub fn new(shards_dir: PathBuf) -> Self {
        NamespaceConfig {
            shards_dir,
            chunk_size: CHUNK_SIZE_BYTES_DEFAULT,
            log: ShardLogOptions::default(),
        }
    }
}

/// Every tenant namespace of one server.
pub struct Namespace {
    config: NamespaceConfig,
    keys: Arc<dyn KeySource>,
    chunks: ChunkService,
    tenants: tokio::sync::Mutex<HashMap<TenantId, Arc<TenantNamespace>>>,
}

impl Namespace {
    /// A registry over `chunks` with keys from `keys`.
    pub fn new(
        config: NamespaceConfig,
        keys: Arc<dyn KeySource>,
        chunks: ChunkService,
    ) -> Result<Self, NamespaceError> {
        if !(CHUNK_SIZE_BYTES_MIN..=CHUNK_SIZE_BYTES_MAX).contains(&config.chunk_size) {
            return Err(NamespaceError::new(
                ErrorKind::InvalidArgument,
                format!(
                    "chunk size {} outside {CHUNK_SIZE_BYTES_MIN}..={CHUNK_SIZE_BYTES_MAX}",
                    config.chunk_size
                ),
            ));
        }
        Ok(Namespace {
            config,
            keys,
            chunks,
            tenants: tokio::sync::Mutex::new(HashMap::new()),
        })
    }

    /// The namespace of `tenant`, opening its shard (and creating its keys) on first use.
    pub async fn tenant(&self, tenant: TenantId) -> Result<Arc<TenantNamespace>, NamespaceError> {
        let mut tenants = self.tenants.lock().await;
        if let Some(namespace) = tenants.get(&tenant) {
            return Ok(Arc::clone(namespace));
        }
        let what = format!("tenant {tenant}");
        self.keys
            .ensure_tenant(tenant)
            .await
            .map_err(|error| from_key_error(error, &what))?;
        let keyring = self
            .keys
            .keyring(tenant)
            .await
            .map_err(|error| from_key_error(error, &what))?;
        let shard = ShardId { tenant, index: 0 };
        let view = Arc::new(RwLock::new(NamespaceView::new(shard.index)));
        let dir = self.config.shards_dir.join(shard.to_string());
        let log = ShardLog::open(&dir, shard, Arc::clone(&view), self.config.log.clone())
            .await
            .map_err(|error| from_log_error(error, &what))?;
        let namespace = Arc::new(TenantNamespace::new(
            tenant,
            view,
            log,
            keyring,
            self.chunks.clone(),
            self.config.chunk_size as usize,
        ));
        tenants.insert(tenant, Arc::clone(&namespace));
        Ok(namespace)
    }

    /// The tenants opened so far.
    pub async fn open_tenants(&self) -> Vec<Arc<TenantNamespace>> {
        self.tenants.lock().await.values().cloned().collect()
    }

    /// Stops every shard log after the writes in flight are answered.
    pub async fn shutdown(&self) {
        let tenants: Vec<_> = self
            .tenants
            .lock()
            .await
            .drain()
            .map(|(_, namespace)| namespace)
            .collect();
        for namespace in tenants {
            namespace.shutdown().await;
        }
    }
}
