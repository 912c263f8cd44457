//! What the prolog and epilog share around their work: load the config (an explicit
//! `--config` must exist; the default path may be absent), start logging, run, and turn the
//! outcome into the exit status Slurm acts on. A non-zero status drains the node, so `run`
//! returns an error only when the node itself cannot serve Kiseki jobs.

use std::path::Path;
use std::process::ExitCode;

use crate::config::{Config, DEFAULT_PATH};

/// Runs hook `program` with the config at `config_path` (or the default one).
pub fn main(
    program: &str,
    config_path: Option<&Path>,
    run: impl FnOnce(&Config) -> anyhow::Result<()>,
) -> ExitCode {
    let config = match config_path {
        Some(path) => Config::load(path, true),
        None => Config::load(DEFAULT_PATH.as_ref(), false),
    };
    let config = match config {
        Ok(config) => config,
        Err(error) => {
            eprintln!("{program}: {error}");
            return ExitCode::FAILURE;
        }
    };
    crate::log::init(config.log_file.as_deref());
    match run(&config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{program}: {error:#}");
            ExitCode::FAILURE
        }
    }
}
