//! The state-machine side of a shard (openraft storage-v2 `RaftStateMachine`): applies committed
//! batches to the shared [`ShardState`] and persists snapshots of it. The state itself is kept in
//! memory; the snapshot file plus the log after it rebuild it on restart. Tagged deltas go
//! through the shard's dedupe table first (kept here, snapshotted beside the state), so each
//! tag is applied at most once.

use std::io::{self, Cursor};
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, EntryPayload, RaftSnapshotBuilder, SnapshotMeta, StorageIOError, StoredMembership,
};

use crate::dedupe::DedupeTable;
use crate::snapshot_file::{self, SnapshotFile, SnapshotHeader};
use crate::type_config::{Entry, LogId, StorageError};
use crate::{BatchOutcome, DeltaBatch, ShardState, TypeConfig};

/// Applies a shard's log to its state and keeps its snapshot.
pub struct StateMachineStore<S: ShardState> {
    state: Arc<RwLock<S>>,
    last_applied: Option<LogId>,
    membership: StoredMembership<u64, BasicNode>,
    file: SnapshotFile,
    dedupe: DedupeTable,
}

impl<S: ShardState> StateMachineStore<S> {
    /// Opens the state machine of the shard directory `dir`: restores `state` from the snapshot
    /// there, or resets it to empty when there is none.
    pub fn open(dir: &Path, state: Arc<RwLock<S>>) -> io::Result<Self> {
        let file = SnapshotFile::new(dir);
        file.remove_leftovers()?;
        let mut store = StateMachineStore {
            state,
            last_applied: None,
            membership: StoredMembership::default(),
            file,
            dedupe: DedupeTable::default(),
        };
        match store.file.read()? {
            Some(image) => store.restore(&image)?,
            None => store
                .state
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .reset(),
        }
        Ok(store)
    }

    /// Replaces the state with a snapshot image.
    fn restore(&mut self, image: &[u8]) -> io::Result<()> {
        let parts = snapshot_file::decode(image)?;
        let header = parts.header;
        let dedupe = DedupeTable::decode(parts.dedupe)
            .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?;
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        state
            .restore_snapshot(parts.state)
            .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?;
        self.dedupe = dedupe;
        self.last_applied = header.last_applied;
        self.membership = header.membership.clone();
        tracing::info!(last_applied = ?header.last_applied, "restored shard state from snapshot");
        Ok(())
    }
}

/// Writes a snapshot captured from the state machine.
pub struct SnapshotBuilder {
    file: SnapshotFile,
    header: SnapshotHeader,
    state_bytes: Vec<u8>,
    dedupe_bytes: Result<Vec<u8>, String>,
    /// Whether what the snapshot's entries held only in the log was made durable.
    durable: Result<(), String>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let meta = self.header.meta();
        let write_error =
            |error: &io::Error| StorageIOError::write_snapshot(Some(meta.signature()), error);
        self.durable
            .clone()
            .map_err(|message| write_error(&io::Error::other(message)))?;
        let dedupe = self
            .dedupe_bytes
            .as_deref()
            .map_err(|message| write_error(&io::Error::other(message.clone())))?;
        let image = snapshot_file::encode(&self.header, &self.state_bytes, dedupe)
            .map_err(|e| write_error(&e))?;
        let (file, id, image) = (self.file.clone(), self.header.snapshot_id.clone(), image);
        let image = tokio::task::spawn_blocking(move || file.write(&image, &id).map(|()| image))
            .await
            .map_err(|join| write_error(&io::Error::other(join.to_string())))?
            .map_err(|e| write_error(&e))?;
        tracing::info!(last_applied = ?meta.last_log_id, bytes = image.len(), "wrote shard snapshot");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(image)),
        })
    }
}

impl<S: ShardState> RaftStateMachine<TypeConfig> for StateMachineStore<S> {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembership<u64, BasicNode>), StorageError> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<BatchOutcome>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        let mut outcomes = Vec::new();
        for entry in entries {
            self.last_applied = Some(entry.log_id);
            let outcome = match entry.payload {
                EntryPayload::Blank => Vec::new(),
                EntryPayload::Normal(batch) => {
                    apply_batch(&mut *state, &mut self.dedupe, entry.log_id.index, &batch)
                }
                EntryPayload::Membership(membership) => {
                    self.membership = StoredMembership::new(Some(entry.log_id), membership);
                    Vec::new()
                }
            };
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        // Encoded here, between applies, so the bytes match `last_applied` exactly.
        let (state_bytes, durable) = {
            let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
            (state.encode_snapshot(), state.make_durable())
        };
        if let Err(error) = &durable {
            // The snapshot fails, so the log keeps the entries until a later one succeeds.
            tracing::error!(%error, "making applied entries durable before a snapshot");
        }
        let dedupe_bytes = self.dedupe.encode();
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let index = self.last_applied.map_or(0, |log_id| log_id.index);
        let header = SnapshotHeader {
            last_applied: self.last_applied,
            membership: self.membership.clone(),
            snapshot_id: format!("{index}-{nanos}"),
        };
        SnapshotBuilder {
            file: self.file.clone(),
            header,
            state_bytes,
            dedupe_bytes,
            durable,
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let error =
            |error: &io::Error| StorageIOError::write_snapshot(Some(meta.signature()), error);
        let image = snapshot.into_inner();
        let header = snapshot_file::decode(&image).map_err(|e| error(&e))?.header;
        if header.meta() != *meta {
            let mismatch = io::Error::new(io::ErrorKind::InvalidData, "snapshot meta mismatch");
            return Err(error(&mismatch).into());
        }
        self.restore(&image).map_err(|e| error(&e))?;
        let (file, id) = (self.file.clone(), header.snapshot_id.clone());
        tokio::task::spawn_blocking(move || file.write(&image, &id))
            .await
            .map_err(|join| error(&io::Error::other(join.to_string())))?
            .map_err(|e| error(&e))?;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let read_error = |error: &io::Error| StorageIOError::read_snapshot(None, error);
        let Some(image) = self.file.read().map_err(|e| read_error(&e))? else {
            return Ok(None);
        };
        let header = snapshot_file::decode(&image)
            .map_err(|e| read_error(&e))?
            .header;
        Ok(Some(Snapshot {
            meta: header.meta(),
            snapshot: Box::new(Cursor::new(image)),
        }))
    }
}

/// Applies one batch of entry `index`: an untagged delta always, a tagged one unless the dedupe
/// table knows its tag (then the recorded outcome stands for it).
fn apply_batch<S: ShardState>(
    state: &mut S,
    dedupe: &mut DedupeTable,
    index: u64,
    batch: &DeltaBatch,
) -> BatchOutcome {
    let mut outcomes = Vec::with_capacity(batch.deltas.len());
    for (position, delta) in batch.deltas.iter().enumerate() {
        let outcome = match batch.tag(position) {
            None => state.apply(index, delta),
            Some(tag) => match dedupe.check(&tag, index) {
                Some(outcome) => {
                    tracing::debug!(?tag, index, "duplicate proposal not applied again");
                    outcome
                }
                None => {
                    let outcome = state.apply(index, delta);
                    dedupe.record(&tag, &outcome);
                    outcome
                }
            },
        };
        outcomes.push(outcome);
    }
    outcomes
}
