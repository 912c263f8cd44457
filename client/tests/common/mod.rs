//! Test harness: a real `kiseki-server` and real `kiseki-client-fuse` mounts, started from the
//! binaries `cargo build --workspace` put next to this test, stopped by pid (and unmounted)
//! when dropped, whatever the test's outcome.

#![allow(dead_code, unsafe_code)]

pub mod agent;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A binary of the workspace, next to the test's own directory (`target/<profile>/`).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --all-targets` first",
        path.display()
    );
    path
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Reads `child`'s stdout until a line `ready`, within `timeout`; returns the lines.
fn wait_ready(child: &mut Child, timeout: Duration, what: &str) -> Vec<String> {
    let stdout = child.stdout.take().expect("piped stdout");
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + timeout;
    let mut lines = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match receiver.recv_timeout(left) {
            Ok(line) => {
                let ready = line == "ready";
                lines.push(line);
                if ready {
                    return lines;
                }
            }
            Err(_) => panic!("{what} did not become ready within {timeout:?}: {lines:?}"),
        }
    }
}

fn signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status();
}

/// Waits up to `timeout` for `child` to exit; kills it after that.
fn stop(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    if let Ok(Some(status)) = child.try_wait() {
        return Some(status);
    }
    signal(child.id(), "-TERM");
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// A running `kiseki-server` with the dev tenant.
pub struct Server {
    child: Child,
    pub data_dir: PathBuf,
    pub native_port: u16,
    pub access_key: String,
    pub secret_key: String,
    pub s3_endpoint: Option<String>,
    /// The Prometheus endpoint (`http://ADDR/metrics`).
    pub metrics_url: Option<String>,
    /// The development CA the server issued its TLS certificate from (none when plaintext).
    pub ca_path: Option<PathBuf>,
}

impl Server {
    pub fn start(data_dir: &Path, native_port: u16) -> Server {
        Server::start_with(data_dir, native_port, &[])
    }

    /// A server with `extra` command-line arguments.
    pub fn start_with(data_dir: &Path, native_port: u16, extra: &[&str]) -> Server {
        // Chunk frames over the bulk channel, as in the dev configuration.
        let mut args = vec!["--native-bulk-listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        Server::spawn(data_dir, native_port, &args)
    }

    /// A server that runs no bulk channel: chunk frames travel inside TLS.
    pub fn start_without_bulk(data_dir: &Path, native_port: u16) -> Server {
        Server::spawn(data_dir, native_port, &[])
    }

    fn spawn(data_dir: &Path, native_port: u16, extra: &[&str]) -> Server {
        let mut child = Command::new(binary("kiseki-server"))
            .arg("--data-dir")
            .arg(data_dir)
            .args([
                "--dev",
                "--metrics-listen",
                "127.0.0.1:0",
                "--s3-listen",
                "127.0.0.1:0",
                "--nfs-listen",
                "127.0.0.1:0",
            ])
            .args(["--native-listen", &format!("127.0.0.1:{native_port}")])
            .args(extra)
            .env("KISEKI_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting kiseki-server");
        let banner = wait_ready(&mut child, Duration::from_secs(30), "kiseki-server");
        let value = |label: &str| {
            banner.iter().find_map(|line| {
                line.trim()
                    .strip_prefix(label)
                    .map(|rest| rest.trim().to_owned())
            })
        };
        let access_key = value("S3 access key:").expect("access key in the banner");
        let secret_key = value("S3 secret key:").expect("secret key in the banner");
        let s3_endpoint = value("S3 endpoint:")
            .and_then(|rest| rest.split_whitespace().next().map(str::to_owned));
        let ca_path = value("native CA:").map(PathBuf::from);
        let metrics_url = value("metrics:");
        Server {
            child,
            data_dir: data_dir.to_owned(),
            native_port,
            access_key,
            secret_key,
            s3_endpoint,
            metrics_url,
            ca_path,
        }
    }

    /// The native service's URL (https unless the server serves plaintext).
    pub fn url(&self) -> String {
        let scheme = if self.ca_path.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://127.0.0.1:{}", self.native_port)
    }

    /// Stops the server (SIGTERM) and waits for it.
    pub fn stop(&mut self) {
        stop(&mut self.child, Duration::from_secs(15));
    }

    /// Kills the server (SIGKILL: no shutdown work at all) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A running `kiseki-client-fuse` mount.
pub struct Mount {
    child: Child,
    pub path: PathBuf,
}

/// Command for a mount of `server` at `path` (not started).
pub fn mount_command(server: &Server, path: &Path) -> Command {
    let mut command = Command::new(binary("kiseki-client-fuse"));
    command.arg(path).args(["--server", &server.url()]);
    match &server.ca_path {
        Some(ca) => command.arg("--ca").arg(ca),
        None => command.arg("--insecure-plaintext"),
    };
    command
        .args([
            "--allow-other",
            "--default-permissions",
            "--request-timeout",
            "5",
        ])
        .env("KISEKI_ACCESS_KEY", &server.access_key)
        .env("KISEKI_SECRET_KEY", &server.secret_key)
        .env("KISEKI_LOG", "warn");
    // Every mount is a cache agent: give each its own socket and L2 directory next to the
    // mount point, so mounts of concurrent tests never share (or wipe) each other's.
    let sibling = |suffix: &str| {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(suffix);
        path.with_file_name(name)
    };
    command
        .arg("--agent-socket")
        .arg(sibling(".agent.sock"))
        .arg("--cache-dir")
        .arg(sibling(".cache"))
        .args(["--cache-disk-bytes", "1GiB"]);
    command
}

impl Mount {
    pub fn start(server: &Server, path: &Path) -> Mount {
        std::fs::create_dir_all(path).unwrap();
        let mut child = mount_command(server, path)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting kiseki-client-fuse");
        wait_ready(&mut child, Duration::from_secs(20), "kiseki-client-fuse");
        Mount {
            child,
            path: path.to_owned(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Unmounts with SIGTERM; the exit status, if the process stopped within the bound.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        stop(&mut self.child, Duration::from_secs(15))
    }
}

/// Whether `path` is a mount point now.
pub fn is_mounted(path: &Path) -> bool {
    let path = path.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|line| line.split(' ').nth(4) == Some(path.as_str()))
}

impl Drop for Mount {
    fn drop(&mut self) {
        self.terminate();
        if is_mounted(&self.path) {
            let _ = Command::new("fusermount3")
                .arg("-u")
                .arg("-z")
                .arg(&self.path)
                .status();
        }
    }
}

/// A server and one mount in a fresh temporary directory.
pub struct Fixture {
    pub mount: Mount,
    pub server: Server,
    pub dir: tempfile::TempDir,
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::Builder::new()
            .prefix("kiseki-fuse-")
            .tempdir_in("/var/tmp")
            .unwrap();
        let server = Server::start(&dir.path().join("data"), free_port());
        let mount = Mount::start(&server, &dir.path().join("mnt"));
        Fixture { mount, server, dir }
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.mount.path.join(relative)
    }
}

/// Runs a small boto3 program against the server's S3 endpoint; returns its stdout.
pub fn boto3(server: &Server, program: &str) -> Vec<u8> {
    let endpoint = server
        .s3_endpoint
        .as_deref()
        .expect("the server prints its S3 endpoint");
    let script = format!(
        "import boto3, sys\n\
         s3 = boto3.client('s3', endpoint_url='{endpoint}', aws_access_key_id='{}', aws_secret_access_key='{}', region_name='us-east-1')\n{program}",
        server.access_key, server.secret_key
    );
    let output = std::process::Command::new("python3")
        .args(["-c", &script])
        .output()
        .expect("python3");
    assert!(
        output.status.success(),
        "boto3 failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// A transport to `server` with the dev access key, over TLS; chunk frames come over the bulk
/// channel when `bulk` (and the server runs one).
pub fn transport(server: &Server, bulk: bool) -> kiseki_client::GrpcTransport {
    kiseki_client::GrpcTransport::connect_lazy(&kiseki_client::GrpcOptions {
        endpoint: server.url(),
        security: kiseki_client::ChannelSecurity::Tls {
            ca_pem: std::fs::read(server.ca_path.as_ref().expect("a TLS server")).unwrap(),
            server_name: None,
            client_cert: None,
        },
        access_key: Some((server.access_key.clone(), server.secret_key.clone())),
        connect_timeout: Duration::from_secs(3),
        request_timeout: Duration::from_secs(10),
        bulk,
    })
    .unwrap()
}
