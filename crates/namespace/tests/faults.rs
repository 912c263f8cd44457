//! Faults: a process killed with SIGKILL in the middle of a stream of writes, and a full disk.
//!
//! The crash test re-runs this test binary as a child process that hosts the namespace and
//! writes files from several tasks, printing `ACK <n>` after each write is acknowledged; the
//! parent kills it with SIGKILL mid-stream, reopens the data directory and checks every
//! acknowledged file byte for byte, and that every file that is visible at all is complete.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{content, open_namespace, OWNER};
use kiseki_namespace::ListRequest;
use kiseki_types::{ErrorKind, TenantId};

const CHILD_DIR_VARIABLE: &str = "KISEKI_CRASH_CHILD_DIR";
const WRITERS: u64 = 4;
/// The kill comes after this many acknowledgements (or 1.5 s of writing), while writes go on.
const ACKNOWLEDGED_BEFORE_KILL: usize = 400;

fn file_len(n: u64) -> usize {
    ((n * 7919) % 150_000) as usize + 1
}

fn file_path(n: u64) -> String {
    format!("crash/w{}/file-{n:06}", n % WRITERS)
}

/// The child: writes until killed. Does nothing when run as an ordinary test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_writer_child() {
    let Ok(dir) = std::env::var(CHILD_DIR_VARIABLE) else {
        return;
    };
    let (namespace, _) = open_namespace(std::path::Path::new(&dir), 64);
    let tenant = namespace.tenant(TenantId(1)).await.unwrap();
    println!("READY");
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let tenant = Arc::clone(&tenant);
        tasks.push(tokio::spawn(async move {
            for round in 0.. {
                let n = round * WRITERS + writer;
                let mut stream = tenant.writer();
                stream.write(&content(n, file_len(n))).await.unwrap();
                let written = stream.finish().await.unwrap();
                tenant
                    .put_file(OWNER, &file_path(n), written, BTreeMap::new())
                    .await
                    .unwrap();
                println!("ACK {n}");
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
}

#[tokio::test]
async fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash_writer_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR_VARIABLE, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut acknowledged = Vec::new();
        let started = Instant::now();
        let mut ready_at = None;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line == "READY" {
                ready_at = Some(Instant::now());
            } else if let Some(n) = line.strip_prefix("ACK ") {
                acknowledged.push(n.parse::<u64>().unwrap());
            }
            let writing_long_enough =
                ready_at.is_some_and(|at| at.elapsed() > Duration::from_millis(1500));
            if writing_long_enough
                || acknowledged.len() >= ACKNOWLEDGED_BEFORE_KILL
                || started.elapsed() > Duration::from_secs(60)
            {
                break;
            }
        }
        acknowledged
    });
    let acknowledged = reader.join().unwrap();
    // SIGKILL by pid: no chance to flush or shut down.
    unsafe_free_kill(child.id());
    let _ = child.wait();
    assert!(
        acknowledged.len() > 20,
        "the child acknowledged only {} writes",
        acknowledged.len()
    );

    let (namespace, _) = open_namespace(dir.path(), 64);
    let tenant = namespace.tenant(TenantId(1)).await.unwrap();
    for &n in &acknowledged {
        let got = tenant
            .read_path(&file_path(n), 0, u64::MAX)
            .unwrap()
            .read_to_end()
            .await
            .unwrap();
        assert!(
            got == content(n, file_len(n)),
            "acknowledged file {n} differs after the crash"
        );
    }
    // Writes in flight at the kill may or may not be there, but never half-written.
    let mut visible = 0;
    let mut after: Option<String> = None;
    loop {
        let request = ListRequest {
            prefix: "crash/",
            delimiter: None,
            start_after: after.as_deref(),
            max_entries: 1000,
        };
        let page = tenant.list(request).unwrap();
        for entry in &page.entries {
            let key = entry.key();
            let n: u64 = key.rsplit("file-").next().unwrap().parse().unwrap();
            let got = tenant
                .read_path(key, 0, u64::MAX)
                .unwrap()
                .read_to_end()
                .await
                .unwrap();
            assert!(got == content(n, file_len(n)), "visible file {key} is torn");
            visible += 1;
        }
        after = page.entries.last().map(|entry| entry.key().to_owned());
        if !page.truncated {
            break;
        }
    }
    assert!(visible >= acknowledged.len());
    println!(
        "{} acknowledged, {visible} visible after kill -9",
        acknowledged.len()
    );
    namespace.shutdown().await;
}

fn unsafe_free_kill(pid: u32) {
    let status = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// A tmpfs mounted on a temporary directory for the life of the value.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status();
        assert!(
            matches!(status, Ok(status) if status.success()),
            "mounting a tmpfs needs root (the test command runs as root)"
        );
        SmallDisk { dir }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[tokio::test]
async fn a_full_disk_fails_writes_clearly_and_keeps_serving_reads() {
    let disk = SmallDisk::mount("8m");
    let (namespace, _) = open_namespace(disk.dir.path(), 10_000);
    let tenant = namespace.tenant(TenantId(1)).await.unwrap();
    let mut kept = Vec::new();
    let mut failure = None;
    for n in 0..64u64 {
        let data = content(n, 512 * 1024);
        let mut writer = tenant.writer();
        let result = async {
            writer.write(&data).await?;
            let written = writer.finish().await?;
            tenant
                .put_file(OWNER, &format!("full/{n}"), written, BTreeMap::new())
                .await
        }
        .await;
        match result {
            Ok(_) => kept.push((n, data)),
            Err(error) => {
                failure = Some(error);
                break;
            }
        }
    }
    let failure = failure.expect("8 MiB cannot hold 32 MiB");
    assert_eq!(failure.kind, ErrorKind::NoSpace, "{failure}");
    assert!(!kept.is_empty());
    for (n, data) in &kept {
        let got = tenant
            .read_path(&format!("full/{n}"), 0, u64::MAX)
            .unwrap()
            .read_to_end()
            .await
            .unwrap();
        assert!(&got == data, "file {n} unreadable after the disk filled");
    }
    // Metadata-only changes still go through while the chunk pool is full.
    tenant
        .mkdir(OWNER, kiseki_types::InodeId::ROOT, "still-works", 0o755)
        .await
        .unwrap();
    namespace.shutdown().await;
}
