//! `kiseki-client-fuse`: mounts a tenant's Kiseki namespace (default `/kiseki`) with FUSE.
//!
//! A thin adapter: each handler calls the client library (`kiseki_client::Client`), replies,
//! and maps a failure to an errno in one place ([`errno`]). Stops on SIGTERM/SIGINT by
//! unmounting cleanly (pending writes of open files are flushed by the kernel's release calls).
//!
//! The process is also the node's cache agent: one `NodeCache` (L1 memory, L2 on local NVMe)
//! shared by every job on the node, and the control socket of the `kiseki` CLI
//! (`kiseki_client::agent`). Settings come from the command line, else from `--config`
//! (a compute-node YAML, see `site-configs/compute-node.yaml`), else defaults.

use std::ffi::OsStr;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::Parser;
use fuser::{
    Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    InitFlags, IoctlFlags, KernelConfig, LockOwner, MountOption, Notifier, OpenFlags, RenameFlags,
    ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry,
    ReplyIoctl, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, Session, SessionACL,
    TimeOrNow, WriteFlags,
};
use kiseki_client::agent::config::{parse_size, NodeConfig};
use kiseki_client::agent::protocol::{SOCKET_DEFAULT, SOCKET_ENV};
use kiseki_client::agent::server::{AgentSocket, SocketError};
use kiseki_client::agent::{Agent, AgentSettings};
use kiseki_client::{
    AttrUpdate, Caller, ChannelSecurity, ChunkCache, Client, ClientCertificate, ClientOptions,
    CountingTransport, GrpcOptions, GrpcTransport, Node, NodeCache, NodeCacheConfig, Special,
};
use kiseki_types::{ErrorKind, FileKind, InodeId, NamespaceError, Timestamp};

/// Mount a Kiseki tenant namespace with FUSE.
#[derive(Debug, Parser)]
#[command(
    version,
    // The last of a repeated option wins (a wrapper's defaults, then the caller's).
    args_override_self = true,
    after_help = "Examples:\n  \
        kiseki-client-fuse --ca /var/lib/kiseki/cluster-ca/ca.pem --cert client.pem --key client.key /kiseki\n  \
        kiseki-client-fuse --ca /var/lib/kiseki/cluster-ca/ca.pem --access-key KSK... --secret-key ... /kiseki\n  \
        KISEKI_CA=ca.pem KISEKI_ACCESS_KEY=... KISEKI_SECRET_KEY=... kiseki-client-fuse --allow-other --default-permissions /mnt/k\n  \
        kiseki-client-fuse --config /etc/kiseki/compute-node.yaml\n\n\
        Command-line options override the --config file. Logging: KISEKI_LOG (tracing filter, default \"info\"). Stop with SIGTERM or Ctrl-C: unmounts cleanly."
)]
struct Args {
    /// Where to mount (an existing, empty directory) [default: mount_point of --config, else
    /// /kiseki].
    #[arg(value_name = "MOUNT_POINT")]
    mount_point: Option<PathBuf>,

    /// Compute-node YAML config (server, cache, modes, datasets); unknown keys are refused.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Address of the kiseki-server native service (https://, or http:// with
    /// --insecure-plaintext) [default: https://127.0.0.1:9200].
    #[arg(long, env = "KISEKI_SERVER", value_name = "URL")]
    server: Option<String>,

    /// PEM file of the CA that signed the server's certificate (the server prints the path of
    /// its development CA as "native CA"). Required unless --insecure-plaintext.
    #[arg(long, env = "KISEKI_CA", value_name = "FILE")]
    ca: Option<PathBuf>,

    /// Name the server's certificate must carry (default: the host of --server).
    #[arg(long, env = "KISEKI_SERVER_NAME", value_name = "NAME")]
    server_name: Option<String>,

    /// Talk to the server over plain TCP: the access key and metadata cross the network
    /// readable. For tests and trusted links only.
    #[arg(long, conflicts_with_all = ["ca", "server_name", "cert", "key"])]
    insecure_plaintext: bool,

    /// PEM client certificate of the workload (mutual TLS), issued from the cluster CA with
    /// `kiseki-server cluster-ca issue-client-cert`: the server takes the tenant from it, no
    /// access key needed.
    #[arg(long, env = "KISEKI_CERT", value_name = "FILE", requires = "key")]
    cert: Option<PathBuf>,

    /// PEM private key of --cert.
    #[arg(long, env = "KISEKI_KEY", value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,

