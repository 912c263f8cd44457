//! What the plugin does in each SPANK callback, in safe Rust. Option values are validated with
//! `kiseki_slurm::request` (the same rules the prolog applies) and kept per process.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::Command;
use std::sync::{Mutex, Once, OnceLock};

use kiseki_slurm::plugstack::PluginSettings;
use kiseki_slurm::request::{self, JobRequest, JOB_CONTROL_PREFIX};
use kiseki_slurm::run::run_bounded;

use crate::ffi::{self, Context, OptionSpec, Spank};

/// Environment variable the `kiseki` CLI reads for the agent's socket.
const ENV_SOCKET: &str = "KISEKI_AGENT_SOCKET";

const VAL_STAGE: i32 = 1;
const VAL_CACHE: i32 = 2;
const VAL_HINT: i32 = 3;

static OPTIONS: OnceLock<[OptionSpec; 3]> = OnceLock::new();
/// Raw option values seen in this process (sbatch, srun or slurmstepd), validated on arrival.
static VALUES: Mutex<[Option<String>; 3]> = Mutex::new([None, None, None]);
static PANIC_HOOK: Once = Once::new();

/// Job start or end, for hints.
#[derive(Debug, Clone, Copy)]
pub enum Phase {
    /// The job's prolog.
    Start,
    /// The job's epilog.
    End,
}

/// Runs a callback, turning a panic into an error return. Only user-facing contexts (sbatch,
/// salloc, srun) ever see a failure; in slurmd/slurmstepd a failure would drain the node.
pub fn guard(callback: &str, body: impl FnOnce() -> Result<(), String>) -> i32 {
    PANIC_HOOK.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            ffi::error(&format!("kiseki: internal error: {info}"))
        }));
    });
    let fatal = matches!(ffi::context(), Context::Local | Context::Allocator);
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => 0,
        Ok(Err(message)) => {
            ffi::error(&message);
            if fatal {
                -1
            } else {
                0
            }
        }
        Err(_) => {
            ffi::error(&format!("kiseki: the SPANK plugin failed in {callback}"));
            if fatal {
                -1
            } else {
                0
            }
        }
    }
}

fn options() -> &'static [OptionSpec; 3] {
    OPTIONS.get_or_init(|| {
        let callback = crate::exports::option_callback;
        [
            OptionSpec::new(
                c"kiseki-stage",
                c"dataset[,dataset...]",
                c"Stage Kiseki datasets (namespace paths, s3://bucket/prefix or configured names) on the job's nodes before it starts; the job is cancelled if staging fails",
                VAL_STAGE,
                callback,
            ),
            OptionSpec::new(
                c"kiseki-cache",
                c"pinned|organic|bypass",
                c"Kiseki node cache mode: pinned (default with --kiseki-stage; kept until the job ends), organic (evictable) or bypass",
                VAL_CACHE,
                callback,
            ),
            OptionSpec::new(
                c"kiseki-hint",
                c"key=value[,key=value...]",
                c"Advisory hints for Kiseki (e.g. access=sequential,priority=high,prefetch=0-64M)",
                VAL_HINT,
                callback,
            ),
        ]
    })
}

/// `slurm_spank_init`: register the options in every context (Slurm requires the same set
/// everywhere) and read the plugstack.conf arguments.
pub fn init(spank: Spank, args: Vec<String>) -> Result<(), String> {
    // Checked here so a bad plugstack.conf line shows up at sbatch time and in slurmd's log.
    PluginSettings::parse(&args)?;
    for option in options() {
        spank
            .register(option)
            .map_err(|e| format!("kiseki: {}", e.0))?;
    }
    Ok(())
}

