//! Shared by the S3 tests: start `kiseki-server` on free ports with a temp data dir, run real
//! clients as subprocesses with a time bound, read the server's memory, and open the
//! namespace in-process after the server stopped (the cross-protocol check).
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A running `kiseki-server` with its S3 endpoint and the dev tenant's key.
pub struct Server {
    child: Option<Child>,
    pub endpoint: String,
    pub metrics_url: String,
    pub access_key: String,
    pub secret_key: String,
    pub data_dir: PathBuf,
}

fn banner_value(banner: &[String], label: &str) -> String {
    banner
        .iter()
        .find_map(|line| {
            line.trim()
                .strip_prefix(label)
                .map(|rest| rest.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no {label:?} in {banner:?}"))
}

impl Server {
    /// Starts a server on `data_dir` (ports picked by the kernel, read from the banner).
    pub fn start(data_dir: &Path) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_kiseki-server"));
        command.arg("--data-dir").arg(data_dir).args([
            "--dev",
            "--s3-listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--native-listen",
            "127.0.0.1:0",
        ]);
        Self::spawn(command)
    }

    /// Starts a server from the site config at `config`.
    pub fn start_with_config(config: &Path) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_kiseki-server"));
        command.arg("--config").arg(config);
        Self::spawn(command)
    }

    /// Runs `command` (a `kiseki-server`) and waits for its `ready` line.
    fn spawn(mut command: Command) -> Server {
        let mut child = command
            .env("KISEKI_LOG", "warn,s3s=off")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting kiseki-server");
        let mut banner = Vec::new();
        for line in BufReader::new(child.stdout.take().unwrap()).lines() {
            let line = line.unwrap();
            let ready = line == "ready";
            banner.push(line);
            if ready {
                break;
            }
        }
        assert_eq!(
            banner.last().map(String::as_str),
            Some("ready"),
            "server did not start: {banner:?}"
        );
        let endpoint = banner_value(&banner, "S3 endpoint:")
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned();
        Server {
            child: Some(child),
            endpoint,
            metrics_url: banner_value(&banner, "metrics:"),
            access_key: banner_value(&banner, "S3 access key:"),
            secret_key: banner_value(&banner, "S3 secret key:"),
            data_dir: PathBuf::from(banner_value(&banner, "data dir:")),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// `VmRSS` or `VmHWM` of the server, in KiB.
    pub fn memory_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|line| {
                line.strip_prefix(field)
                    .and_then(|rest| rest.trim_start_matches(':').split_whitespace().next())
            })
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc status"))
    }

    /// Stops the server with SIGTERM and checks it exits cleanly within 30 s.
    pub fn stop(mut self) {
        let mut child = self.child.take().unwrap();
        let started = Instant::now();
        assert!(Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success());
        loop {
            if let Some(exit) = child.try_wait().unwrap() {
                assert!(exit.success(), "server exited with {exit} after SIGTERM");
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "server did not stop within 30 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The environment every client gets: the dev key, a region, no local AWS config.
    pub fn client_env(&self, command: &mut Command) {
        command
            .env("AWS_ACCESS_KEY_ID", &self.access_key)
            .env("AWS_SECRET_ACCESS_KEY", &self.secret_key)
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env("S3_ENDPOINT", &self.endpoint)
            .env_remove("AWS_CA_BUNDLE")
            .env_remove("AWS_PROFILE");
    }

    /// Runs `aws --endpoint-url ... <args>`; panics with its output unless it succeeds.
    pub fn aws(&self, args: &[&str]) -> String {
        let output = self.aws_output(args);
        assert!(
            output.status.success(),
            "aws {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Runs `aws` and returns its output whatever the exit status.
    pub fn aws_output(&self, args: &[&str]) -> Output {
        let mut command = Command::new("aws");
        command.args(["--endpoint-url", &self.endpoint]).args(args);
        self.client_env(&mut command);
        run(&mut command, Duration::from_secs(180))
    }

    /// Runs a Python script of `server/tests/s3/` with the client environment.
    pub fn python(&self, script: &str, args: &[&str]) -> Output {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/s3")
            .join(script);
        let mut command = Command::new("python3");
        command.arg(path).args(args);
        self.client_env(&mut command);
        run(&mut command, Duration::from_secs(240))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs a command to completion with a time bound (killed by pid when it runs over).
pub fn run(command: &mut Command, timeout: Duration) -> Output {
    let child = command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap_or_else(|error| {
        panic!("cannot run {command:?} (installed by .ci/test from .ci/apt-packages and .ci/pip-packages): {error}")
    });
    let pid = child.id();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(child.wait_with_output());
    });
    match receiver.recv_timeout(timeout) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("{command:?} did not finish within {timeout:?}");
        }
    }
}

/// Asserts a command succeeded and returns its stdout.
pub fn success(output: Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The namespace of a stopped server's data dir, opened in-process the way the server opens
/// it (embedded key manager, default pool).
pub fn open_namespace(data_dir: &Path) -> kiseki_namespace::Namespace {
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

/// Deterministic pseudo-random bytes (xorshift), so test data is reproducible.
pub fn test_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}
