//! The native bulk channel: sealed chunk frames over plain TCP on connections proven with a
//! session granted over TLS. Frames fetched there are the ones TLS carries; a connection
//! without a valid proof, with a replayed proof, or from another address gets a precise
//! refusal; a server without the channel still serves frames inside TLS. A frame damaged on
//! the server's disk is refused by the client that opens it, asked for again with the server's
//! check, and counted by the server. Real `kiseki-server` and `kiseki-client-fuse` processes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::net::SocketAddr;
use std::sync::Arc;

use common::{free_port, transport, Mount, Server};
use kiseki_client::{Client, ClientOptions, MemoryChunkCache, Transport};
use kiseki_crypto::ChannelKey;
use kiseki_proto::bulk;
use kiseki_types::{ChunkId, ErrorKind, InodeId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("kiseki-bulk-")
        .tempdir_in("/var/tmp")
        .unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Writes `len` patterned bytes to `name` through a real mount of `server`; returns the chunk
/// ids of the file, in order.
fn write_file(
    runtime: &tokio::runtime::Runtime,
    server: &Server,
    dir: &std::path::Path,
    name: &str,
    len: usize,
) -> Vec<ChunkId> {
    let mount = Mount::start(server, &dir.join("mnt"));
    let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
    fs::write(mount.path.join(name), &data).unwrap();
    drop(mount);
    let tls = transport(server, false);
    runtime.block_on(async {
        let node = tls.lookup(InodeId::ROOT, name).await.unwrap();
        let layout = tls.layout(node.inode, 0, len as u64).await.unwrap();
        layout.extents.iter().map(|extent| extent.chunk).collect()
    })
}

#[test]
fn frames_over_the_bulk_channel_are_the_ones_tls_carries() {
    let dir = temp_dir();
    let server = Server::start(&dir.path().join("data"), free_port());
    let runtime = runtime();
    let _entered = runtime.enter();
    let chunks = write_file(&runtime, &server, dir.path(), "data.bin", 9 << 20);
    // At least three chunks of at most 4 MiB (the kernel may hand the writes over in pieces
    // that a flush cuts elsewhere).
    assert!(chunks.len() >= 3, "9 MiB in {} chunks", chunks.len());
    let fetched = chunks.len() as u64;
    let (bulk, tls) = (transport(&server, true), transport(&server, false));
    runtime.block_on(async {
        for id in &chunks {
            let over_bulk = bulk.get_chunk(*id).await.unwrap();
            let over_tls = tls.get_chunk(*id).await.unwrap();
            assert_eq!(over_bulk, over_tls, "chunk {id}");
        }
        assert_eq!(bulk.bulk_frames_fetched(), fetched);
        assert_eq!(tls.bulk_frames_fetched(), 0);

        // Stores go over the channel too and are verified as over TLS: a frame the server has
        // is deduplicated; an altered one is refused with the reason TLS would give.
        let frame = tls.get_chunk(chunks[0]).await.unwrap();
        assert!(bulk.put_chunk(chunks[0], frame.clone()).await.unwrap());
        assert_eq!(bulk.bulk_frames_stored(), 1);
        let mut altered = frame.to_vec();
        let middle = altered.len() / 2;
        altered[middle] ^= 1;
        let refused = bulk
            .put_chunk(chunks[0], altered.clone().into())
            .await
            .unwrap_err();
        let refused_over_tls = tls.put_chunk(chunks[0], altered.into()).await.unwrap_err();
        assert_eq!(
            refused.kind, refused_over_tls.kind,
            "{refused} / {refused_over_tls}"
        );
        assert_ne!(refused.kind, ErrorKind::Unavailable, "{refused}");
        assert_eq!(bulk.bulk_frames_stored(), 1);
        // The server's answer, as TLS carries it, not a silent fallback: a chunk that does not
        // exist (a file's missing chunk is corruption to the namespace).
        let missing = bulk.get_chunk(ChunkId([7; 32])).await.unwrap_err();
        assert_eq!(missing.kind, ErrorKind::Corrupt, "{missing}");
        assert!(missing.message.contains("not found"), "{missing}");
        let over_tls = tls.get_chunk(ChunkId([7; 32])).await.unwrap_err();
        assert_eq!(over_tls.kind, missing.kind, "{over_tls}");
        assert_eq!(bulk.bulk_frames_fetched(), fetched);
    });
}

/// Connects to the bulk channel at `address` (from `source` if given) and proves `session_id`
/// with `key`; returns the connection, the server's nonce and its reply (status, message).
async fn hello(
    address: SocketAddr,
    source: Option<SocketAddr>,
    session_id: [u8; bulk::SESSION_ID_BYTES],
    key: &ChannelKey,
    replayed_proof: Option<[u8; 32]>,
) -> (TcpStream, [u8; 32], u8, String) {
    let socket = TcpSocket::new_v4().unwrap();
    if let Some(source) = source {
        socket.bind(source).unwrap();
    }
    let mut tcp = socket.connect(address).await.unwrap();
    let mut greeting = [0u8; 40];
    tcp.read_exact(&mut greeting).await.unwrap();
    assert_eq!(&greeting[..8], bulk::MAGIC);
    let nonce: [u8; 32] = greeting[8..].try_into().unwrap();
    let proof =
        replayed_proof.unwrap_or_else(|| key.prove(&bulk::proof_context(&nonce, &session_id)));
    tcp.write_all(&session_id).await.unwrap();
    tcp.write_all(&proof).await.unwrap();
    let (status, message) = reply(&mut tcp).await;
    (tcp, nonce, status, String::from_utf8(message).unwrap())
}

async fn reply(tcp: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut header = [0u8; bulk::REPLY_HEADER_BYTES];
    tcp.read_exact(&mut header).await.unwrap();
    let (status, len) = bulk::parse_reply_header(&header);
    let mut payload = vec![0u8; len as usize];
    tcp.read_exact(&mut payload).await.unwrap();
    (status, payload)
}

async fn get(tcp: &mut TcpStream, op: u8, id: &ChunkId) -> (u8, Vec<u8>) {
    tcp.write_all(&bulk::request_header(op, &id.0, 0))
        .await
        .unwrap();
    reply(tcp).await
}

#[test]
fn a_bulk_connection_must_prove_a_live_session_from_the_address_it_was_granted_to() {
    let dir = temp_dir();
    let server = Server::start(&dir.path().join("data"), free_port());
    let runtime = runtime();
    let _entered = runtime.enter();
    let chunks = write_file(&runtime, &server, dir.path(), "small.bin", 100_000);
    let tls = transport(&server, false);
    runtime.block_on(async {
        let grant = tls.open_bulk_session().await.unwrap();
        let address: SocketAddr = format!("127.0.0.1:{}", grant.port).parse().unwrap();
        let session: [u8; 16] = grant.session_id.as_slice().try_into().unwrap();
        let key = ChannelKey::from_bytes(&grant.key).unwrap();
        let denied = bulk::status_of(ErrorKind::PermissionDenied);

        let wrong_key = ChannelKey::random().unwrap();
        let (_, _, status, message) = hello(address, None, session, &wrong_key, None).await;
        assert_eq!(
            (status, message.as_str()),
            (denied, "bulk session proof does not verify")
        );

        let (_, _, status, message) = hello(address, None, [9; 16], &key, None).await;
        assert_eq!(
            (status, message.as_str()),
            (denied, "unknown or expired bulk session")
        );

        let elsewhere: SocketAddr = "127.0.0.2:0".parse().unwrap();
        let (_, _, status, message) = hello(address, Some(elsewhere), session, &key, None).await;
        assert_eq!(
            (status, message.as_str()),
            (denied, "bulk session was granted to another address")
        );

        let (mut tcp, nonce, status, message) = hello(address, None, session, &key, None).await;
        assert_eq!((status, message.as_str()), (bulk::STATUS_OK, ""));
        let (status, frame) = get(&mut tcp, bulk::OP_GET_CHUNK, &chunks[0]).await;
        assert_eq!(status, bulk::STATUS_OK);
        assert_eq!(frame, tls.get_chunk(chunks[0]).await.unwrap().to_vec());
        let (status, message) = get(&mut tcp, bulk::OP_GET_CHUNK, &ChunkId([3; 32])).await;
        assert_eq!(status, bulk::status_of(ErrorKind::Corrupt));
        assert!(String::from_utf8_lossy(&message).contains("not found"));
        let (status, _) = get(&mut tcp, 9, &chunks[0]).await;
        assert_eq!(status, bulk::status_of(ErrorKind::InvalidArgument));

        // A proof seen on the wire is worth nothing on the next connection (fresh nonce).
        let recorded = key.prove(&bulk::proof_context(&nonce, &session));
        let (_, _, status, _) = hello(address, None, session, &key, Some(recorded)).await;
        assert_eq!(status, denied);
    });
    // Operators see the same story in the server's metrics.
    assert_eq!(counter(&server, "kiseki_native_bulk_refused_total"), 4);
    assert_eq!(counter(&server, "kiseki_native_bulk_connections_total"), 1);
    assert_eq!(counter(&server, "kiseki_native_bulk_frames_sent_total"), 1);
}

/// The value of counter `name` (with its labels, if any) in `server`'s metrics; 0 when the
/// counter has not appeared yet.
fn counter(server: &Server, name: &str) -> u64 {
    let metrics = std::process::Command::new("curl")
        .args(["-sSf", server.metrics_url.as_deref().unwrap()])
        .output()
        .unwrap();
    assert!(
        metrics.status.success(),
        "scraping {:?}",
        server.metrics_url
    );
    let metrics = String::from_utf8(metrics.stdout).unwrap();
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn without_a_bulk_channel_frames_come_inside_tls() {
    let dir = temp_dir();
    let server = Server::start_without_bulk(&dir.path().join("data"), free_port());
    let runtime = runtime();
    let _entered = runtime.enter();
    let chunks = write_file(&runtime, &server, dir.path(), "data.bin", 5 << 20);
    let wants_bulk = transport(&server, true);
    let calls = |method: &str| {
        counter(
            &server,
            &format!("kiseki_native_requests_total{{method=\"{method}\"}}"),
        )
    };
    let (gets, sessions) = (calls("GetChunk"), calls("OpenBulkSession"));
    runtime.block_on(async {
        assert!(wants_bulk.open_bulk_session().await.is_err());
        for id in &chunks {
            let frame = wants_bulk.get_chunk(*id).await.unwrap();
            assert!(frame.len() > 1 << 20, "chunk {id}: {} bytes", frame.len());
        }
        assert_eq!(wants_bulk.bulk_frames_fetched(), 0);
    });
    // The server counts each call by method: every frame came through GetChunk.
    assert_eq!(calls("GetChunk") - gets, chunks.len() as u64);
    assert!(calls("OpenBulkSession") > sessions);
}

/// The file under `dir` (searched depth-first) named `name`.
fn find_file(dir: &std::path::Path, name: &str) -> Option<std::path::PathBuf> {
    for entry in fs::read_dir(dir).ok()? {
        let path = entry.ok()?.path();
        if path.is_dir() {
            if let Some(found) = find_file(&path, name) {
                return Some(found);
            }
        } else if path.file_name().is_some_and(|file| file == name) {
            return Some(path);
        }
    }
    None
}

#[test]
fn a_chunk_damaged_on_the_server_is_refused_rechecked_and_counted_never_read_as_data() {
    let dir = temp_dir();
    let data_dir = dir.path().join("data");
    let server = Server::start(&data_dir, free_port());
    let runtime = runtime();
    let _entered = runtime.enter();
    let len = 5 << 20;
    let chunks = write_file(&runtime, &server, dir.path(), "data.bin", len);
    let expected: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
    let path = find_file(&data_dir, &chunks[0].to_hex()).expect("the first chunk's file");
    let original = fs::read(&path).unwrap();
    let mut damaged = original.clone();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x10;
    fs::write(&path, &damaged).unwrap();

    // The server sends the frame as stored; the client's tag check refuses it. Asked again
    // with the server's check, the server finds its copy damaged and counts it.
    let damaged_total = || counter(&server, "kiseki_native_damaged_chunks_total");
    let bulk = Arc::new(transport(&server, true));
    runtime.block_on(async {
        let frame = bulk.get_chunk(chunks[0]).await.unwrap();
        assert_eq!(frame.to_vec(), damaged);
        let client = Client::connect(
            bulk.clone(),
            Arc::new(MemoryChunkCache::new(1 << 20)),
            ClientOptions::default(),
        )
        .await
        .unwrap();
        let refused = client.open_frame(chunks[0], frame).unwrap_err();
        assert_eq!(refused.kind, ErrorKind::Corrupt, "{refused}");
        let checked = bulk.get_chunk_checked(chunks[0]).await.unwrap_err();
        assert_eq!(checked.kind, ErrorKind::Corrupt, "{checked}");
        assert!(checked.message.contains("checksum"), "{checked}");
        // Another chunk of the file passes the same check.
        assert!(bulk.get_chunk_checked(chunks[1]).await.is_ok());
    });
    assert_eq!(damaged_total(), 1);

    // Through a mount: EIO, after the client asked once more with the check.
    let mount = Mount::start(&server, &dir.path().join("reader"));
    let error = fs::read(mount.path.join("data.bin")).unwrap_err();
    assert_eq!(error.raw_os_error(), Some(libc::EIO), "{error}");
    assert!(
        damaged_total() >= 2,
        "the mount's read asked with the check"
    );
    // Once the chunk is whole again, the same mount reads it: the refusal was not cached.
    fs::write(&path, &original).unwrap();
    assert!(fs::read(mount.path.join("data.bin")).unwrap() == expected);
}
