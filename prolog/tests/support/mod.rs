//! Test harness: a real one-node Slurm (munged, slurmctld, slurmd) and a real single-node Kiseki
//! (kiseki-server + kiseki-client-fuse with its cache agent) in one temporary directory, with
//! their own sockets, ports and state, so nothing touches a system Slurm or Kiseki. Every daemon
//! is started here and stopped by pid when dropped, whatever the test's outcome; the mount is
//! unmounted.

// A test harness reports broken setup by panicking with the reason.
#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)]

mod kiseki;
mod slurm;

pub use kiseki::Kiseki;
pub use slurm::{Slurm, SlurmSetup};

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A file `cargo build --workspace` puts in `target/<profile>/` (next to this test's directory).
pub fn built(name: &str) -> PathBuf {
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
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

/// Runs `command` to completion within `limit` (killing it after that).
pub fn output(command: &mut Command, limit: Duration) -> Output {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("starting {command:?}: {error}"));
    let pid = child.id();
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(child.wait_with_output());
    });
    match receiver.recv_timeout(limit) {
        Ok(Ok(output)) => output,
        Ok(Err(error)) => panic!("running {command:?}: {error}"),
        Err(_) => {
            signal(pid, "-KILL");
            panic!("{command:?} did not finish within {limit:?}");
        }
    }
}

/// stdout of a command that must succeed.
pub fn stdout_of(command: &mut Command, limit: Duration) -> String {
    let result = output(command, limit);
    assert!(
        result.status.success(),
        "{command:?} failed ({}): {}{}",
        result.status,
        String::from_utf8_lossy(&result.stdout),
        String::from_utf8_lossy(&result.stderr)
    );
    String::from_utf8_lossy(&result.stdout).into_owned()
}

pub fn signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([signal, &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// A daemon this harness started: stopped by pid (SIGTERM, then SIGKILL) when dropped.
pub struct Daemon {
    name: &'static str,
    child: Child,
}

impl Daemon {
    pub fn spawn(name: &'static str, command: &mut Command, log: &Path) -> Daemon {
        let file = std::fs::File::create(log).expect("daemon log file");
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file handle"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|error| panic!("starting {name} ({command:?}): {error}"));
        Daemon { name, child }
    }

    pub fn from_child(name: &'static str, child: Child) -> Daemon {
        Daemon { name, child }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn stop(&mut self) {
        if !self.running() {
            return;
        }
        signal(self.child.id(), "-TERM");
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if !self.running() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("{} did not stop on SIGTERM: killing it", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Polls `check` every 100 ms until it returns `Some`, for at most `limit`.
pub fn poll<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The last `lines` lines of a file (for failure messages).
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