/// An option given by the user: check it now (a bad value fails sbatch with a clear message).
pub fn option(val: i32, value: Option<String>) -> Result<(), String> {
    let value = value.unwrap_or_default();
    let index = match val {
        VAL_STAGE => request::parse_datasets(&value).map(|_| 0),
        VAL_CACHE => request::CacheMode::parse(&value).map(|_| 1),
        VAL_HINT => request::parse_hints(&value).map(|_| 2),
        other => return Err(format!("kiseki: unknown option value {other}")),
    }
    .map_err(|error| format!("kiseki: {error}"))?;
    let mut values = VALUES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    values[index] = Some(value);
    Ok(())
}

fn request_from_options() -> Result<JobRequest, String> {
    let values = VALUES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    JobRequest::from_values(
        values[0].as_deref(),
        values[1].as_deref(),
        values[2].as_deref(),
    )
    .map_err(|error| format!("kiseki: {error}"))
}

/// `slurm_spank_init_post_opt`: in sbatch/salloc/srun, hand the choices to the prolog/epilog;
/// in the job's steps, put them into the job's environment.
pub fn init_post_opt(spank: Spank, args: &[String]) -> Result<(), String> {
    let context = ffi::context();
    let request = request_from_options()?;
    if request.is_empty() {
        return Ok(());
    }
    match context {
        Context::Local | Context::Allocator => {
            for (name, value) in request.env() {
                spank
                    .job_control_setenv(name, &value)
                    .map_err(|e| format!("kiseki: passing {name} to the prolog: {}", e.0))?;
            }
        }
        Context::Remote => {
            let mut env = request.env();
            if let Some(socket) = PluginSettings::parse(args)?.socket {
                env.push((ENV_SOCKET, socket.display().to_string()));
            }
            for (name, value) in env {
                // Best effort: a missing variable must not fail the step (that drains the node).
                if let Err(error) = spank.setenv(name, &value) {
                    ffi::error(&format!("kiseki: setting {name} in the job: {}", error.0));
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// `slurm_spank_job_prolog`/`job_epilog`: send the job's hints to the node's agent. Never fails.
pub fn job_phase(spank: Spank, args: &[String], phase: Phase) -> Result<(), String> {
    let settings = PluginSettings::parse(args)?;
    let from_env = JobRequest::from_env(JOB_CONTROL_PREFIX, |name| std::env::var(name).ok());
    let request = match from_env {
        Ok(request) if !request.is_empty() => request,
        _ => {
            let options = options();
            let [stage, cache, hint] = options.each_ref().map(|option| spank.getopt(option));
            match JobRequest::from_values(stage.as_deref(), cache.as_deref(), hint.as_deref()) {
                Ok(request) => request,
                Err(error) => {
                    ffi::error(&format!("kiseki: ignoring invalid job options: {error}"));
                    return Ok(());
                }
            }
        }
    };
    if request.is_empty() {
        return Ok(());
    }
    let job_id = std::env::var("SLURM_JOB_ID")
        .ok()
        .filter(|id| !id.is_empty())
        .or_else(|| spank.job_id().map(|id| id.to_string()));
    let Some(job_id) = job_id else {
        ffi::error("kiseki: no job id: hints not sent");
        return Ok(());
    };
    send_hints(&settings, &job_id, phase, &request);
    Ok(())
}

fn send_hints(settings: &PluginSettings, job_id: &str, phase: Phase, request: &JobRequest) {
    let phase = match phase {
        Phase::Start => "start",
        Phase::End => "end",
    };
    let mut command = Command::new(&settings.kiseki);
    if let Some(socket) = &settings.socket {
        command.arg("--socket").arg(socket);
    }
    command.args(["hint", "--job", job_id, "--phase", phase]);
    if !request.hints.is_empty() {
        command.arg(request::format_hints(&request.hints));
    }
    let outcome = run_bounded(&mut command, settings.hint_timeout);
    if outcome.success() {
        ffi::info(&format!("kiseki: job {job_id} {phase} hints recorded"));
    } else {
        // Hints are advisory: log and let the job go on.
        ffi::info(&format!(
            "kiseki: job {job_id} {phase} hints not delivered: {outcome:?}"
        ));
    }
}
