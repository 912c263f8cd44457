//! A shard's cluster behaviour: routing proposals to the leader, read barriers, membership
//! changes, joining the group at open, and serving peers' calls ([`ShardPeer`]).
//!
//! Every wait here is bounded ([`CLUSTER_WAIT`]); a call that cannot reach a quorum fails with
//! [`LogError::NoQuorum`] instead of hanging. Every proposal carries one exactly-once tag
//! (`dedupe`) on all its attempts, so it is re-sent when the leader refused it as not leading,
//! could not be reached, or the call broke or timed out after the leader may have taken it (at
//! most [`PROPOSE_RESENDS_MAX`] such re-sends, each attempt bounded by
//! [`PROPOSE_ATTEMPT_WAIT`], all within [`CLUSTER_WAIT`]): the state machine applies a tag once
//! and answers a second copy with the first one's outcome, which is what the caller gets.

use std::collections::BTreeSet;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use openraft::error::{
    ChangeMembershipError, CheckIsLeaderError, ClientWriteError, InitializeError, RaftError,
};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use openraft::BasicNode;
use tokio::sync::oneshot;

use crate::batcher::Proposal;
use crate::cluster::{decode, encode, MembershipChange, PeerCall, Refusal, TransportError};
use crate::shard_log::Core;
use crate::{Delta, DeltaOutcome, LogError, ProposalTag, TypeConfig};

/// Longest a proposal, read barrier or membership change waits for a leader and a quorum.
pub const CLUSTER_WAIT: Duration = Duration::from_secs(8);
/// Most re-sends of a forwarded proposal after a call that broke or timed out.
pub const PROPOSE_RESENDS_MAX: u32 = 4;
/// Longest one forwarded proposal attempt waits for the leader's answer before re-sending.
pub const PROPOSE_ATTEMPT_WAIT: Duration = Duration::from_secs(3);
/// Most attempts (leader lookups) per cluster call.
const ATTEMPTS_MAX: u32 = 64;
/// Longest pause between attempts while an election runs.
const RETRY_PAUSE_MAX: Duration = Duration::from_millis(250);
/// Bound of the best-effort call asking a peer to open a shard.
const OPEN_CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the first replica keeps trying to add the shard's learners after initializing.
const LEARNERS_WAIT: Duration = Duration::from_secs(60);

/// What one attempt at a routed call concluded.
enum Attempt<T> {
    Done(T),
    Retry(String),
}

impl Core {
    /// Proposes `delta` wherever the leader is (see [`crate::ShardLog::propose`]).
    pub(crate) async fn propose(&self, delta: Delta) -> Result<DeltaOutcome, LogError> {
        let Some(proposer) = &self.proposer else {
            return self
                .propose_local(delta, None, None)
                .await
                .map(|(_, outcome)| outcome);
        };
        // Held until the answer: while it lives, the tag's outcome stays in the dedupe table.
        let ticket = proposer
            .begin()
            .await
            .ok_or_else(|| self.errors.stopped())?;
        let tag = ticket.tag;
        let payload = encode(&(&delta, Some(tag))).map_err(|message| self.errors.raft(message))?;
        let result = self
            .routed(
                PeerCall::Propose,
                payload,
                |core, remaining| {
                    let delta = delta.clone();
                    async move { core.propose_here(delta, tag, remaining).await }
                },
                |core, reply, remaining| async move {
                    let (index, outcome): (u64, DeltaOutcome) = reply;
                    core.wait_applied(index, remaining).await?;
                    Ok(outcome)
                },
            )
            .await;
        drop(ticket);
        result
    }

    /// One attempt at proposing on this node while it believes it leads.
    async fn propose_here(
        &self,
        delta: Delta,
        tag: ProposalTag,
        remaining: Duration,
    ) -> Result<Attempt<DeltaOutcome>, LogError> {
        match self.propose_local(delta, Some(tag), Some(remaining)).await {
            Ok((_, outcome)) => Ok(Attempt::Done(outcome)),
            Err(LogError::NotLeader { leader, .. }) => {
                Ok(Attempt::Retry(format!("leadership moved to {leader:?}")))
            }
            Err(error) => Err(error),
        }
    }

