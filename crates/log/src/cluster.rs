//! Cluster mode of the shard logs: which nodes hold a shard ([`ClusterLayout`]), the transport a
//! node uses to reach its peers' copies of a shard ([`ShardTransport`], implemented by the
//! server over mTLS gRPC) and the wire encoding of what crosses it.
//!
//! This module never opens connections or knows gRPC: the transport moves opaque payloads (bincode
//! 2 of openraft's own messages and of our forwarding messages) to a node, and the node's server
//! hands them to [`crate::ShardPeer::handle`].

use std::collections::BTreeSet;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use kiseki_types::ShardId;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Longest payload a peer call may carry (openraft snapshot chunks stay well below it).
pub const PEER_PAYLOAD_BYTES_MAX: usize = 32 * 1024 * 1024;

/// What a call to a peer's copy of a shard asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PeerCall {
    /// openraft AppendEntries (log replication and heartbeats).
    AppendEntries,
    /// openraft RequestVote.
    Vote,
    /// openraft InstallSnapshot (one chunk).
    InstallSnapshot,
    /// A delta proposed on a follower, forwarded to the leader.
    Propose,
    /// The leader's commit index, confirmed by a quorum (read-index for linearizable reads).
    ReadIndex,
    /// A membership change (add a learner, set the voters), forwarded to the leader.
    Membership,
    /// Nothing but opening the shard on the receiving node (so that it joins the group).
    Open,
}

impl PeerCall {
    /// Every call, in wire-code order.
    const ALL: [PeerCall; 7] = [
        PeerCall::AppendEntries,
        PeerCall::Vote,
        PeerCall::InstallSnapshot,
        PeerCall::Propose,
        PeerCall::ReadIndex,
        PeerCall::Membership,
        PeerCall::Open,
    ];

    /// The wire code of the call (stable; never renumber).
    pub fn code(self) -> u32 {
        Self::ALL
            .iter()
            .position(|call| *call == self)
            .map_or(u32::MAX, |index| index as u32 + 1)
    }

    /// The call of a wire code.
    pub fn from_code(code: u32) -> Option<PeerCall> {
        let index = usize::try_from(code).ok()?.checked_sub(1)?;
        Self::ALL.get(index).copied()
    }
}

/// Why a call to a peer failed.
#[derive(Clone, Debug, thiserror::Error)]
pub enum TransportError {
    /// The peer could not be reached (connection refused or not established): the call did not
    /// run there, so retrying elsewhere is safe.
    #[error("node {node} unreachable: {message}")]
    Unreachable {
        /// The peer.
        node: u64,
        /// Why.
        message: String,
    },
    /// The call may or may not have run (timeout, broken connection, refused by the peer).
    #[error("call to node {node} failed: {message}")]
    Failed {
        /// The peer.
        node: u64,
        /// Why.
        message: String,
    },
}

/// The future of a peer call: the peer's reply payload.
pub type TransportFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Vec<u8>, TransportError>> + Send + 'a>>;

/// Moves shard calls to peers. Implementations bound the time of each call by `timeout`.
pub trait ShardTransport: Send + Sync + 'static {
    /// Sends `payload` for `shard` to node `target` and returns its reply.
    fn call(
        &self,
        target: u64,
        shard: ShardId,
        call: PeerCall,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> TransportFuture<'_>;
}

/// The nodes of a cluster and where each shard's replicas live.
#[derive(Clone)]
pub struct ClusterLayout {
    /// This node's id.
    pub node_id: u64,
    /// Every node of the cluster, sorted, without duplicates.
    pub nodes: Vec<u64>,
    /// Voters per shard group (capped at the number of nodes).
    pub replicas: usize,
    /// How to reach the other nodes.
    pub transport: Arc<dyn ShardTransport>,
}

impl fmt::Debug for ClusterLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterLayout")
            .field("node_id", &self.node_id)
            .field("nodes", &self.nodes)
            .field("replicas", &self.replicas)
            .finish_non_exhaustive()
    }
}

