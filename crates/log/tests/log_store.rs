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
    let path = dir.path().join("log");
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

/// The segment files of a log directory, in log order.
fn segment_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|dir_entry| dir_entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "seg"))
        .collect();
    files.sort();
    files
}

/// (offset, length) of each record in a segment image: `KSLR`, version, payload length u32 LE,
/// crc32c u32 LE, payload.
fn record_spans(image: &[u8]) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut offset = 0;
    while image.len() >= offset + 13 && &image[offset..offset + 4] == b"KSLR" {
        let len =
            13 + u32::from_le_bytes(image[offset + 5..offset + 9].try_into().unwrap()) as usize;
        spans.push((offset, len));
        offset += len;
    }
    spans
}

async fn indices(store: &mut LogStore) -> Vec<u64> {
    let entries = store.try_get_log_entries(0..100).await.unwrap();
    entries.iter().map(|entry| entry.log_id.index).collect()
}

#[tokio::test]
async fn torn_tail_is_dropped_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let mut store = LogStore::open(&path).unwrap();
    store.blocking_append((1..=5).map(entry)).await.unwrap();
    drop(reopen(&path, store).await);

    // A crash in the middle of the write of entry 5: only part of its record reached the disk.
    let segment = segment_files(&path).pop().unwrap();
    let image = std::fs::read(&segment).unwrap();
    let spans = record_spans(&image);
    assert_eq!(spans.len(), 5);
    let (offset, len) = spans[4];
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap();
    file.set_len((offset + len / 2) as u64).unwrap();
    drop(file);

    let mut store = LogStore::open(&path).unwrap();
    assert_eq!(indices(&mut store).await, vec![1, 2, 3, 4]);
    let state = store.get_log_state().await.unwrap();
    assert_eq!(state.last_log_id, Some(log_id(1, 1, 4)));
    assert_eq!(
        store.get_log_entries(1..=4).await.unwrap(),
        (1..=4).map(entry).collect::<Vec<_>>()
    );
    // The log continues where the torn record was, and that survives another reopen.
    store.blocking_append([entry(5), entry(6)]).await.unwrap();
    let mut store = reopen(&path, store).await;
    assert_eq!(indices(&mut store).await, vec![1, 2, 3, 4, 5, 6]);
}

#[tokio::test]
async fn torn_tail_never_resurrects_later_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let mut store = LogStore::open(&path).unwrap();
    store.blocking_append((1..=5).map(entry)).await.unwrap();
    drop(reopen(&path, store).await);

    // A crash during a multi-page write: the page holding entry 4 was lost (zeros), the page
    // holding entry 5 made it. Neither was acknowledged.
    let segment = segment_files(&path).pop().unwrap();
    let mut image = std::fs::read(&segment).unwrap();
    let (offset, len) = record_spans(&image)[3];
    image[offset..offset + len].fill(0);
    std::fs::write(&segment, &image).unwrap();

    let mut store = LogStore::open(&path).unwrap();
    assert_eq!(indices(&mut store).await, vec![1, 2, 3]);
    // A new entry 4 of the same size lands exactly where the old one was: the old entry 5 after
    // it must not come back on the next open.
    let replacement = Entry {
        log_id: log_id(2, 1, 4),
        payload: entry(4).payload,
    };
    store.blocking_append([replacement.clone()]).await.unwrap();
    let mut store = reopen(&path, store).await;
    assert_eq!(indices(&mut store).await, vec![1, 2, 3, 4]);
    assert_eq!(
        store.get_log_entries(4..=4).await.unwrap(),
        vec![replacement]
    );
}

#[tokio::test]
async fn corrupt_record_in_the_last_segment_ends_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let mut store = LogStore::open(&path).unwrap();
    store.blocking_append((1..=3).map(entry)).await.unwrap();
    drop(reopen(&path, store).await);
    let segment = segment_files(&path).pop().unwrap();
    let mut image = std::fs::read(&segment).unwrap();
    let (offset, _) = record_spans(&image)[1];
    image[offset + 20] ^= 0xff;
    std::fs::write(&segment, &image).unwrap();
    // Entry 2 is corrupt and entry 3 follows it in the same (last) segment: that is a torn
    // write, so the log opens with entry 1 only.
    let mut store = LogStore::open(&path).unwrap();
    assert_eq!(indices(&mut store).await, vec![1]);
}
