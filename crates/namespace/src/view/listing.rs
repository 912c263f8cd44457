//! Ordered listing by prefix, delimiter and start-after: S3 `ListObjects(V2)` semantics over the
//! directory tree. Children are kept in key order (see [`crate::names`]), so a depth-first walk
//! yields full keys in S3 order; a subtree that rolls up into one common prefix is never entered.

use std::ops::ControlFlow;

use kiseki_types::limits::LIST_PAGE_ENTRIES_MAX;
use kiseki_types::{Attributes, InodeId, NamespaceError};

use super::{Content, NamespaceView};

/// What to list.
#[derive(Clone, Copy, Debug, Default)]
pub struct ListRequest<'a> {
    /// Only keys starting with this.
    pub prefix: &'a str,
    /// Roll keys whose remainder after the prefix contains this into common prefixes; `None`
    /// (or empty) lists every key.
    pub delimiter: Option<&'a str>,
    /// Only keys (and common prefixes) after this one.
    pub start_after: Option<&'a str>,
    /// Most entries (keys plus common prefixes) in the page; capped at the page limit.
    pub max_entries: usize,
}

/// One listed item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListEntry {
    /// A file (object) and its attributes.
    Object {
        /// Full key (path from the tenant root).
        key: String,
        /// Its node.
        inode: InodeId,
        /// Its attributes.
        attributes: Attributes,
    },
    /// A common prefix standing for every key that starts with it.
    CommonPrefix(String),
}

impl ListEntry {
    /// The key or prefix, which orders the listing.
    pub fn key(&self) -> &str {
        match self {
            ListEntry::Object { key, .. } | ListEntry::CommonPrefix(key) => key,
        }
    }
}

/// One page of a listing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListPage {
    /// Keys and common prefixes in key order.
    pub entries: Vec<ListEntry>,
    /// Whether more entries follow; continue with `start_after` = the last entry's key.
    pub truncated: bool,
}

struct Walk<'v, 'r> {
    view: &'v NamespaceView,
    request: ListRequest<'r>,
    max_entries: usize,
    page: ListPage,
}

impl NamespaceView {
    /// Lists keys in S3 order (see [`ListRequest`]).
    pub fn list(&self, request: ListRequest<'_>) -> Result<ListPage, NamespaceError> {
        let request = ListRequest {
            delimiter: request.delimiter.filter(|d| !d.is_empty()),
            ..request
        };
        let (base, name_prefix) = match request.prefix.rfind('/') {
            Some(at) => request.prefix.split_at(at + 1),
            None => ("", request.prefix),
        };
        let components: Vec<String> = base.split_terminator('/').map(str::to_owned).collect();
        if components.iter().any(String::is_empty) {
            return Ok(ListPage::default());
        }
        let Ok(dir) = self.resolve(&components) else {
            return Ok(ListPage::default());
        };
        if !matches!(self.node(dir)?.content, Content::Directory { .. }) {
            return Ok(ListPage::default());
        }
        let mut walk = Walk {
            view: self,
            request,
            max_entries: request.max_entries.min(LIST_PAGE_ENTRIES_MAX),
            page: ListPage::default(),
        };
        let _ = walk.directory(dir, base, name_prefix);
        Ok(walk.page)
    }
}

impl Walk<'_, '_> {
    fn directory(&mut self, dir: InodeId, base: &str, name_prefix: &str) -> ControlFlow<()> {
        let Ok(children) = self.view.children(dir) else {
            return ControlFlow::Continue(());
        };
        // Children before the start-after key's component in this directory are all before it.
        let seek = self
            .request
            .start_after
            .and_then(|after| after.strip_prefix(base))
            .map(|rest| rest.split('/').next().unwrap_or(rest))
            .filter(|component| *component > name_prefix)
            .unwrap_or(name_prefix);
        for (child_key, &inode) in
            children.range::<str, _>((std::ops::Bound::Included(seek), std::ops::Bound::Unbounded))
        {
            if !child_key.starts_with(name_prefix) {
                break;
            }
            let key = format!("{base}{child_key}");
            if child_key.ends_with('/') {
                self.subtree(inode, key)?;
            } else {
                self.key(inode, key)?;
            }
        }
        ControlFlow::Continue(())
    }

    fn subtree(&mut self, inode: InodeId, key: String) -> ControlFlow<()> {
        if let Some(after) = self.request.start_after {
            if after >= key.as_str() && !after.starts_with(key.as_str()) {
                return ControlFlow::Continue(());
            }
        }
        if let Some(prefix) = self.rolled_up(&key) {
            return self.common_prefix(prefix);
        }
        self.directory(inode, &key, "")
    }

    fn key(&mut self, inode: InodeId, key: String) -> ControlFlow<()> {
        if self
            .request
            .start_after
            .is_some_and(|after| key.as_str() <= after)
        {
            return ControlFlow::Continue(());
        }
        if let Some(prefix) = self.rolled_up(&key) {
            return self.common_prefix(prefix);
        }
        let Ok(attributes) = self.view.attributes(inode) else {
            return ControlFlow::Continue(());
        };
        self.push(ListEntry::Object {
            key,
            inode,
            attributes,
        })
    }

    /// The common prefix `key` rolls up into, when a delimiter is set and occurs after the prefix.
    fn rolled_up(&self, key: &str) -> Option<String> {
        let delimiter = self.request.delimiter?;
        let rest = key.get(self.request.prefix.len()..)?;
        let at = rest.find(delimiter)?;
        Some(key[..self.request.prefix.len() + at + delimiter.len()].to_owned())
    }

    fn common_prefix(&mut self, prefix: String) -> ControlFlow<()> {
        let repeated = self
            .page
            .entries
            .last()
            .is_some_and(|last| last.key() == prefix);
        if repeated
            || self
                .request
                .start_after
                .is_some_and(|after| prefix.as_str() <= after)
        {
            return ControlFlow::Continue(());
        }
        self.push(ListEntry::CommonPrefix(prefix))
    }

    fn push(&mut self, entry: ListEntry) -> ControlFlow<()> {
        if self.page.entries.len() >= self.max_entries {
            self.page.truncated = true;
            return ControlFlow::Break(());
        }
        self.page.entries.push(entry);
        ControlFlow::Continue(())
    }
}