    /// Proposes through this node's batcher (it must lead), bounded by `wait` when given.
    pub(crate) async fn propose_local(
        &self,
        delta: Delta,
        tag: Option<ProposalTag>,
        wait: Option<Duration>,
    ) -> Result<(u64, DeltaOutcome), LogError> {
        let work = async {
            let _slot = self
                .inflight
                .acquire()
                .await
                .map_err(|_| self.errors.stopped())?;
            let (reply, outcome) = oneshot::channel();
            self.proposals
                .send(Proposal { delta, tag, reply })
                .await
                .map_err(|_| self.errors.stopped())?;
            outcome.await.map_err(|_| self.errors.stopped())?
        };
        match wait {
            None => work.await,
            Some(wait) => tokio::time::timeout(wait, work)
                .await
                .map_err(|_| self.no_quorum(wait, "the write was not committed in time"))?,
        }
    }

    /// Returns once this node's state has applied every write acknowledged (anywhere) before
    /// the call: the leader confirms its leadership with a quorum and names its commit index
    /// (read-index), then this node waits to apply up to it. Free on a single-node server.
    pub(crate) async fn read_barrier(&self) -> Result<(), LogError> {
        if self.cluster.is_none() {
            return Ok(());
        }
        self.routed(
            PeerCall::ReadIndex,
            Vec::new(),
            |core, remaining| async move {
                match core.read_index_local(remaining).await? {
                    Ok(_) => Ok(Attempt::Done(())),
                    Err(refusal) => Ok(Attempt::Retry(format!("{refusal:?}"))),
                }
            },
            |core, reply, remaining| async move {
                let index: u64 = reply;
                core.wait_applied(index, remaining).await
            },
        )
        .await
    }

    /// Applies a membership change through the leader.
    pub(crate) async fn change_membership(&self, change: MembershipChange) -> Result<(), LogError> {
        let payload = encode(&change).map_err(|message| self.errors.raft(message))?;
        self.routed(
            PeerCall::Membership,
            payload,
            |core, remaining| {
                let change = change.clone();
                async move {
                    match core.membership_local(change, remaining).await? {
                        Ok(()) => Ok(Attempt::Done(())),
                        Err(Refusal::NotLeader(leader)) => {
                            Ok(Attempt::Retry(format!("not leader (leader {leader:?})")))
                        }
                        Err(Refusal::Busy(why)) => Ok(Attempt::Retry(why)),
                        Err(Refusal::Failed(message)) => Err(core.errors.raft(message)),
                    }
                }
            },
            |_, reply: (), _| async move { Ok(reply) },
        )
        .await
    }

