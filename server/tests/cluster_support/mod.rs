//! Shared by the cluster tests: a key server and N `kiseki-server` nodes on loopback (distinct
//! ports and data dirs, one cluster CA, the same dev tenant access key on every node), started
//! and stopped by pid; S3 traffic through boto3 (`s3_history.py`).

#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(dead_code)]

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The dev tenant's access key written into every node's data dir.
pub const ACCESS_KEY: &str = "KSKCLUSTERTEST0000001";
/// Its secret.
pub const SECRET_KEY: &str = "clustertestsecretclustertestsecret000000";

/// A binary of the workspace, next to the test's own directory (`target/<profile>/`).
pub fn binary(name: &str) -> PathBuf {
    if name == "kiseki-server" {
        return PathBuf::from(env!("CARGO_BIN_EXE_kiseki-server"));
    }
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

/// A free port below the kernel's ephemeral range (32768 and up by default), so that no
/// outgoing connection or port-0 listener of a running node can take it before the node that
/// is configured with it binds it (nodes restart on the same ports).
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
        ^ (u64::from(std::process::id()) << 20);
    for attempt in 0..1000u64 {
        let mixed = (seed
            ^ COUNTER
                .fetch_add(1, Ordering::Relaxed)
                .wrapping_mul(0x9E37_79B9))
        .wrapping_mul(6364136223846793005)
        .wrapping_add(attempt);
        let port = 20_000 + (mixed >> 33) % 12_000;
        let port = port as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port below the ephemeral range");
}

fn wait_port(port: u16, timeout: Duration) {
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < timeout, "port {port} did not open");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status();
}

/// One node of the test cluster.
pub struct Node {
    pub id: u64,
    pub s3_port: u16,
    pub cluster_port: u16,
    pub config: PathBuf,
    pub data_dir: PathBuf,
    out: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    pub metrics_url: Option<String>,
}

impl Node {
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The server's log (stderr) without backtraces, last lines, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text
            .lines()
            .filter(|line| !line.starts_with("  ") && !line.starts_with("Stack backtrace"))
            .collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

/// A key server and the nodes of a cluster.
pub struct TestCluster {
    pub dir: tempfile::TempDir,
    pub ca_dir: PathBuf,
    keyserver: Option<Child>,
    pub nodes: Vec<Node>,
}

impl TestCluster {
    /// Starts a key server and `count` nodes with `replicas` voters per shard, and waits until
    /// every node is ready.
    pub fn start(count: usize, replicas: usize) -> TestCluster {
        Self::start_with(count, replicas, "")
    }

