//! Runs a program with a hard time limit and bounded captured output. Used for every call the
//! prolog, epilog and SPANK plugin make (`kiseki`, `scontrol`, `scancel`): none of them may hang
//! a job's start or end because a daemon does not answer.

use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Most bytes kept from a program's stdout or stderr (the rest is read and dropped).
pub const CAPTURE_BYTES_MAX: u64 = 64 * 1024;
/// How often a running program is checked.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// How a bounded run ended.
#[derive(Debug)]
pub enum Outcome {
    /// The program exited (or was killed by a signal: `code` is `None`).
    Exited {
        /// Its exit status.
        status: ExitStatus,
        /// The first `CAPTURE_BYTES_MAX` bytes of stdout.
        stdout: String,
        /// The first `CAPTURE_BYTES_MAX` bytes of stderr.
        stderr: String,
    },
    /// The program ran past the limit and was killed.
    TimedOut {
        /// What it wrote to stderr before that.
        stderr: String,
    },
    /// The program could not be started (missing, not executable).
    NotStarted(std::io::Error),
}

impl Outcome {
    /// Whether the program exited with status 0.
    pub fn success(&self) -> bool {
        matches!(self, Outcome::Exited { status, .. } if status.success())
    }

    /// The exit code, if the program exited normally.
    pub fn code(&self) -> Option<i32> {
        match self {
            Outcome::Exited { status, .. } => status.code(),
            _ => None,
        }
    }

    /// Captured stderr (empty when the program did not start).
    pub fn stderr(&self) -> &str {
        match self {
            Outcome::Exited { stderr, .. } | Outcome::TimedOut { stderr } => stderr,
            Outcome::NotStarted(_) => "",
        }
    }
}

/// Runs `command` (stdin closed, output captured) for at most `limit`, killing it after that.
pub fn run_bounded(command: &mut Command, limit: Duration) -> Outcome {
    let spawned = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(error) => return Outcome::NotStarted(error),
    };
    let stdout = child.stdout.take().map(capture);
    let stderr = child.stderr.take().map(capture);
    let collect = |handle: Option<JoinHandle<String>>| {
        handle
            .and_then(|handle| handle.join().ok())
            .unwrap_or_default()
    };
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                return Outcome::Exited {
                    status,
                    stdout: collect(stdout),
                    stderr: collect(stderr),
                };
            }
            Ok(None) if Instant::now() < deadline => std::thread::sleep(POLL_INTERVAL),
            // Past the limit, or the child cannot be waited for: stop it either way.
            Ok(None) | Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                // A grandchild may still hold the pipes open: do not wait for the readers.
                drop(stdout);
                return Outcome::TimedOut {
                    stderr: stderr
                        .filter(|handle| handle.is_finished())
                        .map(|handle| collect(Some(handle)))
                        .unwrap_or_default(),
                };
            }
        }
    }
}

/// Reads a pipe to its end on a thread, keeping the first `CAPTURE_BYTES_MAX` bytes.
fn capture(pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut pipe = pipe;
        let _ = pipe.by_ref().take(CAPTURE_BYTES_MAX).read_to_end(&mut kept);
        let _ = std::io::copy(&mut pipe, &mut std::io::sink());
        String::from_utf8_lossy(&kept).into_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_output_and_status() {
        let outcome = run_bounded(
            Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]),
            Duration::from_secs(10),
        );
        assert_eq!(outcome.code(), Some(3));
        assert_eq!(outcome.stderr(), "err\n");
        assert!(matches!(&outcome, Outcome::Exited { stdout, .. } if stdout == "out\n"));
    }

    #[test]
    fn kills_a_program_past_its_limit() {
        let started = Instant::now();
        let outcome = run_bounded(Command::new("sleep").arg("30"), Duration::from_millis(300));
        assert!(matches!(outcome, Outcome::TimedOut { .. }), "{outcome:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn reports_a_missing_program() {
        let outcome = run_bounded(
            &mut Command::new("/nonexistent/kiseki"),
            Duration::from_secs(1),
        );
        assert!(matches!(outcome, Outcome::NotStarted(_)));
    }
}