    /// Runs a call on the leader: locally when this node leads, else forwarded; retries while
    /// no leader is known or the one known does not lead (any more), within [`CLUSTER_WAIT`].
    async fn routed<'a, T, R, L, LF, F, FF>(
        &'a self,
        call: PeerCall,
        payload: Vec<u8>,
        local: L,
        finish: F,
    ) -> Result<T, LogError>
    where
        R: serde::de::DeserializeOwned,
        L: Fn(&'a Core, Duration) -> LF,
        LF: std::future::Future<Output = Result<Attempt<T>, LogError>>,
        F: Fn(&'a Core, R, Duration) -> FF,
        FF: std::future::Future<Output = Result<T, LogError>>,
    {
        let Some(cluster) = &self.cluster else {
            return Err(self.errors.raft("not a cluster shard"));
        };
        let started = Instant::now();
        let mut last = String::from("no leader known");
        let mut resends = 0u32;
        for attempt in 0..ATTEMPTS_MAX {
            let remaining = CLUSTER_WAIT.saturating_sub(started.elapsed());
            if remaining.is_zero() {
                break;
            }
            let leader = self.raft.metrics().borrow().current_leader;
            match leader {
                Some(leader) if leader == self.node_id => match local(self, remaining).await? {
                    Attempt::Done(value) => return Ok(value),
                    Attempt::Retry(why) => last = why,
                },
                Some(leader) => {
                    // A proposal's attempt is shorter than the whole wait, so that one lost
                    // answer leaves time to re-send it.
                    let attempt_wait = if call == PeerCall::Propose {
                        remaining.min(PROPOSE_ATTEMPT_WAIT)
                    } else {
                        remaining
                    };
                    let reply = cluster
                        .transport
                        .call(leader, self.shard, call, payload.clone(), attempt_wait)
                        .await;
                    match reply {
                        Ok(bytes) => {
                            let reply: Result<R, Refusal> = decode(&bytes)
                                .map_err(|message| self.peer_error(leader, &message))?;
                            match reply {
                                Ok(reply) => {
                                    let remaining = CLUSTER_WAIT.saturating_sub(started.elapsed());
                                    return finish(self, reply, remaining).await;
                                }
                                Err(Refusal::NotLeader(known)) => {
                                    last = format!("node {leader} does not lead (knows {known:?})")
                                }
                                Err(Refusal::Busy(why)) => {
                                    last = format!("node {leader} is busy: {why}")
                                }
                                Err(Refusal::Failed(message)) => {
                                    return Err(self.peer_error(leader, &message))
                                }
                            }
                        }
                        Err(error @ TransportError::Unreachable { .. }) => last = error.to_string(),
                        Err(error @ TransportError::Failed { .. }) => {
                            // The leader may have taken the proposal: re-sending it is safe
                            // (same tag), but only a bounded number of times.
                            if call == PeerCall::Propose {
                                if resends >= PROPOSE_RESENDS_MAX {
                                    return Err(self.peer_error(leader, &error.to_string()));
                                }
                                resends += 1;
                                tracing::debug!(shard = %self.shard, leader, resends, %error,
                                    "re-sending a forwarded proposal");
                            }
                            last = error.to_string();
                        }
                    }
                }
                None => {}
            }
            let pause = (Duration::from_millis(20) * (attempt + 1)).min(RETRY_PAUSE_MAX);
            let pause = pause.min(CLUSTER_WAIT.saturating_sub(started.elapsed()));
            tokio::time::sleep(pause).await;
        }
        Err(self.no_quorum(started.elapsed(), &last))
    }

    /// On the leader: the read index (its commit index, leadership confirmed by a quorum).
    async fn read_index_local(&self, wait: Duration) -> Result<Result<u64, Refusal>, LogError> {
        let result = tokio::time::timeout(wait, self.raft.ensure_linearizable())
            .await
            .map_err(|_| self.no_quorum(wait, "leadership not confirmed by a quorum"))?;
        Ok(match result {
            Ok(log_id) => Ok(log_id.map_or(0, |log_id| log_id.index)),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(forward))) => {
                Err(Refusal::NotLeader(forward.leader_id))
            }
            Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(error))) => {
                tracing::debug!(shard = %self.shard, %error, "read index: no quorum");
                Err(Refusal::NotLeader(None))
            }
            Err(RaftError::Fatal(fatal)) => return Err(self.errors.fatal(fatal)),
        })
    }

    /// On the leader: applies a membership change.
    async fn membership_local(
        &self,
        change: MembershipChange,
        wait: Duration,
    ) -> Result<Result<(), Refusal>, LogError> {
        let work = async {
            match change {
                MembershipChange::AddLearner(node) => self
                    .raft
                    .add_learner(node, BasicNode::new(format!("node-{node}")), true)
                    .await
                    .map(|_| ()),
                MembershipChange::SetVoters(voters) => {
                    self.raft.change_membership(voters, true).await.map(|_| ())
                }
                MembershipChange::RemoveNodes(nodes) => self
                    .raft
                    .change_membership(openraft::ChangeMembers::RemoveNodes(nodes), false)
                    .await
                    .map(|_| ()),
            }
        };
        let result = tokio::time::timeout(wait, work)
            .await
            .map_err(|_| self.no_quorum(wait, "membership change not committed in time"))?;
        Ok(match result {
            Ok(()) => Ok(()),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward))) => {
                Err(Refusal::NotLeader(forward.leader_id))
            }
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(
                ChangeMembershipError::InProgress(in_progress),
            ))) => Err(Refusal::Busy(in_progress.to_string())),
            Err(RaftError::APIError(other)) => Err(Refusal::Failed(other.to_string())),
            Err(RaftError::Fatal(fatal)) => return Err(self.errors.fatal(fatal)),
        })
    }

    /// Waits until this node's state machine applied entry `index`.
    async fn wait_applied(&self, index: u64, wait: Duration) -> Result<(), LogError> {
        self.raft
            .wait(Some(wait.max(Duration::from_millis(1))))
            .applied_index_at_least(Some(index), "applied locally")
            .await
            .map(|_| ())
            .map_err(|_| self.no_quorum(wait, "this replica did not catch up in time"))
    }

    fn no_quorum(&self, waited: Duration, reason: &str) -> LogError {
        LogError::NoQuorum {
            shard: self.shard,
            waited_ms: waited.as_millis() as u64,
            reason: reason.to_owned(),
        }
    }

    fn peer_error(&self, node: u64, message: &str) -> LogError {
        LogError::Peer {
            shard: self.shard,
            message: format!("node {node}: {message}"),
        }
    }
}

