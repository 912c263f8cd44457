//! The NFSv3 program (RFC 1813): each procedure decodes its arguments, makes one namespace call
//! (through the write-back or read cache for WRITE and READ), and encodes the result.
//! Permission checks ask [`Caller`]; errors become status codes in `status.rs` only.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use kiseki_namespace::{AttrChanges, Caller, Owner, Permissions};
use kiseki_types::{Attributes, ErrorKind, FileKind, InodeId, TenantId, Timestamp};

use super::exports::{parse_handle, Export, Exports, HANDLE_BYTES_MAX};
use super::read_cache::ReadCache;
use super::rpc::Credential;
use super::status::Status;
use super::write_back::WriteBack;
use super::xdr::{Reader, Writer, XdrError};
use super::IO_BYTES_MAX;

mod changes;

const NAME_BYTES_MAX: usize = kiseki_types::limits::NAME_BYTES_MAX;
const PATH_BYTES_MAX: usize = kiseki_types::limits::SYMLINK_TARGET_BYTES_MAX;
/// Entries fetched from the namespace per step of a READDIR.
const READDIR_PAGE_ENTRIES: usize = 256;
/// READDIR positions remembered (cookie to child key); older ones are found by a directory scan.
const CURSORS_REMEMBERED_MAX: usize = 4096;

const ACCESS_READ: u32 = 0x01;
const ACCESS_LOOKUP: u32 = 0x02;
const ACCESS_MODIFY: u32 = 0x04;
const ACCESS_EXTEND: u32 = 0x08;
const ACCESS_DELETE: u32 = 0x10;
const ACCESS_EXECUTE: u32 = 0x20;

/// Names of the procedures, by number (for metrics and logs).
pub const PROCEDURES: [&str; 22] = [
    "NULL",
    "GETATTR",
    "SETATTR",
    "LOOKUP",
    "ACCESS",
    "READLINK",
    "READ",
    "WRITE",
    "CREATE",
    "MKDIR",
    "SYMLINK",
    "MKNOD",
    "REMOVE",
    "RMDIR",
    "RENAME",
    "LINK",
    "READDIR",
    "READDIRPLUS",
    "FSSTAT",
    "FSINFO",
    "PATHCONF",
    "COMMIT",
];

/// A file or directory a handle names, in its export.
struct Target {
    export: Arc<Export>,
    inode: InodeId,
}

/// Who is calling, from where.
pub struct Request<'a> {
    /// The client's address.
    pub peer: IpAddr,
    /// The RPC credential.
    pub credential: &'a Credential,
}

/// A SETATTR time change.
#[derive(Clone, Copy, PartialEq, Eq)]
enum TimeChange {
    Keep,
    ServerTime,
    ClientTime(Timestamp),
}

/// Decoded `sattr3`.
struct SetAttributes {
    mode: Option<u32>,
    uid: Option<u32>,
    gid: Option<u32>,
    size: Option<u64>,
    atime: TimeChange,
    mtime: TimeChange,
}

/// The NFSv3 program.
pub struct Nfs3 {
    exports: Arc<Exports>,
    write_back: Arc<WriteBack>,
    reads: ReadCache,
    cursors: Mutex<HashMap<(TenantId, InodeId, u64), String>>,
    verifier: [u8; 8],
    data_dir: PathBuf,
}

fn time(reader: &mut Reader<'_>) -> Result<Timestamp, XdrError> {
    let (seconds, nanoseconds) = (reader.u32()?, reader.u32()?);
    Ok(Timestamp(
        i64::from(seconds) * 1_000_000_000 + i64::from(nanoseconds.min(999_999_999)),
    ))
}

fn put_time(writer: &mut Writer, time: Timestamp) {
    let (seconds, nanoseconds) = time.to_parts();
    writer
        .u32(seconds.clamp(0, i64::from(u32::MAX)) as u32)
        .u32(nanoseconds);
}

fn time_change(reader: &mut Reader<'_>) -> Result<TimeChange, XdrError> {
    match reader.u32()? {
        0 => Ok(TimeChange::Keep),
        1 => Ok(TimeChange::ServerTime),
        2 => Ok(TimeChange::ClientTime(time(reader)?)),
        _ => Err(XdrError("bad time_how")),
    }
}

