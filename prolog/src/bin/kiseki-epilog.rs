//! `kiseki-epilog`: Slurm `Epilog=` program. Releases every Kiseki pin of the job
//! (`kiseki release --job $SLURM_JOB_ID`), whether the job staged, failed or was cancelled.
//! It exits 0 even when the release fails (a failing epilog drains the node; a leftover pin only
//! costs cache space and the next release or the agent's own cleanup frees it), and non-zero only
//! when the node is broken for Kiseki jobs: the job used Kiseki options and the `kiseki` CLI is
//! missing, or the config is invalid.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use kiseki_slurm::config::Config;
use kiseki_slurm::request::{JobRequest, JOB_CONTROL_PREFIX};
use kiseki_slurm::stage::{self, StageError};

/// Slurm epilog: release a job's Kiseki pins on this node.
#[derive(Parser)]
#[command(
    version,
    after_help = "Reads SLURM_JOB_ID and SPANK_KISEKI_* from the environment Slurm gives the epilog."
)]
struct Args {
    /// Prolog/epilog config (YAML); a missing default file means the defaults.
    #[arg(long)]
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    kiseki_slurm::hook::main("kiseki-epilog", args.config.as_deref(), run)
}

fn run(config: &Config) -> anyhow::Result<()> {
    let job_id = std::env::var("SLURM_JOB_ID").unwrap_or_default();
    if job_id.is_empty() || !job_id.chars().all(|c| c.is_ascii_digit()) {
        tracing::warn!("SLURM_JOB_ID {job_id:?} is not a job id: nothing to release");
        return Ok(());
    }
    // Pins can also come from `kiseki stage` inside the job script: release unconditionally.
    let used_kiseki = JobRequest::from_env(JOB_CONTROL_PREFIX, |name| std::env::var(name).ok())
        .map_or(true, |request| !request.is_empty());
    match stage::release(config, &job_id) {
        Ok(()) => {
            tracing::info!(job_id, "released");
            Ok(())
        }
        Err(error @ StageError::NotInstalled { .. }) if used_kiseki => {
            Err(error).context("the job used Kiseki but the kiseki CLI is not usable on this node")
        }
        Err(error) => {
            tracing::warn!(
                job_id,
                "release failed (the node stays in service): {error}"
            );
            Ok(())
        }
    }
}