/// At open in a cluster: every voter of the layout initializes a pristine group with the same
/// voters (openraft allows that with identical configs, so the group forms from any quorum of
/// voters, whichever opens first) and then adds the learners through the leader; every node asks
/// the other nodes to open the shard so the group can form.
pub(crate) async fn join_group(core: &Arc<Core>) -> Result<(), LogError> {
    let Some(layout) = &core.cluster else {
        return Ok(());
    };
    let voters = layout.replicas_of(core.shard);
    let initialized = core
        .raft
        .is_initialized()
        .await
        .map_err(|error| core.errors.fatal(error))?;
    if !initialized && voters.contains(&core.node_id) {
        let members: std::collections::BTreeMap<u64, BasicNode> = voters
            .iter()
            .map(|node| (*node, BasicNode::new(format!("node-{node}"))))
            .collect();
        match core.raft.initialize(members).await {
            // Someone initialized it meanwhile: the group is forming, which is the point.
            Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
            Err(error) => return Err(core.errors.raft(error)),
        }
        tracing::info!(shard = %core.shard, ?voters, "initialized the shard group");
        if voters.first() == Some(&core.node_id) {
            // The first replica stands for election at once, so that the shards' leaders
            // spread over the nodes as the layout spreads the first replicas.
            core.raft
                .trigger()
                .elect()
                .await
                .map_err(|fatal| core.errors.fatal(fatal))?;
        }
        let learners = layout.learners_of(core.shard);
        if !learners.is_empty() {
            let weak = Arc::downgrade(core);
            tokio::spawn(add_learners(weak, learners));
        }
    }
    for peer in layout.peers() {
        let transport = Arc::clone(&layout.transport);
        let shard = core.shard;
        tokio::spawn(async move {
            if let Err(error) = transport
                .call(peer, shard, PeerCall::Open, Vec::new(), OPEN_CALL_TIMEOUT)
                .await
            {
                tracing::debug!(%shard, peer, %error, "asking a peer to open the shard failed");
            }
        });
    }
    Ok(())
}

