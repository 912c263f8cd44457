//! Applying deltas: all namespace semantics (POSIX rules for names, links, renames; S3 rules for
//! replacing objects) are decided here, once, in log order.

use std::collections::BTreeMap;
use std::sync::Arc;

use kiseki_log::{Applied, AttrChanges, Delta, DeltaOutcome, NewNode, Owner};
use kiseki_types::limits::{
    SYMLINK_TARGET_BYTES_MAX, USER_METADATA_BYTES_MAX, USER_METADATA_ENTRIES_MAX,
};
use kiseki_types::{
    Attributes, Composition, ErrorKind, Extent, FileKind, InodeId, NamespaceError, Timestamp,
};

use super::{Content, NamespaceView, Node};
use crate::names::{child_key, validate_name};

pub(super) fn error(kind: ErrorKind, message: impl Into<String>) -> NamespaceError {
    NamespaceError::new(kind, message)
}

pub(super) fn applied(inode: InodeId) -> DeltaOutcome {
    Ok(Applied { inode: Some(inode) })
}

impl NamespaceView {
    pub(super) fn apply_delta(&mut self, delta: &Delta) -> DeltaOutcome {
        match delta {
            Delta::Create {
                parent,
                name,
                node,
                mode,
                owner,
                exclusive,
                time,
            } => self.create(*parent, name, node, *mode, *owner, *exclusive, *time),
            Delta::PutFile {
                path,
                content,
                user_metadata,
                mode,
                owner,
                time,
            } => self.put_file(
                path,
                content,
                user_metadata,
                &BTreeMap::new(),
                *mode,
                *owner,
                *time,
            ),
            Delta::PutObject {
                object,
                content,
                condition,
            } => self.put_object(object, content, condition.as_ref()),
            Delta::CreateUpload { upload_id, object } => self.create_upload(upload_id, object),
            Delta::PutPart {
                upload_id,
                part_number,
                etag,
                content,
                time,
            } => self.put_part(upload_id, *part_number, etag, content, *time),
            Delta::CompleteUpload {
                upload_id,
                parts,
                part_size_min,
                etag,
                time,
            } => self.complete_upload(upload_id, parts, *part_size_min, etag, *time),
            Delta::AbortUpload { upload_id, .. } => self.abort_upload(upload_id),
            Delta::Write {
                inode,
                extents,
                time,
            } => self.write(*inode, extents, 0, *time),
            Delta::Append {
                inode,
                extents,
                time,
            } => {
                let end = self.file(*inode)?.size;
                self.write(*inode, extents, end, *time)
            }
            Delta::Truncate { inode, size, time } => self.truncate(*inode, *size, *time),
            Delta::Rename {
                from_parent,
                from_name,
                to_parent,
                to_name,
                no_replace,
                time,
            } => self.rename(
                *from_parent,
                from_name,
                *to_parent,
                to_name,
                *no_replace,
                *time,
            ),
            Delta::Unlink { parent, name, time } => self.remove(*parent, name, false, *time),
            Delta::Rmdir { parent, name, time } => self.remove(*parent, name, true, *time),
            Delta::Link {
                inode,
                new_parent,
                new_name,
                time,
            } => self.link(*inode, *new_parent, new_name, *time),
            Delta::SetAttr {
                inode,
                changes,
                time,
            } => self.set_attr(*inode, changes, *time),
            Delta::SetUserMetadata {
                inode,
                key,
                value,
                time,
            } => self.set_user_metadata(*inode, key, value.as_deref(), *time),
            Delta::Placed { placements, delta } => {
                self.record_placements(placements);
                if matches!(**delta, Delta::Placed { .. }) {
                    return Err(error(
                        ErrorKind::InvalidArgument,
                        "placement records cannot wrap each other",
                    ));
                }
                self.apply_delta(delta)
            }
            Delta::RecordPlacement { placements } => {
                self.record_placements(placements);
                Ok(kiseki_log::Applied { inode: None })
            }
            Delta::Carried { frames, delta } => self.apply_carried(frames, delta),
        }
    }

    pub(crate) fn node(&self, inode: InodeId) -> Result<&Node, NamespaceError> {
        self.nodes
            .get(&inode)
            .ok_or_else(|| error(ErrorKind::NotFound, format!("no node {inode}")))
    }

