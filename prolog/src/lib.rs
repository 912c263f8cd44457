//! Kiseki's Slurm integration, the parts that are not FFI: the job options users give to
//! sbatch/salloc/srun (`--kiseki-stage`, `--kiseki-cache`, `--kiseki-hint`), their validation
//! (shared by the SPANK plugin at submit time and the prolog, which must treat the `SPANK_KISEKI_*`
//! variables it receives as untrusted), the prolog/epilog configuration, and bounded runs of the
//! `kiseki` CLI. It never talks to the cache agent itself (the `kiseki` CLI owns that protocol)
//! and never calls a shell: every argument goes to a program as its own argv entry.

pub mod config;
pub mod duration;
pub mod hook;
pub mod log;
pub mod plugstack;
pub mod request;
pub mod run;
pub mod scontrol;
pub mod stage;
