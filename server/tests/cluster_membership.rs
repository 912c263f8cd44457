//! Membership changes through the admin subcommand: in a 4-node cluster with 3 replicas,
//! tenant 1's voters are nodes 2, 3 and 4 and node 1 is a learner; the operator makes node 1 a
//! voter and removes node 4, and the cluster keeps serving writes and reads.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster_support;

use std::time::Duration;

use cluster_support::{binary, run, TestCluster};

#[test]
fn a_learner_becomes_a_voter_and_a_voter_is_removed() {
    let cluster = TestCluster::start(4, 3);
    cluster.put(0, "before", 3000, true);
    let mut command = std::process::Command::new(binary("kiseki-server"));
    command.arg("--config").arg(&cluster.nodes[0].config).args([
        "cluster-membership",
        "--tenant",
        "1",
        "--voters",
        "1,2,3",
        "--remove",
        "4",
    ]);
    let output = run(&mut command, Duration::from_secs(60));
    let stdout = cluster.expect_success(output, "cluster-membership");
    eprintln!("{stdout}");
    assert!(stdout.contains("voters [1, 2, 3]"), "{stdout}");
    assert!(stdout.contains("learners []"), "{stdout}");
    for node in 0..3 {
        cluster.put(node, &format!("after-{node}"), 2000 + node, false);
    }
    for node in 0..3 {
        cluster.check_get(node, "before", 3000);
        cluster.check_get(node, "after-2", 2002);
    }
}