    fn node_mut(&mut self, inode: InodeId) -> Result<&mut Node, NamespaceError> {
        self.nodes
            .get_mut(&inode)
            .ok_or_else(|| error(ErrorKind::NotFound, format!("no node {inode}")))
    }

    fn file(&self, inode: InodeId) -> Result<&Composition, NamespaceError> {
        match &self.node(inode)?.content {
            Content::File(composition) => Ok(composition),
            Content::Directory { .. } => Err(error(
                ErrorKind::IsADirectory,
                format!("{inode} is a directory"),
            )),
            Content::Symlink(_) => Err(error(
                ErrorKind::InvalidArgument,
                format!("{inode} is a symlink"),
            )),
        }
    }

    pub(crate) fn children(
        &self,
        dir: InodeId,
    ) -> Result<&BTreeMap<String, InodeId>, NamespaceError> {
        match &self.node(dir)?.content {
            Content::Directory { children, .. } => Ok(children),
            _ => Err(error(
                ErrorKind::NotADirectory,
                format!("{dir} is not a directory"),
            )),
        }
    }

    fn children_mut(
        &mut self,
        dir: InodeId,
    ) -> Result<&mut BTreeMap<String, InodeId>, NamespaceError> {
        match &mut self.node_mut(dir)?.content {
            Content::Directory { children, .. } => Ok(children),
            _ => Err(error(
                ErrorKind::NotADirectory,
                format!("{dir} is not a directory"),
            )),
        }
    }

    /// The child named `name` of `dir` and its key, if present.
    pub(crate) fn child(
        &self,
        dir: InodeId,
        name: &str,
    ) -> Result<Option<(String, InodeId)>, NamespaceError> {
        let children = self.children(dir)?;
        for key in [child_key(name, false), child_key(name, true)] {
            if let Some(&inode) = children.get(&key) {
                return Ok(Some((key, inode)));
            }
        }
        Ok(None)
    }

    fn allocate(&mut self) -> Result<InodeId, NamespaceError> {
        if self.next_local > InodeId::LOCAL_MAX {
            return Err(error(ErrorKind::NoSpace, "shard ran out of inode numbers"));
        }
        let inode = InodeId::new(self.shard_index, self.next_local);
        self.next_local += 1;
        Ok(inode)
    }

    fn touch_directory(&mut self, dir: InodeId, time: Timestamp) {
        if let Some(node) = self.nodes.get_mut(&dir) {
            node.attrs.mtime = time;
            node.attrs.ctime = time;
        }
    }

    fn insert_child(
        &mut self,
        parent: InodeId,
        name: &str,
        node: Node,
        time: Timestamp,
    ) -> Result<InodeId, NamespaceError> {
        let inode = self.allocate()?;
        let is_directory = node.attrs.kind == FileKind::Directory;
        self.children_mut(parent)?
            .insert(child_key(name, is_directory), inode);
        self.nodes.insert(inode, node);
        if is_directory {
            if let Ok(parent_node) = self.node_mut(parent) {
                parent_node.attrs.nlink += 1;
            }
        }
        self.touch_directory(parent, time);
        Ok(inode)
    }

