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
mod ec_support;
use cluster_support::fragment_files;
use ec_support::{admin, EcServer};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::test_bytes;

const BUCKET: &str = "placed";

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
    let node = EcServer::start(&config);
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
    node.read_all(dir.path(), BUCKET, &objects);
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
    let node = EcServer::start(&config);
    node.read_all(dir.path(), BUCKET, &objects);
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
    node.read_all(dir.path(), BUCKET, &objects);
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
    let node = EcServer::start(&config);
    let started = Instant::now();
    while std::fs::read_dir(&pending).unwrap().count() > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "pending placements not recorded"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    node.read_all(dir.path(), BUCKET, &objects);
    assert_eq!(node.counter("ec_placement_scans"), 0);
    node.stop();
    for (name, _) in &objects {
        check_recorded(dir.path(), &placement(&config, name));
    }
}
