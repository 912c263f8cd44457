//! rclone (sync up and down, then compare) and s3cmd (mb, put, ls, get, del, rb) against the
//! S3 gateway.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "s3/support.rs"]
mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::{run, success, test_bytes, Server};

fn rclone(server: &Server, args: &[&str]) -> String {
    let mut command = Command::new("rclone");
    command
        .args(args)
        .env("RCLONE_CONFIG", "/dev/null")
        .env("RCLONE_CONFIG_KS_TYPE", "s3")
        .env("RCLONE_CONFIG_KS_PROVIDER", "Other")
        .env("RCLONE_CONFIG_KS_ENDPOINT", &server.endpoint)
        .env("RCLONE_CONFIG_KS_ACCESS_KEY_ID", &server.access_key)
        .env("RCLONE_CONFIG_KS_SECRET_ACCESS_KEY", &server.secret_key)
        .env("RCLONE_CONFIG_KS_REGION", "us-east-1")
        .env("RCLONE_CONFIG_KS_FORCE_PATH_STYLE", "true")
        .env_remove("AWS_CA_BUNDLE");
    success(
        run(&mut command, Duration::from_secs(180)),
        &format!("rclone {args:?}"),
    )
}

fn s3cmd(server: &Server, args: &[&str]) -> String {
    let host = server.endpoint.trim_start_matches("http://");
    let mut command = Command::new("s3cmd");
    command
        .args(["--config=/dev/null", "--no-ssl", "--region=us-east-1"])
        .arg(format!("--host={host}"))
        .arg(format!("--host-bucket={host}"))
        .arg(format!("--access_key={}", server.access_key))
        .arg(format!("--secret_key={}", server.secret_key))
        .args(args);
    success(
        run(&mut command, Duration::from_secs(120)),
        &format!("s3cmd {args:?}"),
    )
}

fn make_tree(root: &Path) {
    for (index, name) in [
        "one.txt",
        "dir/two.bin",
        "dir/sub/three with space.txt",
        "dir/sub/four+plus.dat",
    ]
    .iter()
    .enumerate()
    {
        let path = root.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, test_bytes(1000 + index * 40_000, index as u64 + 3)).unwrap();
    }
}

#[test]
fn rclone_syncs_up_and_down() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let up = dir.path().join("up");
    make_tree(&up);
    rclone(&server, &["mkdir", "ks:rclone-bucket"]);
    rclone(
        &server,
        &["sync", up.to_str().unwrap(), "ks:rclone-bucket/tree"],
    );
    let listed = rclone(&server, &["lsf", "-R", "ks:rclone-bucket/tree"]);
    assert!(listed.contains("dir/sub/three with space.txt"), "{listed}");
    let down = dir.path().join("down");
    rclone(
        &server,
        &["sync", "ks:rclone-bucket/tree", down.to_str().unwrap()],
    );
    rclone(
        &server,
        &["check", up.to_str().unwrap(), down.to_str().unwrap()],
    );
    rclone(
        &server,
        &["check", up.to_str().unwrap(), "ks:rclone-bucket/tree"],
    );
    // A second sync after a local change uploads the change and deletes what was removed.
    std::fs::remove_file(up.join("one.txt")).unwrap();
    std::fs::write(up.join("dir/two.bin"), b"changed").unwrap();
    rclone(
        &server,
        &["sync", up.to_str().unwrap(), "ks:rclone-bucket/tree"],
    );
    rclone(
        &server,
        &["check", up.to_str().unwrap(), "ks:rclone-bucket/tree"],
    );
    server.stop();
}

#[test]
fn s3cmd_puts_lists_gets_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let file = dir.path().join("file.bin");
    let bytes = test_bytes(300_000, 11);
    std::fs::write(&file, &bytes).unwrap();
    s3cmd(&server, &["mb", "s3://s3cmd-bucket"]);
    s3cmd(
        &server,
        &[
            "put",
            file.to_str().unwrap(),
            "s3://s3cmd-bucket/a/file.bin",
        ],
    );
    let listed = s3cmd(&server, &["ls", "-r", "s3://s3cmd-bucket"]);
    assert!(listed.contains("s3://s3cmd-bucket/a/file.bin"), "{listed}");
    let back = dir.path().join("back.bin");
    s3cmd(
        &server,
        &[
            "get",
            "s3://s3cmd-bucket/a/file.bin",
            back.to_str().unwrap(),
        ],
    );
    assert!(std::fs::read(&back).unwrap() == bytes);
    s3cmd(&server, &["del", "s3://s3cmd-bucket/a/file.bin"]);
    s3cmd(&server, &["rb", "s3://s3cmd-bucket"]);
    assert!(!s3cmd(&server, &["ls"]).contains("s3cmd-bucket"));
    server.stop();
}
