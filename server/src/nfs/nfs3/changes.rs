//! The NFSv3 procedures that change the namespace: SETATTR, WRITE, COMMIT, CREATE, MKDIR,
//! SYMLINK, MKNOD, REMOVE, RMDIR, RENAME, LINK.

use super::*;

/// How a CREATE treats an existing name.
enum CreateHow {
    Unchecked(SetAttributes),
    Guarded(SetAttributes),
    Exclusive([u8; 8]),
}

impl Nfs3 {
    fn dir_and_name<'a>(
        &self,
        rq: &Request<'_>,
        r: &mut Reader<'a>,
    ) -> Result<(Result<Target, Status>, &'a str), XdrError> {
        let dir = self.handle_arg(rq, r)?;
        Ok((dir, r.string(NAME_BYTES_MAX)?))
    }

    /// A failure whose body is one `wcc_data`.
    fn fail_with_wcc(&self, w: &mut Writer, status: Status, target: Option<&Target>) -> Status {
        w.u32(status.0);
        self.wcc(w, target);
        status
    }

    /// The reply of CREATE, MKDIR and SYMLINK.
    fn created(&self, w: &mut Writer, dir: &Target, result: Result<InodeId, Status>) -> Status {
        match result {
            Ok(inode) => {
                w.u32(0).bool(true).opaque(&dir.export.handle(inode));
                self.post_attr(w, &self.target_of(dir, inode));
                self.wcc(w, Some(dir));
                Status::OK
            }
            Err(status) => self.fail_with_wcc(w, status, Some(dir)),
        }
    }

    pub(super) async fn setattr(
        &self,
        rq: &Request<'_>,
        r: &mut Reader<'_>,
        w: &mut Writer,
    ) -> Result<Status, XdrError> {
        let target = self.handle_arg(rq, r)?;
        let changes = set_attributes(r)?;
        let guard = if r.bool()? { Some(time(r)?) } else { None };
        let target = match target {
            Ok(found) => found,
            Err(status) => return Ok(self.fail_with_wcc(w, status, None)),
        };
        let result = self.set_attributes_of(rq, &target, changes, guard).await;
        w.u32(status_word(&result).0);
        self.wcc(w, Some(&target));
        Ok(status_word(&result))
    }

    async fn set_attributes_of(
        &self,
        rq: &Request<'_>,
        target: &Target,
        set: SetAttributes,
        guard: Option<Timestamp>,
    ) -> Result<(), Status> {
        Self::writable(target)?;
        let attrs = self.attrs(target)?;
        if guard.is_some_and(|ctime| ctime.to_parts() != attrs.ctime.to_parts()) {
            return Err(Status::NOT_SYNC);
        }
        let caller = Self::caller(rq, target);
        let changes_owner = set.uid.is_some_and(|uid| uid != attrs.uid)
            || set.gid.is_some_and(|gid| gid != attrs.gid);
        if (set.mode.is_some() || changes_owner) && !caller.owns(&attrs) {
            return Err(Status::PERM);
        }
        // Only the superuser gives files away, or puts them in a group it is not in.
        let gives_away = set.uid.is_some_and(|uid| uid != attrs.uid)
            || set
                .gid
                .is_some_and(|gid| gid != caller.gid && !caller.groups.contains(&gid));
        if gives_away && !caller.is_root() {
            return Err(Status::PERM);
        }
        let explicit_time = matches!(set.atime, TimeChange::ClientTime(_))
            || matches!(set.mtime, TimeChange::ClientTime(_));
        if explicit_time && !caller.owns(&attrs) {
            return Err(Status::PERM);
        }
        let now = Timestamp::now();
        let pick = |change: TimeChange| match change {
            TimeChange::Keep => None,
            TimeChange::ServerTime => Some(now),
            TimeChange::ClientTime(time) => Some(time),
        };
        let namespace = &target.export.namespace;
        if let Some(size) = set.size {
            let attrs = self.file(target)?;
            if !caller.owns(&attrs) {
                Self::require(&caller, &attrs, Permissions::WRITE, "file")?;
            }
            self.write_back
                .commit(namespace.tenant(), target.inode)
                .await?;
            namespace.truncate(target.inode, size).await?;
        }
        let changes = AttrChanges {
            mode: set.mode,
            uid: set.uid,
            gid: set.gid,
            atime: pick(set.atime),
            mtime: pick(set.mtime),
        };
        if changes != AttrChanges::default() {
            if !caller.owns(&attrs) {
                Self::require(&caller, &attrs, Permissions::WRITE, "file")?;
            }
            namespace.set_attributes(target.inode, changes).await?;
        }
        Ok(())
    }

    pub(super) async fn write(
        &self,
        rq: &Request<'_>,
        r: &mut Reader<'_>,
        w: &mut Writer,
    ) -> Result<Status, XdrError> {
        let target = self.handle_arg(rq, r)?;
        let (offset, count, stable) = (r.u64()?, r.u32()?, r.u32()?);
        let data = r.opaque(IO_BYTES_MAX as usize)?;
        let data = &data[..data.len().min(count as usize)];
        let target = match target {
            Ok(found) => found,
            Err(status) => return Ok(self.fail_with_wcc(w, status, None)),
        };
        tracing::trace!(inode = %target.inode, offset, len = data.len(), stable, "NFS WRITE");
        let result = self
            .write_data(rq, &target, offset, data, stable != 0)
            .await;
        Ok(match result {
            Ok(()) => {
                w.u32(0);
                self.wcc(w, Some(&target));
                // UNSTABLE stays UNSTABLE; DATA_SYNC and FILE_SYNC are answered as FILE_SYNC.
                w.u32(data.len() as u32)
                    .u32(if stable == 0 { 0 } else { 2 })
                    .fixed(&self.verifier);
                Status::OK
            }
            Err(status) => self.fail_with_wcc(w, status, Some(&target)),
        })
    }

    async fn write_data(
        &self,
        rq: &Request<'_>,
        target: &Target,
        offset: u64,
        data: &[u8],
        stable: bool,
    ) -> Result<(), Status> {
        Self::writable(target)?;
        let attrs = self.file(target)?;
        let caller = Self::caller(rq, target);
        if !caller.owns(&attrs) {
            Self::require(&caller, &attrs, Permissions::WRITE, "file")?;
        }
        offset.checked_add(data.len() as u64).ok_or(Status::FBIG)?;
        self.write_back
            .write(&target.export.namespace, target.inode, offset, data, stable)
            .await?;
        Ok(())
    }

    pub(super) async fn commit(
        &self,
        rq: &Request<'_>,
        r: &mut Reader<'_>,
        w: &mut Writer,
    ) -> Result<Status, XdrError> {
        let target = self.handle_arg(rq, r)?;
        let (_offset, _count) = (r.u64()?, r.u32()?);
        let target = match target {
            Ok(found) => found,
            Err(status) => return Ok(self.fail_with_wcc(w, status, None)),
        };
        // A commit of any range commits the whole file: the held bytes are one stream.
        let result = self
            .write_back
            .commit(target.export.namespace.tenant(), target.inode)
            .await
            .map_err(Status::from);
        Ok(match result {
            Ok(()) => {
                w.u32(0);
                self.wcc(w, Some(&target));
                w.fixed(&self.verifier);
                Status::OK
            }
            Err(status) => self.fail_with_wcc(w, status, Some(&target)),
        })
    }

    pub(super) async fn create(
        &self,
        rq: &Request<'_>,
        r: &mut Reader<'_>,
        w: &mut Writer,
    ) -> Result<Status, XdrError> {
        let (dir, name) = self.dir_and_name(rq, r)?;
        let mode = r.u32()?;
        tracing::trace!(name, mode, "NFS CREATE");
        let how = match mode {
            0 => CreateHow::Unchecked(set_attributes(r)?),
            1 => CreateHow::Guarded(set_attributes(r)?),
            2 => CreateHow::Exclusive(r.fixed::<8>()?),
            _ => return Err(XdrError("bad createmode3")),
        };
        let dir = match dir {
            Ok(found) => found,
            Err(status) => return Ok(self.fail_with_wcc(w, status, None)),
        };
        let result = self.create_file(rq, &dir, name, how).await;
        Ok(self.created(w, &dir, result))
    }

    async fn create_file(
        &self,
        rq: &Request<'_>,
        dir: &Target,
        name: &str,
        how: CreateHow,
    ) -> Result<InodeId, Status> {
        let caller = self.changeable_directory(rq, dir)?;
        let owner = Owner {
            uid: caller.uid,
            gid: caller.gid,
        };
        let namespace = &dir.export.namespace;
        match how {
            CreateHow::Unchecked(set) => {
                let inode = namespace
                    .create(owner, dir.inode, name, set.mode.unwrap_or(0o644), false)
                    .await?;
                // An unchecked create of an existing file with a size truncates it (O_TRUNC).
                if let Some(size) = set.size {
                    if self.file(&self.target_of(dir, inode))?.size != size {
                        self.write_back.commit(namespace.tenant(), inode).await?;
                        namespace.truncate(inode, size).await?;
                    }
                }
                Ok(inode)
            }
            CreateHow::Guarded(set) => Ok(namespace
                .create(owner, dir.inode, name, set.mode.unwrap_or(0o644), true)
                .await?),
            CreateHow::Exclusive(verifier) => {
                // The verifier is kept as the new file's times, so a retransmitted CREATE finds
                // its own file (RFC 1813 3.3.8); the client then sets the real attributes.
                let stamp = Timestamp(i64::from_be_bytes(verifier) & i64::MAX);
                match namespace.create(owner, dir.inode, name, 0o644, true).await {
                    Ok(inode) => {
                        let changes = AttrChanges {
                            atime: Some(stamp),
                            mtime: Some(stamp),
                            ..AttrChanges::default()
                        };
                        namespace.set_attributes(inode, changes).await?;
                        Ok(inode)
                    }
                    Err(error) if error.kind == ErrorKind::AlreadyExists => {
                        let (inode, attrs) = namespace.lookup(dir.inode, name)?;
                        if attrs.kind == FileKind::File && attrs.mtime == stamp {
                            Ok(inode)
                        } else {
                            Err(Status::EXIST)
                        }
                    }
                    Err(error) => Err(error.into()),
                }
            }
        }
    }
}

