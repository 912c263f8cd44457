//! Cache modes end to end: a bypass path neither reads nor fills the cache; organic caching
//! keeps a hot file through a one-pass stream larger than the cache; a range read fetches only
//! the chunks it covers and a sequential reader has the next ones fetched ahead; a node config
//! with an unknown key is refused by name.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::agent::{pattern, AgentMount};
use common::{binary, free_port, transport, Mount, Server};
use kiseki_client::Transport;
use kiseki_types::InodeId;

/// Empties the kernel's page cache, so reads reach the FUSE client.
fn drop_page_cache() {
    let _ = std::process::Command::new("sync").status();
    fs::write("/proc/sys/vm/drop_caches", "3").expect("drop_caches (tests run as root)");
}

fn read(path: &Path, expected: &[u8]) {
    drop_page_cache();
    assert!(
        fs::read(path).unwrap() == expected,
        "{} differs",
        path.display()
    );
}

fn chunk_gets(agent: &AgentMount) -> u64 {
    agent.status()["requests"]["chunk_gets"].as_u64().unwrap()
}

fn server_and_writer(dir: &Path, files: &[(&str, &[u8])]) -> (Server, Mount) {
    let server = Server::start(&dir.join("data"), free_port());
    let writer = Mount::start(&server, &dir.join("writer"));
    for (name, bytes) in files {
        let path = writer.path.join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, bytes).unwrap();
    }
    (server, writer)
}

#[test]
fn bypass_paths_neither_read_nor_fill_the_cache() {
    let dir = tempfile::Builder::new()
        .prefix("kiseki-modes-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let checkpoint = pattern(6 << 20, 3);
    let data = pattern(6 << 20, 4);
    let warm = pattern(9 << 20, 7);
    let (server, _writer) = server_and_writer(
        dir.path(),
        &[
            ("bucket/ckpt/step1", &checkpoint),
            ("bucket/data/x", &data),
            ("bucket/warm/y", &warm),
        ],
    );
    let config = dir.path().join("node.yaml");
    fs::write(
        &config,
        "cache:\n  default_mode: organic\n  modes:\n    - path: /bucket/ckpt\n      mode: bypass\n",
    )
    .unwrap();
    let agent = AgentMount::start_with(
        &server,
        dir.path(),
        "agent",
        256 << 20,
        &["--config", config.to_str().unwrap()],
    );
    let file = agent.mount.path.join("bucket/ckpt/step1");
    for _ in 0..2 {
        let before = chunk_gets(&agent);
        read(&file, &checkpoint);
        assert!(
            chunk_gets(&agent) >= before + 2,
            "bypass reads go to the server"
        );
    }
    let status = agent.status();
    assert_eq!(
        status["l1"]["bytes"], 0,
        "bypass reads fill nothing: {status}"
    );
    assert_eq!(
        status["misses"], 0,
        "bypass reads look nothing up: {status}"
    );

    let organic = agent.mount.path.join("bucket/data/x");
    read(&organic, &data);
    let before = chunk_gets(&agent);
    read(&organic, &data);
    assert_eq!(chunk_gets(&agent), before, "organic data is cached");

    // Organic staging warms L2 without pinning: the reads that follow stay on the node.
    agent.kiseki_ok(&["stage", "/bucket/warm", "--mode", "organic", "--wait"]);
    let status = agent.status();
    assert!(status["pins"].as_array().unwrap().is_empty(), "{status}");
    let before = chunk_gets(&agent);
    read(&agent.mount.path.join("bucket/warm/y"), &warm);
    assert_eq!(
        chunk_gets(&agent),
        before,
        "organically staged data is cached"
    );
}

#[test]
fn a_one_pass_stream_does_not_flush_the_hot_file() {
    let dir = tempfile::Builder::new()
        .prefix("kiseki-modes-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let hot = pattern(8 << 20, 5);
    let stream = pattern(96 << 20, 6);
    let (server, _writer) = server_and_writer(
        dir.path(),
        &[("bucket/hot", &hot), ("bucket/stream", &stream)],
    );
    let agent = AgentMount::start_with(
        &server,
        dir.path(),
        "agent",
        32 << 20,
        &["--cache-memory-bytes", "16MiB"],
    );
    let hot_path = agent.mount.path.join("bucket/hot");
    // Used twice, apart: the hot set.
    read(&hot_path, &hot);
    std::thread::sleep(Duration::from_millis(800));
    read(&hot_path, &hot);
    // One pass over more than L1 + L2.
    read(&agent.mount.path.join("bucket/stream"), &stream);
    let before = chunk_gets(&agent);
    read(&hot_path, &hot);
    assert_eq!(
        chunk_gets(&agent),
        before,
        "the hot file survived the stream: {}",
        agent.status()
    );
}

/// The distinct chunks of `name` (under the root) that overlap `[from, to)`, as the server lays
/// the file out (a flush may cut a chunk short, so the grid is not assumed).
fn chunks_overlapping(server: &Server, name: &[&str], from: u64, to: u64) -> usize {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let tls = transport(server, false);
        let mut inode = InodeId::ROOT;
        for part in name {
            inode = tls.lookup(inode, part).await.unwrap().inode;
        }
        let layout = tls.layout(inode, 0, u64::MAX >> 1).await.unwrap();
        let ids: HashSet<_> = layout
            .extents
            .iter()
            .filter(|extent| extent.file_offset < to && extent.end() > from)
            .map(|extent| extent.chunk)
            .collect();
        ids.len()
    })
}