    /// Like [`Self::start`], with `extra` appended to every node's config (YAML top-level
    /// keys, e.g. a `pools:` section; device paths relative to the data dir).
    pub fn start_with(count: usize, replicas: usize, extra: &str) -> TestCluster {
        let dir = tempfile::tempdir().unwrap();
        let ca_dir = dir.path().join("ca");
        let status = Command::new(binary("kiseki-server"))
            .args(["cluster-ca", "init", "--dir"])
            .arg(&ca_dir)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "cluster-ca init failed");
        let key_port = free_port();
        let keyserver = Command::new(binary("kiseki-keyserver"))
            .arg("--data-dir")
            .arg(dir.path().join("keyserver"))
            .args(["--listen", &format!("127.0.0.1:{key_port}")])
            .args(["--metrics-listen", "127.0.0.1:0"])
            .env("KISEKI_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting kiseki-keyserver");
        let mut cluster = TestCluster {
            dir,
            ca_dir,
            keyserver: Some(keyserver),
            nodes: Vec::new(),
        };
        wait_port(key_port, Duration::from_secs(30));
        let ports: Vec<(u16, u16)> = (0..count).map(|_| (free_port(), free_port())).collect();
        let peers: String = ports
            .iter()
            .enumerate()
            .map(|(index, (_, cluster_port))| {
                format!(
                    "    - {{ id: {}, address: \"127.0.0.1:{cluster_port}\" }}\n",
                    index + 1
                )
            })
            .collect();
        for (index, (s3_port, cluster_port)) in ports.iter().enumerate() {
            let id = index as u64 + 1;
            let data_dir = cluster.dir.path().join(format!("node-{id}"));
            std::fs::create_dir_all(&data_dir).unwrap();
            std::fs::write(
                data_dir.join("access-keys.yaml"),
                format!(
                    "- access_key_id: {ACCESS_KEY}\n  secret_access_key: {SECRET_KEY}\n  \
                     tenant: 1\n  workload: dev\n"
                ),
            )
            .unwrap();
            let config = cluster.dir.path().join(format!("node-{id}.yaml"));
            let ca = &cluster.ca_dir;
            std::fs::write(
                &config,
                format!(
                    "data_dir: {data}\nmetrics_listen: 127.0.0.1:0\ns3_listen: 127.0.0.1:{s3_port}\n\
                     native_listen: 127.0.0.1:0\nkeyserver: http://127.0.0.1:{key_port}\n\
                     dev_tenant: {{ id: 1 }}\ncluster:\n  node_id: {id}\n  listen: 127.0.0.1:{cluster_port}\n  \
                     replicas: {replicas}\n  peers:\n{peers}  tls:\n    ca_cert: {ca_cert}\n    ca_key: {ca_key}\n\
                     {extra}",
                    data = data_dir.display(),
                    ca_cert = ca.join("ca.pem").display(),
                    ca_key = ca.join("ca.key").display(),
                ),
            )
            .unwrap();
            cluster.nodes.push(Node {
                id,
                s3_port: *s3_port,
                cluster_port: *cluster_port,
                config,
                out: cluster.dir.path().join(format!("node-{id}.out")),
                log: cluster.dir.path().join(format!("node-{id}.log")),
                data_dir,
                child: None,
                metrics_url: None,
            });
        }
        for index in 0..count {
            cluster.spawn(index);
        }
        for index in 0..count {
            cluster.wait_ready(index, Duration::from_secs(60));
        }
        cluster
    }

    fn spawn(&mut self, index: usize) {
        let node = &mut self.nodes[index];
        let out = std::fs::File::create(&node.out).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .unwrap();
        let child = Command::new(binary("kiseki-server"))
            .arg("--config")
            .arg(&node.config)
            .env("KISEKI_LOG", "info,s3s=off,openraft=warn")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(log)
            .spawn()
            .expect("starting kiseki-server");
        node.child = Some(child);
        node.metrics_url = None;
    }

