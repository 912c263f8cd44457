//! The proposal batcher of a shard: packs every proposal queued while the previous batch was
//! being committed into one Raft entry, so concurrent writers share one append and one fsync.

use openraft::Raft;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::batch::BatchBudget;
use crate::error::ErrorContext;
use crate::{Delta, DeltaBatch, DeltaOutcome, LogError, TypeConfig};

/// One delta waiting for its outcome.
pub(crate) struct Proposal {
    pub(crate) delta: Delta,
    pub(crate) reply: oneshot::Sender<Result<DeltaOutcome, LogError>>,
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
    loop {
        let first = match carried.take() {
            Some(proposal) => proposal,
            None => match proposals.recv().await {
                Some(proposal) => proposal,
                None => break,
            },
        };
        let mut budget = BatchBudget::default();
        budget.try_take(&first.delta);
        let mut batch = vec![first];
        while let Ok(next) = proposals.try_recv() {
            if !budget.try_take(&next.delta) {
                carried = Some(next);
                break;
            }
            batch.push(next);
        }
        commit(&raft, batch, &errors).await;
    }
}

/// Writes one batch as one entry and answers every proposer of it.
async fn commit(raft: &Raft<TypeConfig>, batch: Vec<Proposal>, errors: &ErrorContext) {
    let (deltas, replies): (Vec<Delta>, Vec<_>) = batch
        .into_iter()
        .map(|proposal| (proposal.delta, proposal.reply))
        .unzip();
    let count = deltas.len();
    let outcomes = match raft.client_write(DeltaBatch { deltas }).await {
        Ok(response) if response.data.len() == count => Ok(response.data),
        Ok(response) => Err(errors.raft(format!(
            "entry {} applied {} outcomes for {count} deltas",
            response.log_id,
            response.data.len()
        ))),
        Err(error) => Err(errors.client_write(error)),
    };
    match outcomes {
        Ok(outcomes) => {
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                let _ = reply.send(Ok(outcome));
            }
        }
        Err(error) => {
            tracing::warn!(%error, deltas = count, "shard log batch failed");
            for reply in replies {
                let _ = reply.send(Err(error.clone()));
            }
        }
    }
}
