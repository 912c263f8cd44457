//! Starts the built `kiseki-keyserver` binary, uses it through `RemoteKeySource`, scrapes its
//! metrics, stops it with SIGTERM and checks a restart serves the same keys.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use kiseki_crypto::{open_in_place, seal_in_place, DekEpoch, KeyError, KeySource};
use kiseki_proto::RemoteKeySource;
use kiseki_types::TenantId;

const TENANT: TenantId = TenantId(42);
const WAIT: Duration = Duration::from_secs(20);

/// The key server process; killed by pid if a test fails before stopping it.
struct Server {
    child: Child,
    grpc: SocketAddr,
    metrics: SocketAddr,
}

impl Server {
    /// Starts the key server on free ports. A port found free can be taken by another test
    /// before the server binds it; then the server exits at start and is tried again on new
    /// ports (3 attempts, the reason is in `log`).
    fn start(data_dir: &Path, log: &Path) -> Server {
        for _ in 0..3 {
            let (grpc, metrics) = (free_address(), free_address());
            let log_file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .unwrap();
            let child = Command::new(env!("CARGO_BIN_EXE_kiseki-keyserver"))
                .arg("--data-dir")
                .arg(data_dir)
                .args([
                    "--listen",
                    &grpc.to_string(),
                    "--metrics-listen",
                    &metrics.to_string(),
                ])
                .stdout(Stdio::null())
                .stderr(log_file)
                .spawn()
                .unwrap();
            let mut server = Server {
                child,
                grpc,
                metrics,
            };
            if server.wait_until_listening() {
                return server;
            }
        }
        panic!(
            "key server exited at start three times: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }

    /// Waits until both ports accept; `false` if the process exited first.
    fn wait_until_listening(&mut self) -> bool {
        let deadline = Instant::now() + WAIT;
        while TcpStream::connect(self.grpc).is_err() || TcpStream::connect(self.metrics).is_err() {
            if self.child.try_wait().unwrap().is_some() {
                return false;
            }
            assert!(
                Instant::now() < deadline,
                "key server did not start listening"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    fn source(&self) -> RemoteKeySource {
        RemoteKeySource::connect_lazy(&format!("http://{}", self.grpc)).unwrap()
    }

    fn terminate(mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "key server ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn free_address() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn scrape(address: SocketAddr) -> String {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_survive_a_graceful_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (data_dir, log) = (dir.path().join("data"), dir.path().join("keyserver.log"));
    let server = Server::start(&data_dir, &log);
    let source = server.source();

    assert!(matches!(
        source.keyring(TENANT).await,
        Err(KeyError::UnknownTenant(TENANT))
    ));
    source.ensure_tenant(TENANT).await.unwrap();
    let keyring = source.keyring(TENANT).await.unwrap();
    assert_eq!(keyring.current().epoch(), DekEpoch(1));
    let chunk_id = keyring.addressing().chunk_id(b"content");
    let mut sealed = b"written before the restart".to_vec();
    let (nonce, tag) = seal_in_place(&keyring.current(), b"aad", &mut sealed).unwrap();
    sealed.extend_from_slice(&tag);
    assert_eq!(source.rotate_dek(TENANT).await.unwrap(), DekEpoch(2));
    assert_eq!(
        source.keyring(TENANT).await.unwrap().current().epoch(),
        DekEpoch(2)
    );

    let metrics = scrape(server.metrics);
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert!(
        metrics.contains("kiseki_keyserver_requests_total{rpc=\"GetTenantKeys\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "kiseki_keyserver_request_errors_total{rpc=\"GetTenantKeys\",code=\"NotFound\"} 1"
        ),
        "{metrics}"
    );
    assert!(metrics.trim_end().ends_with("# EOF"), "{metrics}");

    let status = server.terminate();
    assert!(
        status.success(),
        "exit status {status}: {}",
        std::fs::read_to_string(&log).unwrap()
    );

    let restarted = Server::start(&data_dir, &log);
    let keyring = restarted.source().keyring(TENANT).await.unwrap();
    assert_eq!(keyring.current().epoch(), DekEpoch(2));
    assert_eq!(keyring.addressing().chunk_id(b"content"), chunk_id);
    let old = keyring.epoch(DekEpoch(1)).unwrap();
    let opened = open_in_place(&old, nonce, b"aad", &mut sealed).unwrap();
    assert_eq!(opened, b"written before the restart");
    assert!(restarted.terminate().success());
}
