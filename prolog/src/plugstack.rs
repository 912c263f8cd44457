//! The SPANK plugin's arguments on its plugstack.conf line
//! (`kiseki=PATH socket=PATH hint_timeout=DURATION`), parsed here so the rules are unit-tested
//! (the plugin itself can only be exercised inside Slurm).

use std::path::PathBuf;
use std::time::Duration;

use crate::duration;

/// Default longest wait for `kiseki hint` at a job's start or end.
pub const HINT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(3);

/// Settings of the SPANK plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginSettings {
    /// The `kiseki` CLI used to send hints.
    pub kiseki: PathBuf,
    /// The agent's socket (also exported to jobs as `KISEKI_AGENT_SOCKET`).
    pub socket: Option<PathBuf>,
    /// Longest wait for hint delivery.
    pub hint_timeout: Duration,
}

impl Default for PluginSettings {
    fn default() -> Self {
        PluginSettings {
            kiseki: PathBuf::from("/usr/bin/kiseki"),
            socket: None,
            hint_timeout: HINT_TIMEOUT_DEFAULT,
        }
    }
}

impl PluginSettings {
    /// Parses the arguments; an unknown one is an error naming it.
    pub fn parse(args: &[String]) -> Result<PluginSettings, String> {
        let mut settings = PluginSettings::default();
        for arg in args {
            match arg.split_once('=') {
                Some(("kiseki", path)) if path.starts_with('/') => {
                    settings.kiseki = PathBuf::from(path)
                }
                Some(("socket", path)) if path.starts_with('/') => {
                    settings.socket = Some(PathBuf::from(path))
                }
                Some(("hint_timeout", value)) => {
                    settings.hint_timeout = duration::parse(value)
                        .map_err(|error| format!("kiseki: plugstack.conf: {error}"))?;
                }
                _ => {
                    return Err(format!(
                        "kiseki: plugstack.conf: unknown argument {arg:?} (expected kiseki=/PATH, socket=/PATH, hint_timeout=DURATION)"
                    ))
                }
            }
        }
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_and_defaults() {
        let args = ["kiseki=/opt/k", "socket=/run/k.sock", "hint_timeout=2s"].map(String::from);
        let settings = PluginSettings::parse(&args);
        assert_eq!(
            settings,
            Ok(PluginSettings {
                kiseki: PathBuf::from("/opt/k"),
                socket: Some(PathBuf::from("/run/k.sock")),
                hint_timeout: Duration::from_secs(2),
            })
        );
        assert_eq!(PluginSettings::parse(&[]), Ok(PluginSettings::default()));
        for bad in [
            "socket=relative",
            "hint_timeout=forever",
            "sockt=/x",
            "verbose",
        ] {
            assert!(PluginSettings::parse(&[bad.to_owned()]).is_err(), "{bad}");
        }
    }
}
