//! Exports as the server runs them: the tenant namespace and root directory of each, who may
//! use it, how callers are mapped; and the file handle format.
//!
//! A file handle is 20 bytes: magic `KN`, version 1, a reserved zero byte, the export id (a
//! hash of the export's name, so handles survive reordering the config), the inode number, and
//! a CRC32C of the 16 bytes before it. Inode numbers are allocated by the shard monotonically,
//! are never reused and are stable across restarts (they are in the shard log and snapshots), so
//! a handle stays valid across restarts for as long as its node exists, and a handle of a
//! removed node can never name another node: it answers `NFS3ERR_STALE`. No generation number
//! is needed for that; one would be if inode numbers were ever recycled.

use std::net::IpAddr;
use std::sync::Arc;

use kiseki_namespace::{Caller, TenantNamespace};
use kiseki_types::InodeId;

use super::config::{Cidr, ExportConfig};
use super::rpc::Credential;

/// Largest NFSv3 file handle.
pub const HANDLE_BYTES_MAX: usize = 64;
const HANDLE_MAGIC: [u8; 2] = *b"KN";
const HANDLE_VERSION: u8 = 1;
const HANDLE_BYTES: usize = 20;

/// An export being served.
pub struct Export {
    /// Stable id carried in handles.
    pub id: u32,
    /// The path clients mount, e.g. `/projects`.
    pub mount_path: String,
    /// The exported tenant's namespace.
    pub namespace: Arc<TenantNamespace>,
    /// The exported directory.
    pub root: InodeId,
    /// The exported directory as a tenant path, for messages.
    pub tenant_path: String,
    clients: Vec<Cidr>,
    client_names: Vec<String>,
    /// Whether every change is refused.
    pub read_only: bool,
    root_squash: bool,
    anon_uid: u32,
    anon_gid: u32,
}

/// A handle this server did not make (answered with `NFS3ERR_BADHANDLE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadHandle;

/// FNV-1a of the export's mount path: a stable 32-bit id.
pub fn export_id(mount_path: &str) -> u32 {
    mount_path.bytes().fold(0x811c_9dc5u32, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    })
}

impl Export {
    /// An export of directory `root` of `namespace`, as `config` describes.
    pub fn new(
        config: &ExportConfig,
        namespace: Arc<TenantNamespace>,
        root: InodeId,
    ) -> anyhow::Result<Self> {
        let mount_path = config.mount_path();
        let clients = config
            .clients
            .iter()
            .map(|client| Cidr::parse(client))
            .collect::<anyhow::Result<_>>()?;
        Ok(Export {
            id: export_id(&mount_path),
            mount_path,
            namespace,
            root,
            tenant_path: config.path.clone(),
            clients,
            client_names: config.clients.clone(),
            read_only: config.read_only,
            root_squash: config.root_squash,
            anon_uid: config.anon_uid,
            anon_gid: config.anon_gid,
        })
    }

    /// Whether a client at `address` may use the export.
    pub fn allows(&self, address: IpAddr) -> bool {
        self.clients.iter().any(|network| network.contains(address))
    }

    /// The client networks as configured.
    pub fn clients(&self) -> &[String] {
        &self.client_names
    }

    /// The caller a credential stands for on this export: AUTH_NONE is anonymous, and with
    /// root squash uid 0 and gid 0 become the anonymous ids.
    pub fn caller(&self, credential: &Credential) -> Caller {
        match credential {
            Credential::Anonymous => Caller {
                uid: self.anon_uid,
                gid: self.anon_gid,
                groups: Vec::new(),
            },
            Credential::Sys { uid, gid, groups } => {
                let squash = |id: u32, anon: u32| {
                    if self.root_squash && id == 0 {
                        anon
                    } else {
                        id
                    }
                };
                Caller {
                    uid: squash(*uid, self.anon_uid),
                    gid: squash(*gid, self.anon_gid),
                    groups: groups
                        .iter()
                        .map(|&group| squash(group, self.anon_gid))
                        .collect(),
                }
            }
        }
    }

    /// The handle of `inode` in this export.
    pub fn handle(&self, inode: InodeId) -> [u8; HANDLE_BYTES] {
        let mut handle = [0u8; HANDLE_BYTES];
        handle[..2].copy_from_slice(&HANDLE_MAGIC);
        handle[2] = HANDLE_VERSION;
        handle[4..8].copy_from_slice(&self.id.to_be_bytes());
        handle[8..16].copy_from_slice(&inode.0.to_be_bytes());
        let checksum = crc32c::crc32c(&handle[..16]);
        handle[16..].copy_from_slice(&checksum.to_be_bytes());
        handle
    }
}

/// Splits a handle into export id and inode, checking its format and checksum.
pub fn parse_handle(handle: &[u8]) -> Result<(u32, InodeId), BadHandle> {
    if handle.len() != HANDLE_BYTES || handle[..2] != HANDLE_MAGIC || handle[2] != HANDLE_VERSION {
        return Err(BadHandle);
    }
    let checksum = u32::from_be_bytes([handle[16], handle[17], handle[18], handle[19]]);
    if crc32c::crc32c(&handle[..16]) != checksum {
        return Err(BadHandle);
    }
    let export = u32::from_be_bytes([handle[4], handle[5], handle[6], handle[7]]);
    let mut inode = [0u8; 8];
    inode.copy_from_slice(&handle[8..16]);
    Ok((export, InodeId(u64::from_be_bytes(inode))))
}

/// Every export of the server.
pub struct Exports {
    list: Vec<Arc<Export>>,
}

impl Exports {
    /// The exports in `list`.
    pub fn new(list: Vec<Arc<Export>>) -> Self {
        Exports { list }
    }

    /// All exports, in config order.
    pub fn all(&self) -> &[Arc<Export>] {
        &self.list
    }

    /// The export a handle's id names.
    pub fn by_id(&self, id: u32) -> Option<&Arc<Export>> {
        self.list.iter().find(|export| export.id == id)
    }

    /// The export a MOUNT path falls in, and the rest of the path below it: the longest export
    /// path that is the mount path or a directory prefix of it.
    pub fn by_mount_path<'a>(&self, path: &'a str) -> Option<(&Arc<Export>, &'a str)> {
        let path = path.trim_end_matches('/');
        self.list
            .iter()
            .filter_map(|export| {
                let rest = path.strip_prefix(export.mount_path.as_str())?;
                (rest.is_empty() || rest.starts_with('/')).then_some((export, rest))
            })
            .max_by_key(|(export, _)| export.mount_path.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_round_trip_and_reject_tampering() {
        let mut handle = [0u8; HANDLE_BYTES];
        handle[..2].copy_from_slice(&HANDLE_MAGIC);
        handle[2] = HANDLE_VERSION;
        handle[4..8].copy_from_slice(&7u32.to_be_bytes());
        handle[8..16].copy_from_slice(&InodeId::new(3, 99).0.to_be_bytes());
        let checksum = crc32c::crc32c(&handle[..16]);
        handle[16..].copy_from_slice(&checksum.to_be_bytes());
        assert_eq!(parse_handle(&handle), Ok((7, InodeId::new(3, 99))));
        handle[12] ^= 1;
        assert_eq!(parse_handle(&handle), Err(BadHandle));
        assert_eq!(parse_handle(&handle[..16]), Err(BadHandle));
    }

    #[test]
    fn export_ids_depend_on_the_name_only() {
        assert_eq!(export_id("/projects"), export_id("/projects"));
        assert_ne!(export_id("/projects"), export_id("/scratch"));
    }
}
