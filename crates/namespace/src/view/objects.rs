//! S3 object semantics over the tree: a bucket is a top-level directory, an object is a file
//! whose path is the bucket plus the key's components. Conditional puts are decided here, in
//! log order, so two racing `If-None-Match: *` writers cannot both win.

use std::sync::Arc;

use kiseki_log::{DeltaOutcome, ObjectWrite, PutCondition};
use kiseki_types::{Composition, ErrorKind, FileKind, InodeId, NamespaceError};

use super::apply::error;
use super::{Content, NamespaceView, Node};
use crate::object::{synthesized_etag, ObjectInfo, ETAG_KEY};

impl NamespaceView {
    pub(super) fn put_object(
        &mut self,
        object: &ObjectWrite,
        content: &Composition,
        condition: Option<&PutCondition>,
    ) -> DeltaOutcome {
        self.check_bucket_of(&object.path)?;
        if let Some(condition) = condition {
            let current = self
                .resolve(&object.path)
                .ok()
                .and_then(|inode| self.object_etag(inode));
            match (condition, current) {
                (PutCondition::Absent, Some(_)) => {
                    return Err(error(
                        ErrorKind::AlreadyExists,
                        format!("{:?} exists", object.path.join("/")),
                    ))
                }
                (PutCondition::ETag(_), None) => {
                    return Err(error(
                        ErrorKind::NotFound,
                        format!("{:?} not found", object.path.join("/")),
                    ))
                }
                (PutCondition::ETag(expected), Some(etag)) if *expected != etag => {
                    return Err(error(
                        ErrorKind::Stale,
                        format!(
                            "{:?} has ETag {etag}, not {expected}",
                            object.path.join("/")
                        ),
                    ))
                }
                _ => {}
            }
        }
        self.put_file(
            &object.path,
            content,
            &object.user_metadata,
            &object.system_metadata,
            0o644,
            object.owner,
            object.time,
        )
    }

    /// Checks that `path` names an object in an existing bucket.
    pub(crate) fn check_bucket_of(&self, path: &[String]) -> Result<InodeId, NamespaceError> {
        let [bucket, _, ..] = path else {
            return Err(error(
                ErrorKind::InvalidArgument,
                "an object path needs a bucket and a key",
            ));
        };
        match self.child(InodeId::ROOT, bucket)? {
            Some((_, inode)) if self.node(inode)?.attrs.kind == FileKind::Directory => Ok(inode),
            _ => Err(error(ErrorKind::NotFound, format!("no bucket {bucket:?}"))),
        }
    }

    /// The ETag of file `inode`: the stored one, or one derived from its identity and version
    /// for files written over POSIX. `None` for directories and symlinks.
    pub(crate) fn object_etag(&self, inode: InodeId) -> Option<String> {
        let node = self.nodes.get(&inode)?;
        if node.attrs.kind != FileKind::File {
            return None;
        }
        Some(
            node.system_metadata
                .get(ETAG_KEY)
                .cloned()
                .unwrap_or_else(|| synthesized_etag(inode, &node.attrs)),
        )
    }

    /// Everything S3 reports about the file at `path`, with its current content.
    pub(crate) fn object_info(&self, path: &[String]) -> Result<ObjectInfo, NamespaceError> {
        let inode = self.resolve(path)?;
        let node: &Node = self.node(inode)?;
        let Content::File(composition) = &node.content else {
            return Err(error(
                ErrorKind::IsADirectory,
                format!("{:?} is not a file", path.join("/")),
            ));
        };
        Ok(ObjectInfo {
            inode,
            etag: self.object_etag(inode).unwrap_or_default(),
            attributes: node.attrs.clone(),
            user_metadata: node.user_metadata.clone(),
            system_metadata: node.system_metadata.clone(),
            content: Arc::clone(composition),
        })
    }
}
