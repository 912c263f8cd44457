//! Shard groups over several nodes, in one process: three `ShardLog`s talk through an in-memory
//! transport that calls the peers' `ShardPeer::handle` (the same entry point the server's gRPC
//! service uses) and can cut nodes off. Checks forwarding with read-your-writes, linearizable
//! read barriers, catch-up of a cut-off node through snapshot install after compaction, a
//! bounded `NoQuorum` failure, and exactly-once forwarding when the transport loses a forwarded
//! proposal or the leader's answer to it (the delta is counted in the state).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use common::{create, NamesState};
use kiseki_log::{
    ClusterLayout, LogError, PeerCall, ShardLog, ShardLogOptions, ShardPeer, ShardTransport,
    TransportError, TransportFuture,
};
use kiseki_types::{ShardId, TenantId};

const SHARD: ShardId = ShardId {
    tenant: TenantId(7),
    index: 0,
};

#[derive(Default)]
struct Net {
    peers: Mutex<HashMap<u64, ShardPeer>>,
    down: Mutex<BTreeSet<u64>>,
    /// Faults to inject into the next forwarded proposals, in order.
    faults: Mutex<Vec<Fault>>,
    /// Payloads of the proposals a fault hit.
    faulted: Mutex<Vec<Vec<u8>>>,
}

/// A broken connection around a forwarded proposal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// The request never reaches the leader.
    DropRequest,
    /// The leader takes (and commits) the proposal, but its answer is lost.
    DropResponse,
    /// The leader takes the proposal, but its answer comes after the caller's timeout.
    SlowResponse,
}

struct LocalTransport {
    from: u64,
    net: Arc<Net>,
}

impl ShardTransport for LocalTransport {
    fn call(
        &self,
        target: u64,
        _shard: ShardId,
        call: PeerCall,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> TransportFuture<'_> {
        Box::pin(async move {
            let unreachable = |message: &str| TransportError::Unreachable {
                node: target,
                message: message.to_owned(),
            };
            {
                let down = self.net.down.lock().unwrap();
                if down.contains(&target) || down.contains(&self.from) {
                    return Err(unreachable("cut off"));
                }
            }
            let peer = self.net.peers.lock().unwrap().get(&target).cloned();
            let peer = peer.ok_or_else(|| unreachable("not open"))?;
            let fault = if call == PeerCall::Propose {
                let mut faults = self.net.faults.lock().unwrap();
                (!faults.is_empty()).then(|| faults.remove(0))
            } else {
                None
            };
            let broken = TransportError::Failed {
                node: target,
                message: "connection reset".into(),
            };
            if let Some(fault) = fault {
                self.net.faulted.lock().unwrap().push(payload.clone());
                if fault == Fault::DropRequest {
                    return Err(broken);
                }
            }
            let reply = tokio::time::timeout(timeout, peer.handle(call, &payload)).await;
            match fault {
                Some(Fault::DropResponse) => return Err(broken),
                Some(Fault::SlowResponse) => {
                    tokio::time::sleep(timeout).await;
                    return Err(TransportError::Failed {
                        node: target,
                        message: "timeout".into(),
                    });
                }
                _ => {}
            }
            match reply {
                Ok(Ok(reply)) => Ok(reply),
                Ok(Err(error)) => Err(TransportError::Failed {
                    node: target,
                    message: error.to_string(),
                }),
                Err(_) => Err(TransportError::Failed {
                    node: target,
                    message: "timeout".into(),
                }),
            }
        })
    }
}

struct Node {
    log: ShardLog,
    state: Arc<RwLock<NamesState>>,
    dir: tempfile::TempDir,
}

async fn start(options: ShardLogOptions) -> (Arc<Net>, Vec<Node>) {
    let net = Arc::new(Net::default());
    let mut nodes = Vec::new();
    for id in 1..=3u64 {
        let dir = tempfile::tempdir().unwrap();
        nodes.push(open_node(&net, id, dir, &options).await);
    }
    (net, nodes)
}

