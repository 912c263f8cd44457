//! The proposal batcher of a shard: packs every proposal queued while the previous batch was
//! being committed into one Raft entry, so concurrent writers share one append and one fsync.
//!
//! Only one batch is in flight (openraft 0.9 waits for each append's flush anyway). Without more,
//! closed-loop writers split into two groups that alternate: the writers answered at the end of
//! batch N propose again just after batch N+1 was taken. So after a commit that answered several
//! writers, the batcher lingers briefly (yielding to them) until the batch holds as many
//! proposals as were outstanding when the last commit answered (queued plus answered), the queue
//! stops growing for [`LINGER_QUIET`], or [`LINGER_MAX`] has passed. A lone writer never waits:
//! its own proposal is all that was outstanding.

use std::time::{Duration, Instant};

use openraft::Raft;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::batch::BatchBudget;
use crate::error::ErrorContext;
use crate::{Delta, DeltaBatch, DeltaOutcome, LogError, ProposalTag, TypeConfig};

/// Longest the batcher waits after a commit for answered writers to propose again.
const LINGER_MAX: Duration = Duration::from_micros(200);
/// The linger ends once no proposal arrived for this long.
const LINGER_QUIET: Duration = Duration::from_micros(40);

/// One delta waiting for its outcome (and the index of the log entry that carried it).
pub(crate) struct Proposal {
    pub(crate) delta: Delta,
    /// Its exactly-once tag (cluster shards), carried into the entry.
    pub(crate) tag: Option<ProposalTag>,
    pub(crate) reply: oneshot::Sender<Result<(u64, DeltaOutcome), LogError>>,
}

/// Starts the batcher; it ends when every sender of `proposals` is gone.
pub(crate) fn spawn(
    raft: Raft<TypeConfig>,
    proposals: mpsc::Receiver<Proposal>,
    errors: ErrorContext,
) -> JoinHandle<()> {
    tokio::spawn(run(raft, proposals, errors))
}

async fn run(
    raft: Raft<TypeConfig>,
    mut proposals: mpsc::Receiver<Proposal>,
    errors: ErrorContext,
) {
    let mut carried: Option<Proposal> = None;
    // Proposals outstanding when the last commit answered its writers: those queued meanwhile
    // plus those answered (likely to propose again at once).
    let mut outstanding = 0usize;
    loop {
        let first = match carried.take() {
            Some(proposal) => proposal,
            None => {
                let waiting_since = Instant::now();
                let Some(proposal) = proposals.recv().await else {
                    break;
                };
                if waiting_since.elapsed() > LINGER_MAX {
                    // Idle meanwhile: the writers answered last are not coming back at once.
                    outstanding = 0;
                }
                proposal
            }
        };
        let mut budget = BatchBudget::default();
        budget.try_take(&first.delta);
        let mut batch = vec![first];
        carried = drain(&mut proposals, &mut budget, &mut batch);
        if carried.is_none() && batch.len() < outstanding {
            carried = linger(&mut proposals, &mut budget, &mut batch, outstanding).await;
        }
        let answered = batch.len();
        outstanding = commit(&raft, batch, &errors, &proposals).await + answered;
    }
}

/// Moves queued proposals into `batch` while the budget allows; returns the first that did not
/// fit.
fn drain(
    proposals: &mut mpsc::Receiver<Proposal>,
    budget: &mut BatchBudget,
    batch: &mut Vec<Proposal>,
) -> Option<Proposal> {
    while let Ok(next) = proposals.try_recv() {
        if !budget.try_take(&next.delta) {
            return Some(next);
        }
        batch.push(next);
    }
    None
}

/// Waits (yielding, as tokio's timers are too coarse) for the writers answered by the last
/// commit to propose again, so they share this batch instead of forming the next one; see the
/// module doc for when it stops.
async fn linger(
    proposals: &mut mpsc::Receiver<Proposal>,
    budget: &mut BatchBudget,
    batch: &mut Vec<Proposal>,
    expected: usize,
) -> Option<Proposal> {
    let started = Instant::now();
    let mut last_arrival = started;
    while batch.len() < expected {
        tokio::task::yield_now().await;
        let before = batch.len();
        let carried = drain(proposals, budget, batch);
        if carried.is_some() {
            return carried;
        }
        let now = Instant::now();
        if batch.len() > before {
            last_arrival = now;
        }
        if now - last_arrival >= LINGER_QUIET || now - started >= LINGER_MAX {
            break;
        }
    }
    None
}

/// Writes one batch as one entry and answers every proposer of it. Returns how many proposals
/// were queued when it answered.
async fn commit(
    raft: &Raft<TypeConfig>,
    batch: Vec<Proposal>,
    errors: &ErrorContext,
    proposals: &mpsc::Receiver<Proposal>,
) -> usize {
    let mut deltas: Vec<Delta> = Vec::with_capacity(batch.len());
    let mut tags = Vec::with_capacity(batch.len());
    let mut replies = Vec::with_capacity(batch.len());
    for proposal in batch {
        deltas.push(proposal.delta);
        tags.push(proposal.tag);
        replies.push(proposal.reply);
    }
    if tags.iter().all(Option::is_none) {
        tags.clear();
    }
    let count = deltas.len();
    let outcomes = match raft.client_write(DeltaBatch { deltas, tags }).await {
        Ok(response) if response.data.len() == count => Ok((response.log_id.index, response.data)),
        Ok(response) => Err(errors.raft(format!(
            "entry {} applied {} outcomes for {count} deltas",
            response.log_id,
            response.data.len()
        ))),
        Err(error) => Err(errors.client_write(error)),
    };
    let queued = proposals.len();
    match outcomes {
        Ok((index, outcomes)) => {
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                let _ = reply.send(Ok((index, outcome)));
            }
        }
        Err(error) => {
            tracing::warn!(%error, deltas = count, "shard log batch failed");
            for reply in replies {
                let _ = reply.send(Err(error.clone()));
            }
        }
    }
    queued
}
