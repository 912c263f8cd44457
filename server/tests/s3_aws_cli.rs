//! The aws cli against the S3 gateway: `s3 mb/cp/ls/sync/rm/rb`, `s3api` listing with a
//! delimiter, a 64 MiB multipart upload, a presigned URL; then the cross-protocol check (the
//! objects are files of the namespace at the expected paths, after a restart) and the request
//! metrics; and garbage on the wire that must not crash or hang the server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "s3/support.rs"]
mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use kiseki_types::TenantId;
use support::{run, success, test_bytes, Server};

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn aws_cli_works_and_objects_are_namespace_files() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let server = Server::start(&data_dir);
    server.aws(&["s3", "mb", "s3://cli-bucket"]);
    assert!(server.aws(&["s3", "ls"]).contains("cli-bucket"));

    // sync up a small tree with awkward names, list it, sync it down, compare.
    let local = dir.path().join("up");
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("a.txt", b"alpha".to_vec()),
        ("sub/b.bin", test_bytes(100_000, 1)),
        ("sub/deeper/c d+e%f.txt", b"spaces and signs".to_vec()),
        ("ünïcode.txt", "ü".as_bytes().to_vec()),
    ];
    for (name, bytes) in &files {
        write(&local.join(name), bytes);
    }
    server.aws(&[
        "s3",
        "sync",
        "--only-show-errors",
        local.to_str().unwrap(),
        "s3://cli-bucket/tree",
    ]);
    let listed = server.aws(&["s3", "ls", "--recursive", "s3://cli-bucket/tree/"]);
    for (name, _) in &files {
        assert!(
            listed.contains(&format!("tree/{name}")),
            "{name} missing from {listed}"
        );
    }
    let down = dir.path().join("down");
    server.aws(&[
        "s3",
        "sync",
        "--only-show-errors",
        "s3://cli-bucket/tree",
        down.to_str().unwrap(),
    ]);
    for (name, bytes) in &files {
        assert_eq!(
            &std::fs::read(down.join(name)).unwrap(),
            bytes,
            "{name} after a round trip"
        );
    }
    let listing = server.aws(&[
        "s3api",
        "list-objects-v2",
        "--bucket",
        "cli-bucket",
        "--prefix",
        "tree/",
        "--delimiter",
        "/",
    ]);
    assert!(
        listing.contains("\"tree/sub/\"") && listing.contains("\"tree/a.txt\""),
        "{listing}"
    );
    assert!(
        !listing.contains("tree/sub/b.bin"),
        "delimiter must roll sub/ up: {listing}"
    );

    // A 64 MiB upload goes multipart (8 MiB parts); the ETag says so; the bytes come back.
    let big = test_bytes(64 * 1024 * 1024, 7);
    write(&dir.path().join("big.bin"), &big);
    server.aws(&[
        "s3",
        "cp",
        "--only-show-errors",
        dir.path().join("big.bin").to_str().unwrap(),
        "s3://cli-bucket/big/big.bin",
    ]);
    let head = server.aws(&[
        "s3api",
        "head-object",
        "--bucket",
        "cli-bucket",
        "--key",
        "big/big.bin",
    ]);
    assert!(
        head.contains("-8\\\"\"") && head.contains("\"PartsCount\": 8"),
        "{head}"
    );
    server.aws(&[
        "s3",
        "cp",
        "--only-show-errors",
        "s3://cli-bucket/big/big.bin",
        dir.path().join("big.down").to_str().unwrap(),
    ]);
    assert!(
        std::fs::read(dir.path().join("big.down")).unwrap() == big,
        "64 MiB object differs after a round trip"
    );

    // A presigned URL works without credentials.
    let url = server.aws(&[
        "s3",
        "presign",
        "s3://cli-bucket/tree/a.txt",
        "--expires-in",
        "300",
    ]);
    let fetched = success(
        run(
            Command::new("curl").args(["-sf", url.trim()]),
            Duration::from_secs(30),
        ),
        "curl presigned URL",
    );
    assert_eq!(fetched, "alpha");

    // rm, and rb refusing a non-empty bucket.
    server.aws(&["s3", "rm", "s3://cli-bucket/tree/a.txt"]);
    assert!(!server
        .aws(&["s3", "ls", "--recursive", "s3://cli-bucket/"])
        .contains("tree/a.txt"));
    let refused = server.aws_output(&["s3", "rb", "s3://cli-bucket"]);
    assert!(
        !refused.status.success()
            && String::from_utf8_lossy(&refused.stderr).contains("BucketNotEmpty")
    );
    server.aws(&["s3", "mb", "s3://gone-bucket"]);
    server.aws(&["s3", "rb", "s3://gone-bucket"]);

    // An object with metadata for the cross-check below.
    write(&dir.path().join("meta.txt"), b"cross-protocol");
    server.aws(&[
        "s3",
        "cp",
        "--only-show-errors",
        "--metadata",
        "color=green",
        dir.path().join("meta.txt").to_str().unwrap(),
        "s3://cli-bucket/x/y/meta.txt",
    ]);

    let metrics = success(
        run(
            Command::new("curl").args(["-sf", &server.metrics_url]),
            Duration::from_secs(30),
        ),
        "curl metrics",
    );
    assert!(
        metrics.contains("kiseki_s3_requests_total{operation=\"PutObject\",status=\"200\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("operation=\"DeleteBucket\",status=\"409\""),
        "{metrics}"
    );
    server.stop();

    // The same objects are files of the namespace, at bucket/key, after a restart.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let namespace = support::open_namespace(&data_dir);
        let tenant = namespace.tenant(TenantId(1)).await.unwrap();
        let read = |path: &str| tenant.read_path(path, 0, u64::MAX).unwrap().read_to_end();
        assert_eq!(
            read("cli-bucket/x/y/meta.txt").await.unwrap(),
            b"cross-protocol"
        );
        assert!(read("cli-bucket/big/big.bin").await.unwrap() == big);
        assert_eq!(
            read("cli-bucket/tree/sub/deeper/c d+e%f.txt")
                .await
                .unwrap(),
            b"spaces and signs"
        );
        let inode = tenant.resolve("cli-bucket/x/y/meta.txt").unwrap();
        let xattrs = tenant.user_metadata(inode).unwrap();
        assert_eq!(xattrs.get("color").map(Vec::as_slice), Some(&b"green"[..]));
        assert_eq!(
            xattrs.len(),
            1,
            "S3 system fields (ETag, Content-Type) must not show as xattrs: {xattrs:?}"
        );
        assert!(
            tenant.resolve("cli-bucket/tree/a.txt").is_err(),
            "deleted over S3, gone from the namespace"
        );
        namespace.shutdown().await;
    });
}

fn raw_exchange(address: &str, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(bytes).unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    String::from_utf8_lossy(&response).into_owned()
}

#[test]
fn garbage_on_the_wire_neither_crashes_nor_hangs_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let address = server.endpoint.trim_start_matches("http://").to_owned();
    let answers = [
        raw_exchange(&address, b"GARBAGE\r\n\r\n"),
        raw_exchange(&address, b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n"),
        raw_exchange(&address, b"GET /%ZZ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        raw_exchange(&address, b"PUT /b/k HTTP/1.1\r\nHost: x\r\nAuthorization: AWS4-HMAC-SHA256 Credential=??\r\nConnection: close\r\n\r\n"),
        raw_exchange(&address, &[0xff; 4096]),
    ];
    for answer in &answers {
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 4"),
            "unexpected answer: {answer}"
        );
    }
    // A client that stops half-way through its headers holds only its own connection.
    let mut stalled = TcpStream::connect(&address).unwrap();
    stalled.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    server.aws(&["s3", "mb", "s3://still-alive"]);
    assert!(server.aws(&["s3", "ls"]).contains("still-alive"));
    drop(stalled);
    server.stop();
}
