//! S3 semantics through boto3 (tests/s3/s3_protocol.py): buckets, listings v1/v2 with every
//! parameter, ranges, conditional requests, copy, metadata, DeleteObjects, multipart uploads,
//! error codes, SigV4 (forged, unsigned, presigned, expired) and malformed XML; then a
//! multipart upload that spans a server restart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "s3/support.rs"]
mod support;

use support::{success, Server};

#[test]
fn boto3_sees_s3_semantics() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let output = success(
        server.python("s3_protocol.py", &["main"]),
        "s3_protocol.py main",
    );
    for step in [
        "buckets",
        "listing",
        "objects",
        "multipart",
        "authentication",
    ] {
        assert!(output.contains(&format!("ok {step}")), "{output}");
    }
    server.stop();
}

#[test]
fn multipart_uploads_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("upload.json");
    let data = dir.path().join("data");
    let server = Server::start(&data);
    success(
        server.python(
            "s3_protocol.py",
            &["restart-prepare", state.to_str().unwrap()],
        ),
        "restart-prepare",
    );
    server.stop();
    let server = Server::start(&data);
    success(
        server.python(
            "s3_protocol.py",
            &["restart-resume", state.to_str().unwrap()],
        ),
        "restart-resume",
    );
    server.stop();
}
