//! [`Client`]: the POSIX semantics of a mount over a [`Transport`].
//!
//! - **Close-to-open.** `open` fetches fresh attributes from the server; writes are buffered
//!   in the open-file table and become visible to others on `flush` (close), `fsync` or
//!   `release`. A reader on the same client sees its own unflushed writes.
//! - **Writes.** Bytes collect in dirty ranges per file; every full chunk is cut, sealed here
//!   (AES-256-GCM under the tenant's current DEK) and stored while the writer goes on (a
//!   bounded number in flight); flush seals the rest and commits all extents in one delta (or
//!   a few, when rewrites overlap). `O_APPEND` writes commit at once with an atomic append.
//! - **Reads.** The file's layout names the chunks of a range; an open handle keeps the layout
//!   (a window of up to 1 GiB, fetched at its first read, fetched again after this client's own
//!   writes or truncates of the file). Each chunk is fetched sealed, verified and opened here
//!   (the chunks of one read concurrently), kept in the chunk cache, and on sequential reads
//!   the next few chunks (`readahead_chunks`) are fetched ahead.
//! - **Listings** carry attributes, which prime the attribute cache (READDIRPLUS).
//! - **Small files:** a flush whose change is one chunk stores and commits it in one call.
//! - **Attributes** are cached for a short TTL and refreshed by every local change.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::{BoxFuture, FutureExt, Shared};
use kiseki_chunk::{ChunkBuffer, ChunkService};
use kiseki_crypto::TenantKeyring;
use kiseki_types::{ChunkId, ErrorKind, Extent, FileKind, InodeId, NamespaceError, TenantId};
use tokio::task::JoinHandle;

use crate::agent::snapshot::{DatasetSnapshot, PinnedMetadata};
use crate::attr_cache::{AttrCache, FetchTicket};
use crate::cache::ChunkCache;
use crate::dirty::DirtyRanges;
use crate::transport::{
    AttrUpdate, DirEntry, FsStats, Layout, NewNode, Node, Result, Special, Transport,
};

/// Prefix of the names an unlinked-but-open file is kept under until its last close.
pub const HIDDEN_PREFIX: &str = ".kiseki-unlinked-";
/// Prefix of xattr names that map to user metadata (the same entries S3 shows as x-amz-meta-).
pub const XATTR_USER_PREFIX: &str = "user.";

/// Tunables of a client.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// How long cached attributes are trusted.
    pub attr_ttl: Duration,
    /// Chunks being sealed and stored at once per file.
    pub uploads_in_flight_max: usize,
    /// Unsealed dirty bytes per file before a flush is forced.
    pub dirty_bytes_max: usize,
    /// Entries fetched per directory page.
    pub readdir_page_entries: u32,
    /// Chunks fetched ahead of a sequential reader.
    pub readahead_chunks: usize,
    /// Bytes of a file's layout fetched at once (a read past it fetches the next window).
    pub layout_window_bytes: u64,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            attr_ttl: Duration::from_secs(1),
            uploads_in_flight_max: 8,
            dirty_bytes_max: 64 * 1024 * 1024,
            readdir_page_entries: 1024,
            // More than the bulk channel's 8 connections, so all 8 stay busy while the kernel's
            // requests catch up with the chunks: a cold 1 GiB read averaged 920 MiB/s with 7
            // ahead and 995 with 12 (10 alternating runs each; 16 ahead on 16 connections: 933).
            readahead_chunks: 12,
            layout_window_bytes: 1 << 30,
        }
    }
}

/// Who is asking (for owners of new nodes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

type Upload = JoinHandle<Result<Extent>>;
type Fetch = Shared<BoxFuture<'static, Result<Bytes>>>;

/// Per-file state while a file is open on this client.
struct FileState {
    open_handles: usize,
    dirty: DirtyRanges,
    uploads: VecDeque<(u64, u64, Upload)>,
    pending: Vec<Extent>,
    /// Name the file hides under after an unlink while open: (directory, name).
    hidden: Option<(InodeId, String)>,
    /// Bumped by every change this client makes to the file's content (commit, append,
    /// truncate): a handle's cached layout of an older generation is fetched again.
    generation: u64,
}

impl FileState {
    fn new(chunk_size: usize) -> Self {
        FileState {
            open_handles: 0,
            dirty: DirtyRanges::new(chunk_size),
            uploads: VecDeque::new(),
            pending: Vec::new(),
            hidden: None,
            generation: 0,
        }
    }

    /// One past the last byte written here and not yet committed.
    fn local_end(&self) -> u64 {
        let uploads = self
            .uploads
            .iter()
            .map(|(offset, len, _)| offset + len)
            .max()
            .unwrap_or(0);
        let pending = self.pending.iter().map(Extent::end).max().unwrap_or(0);
        self.dirty.end().max(uploads).max(pending)
    }

    fn is_clean(&self) -> bool {
        self.dirty.is_empty() && self.uploads.is_empty() && self.pending.is_empty()
    }
}

type SharedFile = Arc<tokio::sync::Mutex<FileState>>;

struct OpenFile {
    inode: InodeId,
    append: bool,
    state: SharedFile,
    /// End of the last read, to detect sequential reading.
    last_read_end: AtomicU64,
    /// The file's extents as this handle last fetched them (close-to-open: fetched after
    /// open, again after this client's own changes to the file).
    layout: Mutex<Option<CachedLayout>>,
}

/// A window of a file's layout kept by an open handle.
/// Largest file whose one chunk an open brings along (its read then needs no round trip).
const INLINE_FILE_BYTES_MAX: u32 = 256 * 1024;

struct CachedLayout {
    /// `FileState::generation` it was fetched at.
    generation: u64,
    /// The window `[start, covered_end)` whose extents `layout` holds.
    start: u64,
    covered_end: u64,
    layout: Arc<Layout>,
}

impl CachedLayout {
    /// Whether the window answers for `[offset, end)` (or for all of it up to the file's end).
    fn covers(&self, generation: u64, offset: u64, end: u64) -> bool {
        self.generation == generation
            && self.start <= offset
            && (self.covered_end >= end || self.covered_end >= self.layout.size)
    }
}

struct OpenDir {
    inode: InodeId,
    entries: Vec<DirEntry>,
    complete: bool,
}

/// A directory's mode and group (what a create under it inherits), and when they were fetched.
type CachedDirOwner = ((u32, u32), Instant);

