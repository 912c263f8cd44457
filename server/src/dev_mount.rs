//! Development convenience: once the server is ready, mount the development tenant's namespace
//! with `kiseki-client-fuse` (the binary next to this one), so that one command brings up S3,
//! NFS and a FUSE mount; unmount it at shutdown. Production compute nodes run the client
//! themselves. The mount is also the node cache agent: its L2 lives under the data dir and
//! `kiseki status` finds it on the default socket unless `agent_socket` says otherwise. The
//! mount authenticates with the development tenant's client certificate (mutual TLS) when the
//! server issued one, else with its access key.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Deserialize;

use crate::access_keys::AccessKey;

/// The `dev_mount` config key: a mount point (`dev_mount: /kiseki`), or a map with the cache
/// agent's settings too.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum DevMountConfig {
    /// Just the mount point.
    Path(PathBuf),
    /// Mount point and cache agent settings.
    Options(DevMountOptions),
}

/// `dev_mount` as a map.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevMountOptions {
    /// Where to mount.
    pub mount_point: PathBuf,
    /// The cache agent's socket (default `/run/kiseki/agent.sock`).
    pub agent_socket: Option<PathBuf>,
    /// L2 cache directory (default `<data_dir>/node-cache`).
    pub cache_dir: Option<PathBuf>,
    /// L2 cache size in bytes (default 4 GiB).
    pub cache_disk_bytes: Option<u64>,
}

/// How the development mount proves who it is.
pub enum DevIdentity<'a> {
    /// A client certificate and its key (PEM files).
    Certificate {
        /// The certificate.
        cert: &'a Path,
        /// Its private key.
        key: &'a Path,
    },
    /// The tenant's access key.
    AccessKey(&'a AccessKey),
}

/// L2 size of the development mount unless configured.
const DEV_CACHE_DISK_BYTES: u64 = 4 << 30;

impl DevMountConfig {
    /// The settings as a map.
    pub fn options(&self) -> DevMountOptions {
        match self {
            DevMountConfig::Path(path) => DevMountOptions {
                mount_point: path.clone(),
                agent_socket: None,
                cache_dir: None,
                cache_disk_bytes: None,
            },
            DevMountConfig::Options(options) => options.clone(),
        }
    }
}

/// Longest wait for the mount to appear, and for the client to unmount on SIGTERM.
const MOUNT_WAIT: Duration = Duration::from_secs(15);

/// A running `kiseki-client-fuse` of the development tenant.
pub struct DevMount {
    child: Child,
    mount_point: PathBuf,
}

impl DevMount {
    /// Mounts at the configured mount point (created if missing; must be empty) through the
    /// native service at `server_url`, trusting `ca`, as the workload of `identity`; the cache
    /// agent keeps its L2 under `data_dir` unless configured.
    pub fn start(
        config: &DevMountConfig,
        data_dir: &Path,
        server_url: &str,
        ca: &Path,
        identity: DevIdentity<'_>,
    ) -> anyhow::Result<Self> {
        let options = config.options();
        let mount_point = options.mount_point.as_path();
        let cache_dir = options
            .cache_dir
            .clone()
            .unwrap_or_else(|| data_dir.join("node-cache"));
        std::fs::create_dir_all(mount_point)
            .with_context(|| format!("creating mount point {}", mount_point.display()))?;
        let exe = std::env::current_exe().context("locating kiseki-server")?;
        let client = exe.with_file_name("kiseki-client-fuse");
        anyhow::ensure!(
            client.exists(),
            "dev_mount needs {} (build it: cargo build --release --bins)",
            client.display()
        );
        let mut command = Command::new(&client);
        command
            .arg(mount_point)
            .args([
                "--server",
                server_url,
                "--allow-other",
                "--default-permissions",
            ])
            .arg("--ca")
            .arg(ca)
            .arg("--cache-dir")
            .arg(&cache_dir)
            .arg("--cache-disk-bytes")
            .arg(
                options
                    .cache_disk_bytes
                    .unwrap_or(DEV_CACHE_DISK_BYTES)
                    .to_string(),
            )
            .args(
                options.agent_socket.iter().flat_map(|socket| {
                    [std::ffi::OsStr::new("--agent-socket"), socket.as_os_str()]
                }),
            )
            .env_remove("KISEKI_ACCESS_KEY")
            .env_remove("KISEKI_SECRET_KEY");
        match identity {
            DevIdentity::Certificate { cert, key } => {
                command.arg("--cert").arg(cert).arg("--key").arg(key);
            }
            // The secret goes through the environment, not the command line others can read.
            DevIdentity::AccessKey(key) => {
                command
                    .env("KISEKI_ACCESS_KEY", &key.access_key_id)
                    .env("KISEKI_SECRET_KEY", &key.secret_access_key);
            }
        }
        let child = command
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn dev_mount_is_a_path_or_a_map_with_agent_settings() {
        let path: DevMountConfig = serde_yaml::from_str("/kiseki").unwrap();
        assert_eq!(path.options().mount_point, PathBuf::from("/kiseki"));
        let map: DevMountConfig = serde_yaml::from_str(
            "{mount_point: /k, agent_socket: /tmp/a.sock, cache_dir: /tmp/l2, cache_disk_bytes: 1073741824}",
        )
        .unwrap();
        let options = map.options();
        assert_eq!(options.agent_socket, Some(PathBuf::from("/tmp/a.sock")));
        assert_eq!(options.cache_disk_bytes, Some(1 << 30));
        assert!(
            serde_yaml::from_str::<DevMountConfig>("{mount_point: /k, cache_size: 3}").is_err()
        );
    }
}
