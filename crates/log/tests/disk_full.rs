//! A shard log on a full disk: proposals fail promptly with an error that says no space.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use common::NamesState;
use kiseki_log::{Delta, Owner, ShardLog, ShardLogOptions};
use kiseki_types::{ChunkId, Composition, Extent, ShardId, TenantId, Timestamp};

/// A 1 MiB tmpfs, unmounted on drop.
struct TinyTmpfs {
    mount_point: PathBuf,
    _dir: tempfile::TempDir,
}

impl TinyTmpfs {
    fn mount() -> Option<TinyTmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let mount_point = dir.path().join("mnt");
        std::fs::create_dir(&mount_point).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
            .arg(&mount_point)
            .status();
        match status {
            Ok(status) if status.success() => Some(TinyTmpfs {
                mount_point,
                _dir: dir,
            }),
            other => {
                println!(
                    "SKIPPED: cannot mount a tmpfs ({other:?}); run as root to test disk full"
                );
                None
            }
        }
    }

    fn path(&self) -> &Path {
        &self.mount_point
    }
}

impl Drop for TinyTmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount").arg(&self.mount_point).status();
        if !matches!(unmounted, Ok(status) if status.success()) {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(&self.mount_point)
                .status();
        }
    }
}

/// A PUT of a file with `extents` extents: about 50 bytes of log per extent.
fn big_put(i: usize, extents: usize) -> Delta {
    let extents = (0..extents)
        .map(|e| Extent {
            file_offset: e as u64 * 4096,
            len: 4096,
            chunk: ChunkId([((e + i) % 251) as u8; 32]),
            chunk_offset: 0,
        })
        .collect();
    Delta::PutFile {
        path: vec![format!("big-{i}")],
        content: Composition::from_sequential(extents),
        user_metadata: Default::default(),
        mode: 0o644,
        owner: Owner { uid: 0, gid: 0 },
        time: Timestamp(0),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_fails_proposals_with_no_space() {
    let Some(tmpfs) = TinyTmpfs::mount() else {
        return;
    };
    let shard = ShardId {
        tenant: TenantId(1),
        index: 3,
    };
    let state = Arc::new(RwLock::new(NamesState::default()));
    let log = ShardLog::open(tmpfs.path(), shard, state, ShardLogOptions::default())
        .await
        .unwrap();

    let mut failure = None;
    for i in 0..200 {
        let proposed = tokio::time::timeout(Duration::from_secs(5), log.propose(big_put(i, 1000)))
            .await
            .expect("propose hung on a full disk");
        if let Err(error) = proposed {
            println!("proposal {i} failed: {error}");
            failure = Some(error);
            break;
        }
    }
    let error = failure.expect("1 MiB tmpfs never filled up");
    assert!(error.is_no_space(), "not a no-space error: {error:?}");
    assert!(
        error.to_string().contains("No space left on device"),
        "{error}"
    );

    // The log has stopped: later proposals fail at once with the same cause.
    let again = tokio::time::timeout(Duration::from_secs(5), log.propose(big_put(999, 1)))
        .await
        .expect("propose hung after the log stopped")
        .unwrap_err();
    assert!(again.is_no_space(), "{again:?}");
    log.shutdown().await;
}
