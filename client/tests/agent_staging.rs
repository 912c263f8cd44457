//! The node cache agent end to end: a real server, a writer mount, and an agent mount driven
//! with the real `kiseki` CLI. Pins are refcounted per job; reads of a pinned dataset make no
//! server requests; a pin that does not fit is refused whole; corrupt or wiped L2 data is
//! never served.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use common::agent::{pattern, AgentMount};
use common::{free_port, Mount, Server};

/// The dataset: relative path → contents (two chunks, one chunk in a subdirectory, a small
/// file).
fn dataset() -> BTreeMap<&'static str, Vec<u8>> {
    BTreeMap::from([
        ("a.bin", pattern(5 << 20, 1)),
        ("sub/b.bin", pattern(3 << 20, 2)),
        ("c.txt", b"kiseki-plaintext-marker ".repeat(4000)),
    ])
}

struct Setup {
    agent: AgentMount,
    _writer: Mount,
    server: Server,
    _dir: tempfile::TempDir,
}

/// A server, a mount that writes `dataset()` under /bucket/ds, and an agent mount with an L2
/// of `disk_bytes`.
fn setup(disk_bytes: u64) -> Setup {
    let dir = tempfile::Builder::new()
        .prefix("kiseki-agent-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let server = Server::start(&dir.path().join("data"), free_port());
    let writer = Mount::start(&server, &dir.path().join("writer"));
    for (name, bytes) in dataset() {
        let path = writer.path.join("bucket/ds").join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, bytes).unwrap();
    }
    let agent = AgentMount::start(&server, dir.path(), "agent", disk_bytes);
    Setup {
        agent,
        _writer: writer,
        server,
        _dir: dir,
    }
}

