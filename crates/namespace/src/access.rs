//! POSIX permission checks: which of read, write and execute a caller has on a node, from its
//! mode bits, owner and group. Gateways that authenticate users by uid/gid (NFS AUTH_SYS, the
//! FUSE mount) ask here, so every protocol grants the same access to the same caller.

use kiseki_types::{Attributes, ErrorKind, FileKind, NamespaceError};

/// A caller identified by uid and groups (after any squashing the gateway applies).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// User id; 0 is the superuser.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary group ids.
    pub groups: Vec<u32>,
}

/// Access to a node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Permissions {
    /// Read a file's bytes; list a directory.
    pub read: bool,
    /// Change a file's bytes; add or remove names in a directory.
    pub write: bool,
    /// Execute a file; look names up in (traverse) a directory.
    pub execute: bool,
}

impl Caller {
    /// Whether the caller is the superuser.
    pub fn is_root(&self) -> bool {
        self.uid == 0
    }

    /// Whether the caller owns the node (or is the superuser).
    pub fn owns(&self, attrs: &Attributes) -> bool {
        self.is_root() || self.uid == attrs.uid
    }

    fn in_group(&self, gid: u32) -> bool {
        self.gid == gid || self.groups.contains(&gid)
    }

    /// What the caller may do with a node with `attrs`. The superuser may read and write
    /// anything, and execute what has an execute bit (or is a directory).
    pub fn permissions(&self, attrs: &Attributes) -> Permissions {
        if self.is_root() {
            let any_execute = attrs.mode & 0o111 != 0 || attrs.kind == FileKind::Directory;
            return Permissions {
                read: true,
                write: true,
                execute: any_execute,
            };
        }
        let shift = if self.uid == attrs.uid {
            6
        } else if self.in_group(attrs.gid) {
            3
        } else {
            0
        };
        let bits = (attrs.mode >> shift) & 0o7;
        Permissions {
            read: bits & 0o4 != 0,
            write: bits & 0o2 != 0,
            execute: bits & 0o1 != 0,
        }
    }

    /// `Ok` when the caller has every access in `want`; otherwise a `PermissionDenied` error
    /// naming `what`.
    pub fn check(
        &self,
        attrs: &Attributes,
        want: Permissions,
        what: &str,
    ) -> Result<(), NamespaceError> {
        let have = self.permissions(attrs);
        let missing = (want.read && !have.read)
            || (want.write && !have.write)
            || (want.execute && !have.execute);
        if missing {
            return Err(NamespaceError::new(
                ErrorKind::PermissionDenied,
                format!(
                    "uid {} may not access {what} (mode {:o}, owner {}:{})",
                    self.uid, attrs.mode, attrs.uid, attrs.gid
                ),
            ));
        }
        Ok(())
    }
}

impl Permissions {
    /// Read access.
    pub const READ: Permissions = Permissions {
        read: true,
        write: false,
        execute: false,
    };
    /// Write access.
    pub const WRITE: Permissions = Permissions {
        read: false,
        write: true,
        execute: false,
    };
    /// Execute (directory search) access.
    pub const EXECUTE: Permissions = Permissions {
        read: false,
        write: false,
        execute: true,
    };
    /// Write and search: what changing a directory's names takes.
    pub const CHANGE_NAMES: Permissions = Permissions {
        read: false,
        write: true,
        execute: true,
    };
}

#[cfg(test)]
mod tests {
    use kiseki_types::Timestamp;

    use super::*;

    fn attrs(mode: u32, uid: u32, gid: u32) -> Attributes {
        Attributes {
            kind: FileKind::File,
            mode,
            uid,
            gid,
            size: 0,
            nlink: 1,
            atime: Timestamp(0),
            mtime: Timestamp(0),
            ctime: Timestamp(0),
            btime: Timestamp(0),
        }
    }

    #[test]
    fn owner_group_and_other_bits_apply_in_that_order() {
        let file = attrs(0o640, 1000, 100);
        let owner = Caller {
            uid: 1000,
            gid: 1,
            groups: vec![],
        };
        let member = Caller {
            uid: 2000,
            gid: 5,
            groups: vec![100],
        };
        let other = Caller {
            uid: 3000,
            gid: 5,
            groups: vec![],
        };
        assert_eq!(
            owner.permissions(&file),
            Permissions {
                read: true,
                write: true,
                execute: false
            }
        );
        assert_eq!(member.permissions(&file), Permissions::READ);
        assert_eq!(other.permissions(&file), Permissions::default());
        assert!(other.check(&file, Permissions::READ, "f").is_err());
    }

    #[test]
    fn root_reads_and_writes_everything_but_executes_only_executables() {
        let root = Caller {
            uid: 0,
            gid: 0,
            groups: vec![],
        };
        assert_eq!(
            root.permissions(&attrs(0o000, 1, 1)),
            Permissions {
                read: true,
                write: true,
                execute: false
            }
        );
        assert!(root.permissions(&attrs(0o100, 1, 1)).execute);
    }
}
