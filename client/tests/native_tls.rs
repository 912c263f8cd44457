//! TLS on the native channel: the mount trusts only the CA it is given and checks the server's
//! name; plain TCP happens only when both sides ask for it explicitly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use common::{free_port, Fixture, Mount, Server};

/// Runs a mount command that is expected to fail; returns its stderr.
fn refused(mut command: Command, what: &str) -> String {
    let output = command
        .stdout(Stdio::null())
        .output()
        .expect("running kiseki-client-fuse");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "{what} was accepted: {stderr}");
    stderr
}

/// A `kiseki-client-fuse` command with `server`'s keys on a fresh mount point under `dir`; the
/// test adds the server address and TLS flags.
fn client(server: &Server, dir: &Path, name: &str) -> Command {
    let path = dir.join(name);
    fs::create_dir_all(&path).unwrap();
    let mut command = Command::new(common::binary("kiseki-client-fuse"));
    command
        .arg(path)
        .env("KISEKI_ACCESS_KEY", &server.access_key)
        .env("KISEKI_SECRET_KEY", &server.secret_key)
        .env("KISEKI_LOG", "warn");
    command
}

#[test]
fn the_mount_checks_the_ca_and_the_server_name() {
    let fixture = Fixture::new();
    fs::write(fixture.path("over-tls.txt"), b"sealed and carried over TLS").unwrap();
    let server = &fixture.server;
    let ca = server.ca_path.clone().expect("a TLS server");
    assert!(fs::read_to_string(&ca)
        .unwrap()
        .contains("BEGIN CERTIFICATE"));

    // Another server's CA is not trusted.
    let other_dir = fixture.dir.path().join("other");
    let other = Server::start(&other_dir.join("data"), free_port());
    let mut command = client(server, fixture.dir.path(), "m1");
    command
        .args(["--server", &server.url(), "--ca"])
        .arg(other.ca_path.as_ref().unwrap());
    let stderr = refused(command, "a server certificate from an untrusted CA");
    assert!(
        stderr.contains("connecting to the Kiseki server"),
        "{stderr}"
    );

    // The right CA, but a name the certificate does not carry.
    let mut command = client(server, fixture.dir.path(), "m2");
    command
        .args([
            "--server",
            &server.url(),
            "--server-name",
            "not-kiseki.example",
        ])
        .arg("--ca")
        .arg(&ca);
    refused(command, "a server name the certificate does not carry");

    // Plaintext against the TLS listener fails; http:// with a CA is refused up front.
    let mut command = client(server, fixture.dir.path(), "m3");
    command
        .args(["--insecure-plaintext", "--server"])
        .arg(format!("http://127.0.0.1:{}", server.native_port));
    refused(command, "a plaintext client on the TLS listener");
    let mut command = client(server, fixture.dir.path(), "m4");
    command
        .arg("--server")
        .arg(format!("http://127.0.0.1:{}", server.native_port))
        .arg("--ca")
        .arg(&ca);
    let stderr = refused(command, "an http:// address with TLS settings");
    assert!(stderr.contains("https://"), "{stderr}");

    // Without --ca (and without --insecure-plaintext) the mount refuses to start.
    let mut command = client(server, fixture.dir.path(), "m5");
    command
        .args(["--server", &server.url()])
        .env_remove("KISEKI_CA");
    let stderr = refused(command, "a mount without a CA");
    assert!(stderr.contains("--ca"), "{stderr}");

    // The proper mount still reads what was written.
    assert_eq!(
        fs::read(fixture.path("over-tls.txt")).unwrap(),
        b"sealed and carried over TLS"
    );
}

#[test]
fn plaintext_only_when_both_sides_ask_for_it() {
    let dir = tempfile::Builder::new()
        .prefix("kiseki-fuse-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let server = Server::start_with(
        &dir.path().join("data"),
        free_port(),
        &["--native-insecure-plaintext"],
    );
    assert!(server.ca_path.is_none());
    assert!(server.url().starts_with("http://"));
    let mount = Mount::start(&server, &dir.path().join("mnt"));
    fs::write(mount.path.join("plain.txt"), b"over plain TCP").unwrap();
    assert_eq!(
        fs::read(mount.path.join("plain.txt")).unwrap(),
        b"over plain TCP"
    );
}