    /// Access key id of the tenant workload (not needed with --cert; if given too, it must be
    /// of the certificate's tenant).
    #[arg(
        long,
        env = "KISEKI_ACCESS_KEY",
        value_name = "ID",
        requires = "secret_key"
    )]
    access_key: Option<String>,

    /// Secret key of the tenant workload.
    #[arg(
        long,
        env = "KISEKI_SECRET_KEY",
        value_name = "SECRET",
        hide_env_values = true,
        requires = "access_key"
    )]
    secret_key: Option<String>,

    /// Let users other than the mounting one access the mount.
    #[arg(long)]
    allow_other: bool,

    /// Let the kernel check permissions against the mode bits.
    #[arg(long)]
    default_permissions: bool,

    /// Longest wait for one server call; a stopped server fails operations with EIO in this time.
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    request_timeout: u64,

    /// Fetch chunk frames inside TLS even when the server runs a bulk channel (which carries
    /// only sealed frames, on connections proven with a session key granted over TLS).
    #[arg(long)]
    no_bulk: bool,

    /// The cache agent's control socket, for the `kiseki` CLI [default: /run/kiseki/agent.sock].
    #[arg(long, env = SOCKET_ENV, value_name = "PATH")]
    agent_socket: Option<PathBuf>,

    /// L2 cache directory on local NVMe; its contents are discarded at start
    /// [default: /var/cache/kiseki].
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,

    /// L2 (disk) cache size: bytes or 64GiB, 512MiB, ... [default: 16GiB].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    cache_disk_bytes: Option<u64>,

    /// L1 (memory) cache size [default: 256MiB].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    cache_memory_bytes: Option<u64>,

    /// FUSE request threads.
    #[arg(long, default_value_t = 8)]
    threads: usize,
}

/// How long the kernel may trust names and attributes we give it.
const TTL: Duration = Duration::from_secs(1);
/// Largest write the kernel sends in one request.
const WRITE_BYTES_MAX: u32 = 1024 * 1024;

/// Kernel read-ahead of the mount. The kernel starts a FUSE mount's read-ahead at 128 KiB (its
/// default, which also caps what INIT may ask for); a larger window, set through sysfs once
/// the mount is up, lets sequential reads arrive as 1 MiB requests with several in flight.
const READAHEAD_KIB: u32 = 4096;

/// Sets the mount's read-ahead window (best effort: needs write access to sysfs).
fn raise_readahead(mount_point: &std::path::Path) {
    use std::os::unix::fs::MetadataExt;
    // A stat waits for the kernel's INIT exchange, which would otherwise reset the window.
    let Ok(meta) = std::fs::metadata(mount_point) else {
        return;
    };
    let dev = meta.dev();
    let path = format!(
        "/sys/class/bdi/{}:{}/read_ahead_kb",
        libc::major(dev),
        libc::minor(dev)
    );
    if let Err(error) = std::fs::write(&path, READAHEAD_KIB.to_string()) {
        tracing::debug!(%error, path, "could not raise the read-ahead window");
    }
}

/// The one place a namespace error becomes an errno.
fn errno(error: &NamespaceError) -> Errno {
    match error.kind {
        ErrorKind::NotFound => Errno::ENOENT,
        ErrorKind::AlreadyExists => Errno::EEXIST,
        ErrorKind::NotADirectory => Errno::ENOTDIR,
        ErrorKind::IsADirectory => Errno::EISDIR,
        ErrorKind::NotEmpty => Errno::ENOTEMPTY,
        ErrorKind::InvalidArgument => Errno::EINVAL,
        ErrorKind::NameTooLong => Errno::ENAMETOOLONG,
        ErrorKind::CrossShard => Errno::EXDEV,
        ErrorKind::NoSpace => Errno::ENOSPC,
        ErrorKind::Stale => Errno::ESTALE,
        ErrorKind::PermissionDenied => Errno::EPERM,
        ErrorKind::Unsupported => Errno::EOPNOTSUPP,
        ErrorKind::Corrupt | ErrorKind::Unavailable => Errno::EIO,
    }
}

