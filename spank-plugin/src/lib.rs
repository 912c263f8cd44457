//! Kiseki's Slurm SPANK plugin (`kiseki_spank.so`, loaded through plugstack.conf). It owns the
//! `--kiseki-stage`, `--kiseki-cache` and `--kiseki-hint` options of sbatch/salloc/srun: it
//! checks them at submit time, passes them to the prolog/epilog (`SPANK_KISEKI_*`) and into the
//! job (`KISEKI_*`), and sends the job's hints to the node's cache agent at job start and end.
//!
//! It must never fail or block a job because Kiseki is unreachable (hints are best effort with a
//! bounded timeout), never fail in slurmd/slurmstepd contexts (that drains the node: staging
//! failures are the prolog's to handle), and never let a panic unwind into Slurm.

#[allow(unsafe_code)]
mod exports;
#[allow(unsafe_code)]
mod ffi;
mod plugin;
