//! Kiseki's Slurm integration on a real one-node Slurm 22.05 (munged, slurmctld, slurmd started
//! here, with the SPANK plugin in plugstack.conf and kiseki-prolog/kiseki-epilog as Prolog and
//! Epilog) and a real single-node Kiseki (server, FUSE mount, cache agent):
//! - `sbatch`/`salloc`/`srun --help` list the `--kiseki-*` options, and a bad value fails at submit;
//! - `sbatch --kiseki-stage=<dataset>` stages before the script runs: while the job runs the
//!   dataset is pinned by its job id (fully cached), the script reads the right bytes, the job
//!   sees `KISEKI_*`, its hints reach the agent, and after the job the pin is gone;
//! - a job asking for a missing dataset never runs its script, shows the reason (scontrol's
//!   Comment and the job's output file), and the node stays idle.
//!
//! Needs root and the apt packages slurm-wlm, munge, fuse3 (see .ci/apt-packages); every wait is
//! bounded and every daemon is stopped by pid.

// A test reports broken setup by panicking with the reason.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::{built, output, poll, stdout_of, Kiseki, Slurm, SlurmSetup};

const COMMAND_LIMIT: Duration = Duration::from_secs(30);
const JOB_LIMIT: Duration = Duration::from_secs(120);

/// Deterministic file contents (a small xorshift stream), so checksums mean something.
fn pattern(seed: u64, length: usize) -> Vec<u8> {
    let mut state = seed | 1;
    (0..length)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// `sha256sum` lines (`<hex>  <name>`) of files in `dir`, sorted by name.
fn checksums(dir: &Path, names: &[String]) -> String {
    stdout_of(
        Command::new("sha256sum").args(names).current_dir(dir),
        COMMAND_LIMIT,
    )
}

fn submit(slurm: &Slurm, args: &[&str]) -> String {
    let result = output(
        slurm.command("sbatch").arg("--parsable").args(args),
        COMMAND_LIMIT,
    );
    if !result.status.success() {
        slurm.fail(&format!(
            "sbatch {args:?} failed: {}",
            String::from_utf8_lossy(&result.stderr)
        ));
    }
    let text = String::from_utf8_lossy(&result.stdout);
    text.trim().split(';').next().unwrap_or_default().to_owned()
}

#[test]
fn slurm_jobs_stage_through_kiseki() {
    assert_eq!(
        stdout_of(Command::new("id").arg("-u"), COMMAND_LIMIT).trim(),
        "0",
        "this test runs slurmd and mounts FUSE: run it as root (CI does)"
    );
    let dir = tempfile::Builder::new()
        .prefix("kiseki-slurm-")
        .tempdir_in("/var/tmp")
        .expect("temp dir");
    // munged runs as the munge user and must reach its socket and key below this directory.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod temp dir");
    let mut kiseki = Kiseki::start(&dir.path().join("node"));

    // The dataset: a few files (one spans several 4 MiB chunks), written through the mount.
    let source = dir.path().join("source");
    std::fs::create_dir_all(&source).expect("source dir");
    let dataset_dir = kiseki.mount.join("ml/train");
    std::fs::create_dir_all(&dataset_dir).expect("dataset dir in the mount");
    let sizes = [1 << 20, 300_000, 9 << 20, 17];
    let names: Vec<String> = (0..sizes.len()).map(|i| format!("part-{i}.bin")).collect();
    for (index, (name, size)) in names.iter().zip(sizes).enumerate() {
        let bytes = pattern(index as u64 + 7, size);
        std::fs::write(source.join(name), &bytes).expect("source file");
        std::fs::write(dataset_dir.join(name), &bytes).expect("file in the mount");
    }
    let expected = checksums(&source, &names);
    let dataset_bytes: usize = sizes.iter().sum();

    let prolog_config = dir.path().join("kiseki-slurm.yaml");
    std::fs::write(
        &prolog_config,
        format!(
            "kiseki: {}\nagent_socket: {}\nstage_deadline: 60s\ncommand_timeout: 20s\nrelease_timeout: 5s\nlog_file: {}\n",
            built("kiseki").display(),
            kiseki.socket.display(),
            dir.path().join("slurm/log/kiseki-slurm.log").display()
        ),
    )
    .expect("prolog config");
    let plugin = built("libkiseki_spank.so");
    let plugin_args = format!(
        "kiseki={} socket={} hint_timeout=5s",
        built("kiseki").display(),
        kiseki.socket.display()
    );
    let slurm = Slurm::start(
        &dir.path().join("slurm"),
        &SlurmSetup {
            plugin: &plugin,
            plugin_args: &plugin_args,
            prolog: &built("kiseki-prolog"),
            epilog: &built("kiseki-epilog"),
            prolog_config: &prolog_config,
        },
    );

    // The options are listed, and a bad value fails at submit with a message that says why.
    for program in ["sbatch", "salloc", "srun"] {
        let help = stdout_of(slurm.command(program).arg("--help"), COMMAND_LIMIT);
        for option in ["--kiseki-stage=", "--kiseki-cache=", "--kiseki-hint="] {
            assert!(
                help.contains(option),
                "{program} --help lacks {option}:\n{help}"
            );
        }
    }
    let refused = output(
        slurm
            .command("sbatch")
            .args(["--kiseki-cache=fastest", "--wrap", "true"]),
        COMMAND_LIMIT,
    );
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success(),
        "a bad --kiseki-cache was accepted"
    );
    assert!(
        message.contains("expected pinned, organic or bypass"),
        "unclear error: {message}"
    );

    plain_job(&slurm, &dir.path().join("jobs"));
    staged_job(
        &slurm,
        &kiseki,
        &dir.path().join("jobs"),
        &names,
        &expected,
        dataset_bytes,
    );
    missing_dataset_job(&slurm, &kiseki, &dir.path().join("jobs"));
    srun_job(&slurm, &kiseki, &names, &expected);
    agent_unavailable_jobs(&slurm, &mut kiseki, &dir.path().join("jobs"));
}

