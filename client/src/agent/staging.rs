//! Staging: find each dataset, walk it, pin it all-or-nothing, fetch what is not cached yet
//! (a bounded number of chunks in flight) into L2, and report progress. Re-staging is cheap
//! and safe: chunks already cached are skipped, and the metadata snapshot is taken afresh.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::stream::StreamExt;
use kiseki_chunk::ChunkService;
use kiseki_types::{ChunkId, ErrorKind, NamespaceError};
use tokio::sync::mpsc;

use super::protocol::{DatasetOutcome, ErrorCode, Progress, Reply, VerifyOutcome};
use super::{datasets, Agent};
use crate::cache::{CacheError, CacheMode, ChunkCache};
use crate::client::DatasetWalk;

/// Chunks fetched at once by one staging.
pub const FETCHES_IN_FLIGHT: usize = 16;
/// How often a staging reports progress.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(500);
/// Names of unstaged files listed in a deadline report.
const MISSING_FILES_LISTED: usize = 20;

/// One stage request, resolved.
pub(super) struct StageJob {
    pub specs: Vec<String>,
    pub job: String,
    pub mode: CacheMode,
    pub deadline: Option<Instant>,
    pub verify: bool,
}

/// A dataset found, walked and (when pinned) pinned.
struct Prepared {
    path: String,
    walk: DatasetWalk,
    /// Each chunk's plaintext length.
    chunks: HashMap<ChunkId, u64>,
    missing: Vec<ChunkId>,
    bytes_total: u64,
    /// Whether this request made the job's pin (a failure later in the request undoes it).
    newly_pinned: bool,
}

pub(super) fn error_reply(error: &NamespaceError) -> Reply {
    let code = match error.kind {
        ErrorKind::NotFound => ErrorCode::NotFound,
        ErrorKind::InvalidArgument => ErrorCode::BadRequest,
        ErrorKind::PermissionDenied => ErrorCode::PermissionDenied,
        _ => ErrorCode::Failed,
    };
    Reply::error(code, error.message.clone())
}

fn cache_error_reply(dataset: &str, error: &CacheError) -> Reply {
    match error {
        CacheError::PinDoesNotFit { .. } => {
            Reply::error(ErrorCode::DoesNotFit, format!("staging {dataset}: {error}"))
        }
        _ => Reply::error(ErrorCode::Failed, format!("staging {dataset}: {error}")),
    }
}

/// Runs a stage request, sending events and the final reply to `events` (a closed channel
/// does not stop it: a `kiseki stage` without `--wait` leaves the agent staging).
pub(super) async fn stage(agent: Arc<Agent>, job: StageJob, events: mpsc::Sender<Reply>) {
    let finished = match stage_all(&agent, &job, &events).await {
        Ok(reply) | Err(reply) => reply,
    };
    if let Reply::Error { message, .. } = &finished {
        tracing::warn!(job = job.job, message, "staging failed");
    }
    let _ = events.send(finished).await;
}