/// The native client: one tenant's namespace as POSIX files.
pub struct Client {
    transport: Arc<dyn Transport>,
    tenant: TenantId,
    keyring: Arc<TenantKeyring>,
    chunk_size: usize,
    cache: Arc<dyn ChunkCache>,
    options: ClientOptions,
    attrs: AttrCache,
    dir_owners: Mutex<HashMap<InodeId, CachedDirOwner>>,
    files: Mutex<HashMap<InodeId, SharedFile>>,
    handles: Mutex<HashMap<u64, Arc<OpenFile>>>,
    dirs: Mutex<HashMap<u64, Arc<tokio::sync::Mutex<OpenDir>>>>,
    fetches: Arc<Mutex<HashMap<ChunkId, Fetch>>>,
    next_handle: AtomicU64,
    /// Metadata snapshots of pinned datasets, served without asking the server.
    pinned: PinnedMetadata,
    /// The last file-system figures and when they were fetched.
    statfs_cache: Mutex<Option<(FsStats, Instant)>>,
    /// Nodes whose reads neither read nor fill the chunk cache (bypass mode), and whether
    /// nodes not in the set inherit bypass by default.
    bypass: Mutex<BypassSet>,
}

/// Which nodes bypass the chunk cache: configured roots, and what lookups found under them.
#[derive(Default)]
struct BypassSet {
    /// Node → whether it bypasses (roots of organic paths under a bypass default say `false`).
    modes: HashMap<InodeId, bool>,
    default_bypass: bool,
}

/// How long file-system figures (`statfs`) are kept.
pub const STATFS_TTL: Duration = Duration::from_secs(30);

/// Most nodes remembered as inheriting a cache mode (beyond it, new nodes take the default).
const BYPASS_NODES_MAX: usize = 1 << 20;

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn bad_handle(handle: u64) -> NamespaceError {
    NamespaceError::new(ErrorKind::Stale, format!("no open handle {handle}"))
}

impl Client {
    /// Connects: asks the server who we are, fetches the tenant's keys.
    pub async fn connect(
        transport: Arc<dyn Transport>,
        cache: Arc<dyn ChunkCache>,
        options: ClientOptions,
    ) -> Result<Self> {
        let session = transport.hello().await?;
        let material = transport.tenant_keys(session.tenant).await?;
        let keyring = TenantKeyring::from_material(&material).map_err(|e| {
            NamespaceError::new(ErrorKind::Unavailable, format!("tenant keys: {e}"))
        })?;
        Ok(Client {
            transport,
            tenant: session.tenant,
            keyring: Arc::new(keyring),
            chunk_size: session.chunk_size as usize,
            cache,
            options,
            attrs: AttrCache::default(),
            dir_owners: Mutex::new(HashMap::new()),
            files: Mutex::new(HashMap::new()),
            handles: Mutex::new(HashMap::new()),
            dirs: Mutex::new(HashMap::new()),
            fetches: Arc::new(Mutex::new(HashMap::new())),
            next_handle: AtomicU64::new(1),
            pinned: PinnedMetadata::default(),
            statfs_cache: Mutex::new(None),
            bypass: Mutex::new(BypassSet::default()),
        })
    }

    /// The tenant this client acts for.
    pub fn tenant(&self) -> TenantId {
        self.tenant
    }

    /// Bytes per chunk.
    pub fn chunk_size(&self) -> usize {
        self.chunk_size
    }

    // ---- Attributes ----

    /// Keeps the attributes a change made here returned.
    fn remember(&self, node: &Node) {
        self.attrs.changed(node);
    }

    fn forget_attrs(&self) {
        self.attrs.clear();
        lock(&self.dir_owners).clear();
    }

    fn file_state(&self, inode: InodeId) -> Option<SharedFile> {
        lock(&self.files).get(&inode).cloned()
    }

    /// Attributes with this client's uncommitted writes folded in.
    async fn with_local(&self, mut node: Node) -> Node {
        if let Some(state) = self.file_state(node.inode) {
            let state = state.lock().await;
            node.attrs.size = node.attrs.size.max(state.local_end());
            if state.hidden.is_some() {
                // Unlinked while open: its hidden name is not a link POSIX would count.
                node.attrs.nlink = node.attrs.nlink.saturating_sub(1);
            }
        }
        node
    }

    /// A node's attributes (cached for the TTL).
    pub async fn getattr(&self, inode: InodeId) -> Result<Node> {
        if let Some(node) = self.pinned.node(inode) {
            return Ok(self.with_local(node).await);
        }
        let node = match self.attrs.get(inode, self.options.attr_ttl) {
            Some(node) => node,
            None => {
                let ticket = self.attrs.ticket();
                let node = self.transport.getattr(inode).await?;
                self.attrs.fetched(&node, ticket);
                node
            }
        };
        Ok(self.with_local(node).await)
    }

    /// The node `name` in `parent`.
    pub async fn lookup(&self, parent: InodeId, name: &str) -> Result<Node> {
        check_name(name)?;
        if let Some(node) = self.pinned.lookup(parent, name) {
            return Ok(self.with_local(node).await);
        }
        let ticket = self.attrs.ticket();
        let node = self.transport.lookup(parent, name).await?;
        self.inherit_mode(parent, node.inode);
        self.attrs.fetched(&node, ticket);
        Ok(self.with_local(node).await)
    }

    /// Changes attributes; `size` truncates or extends (after this client's writes land).
    pub async fn setattr(
        &self,
        inode: InodeId,
        size: Option<u64>,
        update: AttrUpdate,
    ) -> Result<Node> {
        self.pinned.forget(inode, None);
        let mut node = None;
        if let Some(size) = size {
            if let Some(state) = self.file_state(inode) {
                let mut state = state.lock().await;
                self.flush_state(inode, &mut state).await?;
                state.generation += 1;
            }
            node = Some(self.transport.truncate(inode, size).await?);
        }
        if update != AttrUpdate::default() {
            lock(&self.dir_owners).remove(&inode);
            node = Some(self.transport.setattr(inode, update).await?);
        }
        let node = match node {
            Some(node) => node,
            None => self.transport.getattr(inode).await?,
        };
        self.remember(&node);
        Ok(self.with_local(node).await)
    }

    // ---- Names ----

    async fn owner_for(
        &self,
        parent: InodeId,
        caller: Caller,
        mode: u32,
    ) -> Result<(NewNode, u32)> {
        // BSD/Linux rule: a set-group-id directory passes its group (and, to directories,
        // the bit itself) to new nodes. Only the parent's mode and group matter, which change
        // rarely: a per-directory copy kept for the attribute TTL spares a round trip per
        // create (the parent's times change with every create, so its attributes are not
        // cached across creates).
        let cached = lock(&self.dir_owners)
            .get(&parent)
            .filter(|(_, at)| at.elapsed() < self.options.attr_ttl)
            .map(|(found, _)| *found);
        let (parent_mode, parent_gid) = match cached {
            Some(found) => found,
            None => {
                let attrs = self.getattr(parent).await?.attrs;
                lock(&self.dir_owners).insert(parent, ((attrs.mode, attrs.gid), Instant::now()));
                (attrs.mode, attrs.gid)
            }
        };
        let inherit = parent_mode & 0o2000 != 0;
        let gid = if inherit { parent_gid } else { caller.gid };
        Ok((
            NewNode {
                mode: mode & 0o7777,
                uid: caller.uid,
                gid,
            },
            if inherit { 0o2000 } else { 0 },
        ))
    }

