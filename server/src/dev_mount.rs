//! Development convenience: once the server is ready, mount the development tenant's namespace
//! with `kiseki-client-fuse` (the binary next to this one), so that one command brings up S3,
//! NFS and a FUSE mount; unmount it at shutdown. Production compute nodes run the client
//! themselves.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::access_keys::AccessKey;

/// Longest wait for the mount to appear, and for the client to unmount on SIGTERM.
const MOUNT_WAIT: Duration = Duration::from_secs(15);

/// A running `kiseki-client-fuse` of the development tenant.
pub struct DevMount {
    child: Child,
    mount_point: PathBuf,
}

impl DevMount {
    /// Mounts at `mount_point` (created if missing; must be empty) through the native service at
    /// `server_url`, trusting `ca`, as the workload of `key`.
    pub fn start(
        mount_point: &Path,
        server_url: &str,
        ca: &Path,
        key: &AccessKey,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(mount_point)
            .with_context(|| format!("creating mount point {}", mount_point.display()))?;
        let exe = std::env::current_exe().context("locating kiseki-server")?;
        let client = exe.with_file_name("kiseki-client-fuse");
        anyhow::ensure!(
            client.exists(),
            "dev_mount needs {} (build it: cargo build --release --bins)",
            client.display()
        );
        let child = Command::new(&client)
            .arg(mount_point)
            .args([
                "--server",
                server_url,
                "--allow-other",
                "--default-permissions",
            ])
            .arg("--ca")
            .arg(ca)
            // The secret goes through the environment, not the command line others can read.
            .env("KISEKI_ACCESS_KEY", &key.access_key_id)
            .env("KISEKI_SECRET_KEY", &key.secret_access_key)
            .stdin(Stdio::null())
            // The server owns stdout (its banner); the client logs to stderr.
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", client.display()))?;
        let mut mount = DevMount {
            child,
            mount_point: mount_point.to_path_buf(),
        };
        mount.wait_until_mounted()?;
        Ok(mount)
    }

    fn wait_until_mounted(&mut self) -> anyhow::Result<()> {
        let started = Instant::now();
        while started.elapsed() < MOUNT_WAIT {
            if let Some(status) = self.child.try_wait()? {
                anyhow::bail!(
                    "kiseki-client-fuse exited with {status} before mounting {}",
                    self.mount_point.display()
                );
            }
            if is_mount_point(&self.mount_point) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        anyhow::bail!(
            "{} was not mounted within {MOUNT_WAIT:?}",
            self.mount_point.display()
        )
    }

    /// The mount point.
    pub fn mount_point(&self) -> &Path {
        &self.mount_point
    }

    /// Asks the client to unmount (SIGTERM by pid) and waits for it; kills it if it hangs.
    pub async fn stop(mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let started = Instant::now();
        while started.elapsed() < MOUNT_WAIT {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tracing::warn!(mount = %self.mount_point.display(), "FUSE client did not stop on SIGTERM; killing it");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `path` is the root of a mounted file system (its device differs from its parent's).
fn is_mount_point(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(own), Some(Ok(parent))) = (path.metadata(), path.parent().map(Path::metadata)) else {
        return false;
    };
    own.dev() != parent.dev()
}
