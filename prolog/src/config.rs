//! The prolog/epilog configuration (`/etc/kiseki/slurm.yaml` by default; see
//! `site-configs/slurm/kiseki-slurm.yaml`). Unknown keys are refused by name so a typo is not
//! silently ignored on a compute node.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::duration;

/// Where the prolog and epilog look for their config when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/kiseki/slurm.yaml";

/// A config file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file exists but cannot be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid YAML for this schema.
    #[error("{path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_yaml::Error,
    },
    /// A duration does not parse.
    #[error("{path}: {key}: {source}")]
    Duration {
        /// The file.
        path: PathBuf,
        /// The key.
        key: &'static str,
        /// Why.
        source: duration::DurationError,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    kiseki: Option<PathBuf>,
    agent_socket: Option<PathBuf>,
    stage_deadline: Option<String>,
    command_timeout: Option<String>,
    release_timeout: Option<String>,
    scontrol: Option<PathBuf>,
    scancel: Option<PathBuf>,
    log_file: Option<PathBuf>,
}

/// Settings of the prolog and epilog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The `kiseki` CLI.
    pub kiseki: PathBuf,
    /// The cache agent's socket (`None`: the CLI's default, `/run/kiseki/agent.sock`).
    pub agent_socket: Option<PathBuf>,
    /// How long the prolog lets staging run before it fails the job.
    pub stage_deadline: Duration,
    /// Limit for scontrol and scancel calls.
    pub command_timeout: Duration,
    /// Limit for one `kiseki release` in the epilog (the node stays COMPLETING meanwhile).
    pub release_timeout: Duration,
    /// Slurm's `scontrol`.
    pub scontrol: PathBuf,
    /// Slurm's `scancel`.
    pub scancel: PathBuf,
    /// File the prolog and epilog append their logs to (Slurm discards their stderr).
    pub log_file: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            kiseki: PathBuf::from("/usr/bin/kiseki"),
            agent_socket: None,
            stage_deadline: Duration::from_secs(600),
            command_timeout: Duration::from_secs(30),
            release_timeout: Duration::from_secs(10),
            scontrol: PathBuf::from("/usr/bin/scontrol"),
            scancel: PathBuf::from("/usr/bin/scancel"),
            log_file: None,
        }
    }
}

impl Config {
    /// Reads `path`; a missing file at the default path means the defaults.
    pub fn load(path: &Path, required: bool) -> Result<Config, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound && !required => {
                return Ok(Config::default())
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })
            }
        };
        Config::parse(&text, path)
    }

    /// Parses the YAML text of the file at `path` (named in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = serde_yaml::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })?;
        let defaults = Config::default();
        let parse_duration = |key: &'static str, value: Option<String>, default: Duration| {
            value.map_or(Ok(default), |value| {
                duration::parse(&value).map_err(|source| ConfigError::Duration {
                    path: path.to_owned(),
                    key,
                    source,
                })
            })
        };
        Ok(Config {
            kiseki: raw.kiseki.unwrap_or(defaults.kiseki),
            agent_socket: raw.agent_socket,
            stage_deadline: parse_duration(
                "stage_deadline",
                raw.stage_deadline,
                defaults.stage_deadline,
            )?,
            command_timeout: parse_duration(
                "command_timeout",
                raw.command_timeout,
                defaults.command_timeout,
            )?,
            release_timeout: parse_duration(
                "release_timeout",
                raw.release_timeout,
                defaults.release_timeout,
            )?,
            scontrol: raw.scontrol.unwrap_or(defaults.scontrol),
            scancel: raw.scancel.unwrap_or(defaults.scancel),
            log_file: raw.log_file,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_site_config_parses() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../site-configs/slurm/kiseki-slurm.yaml"
        ));
        let config = Config::load(path, true);
        assert!(config.is_ok(), "{config:?}");
    }

    #[test]
    fn unknown_keys_and_bad_durations_are_refused() {
        let path = Path::new("test.yaml");
        let error = Config::parse("stage_deadlin: 10m\n", path).err();
        assert!(error.is_some_and(|e| e.to_string().contains("stage_deadlin")));
        assert!(Config::parse("stage_deadline: ten\n", path).is_err());
        let config = Config::parse("stage_deadline: 90s\n", path).ok();
        assert_eq!(
            config.map(|c| c.stage_deadline),
            Some(Duration::from_secs(90))
        );
    }
}
