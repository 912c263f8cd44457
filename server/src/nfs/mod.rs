//! The NFSv3 gateway: MOUNT and NFS programs over ONC RPC on TCP, serving exports of tenant
//! namespaces. A thin adapter: each procedure decodes its arguments, makes one call on the
//! export's [`TenantNamespace`](kiseki_namespace::TenantNamespace) and encodes the result;
//! names, attributes, renames and permission rules are the namespace's.
//!
//! Written here rather than on `nfsserve`, whose file-system trait sees neither the client's
//! address nor its AUTH_SYS credential (so no export lists, squashing or permission checks),
//! serves one export per listener, answers every WRITE as FILE_SYNC with no COMMIT, makes
//! handles that expire when the server restarts, and resumes READDIR by file id only.
//!
//! Two protocol-neutral parts are meant to be shared with an NFSv4 front end: the write-back
//! that coalesces small WRITEs into whole chunks ([`write_back`]) and the read cache that keeps
//! sequential READs from re-fetching chunks ([`read_cache`]).

pub mod config;
mod exports;
mod metrics;
mod mount;
mod nfs3;
mod read_cache;
mod rpc;
mod status;
#[cfg(test)]
mod tests;
mod write_back;
mod xdr;

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use kiseki_namespace::{Namespace, Owner};
use kiseki_types::{ErrorKind, InodeId, TenantId};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::NfsConfig;
pub use metrics::NfsMetrics;

use exports::{Export, Exports};
use rpc::{Refusal, PROGRAM_MOUNT, PROGRAM_NFS};
use write_back::WriteBack;

/// Largest READ or WRITE (`rtmax`, `wtmax`).
pub const IO_BYTES_MAX: u32 = 1024 * 1024;
/// Writes held without a new WRITE for this long are committed.
const WRITE_BACK_IDLE: Duration = Duration::from_secs(1);

/// Both programs, as one RPC service.
struct Service {
    mount: mount::Mount,
    nfs: nfs3::Nfs3,
    metrics: NfsMetrics,
}

impl rpc::Dispatch for Service {
    async fn dispatch(self: Arc<Self>, peer: IpAddr, record: Vec<u8>) -> Option<Vec<u8>> {
        let header = match rpc::parse_call(&record) {
            Ok(header) => header,
            Err(error) => {
                tracing::debug!(%peer, %error, "undecodable RPC call");
                return None;
            }
        };
        let args = &record[header.args_offset..];
        let mut out = rpc::success_header(header.xid, 256);
        let outcome = match (header.program, header.version) {
            (PROGRAM_NFS, 3) => {
                let request = nfs3::Request {
                    peer,
                    credential: &header.credential,
                };
                let result = self
                    .nfs
                    .call(&request, header.procedure, args, &mut out)
                    .await;
                let name = nfs3::PROCEDURES
                    .get(header.procedure as usize)
                    .copied()
                    .unwrap_or("unknown");
                result.map(|status| {
                    self.metrics
                        .count("nfs3", name, status == status::Status::OK)
                })
            }
            (PROGRAM_MOUNT, 3) => {
                let result = self.mount.call(peer, header.procedure, args, &mut out);
                let name = mount::PROCEDURES
                    .get(header.procedure as usize)
                    .copied()
                    .unwrap_or("unknown");
                result.map(|ok| self.metrics.count("mount3", name, ok))
            }
            (PROGRAM_NFS | PROGRAM_MOUNT, _) => {
                return Some(rpc::refusal(header.xid, Refusal::ProgramMismatch(3, 3)))
            }
            _ => return Some(rpc::refusal(header.xid, Refusal::ProgramUnavailable)),
        };
        match outcome {
            Ok(()) => Some(out.into_bytes()),
            Err(_) if !known_procedure(header.program, header.procedure) => {
                Some(rpc::refusal(header.xid, Refusal::ProcedureUnavailable))
            }
            Err(error) => {
                tracing::debug!(%peer, %error, procedure = header.procedure, "NFS call with malformed arguments");
                Some(rpc::refusal(header.xid, Refusal::GarbageArgs))
            }
        }
    }
}

fn known_procedure(program: u32, procedure: u32) -> bool {
    let count = if program == PROGRAM_NFS {
        nfs3::PROCEDURES.len()
    } else {
        mount::PROCEDURES.len()
    };
    (procedure as usize) < count
}

/// The running NFS gateway.
pub struct NfsServer {
    addresses: Vec<SocketAddr>,
    exports: Arc<Exports>,
    write_back: Arc<WriteBack>,
    tasks: Vec<JoinHandle<()>>,
}