/// A job without Kiseki options runs as before (the baseline for start latency).
fn plain_job(slurm: &Slurm, jobs: &Path) {
    std::fs::create_dir_all(jobs).expect("jobs dir");
    let output_file = jobs.join("plain.out");
    let submitted = Instant::now();
    let job = submit(
        slurm,
        &[
            "-o",
            &output_file.to_string_lossy(),
            "--wrap",
            "env | grep -c '^KISEKI_' ; true",
        ],
    );
    let started = poll(JOB_LIMIT, || {
        std::fs::read_to_string(&output_file)
            .ok()
            .filter(|text| !text.is_empty())
    });
    let Some(text) = started else {
        slurm.fail(&format!("job {job} did not start: {:?}", slurm.job(&job)));
    };
    let start_latency = submitted.elapsed();
    assert_eq!(
        text.trim(),
        "0",
        "a job without Kiseki options got KISEKI_* variables"
    );
    let state = slurm.wait_job(&job, &["COMPLETED", "FAILED", "CANCELLED"], JOB_LIMIT);
    assert_eq!(state, "COMPLETED");
    eprintln!(
        "plain job {job}: submit to script output {:.2} s",
        start_latency.as_secs_f64()
    );
}

fn staged_job(
    slurm: &Slurm,
    kiseki: &Kiseki,
    jobs: &Path,
    names: &[String],
    expected: &str,
    dataset_bytes: usize,
) {
    std::fs::create_dir_all(jobs).expect("jobs dir");
    let output_file = jobs.join("staged.out");
    let script = format!(
        "cd {}/ml/train && sha256sum {} && echo ==env && env | grep '^KISEKI_' | sort && echo ==end \
         && timeout 60 srun --immediate=30 true && echo srun-in-job-ok && sleep 8",
        kiseki.mount.display(),
        names.join(" ")
    );
    let submitted = Instant::now();
    let job = submit(
        slurm,
        &[
            "--kiseki-stage=/ml/train",
            "--kiseki-hint=access=sequential,priority=high",
            "-o",
            &output_file.to_string_lossy(),
            "--wrap",
            &script,
        ],
    );
    // The script starts only after staging: once its output appears, the data is all cached.
    let started = poll(JOB_LIMIT, || {
        let text = std::fs::read_to_string(&output_file).ok()?;
        text.contains("==end").then_some(text)
    });
    let Some(text) = started else {
        slurm.fail(&format!("job {job} did not start: {:?}", slurm.job(&job)));
    };
    let start_latency = submitted.elapsed();
    let status = kiseki.status();
    let pins = Kiseki::pins_of(&status, &job);
    assert_eq!(
        pins.len(),
        1,
        "job {job} should pin one dataset: {status:#}"
    );
    let (dataset, bytes, chunks, cached) = &pins[0];
    assert_eq!(dataset, "/ml/train");
    assert_eq!(*bytes as usize, dataset_bytes, "{status:#}");
    assert!(
        *chunks >= 4 && cached == chunks,
        "not fully staged: {status:#}"
    );

    let state = slurm.wait_job(&job, &["COMPLETED", "FAILED", "CANCELLED"], JOB_LIMIT);
    let text_done = std::fs::read_to_string(&output_file).unwrap_or(text);
    assert_eq!(state, "COMPLETED", "job output:\n{text_done}");
    // Steps inside the job (srun in remote and local contexts) work with the plugin loaded.
    assert!(
        text_done.contains("srun-in-job-ok"),
        "srun inside the job failed:\n{text_done}"
    );
    let sums = text_done.split("==env").next().unwrap_or_default();
    assert_eq!(sums, expected, "the job read other bytes than were written");
    assert!(
        text_done.contains("KISEKI_STAGE=/ml/train\n")
            && text_done.contains("KISEKI_HINT=access=sequential,priority=high\n"),
        "the job's environment lacks KISEKI_*:\n{text_done}"
    );

    // The epilog released the pin; the hints of both phases reached the agent.
    let released = poll(Duration::from_secs(30), || {
        Kiseki::pins_of(&kiseki.status(), &job)
            .is_empty()
            .then_some(())
    });
    assert!(
        released.is_some(),
        "job {job}'s pin outlived the job: {:#}",
        kiseki.status()
    );
    let status = kiseki.status();
    let hints = status["hints"].as_array().cloned().unwrap_or_default();
    let phases: Vec<String> = hints
        .iter()
        .filter(|hint| hint["job"].as_str() == Some(job.as_str()))
        .filter(|hint| hint["values"]["access"].as_str() == Some("sequential"))
        .map(|hint| hint["phase"].to_string().to_lowercase())
        .collect();
    assert!(
        phases.iter().any(|p| p.contains("start")) && phases.iter().any(|p| p.contains("end")),
        "hints of job {job} missing: {hints:?}"
    );
    // The prolog logs how long staging took ("staged job_id=\"N\" elapsed_ms=M").
    let log = std::fs::read_to_string(slurm.dir.join("log/kiseki-slurm.log")).unwrap_or_default();
    let staging_ms = log
        .lines()
        .filter(|line| line.contains(&format!("job_id=\"{job}\"")))
        .find_map(|line| line.split("elapsed_ms=").nth(1))
        .unwrap_or("?")
        .trim()
        .to_owned();
    eprintln!(
        "staged job {job}: {dataset_bytes} bytes in {chunks} chunks; staging (prolog) {staging_ms} ms; submit to script output {:.2} s",
        start_latency.as_secs_f64()
    );
}

