//! `log-append`: acknowledged delta rate of one shard log (`kiseki_log::ShardLog` over the real
//! namespace state, `kiseki_namespace::NamespaceView`) with 16 concurrent writers, against the
//! machine's fsync rate measured in the same run on the same filesystem.
//!
//! - Baseline: append 256 bytes to a file and `fdatasync` it, in a loop for ~3 s; fsyncs/s is
//!   what a log without group commit could acknowledge. Measured before, between and after the
//!   Kiseki runs; each run is compared with the mean of the two measurements around it.
//! - Kiseki: 16 tokio tasks (multi-thread runtime) each propose `Delta::Create` of distinct files
//!   in the root directory for ~3 s and wait for each outcome (committed, durable, applied).
//!   Reported: acknowledged deltas/s, the ratio to fsyncs/s (goal ≥ 5×), deltas per group commit
//!   (`ShardLog::metrics()`), p50/p99 propose latency. Then the same with 1 writer, for
//!   reference (its ratio should be about 1×: nothing to group).

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use clap::Parser;
use kiseki_bench::{percentile, print_result, process_cpu_time, temp_dir_in, Goal};
use kiseki_log::{Delta, NewNode, Owner, ShardLog, ShardLogMetrics, ShardLogOptions};
use kiseki_namespace::NamespaceView;
use kiseki_types::{InodeId, ShardId, TenantId, Timestamp};

const BENCH: &str = "log-append";

/// Shard log append rate with concurrent writers against the fsync rate measured in the same run.
#[derive(Parser, Debug)]
#[command(name = "log-append", version)]
struct Args {
    /// Directory on the filesystem to measure; the benchmark works in a temporary directory in it.
    #[arg(long, default_value = "/var/tmp")]
    dir: PathBuf,
    /// Seconds each measurement runs (baseline and each writer count).
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Concurrent writers of the main run.
    #[arg(long, default_value_t = 16)]
    writers: usize,
    /// Bytes written (appended, or overwritten in place) before each fdatasync of the baseline.
    #[arg(long, default_value_t = 256)]
    record_bytes: usize,
    /// Goal for the ratio acknowledged deltas/s ÷ fsyncs/s with `--writers` writers.
    #[arg(long, default_value_t = 5.0)]
    goal: f64,
    /// Skip the 1-writer reference run.
    #[arg(long)]
    no_reference: bool,
}

/// Rate and latencies of a timed loop.
struct Rate {
    operations: u64,
    elapsed: Duration,
    /// Sorted latencies of the operations.
    latencies: Vec<Duration>,
    /// CPU time the whole process used during the loop.
    cpu: Option<Duration>,
}

impl Rate {
    fn per_second(&self) -> f64 {
        self.operations as f64 / self.elapsed.as_secs_f64()
    }

    fn latency_ms(&self, quantile: f64) -> f64 {
        percentile(&self.latencies, quantile).as_secs_f64() * 1e3
    }

    /// Cores kept busy on average (CPU time ÷ wall time); NaN when unknown.
    fn cores_busy(&self) -> f64 {
        self.cpu.map_or(f64::NAN, |cpu| {
            cpu.as_secs_f64() / self.elapsed.as_secs_f64()
        })
    }
}

/// How a baseline write is made durable.
#[derive(Clone, Copy, Debug)]
enum SyncedWrite {
    /// Append to the file, then fdatasync: the file grows, so the filesystem journals its size.
    Append,
    /// Overwrite in place in a preallocated file, then fdatasync: data only, no journal commit.
    Overwrite,
}

/// Bytes preallocated for the overwrite baseline; records cycle through them.
const OVERWRITE_FILE_BYTES: usize = 1 << 20;

