//! ShardLog end to end: concurrent proposals, group commit, restart after compaction.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::sync::{Arc, RwLock};

use common::{create, NamesState};
use kiseki_log::{ShardLog, ShardLogOptions};
use kiseki_types::{ErrorKind, ShardId, TenantId};

const SHARD: ShardId = ShardId {
    tenant: TenantId(7),
    index: 0,
};

async fn open(dir: &Path, options: ShardLogOptions) -> (Arc<ShardLog>, Arc<RwLock<NamesState>>) {
    let state = Arc::new(RwLock::new(NamesState::default()));
    let log = ShardLog::open(dir, SHARD, state.clone(), options)
        .await
        .unwrap();
    (Arc::new(log), state)
}

/// `proposers` tasks each create `per_proposer` distinct names.
async fn propose_concurrently(log: &Arc<ShardLog>, proposers: usize, per_proposer: usize) {
    let mut tasks = Vec::new();
    for proposer in 0..proposers {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..per_proposer {
                let outcome = log
                    .propose(create(&format!("p{proposer}-{i}")))
                    .await
                    .unwrap();
                assert!(outcome.unwrap().inode.is_some());
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

async fn shutdown(log: Arc<ShardLog>) {
    Arc::into_inner(log).unwrap().shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_shares_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let (log, state) = open(dir.path(), ShardLogOptions::default()).await;
    let before = log.metrics();
    let (proposers, per_proposer) = (16, 100);
    let started = std::time::Instant::now();
    propose_concurrently(&log, proposers, per_proposer).await;
    let elapsed = started.elapsed();
    let deltas = (proposers * per_proposer) as u64;
    let after = log.metrics();
    let commits = after.group_commits - before.group_commits;
    let flushed = after.deltas_flushed - before.deltas_flushed;
    let entries = after.entries_flushed - before.entries_flushed;
    println!(
        "group commit: {deltas} deltas in {entries} entries and {commits} fsyncs: {:.1} deltas per \
         fsync, {:.0} deltas/s",
        flushed as f64 / commits as f64,
        deltas as f64 / elapsed.as_secs_f64()
    );
    assert_eq!(flushed, deltas);
    assert!(commits < deltas, "{commits} fsyncs for {deltas} deltas");
    assert_eq!(state.read().unwrap().names.len(), deltas as usize);
    shutdown(log).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_after_compaction_rebuilds_state() {
    let dir = tempfile::tempdir().unwrap();
    let options = ShardLogOptions {
        entries_per_snapshot: 10,
        entries_kept_after_snapshot: 2,
        ..ShardLogOptions::default()
    };
    let (log, state) = open(dir.path(), options.clone()).await;
    propose_concurrently(&log, 16, 20).await;
    // One entry each, so the log passes several snapshot intervals.
    for i in 0..40 {
        log.propose(create(&format!("seq-{i}")))
            .await
            .unwrap()
            .unwrap();
    }
    let duplicate = log.propose(create("seq-0")).await.unwrap().unwrap_err();
    assert_eq!(duplicate.kind, ErrorKind::AlreadyExists);
    // Snapshots are built in the background: wait for compaction to catch up.
    let mut metrics = log.metrics();
    for _ in 0..100 {
        if metrics.purged_index.unwrap_or(0) > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        metrics = log.metrics();
    }
    println!("before restart: {metrics:?}");
    assert!(
        metrics.snapshot_index.unwrap_or(0) > 0,
        "no snapshot: {metrics:?}"
    );
    assert!(
        metrics.purged_index.unwrap_or(0) > 0,
        "log not compacted: {metrics:?}"
    );
    let expected = state.read().unwrap().clone();
    assert_eq!(expected.names.len(), 16 * 20 + 40);
    shutdown(log).await;

    let (log, reopened) = open(dir.path(), options.clone()).await;
    println!("after restart: {:?}", log.metrics());
    assert_eq!(*reopened.read().unwrap(), expected);
    log.propose(create("after-restart")).await.unwrap().unwrap();
    let again = log.propose(create("seq-1")).await.unwrap().unwrap_err();
    assert_eq!(again.kind, ErrorKind::AlreadyExists);
    let expected = reopened.read().unwrap().clone();
    shutdown(log).await;

    // A second restart, this time from whatever snapshot and log tail the first one left.
    let (log, reopened) = open(dir.path(), options).await;
    assert_eq!(*reopened.read().unwrap(), expected);
    shutdown(log).await;
}
