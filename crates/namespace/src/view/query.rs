//! Read-only questions to the view: the lookups every gateway makes.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use kiseki_types::{Attributes, Composition, ErrorKind, FileKind, InodeId, NamespaceError};

use super::{Content, NamespaceView};
use crate::names::name_of_key;

/// One entry of a directory listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectoryEntry {
    /// The entry's name.
    pub name: String,
    /// Its node.
    pub inode: InodeId,
    /// What it is.
    pub kind: FileKind,
    /// Position of the entry: pass it back as `after` to continue the listing. Stable while the
    /// entry exists, and continuing after a removed entry still works.
    pub cursor: String,
}

impl NamespaceView {
    /// The attributes of `inode`.
    pub fn attributes(&self, inode: InodeId) -> Result<Attributes, NamespaceError> {
        Ok(self.node(inode)?.attrs.clone())
    }

    /// The node named `name` in directory `parent`.
    pub fn lookup(&self, parent: InodeId, name: &str) -> Result<InodeId, NamespaceError> {
        if name == "." {
            return self.children(parent).map(|_| parent);
        }
        if name == ".." {
            return match &self.node(parent)?.content {
                Content::Directory {
                    parent: grandparent,
                    ..
                } => Ok(*grandparent),
                _ => Err(NamespaceError::new(
                    ErrorKind::NotADirectory,
                    format!("{parent} is not a directory"),
                )),
            };
        }
        self.child(parent, name)?
            .map(|(_, inode)| inode)
            .ok_or_else(|| {
                NamespaceError::new(
                    ErrorKind::NotFound,
                    format!("{name:?} not found in {parent}"),
                )
            })
    }

    /// The node at `path` (components from the tenant root).
    pub fn resolve(&self, path: &[String]) -> Result<InodeId, NamespaceError> {
        path.iter().try_fold(InodeId::ROOT, |dir, name| {
            self.lookup(dir, name).map_err(|error| match error.kind {
                ErrorKind::NotFound => NamespaceError::new(
                    ErrorKind::NotFound,
                    format!("{:?} not found", path.join("/")),
                ),
                _ => error,
            })
        })
    }

    /// Up to `limit` entries of directory `dir` in key order, after cursor `after`.
    pub fn read_directory(
        &self,
        dir: InodeId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DirectoryEntry>, NamespaceError> {
        let children = self.children(dir)?;
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        Ok(children
            .range::<str, _>((start, Bound::Unbounded))
            .take(limit)
            .filter_map(|(key, &inode)| {
                let kind = self.nodes.get(&inode)?.attrs.kind;
                Some(DirectoryEntry {
                    name: name_of_key(key).to_owned(),
                    inode,
                    kind,
                    cursor: key.clone(),
                })
            })
            .collect())
    }

    /// The current composition of file `inode` (shared, not copied).
    pub fn composition(&self, inode: InodeId) -> Result<Arc<Composition>, NamespaceError> {
        match &self.node(inode)?.content {
            Content::File(composition) => Ok(Arc::clone(composition)),
            Content::Directory { .. } => Err(NamespaceError::new(
                ErrorKind::IsADirectory,
                format!("{inode} is a directory"),
            )),
            Content::Symlink(_) => Err(NamespaceError::new(
                ErrorKind::InvalidArgument,
                format!("{inode} is a symlink"),
            )),
        }
    }

    /// The target of symlink `inode`.
    pub fn read_link(&self, inode: InodeId) -> Result<String, NamespaceError> {
        match &self.node(inode)?.content {
            Content::Symlink(target) => Ok(target.clone()),
            _ => Err(NamespaceError::new(
                ErrorKind::InvalidArgument,
                format!("{inode} is not a symlink"),
            )),
        }
    }

    /// All user metadata of `inode`.
    pub fn user_metadata(
        &self,
        inode: InodeId,
    ) -> Result<BTreeMap<String, Vec<u8>>, NamespaceError> {
        Ok(self.node(inode)?.user_metadata.clone())
    }
}