fn missing_dataset_job(slurm: &Slurm, kiseki: &Kiseki, jobs: &Path) {
    let marker = jobs.join("missing-ran");
    let output_file = jobs.join("missing.out");
    let submitted = Instant::now();
    let job = submit(
        slurm,
        &[
            "--kiseki-stage=/ml/no-such-dataset",
            "-o",
            &output_file.to_string_lossy(),
            "--wrap",
            &format!("touch {}", marker.display()),
        ],
    );
    let state = slurm.wait_job(&job, &["COMPLETED", "FAILED", "CANCELLED"], JOB_LIMIT);
    let fail_latency = submitted.elapsed();
    assert_eq!(state, "CANCELLED", "{:?}", slurm.job(&job));
    assert!(
        !marker.exists(),
        "the script of job {job} ran despite failed staging"
    );
    let comment = slurm.job_field(&job, "Comment").unwrap_or_default();
    assert!(
        comment.contains("staging failed") && comment.contains("/ml/no-such-dataset"),
        "the reason is not visible in scontrol show job: {:?}",
        slurm.job(&job)
    );
    assert_eq!(slurm.job_field(&job, "Reason").as_deref(), Some("Prolog"));
    // The prolog also put the reason where users look first: the job's output file.
    let note = std::fs::read_to_string(&output_file).unwrap_or_default();
    assert!(
        note.contains("kiseki: staging failed, job cancelled")
            && note.contains("/ml/no-such-dataset does not exist"),
        "the job's output lacks the reason: {note:?}"
    );
    // The node stays in service (a failing prolog would have drained it).
    let idle = poll(Duration::from_secs(30), || {
        (slurm.node_state().as_deref() == Some("idle")).then_some(())
    });
    if idle.is_none() {
        slurm.fail(&format!("node is {:?}, not idle", slurm.node_state()));
    }
    assert!(Kiseki::pins_of(&kiseki.status(), &job).is_empty());
    eprintln!(
        "missing dataset job {job}: cancelled {:.2} s after submit; Comment={comment}",
        fail_latency.as_secs_f64()
    );
}

