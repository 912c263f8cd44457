//! `kiseki`: the command line of a compute node's cache agent (stage and release datasets,
//! evict and wipe the cache, status, job hints). It only talks to the local agent over its
//! Unix socket; it never reaches a server and never touches cache files itself.

mod connection;
mod stage;
mod status;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use kiseki_client::agent::protocol::{HintPhase, Reply, Request, SOCKET_DEFAULT, SOCKET_ENV};
use kiseki_client::CacheMode;

use connection::Connection;

/// Control the node's Kiseki cache agent.
#[derive(Debug, Parser)]
#[command(
    version,
    after_help = "Examples:\n  \
        kiseki stage /ml/imagenet --job 42 --wait --deadline 10m\n  \
        kiseki stage s3://ml/imagenet --mode organic\n  \
        kiseki release --job 42\n  \
        kiseki status --json\n  \
        kiseki hint --job 42 --phase start epoch=3\n\n\
        Exit codes: 0 done, 1 error, 3 deadline passed before staging completed."
)]
struct Cli {
    /// The agent's socket.
    #[arg(long, env = SOCKET_ENV, default_value = SOCKET_DEFAULT, value_name = "PATH", global = true)]
    socket: PathBuf,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Fetch datasets into the node cache (pinned for a job by default).
    Stage {
        /// Dataset names (from the node config), namespace paths (/bucket/prefix) or
        /// s3://bucket/prefix URLs.
        #[arg(required = true, value_name = "DATASET")]
        datasets: Vec<String>,
        /// The job that pins the datasets [default: user:<your uid>].
        #[arg(long, value_name = "ID")]
        job: Option<String>,
        /// pinned: kept until released; organic: cached like any read.
        #[arg(long, value_enum, default_value_t = StageMode::Pinned)]
        mode: StageMode,
        /// Return only when everything is staged (else once staging has started).
        #[arg(long)]
        wait: bool,
        /// Give up after this long (90s, 10m, 1h) with exit code 3; implies --wait.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        deadline: Option<Duration>,
        /// Check every cached chunk against its content address afterwards; implies --wait.
        #[arg(long)]
        verify: bool,
    },
    /// Drop a job's pins (all of them without DATASET). Releasing nothing is not an error.
    Release {
        /// The job [default: user:<your uid>].
        #[arg(long, value_name = "ID")]
        job: Option<String>,
        /// Datasets to release.
        #[arg(value_name = "DATASET")]
        datasets: Vec<String>,
    },
    /// Pinned datasets, cache usage, hit ratios, server requests, hints.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Evict, wipe or verify the cache.
    Cache {
        #[command(subcommand)]
        action: CacheAction,
    },
    /// Record a job hint with the agent (returns quickly; never blocks a job for long).
    Hint {
        /// The job.
        #[arg(long, value_name = "ID")]
        job: String,
        /// The phase that starts or ends.
        #[arg(long, value_enum)]
        phase: Phase,
        /// key=value pairs (separate with spaces or commas).
        #[arg(value_name = "KEY=VALUE")]
        values: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum CacheAction {
    /// Drop the cached chunks of a path (pinned chunks stay).
    Evict {
        /// A dataset name, namespace path or s3:// URL.
        path: String,
    },
    /// Forget everything cached: the L2 key is replaced, old L2 data becomes unreadable.
    Wipe,
    /// Check every cached chunk against its content address; bad ones are dropped.
    Verify,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum StageMode {
    Pinned,
    Organic,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Phase {
    Start,
    End,
}

/// Longest a `kiseki hint` waits for the agent.
const HINT_WAIT: Duration = Duration::from_secs(2);

/// `90s`, `10m`, `1h`, `500ms`, or plain seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 90s, 10m, 1h)"))?;
    let seconds = match unit {
        "ms" => return Ok(Duration::from_millis(number)),
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        other => {
            return Err(format!(
                "unknown duration unit {other:?} (use ms, s, m or h)"
            ))
        }
    };
    Ok(Duration::from_secs(number.saturating_mul(seconds)))
}

fn hint_values(items: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut values = BTreeMap::new();
    for item in items.iter().flat_map(|item| item.split(',')) {
        if item.is_empty() {
            continue;
        }
        let (key, value) = item
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("hint value {item:?} is not key=value"))?;
        values.insert(key.to_owned(), value.to_owned());
    }
    Ok(values)
}

/// What a command ends with.
pub enum Outcome {
    /// Exit 0.
    Done,
    /// Exit 3: a staging deadline passed.
    DeadlinePassed,
}

fn run(cli: Cli) -> anyhow::Result<Outcome> {
    match cli.command {
        Command::Stage {
            datasets,
            job,
            mode,
            wait,
            deadline,
            verify,
        } => {
            let request = Request::Stage {
                datasets: datasets.clone(),
                job,
                mode: Some(match mode {
                    StageMode::Pinned => CacheMode::Pinned,
                    StageMode::Organic => CacheMode::Organic,
                }),
                deadline_ms: deadline.map(|d| d.as_millis().min(u128::from(u64::MAX)) as u64),
                verify,
            };
            let connection = Connection::open(&cli.socket, None)?;
            let wait = wait || deadline.is_some() || verify;
            stage::run(connection, &request, datasets.len(), wait)
        }
        Command::Release { job, datasets } => {
            let reply = Connection::open(&cli.socket, Some(Duration::from_secs(30)))?
                .call(&Request::Release { job, datasets })?;
            status::print_released(reply)?;
            Ok(Outcome::Done)
        }
        Command::Status { json } => {
            let reply = Connection::open(&cli.socket, Some(Duration::from_secs(30)))?
                .call(&Request::Status)?;
            status::print_status(reply, json)?;
            Ok(Outcome::Done)
        }
        Command::Cache { action } => {
            let request = match action {
                CacheAction::Evict { path } => Request::Evict { path },
                CacheAction::Wipe => Request::Wipe,
                CacheAction::Verify => Request::Verify,
            };
            let reply = Connection::open(&cli.socket, None)?.call(&request)?;
            match reply {
                Reply::Evicted { bytes } => {
                    println!("evicted {}", kiseki_client::human_bytes(bytes))
                }
                Reply::Wiped => {
                    println!("cache wiped: old L2 data is unreadable; pinned datasets need staging again")
                }
                Reply::Verified(outcome) => println!(
                    "verified {} chunks: {} bad, {} dropped",
                    outcome.checked, outcome.bad, outcome.dropped
                ),
                other => anyhow::bail!("unexpected reply from the agent: {other:?}"),
            }
            Ok(Outcome::Done)
        }
        Command::Hint { job, phase, values } => {
            let request = Request::Hint {
                job,
                phase: match phase {
                    Phase::Start => HintPhase::Start,
                    Phase::End => HintPhase::End,
                },
                values: hint_values(&values)?,
            };
            // The whole exchange is bounded: a job script never waits long on a hint.
            let (sender, receiver) = std::sync::mpsc::channel();
            let socket = cli.socket.clone();
            std::thread::spawn(move || {
                let result = Connection::open(&socket, Some(HINT_WAIT))
                    .and_then(|connection| connection.call(&request));
                let _ = sender.send(result);
            });
            match receiver.recv_timeout(HINT_WAIT) {
                Ok(result) => result.map(|_| Outcome::Done),
                Err(_) => anyhow::bail!(
                    "the agent at {} did not take the hint within {HINT_WAIT:?}",
                    cli.socket.display()
                ),
            }
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::DeadlinePassed) => ExitCode::from(3),
        Err(error) => {
            eprintln!("kiseki: {error:#}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_hint_values_parse() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert!(parse_duration("soon").is_err());
        let values = hint_values(&["a=1,b=2".into(), "c=x=y".into()]).unwrap();
        assert_eq!(values["b"], "2");
        assert_eq!(values["c"], "x=y");
        assert!(hint_values(&["nope".into()]).is_err());
    }
}
