//! Harness for the node cache agent: a mount whose agent has a known socket, L2 directory and
//! size, and the `kiseki` CLI run against it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use super::{binary, mount_command, wait_ready, Mount, Server};

/// A mount with its agent's socket and L2 directory.
pub struct AgentMount {
    pub mount: Mount,
    pub socket: PathBuf,
    pub cache_dir: PathBuf,
}

impl AgentMount {
    /// Mounts at `dir/<name>` with an L2 of `disk_bytes` in `dir/<name>-l2`.
    pub fn start(server: &Server, dir: &Path, name: &str, disk_bytes: u64) -> AgentMount {
        AgentMount::start_with(server, dir, name, disk_bytes, &[])
    }

    /// [`AgentMount::start`] with `extra` arguments (later ones override earlier ones).
    pub fn start_with(
        server: &Server,
        dir: &Path,
        name: &str,
        disk_bytes: u64,
        extra: &[&str],
    ) -> AgentMount {
        let path = dir.join(name);
        std::fs::create_dir_all(&path).unwrap();
        let socket = dir.join(format!("{name}-agent.sock"));
        let cache_dir = dir.join(format!("{name}-l2"));
        let mut child = mount_command(server, &path)
            .arg("--agent-socket")
            .arg(&socket)
            .arg("--cache-dir")
            .arg(&cache_dir)
            .arg("--cache-disk-bytes")
            .arg(disk_bytes.to_string())
            .args(["--cache-memory-bytes", "64MiB"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting kiseki-client-fuse");
        wait_ready(&mut child, Duration::from_secs(20), "kiseki-client-fuse");
        AgentMount {
            mount: Mount { child, path },
            socket,
            cache_dir,
        }
    }

    /// Runs `kiseki --socket <socket> args...` to completion.
    pub fn kiseki(&self, args: &[&str]) -> Output {
        kiseki(&self.socket, args)
    }

    /// Runs a `kiseki` command that must succeed; its stdout.
    pub fn kiseki_ok(&self, args: &[&str]) -> String {
        let output = self.kiseki(args);
        assert!(
            output.status.success(),
            "kiseki {args:?} failed: {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// `kiseki status --json`.
    pub fn status(&self) -> serde_json::Value {
        serde_json::from_str(&self.kiseki_ok(&["status", "--json"])).expect("status JSON")
    }

    /// Every file under the L2 directory.
    pub fn l2_files(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        let mut pending = vec![self.cache_dir.clone()];
        while let Some(dir) = pending.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    pending.push(path);
                } else {
                    files.push(path);
                }
            }
        }
        files
    }
}

/// Runs the `kiseki` CLI with `--socket socket` (stdout not a terminal), bounded in time.
pub fn kiseki(socket: &Path, args: &[&str]) -> Output {
    let child = Command::new(binary("kiseki"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running kiseki");
    let pid = child.id();
    // A watchdog: a hung CLI fails the test instead of hanging it.
    let (done, finished) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        if finished.recv_timeout(Duration::from_secs(120)).is_err() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    });
    let output = child.wait_with_output().expect("kiseki output");
    let _ = done.send(());
    output
}

/// Writes `len` bytes of a pattern seeded by `seed`.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}