/// Opens node `id`'s copy of the shard in `dir` (new or left by an earlier run).
async fn open_node(
    net: &Arc<Net>,
    id: u64,
    dir: tempfile::TempDir,
    options: &ShardLogOptions,
) -> Node {
    let state = Arc::new(RwLock::new(NamesState::default()));
    let layout = ClusterLayout {
        node_id: id,
        nodes: vec![1, 2, 3],
        replicas: 3,
        transport: Arc::new(LocalTransport {
            from: id,
            net: Arc::clone(net),
        }),
    };
    let log = ShardLog::open_in_cluster(dir.path(), SHARD, state.clone(), options.clone(), layout)
        .await
        .unwrap();
    net.peers.lock().unwrap().insert(id, log.peer());
    Node { log, state, dir }
}

async fn stop(nodes: Vec<Node>) {
    for node in nodes {
        node.log.shutdown().await;
    }
}

fn names(node: &Node) -> BTreeSet<String> {
    node.state.read().unwrap().names.keys().cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_on_any_node_are_read_everywhere() {
    let (_net, nodes) = start(ShardLogOptions::default()).await;
    let mut expected = BTreeSet::new();
    for round in 0..5 {
        for (index, node) in nodes.iter().enumerate() {
            let name = format!("n{index}-{round}");
            node.log.propose(create(&name)).await.unwrap().unwrap();
            // Read-your-writes on the node that took the write, leader or not.
            assert!(
                names(node).contains(&name),
                "{name} not visible on its own node"
            );
            expected.insert(name);
        }
    }
    for node in &nodes {
        node.log.peer().read_barrier().await.unwrap();
        assert_eq!(names(node), expected);
    }
    let leaders: Vec<bool> = nodes
        .iter()
        .map(|node| node.log.metrics().is_leader)
        .collect();
    assert_eq!(
        leaders.iter().filter(|leader| **leader).count(),
        1,
        "{leaders:?}"
    );
    let (voters, learners) = nodes[0].log.peer().membership().unwrap();
    assert_eq!(voters, BTreeSet::from([1, 2, 3]));
    assert!(learners.is_empty());
    stop(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_node_catches_up_through_a_snapshot() {
    let options = ShardLogOptions {
        entries_per_snapshot: 5,
        entries_kept_after_snapshot: 1,
        ..ShardLogOptions::default()
    };
    let (net, nodes) = start(options).await;
    nodes[0]
        .log
        .propose(create("first"))
        .await
        .unwrap()
        .unwrap();
    let leader = nodes
        .iter()
        .position(|node| node.log.metrics().is_leader)
        .unwrap();
    let lagging = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    // Cut off one follower; the others commit and compact. The leader keeps what the lagging
    // node still needs, but the other follower purges its own log.
    net.down.lock().unwrap().insert(lagging as u64 + 1);
    let mut expected = BTreeSet::from(["first".to_owned()]);
    for i in 0..40 {
        let name = format!("while-cut-{i}");
        nodes[leader]
            .log
            .propose(create(&name))
            .await
            .unwrap()
            .unwrap();
        expected.insert(name);
    }
    nodes[other].log.peer().read_barrier().await.unwrap();
    let other_metrics = nodes[other].log.metrics();
    assert!(other_metrics.purged_index.is_some(), "{other_metrics:?}");
    // Now the leader goes away and the lagging node returns: the only possible leader is the
    // node that purged the entries the lagging one misses, so it must send a snapshot.
    {
        let mut down = net.down.lock().unwrap();
        down.clear();
        down.insert(leader as u64 + 1);
    }
    nodes[lagging].log.peer().read_barrier().await.unwrap();
    assert_eq!(names(&nodes[lagging]), expected);
    let lagging_metrics = nodes[lagging].log.metrics();
    assert!(
        lagging_metrics.snapshot_index.is_some(),
        "{lagging_metrics:?}"
    );
    nodes[lagging]
        .log
        .propose(create("after"))
        .await
        .unwrap()
        .unwrap();
    stop(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_quorum_proposals_fail_in_bounded_time() {
    let (net, nodes) = start(ShardLogOptions::default()).await;
    nodes[0]
        .log
        .propose(create("before"))
        .await
        .unwrap()
        .unwrap();
    let alone = nodes
        .iter()
        .position(|node| node.log.metrics().is_leader)
        .unwrap();
    for id in 1..=3u64 {
        if id != alone as u64 + 1 {
            net.down.lock().unwrap().insert(id);
        }
    }
    let started = Instant::now();
    let error = nodes[alone]
        .log
        .propose(create("no-quorum"))
        .await
        .unwrap_err();
    assert!(matches!(error, LogError::NoQuorum { .. }), "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let error = nodes[alone].log.peer().read_barrier().await.unwrap_err();
    assert!(matches!(error, LogError::NoQuorum { .. }), "{error}");
    net.down.lock().unwrap().clear();
    nodes[alone]
        .log
        .propose(create("after"))
        .await
        .unwrap()
        .unwrap();
    stop(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_group_forms_without_its_first_replica() {
    // Tenant 7 over nodes 1..=3: the voters are 2, 3, 1 and node 2 stands for election first.
    let net = Arc::new(Net::default());
    net.down.lock().unwrap().insert(2);
    let mut nodes = Vec::new();
    for id in [1u64, 3] {
        let dir = tempfile::tempdir().unwrap();
        let state = Arc::new(RwLock::new(NamesState::default()));
        let layout = ClusterLayout {
            node_id: id,
            nodes: vec![1, 2, 3],
            replicas: 3,
            transport: Arc::new(LocalTransport {
                from: id,
                net: Arc::clone(&net),
            }),
        };
        assert_eq!(layout.replicas_of(SHARD), vec![2, 3, 1]);
        let log = ShardLog::open_in_cluster(
            dir.path(),
            SHARD,
            state.clone(),
            ShardLogOptions::default(),
            layout,
        )
        .await
        .unwrap();
        net.peers.lock().unwrap().insert(id, log.peer());
        nodes.push(Node { log, state, dir });
    }
    nodes[0]
        .log
        .propose(create("without-2"))
        .await
        .unwrap()
        .unwrap();
    nodes[1].log.peer().read_barrier().await.unwrap();
    assert!(names(&nodes[1]).contains("without-2"));
    stop(nodes).await;
}

/// Deltas the node's state has applied (every application counts, refused ones too).
fn applied(node: &Node) -> u64 {
    node.state.read().unwrap().applied
}

/// Index of the leader among `nodes`.
fn leader_of(nodes: &[Node]) -> usize {
    nodes
        .iter()
        .position(|node| node.log.metrics().is_leader)
        .unwrap()
}

/// The peer handle of the node `asked` (an index) believes leads.
fn leader_peer(net: &Net, nodes: &[Node], asked: usize) -> ShardPeer {
    let leader = nodes[asked].log.peer().leader().unwrap();
    net.peers.lock().unwrap()[&leader].clone()
}

async fn settle(nodes: &[Node]) {
    for node in nodes {
        node.log.peer().read_barrier().await.unwrap();
    }
}

/// A follower's forwarded exclusive create whose answer (or request) the transport loses, or
/// whose answer comes too late: the follower re-sends it under the same tag, reports success
/// exactly once, and every replica applies it exactly once (a second application would count
/// and answer `AlreadyExists`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_forward_is_resent_and_applied_once() {
    let (net, nodes) = start(ShardLogOptions::default()).await;
    nodes[0].log.propose(create("warm")).await.unwrap().unwrap();
    settle(&nodes).await;
    let follower = (leader_of(&nodes) + 1) % 3;
    let faults = [
        Fault::DropResponse,
        Fault::DropRequest,
        Fault::SlowResponse,
        Fault::DropResponse,
    ];
    for (round, fault) in faults.into_iter().enumerate() {
        let before: Vec<u64> = nodes.iter().map(applied).collect();
        net.faults.lock().unwrap().push(fault);
        let name = format!("once-{round}");
        let outcome = nodes[follower].log.propose(create(&name)).await.unwrap();
        assert!(outcome.is_ok(), "{fault:?}: {outcome:?}");
        assert!(
            net.faults.lock().unwrap().is_empty(),
            "{fault:?} not injected"
        );
        assert!(names(&nodes[follower]).contains(&name));
        settle(&nodes).await;
        for (node, before) in nodes.iter().zip(before) {
            assert_eq!(
                applied(node),
                before + 1,
                "{fault:?}: applied more than once"
            );
        }
    }
    assert_eq!(net.faulted.lock().unwrap().len(), faults.len());
    stop(nodes).await;
}

/// The dedupe table is part of the replicated state: it survives snapshot install on a node
/// that missed the entries, compaction, and a restart of every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dedupe_table_survives_snapshots_and_restarts() {
    let options = ShardLogOptions {
        entries_per_snapshot: 5,
        entries_kept_after_snapshot: 1,
        ..ShardLogOptions::default()
    };
    let (net, mut nodes) = start(options.clone()).await;
    nodes[0].log.propose(create("warm")).await.unwrap().unwrap();
    settle(&nodes).await;
    let leader = leader_of(&nodes);
    let follower = (leader + 1) % 3;
    let lagging = (leader + 2) % 3;
    net.down.lock().unwrap().insert(lagging as u64 + 1);
    net.faults.lock().unwrap().push(Fault::DropResponse);
    nodes[follower]
        .log
        .propose(create("tagged"))
        .await
        .unwrap()
        .unwrap();
    let payload = net.faulted.lock().unwrap().pop().unwrap();
    // Later writes come from the leader, so the follower's record keeps the tag's outcome.
    for i in 0..12 {
        let name = format!("later-{i}");
        nodes[leader]
            .log
            .propose(create(&name))
            .await
            .unwrap()
            .unwrap();
    }
    nodes[follower].log.peer().read_barrier().await.unwrap();
    assert!(nodes[follower].log.metrics().purged_index.is_some());
    // The leader leaves, the lagging node returns and gets a snapshot from the follower.
    {
        let mut down = net.down.lock().unwrap();
        down.clear();
        down.insert(leader as u64 + 1);
    }
    nodes[lagging].log.peer().read_barrier().await.unwrap();
    assert!(nodes[lagging].log.metrics().snapshot_index.is_some());
    let expected = applied(&nodes[follower]);
    assert_eq!(applied(&nodes[lagging]), expected);
    // A late copy of the tagged proposal, straight to the new leader (one of the two left).
    leader_peer(&net, &nodes, lagging)
        .handle(PeerCall::Propose, &payload)
        .await
        .unwrap();
    for index in [follower, lagging] {
        nodes[index].log.peer().read_barrier().await.unwrap();
        assert_eq!(applied(&nodes[index]), expected, "node {}", index + 1);
    }
    // Restart every node from its snapshot and log; the duplicate is still recognized.
    net.down.lock().unwrap().clear();
    settle(&nodes).await;
    let counts: Vec<u64> = nodes.iter().map(applied).collect();
    let mut restarted = Vec::new();
    for (index, node) in nodes.drain(..).enumerate() {
        net.peers.lock().unwrap().remove(&(index as u64 + 1));
        node.log.shutdown().await;
        restarted.push(node.dir);
    }
    for (index, dir) in restarted.into_iter().enumerate() {
        nodes.push(open_node(&net, index as u64 + 1, dir, &options).await);
    }
    nodes[0]
        .log
        .propose(create("reopened"))
        .await
        .unwrap()
        .unwrap();
    settle(&nodes).await;
    let counts: Vec<u64> = counts.iter().map(|count| count + 1).collect();
    assert_eq!(nodes.iter().map(applied).collect::<Vec<_>>(), counts);
    leader_peer(&net, &nodes, 0)
        .handle(PeerCall::Propose, &payload)
        .await
        .unwrap();
    settle(&nodes).await;
    assert_eq!(nodes.iter().map(applied).collect::<Vec<_>>(), counts);
    stop(nodes).await;
}