    #[allow(clippy::too_many_arguments)]
    fn create(
        &mut self,
        parent: InodeId,
        name: &str,
        new: &NewNode,
        mode: u32,
        owner: Owner,
        exclusive: bool,
        time: Timestamp,
    ) -> DeltaOutcome {
        validate_name(name)?;
        if let Some((_, existing)) = self.child(parent, name)? {
            let is_file = self.node(existing)?.attrs.kind == FileKind::File;
            if exclusive || !matches!(new, NewNode::File) || !is_file {
                return Err(error(
                    ErrorKind::AlreadyExists,
                    format!("{name:?} exists in {parent}"),
                ));
            }
            return applied(existing);
        }
        let node = match new {
            NewNode::Directory => Node::directory(parent, mode, owner.uid, owner.gid, time),
            NewNode::File => file_node(Composition::default(), mode, owner, time),
            NewNode::Symlink { target } => {
                if target.is_empty() || target.len() > SYMLINK_TARGET_BYTES_MAX {
                    return Err(error(
                        ErrorKind::InvalidArgument,
                        "symlink target empty or too long",
                    ));
                }
                let mut node = file_node(Composition::default(), 0o777, owner, time);
                node.attrs.kind = FileKind::Symlink;
                node.attrs.size = target.len() as u64;
                node.content = Content::Symlink(target.clone());
                node
            }
        };
        applied(self.insert_child(parent, name, node, time)?)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn put_file(
        &mut self,
        path: &[String],
        content: &Composition,
        user_metadata: &BTreeMap<String, Vec<u8>>,
        system_metadata: &BTreeMap<String, String>,
        mode: u32,
        owner: Owner,
        time: Timestamp,
    ) -> DeltaOutcome {
        let Some((file_name, directories)) = path.split_last() else {
            return Err(error(ErrorKind::InvalidArgument, "empty path"));
        };
        for name in path {
            validate_name(name)?;
        }
        check_user_metadata(user_metadata)?;
        // Check the whole path before changing anything, so a failed put changes nothing.
        let mut dir = Some(InodeId::ROOT);
        for (depth, name) in path.iter().enumerate() {
            let Some(current) = dir else { break };
            dir = match self.child(current, name)? {
                Some((_, inode)) => {
                    let kind = self.node(inode)?.attrs.kind;
                    let is_last = depth + 1 == path.len();
                    if !is_last && kind != FileKind::Directory {
                        return Err(error(
                            ErrorKind::NotADirectory,
                            format!("{:?} is a file, not a directory", path[..=depth].join("/")),
                        ));
                    }
                    if is_last && kind != FileKind::File {
                        return Err(error(
                            ErrorKind::IsADirectory,
                            format!("{:?} is a directory", path.join("/")),
                        ));
                    }
                    Some(inode)
                }
                None => None,
            };
        }
        let mut parent = InodeId::ROOT;
        for name in directories {
            parent = match self.child(parent, name)? {
                Some((_, inode)) => inode,
                None => self.insert_child(
                    parent,
                    name,
                    Node::directory(parent, 0o755, owner.uid, owner.gid, time),
                    time,
                )?,
            };
        }
        if let Some((_, inode)) = self.child(parent, file_name)? {
            let node = self.node_mut(inode)?;
            node.attrs.size = content.size;
            node.attrs.mtime = time;
            node.attrs.ctime = time;
            node.content = Content::File(Arc::new(content.clone()));
            node.user_metadata = user_metadata.clone();
            node.system_metadata = system_metadata.clone();
            return applied(inode);
        }
        let mut node = file_node(content.clone(), mode, owner, time);
        node.user_metadata = user_metadata.clone();
        node.system_metadata = system_metadata.clone();
        applied(self.insert_child(parent, file_name, node, time)?)
    }

    fn write(
        &mut self,
        inode: InodeId,
        extents: &[Extent],
        base: u64,
        time: Timestamp,
    ) -> DeltaOutcome {
        self.file(inode)?;
        let shifted: Vec<Extent> = extents
            .iter()
            .map(|extent| Extent {
                file_offset: extent.file_offset + base,
                ..*extent
            })
            .collect();
        self.update_file(inode, time, |composition| composition.overwrite(&shifted))
    }

    fn truncate(&mut self, inode: InodeId, size: u64, time: Timestamp) -> DeltaOutcome {
        self.file(inode)?;
        self.update_file(inode, time, |composition| composition.truncate(size))
    }

    fn update_file(
        &mut self,
        inode: InodeId,
        time: Timestamp,
        change: impl FnOnce(&mut Composition),
    ) -> DeltaOutcome {
        let node = self.node_mut(inode)?;
        if let Content::File(composition) = &mut node.content {
            let composition = Arc::make_mut(composition);
            change(composition);
            node.attrs.size = composition.size;
            // The stored ETag described the old bytes; a POSIX write makes it stale.
            node.system_metadata.remove(crate::object::ETAG_KEY);
        }
        node.attrs.mtime = time;
        node.attrs.ctime = time;
        applied(inode)
    }

    fn remove(
        &mut self,
        parent: InodeId,
        name: &str,
        directory: bool,
        time: Timestamp,
    ) -> DeltaOutcome {
        let (key, inode) = self.child(parent, name)?.ok_or_else(|| {
            error(
                ErrorKind::NotFound,
                format!("{name:?} not found in {parent}"),
            )
        })?;
        let node = self.node(inode)?;
        match (&node.content, directory) {
            (Content::Directory { children, .. }, true) if !children.is_empty() => {
                return Err(error(
                    ErrorKind::NotEmpty,
                    format!("directory {name:?} is not empty"),
                ))
            }
            (Content::Directory { .. }, false) => {
                return Err(error(
                    ErrorKind::IsADirectory,
                    format!("{name:?} is a directory"),
                ))
            }
            (Content::File(_) | Content::Symlink(_), true) => {
                return Err(error(
                    ErrorKind::NotADirectory,
                    format!("{name:?} is not a directory"),
                ))
            }
            _ => {}
        }
        self.children_mut(parent)?.remove(&key);
        self.drop_link(inode, time);
        if directory {
            if let Ok(parent_node) = self.node_mut(parent) {
                parent_node.attrs.nlink = parent_node.attrs.nlink.saturating_sub(1);
            }
        }
        self.touch_directory(parent, time);
        applied(inode)
    }

    /// Removes one name of `inode`; the node goes when its last name does.
    fn drop_link(&mut self, inode: InodeId, time: Timestamp) {
        let Some(node) = self.nodes.get_mut(&inode) else {
            return;
        };
        let is_directory = node.attrs.kind == FileKind::Directory;
        node.attrs.nlink = node.attrs.nlink.saturating_sub(1);
        node.attrs.ctime = time;
        if is_directory || node.attrs.nlink == 0 {
            self.nodes.remove(&inode);
        }
    }

    fn link(
        &mut self,
        inode: InodeId,
        new_parent: InodeId,
        new_name: &str,
        time: Timestamp,
    ) -> DeltaOutcome {
        validate_name(new_name)?;
        if self.node(inode)?.attrs.kind == FileKind::Directory {
            return Err(error(
                ErrorKind::PermissionDenied,
                "hard links to directories are not allowed",
            ));
        }
        if self.child(new_parent, new_name)?.is_some() {
            return Err(error(
                ErrorKind::AlreadyExists,
                format!("{new_name:?} exists in {new_parent}"),
            ));
        }
        self.children_mut(new_parent)?
            .insert(child_key(new_name, false), inode);
        let node = self.node_mut(inode)?;
        node.attrs.nlink += 1;
        node.attrs.ctime = time;
        self.touch_directory(new_parent, time);
        applied(inode)
    }

    /// Whether `ancestor` is `inode` or one of its ancestors.
    fn is_ancestor(&self, ancestor: InodeId, mut inode: InodeId) -> bool {
        loop {
            if inode == ancestor {
                return true;
            }
            match self.nodes.get(&inode).map(|node| &node.content) {
                Some(Content::Directory { parent, .. }) if *parent != inode => inode = *parent,
                _ => return false,
            }
        }
    }

    fn rename(
        &mut self,
        from_parent: InodeId,
        from_name: &str,
        to_parent: InodeId,
        to_name: &str,
        no_replace: bool,
        time: Timestamp,
    ) -> DeltaOutcome {
        validate_name(to_name)?;
        self.children(to_parent)?;
        let (from_key, inode) = self.child(from_parent, from_name)?.ok_or_else(|| {
            error(
                ErrorKind::NotFound,
                format!("{from_name:?} not found in {from_parent}"),
            )
        })?;
        let is_directory = self.node(inode)?.attrs.kind == FileKind::Directory;
        if is_directory && self.is_ancestor(inode, to_parent) {
            return Err(error(
                ErrorKind::InvalidArgument,
                "cannot move a directory into itself",
            ));
        }
        if let Some((target_key, target)) = self.child(to_parent, to_name)? {
            if target == inode {
                return applied(inode);
            }
            if no_replace {
                return Err(error(
                    ErrorKind::AlreadyExists,
                    format!("{to_name:?} exists in {to_parent}"),
                ));
            }
            let target_node = self.node(target)?;
            match (&target_node.content, is_directory) {
                (Content::Directory { children, .. }, true) if !children.is_empty() => {
                    return Err(error(
                        ErrorKind::NotEmpty,
                        format!("target directory {to_name:?} is not empty"),
                    ))
                }
                (Content::Directory { .. }, false) => {
                    return Err(error(
                        ErrorKind::IsADirectory,
                        format!("target {to_name:?} is a directory"),
                    ))
                }
                (Content::File(_) | Content::Symlink(_), true) => {
                    return Err(error(
                        ErrorKind::NotADirectory,
                        format!("target {to_name:?} is not a directory"),
                    ))
                }
                _ => {}
            }
            self.children_mut(to_parent)?.remove(&target_key);
            self.drop_link(target, time);
            if is_directory {
                self.adjust_nlink(to_parent, -1);
            }
        }
        self.children_mut(from_parent)?.remove(&from_key);
        self.children_mut(to_parent)?
            .insert(child_key(to_name, is_directory), inode);
        let node = self.node_mut(inode)?;
        node.attrs.ctime = time;
        if let Content::Directory { parent, .. } = &mut node.content {
            *parent = to_parent;
        }
        if is_directory && from_parent != to_parent {
            self.adjust_nlink(from_parent, -1);
            self.adjust_nlink(to_parent, 1);
        }
        self.touch_directory(from_parent, time);
        self.touch_directory(to_parent, time);
        applied(inode)
    }

    fn adjust_nlink(&mut self, inode: InodeId, change: i32) {
        if let Some(node) = self.nodes.get_mut(&inode) {
            node.attrs.nlink = node.attrs.nlink.saturating_add_signed(change);
        }
    }

    fn set_attr(&mut self, inode: InodeId, changes: &AttrChanges, time: Timestamp) -> DeltaOutcome {
        let node = self.node_mut(inode)?;
        let attrs = &mut node.attrs;
        if let Some(mode) = changes.mode {
            attrs.mode = mode & 0o7777;
        }
        if let Some(uid) = changes.uid {
            attrs.uid = uid;
        }
        if let Some(gid) = changes.gid {
            attrs.gid = gid;
        }
        if let Some(atime) = changes.atime {
            attrs.atime = atime;
        }
        if let Some(mtime) = changes.mtime {
            attrs.mtime = mtime;
        }
        attrs.ctime = time;
        applied(inode)
    }

    fn set_user_metadata(
        &mut self,
        inode: InodeId,
        key: &str,
        value: Option<&[u8]>,
        time: Timestamp,
    ) -> DeltaOutcome {
        let node = self.node_mut(inode)?;
        let mut metadata = node.user_metadata.clone();
        match value {
            Some(value) => {
                metadata.insert(key.to_owned(), value.to_vec());
            }
            None => {
                if metadata.remove(key).is_none() {
                    return Err(error(
                        ErrorKind::NotFound,
                        format!("no metadata entry {key:?} on {inode}"),
                    ));
                }
            }
        }
        check_user_metadata(&metadata)?;
        node.user_metadata = metadata;
        node.attrs.ctime = time;
        applied(inode)
    }
}

fn file_node(content: Composition, mode: u32, owner: Owner, time: Timestamp) -> Node {
    Node {
        attrs: Attributes {
            kind: FileKind::File,
            mode: mode & 0o7777,
            uid: owner.uid,
            gid: owner.gid,
            size: content.size,
            nlink: 1,
            atime: time,
            mtime: time,
            ctime: time,
            btime: time,
        },
        content: Content::File(Arc::new(content)),
        user_metadata: BTreeMap::new(),
        system_metadata: BTreeMap::new(),
    }
}

pub(super) fn check_user_metadata(
    metadata: &BTreeMap<String, Vec<u8>>,
) -> Result<(), NamespaceError> {
    let bytes: usize = metadata
        .iter()
        .map(|(key, value)| key.len() + value.len())
        .sum();
    if metadata.len() > USER_METADATA_ENTRIES_MAX || bytes > USER_METADATA_BYTES_MAX {
        return Err(error(
            ErrorKind::NoSpace,
            format!(
                "user metadata over its limit ({} entries, {bytes} bytes)",
                metadata.len()
            ),
        ));
    }
    if metadata.keys().any(|key| key.is_empty()) {
        return Err(error(ErrorKind::InvalidArgument, "empty user metadata key"));
    }
    Ok(())
}
