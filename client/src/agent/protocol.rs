//! The agent's control protocol, shared by the agent and the `kiseki` CLI: one JSON request
//! per connection on a line of its own (at most [`REQUEST_BYTES_MAX`] bytes), answered by
//! JSON lines: for `stage`, [`Reply::Started`] and [`Reply::Progress`] events, then one final
//! reply; for every other request, one reply. [`Reply::Error`] ends any exchange.
//!
//! This module holds types only: no I/O.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::cache::CacheMode;

/// Where the agent listens unless told otherwise.
pub const SOCKET_DEFAULT: &str = "/run/kiseki/agent.sock";
/// The environment variable naming the socket (for the agent and the CLI).
pub const SOCKET_ENV: &str = "KISEKI_AGENT_SOCKET";
/// Longest request line the agent reads.
pub const REQUEST_BYTES_MAX: usize = 64 * 1024;
/// Longest reply line the CLI reads (a status with many pins and hints).
pub const REPLY_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Datasets one stage or release request may name.
pub const DATASETS_PER_REQUEST_MAX: usize = 64;
/// Key=value pairs one hint may carry.
pub const HINT_VALUES_MAX: usize = 32;

/// A request to the agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Fetch datasets into the cache (pinned for `job`, or organic).
    Stage {
        /// Dataset names, namespace paths (`/bucket/prefix`) or `s3://bucket/prefix`.
        datasets: Vec<String>,
        /// Pin owner; `None`: `user:<uid>` of the caller.
        job: Option<String>,
        /// `pinned` (default) or `organic`.
        mode: Option<CacheMode>,
        /// Stop after this many milliseconds and report what was and was not staged.
        deadline_ms: Option<u64>,
        /// Check every cached chunk against its content address after staging.
        verify: bool,
    },
    /// Drop `job`'s pins of `datasets` (all of its pins when empty).
    Release {
        /// Pin owner; `None`: `user:<uid>` of the caller.
        job: Option<String>,
        /// Datasets to release; empty: all of the job's.
        datasets: Vec<String>,
    },
    /// Drop the cached chunks of a path (pinned chunks stay).
    Evict {
        /// A dataset or namespace path.
        path: String,
    },
    /// Forget every cached chunk (new L2 key: old L2 files become unreadable).
    Wipe,
    /// Pins, cache usage, request counts, hints.
    Status,
    /// Check every cached chunk against its content address; drop the bad ones.
    Verify,
    /// Record a job's hint (phase start/end and key=value pairs).
    Hint {
        /// The job.
        job: String,
        /// `start` or `end`.
        phase: HintPhase,
        /// Free-form values.
        values: BTreeMap<String, String>,
    },
}

/// The phase a hint marks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HintPhase {
    /// A phase starts.
    Start,
    /// A phase ends.
    End,
}

/// Progress of a staging.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// The dataset being staged.
    pub dataset: String,
    /// Files whose chunks are all cached.
    pub files_done: u64,
    /// Files in the dataset.
    pub files_total: u64,
    /// Bytes cached (including what was cached before).
    pub bytes_done: u64,
    /// Bytes in the dataset.
    pub bytes_total: u64,
    /// Bytes per second fetched by this staging.
    pub rate_bytes_per_second: u64,
    /// Seconds left at that rate.
    pub eta_seconds: Option<u64>,
}

/// How the staging of one dataset ended.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DatasetOutcome {
    /// The dataset (its namespace path).
    pub dataset: String,
    /// Whether every chunk is cached.
    pub complete: bool,
    /// Final progress figures.
    pub progress: Progress,
    /// Files not (completely) staged, the first few of them.
    pub missing_files: Vec<String>,
    /// How many files were not staged in all.
    pub missing_files_count: u64,
    /// Why staging stopped early, if a fetch failed.
    pub error: Option<String>,
}

/// The result of a verification.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyOutcome {
    /// Chunks checked.
    pub checked: u64,
    /// Chunks that did not match their address.
    pub bad: u64,
    /// Chunks dropped (bad or unreadable).
    pub dropped: u64,
}

/// What kind of failure an error reply reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// A dataset does not exist.
    NotFound,
    /// A pin does not fit in the cache.
    DoesNotFit,
    /// The request was malformed or not allowed.
    BadRequest,
    /// The caller may not do this.
    PermissionDenied,
    /// The server or the cache failed.
    Failed,
}

/// A reply line from the agent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    /// Staging of a dataset started (it was found, walked and pinned).
    Started {
        /// The dataset's namespace path.
        dataset: String,
        /// The pin owner.
        job: String,
        /// Files in it.
        files: u64,
        /// Bytes in it.
        bytes: u64,
        /// Bytes already cached.
        cached_bytes: u64,
    },
    /// A staging progress event.
    Progress(Progress),
    /// Staging ended (complete, or stopped at the deadline).
    Staged {
        /// One outcome per dataset.
        datasets: Vec<DatasetOutcome>,
        /// Whether the deadline stopped it.
        deadline_passed: bool,
        /// The verification, when asked for.
        verify: Option<VerifyOutcome>,
    },
    /// Pins released.
    Released {
        /// (dataset, job, jobs still holding it).
        released: Vec<ReleasedPin>,
    },
    /// Chunks evicted.
    Evicted {
        /// Bytes freed.
        bytes: u64,
    },
    /// The cache was wiped.
    Wiped,
    /// The agent's status (see ARCHITECTURE.md for its fields).
    Status(serde_json::Value),
    /// A verification ended.
    Verified(VerifyOutcome),
    /// A hint was recorded.
    HintRecorded,
    /// The request failed.
    Error {
        /// What kind of failure.
        code: ErrorCode,
        /// What went wrong, for people.
        message: String,
    },
}

/// One released pin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleasedPin {
    /// The dataset.
    pub dataset: String,
    /// The job that released it.
    pub job: String,
    /// Jobs still holding it (empty: no longer pinned).
    pub still_pinned_by: Vec<String>,
}

impl Reply {
    /// An error reply.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Reply {
        Reply::Error {
            code,
            message: message.into(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_tagged_json_and_unknown_fields_are_refused() {
        let line = r#"{"op":"stage","datasets":["/b/d"],"job":"42","mode":"pinned","deadline_ms":null,"verify":false}"#;
        let request: Request = serde_json::from_str(line).unwrap();
        assert!(matches!(request, Request::Stage { ref job, .. } if job.as_deref() == Some("42")));
        let typo = r#"{"op":"release","job":"1","datasets":[],"dataset":"/b"}"#;
        assert!(serde_json::from_str::<Request>(typo).is_err());
        let reply = serde_json::to_string(&Reply::Evicted { bytes: 3 }).unwrap();
        assert_eq!(reply, r#"{"reply":"evicted","bytes":3}"#);
    }
}