/// Adds `learners` to a group this node just initialized (through whoever leads it; adding a
/// node that is already a learner changes nothing).
async fn add_learners(core: Weak<Core>, learners: Vec<u64>) {
    let started = Instant::now();
    for learner in learners {
        while started.elapsed() < LEARNERS_WAIT {
            let Some(core) = core.upgrade() else { return };
            match core
                .change_membership(MembershipChange::AddLearner(learner))
                .await
            {
                Ok(()) => {
                    tracing::info!(shard = %core.shard, learner, "added a learner");
                    break;
                }
                Err(error) => {
                    tracing::debug!(shard = %core.shard, learner, %error, "adding a learner");
                    drop(core);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }
}

/// A handle on a shard log for the cluster service: serves peers' calls and offers cluster
/// operations. It does not keep the log open: after shutdown every call fails as stopped.
#[derive(Clone)]
pub struct ShardPeer {
    shard: kiseki_types::ShardId,
    core: Weak<Core>,
}

impl ShardPeer {
    pub(crate) fn new(core: &Arc<Core>) -> Self {
        ShardPeer {
            shard: core.shard,
            core: Arc::downgrade(core),
        }
    }

    fn core(&self) -> Result<Arc<Core>, LogError> {
        self.core
            .upgrade()
            .ok_or(LogError::Stopped { shard: self.shard })
    }

    /// Waits until this node's copy reflects every write acknowledged before the call (see
    /// the read guarantee in the crate docs).
    pub async fn read_barrier(&self) -> Result<(), LogError> {
        self.core()?.read_barrier().await
    }

    /// Changes the shard group's membership through its leader.
    pub async fn change_membership(&self, change: MembershipChange) -> Result<(), LogError> {
        self.core()?.change_membership(change).await
    }

    /// The voters and learners of the group, as this node last saw them.
    pub fn membership(&self) -> Result<(BTreeSet<u64>, BTreeSet<u64>), LogError> {
        let core = self.core()?;
        let metrics = core.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let learners: BTreeSet<u64> = membership.learner_ids().collect();
        Ok((voters, learners))
    }

    /// The node this one believes leads the group.
    pub fn leader(&self) -> Option<u64> {
        let core = self.core.upgrade()?;
        let leader = core.raft.metrics().borrow().current_leader;
        leader
    }

    /// Serves a peer's `call` with `payload`; the reply payload goes back to the caller. An
    /// error means the call could not be served at all (stopped shard, undecodable payload).
    pub async fn handle(&self, call: PeerCall, payload: &[u8]) -> Result<Vec<u8>, LogError> {
        let core = self.core()?;
        let bad = |message: String| core.errors.raft(message);
        let reply = match call {
            PeerCall::AppendEntries => {
                let request: AppendEntriesRequest<TypeConfig> = decode(payload).map_err(bad)?;
                encode(&core.raft.append_entries(request).await)
            }
            PeerCall::Vote => {
                let request: VoteRequest<u64> = decode(payload).map_err(bad)?;
                encode(&core.raft.vote(request).await)
            }
            PeerCall::InstallSnapshot => {
                let request: InstallSnapshotRequest<TypeConfig> = decode(payload).map_err(bad)?;
                encode(&core.raft.install_snapshot(request).await)
            }
            PeerCall::Propose => {
                let (delta, tag): (Delta, Option<ProposalTag>) = decode(payload).map_err(bad)?;
                let result = match core.propose_local(delta, tag, Some(CLUSTER_WAIT)).await {
                    Ok(applied) => Ok(applied),
                    Err(LogError::NotLeader { leader, .. }) => Err(Refusal::NotLeader(leader)),
                    Err(error) => Err(Refusal::Failed(error.to_string())),
                };
                encode(&result)
            }
            PeerCall::ReadIndex => {
                let result = match core.read_index_local(CLUSTER_WAIT).await {
                    Ok(result) => result,
                    Err(error) => Err(Refusal::Failed(error.to_string())),
                };
                encode(&result)
            }
            PeerCall::Membership => {
                let change: MembershipChange = decode(payload).map_err(bad)?;
                let result = match core.membership_local(change, CLUSTER_WAIT).await {
                    Ok(result) => result,
                    Err(error) => Err(Refusal::Failed(error.to_string())),
                };
                encode(&result)
            }
            PeerCall::Open => encode(&()),
        };
        reply.map_err(|message| core.errors.raft(message))
    }
}