async fn stage_all(
    agent: &Arc<Agent>,
    job: &StageJob,
    events: &mpsc::Sender<Reply>,
) -> Result<Reply, Reply> {
    // Find and walk every dataset first: a missing one pins nothing.
    let mut walks = Vec::new();
    for spec in &job.specs {
        let path = agent
            .namespace_path(spec)
            .map_err(|message| Reply::error(ErrorCode::NotFound, message))?;
        let walk = datasets::walk(&agent.client, spec, &path)
            .await
            .map_err(|e| error_reply(&e))?;
        walks.push((path, walk));
    }
    let mut prepared = Vec::new();
    for (path, walk) in walks {
        match prepare(agent, job, path, walk) {
            Ok(dataset) => prepared.push(dataset),
            Err(reply) => {
                undo_pins(agent, job, &prepared);
                return Err(reply);
            }
        }
    }
    // Fresh file-system figures: a walk of the staged data (find asks for them) then needs no
    // server call either.
    let _ = agent.client.statfs_refresh().await;
    for dataset in &prepared {
        let cached_bytes = dataset.bytes_total.saturating_sub(
            dataset
                .missing
                .iter()
                .map(|id| dataset.chunks.get(id).copied().unwrap_or(0))
                .sum(),
        );
        let _ = events
            .send(Reply::Started {
                dataset: dataset.path.clone(),
                job: job.job.clone(),
                files: dataset.walk.files.len() as u64,
                bytes: dataset.bytes_total,
                cached_bytes,
            })
            .await;
    }
    let id = agent.staging_started();
    let mut outcomes = Vec::new();
    let mut deadline_passed = false;
    for dataset in &prepared {
        let (outcome, timed_out) =
            fetch_dataset(agent, job, id, dataset, events, deadline_passed).await;
        deadline_passed |= timed_out;
        outcomes.push(outcome);
    }
    agent.staging_progress(id, None);
    let verify = if job.verify && !deadline_passed {
        Some(
            verify(agent)
                .await
                .map_err(|m| Reply::error(ErrorCode::Failed, m))?,
        )
    } else {
        None
    };
    Ok(Reply::Staged {
        datasets: outcomes,
        deadline_passed,
        verify,
    })
}

/// Pins a walked dataset (pinned mode) and installs its metadata snapshot.
fn prepare(
    agent: &Agent,
    job: &StageJob,
    path: String,
    mut walk: DatasetWalk,
) -> Result<Prepared, Reply> {
    let mut chunks: HashMap<ChunkId, u64> = HashMap::new();
    let mut order = Vec::new();
    for (_, _, layout) in &walk.files {
        for extent in &layout.extents {
            let end = u64::from(extent.chunk_offset) + u64::from(extent.len);
            let len = chunks.entry(extent.chunk).or_insert_with(|| {
                order.push(extent.chunk);
                0
            });
            *len = (*len).max(end);
        }
    }
    let bytes_total = chunks.values().sum();
    let mut newly_pinned = false;
    let missing = match job.mode {
        CacheMode::Pinned => {
            newly_pinned = !agent
                .cache
                .status()
                .pins
                .iter()
                .any(|pin| pin.dataset == path && pin.jobs.contains(&job.job));
            let list: Vec<(ChunkId, u64)> = order.iter().map(|id| (*id, chunks[id])).collect();
            let plan = agent
                .cache
                .pin(&job.job, &path, &list)
                .map_err(|e| cache_error_reply(&path, &e))?;
            agent
                .client
                .install_pinned_metadata(&path, std::mem::take(&mut walk.snapshot));
            plan.missing
        }
        _ => order
            .into_iter()
            .filter(|id| !agent.cache.contains(id))
            .collect(),
    };
    Ok(Prepared {
        path,
        walk,
        chunks,
        missing,
        bytes_total,
        newly_pinned,
    })
}

/// Releases the pins this request made before one of its datasets failed.
fn undo_pins(agent: &Agent, job: &StageJob, prepared: &[Prepared]) {
    if job.mode != CacheMode::Pinned {
        return;
    }
    for dataset in prepared.iter().filter(|dataset| dataset.newly_pinned) {
        for released in agent.cache.release(&job.job, Some(&dataset.path)) {
            if released.still_pinned_by.is_empty() {
                agent.client.drop_pinned_metadata(&released.dataset);
            }
        }
    }
}

/// Files done: which files each missing chunk holds back.
struct FileTracker {
    waiting: Vec<u32>,
    by_chunk: HashMap<ChunkId, Vec<u32>>,
    done: u64,
}

