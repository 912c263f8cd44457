//! What the prolog and epilog do, as functions the binaries call: stage a job's datasets through
//! the `kiseki` CLI, fail the job (not the node) when staging fails, release the job's pins.
//!
//! Why cancel instead of failing the prolog: in Slurm 22.05 a prolog that exits non-zero drains
//! the node and requeues+holds the job, so one bad dataset name would take a node out of
//! service. Instead the prolog records the reason in the job's `Comment`
//! (`scontrol show job`, `squeue -o %k`), cancels the job (`scancel`: state CANCELLED,
//! `Reason=Prolog`, the batch script never runs) and exits 0; the node stays idle.

use std::process::Command;
use std::time::Duration;

use crate::config::Config;
use crate::duration;
use crate::request::JobRequest;
use crate::run::{run_bounded, Outcome};

/// Longest reason written to a job's Comment.
pub const REASON_BYTES_MAX: usize = 400;
/// Extra time past the CLI's own deadline before the prolog kills it.
const DEADLINE_GRACE: Duration = Duration::from_secs(15);
/// Release attempts in the epilog (the agent may be restarting).
const RELEASE_ATTEMPTS: u32 = 3;
/// Pause between release attempts.
const RELEASE_BACKOFF: Duration = Duration::from_secs(1);

/// Why staging did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// The `kiseki` CLI is missing or not executable: the node is misconfigured.
    #[error("cannot run {program}: {source}")]
    NotInstalled {
        /// The configured CLI.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// Staging failed for this job; the text is meant for the user.
    #[error("{0}")]
    Failed(String),
}

/// A `kiseki` command with the configured socket.
fn kiseki(config: &Config) -> Command {
    let mut command = Command::new(&config.kiseki);
    if let Some(socket) = &config.agent_socket {
        command.arg("--socket").arg(socket);
    }
    command
}

/// Stages the job's datasets and waits until they are complete (bounded by the deadline).
pub fn stage(config: &Config, job_id: &str, request: &JobRequest) -> Result<(), StageError> {
    if request.stage.is_empty() {
        return Ok(());
    }
    let deadline = duration::format(config.stage_deadline);
    let mut command = kiseki(config);
    command
        .arg("stage")
        .args(["--job", job_id, "--mode", request.stage_mode().as_str()])
        .args(["--wait", "--deadline", &deadline])
        .arg("--")
        .args(&request.stage);
    let outcome = run_bounded(&mut command, config.stage_deadline + DEADLINE_GRACE);
    match outcome {
        Outcome::NotStarted(source) => Err(StageError::NotInstalled {
            program: config.kiseki.display().to_string(),
            source,
        }),
        outcome if outcome.success() => Ok(()),
        Outcome::Exited { status, stderr, .. } if status.code() == Some(3) => {
            Err(StageError::Failed(with_detail(
                &format!("staging did not complete within the node's deadline ({deadline})"),
                &stderr,
            )))
        }
        Outcome::Exited { status, stderr, .. } => Err(StageError::Failed(with_detail(
            &format!("staging failed ({status})"),
            &stderr,
        ))),
        Outcome::TimedOut { stderr } => Err(StageError::Failed(with_detail(
            &format!("the node's kiseki agent did not answer within {deadline}"),
            &stderr,
        ))),
    }
}

/// `summary: <last kiseki: line of stderr>`, bounded.
fn with_detail(summary: &str, stderr: &str) -> String {
    let detail = stderr
        .lines()
        .rev()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .map(|line| line.strip_prefix("kiseki:").unwrap_or(line).trim());
    let text = match detail {
        Some(detail) => format!("{summary}: {detail}"),
        None => summary.to_owned(),
    };
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    truncate(&clean, REASON_BYTES_MAX)
}

