//! An erasure-coded pool (4+2 over six device directories) behind the S3 gateway, as an operator
//! runs it: objects written with the aws cli are cut into fragments on distinct devices; with a
//! device directory deleted, GETs still return the exact bytes (degraded reads, counted on
//! /metrics); `kiseki-server rebuild` restores every fragment and `kiseki-server scrub` reports
//! clean; a fragment with flipped bytes is found and repaired by the periodic scrub while the
//! server runs, and the object still reads back exact.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "s3/support.rs"]
mod support;

mod cluster_support;
use cluster_support::fragment_files;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{run, success, test_bytes};

const DEVICES: usize = 6;

struct EcServer {
    child: Option<Child>,
    endpoint: String,
    metrics: String,
    access_key: String,
    secret_key: String,
}

fn banner_value(banner: &[String], label: &str) -> String {
    banner
        .iter()
        .find_map(|line| line.trim().strip_prefix(label).map(|r| r.trim().to_owned()))
        .unwrap_or_else(|| panic!("no {label:?} in {banner:?}"))
}

fn write_config(dir: &Path) -> PathBuf {
    let config = format!(
        "data_dir: {data}\n\
         metrics_listen: 127.0.0.1:0\n\
         s3_listen: 127.0.0.1:0\n\
         native_listen: 127.0.0.1:0\n\
         chunk_size_bytes: 262144\n\
         pools:\n  \
           - name: bulk\n    \
             device_class: bulk-nvme\n    \
             ec: 4+2\n    \
             small_chunk_bytes_max: 16384\n    \
             scrub_interval_secs: 10\n    \
             devices: [dev0, dev1, dev2, dev3, dev4, dev5]\n\
         dev_tenant:\n  id: 1\n",
        data = dir.join("data").display()
    );
    let path = dir.join("ec.yaml");
    std::fs::write(&path, config).unwrap();
    path
}

