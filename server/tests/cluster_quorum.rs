//! Quorum behaviour of a 3-node cluster: with one node stopped (SIGSTOP) writes still succeed;
//! with two stopped, a write fails with a clear error within a bound instead of hanging; once
//! the nodes continue (SIGCONT), service resumes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster_support;

use std::time::{Duration, Instant};

use cluster_support::TestCluster;

fn put_result(cluster: &TestCluster, node: usize, key: &str) -> (bool, f64, String) {
    let endpoint = cluster.nodes[node].endpoint();
    let output = cluster.s3(
        &[
            "put",
            "--endpoint",
            &endpoint,
            "--key",
            key,
            "--size",
            "5000",
            "--timeout",
            "60",
        ],
        Duration::from_secs(90),
    );
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let seconds = stdout
        .split("\"seconds\": ")
        .nth(1)
        .and_then(|rest| rest.split([',', '}']).next())
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(f64::NAN);
    (output.status.success(), seconds, stdout)
}

#[test]
fn minority_down_writes_succeed_majority_down_writes_fail_fast() {
    let cluster = TestCluster::start(3, 3);
    cluster.put(0, "before", 1000, true);

    // A minority (one follower) stopped: writes through the others still succeed.
    let started = Instant::now();
    let leader = loop {
        if let Some(leader) = cluster.leader() {
            break leader;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no leader reported"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let follower = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    cluster.signal(follower, "STOP");
    for (round, node) in [leader, other, leader, other].into_iter().enumerate() {
        let (ok, seconds, stdout) = put_result(&cluster, node, &format!("minority-{round}"));
        assert!(
            ok,
            "write via node {} with node {} stopped: {stdout}",
            node + 1,
            follower + 1
        );
        eprintln!(
            "minority stopped: write via node {} took {seconds:.2} s",
            node + 1
        );
    }
    cluster.signal(follower, "CONT");

    // A majority stopped: the write fails, with a clear error, within a bound.
    cluster.signal(leader, "STOP");
    cluster.signal(follower, "STOP");
    let (ok, seconds, stdout) = put_result(&cluster, other, "majority-down");
    assert!(!ok, "a write succeeded without a quorum: {stdout}");
    assert!(
        seconds < 30.0,
        "the failing write took {seconds} s: {stdout}"
    );
    assert!(
        stdout.contains("quorum")
            || stdout.contains("ServiceUnavailable")
            || stdout.contains("503"),
        "unclear error: {stdout}"
    );
    eprintln!("majority stopped: write failed after {seconds:.2} s: {stdout}");

    // Service resumes once they continue.
    cluster.signal(leader, "CONT");
    cluster.signal(follower, "CONT");
    let started = Instant::now();
    loop {
        let (ok, _, stdout) = put_result(&cluster, other, "after");
        if ok {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "writes did not resume: {stdout}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!(
        "writes resumed {:.2} s after SIGCONT",
        started.elapsed().as_secs_f64()
    );
    for node in 0..3 {
        cluster.check_get(node, "before", 1000);
        cluster.check_get(node, "minority-3", 5000);
        cluster.check_get(node, "after", 5000);
    }
}
