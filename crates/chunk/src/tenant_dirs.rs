//! The directory layout the file stores share: `<root>/t<tenant>/<two hex digits>/<file>`, one
//! fan-out directory per first byte of the chunk id, so no directory grows past a few thousand
//! entries per tenant.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use kiseki_types::{ChunkId, TenantId};

/// The fan-out directory of chunk `id` of `tenant` under `root`.
pub(crate) fn fan_out_dir(root: &Path, tenant: TenantId, id: &ChunkId) -> PathBuf {
    let hex = id.to_hex();
    root.join(format!("t{}", tenant.0)).join(&hex[..2])
}

/// Calls `visit` with the tenant and file name of every file in the layout under `root`
/// (nothing when `root` does not exist); names that are not the layout's are skipped.
pub(crate) fn for_each_file(root: &Path, mut visit: impl FnMut(TenantId, &str)) -> io::Result<()> {
    let tenants = match fs::read_dir(root) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(error),
    };
    for tenant_entry in tenants {
        let tenant_entry = tenant_entry?;
        let name = tenant_entry.file_name();
        let Some(tenant) = name
            .to_str()
            .and_then(|name| name.strip_prefix('t'))
            .and_then(|id| id.parse().ok())
            .map(TenantId)
        else {
            continue;
        };
        for fan in fs::read_dir(tenant_entry.path())? {
            let fan = fan?;
            if !fan.file_type()?.is_dir() {
                continue;
            }
            for file in fs::read_dir(fan.path())? {
                if let Some(name) = file?.file_name().to_str() {
                    visit(tenant, name);
                }
            }
        }
    }
    Ok(())
}