    /// Creates a file (`exclusive`: fail if it exists), or a special file.
    pub async fn create(
        &self,
        parent: InodeId,
        name: &str,
        mode: u32,
        caller: Caller,
        exclusive: bool,
        special: Special,
    ) -> Result<Node> {
        let (new, _) = self.owner_for(parent, caller, mode).await?;
        let node = self
            .transport
            .create(parent, name, new, exclusive, special)
            .await?;
        self.pinned.forget(parent, Some(name));
        self.inherit_mode(parent, node.inode);
        self.invalidate(parent);
        self.remember(&node);
        Ok(node)
    }

    /// Creates a directory.
    pub async fn mkdir(
        &self,
        parent: InodeId,
        name: &str,
        mode: u32,
        caller: Caller,
    ) -> Result<Node> {
        let (mut new, setgid) = self.owner_for(parent, caller, mode).await?;
        new.mode |= setgid;
        let node = self.transport.mkdir(parent, name, new).await?;
        self.pinned.forget(parent, Some(name));
        self.inherit_mode(parent, node.inode);
        self.invalidate(parent);
        self.remember(&node);
        Ok(node)
    }

    /// Creates a symlink.
    pub async fn symlink(
        &self,
        parent: InodeId,
        name: &str,
        target: &str,
        caller: Caller,
    ) -> Result<Node> {
        let (new, _) = self.owner_for(parent, caller, 0o777).await?;
        let node = self.transport.symlink(parent, name, target, new).await?;
        self.pinned.forget(parent, Some(name));
        self.invalidate(parent);
        self.remember(&node);
        Ok(node)
    }

    /// A symlink's target.
    pub async fn read_link(&self, inode: InodeId) -> Result<String> {
        self.transport.read_link(inode).await
    }

    /// Adds a hard link.
    pub async fn link(&self, inode: InodeId, new_parent: InodeId, new_name: &str) -> Result<Node> {
        let node = self.transport.link(inode, new_parent, new_name).await?;
        self.pinned.forget(inode, None);
        self.pinned.forget(new_parent, Some(new_name));
        self.forget_attrs();
        self.remember(&node);
        Ok(self.with_local(node).await)
    }

    fn invalidate(&self, inode: InodeId) {
        self.attrs.invalidate(inode);
    }

    /// Removes a name. A file still open here keeps its bytes under a hidden name until its
    /// last close (POSIX: unlink does not free an open file).
    pub async fn unlink(&self, parent: InodeId, name: &str) -> Result<()> {
        self.pinned.forget(parent, Some(name));
        let node = self.transport.lookup(parent, name).await?;
        if node.attrs.kind == FileKind::File && node.attrs.nlink == 1 {
            if let Some(state) = self.file_state(node.inode) {
                let mut state = state.lock().await;
                if state.open_handles > 0 && state.hidden.is_none() {
                    let hidden = format!("{HIDDEN_PREFIX}{}", node.inode.0);
                    self.transport
                        .rename(parent, name, parent, &hidden, false)
                        .await?;
                    state.hidden = Some((parent, hidden));
                    self.forget_attrs();
                    return Ok(());
                }
            }
        }
        self.transport.unlink(parent, name).await?;
        self.forget_attrs();
        Ok(())
    }

    /// Removes an empty directory.
    pub async fn rmdir(&self, parent: InodeId, name: &str) -> Result<()> {
        self.pinned.forget(parent, Some(name));
        self.transport.rmdir(parent, name).await?;
        self.forget_attrs();
        Ok(())
    }

    /// Renames atomically (`no_replace`: fail if the target exists).
    pub async fn rename(
        &self,
        from_parent: InodeId,
        from_name: &str,
        to_parent: InodeId,
        to_name: &str,
        no_replace: bool,
    ) -> Result<()> {
        self.pinned.forget(from_parent, Some(from_name));
        self.pinned.forget(to_parent, Some(to_name));
        self.transport
            .rename(from_parent, from_name, to_parent, to_name, no_replace)
            .await?;
        self.forget_attrs();
        Ok(())
    }

    /// File-system figures.
    ///
    /// The figures are kept for [`STATFS_TTL`]: tools ask for them while walking trees (GNU
    /// find asks once per walk), and a walk of a pinned dataset should not reach the server.
    pub async fn statfs(&self) -> Result<FsStats> {
        if let Some((stats, at)) = *lock(&self.statfs_cache) {
            if at.elapsed() < STATFS_TTL {
                return Ok(stats);
            }
        }
        let stats = self.transport.statfs().await?;
        *lock(&self.statfs_cache) = Some((stats, Instant::now()));
        Ok(stats)
    }

    // ---- Directories ----

    /// Opens a directory listing; entries stay stable (a snapshot taken page by page) for the
    /// handle's lifetime.
    pub async fn open_dir(&self, inode: InodeId) -> Result<u64> {
        let pinned = self.pinned.listing(inode);
        let parent = match &pinned {
            Some((parent, _)) => *parent,
            None => self.transport.lookup(inode, "..").await?.inode,
        };
        let dot = |name: &str, inode| DirEntry {
            name: name.into(),
            inode,
            kind: FileKind::Directory,
            cursor: String::new(),
            node: None,
        };
        let mut dir = OpenDir {
            inode,
            entries: vec![dot(".", inode), dot("..", parent)],
            complete: false,
        };
        if let Some((_, entries)) = pinned {
            dir.entries.extend(entries);
            dir.complete = true;
        }
        let handle = self.next_handle.fetch_add(1, Ordering::Relaxed);
        lock(&self.dirs).insert(handle, Arc::new(tokio::sync::Mutex::new(dir)));
        Ok(handle)
    }

    /// Entries from position `index` on (at most `max`); empty at the end.
    pub async fn read_dir(&self, handle: u64, index: usize, max: usize) -> Result<Vec<DirEntry>> {
        let dir = lock(&self.dirs)
            .get(&handle)
            .cloned()
            .ok_or_else(|| bad_handle(handle))?;
        let mut dir = dir.lock().await;
        while !dir.complete && dir.entries.len() < index + max {
            let after = dir
                .entries
                .last()
                .map(|entry| entry.cursor.clone())
                .unwrap_or_default();
            let ticket = self.attrs.ticket();
            let page = self
                .transport
                .read_dir(dir.inode, &after, self.options.readdir_page_entries)
                .await?;
            dir.complete = page.len() < self.options.readdir_page_entries as usize;
            let Some(last) = page.last().map(|entry| entry.cursor.clone()) else {
                dir.complete = true;
                break;
            };
            let mut visible = Vec::with_capacity(page.len());
            for mut entry in page {
                if entry.name.starts_with(HIDDEN_PREFIX) {
                    continue;
                }
                self.inherit_mode(dir.inode, entry.inode);
                if let Some(node) = entry.node.take() {
                    // Prime the attribute cache: `ls -l` then needs no round trip per entry.
                    self.attrs.fetched(&node, ticket);
                    entry.node = Some(self.with_local(node).await);
                }
                visible.push(entry);
            }
            dir.entries.extend(visible);
            // Keep the cursor of the page's last entry even when it was hidden.
            if dir.entries.last().map(|entry| &entry.cursor) != Some(&last) {
                dir.entries.push(DirEntry {
                    name: String::new(),
                    inode: InodeId(0),
                    kind: FileKind::File,
                    cursor: last,
                    node: None,
                });
            }
        }
        Ok(dir
            .entries
            .iter()
            .skip(index)
            .filter(|entry| !entry.name.is_empty())
            .take(max)
            .cloned()
            .collect())
    }

