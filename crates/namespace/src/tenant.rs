//! One tenant's namespace: the API the gateways call. Reads are answered from the materialized
//! view (which reflects every acknowledged write: read-after-write); every change is one delta
//! proposed to the owning shard's log and acknowledged after it is durable and applied.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock, RwLockReadGuard};

use kiseki_chunk::ChunkService;
use kiseki_crypto::TenantKeyring;
use kiseki_log::{AttrChanges, Delta, NewNode, Owner, ShardLog};
use kiseki_types::{Attributes, ErrorKind, InodeId, NamespaceError, TenantId, Timestamp};

use crate::error::from_log_error;
use crate::names::{split_path, validate_name};
use crate::{
    ChunkWriter, DirectoryEntry, ListPage, ListRequest, NamespaceView, RangeReader, WrittenData,
};

/// The namespace of one tenant. Cheap to share (`Arc`); every method is safe to call concurrently.
pub struct TenantNamespace {
    tenant: TenantId,
    view: Arc<RwLock<NamespaceView>>,
    log: tokio::sync::RwLock<Option<ShardLog>>,
    keyring: Arc<TenantKeyring>,
    chunks: ChunkService,
    chunk_size: usize,
    journal: crate::placements::JournalCell,
    /// Bytes of chunk frames carried in the log since the last snapshot this namespace asked
    /// for, and the bound that asks for one (see [`Self::count_carried`]).
    carried_bytes: std::sync::atomic::AtomicU64,
    carried_bytes_per_snapshot: u64,
}

impl TenantNamespace {
    pub(crate) fn new(
        tenant: TenantId,
        view: Arc<RwLock<NamespaceView>>,
        log: ShardLog,
        keyring: Arc<TenantKeyring>,
        chunks: ChunkService,
        chunk_size: usize,
        journal: crate::placements::JournalCell,
    ) -> Self {
        TenantNamespace {
            tenant,
            view,
            log: tokio::sync::RwLock::new(Some(log)),
            keyring,
            chunks,
            chunk_size,
            journal,
            carried_bytes: std::sync::atomic::AtomicU64::new(0),
            carried_bytes_per_snapshot: crate::registry::CARRIED_BYTES_PER_SNAPSHOT_DEFAULT,
        }
    }

    /// This namespace, asking for a snapshot after `bytes` of frames carried in its log.
    pub(crate) fn with_carried_bytes_per_snapshot(mut self, bytes: u64) -> Self {
        self.carried_bytes_per_snapshot = bytes;
        self
    }

    /// Counts `bytes` of frames just carried in the log; past the configured bound since the
    /// last request, asks for a snapshot, which syncs their chunk files and lets the log drop
    /// them (the snapshot policy counts entries, and one entry may carry many frames).
    pub(crate) async fn count_carried(&self, bytes: u64) {
        use std::sync::atomic::Ordering;
        let total = self.carried_bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if total < self.carried_bytes_per_snapshot {
            return;
        }
        self.carried_bytes.store(0, Ordering::Relaxed);
        if let Some(log) = self.log.read().await.as_ref() {
            if let Err(error) = log.trigger_snapshot().await {
                tracing::warn!(tenant = %self.tenant, %error, "asking for a snapshot");
            }
        }
    }

    /// The node's placement journal, if one is attached.
    pub(crate) fn journal(&self) -> Option<&Arc<kiseki_chunk::PlacementJournal>> {
        self.journal.get()
    }

    /// The tenant this namespace belongs to.
    pub fn tenant(&self) -> TenantId {
        self.tenant
    }

    /// The chunk service, keyring and chunk size (for the native-client paths in `native.rs`).
    pub(crate) fn chunk_parts(&self) -> (&ChunkService, &Arc<TenantKeyring>, usize) {
        (&self.chunks, &self.keyring, self.chunk_size)
    }

