//! `kiseki-prolog`: Slurm `Prolog=` program. Stages the datasets a job asked for with
//! `--kiseki-stage` (passed by the SPANK plugin as `SPANK_KISEKI_*`) through
//! `kiseki stage --job $SLURM_JOB_ID --wait --deadline <stage_deadline>`. A staging failure
//! cancels the job with the reason in its Comment and exits 0, so the node stays in service; it
//! exits non-zero (Slurm then drains the node) only when the node itself is broken: the
//! `kiseki` CLI is missing, the config is invalid, or the job cannot be cancelled.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use kiseki_slurm::config::Config;
use kiseki_slurm::request::{JobRequest, JOB_CONTROL_PREFIX};
use kiseki_slurm::stage::{self, StageError};

/// Slurm prolog: stage a job's Kiseki datasets on this node before the job starts.
#[derive(Parser)]
#[command(
    version,
    after_help = "Reads SLURM_JOB_ID and SPANK_KISEKI_STAGE/CACHE from the environment Slurm gives the prolog. Point slurm.conf's Prolog= at this program (or a wrapper script that passes --config)."
)]
struct Args {
    /// Prolog/epilog config (YAML); a missing default file means the defaults.
    #[arg(long)]
    config: Option<PathBuf>,

    /// Internal: append MESSAGE to PATH (run as the job's user to tell them why the job was
    /// cancelled).
    #[arg(long, hide = true, num_args = 2, value_names = ["PATH", "MESSAGE"])]
    append_note: Option<Vec<String>>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some([path, message]) = args.append_note.as_deref() {
        return match stage::append_note(path.as_ref(), message) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("kiseki-prolog: appending to {path}: {error}");
                ExitCode::FAILURE
            }
        };
    }
    kiseki_slurm::hook::main("kiseki-prolog", args.config.as_deref(), run)
}

fn run(config: &Config) -> anyhow::Result<()> {
    let job_id = std::env::var("SLURM_JOB_ID").context("SLURM_JOB_ID is not set")?;
    anyhow::ensure!(
        !job_id.is_empty() && job_id.chars().all(|c| c.is_ascii_digit()),
        "SLURM_JOB_ID {job_id:?} is not a job id"
    );
    let request = match JobRequest::from_env(JOB_CONTROL_PREFIX, |name| std::env::var(name).ok()) {
        Ok(request) => request,
        // The plugin validated these at submit time; a bad value here was not set by sbatch.
        Err(error) => return cancel(config, &job_id, &error.to_string()),
    };
    if request.stage.is_empty() {
        return Ok(());
    }
    tracing::info!(job_id, datasets = ?request.stage, mode = %request.stage_mode(), "staging");
    let started = std::time::Instant::now();
    match stage::stage(config, &job_id, &request) {
        Ok(()) => {
            tracing::info!(job_id, elapsed_ms = started.elapsed().as_millis(), "staged");
            Ok(())
        }
        Err(error @ StageError::NotInstalled { .. }) => {
            Err(error).context("the kiseki CLI is not usable on this node")
        }
        Err(StageError::Failed(reason)) => cancel(config, &job_id, &reason),
    }
}

fn cancel(config: &Config, job_id: &str, reason: &str) -> anyhow::Result<()> {
    tracing::warn!(job_id, reason, "cancelling the job");
    // The job's output file is where users look first; scontrol's Comment has it too.
    let owner = ["SLURM_JOB_UID", "SLURM_JOB_GID"].map(|name| {
        std::env::var(name)
            .ok()
            .and_then(|id| id.parse::<u32>().ok())
    });
    match (owner, std::env::current_exe()) {
        ([Some(uid), Some(gid)], Ok(exe)) => {
            let note = stage::comment(reason);
            if let Err(error) = stage::note_for_user(config, job_id, (uid, gid), &exe, &note) {
                tracing::info!(job_id, "no note in the job's output: {error}");
            }
        }
        _ => tracing::info!(
            job_id,
            "no job owner or program path: no note in the job's output"
        ),
    }
    stage::cancel_job(config, job_id, reason)
        .map_err(anyhow::Error::msg)
        .context("staging failed and the job could not be cancelled")
}
