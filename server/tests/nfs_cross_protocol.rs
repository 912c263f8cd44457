//! One namespace behind NFS and S3: a file written over NFS is the same object over S3 and in
//! the namespace API, and an object PUT over S3 is a file over NFS.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod nfs_support;

use std::time::Duration;

use nfs_support::{free_port, tool_ok, Client, Server};

#[test]
fn files_written_over_nfs_are_objects_over_s3_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"), free_port());
    let limit = Duration::from_secs(60);
    let mut client = Client::mount(&server.url("/data")).unwrap();
    client.ok("mkdir /cross");

    // NFS -> S3: the export is tenant 1's /data, which S3 serves as bucket "data".
    let local = dir.path().join("from-nfs.bin");
    nfs_support::write_pattern_file(&local, 9 * 1024 * 1024 + 3, 11);
    tool_ok(
        "nfs-cp",
        &[
            local.to_str().unwrap(),
            &server.url("/data/cross/from-nfs.bin"),
        ],
        limit,
    );
    let fetched = dir.path().join("fetched.bin");
    server.aws(&[
        "s3api",
        "get-object",
        "--bucket",
        "data",
        "--key",
        "cross/from-nfs.bin",
        fetched.to_str().unwrap(),
    ]);
    assert!(
        nfs_support::same_contents(&local, &fetched),
        "S3 GET differs from what NFS wrote"
    );

    // S3 -> NFS.
    let object = dir.path().join("from-s3.bin");
    nfs_support::write_pattern_file(&object, 5 * 1024 * 1024 + 1, 12);
    server.aws(&[
        "s3api",
        "put-object",
        "--bucket",
        "data",
        "--key",
        "cross/from-s3.bin",
        "--body",
        object.to_str().unwrap(),
    ]);
    assert!(client.ok("list /cross").contains("from-s3.bin"));
    let back = dir.path().join("back.bin");
    tool_ok(
        "nfs-cp",
        &[
            &server.url("/data/cross/from-s3.bin"),
            back.to_str().unwrap(),
        ],
        limit,
    );
    assert!(
        nfs_support::same_contents(&object, &back),
        "NFS read differs from what S3 put"
    );

    // An S3 overwrite keeps the inode: the NFS handle opened before it reads the new bytes.
    client.ok("write /cross/note.txt before");
    let handle = client.ok("open /cross/note.txt");
    let replacement = dir.path().join("note.txt");
    std::fs::write(&replacement, "after the S3 put").unwrap();
    server.aws(&[
        "s3api",
        "put-object",
        "--bucket",
        "data",
        "--key",
        "cross/note.txt",
        "--body",
        replacement.to_str().unwrap(),
    ]);
    assert_eq!(
        client.ok(&format!("pread {handle} 0 100")),
        "after the S3 put"
    );
    drop(client);
    let data_dir = server.data_dir.clone();
    server.stop();

    // And in-process, through the namespace API every gateway calls.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let namespace = nfs_support::open_namespace(&data_dir);
        let tenant = namespace.tenant(kiseki_types::TenantId(1)).await.unwrap();
        let bytes = tenant
            .read_path("data/cross/from-nfs.bin", 0, u64::MAX)
            .unwrap()
            .read_to_end()
            .await
            .unwrap();
        assert_eq!(bytes, std::fs::read(&local).unwrap());
        namespace.shutdown().await;
    });
}