impl EcServer {
    fn start(config: &Path) -> EcServer {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kiseki-server"))
            .arg("--config")
            .arg(config)
            .env("KISEKI_LOG", "warn,s3s=off")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
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
            "{banner:?}"
        );
        let endpoint = banner_value(&banner, "S3 endpoint:");
        EcServer {
            child: Some(child),
            endpoint: endpoint.split_whitespace().next().unwrap().to_owned(),
            metrics: banner_value(&banner, "metrics:"),
            access_key: banner_value(&banner, "S3 access key:"),
            secret_key: banner_value(&banner, "S3 secret key:"),
        }
    }

    fn aws(&self, args: &[&str]) -> String {
        let mut command = Command::new("aws");
        command
            .args(["--endpoint-url", &self.endpoint])
            .args(args)
            .env("AWS_ACCESS_KEY_ID", &self.access_key)
            .env("AWS_SECRET_ACCESS_KEY", &self.secret_key)
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env_remove("AWS_CA_BUNDLE")
            .env_remove("AWS_PROFILE");
        success(run(&mut command, Duration::from_secs(120)), "aws")
    }

    /// The value of an erasure-coding counter of pool `bulk` on /metrics.
    fn counter(&self, name: &str) -> u64 {
        let address = self
            .metrics
            .trim_start_matches("http://")
            .trim_end_matches("/metrics")
            .to_owned();
        let mut stream = TcpStream::connect(address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        write!(
            stream,
            "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        let prefix = format!("kiseki_{name}_total{{pool=\"bulk\"}} ");
        text.lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {prefix} in metrics:\n{text}"))
    }

    fn stop(mut self) {
        let mut child = self.child.take().unwrap();
        assert!(Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success());
        let started = Instant::now();
        while child.try_wait().unwrap().is_none() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "no stop after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for EcServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn admin(config: &Path, command: &str) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiseki-server"));
    child
        .args([command, "--config"])
        .arg(config)
        .env("KISEKI_LOG", "warn");
    success(run(&mut child, Duration::from_secs(120)), command)
}

#[test]
fn erasure_coded_pool_survives_a_lost_device_and_flipped_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let devices: Vec<PathBuf> = (0..DEVICES)
        .map(|i| dir.path().join("data").join(format!("dev{i}")))
        .collect();
    let server = EcServer::start(&config);
    server.aws(&["s3", "mb", "s3://ec-pool"]);
    let objects: Vec<(String, Vec<u8>)> = [(1_000_000, 1u64), (3_000, 2), (700_000, 3u64)]
        .into_iter()
        .map(|(len, seed)| (format!("object-{seed}"), test_bytes(len, seed)))
        .collect();
    for (name, bytes) in &objects {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        server.aws(&[
            "s3",
            "cp",
            "--only-show-errors",
            path.to_str().unwrap(),
            &format!("s3://ec-pool/{name}"),
        ]);
    }
    let counts: Vec<usize> = devices.iter().map(|d| fragment_files(d).len()).collect();
    assert!(
        counts.iter().all(|&c| c > 0),
        "every device holds fragments: {counts:?}"
    );
    assert!(server.counter("ec_fragments_written") > 0);

    // Lose a device: every object still reads back exact.
    let total: usize = counts.iter().sum();
    let lost = fragment_files(&devices[2]).len();
    std::fs::remove_dir_all(&devices[2]).unwrap();
    let read_all = |server: &EcServer| {
        for (name, bytes) in &objects {
            let out = dir.path().join(format!("{name}.back"));
            server.aws(&[
                "s3",
                "cp",
                "--only-show-errors",
                &format!("s3://ec-pool/{name}"),
                out.to_str().unwrap(),
            ]);
            assert_eq!(&std::fs::read(&out).unwrap(), bytes, "{name}");
            std::fs::remove_file(&out).unwrap();
        }
    };
    read_all(&server);
    assert!(
        server.counter("ec_degraded_reads") > 0,
        "degraded reads are counted"
    );
    // The periodic scrub (every 10 s) may already have regenerated some of the lost fragments
    // (onto spare devices, since device 2's directory is gone) before the server stops.
    let rebuilt_while_running = server.counter("ec_fragments_rebuilt");
    server.stop();

    // Offline rebuild restores every fragment still missing; scrub then reports clean.
    let rebuilt = admin(&config, "rebuild");
    let rebuilt_offline: u64 = rebuilt
        .split(" rebuilt")
        .next()
        .and_then(|head| head.split_whitespace().last())
        .and_then(|count| count.parse().ok())
        .unwrap_or_else(|| panic!("no rebuilt count in {rebuilt:?}"));
    assert_eq!(
        rebuilt_offline + rebuilt_while_running,
        lost as u64,
        "every lost fragment regenerated exactly once: {rebuilt}"
    );
    let now: usize = devices.iter().map(|d| fragment_files(d).len()).sum();
    assert_eq!(now, total, "full redundancy again");
    let scrub = admin(&config, "scrub");
    assert!(scrub.contains("(clean)"), "{scrub}");

    // Flip bytes in a fragment body while the server runs: the periodic scrub repairs it.
    let server = EcServer::start(&config);
    let victim = fragment_files(&devices[4])
        .into_iter()
        .max_by_key(|p| p.metadata().unwrap().len())
        .unwrap();
    let original = std::fs::read(&victim).unwrap();
    let mut damaged = original.clone();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0xff;
    std::fs::write(&victim, &damaged).unwrap();
    read_all(&server);
    let started = Instant::now();
    while server.counter("ec_scrub_repaired") == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "periodic scrub did not repair"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(
        std::fs::read(&victim).unwrap(),
        original,
        "fragment regenerated byte-exact"
    );
    assert!(server.counter("ec_corrupt_fragments") >= 1);
    read_all(&server);
    server.stop();
    let scrub = admin(&config, "scrub");
    assert!(scrub.contains("(clean)"), "{scrub}");
}