impl ClusterLayout {
    /// The voters of `shard`'s group: `replicas` consecutive nodes starting at a position
    /// derived from the shard, so that shards (and their leaders) spread over the nodes.
    pub fn replicas_of(&self, shard: ShardId) -> Vec<u64> {
        let count = self.nodes.len();
        if count == 0 {
            return Vec::new();
        }
        let start = (shard.tenant.0.wrapping_add(u64::from(shard.index)) % count as u64) as usize;
        (0..self.replicas.clamp(1, count))
            .map(|offset| self.nodes[(start + offset) % count])
            .collect()
    }

    /// The nodes that hold `shard` as learners: every node that is not one of its voters, so
    /// that every node can serve every tenant from a local copy of the namespace.
    pub fn learners_of(&self, shard: ShardId) -> Vec<u64> {
        let voters = self.replicas_of(shard);
        self.nodes
            .iter()
            .copied()
            .filter(|node| !voters.contains(node))
            .collect()
    }

    /// The peers (every node but this one).
    pub fn peers(&self) -> impl Iterator<Item = u64> + '_ {
        self.nodes
            .iter()
            .copied()
            .filter(move |node| *node != self.node_id)
    }
}

/// Why a peer refused a forwarded call.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum Refusal {
    /// The peer does not lead the shard (the leader it knows, if any).
    NotLeader(Option<u64>),
    /// The peer leads but cannot take the call yet (e.g. another membership change is still
    /// committing): try again shortly.
    Busy(String),
    /// The peer leads but the call failed.
    Failed(String),
}

/// A membership change forwarded to the leader.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MembershipChange {
    /// Adds a node as a learner (it receives the log but does not vote).
    AddLearner(u64),
    /// Makes exactly these nodes the voters (others stay or become learners).
    SetVoters(BTreeSet<u64>),
    /// Removes these nodes from the group entirely (voters must not include them).
    RemoveNodes(BTreeSet<u64>),
}

/// Encodes a wire value (bincode 2, standard config).
pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, String> {
    bincode::serde::encode_to_vec(value, bincode::config::standard())
        .map_err(|error| format!("encoding a peer message: {error}"))
}

/// Decodes a wire value written by [`encode`].
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    if bytes.len() > PEER_PAYLOAD_BYTES_MAX {
        return Err(format!(
            "peer message of {} bytes is too large",
            bytes.len()
        ));
    }
    bincode::serde::decode_from_slice(bytes, bincode::config::standard())
        .map(|(value, _)| value)
        .map_err(|error| format!("decoding a peer message: {error}"))
}

#[cfg(test)]
mod tests {
    use kiseki_types::TenantId;

    use super::*;

    struct NoTransport;
    impl ShardTransport for NoTransport {
        fn call(
            &self,
            target: u64,
            _: ShardId,
            _: PeerCall,
            _: Vec<u8>,
            _: Duration,
        ) -> TransportFuture<'_> {
            Box::pin(async move {
                Err(TransportError::Unreachable {
                    node: target,
                    message: "none".into(),
                })
            })
        }
    }

    #[test]
    fn call_codes_round_trip() {
        for call in PeerCall::ALL {
            assert_eq!(PeerCall::from_code(call.code()), Some(call));
        }
        assert_eq!(PeerCall::from_code(0), None);
        assert_eq!(PeerCall::from_code(99), None);
    }

    #[test]
    fn replicas_are_distinct_and_spread() {
        let layout = ClusterLayout {
            node_id: 1,
            nodes: vec![1, 2, 3, 4, 5],
            replicas: 3,
            transport: Arc::new(NoTransport),
        };
        let mut first = BTreeSet::new();
        for tenant in 0..5 {
            let shard = ShardId {
                tenant: TenantId(tenant),
                index: 0,
            };
            let replicas = layout.replicas_of(shard);
            assert_eq!(replicas.len(), 3);
            assert_eq!(replicas.iter().collect::<BTreeSet<_>>().len(), 3);
            assert_eq!(layout.learners_of(shard).len(), 2);
            first.insert(replicas[0]);
        }
        assert_eq!(first.len(), 5, "every node initializes some shard");
    }
}
