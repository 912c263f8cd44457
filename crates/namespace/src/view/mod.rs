//! The materialized view of one shard: every node, every directory's ordered children, every
//! file's composition. It changes only by applying committed deltas in log order, and is rebuilt
//! after a restart from the latest snapshot plus the log after it, so it never diverges from the
//! log.

mod apply;
mod carried;
mod listing;
mod objects;
mod placements;
mod query;
mod uploads;

use std::collections::BTreeMap;
use std::sync::Arc;

use kiseki_log::{ChunkPlacement, Delta, DeltaOutcome, ShardState, SnapshotError};
use kiseki_types::{Attributes, ChunkId, Composition, FileKind, InodeId, Timestamp};
use serde::{Deserialize, Serialize};

pub use listing::{ListEntry, ListPage, ListRequest};
pub use query::DirectoryEntry;
pub(crate) use uploads::bare_etag;
pub(crate) use uploads::{CompletionError, Upload};

/// What a node holds besides its attributes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum Content {
    /// A file's current composition (shared with readers without copying).
    File(Arc<Composition>),
    /// A directory: its parent and its children by child key (see [`crate::names`]).
    Directory {
        parent: InodeId,
        children: BTreeMap<String, InodeId>,
    },
    /// A symlink's target.
    Symlink(String),
}

/// One node of the namespace.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Node {
    pub attrs: Attributes,
    pub content: Content,
    pub user_metadata: BTreeMap<String, Vec<u8>>,
    /// S3 system metadata (ETag, Content-Type, ...): kept apart so POSIX xattrs never show it.
    pub system_metadata: BTreeMap<String, String>,
}

/// The view of one shard's namespace.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NamespaceView {
    shard_index: u16,
    next_local: u64,
    /// Ordered so that a snapshot of equal states is the same bytes on every replica.
    nodes: BTreeMap<InodeId, Node>,
    /// Multipart uploads in progress, by upload id.
    uploads: BTreeMap<String, Upload>,
    applied_deltas: u64,
    /// Where the fragments of chunks of erasure-coded pools are (recorded by `Placed` and
    /// `RecordPlacement` deltas). Encoded after the view in a snapshot (version 3), so version 2
    /// snapshots still decode; never removed yet (no garbage collection of chunks exists).
    #[serde(skip)]
    placements: BTreeMap<ChunkId, ChunkPlacement>,
    /// Where frames carried in the log are kept (not state: the same on every replica's view).
    #[serde(skip)]
    keeper: carried::FrameKeeper,
}

/// Version 2 added system metadata on nodes and multipart uploads; version 3 appends the
/// placement table after the view.
const SNAPSHOT_VERSION: u8 = 3;
/// The last version without the placement table (still restored, with an empty table).
const SNAPSHOT_VERSION_NO_PLACEMENTS: u8 = 2;

impl NamespaceView {
    /// This view, keeping the frames that `Delta::Carried` entries bring in `tenant`'s `store`.
    pub fn keeping_carried_frames(
        mut self,
        tenant: kiseki_types::TenantId,
        store: Arc<dyn kiseki_chunk::ChunkStore>,
    ) -> Self {
        self.keeper = carried::FrameKeeper::new(tenant, store);
        self
    }

    /// An empty view of shard `shard_index`; shard 0 holds the tenant's root directory.
    pub fn new(shard_index: u16) -> Self {
        let mut view = NamespaceView {
            shard_index,
            next_local: 2,
            nodes: BTreeMap::new(),
            uploads: BTreeMap::new(),
            applied_deltas: 0,
            placements: BTreeMap::new(),
            keeper: carried::FrameKeeper::default(),
        };
        if shard_index == 0 {
            view.nodes.insert(
                InodeId::ROOT,
                Node::directory(InodeId::ROOT, 0o755, 0, 0, Timestamp(0)),
            );
        }
        view
    }

    /// Number of deltas applied so far (for metrics and tests).
    pub fn applied_deltas(&self) -> u64 {
        self.applied_deltas
    }

    /// Number of nodes in the view.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }
}

impl Node {
    pub(crate) fn directory(
        parent: InodeId,
        mode: u32,
        uid: u32,
        gid: u32,
        time: Timestamp,
    ) -> Self {
        Node {
            attrs: Attributes {
                kind: FileKind::Directory,
                mode: mode & 0o7777,
                uid,
                gid,
                size: 0,
                nlink: 2,
                atime: time,
                mtime: time,
                ctime: time,
                btime: time,
            },
            content: Content::Directory {
                parent,
                children: BTreeMap::new(),
            },
            user_metadata: BTreeMap::new(),
            system_metadata: BTreeMap::new(),
        }
    }
}

impl ShardState for NamespaceView {
    fn apply(&mut self, _log_index: u64, delta: &Delta) -> DeltaOutcome {
        self.applied_deltas += 1;
        self.apply_delta(delta)
    }

    fn encode_snapshot(&self) -> Vec<u8> {
        let mut bytes = vec![SNAPSHOT_VERSION];
        // Encoding plain in-memory data cannot fail; an empty body would be caught on restore.
        if let Ok(body) = bincode::serde::encode_to_vec(self, bincode::config::standard()) {
            bytes.extend_from_slice(&body);
        }
        if let Ok(table) =
            bincode::serde::encode_to_vec(&self.placements, bincode::config::standard())
        {
            bytes.extend_from_slice(&table);
        }
        bytes
    }

    fn restore_snapshot(&mut self, bytes: &[u8]) -> Result<(), SnapshotError> {
        let Some((&version, body)) = bytes.split_first() else {
            return Err(SnapshotError::Corrupt("empty namespace snapshot".into()));
        };
        if version != SNAPSHOT_VERSION && version != SNAPSHOT_VERSION_NO_PLACEMENTS {
            return Err(SnapshotError::UnsupportedVersion(u32::from(version)));
        }
        let (mut view, used) = bincode::serde::decode_from_slice::<NamespaceView, _>(
            body,
            bincode::config::standard(),
        )
        .map_err(|error| SnapshotError::Corrupt(format!("namespace snapshot: {error}")))?;
        if version == SNAPSHOT_VERSION {
            let rest = body.get(used..).unwrap_or_default();
            let (table, _) = bincode::serde::decode_from_slice::<
                BTreeMap<ChunkId, ChunkPlacement>,
                _,
            >(rest, bincode::config::standard())
            .map_err(|error| SnapshotError::Corrupt(format!("placement table: {error}")))?;
            view.placements = table;
        }
        view.keeper = self.keeper.clone();
        *self = view;
        Ok(())
    }

    fn reset(&mut self) {
        let keeper = self.keeper.clone();
        *self = NamespaceView::new(self.shard_index);
        self.keeper = keeper;
    }

    fn make_durable(&self) -> Result<(), String> {
        self.keeper.sync()
    }
}

#[cfg(test)]
mod tests;