    pub(crate) fn view(&self) -> RwLockReadGuard<'_, NamespaceView> {
        // A panic while applying would leave the view poisoned; the data is still the last
        // consistent state, since deltas are applied whole.
        self.view
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn chunk_service(&self) -> ChunkService {
        self.chunks.clone()
    }

    pub(crate) fn tenant_keyring(&self) -> Arc<TenantKeyring> {
        Arc::clone(&self.keyring)
    }

    pub(crate) async fn propose(
        &self,
        delta: Delta,
        what: &str,
    ) -> Result<InodeId, NamespaceError> {
        // Placements of the chunks the delta references ride in the same log entry.
        let (delta, taken) = self.with_placements(delta);
        let applied = self.propose_outcome(delta, what).await;
        if applied.is_err() {
            self.untake_placements(taken);
        }
        applied?.inode.ok_or_else(|| {
            NamespaceError::new(
                ErrorKind::Unavailable,
                format!("{what}: delta applied without a node"),
            )
        })
    }

    /// Proposes `delta` as is and returns what applying it produced.
    pub(crate) async fn propose_outcome(
        &self,
        delta: Delta,
        what: &str,
    ) -> Result<kiseki_log::Applied, NamespaceError> {
        let log = self.log.read().await;
        let log = log.as_ref().ok_or_else(|| {
            NamespaceError::new(
                ErrorKind::Unavailable,
                format!("{what}: namespace is shutting down"),
            )
        })?;
        let applied = log
            .propose(delta)
            .await
            .map_err(|error| from_log_error(error, what))??;
        Ok(applied)
    }

    pub(crate) async fn shutdown(&self) {
        if let Some(log) = self.log.write().await.take() {
            log.shutdown().await;
        }
    }

    /// Log metrics of the tenant's shard, if it is open.
    pub async fn log_metrics(&self) -> Option<kiseki_log::ShardLogMetrics> {
        self.log.read().await.as_ref().map(ShardLog::metrics)
    }

    /// Nodes (files, directories, symlinks) in the tenant's namespace.
    pub fn node_count(&self) -> usize {
        self.view().node_count()
    }

    // ---- Reads ----

    /// The attributes of `inode`.
    pub fn attributes(&self, inode: InodeId) -> Result<Attributes, NamespaceError> {
        self.view().attributes(inode)
    }

    /// The node named `name` in `parent`, with its attributes.
    pub fn lookup(
        &self,
        parent: InodeId,
        name: &str,
    ) -> Result<(InodeId, Attributes), NamespaceError> {
        let view = self.view();
        let inode = view.lookup(parent, name)?;
        Ok((inode, view.attributes(inode)?))
    }

    /// The node at `path` (`/`-separated, from the tenant root).
    pub fn resolve(&self, path: &str) -> Result<InodeId, NamespaceError> {
        self.view().resolve(&split_path(path)?)
    }

