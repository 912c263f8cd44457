//! Human durations as the `kiseki` CLI and the config files spell them: `90s`, `10m`, `1h`,
//! `500ms`, or bare seconds.

use std::time::Duration;

/// A duration string that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("invalid duration {0:?}: expected a number with ms, s, m or h (e.g. 90s, 10m)")]
pub struct DurationError(String);

/// Longest duration accepted anywhere in the Slurm integration (a day): a typo such as `600h`
/// should be an error, not a job that waits for weeks.
pub const DURATION_MAX: Duration = Duration::from_secs(24 * 3600);

/// Parses `90s`, `10m`, `1h`, `500ms` or `42` (seconds).
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let error = || DurationError(text.to_owned());
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let value: u64 = number.parse().map_err(|_| error())?;
    let millis = match unit {
        "ms" => Some(value),
        "" | "s" => value.checked_mul(1000),
        "m" => value.checked_mul(60_000),
        "h" => value.checked_mul(3_600_000),
        _ => None,
    }
    .ok_or_else(error)?;
    let duration = Duration::from_millis(millis);
    if duration.is_zero() || duration > DURATION_MAX {
        return Err(error());
    }
    Ok(duration)
}

/// The shortest spelling `parse` reads back to the same value (whole seconds or milliseconds).
pub fn format(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis.is_multiple_of(1000) {
        format!("{}s", millis / 1000)
    } else {
        format!("{millis}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_cli_spellings() {
        assert_eq!(parse("90s").ok(), Some(Duration::from_secs(90)));
        assert_eq!(parse("10m").ok(), Some(Duration::from_secs(600)));
        assert_eq!(parse("1h").ok(), Some(Duration::from_secs(3600)));
        assert_eq!(parse("250ms").ok(), Some(Duration::from_millis(250)));
        assert_eq!(parse("42").ok(), Some(Duration::from_secs(42)));
        for bad in [
            "",
            "s",
            "10x",
            "-1s",
            "0s",
            "25h",
            "1.5m",
            "99999999999999999999h",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should not parse");
        }
        assert_eq!(format(Duration::from_secs(600)), "600s");
        assert_eq!(format(Duration::from_millis(1500)), "1500ms");
    }
}