fn optional_u32(reader: &mut Reader<'_>) -> Result<Option<u32>, XdrError> {
    Ok(if reader.bool()? {
        Some(reader.u32()?)
    } else {
        None
    })
}

fn set_attributes(reader: &mut Reader<'_>) -> Result<SetAttributes, XdrError> {
    Ok(SetAttributes {
        mode: optional_u32(reader)?,
        uid: optional_u32(reader)?,
        gid: optional_u32(reader)?,
        size: if reader.bool()? {
            Some(reader.u64()?)
        } else {
            None
        },
        atime: time_change(reader)?,
        mtime: time_change(reader)?,
    })
}

fn put_fattr(writer: &mut Writer, export: &Export, inode: InodeId, attrs: &Attributes) {
    let kind = match attrs.kind {
        FileKind::File => 1,
        FileKind::Directory => 2,
        FileKind::Symlink => 5,
    };
    writer
        .u32(kind)
        .u32(attrs.mode & 0o7777)
        .u32(attrs.nlink)
        .u32(attrs.uid)
        .u32(attrs.gid);
    writer
        .u64(attrs.size)
        .u64(attrs.size.div_ceil(4096) * 4096)
        .u32(0)
        .u32(0);
    writer.u64(export.namespace.tenant().0).u64(inode.0);
    put_time(writer, attrs.atime);
    put_time(writer, attrs.mtime);
    put_time(writer, attrs.ctime);
}

fn not_found_is_stale(status: Status) -> Status {
    if status == Status::NOENT {
        Status::STALE
    } else {
        status
    }
}

fn status_word(result: &Result<(), Status>) -> Status {
    match result {
        Ok(()) => Status::OK,
        Err(status) => *status,
    }
}

impl Nfs3 {
    /// The program over `exports`, committing writes through `write_back`.
    pub fn new(exports: Arc<Exports>, write_back: Arc<WriteBack>, data_dir: PathBuf) -> Self {
        Nfs3 {
            exports,
            write_back,
            reads: ReadCache::default(),
            cursors: Mutex::new(HashMap::new()),
            verifier: rand::random::<u64>().to_be_bytes(),
            data_dir,
        }
    }

    /// Runs procedure `procedure`, appending its results to `out`; the status for metrics.
    pub async fn call(
        &self,
        rq: &Request<'_>,
        procedure: u32,
        args: &[u8],
        out: &mut Writer,
    ) -> Result<Status, XdrError> {
        let r = &mut Reader::new(args);
        match procedure {
            0 => Ok(Status::OK),
            1 => self.getattr(rq, r, out),
            2 => self.setattr(rq, r, out).await,
            3 => self.lookup(rq, r, out),
            4 => self.access(rq, r, out),
            5 => self.readlink(rq, r, out),
            6 => self.read(rq, r, out).await,
            7 => self.write(rq, r, out).await,
            8 => self.create(rq, r, out).await,
            9 | 10 => {
                self.make_directory_or_symlink(rq, r, out, procedure == 10)
                    .await
            }
            11 => self.mknod(rq, r, out),
            12 | 13 => self.remove(rq, r, out, procedure == 13).await,
            14 => self.rename(rq, r, out).await,
            15 => self.link(rq, r, out).await,
            16 | 17 => self.readdir(rq, r, out, procedure == 17),
            18 => self.fsstat(rq, r, out),
            19 => self.fsinfo(rq, r, out),
            20 => self.pathconf(rq, r, out),
            21 => self.commit(rq, r, out).await,
            _ => Err(XdrError("no such procedure")),
        }
    }

    // ---- Handles, attributes, checks ----

    fn target(&self, rq: &Request<'_>, handle: &[u8]) -> Result<Target, Status> {
        let (id, inode) = parse_handle(handle).map_err(|_| Status::BADHANDLE)?;
        let export = self.exports.by_id(id).ok_or(Status::STALE)?;
        if !export.allows(rq.peer) {
            tracing::debug!(peer = %rq.peer, export = %export.mount_path, "NFS call refused: client not in the export's list");
            return Err(Status::ACCES);
        }
        Ok(Target {
            export: Arc::clone(export),
            inode,
        })
    }

