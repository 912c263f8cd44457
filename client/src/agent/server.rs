//! The agent's Unix socket: accepts connections (a bounded number at once), reads one request
//! line (bounded in size and time), answers with JSON lines. The socket is mode 0666 so any
//! user on the node can stage, hint and read the status; what may change other users' state
//! is checked against the caller's uid (`SO_PEERCRED`): `wipe`, `evict` and releasing a job's
//! pins need root (or the agent's own user), except a user's own `user:<uid>` pins.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, Semaphore};

use super::protocol::{
    ErrorCode, Reply, Request, DATASETS_PER_REQUEST_MAX, HINT_VALUES_MAX, REQUEST_BYTES_MAX,
};
use super::staging::{self, StageJob};
use super::Agent;
use crate::cache::CacheMode;

/// Connections served at once (more wait in the listen backlog).
const CONNECTIONS_MAX: usize = 64;
/// Longest wait for a request line after connecting.
const REQUEST_WAIT: Duration = Duration::from_secs(10);
/// Events queued for a slow reader of a stage (progress beyond it is dropped).
const EVENTS_QUEUED_MAX: usize = 64;

/// Errors binding the socket.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// Another agent answers on the socket.
    #[error("another agent is already listening on {0}")]
    InUse(PathBuf),
    /// The socket could not be made.
    #[error("agent socket {path}: {source}")]
    Io {
        /// The socket path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// The bound socket; removes its file when dropped.
pub struct AgentSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl AgentSocket {
    /// Binds `path` (its directory is created; a stale socket file of a dead agent is
    /// replaced; a live one is refused).
    pub fn bind(path: &Path) -> Result<AgentSocket, SocketError> {
        let io = |source| SocketError::Io {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        if path.exists() {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(SocketError::InUse(path.to_owned()));
            }
            std::fs::remove_file(path).map_err(io)?;
        }
        let listener = UnixListener::bind(path).map_err(io)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666)).map_err(io)?;
        Ok(AgentSocket {
            listener,
            path: path.to_owned(),
        })
    }

    /// Serves requests until the task is dropped.
    pub async fn serve(self, agent: Arc<Agent>) {
        let slots = Arc::new(Semaphore::new(CONNECTIONS_MAX));
        loop {
            let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
                return;
            };
            match self.listener.accept().await {
                Ok((stream, _)) => {
                    let agent = Arc::clone(&agent);
                    tokio::spawn(async move {
                        if let Err(error) = handle(stream, agent).await {
                            tracing::debug!(%error, "agent connection ended");
                        }
                        drop(permit);
                    });
                }
                Err(error) => {
                    tracing::warn!(%error, "accepting an agent connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

impl Drop for AgentSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The uid this process runs as (the owner of its /proc entry).
fn own_uid() -> Option<u32> {
    std::fs::metadata("/proc/self").ok().map(|meta| meta.uid())
}

async fn write_reply(stream: &mut UnixStream, reply: &Reply) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(reply).map_err(std::io::Error::other)?;
    line.push(b'\n');
    stream.write_all(&line).await
}

async fn read_request(stream: &mut UnixStream) -> Result<Request, Reply> {
    let mut line = Vec::new();
    let limit = (REQUEST_BYTES_MAX + 1) as u64;
    let read = async {
        let mut reader = BufReader::new(&mut *stream).take(limit);
        reader.read_until(b'\n', &mut line).await
    };
    match tokio::time::timeout(REQUEST_WAIT, read).await {
        Err(_) => {
            return Err(Reply::error(
                ErrorCode::BadRequest,
                "no request line in time",
            ))
        }
        Ok(Err(error)) => {
            return Err(Reply::error(
                ErrorCode::BadRequest,
                format!("reading the request: {error}"),
            ))
        }
        Ok(Ok(_)) => {}
    }
    if line.len() > REQUEST_BYTES_MAX {
        return Err(Reply::error(
            ErrorCode::BadRequest,
            format!("request longer than {REQUEST_BYTES_MAX} bytes"),
        ));
    }
    serde_json::from_slice(&line)
        .map_err(|e| Reply::error(ErrorCode::BadRequest, format!("malformed request: {e}")))
}

async fn handle(mut stream: UnixStream, agent: Arc<Agent>) -> std::io::Result<()> {
    let uid = stream.peer_cred()?.uid();
    let request = match read_request(&mut stream).await {
        Ok(request) => request,
        Err(reply) => return write_reply(&mut stream, &reply).await,
    };
    let privileged = uid == 0 || Some(uid) == own_uid();
    let owner = |job: Option<String>| job.unwrap_or_else(|| format!("user:{uid}"));
    let denied = |what: &str| {
        Reply::error(
            ErrorCode::PermissionDenied,
            format!("{what} needs root on this node (caller uid {uid})"),
        )
    };
    let reply = match request {
        Request::Stage {
            datasets,
            job,
            mode,
            deadline_ms,
            verify,
        } => {
            if datasets.is_empty() || datasets.len() > DATASETS_PER_REQUEST_MAX {
                Reply::error(
                    ErrorCode::BadRequest,
                    format!("stage names 1 to {DATASETS_PER_REQUEST_MAX} datasets"),
                )
            } else {
                let job = StageJob {
                    specs: datasets,
                    job: owner(job),
                    mode: match mode {
                        Some(CacheMode::Organic) => CacheMode::Organic,
                        _ => CacheMode::Pinned,
                    },
                    deadline: deadline_ms.map(|ms| Instant::now() + Duration::from_millis(ms)),
                    verify,
                };
                return stream_stage(stream, agent, job).await;
            }
        }
        Request::Release { job, datasets } => {
            let job = owner(job);
            if datasets.len() > DATASETS_PER_REQUEST_MAX {
                Reply::error(ErrorCode::BadRequest, "too many datasets in one release")
            } else if !privileged && job != format!("user:{uid}") {
                denied(&format!("releasing job {job}'s pins"))
            } else {
                agent.release(&job, &datasets)
            }
        }
        Request::Evict { path } if privileged => agent.evict(&path).await,
        Request::Evict { .. } => denied("evicting"),
        Request::Wipe if privileged => agent.wipe().await,
        Request::Wipe => denied("wiping the cache"),
        Request::Status => agent.status(),
        Request::Verify => agent.verify().await,
        Request::Hint { values, .. } if values.len() > HINT_VALUES_MAX => Reply::error(
            ErrorCode::BadRequest,
            format!("a hint carries at most {HINT_VALUES_MAX} values"),
        ),
        Request::Hint { job, phase, values } => {
            agent.record_hint(job, phase, values);
            Reply::HintRecorded
        }
    };
    write_reply(&mut stream, &reply).await
}

/// Runs a staging in a task of its own and forwards its events while the caller listens.
async fn stream_stage(
    mut stream: UnixStream,
    agent: Arc<Agent>,
    job: StageJob,
) -> std::io::Result<()> {
    let (events, mut received) = mpsc::channel(EVENTS_QUEUED_MAX);
    tokio::spawn(staging::stage(agent, job, events));
    while let Some(event) = received.recv().await {
        write_reply(&mut stream, &event).await?;
    }
    Ok(())
}
