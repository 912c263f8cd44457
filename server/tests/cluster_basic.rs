//! A 3-node cluster forms from site configs; an object written through one node reads back
//! byte-exact through every node (shard replication, forwarding, chunk copies, read barrier).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster_support;

use cluster_support::TestCluster;

#[test]
fn three_nodes_write_anywhere_read_everywhere() {
    let cluster = TestCluster::start(3, 3);
    cluster.put(0, "from-a", 1_500_000, true);
    for node in 0..3 {
        cluster.check_get(node, "from-a", 1_500_000);
    }
    // Writes through the other nodes (followers forward to the leader) read back everywhere.
    cluster.put(1, "from-b", 10, false);
    cluster.put(2, "from-c", 70_000, false);
    for node in 0..3 {
        cluster.check_get(node, "from-b", 10);
        cluster.check_get(node, "from-c", 70_000);
    }
}