    /// Closes a directory listing.
    pub fn release_dir(&self, handle: u64) {
        lock(&self.dirs).remove(&handle);
    }

    // ---- Open files ----

    /// Opens a file: attributes are fetched fresh from the server (close-to-open). For a
    /// reader the same round trip brings the layout of the first window and, for a small file,
    /// its one chunk. Returns the handle, the attributes and whether they changed since this
    /// client last saw them.
    pub async fn open(
        &self,
        inode: InodeId,
        append: bool,
        reading: bool,
    ) -> Result<(u64, Node, bool)> {
        // A pinned file's attributes are its snapshot's (the pinned-metadata rule).
        if let Some(node) = self.pinned.node(inode) {
            return self
                .open_node(node, append, None, self.attrs.ticket())
                .await;
        }
        let bypass = self.bypasses(inode);
        let (layout_len, inline_max) = match (reading, bypass) {
            (false, _) => (0, 0),
            (true, true) => (self.options.layout_window_bytes, 0),
            (true, false) => (self.options.layout_window_bytes, INLINE_FILE_BYTES_MAX),
        };
        let ticket = self.attrs.ticket();
        let opened = self.transport.open(inode, layout_len, inline_max).await?;
        if let Some((id, frame)) = opened.inline {
            // A frame that does not open is left for the read to fetch and report.
            let keys = |epoch| self.keyring.epoch(epoch).ok();
            if let Ok(plaintext) = ChunkService::open(self.tenant, id, frame, &keys) {
                self.cache.insert(id, plaintext);
            }
        }
        let layout = opened.layout.map(|layout| (layout, layout_len));
        self.open_node(opened.node, append, layout, ticket).await
    }

    /// Opens a file this client just created (its attributes are fresh already).
    pub async fn open_created(&self, node: Node, append: bool) -> Result<(u64, Node, bool)> {
        self.open_node(node, append, None, self.attrs.ticket())
            .await
    }

    /// Registers an open handle of `fresh`, with the layout of `[0, window)` if known.
    async fn open_node(
        &self,
        fresh: Node,
        append: bool,
        layout: Option<(Layout, u64)>,
        ticket: FetchTicket,
    ) -> Result<(u64, Node, bool)> {
        let inode = fresh.inode;
        let previous = self.attrs.last_seen(inode);
        let changed = previous.is_none_or(|old| {
            old.attrs.size != fresh.attrs.size || old.attrs.mtime != fresh.attrs.mtime
        });
        self.attrs.fetched(&fresh, ticket);
        let state =
            Arc::clone(lock(&self.files).entry(inode).or_insert_with(|| {
                Arc::new(tokio::sync::Mutex::new(FileState::new(self.chunk_size)))
            }));
        let generation = {
            let mut state = state.lock().await;
            state.open_handles += 1;
            state.generation
        };
        let layout = layout.map(|(layout, window)| {
            let covered_end = match (layout.truncated, layout.extents.last()) {
                (true, Some(last)) => last.end(),
                (true, None) => 0,
                (false, _) => window,
            };
            CachedLayout {
                generation,
                start: 0,
                covered_end,
                layout: Arc::new(layout),
            }
        });
        let handle = self.next_handle.fetch_add(1, Ordering::Relaxed);
        let file = OpenFile {
            inode,
            append,
            state,
            last_read_end: AtomicU64::new(u64::MAX),
            layout: Mutex::new(layout),
        };
        lock(&self.handles).insert(handle, Arc::new(file));
        Ok((handle, self.with_local(fresh).await, changed))
    }

    fn handle(&self, handle: u64) -> Result<Arc<OpenFile>> {
        lock(&self.handles)
            .get(&handle)
            .cloned()
            .ok_or_else(|| bad_handle(handle))
    }

    /// Writes `data` at `offset` (at the end for an `O_APPEND` handle).
    pub async fn write(&self, handle: u64, offset: u64, data: &[u8]) -> Result<usize> {
        let file = self.handle(handle)?;
        self.pinned.forget(file.inode, None);
        let mut state = file.state.lock().await;
        if file.append {
            self.flush_state(file.inode, &mut state).await?;
            state.generation += 1;
            let node = self.append_now(file.inode, data).await?;
            self.remember(&node);
            return Ok(data.len());
        }
        state.dirty.write(offset, data);
        for (piece_offset, piece) in state.dirty.take_full() {
            self.start_upload(&mut state, piece_offset, piece).await?;
        }
        if state.dirty.bytes() > self.options.dirty_bytes_max {
            self.flush_state(file.inode, &mut state).await?;
        }
        Ok(data.len())
    }

    async fn append_now(&self, inode: InodeId, data: &[u8]) -> Result<Node> {
        let mut extents = Vec::new();
        for (index, piece) in data.chunks(self.chunk_size).enumerate() {
            let extent = seal_and_store(
                &*self.transport,
                self.tenant,
                &self.keyring,
                (index * self.chunk_size) as u64,
                ChunkBuffer::from_plaintext(piece),
            )
            .await?;
            extents.push(extent);
        }
        self.transport.write(inode, 0, extents, true).await
    }

    async fn start_upload(
        &self,
        state: &mut FileState,
        offset: u64,
        piece: ChunkBuffer,
    ) -> Result<()> {
        while state.uploads.len() >= self.options.uploads_in_flight_max {
            finish_oldest_upload(state).await?;
        }
        let (transport, tenant, keyring) = (
            Arc::clone(&self.transport),
            self.tenant,
            Arc::clone(&self.keyring),
        );
        let len = piece.len() as u64;
        let task = tokio::spawn(async move {
            seal_and_store(&*transport, tenant, &keyring, offset, piece).await
        });
        state.uploads.push_back((offset, len, task));
        Ok(())
    }