impl Nfs3 {
    pub(super) async fn make_directory_or_symlink(
        &self,
        rq: &Request<'_>,
        r: &mut Reader<'_>,
        w: &mut Writer,
        symlink: bool,
    ) -> Result<Status, XdrError> {
        let (dir, name) = self.dir_and_name(rq, r)?;
        let set = set_attributes(r)?;
        let target = if symlink {
            Some(r.string(PATH_BYTES_MAX)?)
        } else {
            None
        };
        let dir = match dir {
            Ok(found) => found,
            Err(status) => return Ok(self.fail_with_wcc(w, status, None)),
        };
        let result = async {
            let caller = self.changeable_directory(rq, &dir)?;
            let owner = Owner {
                uid: caller.uid,
                gid: caller.gid,
            };
            let namespace = &dir.export.namespace;
            Ok(match target {
                Some(target) => namespace.symlink(owner, dir.inode, name, target).await?,
                None => {
                    namespace
                        .mkdir(owner, dir.inode, name, set.mode.unwrap_or(0o755))
                        .await?
                }
            })
        }
        .await;
        Ok(self.created(w, &dir, result))
    }

    pub(super) fn mknod(
        &self,
        rq: &Request<'_>,
        r: &mut Reader<'_>,
        w: &mut Writer,
    ) -> Result<Status, XdrError> {
        // Devices, sockets and FIFOs are not part of the data model.
        let (dir, _name) = self.dir_and_name(rq, r)?;
        Ok(self.fail_with_wcc(w, Status::NOTSUPP, dir.ok().as_ref()))
    }

