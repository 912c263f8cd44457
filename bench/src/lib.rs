//! Helpers shared by the Kiseki benchmark binaries (`chunk-path`, `log-append`): units, sizes,
//! percentiles, test data, and the `RESULT` lines that `bench/run.sh` turns into its summary.
//!
//! Every benchmark compares Kiseki against a baseline measured in the same run on the same
//! machine, so the ratios stay meaningful when the machine changes. This crate measures; it never
//! changes what it measures (no tuning knobs of the crates under test are set here).

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};

/// Bytes in a GiB.
pub const GIB: f64 = (1u64 << 30) as f64;
/// Bytes in a MiB.
pub const MIB: f64 = (1u64 << 20) as f64;

/// Throughput in GiB/s of `bytes` processed in `elapsed`.
pub fn gib_per_second(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / GIB / elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
}

/// `PASS` when `ratio` reaches `goal`, `BELOW` otherwise.
pub fn verdict(ratio: f64, goal: f64) -> &'static str {
    if ratio >= goal {
        "PASS"
    } else {
        "BELOW"
    }
}

/// How a figure printed on a `RESULT` line relates to the goals.
#[derive(Clone, Copy, Debug)]
pub enum Goal {
    /// A plain figure, no goal.
    None,
    /// A ratio that has a goal (at least this much).
    AtLeast(f64),
    /// A ratio printed for information only (for example disk-bound).
    Informational,
}

/// Prints one machine-readable line, `RESULT|bench|name|value|unit|goal|verdict`, that
/// `bench/run.sh` collects into its summary table.
pub fn print_result(bench: &str, name: &str, value: f64, unit: &str, goal: Goal) {
    let (goal_text, verdict_text) = match goal {
        Goal::None => (String::from("-"), "-"),
        Goal::AtLeast(goal) => (format!(">= {goal:.2}"), verdict(value, goal)),
        Goal::Informational => (String::from("info"), "-"),
    };
    println!("RESULT|{bench}|{name}|{value:.3}|{unit}|{goal_text}|{verdict_text}");
}

/// Parses a byte count with an optional binary suffix: `4096`, `4KiB`, `512MiB`, `2GiB`
/// (also `K`, `M`, `G`, case-insensitive).
pub fn parse_bytes(text: &str) -> anyhow::Result<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, suffix) = text.split_at(split);
    let number: u64 = digits
        .parse()
        .with_context(|| format!("not a byte count: {text:?}"))?;
    let shift = match suffix.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" => 10,
        "m" | "mib" => 20,
        "g" | "gib" => 30,
        other => bail!("unknown size suffix {other:?} (use KiB, MiB or GiB)"),
    };
    number
        .checked_mul(1u64 << shift)
        .with_context(|| format!("byte count too large: {text:?}"))
}

/// The value at quantile `q` (0..=1) of `sorted`, nearest rank; zero when empty.
pub fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Fills `buffer` with deterministic pseudo-random bytes (xorshift64*), so data is neither
/// compressible nor all zeroes, and runs are repeatable.
pub fn fill_pseudo_random(buffer: &mut [u8], seed: u64) {
    let mut state = seed | 1;
    for word in buffer.chunks_mut(8) {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let bytes = state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
        word.copy_from_slice(&bytes[..word.len()]);
    }
}

/// CPU time (user + system) this process has used so far, from `/proc/self/stat` (Linux reports
/// it in clock ticks of 1/100 s on every architecture Kiseki runs on). `None` when unavailable.
pub fn process_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start at the state, field 3.
    let after_name = &stat[stat.rfind(')')? + 2..];
    let mut fields = after_name.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((user + system) * 10))
}

/// A fresh temporary directory under `parent` (removed on drop), with a message naming
/// `parent` when it cannot be made.
pub fn temp_dir_in(parent: &Path, prefix: &str) -> anyhow::Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(parent)
        .with_context(|| {
            format!(
                "cannot create a temporary directory in {}",
                parent.display()
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts_parse_with_binary_suffixes() -> anyhow::Result<()> {
        assert_eq!(parse_bytes("4096")?, 4096);
        assert_eq!(parse_bytes("4MiB")?, 4 << 20);
        assert_eq!(parse_bytes("2g")?, 2 << 30);
        assert!(parse_bytes("3 parsecs").is_err());
        Ok(())
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let sorted: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&sorted, 0.5), Duration::from_millis(50));
        assert_eq!(percentile(&sorted, 0.99), Duration::from_millis(99));
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
    }
}
