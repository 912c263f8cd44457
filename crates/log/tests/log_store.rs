//! The log store keeps appends, truncation, purge and vote across a reopen.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use kiseki_log::{DeltaBatch, LogStore, TypeConfig};
use openraft::storage::{RaftLogReaderExt, RaftLogStorage, RaftLogStorageExt};
use openraft::testing::log_id;
use openraft::{Entry, EntryPayload, RaftLogReader, Vote};

fn entry(index: u64) -> Entry<TypeConfig> {
    let batch = DeltaBatch::single(common::create(&format!("n{index}")));
    Entry {
        log_id: log_id(1, 1, index),
        payload: EntryPayload::Normal(batch),
    }
}

async fn reopen(path: &Path, store: LogStore) -> LogStore {
    let mut store = store;
    let writer = store.take_writer_thread().unwrap();
    drop(store);
    writer.join().unwrap();
    LogStore::open(path).unwrap()
}

#[tokio::test]
async fn truncate_purge_and_vote_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.redb");
    let mut store = LogStore::open(&path).unwrap();
    store.blocking_append((1..=10).map(entry)).await.unwrap();
    store.truncate(log_id(1, 1, 8)).await.unwrap();
    store.purge(log_id(1, 1, 3)).await.unwrap();
    store.save_vote(&Vote::new_committed(1, 1)).await.unwrap();
    store.save_committed(Some(log_id(1, 1, 6))).await.unwrap();

    let mut store = reopen(&path, store).await;
    let state = store.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 1, 3)));
    assert_eq!(state.last_log_id, Some(log_id(1, 1, 7)));
    assert_eq!(
        store.read_vote().await.unwrap(),
        Some(Vote::new_committed(1, 1))
    );
    assert_eq!(store.read_committed().await.unwrap(), Some(log_id(1, 1, 6)));
    let entries = store.try_get_log_entries(0..100).await.unwrap();
    let indices: Vec<u64> = entries.iter().map(|entry| entry.log_id.index).collect();
    assert_eq!(indices, vec![4, 5, 6, 7]);
    assert_eq!(
        store.get_log_entries(4..=7).await.unwrap(),
        (4..=7).map(entry).collect::<Vec<_>>()
    );

    // Appending after the truncation point continues the log.
    store.blocking_append([entry(8)]).await.unwrap();
    let mut reader = store.get_log_reader().await;
    assert_eq!(
        reader.try_get_log_entries(8..9).await.unwrap(),
        vec![entry(8)]
    );
}
