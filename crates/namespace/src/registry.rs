//! The namespaces of all tenants a server holds, opened on first use.
//!
//! In a cluster, a tenant's shard is opened on every node (voter or learner, see
//! `kiseki_log::ClusterLayout`), and [`Namespace::tenant`] passes a read barrier before handing
//! the namespace out, so every request served from it sees every write acknowledged before the
//! request began, on whichever node (linearizable reads). [`Namespace::shard_peer`] opens a
//! shard for the cluster service without that barrier (a peer's Raft call must never wait for
//! the group it is part of forming).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock, RwLock};

use kiseki_chunk::{ChunkService, PlacementJournal};
use kiseki_crypto::KeySource;
use kiseki_log::{ClusterLayout, ShardLog, ShardLogOptions, ShardPeer};
use kiseki_types::limits::{CHUNK_SIZE_BYTES_DEFAULT, CHUNK_SIZE_BYTES_MAX, CHUNK_SIZE_BYTES_MIN};
use kiseki_types::{ErrorKind, NamespaceError, ShardId, TenantId};

use crate::error::{from_key_error, from_log_error};
use crate::placements::{JournalCell, ViewBook, Views};
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
    /// The cluster this server is a node of; `None` for a single-node server.
    pub cluster: Option<ClusterLayout>,
    /// Bytes of small writes' frames carried in a shard's log after which a snapshot is asked
    /// for (it syncs their chunk files and lets the log drop them): bounds the log in bytes.
    pub carried_bytes_per_snapshot: u64,
}

/// Default of [`NamespaceConfig::carried_bytes_per_snapshot`].
pub const CARRIED_BYTES_PER_SNAPSHOT_DEFAULT: u64 = 256 << 20;

impl NamespaceConfig {
    /// Default tunables with shard logs under `shards_dir`.
    pub fn new(shards_dir: PathBuf) -> Self {
        NamespaceConfig {
            shards_dir,
            chunk_size: CHUNK_SIZE_BYTES_DEFAULT,
            log: ShardLogOptions::default(),
            cluster: None,
            carried_bytes_per_snapshot: CARRIED_BYTES_PER_SNAPSHOT_DEFAULT,
        }
    }
}

/// Every tenant namespace of one server.
pub struct Namespace {
    config: NamespaceConfig,
    keys: Arc<dyn KeySource>,
    chunks: ChunkService,
    tenants: tokio::sync::Mutex<HashMap<TenantId, (Arc<TenantNamespace>, ShardPeer)>>,
    /// The node's placement journal, once attached (see [`Self::use_placement_journal`]).
    journal: JournalCell,
    /// Every open tenant's view, for placement lookups from the chunk stores.
    views: Views,
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
            journal: Arc::new(OnceLock::new()),
            views: Arc::new(RwLock::new(HashMap::new())),
        })
    }

    /// Records chunk placements through `journal`: fresh layouts the chunk stores note go into
    /// the delta of the composition that references them, and the stores look recorded
    /// layouts up in the tenants' views. Call once, before serving (later calls are ignored).
    pub fn use_placement_journal(&self, journal: Arc<PlacementJournal>) {
        journal.set_book(Arc::new(ViewBook::new(Arc::clone(&self.views))));
        let _ = self.journal.set(journal);
    }

    /// The namespace of `tenant`, opening its shard (and creating its keys) on first use. In a
    /// cluster, waits (bounded) until this node's copy reflects every write acknowledged before
    /// the call.
    pub async fn tenant(&self, tenant: TenantId) -> Result<Arc<TenantNamespace>, NamespaceError> {
        let (namespace, peer) = self.open(tenant).await?;
        if self.config.cluster.is_some() {
            peer.read_barrier()
                .await
                .map_err(|error| from_log_error(error, &format!("tenant {tenant}")))?;
        }
        Ok(namespace)
    }

    /// The namespace of `tenant`, opened (and its keys created) on first use, without the read
    /// barrier of [`Self::tenant`]: for start-up, where a cluster may not have formed yet.
    pub async fn open_tenant(
        &self,
        tenant: TenantId,
    ) -> Result<Arc<TenantNamespace>, NamespaceError> {
        Ok(self.open(tenant).await?.0)
    }

    /// The cluster handle of `shard`, opening it on first use (for the cluster service).
    pub async fn shard_peer(&self, shard: ShardId) -> Result<ShardPeer, NamespaceError> {
        if shard.index != 0 {
            return Err(NamespaceError::new(
                ErrorKind::NotFound,
                format!("shard {shard}: tenants have one shard (index 0)"),
            ));
        }
        Ok(self.open(shard.tenant).await?.1)
    }

    async fn open(
        &self,
        tenant: TenantId,
    ) -> Result<(Arc<TenantNamespace>, ShardPeer), NamespaceError> {
        let mut tenants = self.tenants.lock().await;
        if let Some((namespace, peer)) = tenants.get(&tenant) {
            return Ok((Arc::clone(namespace), peer.clone()));
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
        let view = Arc::new(RwLock::new(
            NamespaceView::new(shard.index)
                .keeping_carried_frames(tenant, Arc::clone(self.chunks.store())),
        ));
        let dir = self.config.shards_dir.join(shard.to_string());
        let options = self.config.log.clone();
        let log = match &self.config.cluster {
            None => ShardLog::open(&dir, shard, Arc::clone(&view), options).await,
            Some(layout) => {
                ShardLog::open_in_cluster(&dir, shard, Arc::clone(&view), options, layout.clone())
                    .await
            }
        }
        .map_err(|error| from_log_error(error, &what))?;
        let peer = log.peer();
        self.views
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(tenant, Arc::clone(&view));
        let namespace = Arc::new(
            TenantNamespace::new(
                tenant,
                view,
                log,
                keyring,
                self.chunks.clone(),
                self.config.chunk_size as usize,
                Arc::clone(&self.journal),
            )
            .with_carried_bytes_per_snapshot(self.config.carried_bytes_per_snapshot),
        );
        tenants.insert(tenant, (Arc::clone(&namespace), peer.clone()));
        Ok((namespace, peer))
    }

    /// The tenants opened so far.
    pub async fn open_tenants(&self) -> Vec<Arc<TenantNamespace>> {
        let tenants = self.tenants.lock().await;
        tenants
            .values()
            .map(|(namespace, _)| Arc::clone(namespace))
            .collect()
    }

    /// Stops every shard log after the writes in flight are answered.
    pub async fn shutdown(&self) {
        let tenants: Vec<_> = self
            .tenants
            .lock()
            .await
            .drain()
            .map(|(_, (namespace, _))| namespace)
            .collect();
        for namespace in tenants {
            namespace.shutdown().await;
        }
    }
}