/// Writes `record_bytes` and fdatasyncs, over and over, for `duration`.
fn fsync_rate(
    dir: &Path,
    duration: Duration,
    record_bytes: usize,
    mode: SyncedWrite,
) -> anyhow::Result<Rate> {
    let temp = temp_dir_in(dir, "kiseki-bench-fsync-")?;
    let path = temp.path().join("probe");
    let mut file = OpenOptions::new()
        .create_new(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    let slots = (OVERWRITE_FILE_BYTES / record_bytes.max(1)).max(1) as u64;
    if let SyncedWrite::Overwrite = mode {
        file.write_all(&vec![0u8; slots as usize * record_bytes])?;
        file.sync_all()?;
    }
    let record = vec![0xa5u8; record_bytes];
    let mut latencies = Vec::new();
    let cpu_before = process_cpu_time();
    let started = Instant::now();
    while started.elapsed() < duration {
        let begun = Instant::now();
        match mode {
            SyncedWrite::Append => file.write_all(&record)?,
            SyncedWrite::Overwrite => {
                let slot = latencies.len() as u64 % slots;
                file.write_all_at(&record, slot * record_bytes as u64)?;
            }
        }
        file.sync_data()?;
        latencies.push(begun.elapsed());
    }
    let elapsed = started.elapsed();
    let cpu = cpu_since(cpu_before);
    latencies.sort_unstable();
    Ok(Rate {
        operations: latencies.len() as u64,
        elapsed,
        latencies,
        cpu,
    })
}

/// One baseline measurement: both ways of making a small write durable, half the time each.
struct Baseline {
    append: Rate,
    overwrite: Rate,
}

impl Baseline {
    fn measure(args: &Args, duration: Duration) -> anyhow::Result<Self> {
        let half = duration / 2;
        Ok(Baseline {
            append: fsync_rate(&args.dir, half, args.record_bytes, SyncedWrite::Append)?,
            overwrite: fsync_rate(&args.dir, half, args.record_bytes, SyncedWrite::Overwrite)?,
        })
    }

    /// The machine's fsync rate: the faster of the two ways (the stricter baseline), since a log
    /// without group commit could use either.
    fn per_second(&self) -> f64 {
        self.append.per_second().max(self.overwrite.per_second())
    }

    fn faster(&self) -> &Rate {
        if self.append.per_second() >= self.overwrite.per_second() {
            &self.append
        } else {
            &self.overwrite
        }
    }
}

fn cpu_since(before: Option<Duration>) -> Option<Duration> {
    Some(process_cpu_time()?.saturating_sub(before?))
}

fn create_delta(writer: usize, sequence: u64) -> Delta {
    Delta::Create {
        parent: InodeId::ROOT,
        name: format!("w{writer:02}-{sequence:08}"),
        node: NewNode::File,
        mode: 0o644,
        owner: Owner {
            uid: 1000,
            gid: 1000,
        },
        exclusive: true,
        time: Timestamp::now(),
    }
}

/// One writer: proposes creates until `deadline`, returning each propose latency.
async fn writer_loop(
    log: Arc<ShardLog>,
    writer: usize,
    deadline: Instant,
) -> anyhow::Result<Vec<Duration>> {
    let mut latencies = Vec::new();
    let mut sequence = 0u64;
    while Instant::now() < deadline {
        let begun = Instant::now();
        let outcome = log.propose(create_delta(writer, sequence)).await?;
        latencies.push(begun.elapsed());
        let applied =
            outcome.with_context(|| format!("create w{writer:02}-{sequence:08} was refused"))?;
        ensure!(applied.inode.is_some(), "a create returned no inode");
        sequence += 1;
    }
    Ok(latencies)
}

/// A shard-log run: the rate and the log's counters over the timed window.
struct AppendRun {
    rate: Rate,
    before: ShardLogMetrics,
    after: ShardLogMetrics,
}

impl AppendRun {
    fn window_deltas_per_group_commit(&self) -> f64 {
        let commits = self.after.group_commits - self.before.group_commits;
        let deltas = self.after.deltas_flushed - self.before.deltas_flushed;
        deltas as f64 / commits.max(1) as f64
    }

    fn window_group_commits(&self) -> u64 {
        self.after.group_commits - self.before.group_commits
    }
}

async fn append_run(dir: &Path, writers: usize, duration: Duration) -> anyhow::Result<AppendRun> {
    let temp = temp_dir_in(dir, "kiseki-bench-log-")?;
    let state = Arc::new(RwLock::new(NamespaceView::new(0)));
    let shard = ShardId {
        tenant: TenantId(1),
        index: 0,
    };
    let log = ShardLog::open(
        temp.path(),
        shard,
        Arc::clone(&state),
        ShardLogOptions::default(),
    )
    .await?;
    let log = Arc::new(log);
    // Warm up: one create per writer, so the first timed batch is not the first entry.
    for writer in 0..writers {
        let outcome = log.propose(create_delta(writer, u64::MAX >> 8)).await?;
        outcome.context("warm-up create was refused")?;
    }

    let before = log.metrics();
    let cpu_before = process_cpu_time();
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..writers)
        .map(|writer| tokio::spawn(writer_loop(Arc::clone(&log), writer, deadline)))
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.context("writer task panicked")??);
    }
    let elapsed = started.elapsed();
    let cpu = cpu_since(cpu_before);
    let after = log.metrics();
    latencies.sort_unstable();

    // Pair check: every acknowledged create is in the view (root + warm-up + timed creates).
    let nodes = state
        .read()
        .map_err(|_| anyhow::anyhow!("namespace view lock poisoned"))?
        .node_count();
    ensure!(
        nodes == 1 + writers + latencies.len(),
        "view holds {nodes} nodes, expected {}",
        1 + writers + latencies.len()
    );
    let log = Arc::try_unwrap(log)
        .map_err(|_| anyhow::anyhow!("shard log still shared after the run"))?;
    log.shutdown().await;
    Ok(AppendRun {
        rate: Rate {
            operations: latencies.len() as u64,
            elapsed,
            latencies,
            cpu,
        },
        before,
        after,
    })
}

