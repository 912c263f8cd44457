//! NFSv3 with a real client (libnfs): POSIX operations round trip, exports refuse clients
//! outside their lists and writes when read-only, root is squashed, stale handles answer
//! NFS3ERR_STALE, and file handles stay valid across a server restart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod nfs_support;

use std::time::Duration;

use nfs_support::{free_port, tool, tool_ok, Client, Server};

const LIMIT: Duration = Duration::from_secs(60);
const ESTALE: i32 = 116;
const EACCES: i32 = 13;
const EROFS: i32 = 30;
const ENOTEMPTY: i32 = 39;
const ENOENT: i32 = 2;
const EEXIST: i32 = 17;

#[test]
fn posix_operations_round_trip_through_libnfs() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), free_port());
    assert!(
        server
            .banner
            .iter()
            .any(|line| line.contains("NFS exports:") && line.contains("/data")),
        "{:?}",
        server.banner
    );
    let mut client = Client::mount(&server.url("/data")).unwrap();

    client.ok("mkdir /docs");
    client.ok("write /docs/hello hello over nfs");
    assert_eq!(client.ok("cat /docs/hello"), "hello over nfs");
    client.ok("rename /docs/hello /docs/renamed");
    client.fails("cat /docs/hello", ENOENT);
    assert_eq!(client.ok("cat /docs/renamed"), "hello over nfs");
    client.ok("symlink renamed /docs/link");
    assert_eq!(client.ok("readlink /docs/link"), "renamed");
    client.ok("chmod /docs/renamed 600");
    let stat = client.ok("stat /docs/renamed");
    assert!(
        stat.contains("mode=100600") && stat.contains("size=14") && stat.contains("nlink=1"),
        "{stat}"
    );
    client.ok("truncate /docs/renamed 5");
    assert_eq!(client.ok("cat /docs/renamed"), "hello");
    client.ok("link /docs/renamed /docs/hardlink");
    assert!(client.ok("stat /docs/hardlink").contains("nlink=2"));
    client.fails("mkdir /docs", EEXIST);
    client.fails("rmdir /docs", ENOTEMPTY);
    assert_eq!(client.ok("list /docs"), "hardlink,link,renamed");
    let statvfs = client.ok("statvfs /");
    assert!(
        !statvfs.contains("blocks=0 ") && statvfs.contains(&format!("files={}", (1u64 << 48) - 1)),
        "{statvfs}"
    );

    // A handle of a removed file is stale; its inode number is never reused.
    let handle = client.ok("open /docs/hardlink");
    assert_eq!(client.ok(&format!("pread {handle} 0 100")), "hello");
    client.ok("unlink /docs/renamed");
    client.ok(&format!("fstat {handle}"));
    client.ok("unlink /docs/hardlink");
    client.fails(&format!("fstat {handle}"), ESTALE);
    client.ok("unlink /docs/link");
    client.ok("rmdir /docs");

    // The command-line tools: nfs-cp both ways, nfs-ls, nfs-cat.
    let local = dir.path().join("local.bin");
    nfs_support::write_pattern_file(&local, 3 * 1024 * 1024 + 17, 5);
    client.ok("mkdir /tools");
    tool_ok(
        "nfs-cp",
        &[local.to_str().unwrap(), &server.url("/data/tools/copy.bin")],
        LIMIT,
    );
    let back = dir.path().join("back.bin");
    tool_ok(
        "nfs-cp",
        &[&server.url("/data/tools/copy.bin"), back.to_str().unwrap()],
        LIMIT,
    );
    assert!(nfs_support::same_contents(&local, &back));
    let listing = tool_ok("nfs-ls", &[&server.url("/data/tools")], LIMIT);
    assert!(
        listing.contains("copy.bin") && listing.contains(&(3 * 1024 * 1024 + 17).to_string()),
        "{listing}"
    );
    client.ok("write /tools/note.txt written by the client");
    assert_eq!(
        tool_ok("nfs-cat", &[&server.url("/data/tools/note.txt")], LIMIT),
        "written by the client"
    );

    let metrics = server.metrics();
    for procedure in [
        "MKDIR", "RENAME", "SYMLINK", "READLINK", "SETATTR", "LINK", "REMOVE", "RMDIR", "COMMIT",
        "WRITE",
    ] {
        assert!(
            metrics.contains(&format!("procedure=\"{procedure}\",status=\"ok\"")),
            "no {procedure} in {metrics}"
        );
    }
    drop(client);
    server.stop();
}