    fn handle_arg(
        &self,
        rq: &Request<'_>,
        reader: &mut Reader<'_>,
    ) -> Result<Result<Target, Status>, XdrError> {
        Ok(self.target(rq, reader.opaque(HANDLE_BYTES_MAX)?))
    }

    /// Attributes as NFS clients see them: the size includes writes held in the write-back.
    fn attrs(&self, target: &Target) -> Result<Attributes, Status> {
        let mut attrs = target
            .export
            .namespace
            .attributes(target.inode)
            .map_err(|error| not_found_is_stale(error.into()))?;
        if attrs.kind == FileKind::File {
            attrs.size = self.write_back.size_with_held(
                target.export.namespace.tenant(),
                target.inode,
                attrs.size,
            );
        }
        Ok(attrs)
    }

    fn post_attr(&self, writer: &mut Writer, target: &Target) {
        match self.attrs(target) {
            Ok(attrs) => {
                writer.bool(true);
                put_fattr(writer, &target.export, target.inode, &attrs);
            }
            Err(_) => {
                writer.bool(false);
            }
        }
    }

    fn post_attr_of(&self, writer: &mut Writer, target: Option<&Target>) {
        match target {
            Some(target) => self.post_attr(writer, target),
            None => {
                writer.bool(false);
            }
        }
    }

    /// `wcc_data` without pre-operation attributes (allowed by RFC 1813; clients then revalidate).
    fn wcc(&self, writer: &mut Writer, target: Option<&Target>) {
        writer.bool(false);
        self.post_attr_of(writer, target);
    }

    fn caller(rq: &Request<'_>, target: &Target) -> Caller {
        target.export.caller(rq.credential)
    }

    fn require(
        caller: &Caller,
        attrs: &Attributes,
        want: Permissions,
        what: &str,
    ) -> Result<(), Status> {
        caller.check(attrs, want, what).map_err(Status::from)
    }

    fn directory(&self, target: &Target) -> Result<Attributes, Status> {
        let attrs = self.attrs(target)?;
        if attrs.kind != FileKind::Directory {
            return Err(Status::NOTDIR);
        }
        Ok(attrs)
    }

    fn file(&self, target: &Target) -> Result<Attributes, Status> {
        let attrs = self.attrs(target)?;
        match attrs.kind {
            FileKind::File => Ok(attrs),
            FileKind::Directory => Err(Status::ISDIR),
            FileKind::Symlink => Err(Status::INVAL),
        }
    }

    fn writable(target: &Target) -> Result<(), Status> {
        if target.export.read_only {
            return Err(Status::ROFS);
        }
        Ok(())
    }

    /// A directory the caller may add names to or remove names from.
    fn changeable_directory(&self, rq: &Request<'_>, target: &Target) -> Result<Caller, Status> {
        Self::writable(target)?;
        let attrs = self.directory(target)?;
        let caller = Self::caller(rq, target);
        Self::require(&caller, &attrs, Permissions::CHANGE_NAMES, "directory")?;
        Ok(caller)
    }

    fn target_of(&self, target: &Target, inode: InodeId) -> Target {
        Target {
            export: Arc::clone(&target.export),
            inode,
        }
    }

    // ---- Procedures that read ----

    fn getattr(
        &self,
        rq: &Request<'_>,
        r: &mut Reader<'_>,
        w: &mut Writer,
    ) -> Result<Status, XdrError> {
        let result = self
            .handle_arg(rq, r)?
            .and_then(|target| self.attrs(&target).map(|attrs| (target, attrs)));
        Ok(match result {
            Ok((target, attrs)) => {
                w.u32(0);
                put_fattr(w, &target.export, target.inode, &attrs);
                Status::OK
            }
            Err(status) => {
                w.u32(status.0);
                status
            }
        })
    }

