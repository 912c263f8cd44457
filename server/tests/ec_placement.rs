//! Chunk placement recorded in the shard log, as an operator sees it: objects written over S3
//! into an erasure-coded pool (4+2 over six device directories) have every chunk's fragments
//! recorded (`kiseki-server placement` prints node and device of each, and each named device
//! holds that fragment); after six devices are added to the pool and the server restarts (new
//! epoch, new ranking), every object reads back byte-exact with zero placement scans
//! (`kiseki_ec_placement_scans_total`); when a device dies while the server runs, the periodic
//! scrub rebuilds its fragments onto spares and the recorded placement names the spares; an
//! offline `rebuild` leaves its moved placements in a file that the node records at start.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "s3/support.rs"]
mod support;

mod cluster_support;
use cluster_support::fragment_files;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{run, success, test_bytes};

const BUCKET: &str = "placed";

struct Node {
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

fn write_config(dir: &Path, devices: usize, scrub: bool) -> PathBuf {
    let names: Vec<String> = (0..devices).map(|i| format!("dev{i}")).collect();
    let config = format!(
        "data_dir: {data}\n\
         metrics_listen: 127.0.0.1:0\n\
         s3_listen: 127.0.0.1:0\n\
         native_listen: 127.0.0.1:0\n\
         chunk_size_bytes: 262144\n\
         pools:\n  \
           - name: bulk\n    \
             device_class: bulk-nvme\n    \
             ec: 4+2\n{scrub}    \
             devices: [{names}]\n\
         dev_tenant:\n  id: 1\n",
        data = dir.join("data").display(),
        scrub = if scrub {
            "    scrub_interval_secs: 10\n"
        } else {
            ""
        },
        names = names.join(", "),
    );
    let path = dir.join("ec.yaml");
    std::fs::write(&path, config).unwrap();
    path
}

impl Node {
    fn start(config: &Path) -> Node {
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
        Node {
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

    /// A counter of pool `bulk` on /metrics.
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

    fn read_all(&self, dir: &Path, objects: &[(String, Vec<u8>)]) {
        for (name, bytes) in objects {
            let out = dir.join(format!("{name}.back"));
            self.aws(&[
                "s3",
                "cp",
                "--only-show-errors",
                &format!("s3://{BUCKET}/{name}"),
                out.to_str().unwrap(),
            ]);
            assert_eq!(&std::fs::read(&out).unwrap(), bytes, "{name}");
            std::fs::remove_file(&out).unwrap();
        }
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

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn admin(config: &Path, args: &[&str]) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiseki-server"));
    child
        .args(args)
        .arg("--config")
        .arg(config)
        .env("KISEKI_LOG", "warn");
    success(run(&mut child, Duration::from_secs(120)), args[0])
}

/// The recorded placement of every chunk of an object: chunk hex -> device name per fragment.
fn placement(config: &Path, key: &str) -> Vec<(String, Vec<String>)> {
    let out = admin(config, &["placement", "--bucket", BUCKET, "--key", key]);
    let mut chunks: Vec<(String, Vec<String>)> = Vec::new();
    for line in out.lines() {
        if let Some(rest) = line.strip_prefix("chunk ") {
            assert!(rest.contains("pool bulk profile 4+2"), "recorded: {out}");
            let hex = rest
                .split_whitespace()
                .nth(1)
                .unwrap()
                .trim_end_matches(':');
            chunks.push((hex.to_owned(), Vec::new()));
        } else if let Some(rest) = line.trim().strip_prefix("fragment ") {
            let device = rest.split(" device ").nth(1).unwrap();
            let name = device.split_whitespace().next().unwrap().to_owned();
            chunks.last_mut().unwrap().1.push(name);
        }
    }
    assert!(!chunks.is_empty(), "{out}");
    for (_, devices) in &chunks {
        assert_eq!(devices.len(), 6, "six fragments recorded: {out}");
    }
    chunks
}

/// Checks that each recorded device holds that fragment; returns the fragments per device.
fn check_recorded(dir: &Path, recorded: &[(String, Vec<String>)]) -> BTreeMap<String, usize> {
    let mut per_device = BTreeMap::new();
    for (hex, devices) in recorded {
        for (index, device) in devices.iter().enumerate() {
            let wanted = format!("{hex}.{index}");
            let files = fragment_files(&dir.join("data").join(device));
            assert!(
                files
                    .iter()
                    .any(|f| f.file_name().unwrap().to_string_lossy() == wanted),
                "fragment {index} of {hex} is on {device}"
            );
            *per_device.entry(device.clone()).or_insert(0) += 1;
        }
    }
    per_device
}

#[test]
fn placement_is_recorded_survives_new_devices_and_follows_rebuilds() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 6, false);
    let node = Node::start(&config);
    node.aws(&["s3", "mb", &format!("s3://{BUCKET}")]);
    let objects: Vec<(String, Vec<u8>)> = [(1_000_000, 1u64), (3_000, 2), (700_000, 3)]
        .into_iter()
        .map(|(len, seed)| (format!("object-{seed}"), test_bytes(len, seed)))
        .collect();
    for (name, bytes) in &objects {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        node.aws(&[
            "s3",
            "cp",
            "--only-show-errors",
            path.to_str().unwrap(),
            &format!("s3://{BUCKET}/{name}"),
        ]);
    }
    node.read_all(dir.path(), &objects);
    assert_eq!(node.counter("ec_placement_scans"), 0);
    node.stop();

    // The operator's view: every fragment's node and device, each holding that fragment.
    let mut before = BTreeMap::new();
    for (name, _) in &objects {
        let recorded = placement(&config, name);
        check_recorded(dir.path(), &recorded);
        before.insert(name.clone(), recorded);
    }
    assert_eq!(before["object-1"].len(), 4, "1 MB in 256 KiB chunks");

    // Six more devices: the ranking changes; reads go to the recorded devices, no scans.
    let config = write_config(dir.path(), 12, true);
    let node = Node::start(&config);
    node.read_all(dir.path(), &objects);
    assert_eq!(
        node.counter("ec_placement_scans"),
        0,
        "no device was probed"
    );
    assert!(node.counter("ec_placement_recorded_lookups") >= 6);

    // dev1 dies while the node runs: the periodic scrub moves its fragments to spares and the
    // node records where they went.
    let dead = dir.path().join("data").join("dev1");
    let lost = fragment_files(&dead).len();
    assert!(lost > 0);
    std::fs::remove_dir_all(&dead).unwrap();
    std::fs::write(&dead, b"dead device").unwrap();
    let started = Instant::now();
    while node.counter("ec_scrub_repaired") < lost as u64 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "periodic scrub did not repair"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    node.read_all(dir.path(), &objects);
    assert_eq!(node.counter("ec_placement_scans"), 0);
    node.stop();

    // dev1 is replaced by an empty device; the records name the spares, not dev1.
    std::fs::remove_file(&dead).unwrap();
    let mut moved = 0;
    for (name, _) in &objects {
        let recorded = placement(&config, name);
        let per_device = check_recorded(dir.path(), &recorded);
        assert!(!per_device.contains_key("dev1"), "{name}: {recorded:?}");
        for ((_, now), (_, then)) in recorded.iter().zip(&before[name]) {
            moved += now.iter().zip(then).filter(|(a, b)| a != b).count();
        }
    }
    assert_eq!(moved, lost, "every lost fragment is recorded on its spare");

    // An offline rebuild after another device loss leaves its placements for the node.
    let dev3 = dir.path().join("data").join("dev3");
    let lost3 = fragment_files(&dev3).len();
    std::fs::remove_dir_all(&dev3).unwrap();
    let rebuilt = admin(&config, &["rebuild"]);
    assert!(rebuilt.contains(&format!("{lost3} rebuilt")), "{rebuilt}");
    assert!(rebuilt.contains("moved chunks left in"), "{rebuilt}");
    let pending = dir.path().join("data").join("placement-pending");
    assert_eq!(std::fs::read_dir(&pending).unwrap().count(), 1);
    let node = Node::start(&config);
    let started = Instant::now();
    while std::fs::read_dir(&pending).unwrap().count() > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "pending placements not recorded"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    node.read_all(dir.path(), &objects);
    assert_eq!(node.counter("ec_placement_scans"), 0);
    node.stop();
    for (name, _) in &objects {
        check_recorded(dir.path(), &placement(&config, name));
    }
}