/// `srun --kiseki-stage` (local context, its own allocation) stages too and reads the bytes.
fn srun_job(slurm: &Slurm, kiseki: &Kiseki, names: &[String], expected: &str) {
    let file = kiseki.mount.join("ml/train").join(&names[0]);
    let started = Instant::now();
    let script = format!(
        "echo job=$SLURM_JOB_ID; echo stage=$KISEKI_STAGE; sha256sum {}",
        file.display()
    );
    let result = output(
        slurm
            .command("timeout")
            .args(["90", "srun", "--immediate=60", "--kiseki-stage=/ml/train"])
            .args(["sh", "-c", &script]),
        Duration::from_secs(100),
    );
    let stdout = String::from_utf8_lossy(&result.stdout).into_owned();
    assert!(
        result.status.success(),
        "srun failed: {stdout}{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let field = |name: &str| {
        stdout
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .unwrap_or_default()
            .to_owned()
    };
    let job = field("job=");
    assert_eq!(field("stage="), "/ml/train", "{stdout}");
    let digest = stdout
        .lines()
        .last()
        .and_then(|line| line.split_whitespace().next());
    let want = expected
        .lines()
        .next()
        .and_then(|line| line.split_whitespace().next());
    assert_eq!(digest, want, "srun read other bytes: {stdout}");
    let log = std::fs::read_to_string(slurm.dir.join("log/kiseki-slurm.log")).unwrap_or_default();
    assert!(
        log.lines()
            .any(|line| line.contains("staged") && line.contains(&format!("job_id=\"{job}\""))),
        "the prolog did not stage for srun job {job}:\n{log}"
    );
    eprintln!(
        "srun --kiseki-stage job {job}: {:.2} s",
        started.elapsed().as_secs_f64()
    );
}

/// Hints never hold a job up, even when the agent hangs; staging with no agent fails the job,
/// not the node.
fn agent_unavailable_jobs(slurm: &Slurm, kiseki: &mut Kiseki, jobs: &Path) {
    let agent = kiseki.agent_pid().expect("agent running").to_string();
    // A hung agent: the socket exists, nothing answers.
    stdout_of(Command::new("kill").args(["-STOP", &agent]), COMMAND_LIMIT);
    let output_file = jobs.join("hung-agent.out");
    let submitted = Instant::now();
    let job = submit(
        slurm,
        &[
            "--kiseki-hint=access=random",
            "-o",
            &output_file.to_string_lossy(),
            "--wrap",
            "echo ran",
        ],
    );
    let ran = poll(JOB_LIMIT, || {
        std::fs::read_to_string(&output_file)
            .ok()
            .filter(|text| !text.is_empty())
    });
    let start_latency = submitted.elapsed();
    let state = slurm.wait_job(&job, &["COMPLETED", "FAILED", "CANCELLED"], JOB_LIMIT);
    let done_latency = submitted.elapsed();
    assert!(ran.is_some(), "job {job} did not run with a hung agent");
    // Only the bounded hint delivery (hint_timeout=5s) may delay the script.
    assert!(
        start_latency < Duration::from_secs(30),
        "a hung agent held job {job} for {start_latency:?}"
    );
    stdout_of(Command::new("kill").args(["-CONT", &agent]), COMMAND_LIMIT);
    assert_eq!(state, "COMPLETED", "a hung agent failed job {job}");
    assert_eq!(
        std::fs::read_to_string(&output_file).unwrap_or_default(),
        "ran\n"
    );

    // No agent at all: staging fails the job with an actionable reason; the node stays idle.
    kiseki.stop_agent();
    let marker = jobs.join("no-agent-ran");
    let job = submit(
        slurm,
        &[
            "--kiseki-stage=/ml/train",
            "-o",
            &jobs.join("no-agent.out").to_string_lossy(),
            "--wrap",
            &format!("touch {}", marker.display()),
        ],
    );
    let state = slurm.wait_job(&job, &["COMPLETED", "FAILED", "CANCELLED"], JOB_LIMIT);
    assert_eq!(state, "CANCELLED", "{:?}", slurm.job(&job));
    assert!(!marker.exists(), "job {job} ran without its data");
    let comment = slurm.job_field(&job, "Comment").unwrap_or_default();
    assert!(
        comment.contains("no cache agent answers"),
        "unclear reason: {comment}"
    );
    let idle = poll(Duration::from_secs(30), || {
        (slurm.node_state().as_deref() == Some("idle")).then_some(())
    });
    if idle.is_none() {
        slurm.fail(&format!(
            "node is {:?} after a job without agent",
            slurm.node_state()
        ));
    }
    eprintln!(
        "hung agent: hint-only job output after {:.2} s, completed (epilog done) after {:.2} s; no agent: job {job} cancelled, node idle",
        start_latency.as_secs_f64(),
        done_latency.as_secs_f64()
    );
}