    fn lookup(
        &self,
        rq: &Request<'_>,
        r: &mut Reader<'_>,
        w: &mut Writer,
    ) -> Result<Status, XdrError> {
        let dir = self.handle_arg(rq, r)?;
        let name = r.string(NAME_BYTES_MAX)?;
        let dir = match dir {
            Ok(found) => found,
            Err(status) => return Ok(self.fail_with_attr(w, status, None)),
        };
        let found = self.directory(&dir).and_then(|attrs| {
            Self::require(
                &Self::caller(rq, &dir),
                &attrs,
                Permissions::EXECUTE,
                "directory",
            )?;
            if name == ".." && dir.inode == dir.export.root {
                return Ok(dir.inode);
            }
            dir.export
                .namespace
                .lookup(dir.inode, name)
                .map(|(inode, _)| inode)
                .map_err(Status::from)
        });
        Ok(match found {
            Ok(inode) => {
                let target = self.target_of(&dir, inode);
                w.u32(0).opaque(&dir.export.handle(inode));
                self.post_attr(w, &target);
                self.post_attr(w, &dir);
                Status::OK
            }
            Err(status) => self.fail_with_attr(w, status, Some(&dir)),
        })
    }

    /// A failure whose body is one `post_op_attr`.
    fn fail_with_attr(&self, w: &mut Writer, status: Status, target: Option<&Target>) -> Status {
        w.u32(status.0);
        self.post_attr_of(w, target);
        status
    }

    fn access(
        &self,
        rq: &Request<'_>,
        r: &mut Reader<'_>,
        w: &mut Writer,
    ) -> Result<Status, XdrError> {
        let target = self.handle_arg(rq, r)?;
        let wanted = r.u32()?;
        let target = match target {
            Ok(found) => found,
            Err(status) => return Ok(self.fail_with_attr(w, status, None)),
        };
        let attrs = match self.attrs(&target) {
            Ok(attrs) => attrs,
            Err(status) => return Ok(self.fail_with_attr(w, status, None)),
        };
        let have = Self::caller(rq, &target).permissions(&attrs);
        let is_directory = attrs.kind == FileKind::Directory;
        let may_write = have.write && !target.export.read_only;
        let mut granted = 0;
        for (bit, allowed) in [
            (ACCESS_READ, have.read),
            (ACCESS_LOOKUP, is_directory && have.execute),
            (ACCESS_MODIFY, may_write),
            (ACCESS_EXTEND, may_write),
            (ACCESS_DELETE, is_directory && may_write),
            (ACCESS_EXECUTE, !is_directory && have.execute),
        ] {
            if allowed {
                granted |= bit;
            }
        }
        w.u32(0);
        self.post_attr(w, &target);
        w.u32(granted & wanted);
        Ok(Status::OK)
    }

    fn readlink(
        &self,
        rq: &Request<'_>,
        r: &mut Reader<'_>,
        w: &mut Writer,
    ) -> Result<Status, XdrError> {
        let target = self.handle_arg(rq, r)?;
        let target = match target {
            Ok(found) => found,
            Err(status) => return Ok(self.fail_with_attr(w, status, None)),
        };
        let link = self.attrs(&target).and_then(|attrs| {
            if attrs.kind != FileKind::Symlink {
                return Err(Status::INVAL);
            }
            target
                .export
                .namespace
                .read_link(target.inode)
                .map_err(Status::from)
        });
        Ok(match link {
            Ok(link) => {
                w.u32(0);
                self.post_attr(w, &target);
                w.string(&link);
                Status::OK
            }
            Err(status) => self.fail_with_attr(w, status, Some(&target)),
        })
    }

    async fn read(
        &self,
        rq: &Request<'_>,
        r: &mut Reader<'_>,
        w: &mut Writer,
    ) -> Result<Status, XdrError> {
        let target = self.handle_arg(rq, r)?;
        let (offset, count) = (r.u64()?, r.u32()?.min(IO_BYTES_MAX));
        let target = match target {
            Ok(found) => found,
            Err(status) => return Ok(self.fail_with_attr(w, status, None)),
        };
        let result = self.read_pieces(rq, &target, offset, count).await;
        Ok(match result {
            Ok((attrs, pieces)) => {
                let len: u64 = pieces.iter().map(|piece| piece.len() as u64).sum();
                w.u32(0).bool(true);
                put_fattr(w, &target.export, target.inode, &attrs);
                w.u32(len as u32)
                    .bool(offset + len >= attrs.size)
                    .opaque_pieces(&pieces);
                Status::OK
            }
            Err(status) => self.fail_with_attr(w, status, Some(&target)),
        })
    }

