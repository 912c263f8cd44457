//! Faults: a stopped server fails operations with EIO within a bounded time and the mount
//! recovers when it returns; a small write survives a crash that loses its unsynced chunk file;
//! SIGTERM unmounts cleanly; a busy or non-empty mount point is refused with a clear message.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{is_mounted, mount_command, Fixture, Mount, Server};

#[test]
fn a_stopped_server_gives_eio_quickly_and_the_mount_recovers() {
    let mut fixture = Fixture::new();
    fs::write(fixture.path("before.txt"), b"written before the outage").unwrap();

    fixture.server.stop();
    let started = Instant::now();
    let error = fs::write(fixture.path("during.txt"), b"x").unwrap_err();
    assert_eq!(error.raw_os_error(), Some(libc::EIO), "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "failed after {:?}",
        started.elapsed()
    );

    // The server comes back on the same address and data: the mount works again.
    let data_dir = fixture.server.data_dir.clone();
    fixture.server = Server::start(&data_dir, fixture.server.native_port);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match fs::write(fixture.path("after.txt"), b"written after") {
            Ok(()) => break,
            Err(error) => assert!(
                Instant::now() < deadline,
                "the mount did not recover: {error}"
            ),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        fs::read(fixture.path("before.txt")).unwrap(),
        b"written before the outage"
    );
    assert_eq!(
        fs::read(fixture.path("after.txt")).unwrap(),
        b"written after"
    );
}

/// Every chunk file under `dir` (named by 64 hex digits).
fn chunk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(chunk_files(&path));
        } else if entry.file_name().len() == 64 {
            found.push(path);
        }
    }
    found
}

#[test]
fn a_small_write_survives_a_crash_that_loses_its_unsynced_chunk_file() {
    let mut fixture = Fixture::new();
    let small: Vec<u8> = (0..3000u32).map(|i| (i * 13 % 251) as u8).collect();
    fs::write(fixture.path("small.bin"), &small).unwrap();

    // The write's frame rode in its log entry; its chunk file was written without a sync. A
    // crash of the machine may lose such a file: kill the server (no shutdown, no snapshot)
    // and take the chunk files away.
    fixture.server.kill();
    let chunks = fixture.server.data_dir.join("chunks");
    let lost = chunk_files(&chunks);
    assert_eq!(lost.len(), 1, "one chunk for one small file: {lost:?}");
    fs::remove_file(&lost[0]).unwrap();

    // The restart replays the log entry and writes the chunk file again: a fresh mount (no
    // cached bytes) reads the file back exactly.
    let data_dir = fixture.server.data_dir.clone();
    fixture.server = Server::start(&data_dir, fixture.server.native_port);
    let fresh = Mount::start(&fixture.server, &fixture.dir.path().join("fresh"));
    assert_eq!(fs::read(fresh.path.join("small.bin")).unwrap(), small);
    assert_eq!(chunk_files(&chunks), lost, "the chunk file is back");
}

#[test]
fn sigterm_unmounts_and_bad_mount_points_are_refused() {
    let mut fixture = Fixture::new();
    fs::write(fixture.path("kept.txt"), b"kept").unwrap();

    // A second mount on the busy mount point is refused with the reason.
    let output = mount_command(&fixture.server, &fixture.mount.path)
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("busy"), "{stderr}");

    // A non-empty directory is refused too.
    let full = fixture.dir.path().join("full");
    fs::create_dir(&full).unwrap();
    fs::write(full.join("file"), b"x").unwrap();
    let output = mount_command(&fixture.server, &full)
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not empty"), "{stderr}");

    // SIGTERM: the process unmounts and exits cleanly.
    let status = fixture
        .mount
        .terminate()
        .expect("kiseki-client-fuse stops within the bound after SIGTERM");
    assert!(status.success(), "{status}");
    assert!(!is_mounted(&fixture.mount.path));
    assert!(
        !fixture.mount.path.join("kept.txt").exists(),
        "the mount point is empty again"
    );
}
