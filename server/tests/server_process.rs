//! The `kiseki-server` binary as an operator runs it: starts on a data dir, prints the dev
//! tenant's S3 access key, serves Prometheus metrics, stops cleanly on SIGTERM and keeps its
//! identity (access key, tenant) across a restart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Server {
    child: Child,
    banner: Vec<String>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(data_dir: &std::path::Path, metrics_port: u16) -> Server {
    start_with(data_dir, metrics_port, &[])
}

fn start_with(data_dir: &std::path::Path, metrics_port: u16, extra: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiseki-server"))
        .arg("--data-dir")
        .arg(data_dir)
        .args([
            "--dev",
            "--metrics-listen",
            &format!("127.0.0.1:{metrics_port}"),
        ])
        .args([
            "--s3-listen",
            "127.0.0.1:0",
            "--native-listen",
            "127.0.0.1:0",
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
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
    Server { child, banner }
}

fn banner_value(server: &Server, label: &str) -> String {
    server
        .banner
        .iter()
        .find_map(|line| {
            line.trim()
                .strip_prefix(label)
                .map(|rest| rest.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no {label:?} in {:?}", server.banner))
}

fn http_get(port: u16, path: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

fn terminate(mut server: Server) {
    let started = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    loop {
        if let Some(exit) = server.child.try_wait().unwrap() {
            assert!(exit.success(), "server exited with {exit} after SIGTERM");
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "server did not stop within 15 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn server_starts_serves_metrics_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = start(dir.path(), port);
    let access_key = banner_value(&server, "S3 access key:");
    assert!(
        access_key.starts_with("KSK") && access_key.len() == 20,
        "{access_key}"
    );
    assert_eq!(banner_value(&server, "S3 secret key:").len(), 40);

    // The metrics refresher runs once a second; wait for the dev tenant's shard to appear.
    let deadline = Instant::now() + Duration::from_secs(10);
    let metrics = loop {
        let response = http_get(port, "/metrics");
        if response.contains("kiseki_shard_is_leader{tenant=\"1\",shard=\"0\"} 1")
            || Instant::now() > deadline
        {
            break response;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert!(
        metrics.contains("kiseki_shard_is_leader{tenant=\"1\",shard=\"0\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("kiseki_namespace_nodes"), "{metrics}");
    assert!(http_get(port, "/nope").starts_with("HTTP/1.1 404"));
    terminate(server);

    let again = start(dir.path(), port);
    assert_eq!(
        banner_value(&again, "S3 access key:"),
        access_key,
        "the access key survives a restart"
    );
    terminate(again);
}

#[test]
fn a_bad_config_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.yaml");
    std::fs::write(&config, "data_dir: /tmp/x\nchunk_sise_bytes: 5\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_kiseki-server"))
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("chunk_sise_bytes"), "{stderr}");
}

/// `--dev-mount` (what the README's start command uses): the development tenant is mounted over
/// FUSE once the server is ready, the mount is the same namespace S3 serves, and SIGTERM
/// unmounts it.
#[test]
fn dev_mount_brings_up_fuse_and_unmounts_on_sigterm() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let mount_point = dir.path().join("kiseki");
    let server = start_with(
        dir.path(),
        free_port(),
        &["--dev-mount", mount_point.to_str().unwrap()],
    );
    assert_eq!(
        banner_value(&server, "FUSE mount:")
            .split_whitespace()
            .next(),
        mount_point.to_str()
    );
    let is_mounted =
        || mount_point.metadata().unwrap().dev() != dir.path().metadata().unwrap().dev();
    assert!(is_mounted(), "the dev tenant is mounted");
    std::fs::create_dir_all(mount_point.join("bucket/dir")).unwrap();
    std::fs::write(mount_point.join("bucket/dir/hello.txt"), b"hello over FUSE").unwrap();
    assert_eq!(
        std::fs::read(mount_point.join("bucket/dir/hello.txt")).unwrap(),
        b"hello over FUSE"
    );
    terminate(server);
    assert!(
        !is_mounted(),
        "SIGTERM of the server unmounts the dev mount"
    );
}
