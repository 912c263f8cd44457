//! Pinned metadata: what a staged dataset looked like when it was staged (attributes, the
//! names leading to it, its directory listings and every file's layout), so that reads of a
//! pinned dataset are served on the node with no server round trip at all.
//!
//! Consistency rule: a pinned dataset is a snapshot as of its staging. A change made through
//! this client to a node in the snapshot drops that node's entries (the change goes to the
//! server, and later calls for that node do too); changes made elsewhere are not seen until
//! the dataset is staged again. This module holds data only: it never talks to the server.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use kiseki_types::InodeId;

use crate::transport::{DirEntry, Layout, Node};

/// The metadata of one staged dataset.
#[derive(Clone, Debug, Default)]
pub struct DatasetSnapshot {
    /// Attributes of every node of the dataset and of the directories leading to it.
    pub nodes: HashMap<InodeId, Node>,
    /// Names: (directory, name) → node, for the dataset and the path leading to it.
    pub names: HashMap<(InodeId, String), InodeId>,
    /// Complete listings of the dataset's directories.
    pub listings: HashMap<InodeId, Vec<DirEntry>>,
    /// Parent of each directory (for "..").
    pub parents: HashMap<InodeId, InodeId>,
    /// Complete layouts of the dataset's files.
    pub layouts: HashMap<InodeId, Arc<Layout>>,
}

impl DatasetSnapshot {
    /// Drops what the snapshot knows of `inode` (and of `name` in it, when given).
    fn forget(&mut self, inode: InodeId, name: Option<&str>) {
        self.nodes.remove(&inode);
        self.listings.remove(&inode);
        self.layouts.remove(&inode);
        if let Some(name) = name {
            if let Some(child) = self.names.remove(&(inode, name.to_owned())) {
                self.nodes.remove(&child);
                self.listings.remove(&child);
                self.layouts.remove(&child);
            }
        }
    }
}

/// The snapshots of every pinned dataset, by dataset path.
#[derive(Default)]
pub struct PinnedMetadata {
    datasets: std::sync::RwLock<BTreeMap<String, DatasetSnapshot>>,
}

impl PinnedMetadata {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, DatasetSnapshot>> {
        self.datasets
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, DatasetSnapshot>> {
        self.datasets
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Installs (or replaces) the snapshot of `dataset`.
    pub fn install(&self, dataset: &str, snapshot: DatasetSnapshot) {
        self.write().insert(dataset.to_owned(), snapshot);
    }

    /// Drops the snapshot of `dataset`.
    pub fn remove(&self, dataset: &str) {
        self.write().remove(dataset);
    }

    /// Drops every snapshot.
    pub fn clear(&self) {
        self.write().clear();
    }

    /// Whether any dataset is pinned (a cheap check before the lookups below).
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// The attributes of `inode`, if pinned.
    pub fn node(&self, inode: InodeId) -> Option<Node> {
        self.read()
            .values()
            .find_map(|snapshot| snapshot.nodes.get(&inode).cloned())
    }

    /// The node `name` in `parent`, if pinned.
    pub fn lookup(&self, parent: InodeId, name: &str) -> Option<Node> {
        let key = (parent, name.to_owned());
        self.read().values().find_map(|snapshot| {
            let child = snapshot.names.get(&key)?;
            snapshot.nodes.get(child).cloned()
        })
    }

    /// The complete listing of directory `inode` and its parent, if pinned.
    pub fn listing(&self, inode: InodeId) -> Option<(InodeId, Vec<DirEntry>)> {
        self.read().values().find_map(|snapshot| {
            let entries = snapshot.listings.get(&inode)?;
            let parent = snapshot.parents.get(&inode)?;
            Some((*parent, entries.clone()))
        })
    }

    /// The complete layout of file `inode`, if pinned.
    pub fn layout(&self, inode: InodeId) -> Option<Arc<Layout>> {
        self.read()
            .values()
            .find_map(|snapshot| snapshot.layouts.get(&inode).cloned())
    }

    /// A local change to `inode` (or to `name` in it): later calls for it go to the server.
    pub fn forget(&self, inode: InodeId, name: Option<&str>) {
        if self.is_empty() {
            return;
        }
        for snapshot in self.write().values_mut() {
            snapshot.forget(inode, name);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use kiseki_types::{Attributes, FileKind, Timestamp};

    fn node(inode: u64, kind: FileKind) -> Node {
        Node {
            inode: InodeId(inode),
            attrs: Attributes {
                kind,
                mode: 0o644,
                uid: 0,
                gid: 0,
                size: 0,
                nlink: 1,
                atime: Timestamp(0),
                mtime: Timestamp(0),
                ctime: Timestamp(0),
                btime: Timestamp(0),
            },
            special: Default::default(),
        }
    }

    #[test]
    fn a_local_change_drops_the_entry_and_the_name() {
        let pinned = PinnedMetadata::default();
        let mut snapshot = DatasetSnapshot::default();
        snapshot
            .nodes
            .insert(InodeId(2), node(2, FileKind::Directory));
        snapshot.nodes.insert(InodeId(3), node(3, FileKind::File));
        snapshot.names.insert((InodeId(2), "f".into()), InodeId(3));
        pinned.install("/b", snapshot);
        assert_eq!(
            pinned.lookup(InodeId(2), "f").map(|n| n.inode),
            Some(InodeId(3))
        );
        pinned.forget(InodeId(2), Some("f"));
        assert!(pinned.lookup(InodeId(2), "f").is_none());
        assert!(pinned.node(InodeId(3)).is_none());
        assert!(pinned.node(InodeId(2)).is_none());
        pinned.remove("/b");
        assert!(pinned.is_empty());
    }
}