impl NfsServer {
    /// Opens the exports (creating their directories), binds the listeners and serves until
    /// `shutdown`.
    pub async fn start(
        config: &NfsConfig,
        namespace: &Namespace,
        data_dir: &Path,
        metrics: NfsMetrics,
        shutdown: watch::Receiver<bool>,
    ) -> anyhow::Result<Self> {
        config.check()?;
        let mut list = Vec::new();
        for export in &config.exports {
            let tenant = namespace
                .tenant(TenantId(export.tenant))
                .await
                .with_context(|| {
                    format!(
                        "opening tenant {} for nfs export {:?}",
                        export.tenant,
                        export.mount_path()
                    )
                })?;
            let root = ensure_directory(&tenant, &export.path)
                .await
                .with_context(|| {
                    format!(
                        "nfs export {:?}: directory {:?}",
                        export.mount_path(),
                        export.path
                    )
                })?;
            list.push(Arc::new(Export::new(export, tenant, root)?));
        }
        let exports = Arc::new(Exports::new(list));
        let write_back = Arc::new(WriteBack::default());
        let service = Arc::new(Service {
            mount: mount::Mount::new(Arc::clone(&exports)),
            nfs: nfs3::Nfs3::new(
                Arc::clone(&exports),
                Arc::clone(&write_back),
                data_dir.to_path_buf(),
            ),
            metrics,
        });
        let mut addresses = Vec::new();
        let mut tasks = Vec::new();
        for listen in std::iter::once(config.listen).chain(config.mount_listen) {
            let listener = TcpListener::bind(listen)
                .await
                .with_context(|| format!("binding the NFS listener {listen}"))?;
            addresses.push(listener.local_addr()?);
            tasks.push(tokio::spawn(accept_loop(
                listener,
                Arc::clone(&service),
                shutdown.clone(),
            )));
        }
        tasks.push(tokio::spawn(commit_idle_writes(
            Arc::clone(&write_back),
            shutdown,
        )));
        Ok(NfsServer {
            addresses,
            exports,
            write_back,
            tasks,
        })
    }

    /// One line per listener and export, for the start-up banner.
    pub fn describe(&self) -> String {
        let listeners: Vec<String> = self.addresses.iter().map(ToString::to_string).collect();
        let exports: Vec<String> = self
            .exports
            .all()
            .iter()
            .map(|export| {
                let mode = if export.read_only { "ro" } else { "rw" };
                let clients = export.clients().join(",");
                format!(
                    "{} (tenant {} {}, {mode}, {clients})",
                    export.mount_path,
                    export.namespace.tenant().0,
                    export.tenant_path
                )
            })
            .collect();
        format!(
            "nfs://{} {}",
            listeners.join(" + "),
            if exports.is_empty() {
                "(none)".into()
            } else {
                exports.join("; ")
            }
        )
    }

    /// Stops accepting, then commits every write held for clients.
    pub async fn shutdown(self) {
        for task in &self.tasks {
            task.abort();
        }
        self.write_back.commit_all().await;
    }
}

async fn accept_loop(
    listener: TcpListener,
    service: Arc<Service>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = stopped(&mut shutdown) => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    tokio::spawn(rpc::serve_connection(stream, peer, Arc::clone(&service)));
                }
                Err(error) => {
                    tracing::warn!(%error, "accepting an NFS connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

async fn commit_idle_writes(write_back: Arc<WriteBack>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = stopped(&mut shutdown) => return,
            _ = tokio::time::sleep(WRITE_BACK_IDLE / 2) => write_back.commit_idle(WRITE_BACK_IDLE).await,
        }
    }
}

/// The directory at `path` of the tenant, created (like `mkdir -p`) when missing.
async fn ensure_directory(
    tenant: &kiseki_namespace::TenantNamespace,
    path: &str,
) -> anyhow::Result<InodeId> {
    let mut dir = InodeId::ROOT;
    for name in kiseki_namespace::names::split_path(path)? {
        dir = match tenant.lookup(dir, &name) {
            Ok((inode, _)) => inode,
            Err(error) if error.kind == ErrorKind::NotFound => match tenant
                .mkdir(Owner { uid: 0, gid: 0 }, dir, &name, 0o755)
                .await
            {
                Ok(inode) => inode,
                Err(error) if error.kind == ErrorKind::AlreadyExists => {
                    tenant.lookup(dir, &name)?.0
                }
                Err(error) => return Err(error.into()),
            },
            Err(error) => return Err(error.into()),
        };
    }
    let attrs = tenant.attributes(dir)?;
    anyhow::ensure!(
        attrs.kind == kiseki_types::FileKind::Directory,
        "{path:?} is not a directory"
    );
    Ok(dir)
}