fn system_time(time: Timestamp) -> SystemTime {
    let nanos = time.0;
    if nanos >= 0 {
        UNIX_EPOCH + Duration::from_nanos(nanos as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(nanos.unsigned_abs())
    }
}

fn timestamp(time: TimeOrNow) -> Timestamp {
    match time {
        TimeOrNow::Now => Timestamp::now(),
        TimeOrNow::SpecificTime(time) => match time.duration_since(UNIX_EPOCH) {
            Ok(after) => Timestamp(i64::try_from(after.as_nanos()).unwrap_or(i64::MAX)),
            Err(before) => {
                Timestamp(-i64::try_from(before.duration().as_nanos()).unwrap_or(i64::MAX))
            }
        },
    }
}

fn file_type(kind: FileKind, special: Special) -> FileType {
    match special.file_type {
        libc::S_IFIFO => FileType::NamedPipe,
        libc::S_IFSOCK => FileType::Socket,
        libc::S_IFCHR => FileType::CharDevice,
        libc::S_IFBLK => FileType::BlockDevice,
        _ => match kind {
            FileKind::File => FileType::RegularFile,
            FileKind::Directory => FileType::Directory,
            FileKind::Symlink => FileType::Symlink,
        },
    }
}

fn file_attr(node: &Node) -> FileAttr {
    let attrs = &node.attrs;
    FileAttr {
        ino: INodeNo(node.inode.0),
        size: attrs.size,
        blocks: attrs.size.div_ceil(512),
        atime: system_time(attrs.atime),
        mtime: system_time(attrs.mtime),
        ctime: system_time(attrs.ctime),
        crtime: system_time(attrs.btime),
        kind: file_type(attrs.kind, node.special),
        perm: (attrs.mode & 0o7777) as u16,
        nlink: attrs.nlink,
        uid: attrs.uid,
        gid: attrs.gid,
        rdev: node.special.rdev as u32,
        blksize: WRITE_BYTES_MAX,
        flags: 0,
    }
}

/// How the kernel should treat a file handle opened with `flags`. A write-only handle
/// bypasses the page cache (`FOPEN_DIRECT_IO`): nothing is read through it, so caching its
/// bytes would only copy each one more time (into page-cache pages the kernel allocates, then
/// out of them into the request), and fill memory with pages no one reads back.
fn open_flags(flags: i32) -> FopenFlags {
    if flags & libc::O_ACCMODE == libc::O_WRONLY {
        FopenFlags::FOPEN_DIRECT_IO
    } else {
        FopenFlags::empty()
    }
}

fn name_of(name: &OsStr) -> Result<&str, Errno> {
    name.to_str().ok_or(Errno::EINVAL)
}

struct KisekiFs {
    client: Arc<Client>,
    runtime: tokio::runtime::Handle,
    notifier: Arc<OnceLock<Notifier>>,
    /// Calls waiting on the server as runtime tasks; at the bound, FUSE threads wait for one
    /// to finish before they take the next request.
    dispatched: Arc<tokio::sync::Semaphore>,
}

/// Most calls that wait on the server at once (see [`KisekiFs::dispatch`]).
const DISPATCHED_CALLS_MAX: usize = 1024;

impl KisekiFs {
    fn run<T>(&self, call: impl Future<Output = kiseki_client::Result<T>>) -> Result<T, Errno> {
        self.runtime.block_on(call).map_err(|error| {
            if matches!(error.kind, ErrorKind::Unavailable | ErrorKind::Corrupt) {
                tracing::warn!(%error, "operation failed");
            }
            errno(&error)
        })
    }

    /// Runs `call` and hands its outcome to `answer`: here and now when it needs nothing it
    /// must wait for (a cached answer, a clean handle's flush), otherwise as a task on the
    /// runtime, which answers the kernel when the server replies. The FUSE thread goes back to
    /// the kernel at once instead of sleeping in `block_on` until a runtime thread wakes it:
    /// on a VM each such wake-up costs tens of microseconds, and a call that waits here paid
    /// two of them. The kernel bounds the calls in flight (each is a process waiting in a
    /// system call, or one of its `max_background` requests) and so does
    /// [`DISPATCHED_CALLS_MAX`].
    fn dispatch<T: Send + 'static>(
        &self,
        call: impl Future<Output = kiseki_client::Result<T>> + Send + 'static,
        answer: impl FnOnce(Result<T, Errno>) + Send + 'static,
    ) {
        let mut task = Box::pin(async move {
            answer(call.await.map_err(|error| {
                if matches!(error.kind, ErrorKind::Unavailable | ErrorKind::Corrupt) {
                    tracing::warn!(%error, "operation failed");
                }
                errno(&error)
            }))
        });
        let pending = {
            let _runtime = self.runtime.enter();
            let mut context = std::task::Context::from_waker(std::task::Waker::noop());
            task.as_mut().poll(&mut context).is_pending()
        };
        if pending {
            let dispatched = Arc::clone(&self.dispatched);
            let permit = match dispatched.clone().try_acquire_owned() {
                Ok(permit) => Ok(permit),
                Err(_) => self.runtime.block_on(dispatched.acquire_owned()),
            };
            // Polled again by the runtime with a real waker, which every pending source
            // registers anew.
            self.runtime.spawn(async move {
                task.await;
                drop(permit);
            });
        }
    }
}

fn entry(reply: ReplyEntry, result: Result<Node, Errno>) {
    match result {
        Ok(node) => reply.entry(&TTL, &file_attr(&node), Generation(0)),
        Err(error) => reply.error(error),
    }
}

fn empty(reply: ReplyEmpty, result: Result<(), Errno>) {
    match result {
        Ok(()) => reply.ok(),
        Err(error) => reply.error(error),
    }
}

fn caller(request: &Request) -> Caller {
    Caller {
        uid: request.uid(),
        gid: request.gid(),
    }
}

