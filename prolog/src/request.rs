//! What a job asks of Kiseki: datasets to stage, a cache mode, advisory hints. Parsed from the
//! `--kiseki-*` option values (in the SPANK plugin, at submit time, so a typo fails `sbatch`
//! right away) and again from the `SPANK_KISEKI_*` variables in the prolog, which treats them
//! as untrusted input. Values are bounded and may never look like a command-line option.

use std::fmt;

/// Environment variable (job environment; `SPANK_`-prefixed for prolog/epilog) with the
/// comma-separated datasets.
pub const ENV_STAGE: &str = "KISEKI_STAGE";
/// Environment variable with the cache mode.
pub const ENV_CACHE: &str = "KISEKI_CACHE";
/// Environment variable with the hints (`k=v,...`).
pub const ENV_HINT: &str = "KISEKI_HINT";
/// Prefix Slurm puts before names set with `spank_job_control_setenv`.
pub const JOB_CONTROL_PREFIX: &str = "SPANK_";

/// Most datasets one job may stage.
pub const DATASETS_MAX: usize = 64;
/// Longest dataset name or path, in bytes.
pub const DATASET_BYTES_MAX: usize = 1024;
/// Most hints per job.
pub const HINTS_MAX: usize = 32;
/// Longest hint key, in bytes.
pub const HINT_KEY_BYTES_MAX: usize = 64;
/// Longest hint value, in bytes.
pub const HINT_VALUE_BYTES_MAX: usize = 256;
/// Longest option value the plugin accepts at all (sbatch command lines can be huge).
pub const OPTION_BYTES_MAX: usize = 16 * 1024;

/// An option value Kiseki refuses; the message names the option and says what is expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// `--kiseki-stage` is malformed.
    #[error("--kiseki-stage: {0}")]
    Stage(String),
    /// `--kiseki-cache` is not one of the modes.
    #[error("--kiseki-cache: expected pinned, organic or bypass, got {0:?}")]
    Cache(String),
    /// `--kiseki-hint` is malformed.
    #[error("--kiseki-hint: {0}")]
    Hint(String),
    /// The options contradict each other.
    #[error("{0}")]
    Conflict(String),
}

/// How the node cache treats the job's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheMode {
    /// Staged data is pinned for the job's lifetime (the default when staging).
    Pinned,
    /// Staged data is cached but may be evicted under pressure.
    Organic,
    /// The job reads around the node cache; nothing is staged.
    Bypass,
}

impl CacheMode {
    /// Parses the option value.
    pub fn parse(text: &str) -> Result<CacheMode, RequestError> {
        match text.trim() {
            "pinned" => Ok(CacheMode::Pinned),
            "organic" => Ok(CacheMode::Organic),
            "bypass" => Ok(CacheMode::Bypass),
            other => Err(RequestError::Cache(bounded(other))),
        }
    }

    /// The option value (and the `kiseki stage --mode` value for the staging modes).
    pub fn as_str(self) -> &'static str {
        match self {
            CacheMode::Pinned => "pinned",
            CacheMode::Organic => "organic",
            CacheMode::Bypass => "bypass",
        }
    }
}

impl fmt::Display for CacheMode {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// Parses `--kiseki-stage=a,b,c`: datasets are namespace paths, `s3://bucket/prefix` URLs or
/// names from the compute-node config.
pub fn parse_datasets(text: &str) -> Result<Vec<String>, RequestError> {
    let error = |message: String| Err(RequestError::Stage(message));
    if text.len() > OPTION_BYTES_MAX {
        return error(format!("longer than {OPTION_BYTES_MAX} bytes"));
    }
    let datasets: Vec<String> = text.split(',').map(|part| part.trim().to_owned()).collect();
    if datasets.len() > DATASETS_MAX {
        return error(format!("at most {DATASETS_MAX} datasets per job"));
    }
    for dataset in &datasets {
        if dataset.is_empty() {
            return error("expected <dataset>[,<dataset>...] with no empty names".into());
        }
        if dataset.len() > DATASET_BYTES_MAX {
            return error(format!(
                "a dataset name is longer than {DATASET_BYTES_MAX} bytes"
            ));
        }
        if dataset.starts_with('-') {
            return error(format!("{:?} is not a dataset name", bounded(dataset)));
        }
        if dataset.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return error(format!(
                "{:?} contains spaces or control characters",
                bounded(dataset)
            ));
        }
    }
    Ok(datasets)
}

/// Parses `--kiseki-hint=k=v,...` (e.g. `access=sequential,priority=high,prefetch=0-64M`).
pub fn parse_hints(text: &str) -> Result<Vec<(String, String)>, RequestError> {
    let error = |message: String| Err(RequestError::Hint(message));
    if text.len() > OPTION_BYTES_MAX {
        return error(format!("longer than {OPTION_BYTES_MAX} bytes"));
    }
    let mut hints = Vec::new();
    for pair in text.split(',').map(str::trim) {
        let Some((key, value)) = pair.split_once('=') else {
            return error(format!("expected key=value, got {:?}", bounded(pair)));
        };
        let key_ok = key.len() <= HINT_KEY_BYTES_MAX
            && key.starts_with(|c: char| c.is_ascii_lowercase())
            && key
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-".contains(c));
        if !key_ok {
            return error(format!(
                "hint key {:?} must be lowercase letters, digits, '_', '.' or '-' (at most {HINT_KEY_BYTES_MAX} bytes)",
                bounded(key)
            ));
        }
        let value_ok = !value.is_empty()
            && value.len() <= HINT_VALUE_BYTES_MAX
            && value.chars().all(|c| c.is_ascii_graphic() && c != '=');
        if !value_ok {
            return error(format!(
                "hint {key}: the value must be 1 to {HINT_VALUE_BYTES_MAX} printable characters without '=' or spaces"
            ));
        }
        hints.push((key.to_owned(), value.to_owned()));
        if hints.len() > HINTS_MAX {
            return error(format!("at most {HINTS_MAX} hints per job"));
        }
    }
    Ok(hints)
}