    /// Seals what is dirty, waits for every chunk and commits all extents.
    async fn flush_state(&self, inode: InodeId, state: &mut FileState) -> Result<()> {
        let mut pieces = state.dirty.take_all();
        if pieces.len() == 1 && state.uploads.is_empty() && state.pending.is_empty() {
            // The whole change is one piece (a small file): store it and commit it in one
            // round trip.
            let (offset, piece) = pieces.remove(0);
            state.generation += 1;
            let (frame, extent) = seal(self.tenant, &self.keyring, offset, piece)?;
            let node = self
                .transport
                .put_chunk_and_write(frame, inode, extent)
                .await?;
            self.remember(&node);
            return Ok(());
        }
        for (offset, piece) in pieces {
            self.start_upload(state, offset, piece).await?;
        }
        let result = self.commit(inode, state).await;
        if result.is_err() {
            // What failed to land is reported to the writer (at close or fsync) and dropped.
            for (_, _, task) in state.uploads.drain(..) {
                task.abort();
            }
            state.pending.clear();
        }
        result
    }

    async fn commit(&self, inode: InodeId, state: &mut FileState) -> Result<()> {
        while !state.uploads.is_empty() {
            finish_oldest_upload(state).await?;
        }
        // Extents go in write order, one delta per contiguous run: a write delta replaces the
        // whole span from its first extent to its last, so a run must have no gaps.
        let mut batch: Vec<Extent> = Vec::new();
        let pending = std::mem::take(&mut state.pending);
        if !pending.is_empty() {
            state.generation += 1;
        }
        for extent in pending {
            let contiguous = batch
                .last()
                .is_none_or(|last| last.end() == extent.file_offset);
            if !contiguous || batch.len() >= kiseki_types::limits::DELTA_EXTENTS_MAX {
                self.commit_batch(inode, std::mem::take(&mut batch)).await?;
            }
            batch.push(extent);
        }
        if !batch.is_empty() {
            self.commit_batch(inode, batch).await?;
        }
        Ok(())
    }

    async fn commit_batch(&self, inode: InodeId, batch: Vec<Extent>) -> Result<()> {
        let node = self.transport.write(inode, 0, batch, false).await?;
        self.remember(&node);
        Ok(())
    }

    /// Makes this handle's file's writes visible and durable on the server (close, fsync).
    pub async fn flush(&self, handle: u64) -> Result<()> {
        let file = self.handle(handle)?;
        let mut state = file.state.lock().await;
        self.flush_state(file.inode, &mut state).await
    }

    /// Closes a handle: flushes, and on the last close of an unlinked file removes it.
    pub async fn release(&self, handle: u64) -> Result<()> {
        let Some(file) = lock(&self.handles).remove(&handle) else {
            return Ok(());
        };
        let mut state = file.state.lock().await;
        let flushed = self.flush_state(file.inode, &mut state).await;
        state.open_handles = state.open_handles.saturating_sub(1);
        if state.open_handles == 0 {
            if let Some((parent, name)) = state.hidden.take() {
                let _ = self.transport.unlink(parent, &name).await;
                self.forget_attrs();
            }
            if state.is_clean() {
                lock(&self.files).remove(&file.inode);
            }
        }
        flushed
    }

    /// Reads up to `size` bytes at `offset`; short only at the end of the file.
    pub async fn read(&self, handle: u64, offset: u64, size: u32) -> Result<Bytes> {
        let file = self.handle(handle)?;
        let dirty_overlay = {
            let mut state = file.state.lock().await;
            if !state.uploads.is_empty() || !state.pending.is_empty() {
                self.commit(file.inode, &mut state).await?;
            }
            (!state.dirty.is_empty())
                .then(|| (state.dirty.clip(offset, u64::from(size)), state.dirty.end()))
        };
        let generation = file.state.lock().await.generation;
        let chunk = self.chunk_size as u64;
        // Read-ahead lands in the memory tier: at most a quarter of it, or the chunks fetched
        // ahead would push each other out before they are read.
        let ahead =
            (chunk * self.options.readahead_chunks as u64).min(self.cache.memory_capacity() / 4);
        let wanted_end = offset.saturating_add(u64::from(size));
        let layout = self
            .layout_of(&file, generation, offset, wanted_end.saturating_add(ahead))
            .await?;
        let dirty_end = dirty_overlay.as_ref().map_or(0, |(_, end)| *end);
        let file_size = layout.size.max(dirty_end);
        let end = wanted_end.min(file_size);
        if end <= offset {
            return Ok(Bytes::new());
        }
        // Read ahead for a sequential reader: the kernel's read-ahead requests may arrive out
        // of order on several threads, so "near the last read's end" counts as sequential.
        let last_end = file.last_read_end.swap(end, Ordering::Relaxed);
        let sequential = offset == 0 || last_end != u64::MAX && offset.abs_diff(last_end) <= chunk;
        let bypass = self.bypasses(file.inode);
        if sequential && !bypass {
            let ahead_end = end.saturating_add(ahead);
            for extent in &layout.extents {
                if extent.end() > end && extent.file_offset < ahead_end {
                    self.prefetch(extent.chunk);
                }
            }
        }
        // The chunks of this read, fetched concurrently.
        let needed: Vec<&Extent> = layout
            .extents
            .iter()
            .filter(|extent| extent.end() > offset && extent.file_offset < end)
            .collect();
        let plaintexts = futures::future::try_join_all(
            needed.iter().map(|extent| self.chunk(extent.chunk, bypass)),
        )
        .await?;
        let slice_of = |extent: &Extent, plaintext: &Bytes, from: u64, to: u64| {
            let start = extent.chunk_offset as usize + (from - extent.file_offset) as usize;
            let range = start..start + (to - from) as usize;
            plaintext
                .get(range.clone())
                .map(|_| plaintext.slice(range))
                .ok_or_else(|| {
                    NamespaceError::new(
                        ErrorKind::Corrupt,
                        format!("chunk {} is shorter than its extent", extent.chunk),
                    )
                })
        };
        // The common case, one chunk covering the whole read: hand out a slice of it (no copy).
        if let ([extent], [plaintext], None) =
            (needed.as_slice(), plaintexts.as_slice(), &dirty_overlay)
        {
            if extent.file_offset <= offset && extent.end() >= end {
                return slice_of(extent, plaintext, offset, end);
            }
        }
        let mut out = vec![0u8; (end - offset) as usize];
        for (extent, plaintext) in needed.into_iter().zip(plaintexts) {
            let from = extent.file_offset.max(offset);
            let to = extent.end().min(end);
            let source = slice_of(extent, &plaintext, from, to)?;
            out[(from - offset) as usize..(to - offset) as usize].copy_from_slice(&source);
        }
        if let Some((dirty, _)) = &dirty_overlay {
            dirty.overlay(offset, &mut out);
        }
        Ok(Bytes::from(out))
    }