impl Filesystem for KisekiFs {
    fn init(&mut self, _request: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config.set_max_write(WRITE_BYTES_MAX);
        let _ = config.set_max_readahead(WRITE_BYTES_MAX);
        // The kernel refreshes attributes before reads and drops pages whose mtime changed.
        let _ = config.add_capabilities(InitFlags::FUSE_AUTO_INVAL_DATA);
        // Listings carry attributes (READDIRPLUS): `ls -l` costs one round trip per page of
        // entries, not one per entry.
        let _ = config.add_capabilities(InitFlags::FUSE_DO_READDIRPLUS);
        Ok(())
    }

    fn lookup(&self, _request: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let name = match name_of(name) {
            Ok(name) => name.to_owned(),
            Err(error) => return reply.error(error),
        };
        let client = Arc::clone(&self.client);
        self.dispatch(
            async move { client.lookup(InodeId(parent.0), &name).await },
            move |result| entry(reply, result),
        );
    }

    fn getattr(&self, _request: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let client = Arc::clone(&self.client);
        self.dispatch(
            async move { client.getattr(InodeId(ino.0)).await },
            move |result| match result {
                Ok(node) => reply.attr(&TTL, &file_attr(&node)),
                Err(error) => reply.error(error),
            },
        );
    }

    fn setattr(
        &self,
        _request: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let update = AttrUpdate {
            mode: mode.map(|mode| mode & 0o7777),
            uid,
            gid,
            atime: atime.map(timestamp),
            mtime: mtime.map(timestamp),
        };
        match self.run(self.client.setattr(InodeId(ino.0), size, update)) {
            Ok(node) => reply.attr(&TTL, &file_attr(&node)),
            Err(error) => reply.error(error),
        }
    }

    fn readlink(&self, _request: &Request, ino: INodeNo, reply: ReplyData) {
        match self.run(self.client.read_link(InodeId(ino.0))) {
            Ok(target) => reply.data(target.as_bytes()),
            Err(error) => reply.error(error),
        }
    }

    fn mknod(
        &self,
        request: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let file_type = mode & libc::S_IFMT;
        let special = match file_type {
            libc::S_IFREG | 0 => Special::default(),
            libc::S_IFIFO | libc::S_IFSOCK | libc::S_IFCHR | libc::S_IFBLK => Special {
                file_type,
                rdev: u64::from(rdev),
            },
            _ => return reply.error(Errno::EINVAL),
        };
        let result = name_of(name).and_then(|name| {
            self.run(self.client.create(
                InodeId(parent.0),
                name,
                mode & 0o7777,
                caller(request),
                true,
                special,
            ))
        });
        entry(reply, result);
    }

    fn mkdir(
        &self,
        request: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let name = match name_of(name) {
            Ok(name) => name.to_owned(),
            Err(error) => return reply.error(error),
        };
        let (client, caller) = (Arc::clone(&self.client), caller(request));
        self.dispatch(
            async move { client.mkdir(InodeId(parent.0), &name, mode, caller).await },
            move |result| entry(reply, result),
        );
    }

    fn unlink(&self, _request: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = match name_of(name) {
            Ok(name) => name.to_owned(),
            Err(error) => return reply.error(error),
        };
        let client = Arc::clone(&self.client);
        self.dispatch(
            async move { client.unlink(InodeId(parent.0), &name).await },
            move |result| empty(reply, result),
        );
    }

    fn rmdir(&self, _request: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let result =
            name_of(name).and_then(|name| self.run(self.client.rmdir(InodeId(parent.0), name)));
        empty(reply, result);
    }

    fn symlink(
        &self,
        request: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let result = name_of(link_name).and_then(|name| {
            let target = target.to_str().ok_or(Errno::EINVAL)?;
            self.run(
                self.client
                    .symlink(InodeId(parent.0), name, target, caller(request)),
            )
        });
        entry(reply, result);
    }

    fn rename(
        &self,
        _request: &Request,
        parent: INodeNo,
        name: &OsStr,
        new_parent: INodeNo,
        new_name: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if flags.intersects(RenameFlags::RENAME_EXCHANGE | RenameFlags::RENAME_WHITEOUT) {
            return reply.error(Errno::EINVAL);
        }
        let no_replace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        let result = name_of(name).and_then(|name| {
            let new_name = name_of(new_name)?;
            self.run(self.client.rename(
                InodeId(parent.0),
                name,
                InodeId(new_parent.0),
                new_name,
                no_replace,
            ))
        });
        empty(reply, result);
    }

    fn link(
        &self,
        _request: &Request,
        ino: INodeNo,
        new_parent: INodeNo,
        new_name: &OsStr,
        reply: ReplyEntry,
    ) {
        let result = name_of(new_name).and_then(|name| {
            self.run(
                self.client
                    .link(InodeId(ino.0), InodeId(new_parent.0), name),
            )
        });
        entry(reply, result);
    }