#[test]
fn range_reads_fetch_their_chunks_only_and_sequential_reads_fetch_ahead() {
    let dir = tempfile::Builder::new()
        .prefix("kiseki-modes-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let chunk = 4 << 20;
    let data = pattern(10 * chunk, 8);
    let (server, _writer) = server_and_writer(dir.path(), &[("bucket/big", &data)]);
    let chunks = |from: usize, to: usize| {
        chunks_overlapping(&server, &["bucket", "big"], from as u64, to as u64) as u64
    };
    let agent = AgentMount::start_with(
        &server,
        dir.path(),
        "agent",
        256 << 20,
        &["--cache-memory-bytes", "128MiB"],
    );
    let path = agent.mount.path.join("bucket/big");
    drop_page_cache();
    let start = chunk_gets(&agent);

    // 20 bytes across the first chunk boundary, read with O_DIRECT so that the kernel asks
    // for exactly those bytes: the chunks they lie in, nothing ahead.
    let direct = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(&path)
        .unwrap();
    let mut range = [0u8; 20];
    direct.read_exact_at(&mut range, chunk as u64 - 10).unwrap();
    assert_eq!(range[..], data[chunk - 10..chunk + 10]);
    std::thread::sleep(Duration::from_millis(300));
    let in_range = chunks(chunk - 10, chunk + 10);
    assert_eq!(
        chunk_gets(&agent) - start,
        in_range,
        "a range read fetches its chunks only"
    );

    // A sequential reader's first MiB: the kernel's read-ahead asks for at most 4 MiB more,
    // yet chunks from beyond 8 MiB are fetched before anyone asks for them.
    let mut reader = fs::File::open(&path).unwrap();
    let mut first = vec![0u8; 1 << 20];
    reader.read_exact(&mut first).unwrap();
    assert!(first[..] == data[..1 << 20]);
    let asked_for = chunks(0, 8 << 20).max(in_range);
    let deadline = Instant::now() + Duration::from_secs(10);
    while chunk_gets(&agent) - start <= asked_for {
        assert!(
            Instant::now() < deadline,
            "no chunk was fetched ahead: {} gets",
            chunk_gets(&agent) - start
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    assert!(rest[..] == data[1 << 20..]);
    assert_eq!(
        chunk_gets(&agent) - start,
        chunks(0, data.len()),
        "every chunk was fetched once: {}",
        agent.status()
    );
}

#[test]
fn a_node_config_with_an_unknown_key_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("node.yaml");
    fs::write(&config, "cache:\n  disk_byte: 4GiB\n").unwrap();
    let output = std::process::Command::new(binary("kiseki-client-fuse"))
        .arg("--config")
        .arg(&config)
        .args([
            "--insecure-plaintext",
            "--access-key",
            "a",
            "--secret-key",
            "b",
        ])
        .arg(dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("disk_byte"), "{stderr}");
}

fn metadata_calls(agent: &AgentMount) -> u64 {
    agent.status()["requests"]["metadata"].as_u64().unwrap()
}

#[test]
fn opening_a_file_to_read_brings_its_layout_and_a_small_files_chunk() {
    let dir = tempfile::Builder::new()
        .prefix("kiseki-open-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let small = pattern(3000, 11);
    let large = pattern(9 << 20, 12);
    let (server, writer) =
        server_and_writer(dir.path(), &[("d/small", &small), ("d/large", &large)]);
    let agent = AgentMount::start(&server, dir.path(), "agent", 256 << 20);
    // Names and attributes cached first, so what follows counts the open and the reads only.
    let small_path = agent.mount.path.join("d/small");
    let large_path = agent.mount.path.join("d/large");
    fs::metadata(&small_path).unwrap();
    fs::metadata(&large_path).unwrap();

    let (metadata, gets) = (metadata_calls(&agent), chunk_gets(&agent));
    assert!(
        fs::read(&small_path).unwrap() == small,
        "small file differs"
    );
    assert_eq!(
        chunk_gets(&agent) - gets,
        0,
        "the open carried the small file's chunk"
    );
    // One open, plus a lookup of `d` and of the file when the kernel's 1 s entries expired
    // meanwhile (a loaded machine).
    assert!(
        metadata_calls(&agent) - metadata <= 3,
        "one open (and lookups): {} calls",
        metadata_calls(&agent) - metadata
    );

    let (metadata, gets) = (metadata_calls(&agent), chunk_gets(&agent));
    assert!(
        fs::read(&large_path).unwrap() == large,
        "large file differs"
    );
    // One get per chunk: at least three of at most 4 MiB (the kernel may hand the writer's
    // data over in pieces that a flush cuts elsewhere).
    let large_gets = chunk_gets(&agent) - gets;
    assert!((3..=9).contains(&large_gets), "{large_gets} gets for 9 MiB");
    assert!(
        metadata_calls(&agent) - metadata <= 3,
        "the open carried the layout: no layout call ({} calls)",
        metadata_calls(&agent) - metadata
    );

    // Close-to-open still holds: a change made elsewhere is what the next open reads.
    let changed = pattern(2000, 13);
    fs::write(writer.path.join("d/small"), &changed).unwrap();
    drop_page_cache();
    assert!(
        fs::read(&small_path).unwrap() == changed,
        "stale small file after reopen"
    );
}