    async fn read_pieces(
        &self,
        rq: &Request<'_>,
        target: &Target,
        offset: u64,
        count: u32,
    ) -> Result<(Attributes, Vec<bytes::Bytes>), Status> {
        let attrs = self.file(target)?;
        let caller = Self::caller(rq, target);
        if !caller.owns(&attrs) {
            Self::require(&caller, &attrs, Permissions::READ, "file")?;
        }
        let namespace = &target.export.namespace;
        // Read-your-writes: bytes held for this file are committed before reading it.
        self.write_back
            .commit(namespace.tenant(), target.inode)
            .await?;
        let attrs = self.file(target)?;
        let pieces = self
            .reads
            .read(namespace, target.inode, &attrs, offset, u64::from(count))
            .await?;
        Ok((attrs, pieces))
    }

    fn readdir(
        &self,
        rq: &Request<'_>,
        r: &mut Reader<'_>,
        w: &mut Writer,
        plus: bool,
    ) -> Result<Status, XdrError> {
        let dir = self.handle_arg(rq, r)?;
        let cookie = r.u64()?;
        let _verifier = r.fixed::<8>()?;
        let max_bytes = if plus {
            let _dircount = r.u32()?;
            r.u32()?
        } else {
            r.u32()?
        };
        let dir = match dir {
            Ok(found) => found,
            Err(status) => return Ok(self.fail_with_attr(w, status, None)),
        };
        let listed = self
            .directory(&dir)
            .and_then(|attrs| {
                Self::require(
                    &Self::caller(rq, &dir),
                    &attrs,
                    Permissions::READ,
                    "directory",
                )
            })
            .and_then(|()| self.resume_after(&dir, cookie))
            .and_then(|after| self.directory_entries(&dir, after, max_bytes as usize, plus));
        Ok(match listed {
            Ok((entries, eof)) => {
                w.u32(0);
                self.post_attr(w, &dir);
                w.fixed(&[0u8; 8])
                    .fixed(&entries.into_bytes())
                    .bool(false)
                    .bool(eof);
                Status::OK
            }
            Err(status) => self.fail_with_attr(w, status, Some(&dir)),
        })
    }