    pub(super) async fn remove(
        &self,
        rq: &Request<'_>,
        r: &mut Reader<'_>,
        w: &mut Writer,
        directory: bool,
    ) -> Result<Status, XdrError> {
        let (dir, name) = self.dir_and_name(rq, r)?;
        let dir = match dir {
            Ok(found) => found,
            Err(status) => return Ok(self.fail_with_wcc(w, status, None)),
        };
        let result = async {
            self.changeable_directory(rq, &dir)?;
            let namespace = &dir.export.namespace;
            if directory {
                namespace.rmdir(dir.inode, name).await?;
            } else {
                namespace.unlink(dir.inode, name).await?;
            }
            Ok(())
        }
        .await;
        w.u32(status_word(&result).0);
        self.wcc(w, Some(&dir));
        Ok(status_word(&result))
    }

    pub(super) async fn rename(
        &self,
        rq: &Request<'_>,
        r: &mut Reader<'_>,
        w: &mut Writer,
    ) -> Result<Status, XdrError> {
        let (from, from_name) = self.dir_and_name(rq, r)?;
        let (to, to_name) = self.dir_and_name(rq, r)?;
        let result = async {
            let (from, to) = (
                from.as_ref().map_err(|status| *status)?,
                to.as_ref().map_err(|status| *status)?,
            );
            if from.export.namespace.tenant() != to.export.namespace.tenant() {
                return Err(Status::XDEV);
            }
            self.changeable_directory(rq, from)?;
            self.changeable_directory(rq, to)?;
            from.export
                .namespace
                .rename(from.inode, from_name, to.inode, to_name, false)
                .await?;
            Ok(())
        }
        .await;
        w.u32(status_word(&result).0);
        self.wcc(w, from.as_ref().ok());
        self.wcc(w, to.as_ref().ok());
        Ok(status_word(&result))
    }

    pub(super) async fn link(
        &self,
        rq: &Request<'_>,
        r: &mut Reader<'_>,
        w: &mut Writer,
    ) -> Result<Status, XdrError> {
        let file = self.handle_arg(rq, r)?;
        let (dir, name) = self.dir_and_name(rq, r)?;
        let result = async {
            let (file, dir) = (
                file.as_ref().map_err(|status| *status)?,
                dir.as_ref().map_err(|status| *status)?,
            );
            if file.export.namespace.tenant() != dir.export.namespace.tenant() {
                return Err(Status::XDEV);
            }
            self.changeable_directory(rq, dir)?;
            dir.export
                .namespace
                .link(file.inode, dir.inode, name)
                .await?;
            Ok(())
        }
        .await;
        w.u32(status_word(&result).0);
        self.post_attr_of(w, file.as_ref().ok());
        self.wcc(w, dir.as_ref().ok());
        Ok(status_word(&result))
    }
}