fn truncate(text: &str, bytes_max: usize) -> String {
    let mut end = text.len().min(bytes_max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// The message users see in the job's Comment.
pub fn comment(reason: &str) -> String {
    format!("kiseki: staging failed, job cancelled: {reason}")
}

/// Cancels the job with `reason` in its Comment; `Err` when it could not be cancelled (then
/// only failing the prolog keeps the script from running).
pub fn cancel_job(config: &Config, job_id: &str, reason: &str) -> Result<(), String> {
    let update = run_bounded(
        Command::new(&config.scontrol)
            .args(["update", &format!("JobId={job_id}")])
            .arg(format!("Comment={}", comment(reason))),
        config.command_timeout,
    );
    if !update.success() {
        // The reason is also in the node's log; cancelling matters more than the comment.
        tracing::warn!(job_id, outcome = ?update, "could not set the job's comment");
    }
    let cancel = run_bounded(
        Command::new(&config.scancel).arg(job_id),
        config.command_timeout,
    );
    if cancel.success() {
        Ok(())
    } else {
        Err(format!("scancel {job_id}: {cancel:?}"))
    }
}

/// Appends `message` to the job's stderr file (where users look first), writing as the job's
/// user (`uid`/`gid`) through `note_writer` (this program re-run with `--append-note`), so a
/// path the user controls can never make root write anywhere. Best effort.
pub fn note_for_user(
    config: &Config,
    job_id: &str,
    (uid, gid): (u32, u32),
    note_writer: &std::path::Path,
    message: &str,
) -> Result<(), String> {
    use std::os::unix::process::CommandExt;
    let fields = crate::scontrol::job_fields(config, job_id).ok_or("scontrol show job failed")?;
    let path = crate::scontrol::job_stderr_path(&fields).ok_or("the job has no output file")?;
    let outcome = run_bounded(
        Command::new(note_writer)
            .arg("--append-note")
            .arg(&path)
            .arg(message)
            .uid(uid)
            .gid(gid),
        config.command_timeout,
    );
    if outcome.success() {
        Ok(())
    } else {
        Err(format!("writing to {}: {outcome:?}", path.display()))
    }
}

/// The `--append-note` side: appends one line to `path`, never following a symlink, creating
/// the file (mode 0644) if needed. Runs as the job's user.
pub fn append_note(path: &std::path::Path, message: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    let line: String = message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(REASON_BYTES_MAX + 100)
        .collect();
    writeln!(file, "{line}")
}

/// Releases every pin of the job (idempotent); the last failure. Quick failures (an agent
/// restarting) are retried a few times; a release that times out is not (a hung agent would
/// keep the node COMPLETING for every attempt).
pub fn release(config: &Config, job_id: &str) -> Result<(), StageError> {
    let mut last = String::new();
    for attempt in 1..=RELEASE_ATTEMPTS {
        let outcome = run_bounded(
            kiseki(config).args(["release", "--job", job_id]),
            config.release_timeout,
        );
        match outcome {
            Outcome::NotStarted(source) => {
                return Err(StageError::NotInstalled {
                    program: config.kiseki.display().to_string(),
                    source,
                })
            }
            outcome if outcome.success() => return Ok(()),
            Outcome::TimedOut { .. } => {
                let limit = duration::format(config.release_timeout);
                return Err(StageError::Failed(format!(
                    "the node's kiseki agent did not answer a release within {limit}"
                )));
            }
            outcome => {
                last = with_detail(
                    &format!("release attempt {attempt} failed"),
                    outcome.stderr(),
                );
                tracing::warn!(job_id, "{last}");
            }
        }
        if attempt < RELEASE_ATTEMPTS {
            std::thread::sleep(RELEASE_BACKOFF);
        }
    }
    Err(StageError::Failed(last))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reason_is_the_cli_message_bounded() {
        let reason = with_detail(
            "staging failed (exit status: 1)",
            "warning\nkiseki: dataset /data/missing does not exist\n",
        );
        assert_eq!(
            reason,
            "staging failed (exit status: 1): dataset /data/missing does not exist"
        );
        let long = with_detail("x", &"é".repeat(1000));
        assert!(long.len() <= REASON_BYTES_MAX);
        assert_eq!(with_detail("x", "a\u{7}b"), "x: a b");
    }
}
