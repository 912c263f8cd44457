//! NFSv3 at size with a real client (libnfs): a 256 MiB file written and read back byte-exact
//! (streamed on both sides), and a directory of 10,000 entries listed completely, each name
//! once, across many READDIRPLUS calls that resume from cookies.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod nfs_support;

use std::time::{Duration, Instant};

use nfs_support::{free_port, tool_ok, Client, Server};

#[test]
fn a_256_mib_file_round_trips_byte_exact() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"), free_port());
    let mut client = Client::mount(&server.url("/data")).unwrap();
    client.ok("mkdir /big");

    let size = 256 * 1024 * 1024;
    let local = dir.path().join("local.bin");
    nfs_support::write_pattern_file(&local, size, 42);
    let limit = Duration::from_secs(120);
    let started = Instant::now();
    tool_ok(
        "nfs-cp",
        &[local.to_str().unwrap(), &server.url("/data/big/file.bin")],
        limit,
    );
    let written = started.elapsed();
    assert!(client
        .ok("stat /big/file.bin")
        .contains(&format!("size={size}")));

    let back = dir.path().join("back.bin");
    let started = Instant::now();
    tool_ok(
        "nfs-cp",
        &[&server.url("/data/big/file.bin"), back.to_str().unwrap()],
        limit,
    );
    let read = started.elapsed();
    assert!(
        nfs_support::same_contents(&local, &back),
        "the file read back differs"
    );
    println!("256 MiB over NFS (debug build): write {written:?}, read {read:?}");

    // Writes were coalesced into whole chunks: 256 MiB in 4 MiB chunks is 64 chunk files.
    let chunk_files = walk_files(&server.data_dir.join("chunks"));
    assert!(
        chunk_files <= 64 + 4,
        "{chunk_files} chunk files for 64 chunks of data"
    );
    drop(client);
    server.stop();
}

fn walk_files(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| {
            if entry.file_type().unwrap().is_dir() {
                walk_files(&entry.path())
            } else {
                1
            }
        })
        .sum()
}

#[test]
fn a_directory_of_ten_thousand_entries_lists_completely() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), free_port());
    let mut client = Client::mount(&server.url("/data")).unwrap();
    client.ok("mkdir /many");

    // Eight clients create 1,250 files each at once (their creates share log commits).
    let url = server.url("/data");
    let creators: Vec<_> = (0..8)
        .map(|part| {
            let url = url.clone();
            std::thread::spawn(move || {
                let mut creator = Client::mount(&url).unwrap();
                creator.ok(&format!("create_many /many f {} 1250", part * 1250));
            })
        })
        .collect();
    for creator in creators {
        creator.join().unwrap();
    }

    assert_eq!(client.ok("count /many"), "10000 distinct=10000");
    let listing = tool_ok(
        "nfs-ls",
        &[&server.url("/data/many")],
        Duration::from_secs(60),
    );
    let names: std::collections::BTreeSet<&str> = listing
        .lines()
        .filter_map(|line| line.split_whitespace().last())
        .filter(|name| name.starts_with('f'))
        .collect();
    assert_eq!(
        names.len(),
        10_000,
        "nfs-ls listed {} distinct names",
        names.len()
    );
    assert!(names.contains("f000000") && names.contains("f009999"));
    let readdirs = server
        .metrics()
        .lines()
        .find(|line| line.contains("procedure=\"READDIRPLUS\",status=\"ok\""))
        .and_then(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(
        readdirs > 20,
        "the listings took {readdirs} READDIRPLUS calls: cookies were not exercised"
    );

    // Removing while listing: a cookie of a removed entry still resumes.
    client.ok("unlink /many/f000000");
    assert_eq!(client.ok("count /many"), "9999 distinct=9999");
    drop(client);
    server.stop();
}
