//! `kiseki stage`: sends the request, shows progress (a bar on a terminal, plain lines
//! otherwise) and turns the final reply into an exit code.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};
use kiseki_client::agent::protocol::{DatasetOutcome, ErrorCode, Progress, Reply, Request};
use kiseki_client::human_bytes;

use crate::connection::Connection;
use crate::Outcome;

/// Renders progress: an indicatif bar on a terminal, a line per event otherwise.
enum Display {
    Bar(ProgressBar),
    Lines,
}

impl Display {
    fn new() -> Display {
        if !std::io::stdout().is_terminal() {
            return Display::Lines;
        }
        let bar = ProgressBar::new(0);
        let style = ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        Display::Bar(bar)
    }

    fn show(&self, progress: &Progress) {
        match self {
            Display::Bar(bar) => {
                bar.set_length(progress.bytes_total);
                bar.set_position(progress.bytes_done);
                bar.set_message(format!(
                    "{} files {}/{}",
                    progress.dataset, progress.files_done, progress.files_total
                ));
            }
            Display::Lines => println!(
                "progress {}: files {}/{} bytes {}/{} ({} of {}) rate {}/s eta {}",
                progress.dataset,
                progress.files_done,
                progress.files_total,
                progress.bytes_done,
                progress.bytes_total,
                human_bytes(progress.bytes_done),
                human_bytes(progress.bytes_total),
                human_bytes(progress.rate_bytes_per_second),
                progress
                    .eta_seconds
                    .map_or_else(|| "unknown".to_owned(), |s| format!("{s}s")),
            ),
        }
    }

    fn println(&self, line: &str) {
        match self {
            Display::Bar(bar) => bar.println(line),
            Display::Lines => println!("{line}"),
        }
    }

    fn finish(&self) {
        if let Display::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

fn describe(outcome: &DatasetOutcome) -> String {
    let progress = &outcome.progress;
    if outcome.complete {
        format!(
            "staged {}: {} files, {}",
            outcome.dataset,
            progress.files_total,
            human_bytes(progress.bytes_total)
        )
    } else {
        let mut line = format!(
            "not staged {}: {}/{} files, {} of {} cached; {} files missing",
            outcome.dataset,
            progress.files_done,
            progress.files_total,
            human_bytes(progress.bytes_done),
            human_bytes(progress.bytes_total),
            outcome.missing_files_count
        );
        if !outcome.missing_files.is_empty() {
            line.push_str(&format!(": {}", outcome.missing_files.join(", ")));
            if outcome.missing_files_count > outcome.missing_files.len() as u64 {
                line.push_str(", ...");
            }
        }
        if let Some(error) = &outcome.error {
            line.push_str(&format!(" ({error})"));
        }
        line
    }
}

/// Runs a stage request; `expected` datasets report `started` before a no-wait return.
pub fn run(
    mut connection: Connection,
    request: &Request,
    expected: usize,
    wait: bool,
) -> anyhow::Result<Outcome> {
    connection.send(request)?;
    let display = Display::new();
    let mut started = 0;
    loop {
        let Some(reply) = connection.next()? else {
            display.finish();
            anyhow::bail!("the agent closed the connection before staging ended");
        };
        match reply {
            Reply::Started {
                dataset,
                job,
                files,
                bytes,
                cached_bytes,
            } => {
                started += 1;
                display.println(&format!(
                    "staging {dataset} for job {job}: {files} files, {} ({} cached already)",
                    human_bytes(bytes),
                    human_bytes(cached_bytes)
                ));
                if !wait && started >= expected {
                    display.finish();
                    println!("staging continues in the agent (see `kiseki status`)");
                    return Ok(Outcome::Done);
                }
            }
            Reply::Progress(progress) => display.show(&progress),
            Reply::Staged {
                datasets,
                deadline_passed,
                verify,
            } => {
                display.finish();
                for outcome in &datasets {
                    println!("{}", describe(outcome));
                }
                if let Some(verify) = verify {
                    println!(
                        "verified {} chunks: {} bad, {} dropped",
                        verify.checked, verify.bad, verify.dropped
                    );
                }
                if deadline_passed {
                    eprintln!("kiseki: deadline passed before staging completed");
                    return Ok(Outcome::DeadlinePassed);
                }
                if let Some(failed) = datasets.iter().find(|d| !d.complete) {
                    anyhow::bail!("staging {} did not complete", failed.dataset);
                }
                if verify.is_some_and(|v| v.bad > 0) {
                    anyhow::bail!("verification found bad chunks (dropped; stage again)");
                }
                return Ok(Outcome::Done);
            }
            Reply::Error { code, message } => {
                display.finish();
                if code == ErrorCode::DoesNotFit {
                    anyhow::bail!("{message} (nothing was pinned)");
                }
                anyhow::bail!("{message}");
            }
            other => {
                display.finish();
                anyhow::bail!("unexpected reply from the agent: {other:?}");
            }
        }
    }
}