    fn open(&self, _request: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let append = flags.0 & libc::O_APPEND != 0;
        let reading = flags.0 & libc::O_ACCMODE != libc::O_WRONLY && flags.0 & libc::O_TRUNC == 0;
        let client = Arc::clone(&self.client);
        let notifier = Arc::clone(&self.notifier);
        self.dispatch(
            async move { client.open(InodeId(ino.0), append, reading).await },
            move |result| match result {
                Ok((handle, _, changed)) => {
                    if changed {
                        // Close-to-open: the kernel re-reads the attributes (size) before reading.
                        if let Some(notifier) = notifier.get() {
                            let _ = notifier.inval_inode(ino, -1, 0);
                        }
                    }
                    reply.opened(FileHandle(handle), open_flags(flags.0));
                }
                Err(error) => reply.error(error),
            },
        );
    }

    fn read(
        &self,
        _request: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let client = Arc::clone(&self.client);
        self.dispatch(
            async move { client.read(fh.0, offset, size).await },
            move |result| match result {
                Ok(data) => reply.data(&data),
                Err(error) => reply.error(error),
            },
        );
    }

    fn write(
        &self,
        _request: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.run(self.client.write(fh.0, offset, data)) {
            Ok(written) => reply.written(written as u32),
            Err(error) => reply.error(error),
        }
    }

    fn flush(
        &self,
        _request: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        let client = Arc::clone(&self.client);
        self.dispatch(async move { client.flush(fh.0).await }, move |result| {
            empty(reply, result)
        });
    }

    fn release(
        &self,
        _request: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let client = Arc::clone(&self.client);
        self.dispatch(async move { client.release(fh.0).await }, move |result| {
            empty(reply, result)
        });
    }

    fn fsync(
        &self,
        _request: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        empty(reply, self.run(self.client.flush(fh.0)));
    }

    fn opendir(&self, _request: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.run(self.client.open_dir(InodeId(ino.0))) {
            Ok(handle) => reply.opened(FileHandle(handle), FopenFlags::empty()),
            Err(error) => reply.error(error),
        }
    }

    fn readdir(
        &self,
        _request: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let mut index = offset as usize;
        loop {
            let entries = match self.run(self.client.read_dir(fh.0, index, 256)) {
                Ok(entries) => entries,
                Err(error) => return reply.error(error),
            };
            if entries.is_empty() {
                return reply.ok();
            }
            for entry in entries {
                index += 1;
                let kind = file_type(entry.kind, Special::default());
                if reply.add(INodeNo(entry.inode.0), index as u64, kind, &entry.name) {
                    return reply.ok();
                }
            }
        }
    }

    fn readdirplus(
        &self,
        _request: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let mut index = offset as usize;
        loop {
            let entries = match self.run(self.client.read_dir(fh.0, index, 256)) {
                Ok(entries) => entries,
                Err(error) => return reply.error(error),
            };
            if entries.is_empty() {
                return reply.ok();
            }
            for entry in entries {
                index += 1;
                // "." and ".." (and entries listed without attributes) come from the cache.
                let node = match entry.node {
                    Some(node) => node,
                    None => match self.run(self.client.getattr(entry.inode)) {
                        Ok(node) => node,
                        Err(error) => return reply.error(error),
                    },
                };
                let attr = file_attr(&node);
                let full = reply.add(
                    INodeNo(entry.inode.0),
                    index as u64,
                    &entry.name,
                    &TTL,
                    &attr,
                    Generation(0),
                );
                if full {
                    return reply.ok();
                }
            }
        }
    }

