//! Erasure coding across the nodes of a 3-node cluster (profile 2+1, two devices per node): an
//! object written through one node is cut into fragments on all three nodes and reads back
//! byte-exact through the others; with a node killed (`kill -9`) reads reconstruct from the
//! surviving fragments and writes still succeed; a rebuild regenerates the lost node's fragments
//! on the live nodes; once the node is back a scrub reports the pool clean.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster_support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use cluster_support::{fragment_files, TestCluster};

const DEVICES: [&str; 2] = ["dev0", "dev1"];
const POOL: &str = "pools:\n  - name: bulk\n    device_class: bulk-nvme\n    ec: 2+1\n    \
                    devices: [dev0, dev1]\nchunk_size_bytes: 262144\n";
/// Objects written before the failure: several chunks, one chunk, a small one.
const OBJECTS: [(&str, usize); 3] = [("multi", 1_000_000), ("one", 200_000), ("tiny", 20)];

fn device_dirs(cluster: &TestCluster, index: usize) -> Vec<PathBuf> {
    DEVICES
        .iter()
        .map(|device| cluster.nodes[index].data_dir.join(device))
        .collect()
}

/// For each chunk (hex id), the nodes (indices) holding each fragment index.
fn fragments_by_chunk(
    cluster: &TestCluster,
    nodes: &[usize],
) -> BTreeMap<String, BTreeMap<u8, BTreeSet<usize>>> {
    let mut chunks: BTreeMap<String, BTreeMap<u8, BTreeSet<usize>>> = BTreeMap::new();
    for &node in nodes {
        for dir in device_dirs(cluster, node) {
            for file in fragment_files(&dir) {
                let name = file.file_name().unwrap().to_string_lossy().into_owned();
                let Some((hex, index)) = name.split_once('.') else {
                    continue;
                };
                let (Ok(index), true) = (index.parse::<u8>(), hex.len() == 64) else {
                    continue;
                };
                chunks
                    .entry(hex.to_owned())
                    .or_default()
                    .entry(index)
                    .or_default()
                    .insert(node);
            }
        }
    }
    chunks
}

#[test]
fn erasure_coding_spans_nodes_and_survives_a_lost_node() {
    let mut cluster = TestCluster::start_with(3, 3, POOL);
    for (number, (key, size)) in OBJECTS.iter().enumerate() {
        cluster.put(0, key, *size, number == 0);
    }
    for node in [1, 2] {
        for (key, size) in OBJECTS {
            cluster.check_get(node, key, size);
        }
    }

    // Every chunk has its 3 fragments on 3 distinct nodes; every node holds fragments; the
    // chunks are not also copied whole (no node has more than one fragment of a chunk).
    let chunks = fragments_by_chunk(&cluster, &[0, 1, 2]);
    assert!(chunks.len() >= 5, "expected several chunks: {chunks:?}");
    for (chunk, fragments) in &chunks {
        assert_eq!(
            fragments.keys().copied().collect::<Vec<_>>(),
            vec![0, 1, 2],
            "chunk {chunk}"
        );
        let nodes: BTreeSet<usize> = fragments.values().flatten().copied().collect();
        assert_eq!(nodes.len(), 3, "chunk {chunk} spread over {fragments:?}");
        assert!(fragments.values().all(|holders| holders.len() == 1));
    }
    for node in 0..3 {
        let files: usize = device_dirs(&cluster, node)
            .iter()
            .map(|dir| fragment_files(dir).len())
            .sum();
        assert!(files > 0, "node {} holds no fragments", node + 1);
    }

    // A node is lost: reads reconstruct from the two surviving fragments, writes still succeed
    // (the lost node's fragment goes to a spare device on a live node).
    cluster.kill(2);
    for node in [0, 1] {
        for (key, size) in OBJECTS {
            cluster.check_get(node, key, size);
        }
    }
    cluster.put(1, "while-down", 600_000, false);
    cluster.check_get(0, "while-down", 600_000);

    // A rebuild (through a live node, next to it running) regenerates the missing fragments on
    // the live nodes' devices: every chunk complete again without the lost node.
    let report = cluster.admin(0, "rebuild", Duration::from_secs(120));
    assert!(report.contains("unreachable"), "{report}");
    let live = fragments_by_chunk(&cluster, &[0, 1]);
    assert!(live.len() > chunks.len(), "{report}");
    for (chunk, fragments) in &live {
        assert_eq!(
            fragments.keys().copied().collect::<Vec<_>>(),
            vec![0, 1, 2],
            "chunk {chunk} after the rebuild: {report}"
        );
    }
    // Reads no longer need parity reconstruction of a missing fragment.
    cluster.check_get(1, "multi", 1_000_000);

    // The node returns: everything reads back through it and a scrub finds the pool clean.
    cluster.restart(2);
    for (key, size) in OBJECTS.iter().chain([("while-down", 600_000)].iter()) {
        cluster.check_get(2, key, *size);
    }
    let scrub = cluster.admin(1, "scrub", Duration::from_secs(120));
    assert!(scrub.contains("(clean)"), "{scrub}");
    assert!(scrub.contains(" 0 missing, 0 corrupt"), "{scrub}");
}

/// The chunk files (hex ids) of a node's plain pool.
fn chunk_files(cluster: &TestCluster, index: usize) -> BTreeSet<String> {
    fragment_files(&cluster.nodes[index].data_dir.join("chunks"))
        .iter()
        .filter_map(|file| file.file_name()?.to_str().map(str::to_owned))
        .filter(|name| name.len() == 64)
        .collect()
}

/// Plain pools keep whole copies on the shard's replicas: a replica that was down while a
/// majority acknowledged writes gets the copies it missed from a rebuild through another node.
#[test]
fn a_replica_that_missed_writes_gets_its_chunk_copies_back() {
    let mut cluster = TestCluster::start(3, 3);
    cluster.put(0, "before", 300_000, true);
    cluster.kill(2);
    cluster.put(0, "while-down", 1_000_000, false);
    cluster.restart(2);
    let complete = chunk_files(&cluster, 0);
    let before = chunk_files(&cluster, 2);
    assert!(
        !complete.is_subset(&before),
        "node 3 should have missed copies"
    );

    let report = cluster.admin(0, "rebuild", Duration::from_secs(120));
    assert!(report.contains(" 0 failed"), "{report}");
    let after = chunk_files(&cluster, 2);
    assert!(
        complete.is_subset(&after),
        "node 3 still misses {:?}\n{report}",
        complete.difference(&after).collect::<Vec<_>>()
    );
    cluster.check_get(2, "while-down", 1_000_000);
}