impl FileTracker {
    fn new(dataset: &Prepared) -> FileTracker {
        let missing: std::collections::HashSet<&ChunkId> = dataset.missing.iter().collect();
        let mut waiting = vec![0u32; dataset.walk.files.len()];
        let mut by_chunk: HashMap<ChunkId, Vec<u32>> = HashMap::new();
        for (index, (_, _, layout)) in dataset.walk.files.iter().enumerate() {
            let mut seen = std::collections::HashSet::new();
            for extent in &layout.extents {
                if missing.contains(&extent.chunk) && seen.insert(extent.chunk) {
                    waiting[index] += 1;
                    by_chunk.entry(extent.chunk).or_default().push(index as u32);
                }
            }
        }
        let done = waiting.iter().filter(|count| **count == 0).count() as u64;
        FileTracker {
            waiting,
            by_chunk,
            done,
        }
    }

    fn chunk_done(&mut self, id: &ChunkId) {
        for index in self.by_chunk.remove(id).unwrap_or_default() {
            let count = &mut self.waiting[index as usize];
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.done += 1;
            }
        }
    }
}

/// Fetches one chunk and stores it. Opening and storing (two AES-GCM passes and a file write)
/// run on a blocking thread, so the runtime's threads keep the transfers going. A pinned chunk
/// is opened straight into its L2 file's write buffer (one copy from the network's buffer). A
/// frame that does not open is fetched once more with the server's check (see
/// `Client::fetch_sealed_checked`).
async fn fetch_one(agent: &Agent, mode: CacheMode, id: ChunkId) -> Result<u64, String> {
    let fetched = agent.client.fetch_sealed(id).await;
    let stored = match store_one(agent, mode, id, fetched).await {
        Err(StoreFailure::Open(error)) => {
            tracing::warn!(chunk = %id, %error, "a staged chunk did not open; fetching it again with the server's check");
            let fetched = agent.client.fetch_sealed_checked(id).await;
            store_one(agent, mode, id, fetched).await
        }
        stored => stored,
    };
    stored.map_err(|failure| failure.to_string())
}

/// Opens and stores one fetched frame (on a blocking thread); returns its plaintext length.
async fn store_one(
    agent: &Agent,
    mode: CacheMode,
    id: ChunkId,
    fetched: Result<Bytes, NamespaceError>,
) -> Result<u64, StoreFailure> {
    let frame = fetched.map_err(|e| StoreFailure::Fetch(format!("fetching chunk {id}: {e}")))?;
    let cache = Arc::clone(&agent.cache);
    let client = Arc::clone(&agent.client);
    tokio::task::spawn_blocking(move || match mode {
        CacheMode::Pinned => {
            let len = ChunkService::plaintext_len(&frame).ok_or_else(|| {
                StoreFailure::Fetch(format!("chunk {id}: a frame of {} bytes", frame.len()))
            })?;
            cache.store_pinned_with(id, len, |out: &mut [u8]| {
                client
                    .open_frame_into(id, &frame, out)
                    .map(|_| ())
                    .map_err(StoreFailure::Open)
            })?;
            Ok(len as u64)
        }
        _ => {
            let plaintext = client.open_frame(id, frame).map_err(StoreFailure::Open)?;
            cache.store_organic(id, &plaintext);
            Ok(plaintext.len() as u64)
        }
    })
    .await
    .map_err(|e| StoreFailure::Fetch(format!("storing chunk {id}: {e}")))?
}

/// Why a fetched chunk was not stored.
#[derive(Debug, thiserror::Error)]
enum StoreFailure {
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(transparent)]
    Open(NamespaceError),
    /// The frame did not arrive, or the storing task failed.
    #[error("{0}")]
    Fetch(String),
}