    /// Up to `limit` entries of `dir` after cursor `after` (see [`DirectoryEntry::cursor`]).
    pub fn read_directory(
        &self,
        dir: InodeId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DirectoryEntry>, NamespaceError> {
        self.view().read_directory(dir, after, limit)
    }

    /// Keys in S3 order by prefix, delimiter and start-after.
    pub fn list(&self, request: ListRequest<'_>) -> Result<ListPage, NamespaceError> {
        self.view().list(request)
    }

    /// The target of a symlink.
    pub fn read_link(&self, inode: InodeId) -> Result<String, NamespaceError> {
        self.view().read_link(inode)
    }

    /// The user metadata (xattrs / x-amz-meta) of a node.
    pub fn user_metadata(
        &self,
        inode: InodeId,
    ) -> Result<BTreeMap<String, Vec<u8>>, NamespaceError> {
        self.view().user_metadata(inode)
    }

    /// A streaming reader of `len` bytes at `offset` of file `inode`, over the file's content as
    /// of this call (a concurrent replace does not tear the read).
    pub fn read(
        &self,
        inode: InodeId,
        offset: u64,
        len: u64,
    ) -> Result<RangeReader, NamespaceError> {
        let composition = self.view().composition(inode)?;
        Ok(RangeReader::new(
            self.tenant,
            self.chunks.clone(),
            Arc::clone(&self.keyring),
            &composition,
            offset,
            len,
            format!("file {inode} of tenant {}", self.tenant),
        ))
    }

    /// A streaming reader of the file at `path`; errors name the path.
    pub fn read_path(
        &self,
        path: &str,
        offset: u64,
        len: u64,
    ) -> Result<RangeReader, NamespaceError> {
        let view = self.view();
        let composition = view.composition(view.resolve(&split_path(path)?)?)?;
        Ok(RangeReader::new(
            self.tenant,
            self.chunks.clone(),
            Arc::clone(&self.keyring),
            &composition,
            offset,
            len,
            format!("{path:?} of tenant {}", self.tenant),
        ))
    }

    // ---- Writes ----

    /// A streaming writer of new content; commit its result with [`Self::put_file`],
    /// [`Self::write_at`] or [`Self::append`].
    pub fn writer(&self) -> ChunkWriter {
        ChunkWriter::new(
            self.tenant,
            self.chunks.clone(),
            Arc::clone(&self.keyring),
            self.chunk_size,
        )
    }

    /// Creates an empty file (`exclusive`: fail if the name exists; otherwise an existing file
    /// is returned).
    pub async fn create(
        &self,
        owner: Owner,
        parent: InodeId,
        name: &str,
        mode: u32,
        exclusive: bool,
    ) -> Result<InodeId, NamespaceError> {
        validate_name(name)?;
        let delta = Delta::Create {
            parent,
            name: name.into(),
            node: NewNode::File,
            mode,
            owner,
            exclusive,
            time: Timestamp::now(),
        };
        self.propose(delta, &format!("create {name:?}")).await
    }

    /// Creates a directory.
    pub async fn mkdir(
        &self,
        owner: Owner,
        parent: InodeId,
        name: &str,
        mode: u32,
    ) -> Result<InodeId, NamespaceError> {
        validate_name(name)?;
        let delta = Delta::Create {
            parent,
            name: name.into(),
            node: NewNode::Directory,
            mode,
            owner,
            exclusive: true,
            time: Timestamp::now(),
        };
        self.propose(delta, &format!("mkdir {name:?}")).await
    }

    /// Creates a symlink to `target`.
    pub async fn symlink(
        &self,
        owner: Owner,
        parent: InodeId,
        name: &str,
        target: &str,
    ) -> Result<InodeId, NamespaceError> {
        validate_name(name)?;
        let node = NewNode::Symlink {
            target: target.into(),
        };
        let delta = Delta::Create {
            parent,
            name: name.into(),
            node,
            mode: 0o777,
            owner,
            exclusive: true,
            time: Timestamp::now(),
        };
        self.propose(delta, &format!("symlink {name:?}")).await
    }

    /// Creates or atomically replaces the file at `path` with `data`, creating missing parent
    /// directories (an S3 PUT). Readers see the old or the new content, never a mix.
    pub async fn put_file(
        &self,
        owner: Owner,
        path: &str,
        data: WrittenData,
        user_metadata: BTreeMap<String, Vec<u8>>,
    ) -> Result<InodeId, NamespaceError> {
        let components = split_path(path)?;
        let content = kiseki_types::Composition {
            size: data.size,
            extents: data.extents,
        };
        let delta = Delta::PutFile {
            path: components,
            content,
            user_metadata,
            mode: 0o644,
            owner,
            time: Timestamp::now(),
        };
        self.propose(delta, &format!("put {path:?}")).await
    }

    /// Places `data` at `offset` of file `inode` (a positional write).
    pub async fn write_at(
        &self,
        inode: InodeId,
        offset: u64,
        data: WrittenData,
    ) -> Result<(), NamespaceError> {
        let extents = data
            .extents
            .into_iter()
            .map(|extent| kiseki_types::Extent {
                file_offset: extent.file_offset + offset,
                ..extent
            })
            .collect();
        self.propose(
            Delta::Write {
                inode,
                extents,
                time: Timestamp::now(),
            },
            &format!("write {inode}"),
        )
        .await
        .map(drop)
    }

    /// Appends `data` at the end of file `inode`, atomically with respect to other appends.
    pub async fn append(&self, inode: InodeId, data: WrittenData) -> Result<(), NamespaceError> {
        self.propose(
            Delta::Append {
                inode,
                extents: data.extents,
                time: Timestamp::now(),
            },
            &format!("append {inode}"),
        )
        .await
        .map(drop)
    }

    /// Cuts or extends file `inode` to `size`.
    pub async fn truncate(&self, inode: InodeId, size: u64) -> Result<(), NamespaceError> {
        self.propose(
            Delta::Truncate {
                inode,
                size,
                time: Timestamp::now(),
            },
            &format!("truncate {inode}"),
        )
        .await
        .map(drop)
    }

    /// Renames atomically, replacing a compatible target unless `no_replace`.
    pub async fn rename(
        &self,
        from_parent: InodeId,
        from_name: &str,
        to_parent: InodeId,
        to_name: &str,
        no_replace: bool,
    ) -> Result<(), NamespaceError> {
        validate_name(to_name)?;
        let delta = Delta::Rename {
            from_parent,
            from_name: from_name.into(),
            to_parent,
            to_name: to_name.into(),
            no_replace,
            time: Timestamp::now(),
        };
        self.propose(delta, &format!("rename {from_name:?} to {to_name:?}"))
            .await
            .map(drop)
    }

    /// Removes a file or symlink name.
    pub async fn unlink(&self, parent: InodeId, name: &str) -> Result<(), NamespaceError> {
        self.propose(
            Delta::Unlink {
                parent,
                name: name.into(),
                time: Timestamp::now(),
            },
            &format!("unlink {name:?}"),
        )
        .await
        .map(drop)
    }

    /// Removes an empty directory.
    pub async fn rmdir(&self, parent: InodeId, name: &str) -> Result<(), NamespaceError> {
        self.propose(
            Delta::Rmdir {
                parent,
                name: name.into(),
                time: Timestamp::now(),
            },
            &format!("rmdir {name:?}"),
        )
        .await
        .map(drop)
    }

    /// Adds a hard link `new_parent/new_name` to file `inode`.
    pub async fn link(
        &self,
        inode: InodeId,
        new_parent: InodeId,
        new_name: &str,
    ) -> Result<(), NamespaceError> {
        validate_name(new_name)?;
        let delta = Delta::Link {
            inode,
            new_parent,
            new_name: new_name.into(),
            time: Timestamp::now(),
        };
        self.propose(delta, &format!("link {new_name:?}"))
            .await
            .map(drop)
    }

    /// Changes mode, owner or times.
    pub async fn set_attributes(
        &self,
        inode: InodeId,
        changes: AttrChanges,
    ) -> Result<Attributes, NamespaceError> {
        self.propose(
            Delta::SetAttr {
                inode,
                changes,
                time: Timestamp::now(),
            },
            &format!("setattr {inode}"),
        )
        .await?;
        self.attributes(inode)
    }

    /// Sets (`Some`) or removes (`None`) one user-metadata entry.
    pub async fn set_user_metadata(
        &self,
        inode: InodeId,
        key: &str,
        value: Option<Vec<u8>>,
    ) -> Result<(), NamespaceError> {
        let delta = Delta::SetUserMetadata {
            inode,
            key: key.into(),
            value,
            time: Timestamp::now(),
        };
        self.propose(delta, &format!("set metadata {key:?} on {inode}"))
            .await
            .map(drop)
    }
}
