//! Measurement, not a check (ignored by default): S3 PUT rate of boto3 writers against a
//! 1-node cluster and a 3-node cluster (3 replicas) started the same way, in one run.
//! `cargo test -p kiseki-server --test cluster_throughput -- --ignored --nocapture`

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster_support;

use std::time::Duration;

use cluster_support::TestCluster;

fn measure(nodes: usize, size_note: &str) -> String {
    let cluster = TestCluster::start(nodes, nodes);
    cluster.put(0, "warm-up", 100, true);
    let history = cluster.dir.path().join("history.json");
    let history = history.display().to_string();
    let endpoints = cluster.endpoints();
    let output = cluster.s3(
        &[
            "write",
            "--endpoints",
            &endpoints,
            "--seconds",
            "15",
            "--threads",
            "8",
            "--history",
            &history,
        ],
        Duration::from_secs(90),
    );
    let summary = cluster.expect_success(output, "writers");
    format!("{nodes} node(s), {size_note}: {} in 15 s", summary.trim())
}

#[test]
#[ignore = "measurement; run explicitly"]
fn put_rate_one_node_versus_three() {
    let one = measure(1, "objects 1 B..300 KiB");
    let three = measure(3, "objects 1 B..300 KiB");
    eprintln!("{one}\n{three}");
}
