//! What the NFS integration tests share: a `kiseki-server` started from a config with NFS
//! exports on free ports, libnfs command-line tools run with a time limit, and a libnfs client
//! (`nfs_client.py`, the C library through ctypes) driven command by command.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Exports every test server has: `/data` (read-write, no squash), `/ro` (read-only), `/denied`
/// (a network the tests are not in) and `/squashed` (root squash), all of tenant 1's `/data`.
pub const EXPORTS: &str = "
  exports:
    - { name: data, tenant: 1, path: /data, clients: [127.0.0.0/8], root_squash: false }
    - { name: ro, tenant: 1, path: /data, clients: [127.0.0.1], read_only: true }
    - { name: denied, tenant: 1, path: /data, clients: [10.0.0.0/8, 192.0.2.7] }
    - { name: squashed, tenant: 1, path: /data, clients: [127.0.0.1/32] }
";

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running server.
pub struct Server {
    child: Child,
    pub data_dir: PathBuf,
    pub nfs_port: u16,
    pub metrics_port: u16,
    pub banner: Vec<String>,
}

impl Server {
    /// Starts a server on `data_dir` serving NFS on `nfs_port` with the test exports.
    pub fn start(data_dir: &Path, nfs_port: u16) -> Server {
        let metrics_port = free_port();
        let config = format!(
            "data_dir: {}\nmetrics_listen: 127.0.0.1:{metrics_port}\nnative_listen: 127.0.0.1:0\ns3_listen: 127.0.0.1:0\n\
             dev_tenant: {{ id: 1 }}\nnfs:\n  listen: 127.0.0.1:{nfs_port}{EXPORTS}",
            data_dir.display(),
        );
        let config_path = data_dir.join("nfs-test.yaml");
        std::fs::create_dir_all(data_dir).unwrap();
        std::fs::write(&config_path, config).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_kiseki-server"))
            .arg("--config")
            .arg(&config_path)
            .env("KISEKI_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (lines, banner_lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if lines.send(line).is_err() {
                    return;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut banner = Vec::new();
        while banner.last().map(String::as_str) != Some("ready") {
            let left = deadline.saturating_duration_since(Instant::now());
            match banner_lines.recv_timeout(left) {
                Ok(line) => banner.push(line),
                Err(_) => {
                    let _ = child.kill();
                    panic!("server did not start within 30 s: {banner:?}");
                }
            }
        }
        Server {
            child,
            data_dir: data_dir.to_path_buf(),
            nfs_port,
            metrics_port,
            banner,
        }
    }

    /// The value after `label` in the start-up banner.
    pub fn banner_value(&self, label: &str) -> String {
        self.banner
            .iter()
            .find_map(|line| {
                line.trim()
                    .strip_prefix(label)
                    .map(|rest| rest.trim().to_owned())
            })
            .unwrap_or_else(|| panic!("no {label:?} in {:?}", self.banner))
    }

    /// Runs `aws s3api`/`aws s3` against the server's S3 endpoint with the dev tenant's key.
    pub fn aws(&self, args: &[&str]) -> Output {
        let endpoint = self
            .banner_value("S3 endpoint:")
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned();
        let output = Command::new("timeout")
            .args(["--kill-after=5", "120", "aws", "--endpoint-url", &endpoint])
            .args(args)
            .env("AWS_ACCESS_KEY_ID", self.banner_value("S3 access key:"))
            .env("AWS_SECRET_ACCESS_KEY", self.banner_value("S3 secret key:"))
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env_remove("AWS_CA_BUNDLE")
            .env_remove("AWS_PROFILE")
            .output()
            .expect("running aws");
        assert!(
            output.status.success(),
            "aws {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// An `nfs://` URL of `path` (export, then directories and file) on this server.
    pub fn url(&self, path: &str) -> String {
        format!(
            "nfs://127.0.0.1{path}?nfsport={0}&mountport={0}&version=3",
            self.nfs_port
        )
    }

    /// Stops the server with SIGTERM and waits (at most 20 s) for a clean exit.
    pub fn stop(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let started = Instant::now();
        loop {
            if let Some(exit) = self.child.try_wait().unwrap() {
                assert!(exit.success(), "server exited with {exit}");
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "server did not stop within 20 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the server without warning (SIGKILL).
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// The server's Prometheus text.
    pub fn metrics(&self) -> String {
        use std::io::Read;
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.metrics_port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        write!(
            stream,
            "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a libnfs tool (`nfs-cp`, `nfs-ls`, `nfs-cat`) with a time limit.
pub fn tool(program: &str, args: &[&str], limit: Duration) -> Output {
    let output = Command::new("timeout")
        .arg("--kill-after=5")
        .arg(limit.as_secs().to_string())
        .arg(program)
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("running {program} (apt package libnfs-utils): {error}"));
    assert_ne!(
        output.status.code(),
        Some(124),
        "{program} {args:?} timed out after {limit:?}"
    );
    output
}

/// Runs a libnfs tool that must succeed; its standard output.
pub fn tool_ok(program: &str, args: &[&str], limit: Duration) -> String {
    let output = tool(program, args, limit);
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A libnfs client process with the export mounted.
pub struct Client {
    child: Child,
    input: ChildStdin,
    replies: mpsc::Receiver<String>,
}

const CLIENT_REPLY_LIMIT: Duration = Duration::from_secs(60);

impl Client {
    /// Mounts `url`; `Err` with the client's message when the mount is refused.
    pub fn mount(url: &str) -> Result<Client, String> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/nfs_client.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(url)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let input = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (sender, replies) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if sender.send(line).is_err() {
                    return;
                }
            }
        });
        let mut client = Client {
            child,
            input,
            replies,
        };
        match client.reply() {
            Ok(_) => Ok(client),
            Err((_, message)) => Err(message),
        }
    }

    fn reply(&mut self) -> Result<String, (i32, String)> {
        let line = self
            .replies
            .recv_timeout(CLIENT_REPLY_LIMIT)
            .unwrap_or_else(|_| {
                let _ = self.child.kill();
                panic!("libnfs client gave no answer within {CLIENT_REPLY_LIMIT:?}")
            });
        if let Some(result) = line.strip_prefix("ok") {
            return Ok(result.trim().to_owned());
        }
        let rest = line.strip_prefix("err ").unwrap_or(&line);
        let (errno, message) = rest.split_once(' ').unwrap_or((rest, ""));
        Err((errno.parse().unwrap_or(-1), message.to_owned()))
    }

    /// Runs one command (see `nfs_client.py`): its result, or the errno and message.
    pub fn run(&mut self, command: &str) -> Result<String, (i32, String)> {
        writeln!(self.input, "{command}").unwrap();
        self.input.flush().unwrap();
        self.reply()
    }

    /// Runs a command that must succeed.
    pub fn ok(&mut self, command: &str) -> String {
        self.run(command)
            .unwrap_or_else(|error| panic!("{command}: {error:?}"))
    }

    /// Runs a command that must fail with `errno`.
    pub fn fails(&mut self, command: &str, errno: i32) {
        match self.run(command) {
            Err((got, _)) if got == errno => {}
            other => panic!("{command}: expected errno {errno}, got {other:?}"),
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `len` bytes that differ at every offset (a seeded xorshift stream), written to `path`.
pub fn write_pattern_file(path: &Path, len: usize, seed: u64) {
    let mut state = seed | 1;
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut block = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        for word in block.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        let take = left.min(block.len());
        file.write_all(&block[..take]).unwrap();
        left -= take;
    }
    file.flush().unwrap();
}

/// Whether two files hold the same bytes (compared in blocks, without loading either whole).
pub fn same_contents(a: &Path, b: &Path) -> bool {
    use std::io::Read;
    let (mut a, mut b) = (
        std::fs::File::open(a).unwrap(),
        std::fs::File::open(b).unwrap(),
    );
    let (mut block_a, mut block_b) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let read_a = read_full(&mut a, &mut block_a);
        let read_b = read_full(&mut b, &mut block_b);
        if block_a[..read_a] != block_b[..read_b] {
            return false;
        }
        if read_a == 0 {
            return true;
        }
    }
    fn read_full(file: &mut std::fs::File, buffer: &mut [u8]) -> usize {
        let mut filled = 0;
        while filled < buffer.len() {
            match file.read(&mut buffer[filled..]).unwrap() {
                0 => break,
                read => filled += read,
            }
        }
        filled
    }
}

/// The namespace of a stopped server's data dir, opened in-process the way the server opens it
/// (embedded key manager, default pool).
pub fn open_namespace(data_dir: &Path) -> kiseki_namespace::Namespace {
    use std::sync::Arc;

    use kiseki_chunk::{ChunkService, DeviceClass, FsChunkStore, Placement, PoolName};
    use kiseki_crypto::{InternalKms, KeyManager};
    let keys_dir = data_dir.join("keyserver");
    let kms = InternalKms::open(&keys_dir.join("kms")).unwrap();
    let manager = KeyManager::open(&keys_dir.join("keys"), Arc::new(kms)).unwrap();
    let pool = PoolName("default".into());
    let store =
        FsChunkStore::open([(pool.clone(), data_dir.join("chunks"), DeviceClass::FastNvme)])
            .unwrap();
    let chunks = ChunkService::new(Arc::new(store), Placement { pool });
    let config = kiseki_namespace::NamespaceConfig::new(data_dir.join("shards"));
    kiseki_namespace::Namespace::new(config, Arc::new(manager), chunks).unwrap()
}
