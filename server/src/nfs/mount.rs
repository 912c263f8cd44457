//! The MOUNT v3 program (RFC 1813 appendix I): hands out the root handle of an export (or of a
//! directory below it) to clients the export lists, and lists the exports.

use std::net::IpAddr;
use std::sync::Arc;

use kiseki_types::FileKind;

use super::exports::Exports;
use super::xdr::{Reader, Writer, XdrError};

const MOUNT_PATH_BYTES_MAX: usize = 1024;
const AUTH_NONE: u32 = 0;
const AUTH_SYS: u32 = 1;

/// `mountstat3` values.
const MNT3_OK: u32 = 0;
const MNT3ERR_NOENT: u32 = 2;
const MNT3ERR_ACCES: u32 = 13;
const MNT3ERR_NOTDIR: u32 = 20;
const MNT3ERR_SERVERFAULT: u32 = 10006;

/// Names of the procedures, by number.
pub const PROCEDURES: [&str; 6] = ["NULL", "MNT", "DUMP", "UMNT", "UMNTALL", "EXPORT"];

/// The MOUNT program.
pub struct Mount {
    exports: Arc<Exports>,
}

impl Mount {
    /// The program over `exports`.
    pub fn new(exports: Arc<Exports>) -> Self {
        Mount { exports }
    }

    /// Runs procedure `procedure`; whether it succeeded.
    pub fn call(
        &self,
        peer: IpAddr,
        procedure: u32,
        args: &[u8],
        out: &mut Writer,
    ) -> Result<bool, XdrError> {
        let mut reader = Reader::new(args);
        match procedure {
            // NULL, UMNT and UMNTALL: the server keeps no mount table, so there is nothing to do.
            0 | 4 => Ok(true),
            3 => reader.string(MOUNT_PATH_BYTES_MAX).map(|_| true),
            1 => Ok(self.mount(peer, reader.string(MOUNT_PATH_BYTES_MAX)?, out)),
            2 => {
                out.bool(false);
                Ok(true)
            }
            5 => {
                self.list(out);
                Ok(true)
            }
            _ => Err(XdrError("no such procedure")),
        }
    }

    fn mount(&self, peer: IpAddr, path: &str, out: &mut Writer) -> bool {
        let status = match self.resolve(peer, path) {
            Ok(handle) => {
                out.u32(MNT3_OK)
                    .opaque(&handle)
                    .u32(2)
                    .u32(AUTH_SYS)
                    .u32(AUTH_NONE);
                tracing::info!(%peer, path, "NFS mount");
                return true;
            }
            Err(status) => status,
        };
        tracing::info!(%peer, path, status, "NFS mount refused");
        out.u32(status);
        false
    }

    fn resolve(&self, peer: IpAddr, path: &str) -> Result<[u8; 20], u32> {
        let (export, rest) = self.exports.by_mount_path(path).ok_or(MNT3ERR_NOENT)?;
        if !export.allows(peer) {
            return Err(MNT3ERR_ACCES);
        }
        let mut dir = export.root;
        for name in rest.split('/').filter(|name| !name.is_empty()) {
            let (inode, attrs) = export
                .namespace
                .lookup(dir, name)
                .map_err(|_| MNT3ERR_NOENT)?;
            if attrs.kind != FileKind::Directory {
                return Err(MNT3ERR_NOTDIR);
            }
            dir = inode;
        }
        match export.namespace.attributes(dir) {
            Ok(attrs) if attrs.kind == FileKind::Directory => Ok(export.handle(dir)),
            Ok(_) => Err(MNT3ERR_NOTDIR),
            Err(_) => Err(MNT3ERR_SERVERFAULT),
        }
    }

    /// EXPORT: every export with its client networks.
    fn list(&self, out: &mut Writer) {
        for export in self.exports.all() {
            out.bool(true).string(&export.mount_path);
            for client in export.clients() {
                out.bool(true).string(client);
            }
            out.bool(false);
        }
        out.bool(false);
    }
}
