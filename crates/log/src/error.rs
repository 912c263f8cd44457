//! Errors of the shard log.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use kiseki_types::ShardId;

/// Why a shard log could not open or could not take a proposal.
#[derive(Clone, Debug, thiserror::Error)]
pub enum LogError {
    /// Writing or syncing the log failed (disk full, I/O error). The shard's log has stopped;
    /// it must be reopened once the cause is fixed.
    #[error("shard {shard}: log storage I/O failed: {source}")]
    StorageIo {
        /// The shard.
        shard: ShardId,
        /// The I/O error the log writer hit (`ErrorKind::StorageFull` when the disk is full).
        #[source]
        source: Arc<io::Error>,
    },
    /// Storage failed in a way that is not a plain I/O error (corrupt record, snapshot failure).
    #[error("shard {shard}: log storage failed: {message}")]
    Storage {
        /// The shard.
        shard: ShardId,
        /// What failed.
        message: String,
    },
    /// This node does not lead the shard's group; propose to the leader instead.
    #[error("shard {shard}: not the leader (leader: {leader:?})")]
    NotLeader {
        /// The shard.
        shard: ShardId,
        /// The leader's node id, when known.
        leader: Option<u64>,
    },
    /// The shard's log was shut down or stopped.
    #[error("shard {shard}: log stopped")]
    Stopped {
        /// The shard.
        shard: ShardId,
    },
    /// A cluster shard could not commit (or confirm a read) within the bound: too few of its
    /// replicas are reachable to form a quorum, or no leader could be elected meanwhile.
    #[error("shard {shard}: no quorum within {waited_ms} ms ({reason}); too many replicas down?")]
    NoQuorum {
        /// The shard.
        shard: ShardId,
        /// How long the call waited.
        waited_ms: u64,
        /// What was last seen.
        reason: String,
    },
    /// A peer of a cluster shard failed a call in a way that may or may not have taken effect.
    #[error("shard {shard}: peer call failed: {message}")]
    Peer {
        /// The shard.
        shard: ShardId,
        /// What failed.
        message: String,
    },
    /// No leader was elected within the bound given at open.
    #[error("shard {shard}: no leader after {waited_ms} ms")]
    LeaderTimeout {
        /// The shard.
        shard: ShardId,
        /// How long open waited.
        waited_ms: u64,
    },
    /// A file of the shard could not be opened, read or created.
    #[error("shard {shard}: {path}: {source}")]
    Open {
        /// The shard.
        shard: ShardId,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: Arc<io::Error>,
    },
    /// openraft refused a configuration or request (a bug or an invalid option).
    #[error("shard {shard}: raft: {message}")]
    Raft {
        /// The shard.
        shard: ShardId,
        /// openraft's message.
        message: String,
    },
}

impl LogError {
    /// True when the error means the disk (or quota) is full.
    pub fn is_no_space(&self) -> bool {
        match self {
            LogError::StorageIo { source, .. } | LogError::Open { source, .. } => {
                source.kind() == io::ErrorKind::StorageFull
                    || source.kind() == io::ErrorKind::QuotaExceeded
            }
            _ => false,
        }
    }
}

/// Maps openraft's errors to [`LogError`], preferring the I/O error the log writer recorded:
/// once the writer failed, openraft only reports that it stopped.
#[derive(Clone, Debug)]
pub(crate) struct ErrorContext {
    pub(crate) shard: ShardId,
    pub(crate) failure: Arc<crate::log_store::StorageFailure>,
}

type ClientWriteError = openraft::error::ClientWriteError<u64, openraft::BasicNode>;

impl ErrorContext {
    /// The error for a failed client write.
    pub(crate) fn client_write(
        &self,
        error: openraft::error::RaftError<u64, ClientWriteError>,
    ) -> LogError {
        use openraft::error::RaftError;
        match error {
            RaftError::APIError(ClientWriteError::ForwardToLeader(forward)) => {
                LogError::NotLeader {
                    shard: self.shard,
                    leader: forward.leader_id,
                }
            }
            RaftError::APIError(other) => self.raft(other),
            RaftError::Fatal(fatal) => self.fatal(fatal),
        }
    }

    /// The error for openraft having stopped.
    pub(crate) fn fatal(&self, fatal: openraft::error::Fatal<u64>) -> LogError {
        use openraft::error::Fatal;
        if let Some(source) = self.failure.get() {
            return LogError::StorageIo {
                shard: self.shard,
                source,
            };
        }
        match fatal {
            Fatal::StorageError(error) => LogError::Storage {
                shard: self.shard,
                message: error.to_string(),
            },
            Fatal::Panicked | Fatal::Stopped => LogError::Stopped { shard: self.shard },
        }
    }

    /// The error for the log having stopped (a channel to it closed).
    pub(crate) fn stopped(&self) -> LogError {
        self.fatal(openraft::error::Fatal::Stopped)
    }

    /// An openraft error that is neither a storage failure nor a stop.
    pub(crate) fn raft(&self, error: impl std::fmt::Display) -> LogError {
        LogError::Raft {
            shard: self.shard,
            message: error.to_string(),
        }
    }
}
