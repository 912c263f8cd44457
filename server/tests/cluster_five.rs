//! A 5-node cluster with 3 replicas per shard forms and serves writes: the shard's voters are
//! three of the nodes, the other two follow as learners and still take writes (forwarded) and
//! serve reads.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster_support;

use cluster_support::TestCluster;

#[test]
fn five_nodes_serve_writes_through_voters_and_learners() {
    let cluster = TestCluster::start(5, 3);
    cluster.put(0, "five-0", 200_000, true);
    for node in 1..5 {
        cluster.put(node, &format!("five-{node}"), 1000 * node, false);
    }
    for node in 0..5 {
        cluster.check_get(node, "five-0", 200_000);
        cluster.check_get(node, "five-4", 4000);
    }
}