    /// Waits for node `index` to print `ready`.
    pub fn wait_ready(&mut self, index: usize, timeout: Duration) {
        let started = Instant::now();
        loop {
            let node = &mut self.nodes[index];
            let text = std::fs::read_to_string(&node.out).unwrap_or_default();
            if text.lines().any(|line| line == "ready") {
                node.metrics_url = text.lines().find_map(|line| {
                    line.trim()
                        .strip_prefix("metrics:")
                        .map(|rest| rest.trim().to_owned())
                });
                return;
            }
            if let Some(exit) = node
                .child
                .as_mut()
                .and_then(|child| child.try_wait().unwrap())
            {
                panic!(
                    "node {} exited with {exit} before ready:\n{text}\n{}",
                    node.id,
                    node.log_tail()
                );
            }
            assert!(
                started.elapsed() < timeout,
                "node {} not ready within {timeout:?}:\n{text}\n{}",
                node.id,
                node.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `kill -9` node `index` and reaps it.
    pub fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.nodes[index].child.take() {
            signal(child.id(), "CONT");
            signal(child.id(), "KILL");
            let _ = child.wait();
        }
    }

    /// Restarts node `index` (after [`Self::kill`]) and waits until it is ready.
    pub fn restart(&mut self, index: usize) {
        assert!(self.nodes[index].child.is_none(), "node is running");
        self.spawn(index);
        self.wait_ready(index, Duration::from_secs(60));
    }

    /// Sends SIGSTOP or SIGCONT to node `index`.
    pub fn signal(&self, index: usize, name: &str) {
        let pid = self.nodes[index].pid().expect("node running");
        signal(pid, name);
    }

    /// The index of the node that reports leading tenant 1's shard (from its metrics).
    pub fn leader(&self) -> Option<usize> {
        self.nodes.iter().position(|node| {
            node.child.is_some()
                && node
                    .metrics_url
                    .as_deref()
                    .and_then(http_get)
                    .is_some_and(|text| {
                        text.lines().any(|line| {
                            line.contains("shard_is_leader")
                                && line.contains("\"1\"")
                                && line.trim_end().ends_with(" 1")
                        })
                    })
        })
    }

    /// Every node's S3 endpoint, comma-separated.
    pub fn endpoints(&self) -> String {
        self.nodes
            .iter()
            .map(Node::endpoint)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Runs the S3 helper with `args`, bounded by `timeout`.
    pub fn s3(&self, args: &[&str], timeout: Duration) -> Output {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cluster_support/s3_history.py");
        let mut command = Command::new("python3");
        command
            .arg(script)
            .args(args)
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env_remove("AWS_CA_BUNDLE")
            .env_remove("AWS_PROFILE");
        run(&mut command, timeout)
    }

    /// Puts one object through node `index`; panics with the node logs unless it succeeds.
    pub fn put(&self, index: usize, key: &str, size: usize, create_bucket: bool) {
        let mut args = vec![
            "put".to_owned(),
            "--endpoint".to_owned(),
            self.nodes[index].endpoint(),
            "--key".to_owned(),
            key.to_owned(),
            "--size".to_owned(),
            size.to_string(),
        ];
        if create_bucket {
            args.push("--create-bucket".to_owned());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = self.s3(&args, Duration::from_secs(60));
        self.expect_success(output, &format!("put {key} via node {}", index + 1));
    }

    /// Reads one object back through node `index` and checks it byte-exact.
    pub fn check_get(&self, index: usize, key: &str, size: usize) {
        let endpoint = self.nodes[index].endpoint();
        let size = size.to_string();
        let output = self.s3(
            &[
                "get",
                "--endpoint",
                &endpoint,
                "--key",
                key,
                "--size",
                &size,
            ],
            Duration::from_secs(60),
        );
        self.expect_success(output, &format!("get {key} via node {}", index + 1));
    }

    /// Runs `kiseki-server <command> --config <node index's config>` (e.g. `rebuild`, `scrub`)
    /// to completion, bounded by `timeout`; panics with the output and node logs unless it
    /// succeeds. Returns its stdout.
    pub fn admin(&self, index: usize, command: &str, timeout: Duration) -> String {
        let mut child = Command::new(binary("kiseki-server"));
        child
            .args([command, "--config"])
            .arg(&self.nodes[index].config)
            .env("KISEKI_LOG", "warn");
        let output = run(&mut child, timeout);
        self.expect_success(
            output,
            &format!("kiseki-server {command} on node {}", index + 1),
        )
    }

    /// The tail of every node's log, for failure messages.
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|node| format!("--- node {} log:\n{}", node.id, node.log_tail()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn expect_success(&self, output: Output, what: &str) -> String {
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if !output.status.success() {
            panic!(
                "{what} failed:\nstdout: {stdout}\nstderr: {}\n{}",
                String::from_utf8_lossy(&output.stderr),
                self.logs()
            );
        }
        stdout
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for index in 0..self.nodes.len() {
            self.kill(index);
        }
        if let Some(mut child) = self.keyserver.take() {
            signal(child.id(), "KILL");
            let _ = child.wait();
        }
    }
}

/// Every fragment file (`<hex chunk id>.<index>`) under a device directory, without temporary
/// files.
pub fn fragment_files(device: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![device.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if !entry.file_name().to_string_lossy().starts_with(".tmp") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// A plain HTTP GET (metrics), bounded.
pub fn http_get(url: &str) -> Option<String> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest.split_once('/')?;
    let mut stream = TcpStream::connect(host).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    write!(stream, "GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    Some(text)
}

/// Runs a command to completion with a time bound (killed by pid when it runs over).
pub fn run(command: &mut Command, timeout: Duration) -> Output {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot run {command:?}: {error}"));
    let pid = child.id();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(child.wait_with_output());
    });
    match receiver.recv_timeout(timeout) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            signal(pid, "KILL");
            panic!("{command:?} did not finish within {timeout:?}");
        }
    }
}