    fn releasedir(
        &self,
        _request: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.client.release_dir(fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _request: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // Every namespace change is durable when it is acknowledged.
        reply.ok();
    }

    fn statfs(&self, _request: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        const BLOCK: u64 = 4096;
        match self.run(self.client.statfs()) {
            Ok(stats) => reply.statfs(
                stats.total_bytes / BLOCK,
                stats.free_bytes / BLOCK,
                stats.free_bytes / BLOCK,
                stats.files + stats.files_free,
                stats.files_free,
                BLOCK as u32,
                kiseki_types::limits::NAME_BYTES_MAX as u32,
                BLOCK as u32,
            ),
            Err(error) => reply.error(error),
        }
    }

    fn setxattr(
        &self,
        _request: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let result = name_of(name).and_then(|name| {
            let (create, replace) = (
                flags & libc::XATTR_CREATE != 0,
                flags & libc::XATTR_REPLACE != 0,
            );
            self.run(
                self.client
                    .set_xattr(InodeId(ino.0), name, value, create, replace),
            )
            .map_err(|error| {
                if error == Errno::ENOENT && replace {
                    Errno::ENODATA
                } else {
                    error
                }
            })
        });
        empty(reply, result);
    }

    fn getxattr(
        &self,
        _request: &Request,
        ino: INodeNo,
        name: &OsStr,
        size: u32,
        reply: ReplyXattr,
    ) {
        if !name.to_str().is_some_and(Client::keeps_xattr_namespace) {
            return reply.error(Errno::EOPNOTSUPP);
        }
        match name_of(name).and_then(|name| self.run(self.client.get_xattr(InodeId(ino.0), name))) {
            Ok(Some(value)) if size == 0 => reply.size(value.len() as u32),
            Ok(Some(value)) if value.len() > size as usize => reply.error(Errno::ERANGE),
            Ok(Some(value)) => reply.data(&value),
            Ok(None) => reply.error(Errno::ENODATA),
            Err(error) => reply.error(error),
        }
    }

    /// No ioctl applies to a Kiseki file: answer ENOTTY (what a regular file says to the
    /// `TCGETS` that every buffered `open` in Python or C++ sends) without a log line per file.
    fn ioctl(
        &self,
        _request: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: ReplyIoctl,
    ) {
        reply.error(Errno::ENOTTY);
    }

    fn listxattr(&self, _request: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        match self.run(self.client.list_xattrs(InodeId(ino.0))) {
            Ok(names) => {
                let mut bytes = Vec::new();
                for name in names {
                    bytes.extend_from_slice(name.as_bytes());
                    bytes.push(0);
                }
                if size == 0 {
                    reply.size(bytes.len() as u32);
                } else if bytes.len() > size as usize {
                    reply.error(Errno::ERANGE);
                } else {
                    reply.data(&bytes);
                }
            }
            Err(error) => reply.error(error),
        }
    }

    fn removexattr(&self, _request: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match name_of(name)
            .and_then(|name| self.run(self.client.remove_xattr(InodeId(ino.0), name)))
        {
            Ok(true) => reply.ok(),
            Ok(false) => reply.error(Errno::ENODATA),
            Err(error) => reply.error(error),
        }
    }

    fn access(
        &self,
        _request: &Request,
        _ino: INodeNo,
        _mask: fuser::AccessFlags,
        reply: ReplyEmpty,
    ) {
        // Permission checks are the kernel's (mount with --default-permissions).
        reply.ok();
    }

    fn create(
        &self,
        request: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let exclusive = flags & libc::O_EXCL != 0;
        let append = flags & libc::O_APPEND != 0;
        let name = match name_of(name) {
            Ok(name) => name.to_owned(),
            Err(error) => return reply.error(error),
        };
        let (client, caller) = (Arc::clone(&self.client), caller(request));
        let new = async move {
            let node = client
                .create(
                    InodeId(parent.0),
                    &name,
                    mode & 0o7777,
                    caller,
                    exclusive,
                    Special::default(),
                )
                .await?;
            let (handle, node, _) = client.open_created(node, append).await?;
            Ok((handle, node))
        };
        self.dispatch(new, move |result| match result {
            Ok((handle, node)) => reply.created(
                &TTL,
                &file_attr(&node),
                Generation(0),
                FileHandle(handle),
                open_flags(flags),
            ),
            Err(error) => reply.error(error),
        });
    }

    fn fallocate(
        &self,
        _request: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        if mode != 0 {
            return reply.error(Errno::EOPNOTSUPP);
        }
        empty(
            reply,
            self.run(self.client.allocate(InodeId(ino.0), offset, length))
                .map(drop),
        );
    }
}

/// Refuses a mount point that does not exist, is not a directory, is not empty, or is already
/// a mount point, with the reason.
fn check_mount_point(path: &Path) -> anyhow::Result<PathBuf> {
    let path = path
        .canonicalize()
        .with_context(|| format!("mount point {} does not exist", path.display()))?;
    if !path.is_dir() {
        bail!("mount point {} is not a directory", path.display());
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mounted = mounts
        .lines()
        .any(|line| line.split(' ').nth(4) == Some(&*path.to_string_lossy()));
    if mounted {
        bail!(
            "mount point {} is busy: something is already mounted there (unmount it first)",
            path.display()
        );
    }
    let entries = std::fs::read_dir(&path)
        .with_context(|| format!("reading mount point {}", path.display()))?
        .count();
    if entries > 0 {
        bail!(
            "mount point {} is not empty ({entries} entries): mount on an empty directory",
            path.display()
        );
    }
    Ok(path)
}

/// Settings after merging the command line over the `--config` file over defaults.
struct Settings {
    mount_point: PathBuf,
    server: String,
    ca: Option<PathBuf>,
    server_name: Option<String>,
    /// Client certificate and key (PEM files).
    client_cert: Option<(PathBuf, PathBuf)>,
    allow_other: bool,
    default_permissions: bool,
    /// The socket named by the command line or config (`None`: the default).
    agent_socket: Option<PathBuf>,
    cache: NodeCacheConfig,
    /// Whether the L2 directory was named (not the default).
    cache_dir_named: bool,
    agent: AgentSettings,
}

/// Cache sizes and places when neither the command line nor the config names them.
const CACHE_MEMORY_BYTES_DEFAULT: u64 = 256 * 1024 * 1024;
const CACHE_DISK_BYTES_DEFAULT: u64 = 16 * 1024 * 1024 * 1024;
const CACHE_DIR_DEFAULT: &str = "/var/cache/kiseki";

fn settings(args: &Args) -> anyhow::Result<Settings> {
    let file = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the config {}", path.display()))?;
            NodeConfig::parse(&text)
                .map_err(|e| anyhow::anyhow!("config {}: {e}", path.display()))?
        }
        None => NodeConfig::default(),
    };
    let mount_point = args
        .mount_point
        .clone()
        .or(file.mount_point)
        .unwrap_or_else(|| PathBuf::from("/kiseki"));
    let ca = args.ca.clone().or(file.ca);
    if ca.is_none() && !args.insecure_plaintext {
        bail!("--ca FILE (or ca: in --config) is required unless --insecure-plaintext");
    }
    let client_cert = match (
        args.cert.clone().or(file.cert),
        args.key.clone().or(file.key),
    ) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        _ => bail!("a client certificate needs both --cert and --key (cert: and key: in --config)"),
    };
    if client_cert.is_none() && args.access_key.is_none() {
        bail!(
            "no identity: give --cert FILE --key FILE (a client certificate of the cluster CA) \
             or --access-key/--secret-key (KISEKI_ACCESS_KEY, KISEKI_SECRET_KEY)"
        );
    }
    if client_cert.is_some() && args.insecure_plaintext {
        bail!("a client certificate needs TLS, not --insecure-plaintext");
    }
    let cache_dir_named = args.cache_dir.is_some() || file.cache.dir.is_some();
    let cache = NodeCacheConfig {
        memory_bytes: args
            .cache_memory_bytes
            .or(file.cache.memory_bytes)
            .unwrap_or(CACHE_MEMORY_BYTES_DEFAULT),
        disk_dir: args
            .cache_dir
            .clone()
            .or(file.cache.dir)
            .unwrap_or_else(|| PathBuf::from(CACHE_DIR_DEFAULT)),
        disk_bytes: args
            .cache_disk_bytes
            .or(file.cache.disk_bytes)
            .unwrap_or(CACHE_DISK_BYTES_DEFAULT),
    };
    Ok(Settings {
        agent: AgentSettings {
            mount_point: mount_point.clone(),
            datasets: file.datasets,
            default_mode: file.cache.default_mode,
            modes: file
                .cache
                .modes
                .into_iter()
                .map(|mode| (mode.path, mode.mode))
                .collect(),
        },
        mount_point,
        server: args
            .server
            .clone()
            .or(file.server)
            .unwrap_or_else(|| "https://127.0.0.1:9200".into()),
        ca,
        server_name: args.server_name.clone().or(file.server_name),
        client_cert,
        allow_other: args.allow_other || file.allow_other.unwrap_or(false),
        default_permissions: args.default_permissions || file.default_permissions.unwrap_or(false),
        agent_socket: args.agent_socket.clone().or(file.agent_socket),
        cache_dir_named,
        cache,
    })
}

