//! Attributes this client keeps for a short time, ordered against its own changes: a fetch
//! that began before this client changed a node never overwrites what the change returned.
//! Calls run concurrently (a `getattr` may still be in flight when a truncate of the same file
//! completes), so without that order a stale size could be served until the entry expires.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kiseki_types::InodeId;

use crate::transport::Node;

/// Taken before a fetch of attributes; orders what it brings against this client's changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FetchTicket(u64);

/// The cache (see the module doc).
#[derive(Default)]
pub(crate) struct AttrCache {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<InodeId, Entry>,
    /// Changes (and invalidations) made here, counted.
    changes: u64,
    /// Fetches whose ticket is older than this were begun before the last clear.
    floor: u64,
}

struct Entry {
    /// `None`: invalidated (kept to order fetches still in flight).
    node: Option<Node>,
    at: Instant,
    /// The change count the entry reflects.
    version: u64,
}

impl AttrCache {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A ticket for a fetch about to begin.
    pub(crate) fn ticket(&self) -> FetchTicket {
        FetchTicket(self.inner().changes)
    }

    /// Keeps fetched attributes, unless this client changed the node (or cleared the cache)
    /// after the fetch began.
    pub(crate) fn fetched(&self, node: &Node, ticket: FetchTicket) {
        let mut inner = self.inner();
        if ticket.0 < inner.floor {
            return;
        }
        if inner
            .entries
            .get(&node.inode)
            .is_some_and(|entry| entry.version > ticket.0)
        {
            return;
        }
        inner.entries.insert(
            node.inode,
            Entry {
                node: Some(node.clone()),
                at: Instant::now(),
                version: ticket.0,
            },
        );
    }

    /// Keeps the attributes a change made here returned: newer than any fetch begun before.
    pub(crate) fn changed(&self, node: &Node) {
        self.set(node.inode, Some(node.clone()));
    }

    /// Forgets a node's attributes; fetches begun before are not kept either.
    pub(crate) fn invalidate(&self, inode: InodeId) {
        self.set(inode, None);
    }

    /// Forgets every node's attributes; fetches begun before are not kept either.
    pub(crate) fn clear(&self) {
        let mut inner = self.inner();
        inner.changes += 1;
        inner.floor = inner.changes;
        inner.entries.clear();
    }

    /// A node's attributes if kept and younger than `ttl`.
    pub(crate) fn get(&self, inode: InodeId, ttl: Duration) -> Option<Node> {
        self.inner()
            .entries
            .get(&inode)
            .filter(|entry| entry.at.elapsed() < ttl)
            .and_then(|entry| entry.node.clone())
    }

    /// A node's attributes if kept, however old.
    pub(crate) fn last_seen(&self, inode: InodeId) -> Option<Node> {
        self.inner()
            .entries
            .get(&inode)
            .and_then(|entry| entry.node.clone())
    }

    fn set(&self, inode: InodeId, node: Option<Node>) {
        let mut inner = self.inner();
        inner.changes += 1;
        let version = inner.changes;
        inner.entries.insert(
            inode,
            Entry {
                node,
                at: Instant::now(),
                version,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use kiseki_types::{Attributes, FileKind, Timestamp};

    use super::*;

    fn node(inode: InodeId, size: u64) -> Node {
        let time = Timestamp(0);
        Node {
            inode,
            attrs: Attributes {
                kind: FileKind::File,
                mode: 0o644,
                uid: 0,
                gid: 0,
                size,
                nlink: 1,
                atime: time,
                mtime: time,
                ctime: time,
                btime: time,
            },
            special: Default::default(),
        }
    }

    const TTL: Duration = Duration::from_secs(60);

    #[test]
    fn a_fetch_begun_before_a_change_does_not_overwrite_it() {
        let cache = AttrCache::default();
        let file = InodeId::new(0, 7);
        let before_truncate = cache.ticket();
        cache.changed(&node(file, 300)); // a truncate up completes
        cache.fetched(&node(file, 100), before_truncate); // the older getattr lands late
        assert_eq!(cache.get(file, TTL).map(|n| n.attrs.size), Some(300));

        let after = cache.ticket();
        cache.fetched(&node(file, 400), after); // someone else's later change, fetched
        assert_eq!(cache.get(file, TTL).map(|n| n.attrs.size), Some(400));
    }

    #[test]
    fn invalidations_and_clears_also_turn_away_older_fetches() {
        let cache = AttrCache::default();
        let (a, b) = (InodeId::new(0, 2), InodeId::new(0, 3));
        let old = cache.ticket();
        cache.invalidate(a);
        cache.fetched(&node(a, 1), old);
        assert_eq!(cache.get(a, TTL), None);

        let old = cache.ticket();
        cache.clear();
        cache.fetched(&node(b, 1), old);
        assert_eq!(cache.get(b, TTL), None);
        cache.fetched(&node(b, 2), cache.ticket());
        assert_eq!(cache.get(b, TTL).map(|n| n.attrs.size), Some(2));
        assert_eq!(cache.get(b, Duration::ZERO), None, "older than the TTL");
        assert_eq!(cache.last_seen(b).map(|n| n.attrs.size), Some(2));
    }
}