/// Joins hints back into the `k=v,...` form the `kiseki hint` command takes.
pub fn format_hints(hints: &[(String, String)]) -> String {
    hints
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Everything a job asked of Kiseki.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobRequest {
    /// Datasets to stage before the job starts (in the order given).
    pub stage: Vec<String>,
    /// The cache mode, if the user chose one.
    pub cache: Option<CacheMode>,
    /// Advisory hints.
    pub hints: Vec<(String, String)>,
}

impl JobRequest {
    /// Builds a request from raw option values (`None` where the option was not given) and
    /// checks that the options fit together.
    pub fn from_values(
        stage: Option<&str>,
        cache: Option<&str>,
        hint: Option<&str>,
    ) -> Result<JobRequest, RequestError> {
        let request = JobRequest {
            stage: stage.map(parse_datasets).transpose()?.unwrap_or_default(),
            cache: cache.map(CacheMode::parse).transpose()?,
            hints: hint.map(parse_hints).transpose()?.unwrap_or_default(),
        };
        if request.cache == Some(CacheMode::Bypass) && !request.stage.is_empty() {
            return Err(RequestError::Conflict(
                "--kiseki-cache=bypass cannot be combined with --kiseki-stage (staging fills the node cache); use pinned or organic".into(),
            ));
        }
        Ok(request)
    }

    /// Reads the request from environment variables named `<prefix>KISEKI_*` through `lookup`
    /// (`SPANK_` in prolog/epilog, empty in the job).
    pub fn from_env(
        prefix: &str,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<JobRequest, RequestError> {
        let value = |name: &str| {
            lookup(&format!("{prefix}{name}")).filter(|value| !value.trim().is_empty())
        };
        JobRequest::from_values(
            value(ENV_STAGE).as_deref(),
            value(ENV_CACHE).as_deref(),
            value(ENV_HINT).as_deref(),
        )
    }

    /// Whether the job used any Kiseki option.
    pub fn is_empty(&self) -> bool {
        self.stage.is_empty() && self.cache.is_none() && self.hints.is_empty()
    }

    /// The staging mode: the chosen one, pinned by default.
    pub fn stage_mode(&self) -> CacheMode {
        self.cache.unwrap_or(CacheMode::Pinned)
    }

    /// The environment variables (unprefixed names and values) that describe this request.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = Vec::new();
        if !self.stage.is_empty() {
            env.push((ENV_STAGE, self.stage.join(",")));
        }
        if let Some(cache) = self.cache {
            env.push((ENV_CACHE, cache.as_str().to_owned()));
        }
        if !self.hints.is_empty() {
            env.push((ENV_HINT, format_hints(&self.hints)));
        }
        env
    }
}

/// A bounded, printable excerpt of user input for error messages.
fn bounded(text: &str) -> String {
    text.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datasets_are_paths_urls_or_names() {
        assert_eq!(
            parse_datasets("/bucket/train, s3://b/p,imagenet"),
            Ok(vec![
                "/bucket/train".into(),
                "s3://b/p".into(),
                "imagenet".into()
            ])
        );
        for bad in ["", "a,,b", "-rf", "a b", "a\nb", &"x,".repeat(70)] {
            assert!(parse_datasets(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn cache_modes_and_conflicts() {
        assert_eq!(CacheMode::parse("organic"), Ok(CacheMode::Organic));
        let error = CacheMode::parse("pinnned").err().map(|e| e.to_string());
        assert_eq!(
            error.as_deref(),
            Some("--kiseki-cache: expected pinned, organic or bypass, got \"pinnned\"")
        );
        assert!(JobRequest::from_values(Some("/a"), Some("bypass"), None).is_err());
        let request = JobRequest::from_values(Some("/a"), None, None);
        assert_eq!(request.map(|r| r.stage_mode()), Ok(CacheMode::Pinned));
    }

    #[test]
    fn hints_are_key_value_pairs() {
        let hints = parse_hints("access=sequential,prefetch=/d/x:0-64M");
        assert_eq!(
            hints.as_ref().map(|h| format_hints(h)),
            Ok("access=sequential,prefetch=/d/x:0-64M".to_owned())
        );
        for bad in ["access", "=x", "Access=x", "a=", "a=b=c", "a=b c"] {
            assert!(parse_hints(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn env_round_trip() {
        let request =
            JobRequest::from_values(Some("/a,/b"), Some("organic"), Some("priority=high"))
                .unwrap_or_default();
        let env = request.env();
        let back = JobRequest::from_env(JOB_CONTROL_PREFIX, |name| {
            let name = name.strip_prefix(JOB_CONTROL_PREFIX)?;
            env.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone())
        });
        assert_eq!(back, Ok(request));
    }
}