async fn fetch_dataset(
    agent: &Arc<Agent>,
    job: &StageJob,
    staging: u64,
    dataset: &Prepared,
    events: &mpsc::Sender<Reply>,
    deadline_passed: bool,
) -> (DatasetOutcome, bool) {
    let mut tracker = FileTracker::new(dataset);
    let missing_bytes: u64 = dataset
        .missing
        .iter()
        .map(|id| dataset.chunks.get(id).copied().unwrap_or(0))
        .sum();
    let mut progress = Progress {
        dataset: dataset.path.clone(),
        files_done: tracker.done,
        files_total: dataset.walk.files.len() as u64,
        bytes_done: dataset.bytes_total - missing_bytes,
        bytes_total: dataset.bytes_total,
        rate_bytes_per_second: 0,
        eta_seconds: None,
    };
    let started = Instant::now();
    let mut fetched_bytes = 0u64;
    let mut failure = None;
    let mut timed_out = deadline_passed;
    if !timed_out {
        let mut fetches = futures::stream::iter(dataset.missing.iter().copied())
            .map(|id| async move { (id, fetch_one(agent, job.mode, id).await) })
            .buffer_unordered(FETCHES_IN_FLIGHT);
        let mut ticker = tokio::time::interval(PROGRESS_INTERVAL);
        let far = Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600);
        let deadline = tokio::time::Instant::from_std(job.deadline.unwrap_or(far));
        loop {
            tokio::select! {
                next = fetches.next() => match next {
                    Some((id, Ok(len))) => {
                        fetched_bytes += len;
                        progress.bytes_done += dataset.chunks.get(&id).copied().unwrap_or(len);
                        tracker.chunk_done(&id);
                    }
                    Some((_, Err(message))) => {
                        failure = Some(message);
                        break;
                    }
                    None => break,
                },
                _ = ticker.tick() => {
                    update_rate(&mut progress, &tracker, fetched_bytes, started);
                    agent.staging_progress(staging, Some(progress.clone()));
                    let _ = events.try_send(Reply::Progress(progress.clone()));
                }
                _ = tokio::time::sleep_until(deadline) => {
                    timed_out = true;
                    break;
                }
            }
        }
    }
    update_rate(&mut progress, &tracker, fetched_bytes, started);
    let _ = events.try_send(Reply::Progress(progress.clone()));
    if let Some(message) = &failure {
        tracing::warn!(dataset = dataset.path, message, "staging stopped");
    }
    let missing_files: Vec<String> = dataset
        .walk
        .files
        .iter()
        .zip(&tracker.waiting)
        .filter(|(_, waiting)| **waiting > 0)
        .map(|((path, _, _), _)| path.clone())
        .collect();
    let outcome = DatasetOutcome {
        dataset: dataset.path.clone(),
        complete: missing_files.is_empty(),
        progress,
        missing_files_count: missing_files.len() as u64,
        missing_files: missing_files
            .into_iter()
            .take(MISSING_FILES_LISTED)
            .collect(),
        error: failure,
    };
    (outcome, timed_out)
}

fn update_rate(progress: &mut Progress, tracker: &FileTracker, fetched: u64, started: Instant) {
    progress.files_done = tracker.done;
    let seconds = started.elapsed().as_secs_f64();
    if seconds > 0.0 {
        progress.rate_bytes_per_second = (fetched as f64 / seconds) as u64;
    }
    let left = progress.bytes_total.saturating_sub(progress.bytes_done);
    progress.eta_seconds = match (left, progress.rate_bytes_per_second) {
        (0, _) => Some(0),
        (_, 0) => None,
        (left, rate) => Some(left.div_ceil(rate)),
    };
}

/// Checks every cached chunk against its content address (bad ones are dropped).
pub(super) async fn verify(agent: &Agent) -> Result<VerifyOutcome, String> {
    let cache = Arc::clone(&agent.cache);
    let client = Arc::clone(&agent.client);
    let report = tokio::task::spawn_blocking(move || {
        cache.verify(&|id: &ChunkId, plaintext: &[u8]| client.chunk_matches(id, plaintext))
    })
    .await
    .map_err(|e| format!("verifying the cache: {e}"))?;
    Ok(VerifyOutcome::from_counts(
        report.checked,
        report.bad,
        report.dropped,
    ))
}