    /// The layout of `file` covering `[offset, end)`: the handle's cached window if it covers
    /// it at the file's current generation, else a fresh window from the server.
    async fn layout_of(
        &self,
        file: &OpenFile,
        generation: u64,
        offset: u64,
        end: u64,
    ) -> Result<Arc<Layout>> {
        if let Some(layout) = self.pinned.layout(file.inode) {
            return Ok(layout);
        }
        if let Some(cached) = lock(&file.layout)
            .as_ref()
            .filter(|cached| cached.covers(generation, offset, end))
        {
            return Ok(Arc::clone(&cached.layout));
        }
        let chunk = self.chunk_size as u64;
        let start = offset - offset % chunk;
        let len = (end - start).max(self.options.layout_window_bytes);
        let window_end = start.saturating_add(len);
        let mut layout = self.transport.layout(file.inode, start, len).await?;
        let mut covered_end = start;
        loop {
            if !layout.truncated {
                covered_end = window_end;
                break;
            }
            let reached = layout.extents.last().map_or(covered_end, Extent::end);
            if reached >= end || reached <= covered_end {
                covered_end = reached;
                break;
            }
            // The server stopped at its bound before this read's end: continue from there.
            covered_end = reached;
            let more = self
                .transport
                .layout(file.inode, reached, window_end - reached)
                .await?;
            layout.size = more.size;
            layout.truncated = more.truncated;
            layout.extents.extend(more.extents);
        }
        let layout = Arc::new(layout);
        *lock(&file.layout) = Some(CachedLayout {
            generation,
            start,
            covered_end,
            layout: Arc::clone(&layout),
        });
        Ok(layout)
    }

    // ---- Chunks ----

    fn fetch(&self, id: ChunkId) -> Fetch {
        let mut fetches = lock(&self.fetches);
        if let Some(fetch) = fetches.get(&id) {
            return fetch.clone();
        }
        let (transport, tenant, keyring, cache) = (
            Arc::clone(&self.transport),
            self.tenant,
            Arc::clone(&self.keyring),
            Arc::clone(&self.cache),
        );
        let registry = Arc::clone(&self.fetches);
        let task = tokio::spawn(async move {
            // The cache first (an L2 read and decryption, on a blocking thread): concurrent
            // reads of one chunk share this one load instead of each reading it from disk.
            let lookup = Arc::clone(&cache);
            let cached = tokio::task::spawn_blocking(move || lookup.get(&id))
                .await
                .ok()
                .flatten();
            let result = match cached {
                Some(plaintext) => Ok(plaintext),
                None => {
                    let result = fetch_and_open(&*transport, tenant, &keyring, id).await;
                    if let Ok(plaintext) = &result {
                        cache.insert(id, plaintext.clone());
                    }
                    result
                }
            };
            lock(&registry).remove(&id);
            result
        });
        let fetch = async move {
            task.await.unwrap_or_else(|e| {
                Err(NamespaceError::new(
                    ErrorKind::Unavailable,
                    format!("chunk fetch failed: {e}"),
                ))
            })
        }
        .boxed()
        .shared();
        fetches.insert(id, fetch.clone());
        fetch
    }

    async fn chunk(&self, id: ChunkId, bypass: bool) -> Result<Bytes> {
        if bypass {
            return fetch_and_open(&*self.transport, self.tenant, &self.keyring, id).await;
        }
        self.fetch(id).await
    }

    fn prefetch(&self, id: ChunkId) {
        if !self.cache.contains(&id) {
            drop(self.fetch(id));
        }
    }

    // ---- User metadata (xattrs) ----

    /// Whether xattrs in `name`'s namespace are kept here: only `user.` names are. The FUSE
    /// adapter refuses the others (`security.*`, `system.*`, `trusted.*`) at once with
    /// EOPNOTSUPP, the answer that lets `ls -l` stop asking for SELinux labels and POSIX ACLs
    /// on this file system after its first file.
    pub fn keeps_xattr_namespace(name: &str) -> bool {
        name.starts_with(XATTR_USER_PREFIX)
    }

    /// The value of xattr `name` (`user.*` names map to user metadata); `None` if absent.
    pub async fn get_xattr(&self, inode: InodeId, name: &str) -> Result<Option<Vec<u8>>> {
        let Some(key) = user_key(name) else {
            return Ok(None);
        };
        Ok(self.transport.metadata(inode).await?.remove(key))
    }

    /// Every xattr name of a node.
    pub async fn list_xattrs(&self, inode: InodeId) -> Result<Vec<String>> {
        let metadata = self.transport.metadata(inode).await?;
        Ok(metadata
            .into_keys()
            .filter(|key| key != kiseki_reserved_key())
            .map(|key| format!("{XATTR_USER_PREFIX}{key}"))
            .collect())
    }

    /// Sets xattr `name`; `create_only` / `replace_only` follow `XATTR_CREATE` / `XATTR_REPLACE`.
    pub async fn set_xattr(
        &self,
        inode: InodeId,
        name: &str,
        value: &[u8],
        create_only: bool,
        replace_only: bool,
    ) -> Result<()> {
        let key = user_key(name).ok_or_else(|| {
            NamespaceError::new(
                ErrorKind::Unsupported,
                format!("xattr namespace of {name:?}"),
            )
        })?;
        if create_only || replace_only {
            let exists = self.transport.metadata(inode).await?.contains_key(key);
            if create_only && exists {
                return Err(NamespaceError::new(
                    ErrorKind::AlreadyExists,
                    format!("xattr {name:?} exists"),
                ));
            }
            if replace_only && !exists {
                return Err(NamespaceError::new(
                    ErrorKind::NotFound,
                    format!("no xattr {name:?}"),
                ));
            }
        }
        self.pinned.forget(inode, None);
        self.transport
            .set_metadata(inode, key, Some(value.to_vec()))
            .await?;
        self.invalidate(inode);
        Ok(())
    }

