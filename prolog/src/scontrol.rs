//! Reading `scontrol show job -o <id>`: one line of `Key=Value` fields, where some values
//! (Comment, Command, paths) may contain spaces; a value runs until the next ` Key=`.

use std::path::PathBuf;
use std::process::Command;

use crate::config::Config;
use crate::run::run_bounded;

/// The fields of one `scontrol show job -o` line, in order.
pub fn parse_fields(text: &str) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = Vec::new();
    for token in text.trim().split(' ') {
        let key = token.split_once('=').map(|(key, _)| key).filter(|key| {
            !key.is_empty()
                && key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == ':' || c == '/')
        });
        match (key, fields.last_mut()) {
            (Some(key), _) => {
                let value = &token[key.len() + 1..];
                fields.push((key.to_owned(), value.to_owned()));
            }
            (None, Some((_, value))) => {
                value.push(' ');
                value.push_str(token);
            }
            (None, None) => {}
        }
    }
    fields
}

/// The job's fields, if scontrol knows the job.
pub fn job_fields(config: &Config, job_id: &str) -> Option<Vec<(String, String)>> {
    let outcome = run_bounded(
        Command::new(&config.scontrol).args(["show", "job", "-o", job_id]),
        config.command_timeout,
    );
    match outcome {
        crate::run::Outcome::Exited { status, stdout, .. } if status.success() => {
            Some(parse_fields(&stdout))
        }
        _ => None,
    }
}

/// Where the batch job's stderr goes (its `StdErr`, which defaults to its `StdOut`); `None` for
/// interactive jobs and for paths Slurm has not expanded.
pub fn job_stderr_path(fields: &[(String, String)]) -> Option<PathBuf> {
    let value = |name: &str| {
        fields
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    };
    let path = value("StdErr").or_else(|| value("StdOut"))?;
    (path.starts_with('/') && !path.contains('%')).then(|| PathBuf::from(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_with_spaces_run_to_the_next_key() {
        let fields = parse_fields(
            "JobId=7 JobName=wrap JobState=CANCELLED Reason=Prolog Comment=kiseki: staging failed: a b StdErr=/home/u/job 7.out StdIn=/dev/null\n",
        );
        let get = |name: &str| {
            fields
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("Comment"), Some("kiseki: staging failed: a b"));
        assert_eq!(get("StdErr"), Some("/home/u/job 7.out"));
        assert_eq!(get("Reason"), Some("Prolog"));
        assert_eq!(
            job_stderr_path(&fields),
            Some(PathBuf::from("/home/u/job 7.out"))
        );
        let unexpanded = parse_fields("JobId=7 StdOut=/home/u/slurm-%j.out");
        assert_eq!(job_stderr_path(&unexpanded), None);
    }
}
