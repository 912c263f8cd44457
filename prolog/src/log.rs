//! Logging of the prolog and epilog. Slurm discards their stdout and stderr, so the config can
//! name a file to append to (`log_file`); otherwise logs go to stderr (seen when run by hand).

use std::fs::OpenOptions;
use std::path::Path;
use std::sync::Mutex;

/// Starts logging (filter from `KISEKI_LOG`, default `info`) to `log_file` or stderr. A log
/// file that cannot be opened falls back to stderr: logging never stops staging.
pub fn init(log_file: Option<&Path>) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KISEKI_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false);
    let file = log_file.and_then(|path| {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|error| eprintln!("kiseki: cannot open log file {}: {error}", path.display()))
            .ok()
    });
    match file {
        Some(file) => builder.with_writer(Mutex::new(file)).init(),
        None => builder.with_writer(std::io::stderr).init(),
    }
}