#[test]
fn exports_refuse_outside_clients_and_writes_to_read_only_and_squash_root() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), free_port());
    let mut admin = Client::mount(&server.url("/data")).unwrap();
    admin.ok("write /shared.txt for everyone");
    admin.ok("mkdir /open");
    admin.ok("chmod /open 777");

    // 127.0.0.1 is not in /denied's list: the mount is refused, and so is every tool.
    let refused = Client::mount(&server.url("/denied"))
        .err()
        .expect("mount of /denied must be refused");
    assert!(
        refused.contains("ACCES") || refused.contains("ermission"),
        "{refused}"
    );
    let listing = tool("nfs-ls", &[&server.url("/denied")], LIMIT);
    assert!(
        !listing.status.success(),
        "nfs-ls of /denied succeeded: {listing:?}"
    );

    // /ro serves the same directory read-only.
    let mut reader = Client::mount(&server.url("/ro")).unwrap();
    assert_eq!(reader.ok("cat /shared.txt"), "for everyone");
    reader.fails("write /new.txt refused", EROFS);
    reader.fails("mkdir /newdir", EROFS);
    reader.fails("unlink /shared.txt", EROFS);
    reader.fails("chmod /shared.txt 600", EROFS);

    // /squashed maps root to 65534: no writes into root's 0755 directory, files it makes in a
    // 0777 directory belong to nobody.
    let mut squashed = Client::mount(&server.url("/squashed")).unwrap();
    squashed.fails("write /by-root.txt denied", EACCES);
    squashed.ok("write /open/by-nobody.txt made by nobody");
    let stat = admin.ok("stat /open/by-nobody.txt");
    assert!(
        stat.contains("uid=65534") && stat.contains("gid=65534"),
        "{stat}"
    );
    squashed.ok("chmod /open/by-nobody.txt 600");
    admin.ok("chmod /shared.txt 600");
    squashed.fails("cat /shared.txt", EACCES);
    assert_eq!(admin.ok("cat /shared.txt"), "for everyone");
    drop((admin, reader, squashed));
    server.stop();
}

#[test]
fn handles_stay_valid_across_restart_and_committed_writes_survive_kill() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = Server::start(dir.path(), port);
    let mut client = Client::mount(&server.url("/data")).unwrap();
    client.ok("mkdir /keep");
    client.ok("write /keep/file.txt survives restarts");
    let handle = client.ok("open /keep/file.txt");
    assert_eq!(
        client.ok(&format!("pread {handle} 0 100")),
        "survives restarts"
    );

    // nfs-cp ends with COMMIT: once it returns, the bytes are durable even through SIGKILL.
    let local = dir.path().join("committed.bin");
    nfs_support::write_pattern_file(&local, 5 * 1024 * 1024, 9);
    tool_ok(
        "nfs-cp",
        &[
            local.to_str().unwrap(),
            &server.url("/data/keep/committed.bin"),
        ],
        LIMIT,
    );
    server.kill();

    let server = Server::start(dir.path(), port);
    // The open handle (made before the restart) still reads; libnfs reconnects by itself.
    assert_eq!(
        client.ok(&format!("pread {handle} 0 100")),
        "survives restarts"
    );
    client.ok(&format!("fstat {handle}"));
    let back = dir.path().join("back.bin");
    tool_ok(
        "nfs-cp",
        &[
            &server.url("/data/keep/committed.bin"),
            back.to_str().unwrap(),
        ],
        LIMIT,
    );
    assert!(nfs_support::same_contents(&local, &back));

    server.stop();
    let server = Server::start(dir.path(), port);
    assert_eq!(
        client.ok(&format!("pread {handle} 0 100")),
        "survives restarts"
    );
    drop(client);
    server.stop();
}