    /// Removes xattr `name`; `false` if it was absent.
    pub async fn remove_xattr(&self, inode: InodeId, name: &str) -> Result<bool> {
        let Some(key) = user_key(name) else {
            return Ok(false);
        };
        match self.transport.set_metadata(inode, key, None).await {
            Ok(()) => {
                self.invalidate(inode);
                Ok(true)
            }
            Err(error) if error.kind == ErrorKind::NotFound => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Extends the file to cover `[offset, offset + len)` (space is not reserved: chunks are
    /// written on demand).
    pub async fn allocate(&self, inode: InodeId, offset: u64, len: u64) -> Result<Node> {
        let node = self.getattr(inode).await?;
        let end = offset.saturating_add(len);
        if end <= node.attrs.size {
            return Ok(node);
        }
        self.setattr(inode, Some(end), AttrUpdate::default()).await
    }
}

/// A dataset walked for staging: its files with their complete layouts, and the metadata
/// snapshot that serves its reads while it is pinned.
pub struct DatasetWalk {
    /// Every regular file: path relative to the dataset, attributes, complete layout.
    pub files: Vec<(String, Node, Arc<Layout>)>,
    /// The dataset's metadata as of the walk.
    pub snapshot: DatasetSnapshot,
}

/// Most nodes one dataset walk visits (a bound on the agent's memory per staging).
pub const DATASET_NODES_MAX: usize = 10_000_000;
/// The span asked for when the whole layout is wanted (the server stops at its own bound).
const LAYOUT_SPAN_MAX: u64 = 1 << 60;
/// Layout requests in flight during a walk.
const WALK_LAYOUTS_IN_FLIGHT: usize = 16;

/// The agent's side of a client: cache modes, pinned metadata, dataset walks, chunk fetches
/// that do not touch the organic cache.
impl Client {
    /// Whether reads of `inode` bypass the chunk cache.
    fn bypasses(&self, inode: InodeId) -> bool {
        let set = lock(&self.bypass);
        set.modes.get(&inode).copied().unwrap_or(set.default_bypass)
    }

    /// A node found in `parent` inherits the parent's cache mode unless it has its own.
    fn inherit_mode(&self, parent: InodeId, child: InodeId) {
        let mut set = lock(&self.bypass);
        if let Some(parent_bypass) = set.modes.get(&parent).copied() {
            if set.modes.len() < BYPASS_NODES_MAX || set.modes.contains_key(&child) {
                set.modes.entry(child).or_insert(parent_bypass);
            }
        }
    }

    /// Sets whether nodes with no configured mode bypass the chunk cache.
    pub fn set_default_bypass(&self, bypass: bool) {
        lock(&self.bypass).default_bypass = bypass;
    }

    /// Sets the mode of the tree under `inode`: bypass (`true`) or cached (`false`).
    pub fn set_tree_bypass(&self, inode: InodeId, bypass: bool) {
        lock(&self.bypass).modes.insert(inode, bypass);
    }

    /// Installs the metadata snapshot of a pinned dataset (served with no server calls).
    pub fn install_pinned_metadata(&self, dataset: &str, snapshot: DatasetSnapshot) {
        self.pinned.install(dataset, snapshot);
    }

    /// Drops the metadata snapshot of `dataset` (released or wiped).
    pub fn drop_pinned_metadata(&self, dataset: &str) {
        self.pinned.remove(dataset);
    }

    /// Resolves an absolute namespace path (`/bucket/dir`) component by component from the
    /// root, asking the server (never the snapshots). Returns the names walked, as (parent,
    /// name, node), the root's node first with an empty name.
    pub async fn resolve_path(&self, path: &str) -> Result<Vec<(InodeId, String, Node)>> {
        let root = self.transport.getattr(InodeId::ROOT).await?;
        let mut chain = vec![(InodeId::ROOT, String::new(), root)];
        for name in path.split('/').filter(|part| !part.is_empty()) {
            check_name(name)?;
            let parent = chain
                .last()
                .map_or(InodeId::ROOT, |(_, _, node)| node.inode);
            let node = self.transport.lookup(parent, name).await.map_err(|e| {
                if e.kind == ErrorKind::NotFound {
                    NamespaceError::new(ErrorKind::NotFound, format!("{path} does not exist"))
                } else {
                    e
                }
            })?;
            chain.push((parent, name.to_owned(), node));
        }
        Ok(chain)
    }

    /// Every entry of directory `dir` (all pages), hidden names left out.
    async fn list_all(&self, dir: InodeId) -> Result<Vec<DirEntry>> {
        let mut entries: Vec<DirEntry> = Vec::new();
        loop {
            let after = entries.last().map(|e| e.cursor.clone()).unwrap_or_default();
            let page = self
                .transport
                .read_dir(dir, &after, self.options.readdir_page_entries)
                .await?;
            let full = page.len() >= self.options.readdir_page_entries as usize;
            entries.extend(page);
            if !full {
                break;
            }
            if entries.len() > DATASET_NODES_MAX {
                return Err(NamespaceError::new(
                    ErrorKind::InvalidArgument,
                    format!("directory has more than {DATASET_NODES_MAX} entries"),
                ));
            }
        }
        entries.retain(|entry| !entry.name.starts_with(HIDDEN_PREFIX));
        Ok(entries)
    }

    /// The complete layout of a file (all windows).
    pub async fn full_layout(&self, inode: InodeId) -> Result<Layout> {
        let mut layout = self.transport.layout(inode, 0, LAYOUT_SPAN_MAX).await?;
        while layout.truncated {
            let reached = layout.extents.last().map_or(0, Extent::end);
            let more = self
                .transport
                .layout(inode, reached, LAYOUT_SPAN_MAX)
                .await?;
            if more.extents.is_empty() {
                break;
            }
            layout.truncated = more.truncated;
            layout.extents.extend(more.extents);
        }
        layout.truncated = false;
        Ok(layout)
    }

    /// Walks a dataset: the tree under the node `chain` ends at, or, with `prefix`, the
    /// entries of that directory whose names start with it (and the trees under them).
    pub async fn walk_dataset(
        &self,
        chain: &[(InodeId, String, Node)],
        prefix: Option<&str>,
    ) -> Result<DatasetWalk> {
        let mut snapshot = DatasetSnapshot::default();
        for (parent, name, node) in chain {
            snapshot.nodes.insert(node.inode, node.clone());
            if !name.is_empty() {
                snapshot.names.insert((*parent, name.clone()), node.inode);
                snapshot.parents.insert(node.inode, *parent);
            }
        }
        snapshot.parents.insert(InodeId::ROOT, InodeId::ROOT);
        let Some((_, _, top)) = chain.last() else {
            return Err(NamespaceError::new(
                ErrorKind::InvalidArgument,
                "empty path",
            ));
        };
        let mut files: Vec<(String, Node)> = Vec::new();
        // (directory, its path relative to the dataset, whether its listing is complete)
        // A dataset that is one file is listed under its own name.
        let top_name = match top.attrs.kind {
            FileKind::Directory => String::new(),
            _ => chain
                .last()
                .map(|(_, name, _)| name.clone())
                .unwrap_or_default(),
        };
        let mut pending = vec![(top.clone(), top_name, prefix)];
        while let Some((dir, relative, filter)) = pending.pop() {
            if dir.attrs.kind != FileKind::Directory {
                files.push((relative, dir));
                continue;
            }
            let entries = self.list_all(dir.inode).await?;
            let mut kept = Vec::with_capacity(entries.len());
            for mut entry in entries {
                if filter.is_some_and(|prefix| !entry.name.starts_with(prefix)) {
                    continue;
                }
                let node = match entry.node.take() {
                    Some(node) => node,
                    None => self.transport.getattr(entry.inode).await?,
                };
                snapshot
                    .names
                    .insert((dir.inode, entry.name.clone()), node.inode);
                snapshot.nodes.insert(node.inode, node.clone());
                if node.attrs.kind == FileKind::Directory {
                    snapshot.parents.insert(node.inode, dir.inode);
                }
                let path = if relative.is_empty() {
                    entry.name.clone()
                } else {
                    format!("{relative}/{}", entry.name)
                };
                match node.attrs.kind {
                    FileKind::Directory => pending.push((node.clone(), path, None)),
                    FileKind::File => files.push((path, node.clone())),
                    FileKind::Symlink => {}
                }
                entry.node = Some(node);
                kept.push(entry);
                if snapshot.nodes.len() > DATASET_NODES_MAX {
                    return Err(NamespaceError::new(
                        ErrorKind::InvalidArgument,
                        format!("dataset has more than {DATASET_NODES_MAX} nodes"),
                    ));
                }
            }
            if filter.is_none() {
                snapshot.listings.insert(dir.inode, kept);
            }
        }
        use futures::stream::{StreamExt, TryStreamExt};
        let files: Vec<(String, Node, Arc<Layout>)> = futures::stream::iter(files)
            .map(|(path, node)| async move {
                let layout = Arc::new(self.full_layout(node.inode).await?);
                Ok::<_, NamespaceError>((path, node, layout))
            })
            .buffered(WALK_LAYOUTS_IN_FLIGHT)
            .try_collect()
            .await?;
        for (_, node, layout) in &files {
            snapshot.layouts.insert(node.inode, Arc::clone(layout));
        }
        Ok(DatasetWalk { files, snapshot })
    }

    /// Fetches chunk `id` from the server, verifies and opens it, without touching the chunk
    /// cache (staging stores it as pinned itself).
    pub async fn fetch_chunk_uncached(&self, id: ChunkId) -> Result<Bytes> {
        fetch_and_open(&*self.transport, self.tenant, &self.keyring, id).await
    }

    /// Fetches chunk `id`'s sealed frame from the server (open it with [`Client::open_frame`],
    /// e.g. on a blocking thread: staging keeps the runtime's threads for network I/O).
    pub async fn fetch_sealed(&self, id: ChunkId) -> Result<Bytes> {
        self.transport.get_chunk(id).await
    }

    /// Fetches chunk `id`'s sealed frame again inside TLS, the server checking its copy's
    /// checksum first: the second attempt after a frame did not open.
    pub async fn fetch_sealed_checked(&self, id: ChunkId) -> Result<Bytes> {
        self.transport.get_chunk_checked(id).await
    }

    /// Verifies and opens a sealed frame of chunk `id` (CPU only, no I/O).
    pub fn open_frame(&self, id: ChunkId, frame: Bytes) -> Result<Bytes> {
        ChunkService::open(self.tenant, id, frame, &|epoch| {
            self.keyring.epoch(epoch).ok()
        })
        .map_err(refused_frame)
    }

    /// Verifies and opens a sealed frame of chunk `id` into `out` (which needs the plaintext
    /// length plus a tag's room, see `ChunkService::open_into`); returns the plaintext length.
    pub fn open_frame_into(&self, id: ChunkId, frame: &[u8], out: &mut [u8]) -> Result<usize> {
        ChunkService::open_into(
            self.tenant,
            id,
            frame,
            &|epoch| self.keyring.epoch(epoch).ok(),
            out,
        )
        .map_err(refused_frame)
    }

    /// Fetches the file-system figures now (staging does, so walks of staged data find them).
    pub async fn statfs_refresh(&self) -> Result<FsStats> {
        let stats = self.transport.statfs().await?;
        *lock(&self.statfs_cache) = Some((stats, Instant::now()));
        Ok(stats)
    }

    /// Whether `plaintext` is what chunk `id` names (its content address).
    pub fn chunk_matches(&self, id: &ChunkId, plaintext: &[u8]) -> bool {
        self.keyring.addressing().chunk_id(plaintext) == *id
    }
}

/// A name longer than a directory entry may be is ENAMETOOLONG even where it cannot exist.
fn check_name(name: &str) -> Result<()> {
    if name.len() > kiseki_types::limits::NAME_BYTES_MAX {
        return Err(NamespaceError::new(
            ErrorKind::NameTooLong,
            format!("name of {} bytes", name.len()),
        ));
    }
    Ok(())
}

fn kiseki_reserved_key() -> &'static str {
    "kiseki-posix-special"
}

fn user_key(name: &str) -> Option<&str> {
    name.strip_prefix(XATTR_USER_PREFIX)
        .filter(|key| !key.is_empty() && *key != kiseki_reserved_key())
}

async fn finish_oldest_upload(state: &mut FileState) -> Result<()> {
    let Some((_, _, task)) = state.uploads.pop_front() else {
        return Ok(());
    };
    let extent = task.await.map_err(|e| {
        NamespaceError::new(ErrorKind::Unavailable, format!("chunk upload failed: {e}"))
    })??;
    state.pending.push(extent);
    Ok(())
}

/// Seals `plaintext` into a chunk here and stores the frame on the server.
async fn seal_and_store(
    transport: &dyn Transport,
    tenant: TenantId,
    keyring: &TenantKeyring,
    offset: u64,
    plaintext: ChunkBuffer,
) -> Result<Extent> {
    let (frame, extent) = seal(tenant, keyring, offset, plaintext)?;
    transport.put_chunk(extent.chunk, frame).await?;
    Ok(extent)
}

/// Seals `plaintext` into a chunk frame where it lies; returns the frame with the extent it
/// becomes at `offset`.
fn seal(
    tenant: TenantId,
    keyring: &TenantKeyring,
    offset: u64,
    plaintext: ChunkBuffer,
) -> Result<(Bytes, Extent)> {
    let id = keyring.addressing().chunk_id(plaintext.plaintext());
    let len = u32::try_from(plaintext.len())
        .map_err(|_| NamespaceError::new(ErrorKind::InvalidArgument, "chunk too large"))?;
    let key = keyring.current();
    let frame = ChunkService::seal_buffer(tenant, id, &key, plaintext).map_err(|e| {
        NamespaceError::new(ErrorKind::InvalidArgument, format!("sealing a chunk: {e}"))
    })?;
    let extent = Extent {
        file_offset: offset,
        len,
        chunk: id,
        chunk_offset: 0,
    };
    Ok((frame, extent))
}

/// A frame that failed to open (its errors name the chunk and tenant).
fn refused_frame(error: kiseki_chunk::ChunkError) -> NamespaceError {
    NamespaceError::new(ErrorKind::Corrupt, error.to_string())
}

/// Fetches a sealed chunk and verifies and opens it here; a frame that does not open is
/// fetched once more with the server's check ([`Transport::get_chunk_checked`]).
async fn fetch_and_open(
    transport: &dyn Transport,
    tenant: TenantId,
    keyring: &TenantKeyring,
    id: ChunkId,
) -> Result<Bytes> {
    let open = |frame| {
        ChunkService::open(tenant, id, frame, &|epoch| keyring.epoch(epoch).ok())
            .map_err(refused_frame)
    };
    match open(transport.get_chunk(id).await?) {
        Err(refused) => {
            // Damaged on the server's disk or on its way here (the bulk channel is plain
            // TCP): once more inside TLS, the server checking its copy first.
            tracing::warn!(chunk = %id, error = %refused, "a chunk frame did not open; fetching it again with the server's check");
            open(transport.get_chunk_checked(id).await?)
        }
        opened => opened,
    }
}