fn main() -> anyhow::Result<()> {
    kiseki_chunk::keep_chunk_buffers_in_heap();
    kiseki_telemetry::init_tracing("KISEKI_LOG");
    let args = Args::parse();
    let mut settings = settings(&args)?;
    let mount_point = check_mount_point(&settings.mount_point)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let security = match &settings.ca {
        Some(path) if !args.insecure_plaintext => ChannelSecurity::Tls {
            ca_pem: std::fs::read(path)
                .with_context(|| format!("reading the CA certificate {}", path.display()))?,
            server_name: settings.server_name.clone(),
            client_cert: match &settings.client_cert {
                Some((cert, key)) => Some(ClientCertificate {
                    cert_pem: std::fs::read(cert).with_context(|| {
                        format!("reading the client certificate {}", cert.display())
                    })?,
                    key_pem: std::fs::read(key)
                        .with_context(|| format!("reading the client key {}", key.display()))?,
                }),
                None => None,
            },
        },
        _ => ChannelSecurity::InsecurePlaintext,
    };
    let options = GrpcOptions {
        endpoint: settings.server.clone(),
        security,
        access_key: args.access_key.clone().zip(args.secret_key.clone()),
        connect_timeout: Duration::from_secs(3),
        request_timeout: Duration::from_secs(args.request_timeout.max(1)),
        bulk: !args.no_bulk,
    };
    let socket_path = settings
        .agent_socket
        .clone()
        .unwrap_or_else(|| PathBuf::from(SOCKET_DEFAULT));
    let socket = {
        let _entered = runtime.enter();
        match AgentSocket::bind(&socket_path) {
            Ok(socket) => Some(socket),
            // A second mount on a node whose agent already owns the default socket (a dev
            // server's mount, a benchmark): it runs without a control socket and, unless told
            // otherwise, with an L2 directory of its own.
            Err(SocketError::InUse(path)) if settings.agent_socket.is_none() => {
                tracing::warn!(
                    socket = %path.display(),
                    "another cache agent owns the default socket: this mount has no control socket"
                );
                None
            }
            Err(error) => return Err(error).context("starting the cache agent"),
        }
    };
    let mut private_cache_dir = None;
    if socket.is_none() && !settings.cache_dir_named {
        let dir = PathBuf::from(format!("{CACHE_DIR_DEFAULT}-mount-{}", std::process::id()));
        settings.cache.disk_dir = dir.clone();
        private_cache_dir = Some(dir);
    }
    let node_cache = Arc::new(NodeCache::open(settings.cache.clone()).with_context(|| {
        format!(
            "opening the node cache in {}",
            settings.cache.disk_dir.display()
        )
    })?);
    let (client, requests) = runtime
        .block_on(async {
            let transport: Arc<dyn kiseki_client::Transport> =
                Arc::new(GrpcTransport::connect_lazy(&options)?);
            let (counting, requests) = CountingTransport::new(transport);
            let cache: Arc<dyn ChunkCache> = Arc::clone(&node_cache) as Arc<dyn ChunkCache>;
            let client =
                Client::connect(Arc::new(counting), cache, ClientOptions::default()).await?;
            Ok::<_, NamespaceError>((Arc::new(client), requests))
        })
        .with_context(|| format!("connecting to the Kiseki server at {}", settings.server))?;
    let agent = Agent::new(
        Arc::clone(&client),
        Arc::clone(&node_cache),
        requests,
        settings.agent.clone(),
    );
    runtime.block_on(agent.apply_modes());
    let agent_task = socket.map(|socket| runtime.spawn(socket.serve(Arc::clone(&agent))));
    let tenant = client.tenant();

    let notifier = Arc::new(OnceLock::new());
    let fs = KisekiFs {
        client,
        runtime: runtime.handle().clone(),
        notifier: Arc::clone(&notifier),
        dispatched: Arc::new(tokio::sync::Semaphore::new(DISPATCHED_CALLS_MAX)),
    };
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName("kiseki".into()),
        MountOption::Subtype("kiseki".into()),
    ];
    if settings.default_permissions {
        config.mount_options.push(MountOption::DefaultPermissions);
    }
    if settings.allow_other {
        config.acl = SessionACL::All;
    }
    config.n_threads = Some(args.threads.max(1));
    let mut session = Session::new(fs, &mount_point, &config)
        .with_context(|| format!("mounting on {}", mount_point.display()))?;
    let _ = notifier.set(session.notifier());
    let mut unmounter = session.unmount_callable();
    let (done_sender, mut done) = tokio::sync::oneshot::channel();
    let worker = std::thread::spawn(move || {
        let result = session.run();
        let _ = done_sender.send(());
        result
    });
    raise_readahead(&mount_point);
    println!(
        "kiseki-client-fuse: tenant {tenant} mounted at {} (server {})",
        mount_point.display(),
        settings.server
    );
    println!(
        "kiseki-client-fuse: cache agent on {} (L2 {} in {}, L1 {})",
        if agent_task.is_some() {
            socket_path.display().to_string()
        } else {
            "no socket".to_owned()
        },
        kiseki_client::human_bytes(settings.cache.disk_bytes),
        settings.cache.disk_dir.display(),
        kiseki_client::human_bytes(settings.cache.memory_bytes),
    );
    println!("ready");

    let signalled = runtime.block_on(async {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = terminate.recv() => Ok::<bool, std::io::Error>(true),
            _ = tokio::signal::ctrl_c() => Ok(true),
            _ = &mut done => Ok(false),
        }
    })?;
    if signalled {
        tracing::info!(mount = %mount_point.display(), "unmounting");
        if let Err(error) = unmounter.unmount() {
            tracing::warn!(%error, "unmount failed; the mount may be busy");
        }
    }
    match worker.join() {
        Ok(result) => result.context("FUSE session")?,
        Err(_) => bail!("FUSE session thread panicked"),
    }
    if let Some(task) = agent_task {
        task.abort();
    }
    runtime.shutdown_timeout(Duration::from_secs(5));
    drop(node_cache);
    if let Some(dir) = private_cache_dir {
        let _ = std::fs::remove_dir_all(dir);
    }
    println!("kiseki-client-fuse: unmounted {}", mount_point.display());
    Ok(())
}
