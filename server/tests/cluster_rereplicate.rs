//! Periodic re-replication on running nodes: a replica that was down while a majority
//! acknowledged writes holds a copy of every chunk again within a bounded time of coming back,
//! with no `rebuild` command, and the passes are counted on `/metrics`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster_support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use cluster_support::{fragment_files, http_get, TestCluster};

/// How long the returning replica may take to hold every copy (passes run every second).
const CATCH_UP_BOUND: Duration = Duration::from_secs(30);

/// The chunk files (hex ids) of a node's plain pool.
fn chunk_files(cluster: &TestCluster, index: usize) -> BTreeSet<String> {
    fragment_files(&cluster.nodes[index].data_dir.join("chunks"))
        .iter()
        .filter_map(|file| file.file_name()?.to_str().map(str::to_owned))
        .filter(|name| name.len() == 64)
        .collect()
}

/// The value of the metric line starting with `name ` on node `index` (0 when absent).
fn metric(cluster: &TestCluster, index: usize, name: &str) -> f64 {
    let url = cluster.nodes[index].metrics_url.clone().unwrap();
    let text = http_get(&url).unwrap_or_default();
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn a_returning_replica_gets_its_missing_copies_without_rebuild() {
    let extra =
        "  rereplication: { interval_s: 1, copies_in_flight: 2, bytes_per_s_max: 67108864 }\n";
    let mut cluster = TestCluster::start_with(3, 3, extra);
    cluster.put(0, "before", 300_000, true);
    cluster.kill(2);
    for index in 0..4 {
        cluster.put(
            index % 2,
            &format!("while-down-{index}"),
            200_000 + index * 1000,
            false,
        );
    }
    let complete = chunk_files(&cluster, 0);
    let stale = chunk_files(&cluster, 2);
    let missed = complete.difference(&stale).count();
    assert!(missed >= 4, "node 3 should have missed copies ({missed})");

    let returned = Instant::now();
    cluster.restart(2);
    loop {
        let held = chunk_files(&cluster, 2);
        if complete.is_subset(&held) {
            break;
        }
        assert!(
            returned.elapsed() < CATCH_UP_BOUND,
            "node 3 still misses {:?} after {CATCH_UP_BOUND:?}\n{}",
            complete.difference(&held).collect::<Vec<_>>(),
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "node 3 held all {} chunks ({missed} missed) {} ms after its restart began",
        complete.len(),
        returned.elapsed().as_millis()
    );
    let sent: f64 = (0..2)
        .map(|index| metric(&cluster, index, "kiseki_rereplication_copies_sent_total"))
        .sum();
    assert!(sent >= missed as f64, "copies sent {sent}, missed {missed}");
    let passes = metric(&cluster, 0, "kiseki_rereplication_passes_total");
    assert!(passes >= 1.0, "passes {passes}");
    for index in 0..4 {
        cluster.check_get(2, &format!("while-down-{index}"), 200_000 + index * 1000);
    }
    // Once every replica holds every chunk, passes send nothing more.
    std::thread::sleep(Duration::from_millis(2500));
    let settled: f64 = (0..3)
        .map(|index| metric(&cluster, index, "kiseki_rereplication_copies_sent_total"))
        .sum();
    std::thread::sleep(Duration::from_millis(2500));
    let later: f64 = (0..3)
        .map(|index| metric(&cluster, index, "kiseki_rereplication_copies_sent_total"))
        .sum();
    assert_eq!(settled, later, "passes keep sending copies replicas hold");
}