    /// The cursor to continue a listing of `dir` after `cookie` (0 starts it).
    fn resume_after(&self, dir: &Target, cookie: u64) -> Result<Option<String>, Status> {
        if cookie == 0 {
            return Ok(None);
        }
        let key = (dir.export.namespace.tenant(), dir.inode, cookie);
        if let Some(cursor) = self
            .cursors
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&key)
        {
            return Ok(Some(cursor.clone()));
        }
        match dir.export.namespace.cursor_of(dir.inode, InodeId(cookie)) {
            Ok(Some(cursor)) => Ok(Some(cursor)),
            Ok(None) => Err(Status::BAD_COOKIE),
            Err(error) => Err(error.into()),
        }
    }

    /// Encoded `entry3`/`entryplus3` items that fit in `max_bytes` of reply, and whether the
    /// listing reached the end. The cookie of an entry is its inode number.
    fn directory_entries(
        &self,
        dir: &Target,
        mut after: Option<String>,
        max_bytes: usize,
        plus: bool,
    ) -> Result<(Writer, bool), Status> {
        // Status, directory attributes, verifier, end-of-list and eof words.
        let mut budget = max_bytes.saturating_sub(4 + 88 + 8 + 8);
        let mut entries = Writer::with_capacity(max_bytes.min(64 * 1024));
        let namespace = &dir.export.namespace;
        let mut last: Option<(u64, String)> = None;
        let eof = 'pages: loop {
            let page =
                namespace.read_directory(dir.inode, after.as_deref(), READDIR_PAGE_ENTRIES)?;
            for entry in &page {
                let name_bytes = entry.name.len().div_ceil(4) * 4;
                let size = 4 + 8 + 4 + name_bytes + 8 + if plus { 88 + 4 + 4 + 20 } else { 0 };
                if size > budget {
                    if last.is_none() {
                        return Err(Status::TOOSMALL);
                    }
                    break 'pages false;
                }
                budget -= size;
                entries
                    .bool(true)
                    .u64(entry.inode.0)
                    .string(&entry.name)
                    .u64(entry.inode.0);
                if plus {
                    let child = self.target_of(dir, entry.inode);
                    self.post_attr(&mut entries, &child);
                    entries.bool(true).opaque(&dir.export.handle(entry.inode));
                }
                last = Some((entry.inode.0, entry.cursor.clone()));
            }
            match page.last() {
                Some(entry) if page.len() == READDIR_PAGE_ENTRIES => {
                    after = Some(entry.cursor.clone())
                }
                _ => break true,
            }
        };
        if let Some((cookie, cursor)) = last {
            let mut cursors = self
                .cursors
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if cursors.len() >= CURSORS_REMEMBERED_MAX {
                cursors.clear();
            }
            cursors.insert((namespace.tenant(), dir.inode, cookie), cursor);
        }
        Ok((entries, eof))
    }

    fn fsstat(
        &self,
        rq: &Request<'_>,
        r: &mut Reader<'_>,
        w: &mut Writer,
    ) -> Result<Status, XdrError> {
        let target = self.handle_arg(rq, r)?;
        let target = match target {
            Ok(found) => found,
            Err(status) => return Ok(self.fail_with_attr(w, status, None)),
        };
        if let Err(status) = self.attrs(&target) {
            return Ok(self.fail_with_attr(w, status, None));
        }
        // Bytes are those of the device holding the data directory; files are inode numbers.
        let (total, free, available) = match rustix::fs::statvfs(&self.data_dir) {
            Ok(stat) => (
                stat.f_blocks * stat.f_frsize,
                stat.f_bfree * stat.f_frsize,
                stat.f_bavail * stat.f_frsize,
            ),
            Err(_) => (0, 0, 0),
        };
        let files_total = InodeId::LOCAL_MAX;
        let files_free = files_total.saturating_sub(target.export.namespace.node_count() as u64);
        w.u32(0);
        self.post_attr(w, &target);
        w.u64(total)
            .u64(free)
            .u64(available)
            .u64(files_total)
            .u64(files_free)
            .u64(files_free)
            .u32(0);
        Ok(Status::OK)
    }

    fn fsinfo(
        &self,
        rq: &Request<'_>,
        r: &mut Reader<'_>,
        w: &mut Writer,
    ) -> Result<Status, XdrError> {
        let target = self.handle_arg(rq, r)?;
        let target = match target {
            Ok(found) => found,
            Err(status) => return Ok(self.fail_with_attr(w, status, None)),
        };
        if let Err(status) = self.attrs(&target) {
            return Ok(self.fail_with_attr(w, status, None));
        }
        let max_file_size = kiseki_types::limits::COMPOSITION_EXTENTS_MAX as u64
            * u64::from(kiseki_types::limits::CHUNK_SIZE_BYTES_DEFAULT);
        w.u32(0);
        self.post_attr(w, &target);
        // rtmax, rtpref, rtmult, wtmax, wtpref, wtmult, dtpref.
        w.u32(IO_BYTES_MAX)
            .u32(IO_BYTES_MAX)
            .u32(4096)
            .u32(IO_BYTES_MAX)
            .u32(IO_BYTES_MAX)
            .u32(4096)
            .u32(64 * 1024);
        // maxfilesize, time_delta (1 ns), properties: LINK | SYMLINK | HOMOGENEOUS | CANSETTIME.
        w.u64(max_file_size).u32(0).u32(1).u32(0x1b);
        Ok(Status::OK)
    }

    fn pathconf(
        &self,
        rq: &Request<'_>,
        r: &mut Reader<'_>,
        w: &mut Writer,
    ) -> Result<Status, XdrError> {
        let target = self.handle_arg(rq, r)?;
        let target = match target {
            Ok(found) => found,
            Err(status) => return Ok(self.fail_with_attr(w, status, None)),
        };
        if let Err(status) = self.attrs(&target) {
            return Ok(self.fail_with_attr(w, status, None));
        }
        w.u32(0);
        self.post_attr(w, &target);
        // linkmax, name_max, no_trunc, chown_restricted, case_insensitive, case_preserving.
        w.u32(u32::MAX)
            .u32(NAME_BYTES_MAX as u32)
            .bool(true)
            .bool(true)
            .bool(false)
            .bool(true);
        Ok(Status::OK)
    }
}
