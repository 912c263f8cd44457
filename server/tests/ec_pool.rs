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
mod ec_support;
use cluster_support::fragment_files;
use ec_support::{admin, EcServer};

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::test_bytes;

const DEVICES: usize = 6;

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
    server.read_all(dir.path(), "ec-pool", &objects);
    assert!(
        server.counter("ec_degraded_reads") > 0,
        "degraded reads are counted"
    );
    // The periodic scrub (every 10 s) may already have regenerated some of the lost fragments
    // (onto spare devices, since device 2's directory is gone) before the server stops.
    let rebuilt_while_running = server.counter("ec_fragments_rebuilt");
    server.stop();

    // Offline rebuild restores every fragment still missing; scrub then reports clean.
    let rebuilt = admin(&config, &["rebuild"]);
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
    let scrub = admin(&config, &["scrub"]);
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
    server.read_all(dir.path(), "ec-pool", &objects);
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
    server.read_all(dir.path(), "ec-pool", &objects);
    server.stop();
    let scrub = admin(&config, &["scrub"]);
    assert!(scrub.contains("(clean)"), "{scrub}");
}
