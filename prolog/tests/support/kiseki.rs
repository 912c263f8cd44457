//! A single-node Kiseki for the Slurm test: a dev kiseki-server and kiseki-client-fuse (the FUSE
//! mount and the node's cache agent), both stopped by pid, the mount unmounted.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{built, free_port, poll, stdout_of, Daemon};

/// A single-node Kiseki: a dev `kiseki-server` and `kiseki-client-fuse` (mount + cache agent).
pub struct Kiseki {
    pub mount: PathBuf,
    pub socket: PathBuf,
    // Dropped in this order: client (unmounts), then server.
    client: Option<Daemon>,
    server: Option<Daemon>,
}

/// Reads `child`'s stdout until a line `ready`, within `limit`; the lines read.
fn wait_ready(stdout: Option<ChildStdout>, limit: Duration, what: &str) -> Vec<String> {
    let stdout = stdout.expect("piped stdout");
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + limit;
    let mut lines = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match receiver.recv_timeout(left) {
            Ok(line) => {
                let ready = line.trim() == "ready";
                lines.push(line);
                if ready {
                    return lines;
                }
            }
            Err(_) => panic!("{what} did not become ready within {limit:?}: {lines:?}"),
        }
    }
}

impl Kiseki {
    pub fn start(dir: &Path) -> Kiseki {
        let native_port = free_port();
        let mut server = Command::new(built("kiseki-server"))
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args([
                "--dev",
                "--metrics-listen",
                "127.0.0.1:0",
                "--s3-listen",
                "127.0.0.1:0",
            ])
            .args(["--nfs-listen", "127.0.0.1:0"])
            .args(["--native-listen", &format!("127.0.0.1:{native_port}")])
            .env("KISEKI_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting kiseki-server");
        let stdout = server.stdout.take();
        // Owned by a Daemon first, so a failed start below still stops it.
        let server = Daemon::from_child("kiseki-server", server);
        let banner = wait_ready(stdout, Duration::from_secs(60), "kiseki-server");
        let value = |label: &str| {
            banner.iter().find_map(|line| {
                line.trim()
                    .strip_prefix(label)
                    .map(|rest| rest.trim().to_owned())
            })
        };
        let access_key = value("S3 access key:").expect("access key in the banner");
        let secret_key = value("S3 secret key:").expect("secret key in the banner");
        let mount = dir.join("kiseki");
        let socket = dir.join("agent.sock");
        std::fs::create_dir_all(&mount).expect("mount point");
        let ca = value("native CA:");
        let scheme = if ca.is_some() { "https" } else { "http" };
        let mut client = Command::new(built("kiseki-client-fuse"));
        client
            .arg(&mount)
            .args(["--server", &format!("{scheme}://127.0.0.1:{native_port}")]);
        match ca {
            Some(ca) => client.arg("--ca").arg(ca),
            None => client.arg("--insecure-plaintext"),
        };
        let mut client = client
            .args(["--allow-other", "--default-permissions"])
            .arg("--agent-socket")
            .arg(&socket)
            .arg("--cache-dir")
            .arg(dir.join("cache"))
            .args([
                "--cache-disk-bytes",
                "256MiB",
                "--cache-memory-bytes",
                "64MiB",
            ])
            .env("KISEKI_ACCESS_KEY", access_key)
            .env("KISEKI_SECRET_KEY", secret_key)
            .env("KISEKI_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting kiseki-client-fuse");
        let stdout = client.stdout.take();
        let client = Daemon::from_child("kiseki-client-fuse", client);
        let kiseki = Kiseki {
            mount,
            socket,
            client: Some(client),
            server: Some(server),
        };
        wait_ready(stdout, Duration::from_secs(30), "kiseki-client-fuse");
        let socket_up = poll(Duration::from_secs(20), || {
            kiseki.socket.exists().then_some(())
        });
        assert!(
            socket_up.is_some(),
            "the agent socket {} did not appear",
            kiseki.socket.display()
        );
        kiseki
    }

    /// The pid of the agent (kiseki-client-fuse).
    pub fn agent_pid(&self) -> Option<u32> {
        self.client.as_ref().map(Daemon::pid)
    }

    /// Stops the agent and unmounts (the server keeps running).
    pub fn stop_agent(&mut self) {
        drop(self.client.take());
        self.unmount();
    }

    fn unmount(&self) {
        let mounted = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .any(|line| line.split(' ').nth(4) == Some(&*self.mount.to_string_lossy()));
        if mounted {
            let _ = Command::new("fusermount3")
                .arg("-u")
                .arg("-z")
                .arg(&self.mount)
                .status();
        }
    }

    /// `kiseki --socket S <args>`.
    pub fn cli(&self) -> Command {
        let mut command = Command::new(built("kiseki"));
        command.arg("--socket").arg(&self.socket);
        command
    }

    /// `kiseki status --json`.
    pub fn status(&self) -> serde_json::Value {
        let text = stdout_of(
            self.cli().args(["status", "--json"]),
            Duration::from_secs(20),
        );
        serde_json::from_str(&text).unwrap_or_else(|error| panic!("status JSON {text:?}: {error}"))
    }

    /// The pins of `job` in a status: (dataset, bytes, chunks, cached chunks).
    pub fn pins_of(status: &serde_json::Value, job: &str) -> Vec<(String, u64, u64, u64)> {
        let pins = status["pins"].as_array().cloned().unwrap_or_default();
        pins.iter()
            .filter(|pin| {
                pin["jobs"]
                    .as_array()
                    .is_some_and(|jobs| jobs.iter().any(|j| j.as_str() == Some(job)))
            })
            .map(|pin| {
                (
                    pin["dataset"].as_str().unwrap_or_default().to_owned(),
                    pin["bytes"].as_u64().unwrap_or_default(),
                    pin["chunks"].as_u64().unwrap_or_default(),
                    pin["cached_chunks"].as_u64().unwrap_or_default(),
                )
            })
            .collect()
    }
}

impl Drop for Kiseki {
    fn drop(&mut self) {
        if let Some(pid) = self.agent_pid() {
            // A test may have stopped it (SIGSTOP) on purpose.
            let _ = Command::new("kill")
                .args(["-CONT", &pid.to_string()])
                .status();
        }
        self.stop_agent();
        drop(self.server.take());
    }
}
