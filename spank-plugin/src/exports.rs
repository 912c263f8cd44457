//! The symbols Slurm looks up with dlsym: the plugin identity and the SPANK callbacks. Each
//! callback only converts arguments and calls `plugin`, inside `plugin::guard` so no panic can
//! cross into C.

use std::ffi::{c_char, c_int};

use kiseki_spank_sys as sys;

use crate::ffi::Spank;
use crate::plugin;

/// `plugin_name`: a NUL-terminated byte array (Slurm reads it as `char[]`, not a pointer).
#[no_mangle]
pub static plugin_name: [u8; 7] = *b"kiseki\0";

/// `plugin_type`: SPANK plugins are of type "spank".
#[no_mangle]
pub static plugin_type: [u8; 6] = *b"spank\0";

/// `plugin_version`: the Slurm release this plugin is built for (major.minor must match).
#[no_mangle]
pub static plugin_version: u32 = sys::SLURM_VERSION_NUMBER;

/// `slurm_spank_init`: registers the options (every context) and reads plugstack.conf args.
#[no_mangle]
pub extern "C" fn slurm_spank_init(
    spank: sys::spank_t,
    argc: c_int,
    argv: *mut *mut c_char,
) -> c_int {
    plugin::guard("init", || {
        plugin::init(Spank::new(spank), crate::ffi::plugin_args(argc, argv))
    })
}

/// `slurm_spank_init_post_opt`: passes the options on (job control env, job env).
#[no_mangle]
pub extern "C" fn slurm_spank_init_post_opt(
    spank: sys::spank_t,
    argc: c_int,
    argv: *mut *mut c_char,
) -> c_int {
    plugin::guard("init_post_opt", || {
        plugin::init_post_opt(Spank::new(spank), &crate::ffi::plugin_args(argc, argv))
    })
}

/// `slurm_spank_job_prolog`: hints at job start.
#[no_mangle]
pub extern "C" fn slurm_spank_job_prolog(
    spank: sys::spank_t,
    argc: c_int,
    argv: *mut *mut c_char,
) -> c_int {
    plugin::guard("job_prolog", || {
        let args = crate::ffi::plugin_args(argc, argv);
        plugin::job_phase(Spank::new(spank), &args, plugin::Phase::Start)
    })
}

/// `slurm_spank_job_epilog`: hints at job end.
#[no_mangle]
pub extern "C" fn slurm_spank_job_epilog(
    spank: sys::spank_t,
    argc: c_int,
    argv: *mut *mut c_char,
) -> c_int {
    plugin::guard("job_epilog", || {
        let args = crate::ffi::plugin_args(argc, argv);
        plugin::job_phase(Spank::new(spank), &args, plugin::Phase::End)
    })
}

/// Option callback for `--kiseki-stage` (val 1), `--kiseki-cache` (2), `--kiseki-hint` (3).
pub extern "C" fn option_callback(val: c_int, optarg: *const c_char, _remote: c_int) -> c_int {
    plugin::guard("option", || plugin::option(val, crate::ffi::optarg(optarg)))
}