fn print_append(label: &str, run: &AppendRun, fsyncs_per_second: f64) {
    let rate = &run.rate;
    let commits = run.window_group_commits();
    let entries = run.after.entries_flushed - run.before.entries_flushed;
    println!(
        "  {label:<11} {:>8.0} deltas/s = {:.2}× fsync",
        rate.per_second(),
        rate.per_second() / fsyncs_per_second
    );
    println!(
        "  {:<11} group commits {commits} ({:.0}/s): {:.2} deltas and {:.2} entries each; \
         metrics().deltas_per_group_commit() {:.2} (since open)",
        "",
        commits as f64 / rate.elapsed.as_secs_f64(),
        run.window_deltas_per_group_commit(),
        entries as f64 / commits.max(1) as f64,
        run.after.deltas_per_group_commit()
    );
    println!(
        "  {:<11} propose p50 {:.2} ms  p99 {:.2} ms; CPU {:.2} cores busy",
        "",
        rate.latency_ms(0.5),
        rate.latency_ms(0.99),
        rate.cores_busy()
    );
}

fn mean(baselines: &[&Baseline]) -> f64 {
    let sum: f64 = baselines.iter().map(|baseline| baseline.per_second()).sum();
    sum / baselines.len().max(1) as f64
}

/// Prints the fsync baselines, warning when the disk's rate moved during the run (a shared disk),
/// which makes every ratio less certain.
fn print_fsync(baselines: &[Baseline], record_bytes: usize) {
    let list = |rate: fn(&Baseline) -> f64| {
        let rates: Vec<String> = baselines
            .iter()
            .map(|b| format!("{:.0}", rate(b)))
            .collect();
        rates.join(", ")
    };
    let all: Vec<&Baseline> = baselines.iter().collect();
    println!(
        "  fsync       {:>8.0} /s: mean of the measurements around the runs, faster way of {record_bytes} B + fdatasync",
        mean(&all)
    );
    println!(
        "  {:<11} append    [{}] /s",
        "",
        list(|b| b.append.per_second())
    );
    println!(
        "  {:<11} overwrite [{}] /s",
        "",
        list(|b| b.overwrite.per_second())
    );
    let first = baselines[0].faster();
    println!(
        "  {:<11} first, faster way: fdatasync p50 {:.2} ms  p99 {:.2} ms; CPU {:.2} cores busy",
        "",
        first.latency_ms(0.5),
        first.latency_ms(0.99),
        first.cores_busy()
    );
    let (low, high) = baselines.iter().fold((f64::MAX, 0.0f64), |(low, high), b| {
        (low.min(b.per_second()), high.max(b.per_second()))
    });
    if high > low * 1.25 {
        println!(
            "  warning: the fsync rate moved by {:.0}% during the run (is the disk shared?); \
             ratios are less certain",
            (high / low - 1.0) * 100.0
        );
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(args.writers > 0, "--writers must be at least 1");
    ensure!(args.seconds > 0.0, "--seconds must be positive");
    let duration = Duration::from_secs_f64(args.seconds);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!(
        "log append in {} ({} s per measurement, {} worker threads)",
        args.dir.display(),
        args.seconds,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    // Each Kiseki run is bracketed by fsync measurements and compared with their mean, so a
    // disk whose speed drifts (a shared virtual disk) skews the ratio less.
    let fsync = || Baseline::measure(&args, duration);
    let mut baselines = vec![fsync()?];
    let main_run = runtime.block_on(append_run(&args.dir, args.writers, duration))?;
    baselines.push(fsync()?);
    let main_fsyncs_per_second = mean(&[&baselines[0], &baselines[1]]);
    let mut reference = None;
    if !args.no_reference {
        let run = runtime.block_on(append_run(&args.dir, 1, duration))?;
        baselines.push(fsync()?);
        reference = Some((run, mean(&[&baselines[1], &baselines[2]])));
    }

    print_fsync(&baselines, args.record_bytes);
    let label = format!("{} writers", args.writers);
    print_append(&label, &main_run, main_fsyncs_per_second);
    let ratio = main_run.rate.per_second() / main_fsyncs_per_second;
    let append_per_second = |indexes: &[usize]| {
        let sum: f64 = indexes
            .iter()
            .map(|&i| baselines[i].append.per_second())
            .sum();
        sum / indexes.len() as f64
    };
    let overwrite_per_second: f64 = baselines
        .iter()
        .map(|b| b.overwrite.per_second())
        .sum::<f64>()
        / baselines.len() as f64;
    let append_ratio = main_run.rate.per_second() / append_per_second(&[0, 1]);
    println!(
        "  ratio {} writers / fsync = {ratio:.2}× (goal ≥ {:.1}×: {}); against append+fdatasync alone {append_ratio:.2}×",
        args.writers,
        args.goal,
        kiseki_bench::verdict(ratio, args.goal)
    );
    if let Some((run, fsyncs_per_second)) = &reference {
        print_append("1 writer", run, *fsyncs_per_second);
    }

    let all: Vec<&Baseline> = baselines.iter().collect();
    let results = [
        ("fsync rate (faster way)".to_owned(), mean(&all), "/s"),
        (
            "fsync append+fdatasync".to_owned(),
            append_per_second(&[0, 1, 2][..baselines.len()]),
            "/s",
        ),
        (
            "fsync overwrite+fdatasync".to_owned(),
            overwrite_per_second,
            "/s",
        ),
        (format!("{label} deltas"), main_run.rate.per_second(), "/s"),
        (
            format!("{label} deltas per group commit"),
            main_run.window_deltas_per_group_commit(),
            "",
        ),
        (
            format!("{label} propose p50"),
            main_run.rate.latency_ms(0.5),
            "ms",
        ),
        (
            format!("{label} propose p99"),
            main_run.rate.latency_ms(0.99),
            "ms",
        ),
    ];
    for (name, value, unit) in &results {
        print_result(BENCH, name, *value, unit, Goal::None);
    }
    print_result(
        BENCH,
        &format!("{label} / fsync (faster way)"),
        ratio,
        "x",
        Goal::AtLeast(args.goal),
    );
    print_result(
        BENCH,
        &format!("{label} / append fsync"),
        append_ratio,
        "x",
        Goal::Informational,
    );
    if let Some((run, fsyncs_per_second)) = &reference {
        print_result(
            BENCH,
            "1 writer deltas",
            run.rate.per_second(),
            "/s",
            Goal::None,
        );
        print_result(
            BENCH,
            "1 writer propose p50",
            run.rate.latency_ms(0.5),
            "ms",
            Goal::None,
        );
        let reference_ratio = run.rate.per_second() / fsyncs_per_second;
        print_result(
            BENCH,
            "1 writer / fsync",
            reference_ratio,
            "x",
            Goal::Informational,
        );
    }
    Ok(())
}