/// Reads every dataset file through `mount` and checks its bytes.
fn read_and_check(mount: &Path) {
    let listed: Vec<String> = fs::read_dir(mount.join("bucket/ds"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(listed.len(), 3, "{listed:?}");
    for (name, expected) in dataset() {
        let bytes = fs::read(mount.join("bucket/ds").join(name)).unwrap();
        assert!(bytes == expected, "{name} read back different bytes");
    }
}

fn requests(status: &serde_json::Value) -> u64 {
    status["requests"]["total"].as_u64().unwrap()
}

fn pins(status: &serde_json::Value) -> Vec<serde_json::Value> {
    status["pins"].as_array().unwrap().clone()
}

#[test]
fn pins_are_refcounted_per_job_and_pinned_reads_make_no_server_requests() {
    let setup = setup(256 << 20);
    let agent = &setup.agent;
    let staged = agent.kiseki_ok(&["stage", "/bucket/ds", "--job", "1", "--wait"]);
    assert!(staged.contains("staged /bucket/ds: 3 files"), "{staged}");
    agent.kiseki_ok(&["stage", "s3://bucket/ds", "--job", "2", "--wait"]);
    let status = agent.status();
    let pinned = pins(&status);
    assert_eq!(pinned.len(), 1, "one dataset, shared by two jobs: {status}");
    assert_eq!(pinned[0]["dataset"], "/bucket/ds");
    assert_eq!(pinned[0]["jobs"], serde_json::json!(["1", "2"]));
    assert_eq!(pinned[0]["chunks"], pinned[0]["cached_chunks"]);

    let before = agent.status();
    // Real tools too: find (which also asks for statfs) and cat.
    let found = std::process::Command::new("sh")
        .arg("-c")
        .arg("find \"$1\" -type f -exec cat {} + | wc -c")
        .arg("sh")
        .arg(agent.mount.path.join("bucket/ds"))
        .output()
        .unwrap();
    let total: usize = dataset().values().map(Vec::len).sum();
    assert_eq!(
        String::from_utf8_lossy(&found.stdout).trim(),
        total.to_string()
    );
    read_and_check(&agent.mount.path);
    let after = agent.status();
    let hits = |status: &serde_json::Value| {
        status["l1_hits"].as_u64().unwrap() + status["l2_hits"].as_u64().unwrap()
    };
    assert!(
        hits(&after) > hits(&before),
        "the reads were served by the cache"
    );
    assert!(after["hit_ratio"].as_f64().unwrap() > 0.99, "{after}");
    let before = requests(&before);
    assert_eq!(
        requests(&after),
        before,
        "reading a pinned dataset asked the server: {}",
        after["requests"]
    );

    let released = agent.kiseki_ok(&["release", "--job", "1"]);
    assert!(released.contains("still pinned by 2"), "{released}");
    assert_eq!(pins(&agent.status()).len(), 1, "job 2 still holds it");
    let released = agent.kiseki_ok(&["release", "--job", "2", "/bucket/ds"]);
    assert!(released.contains("no longer pinned"), "{released}");
    assert!(pins(&agent.status()).is_empty());
    let again = agent.kiseki_ok(&["release", "--job", "2"]);
    assert!(again.contains("nothing to release"), "{again}");
    // Unpinned, the dataset reads from the server again, with the same bytes.
    read_and_check(&agent.mount.path);
    drop(setup.server);
}

#[test]
fn a_pin_that_does_not_fit_is_refused_whole_with_the_numbers() {
    let setup = setup(4 << 20);
    let output = setup
        .agent
        .kiseki(&["stage", "/bucket/ds", "--job", "7", "--wait"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("kiseki: ") && stderr.contains("needs") && stderr.contains("free"),
        "{stderr}"
    );
    assert!(pins(&setup.agent.status()).is_empty(), "nothing was pinned");
    // Two datasets in one request, the second does not fit: the first is not left pinned.
    let output = setup.agent.kiseki(&[
        "stage",
        "/bucket/ds/c.txt",
        "/bucket/ds",
        "--job",
        "7",
        "--wait",
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(pins(&setup.agent.status()).is_empty(), "nothing was pinned");
    // The small one alone fits.
    setup
        .agent
        .kiseki_ok(&["stage", "/bucket/ds/c.txt", "--job", "7", "--wait"]);
    assert_eq!(pins(&setup.agent.status()).len(), 1);
}

#[test]
fn corrupt_and_wiped_l2_data_is_never_served() {
    let setup = setup(256 << 20);
    let agent = &setup.agent;
    agent.kiseki_ok(&["stage", "/bucket/ds", "--job", "9", "--wait", "--verify"]);
    let files = agent.l2_files();
    assert!(files.len() >= 4, "one L2 file per chunk: {files:?}");
    // Encrypted at rest: no plaintext in the cache files.
    for file in &files {
        let bytes = fs::read(file).unwrap();
        assert!(
            !bytes
                .windows(b"plaintext-marker".len())
                .any(|window| window == b"plaintext-marker"),
            "{} holds plaintext",
            file.display()
        );
    }
    // Flip a byte in every L2 file: every read must notice, drop the file and refetch.
    for file in &files {
        let mut bytes = fs::read(file).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x40;
        fs::write(file, bytes).unwrap();
    }
    read_and_check(&agent.mount.path);
    let status = agent.status();
    assert!(
        status["corrupt_dropped"].as_u64().unwrap() >= 1,
        "corrupt L2 files were dropped: {status}"
    );

    // Re-stage (refetches what was dropped), keep one L2 file aside, wipe.
    agent.kiseki_ok(&["stage", "/bucket/ds", "--job", "9", "--wait"]);
    let kept = agent.l2_files()[0].clone();
    let old_bytes = fs::read(&kept).unwrap();
    let wiped = agent.kiseki_ok(&["cache", "wipe"]);
    assert!(wiped.contains("wiped"), "{wiped}");
    assert!(!kept.exists(), "wipe deletes the L2 files");
    let status = agent.status();
    assert_eq!(status["pins"][0]["cached_chunks"], 0, "{status}");
    // Even with an old file put back, the new key cannot read it: the bytes come from the
    // server, correct.
    fs::create_dir_all(kept.parent().unwrap()).unwrap();
    fs::write(&kept, old_bytes).unwrap();
    read_and_check(&agent.mount.path);
}
