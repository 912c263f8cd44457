//! Safe wrappers around the few SPANK calls the plugin makes. Every `unsafe` block of the plugin
//! is here (and in `exports.rs`), each with the reason it is sound.

use std::ffi::{c_char, c_int, CStr, CString};

use kiseki_spank_sys as sys;

/// The context a SPANK callback runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// srun (local).
    Local,
    /// slurmstepd (remote: the job's steps).
    Remote,
    /// sbatch / salloc.
    Allocator,
    /// slurmd itself.
    Slurmd,
    /// The SPANK part of the prolog/epilog.
    JobScript,
    /// Unknown or error.
    Other,
}

/// The current context.
pub fn context() -> Context {
    // SAFETY: `spank_context()` takes no arguments and only reads the host process's state; it
    // is provided by every Slurm process that loads SPANK plugins.
    let context = unsafe { sys::spank_current_context() };
    match context {
        sys::spank_context::S_CTX_LOCAL => Context::Local,
        sys::spank_context::S_CTX_REMOTE => Context::Remote,
        sys::spank_context::S_CTX_ALLOCATOR => Context::Allocator,
        sys::spank_context::S_CTX_SLURMD => Context::Slurmd,
        sys::spank_context::S_CTX_JOB_SCRIPT => Context::JobScript,
        _ => Context::Other,
    }
}

/// A C string of `text` (interior NULs replaced: log text and env values never need them).
fn c_string(text: &str) -> CString {
    CString::new(text.replace('\0', " ")).unwrap_or_default()
}

/// Logs through Slurm at error level (shown to the user by sbatch/srun; slurmd's log elsewhere).
pub fn error(message: &str) {
    let message = c_string(message);
    // SAFETY: a "%s" format with one valid NUL-terminated string argument matches the printf
    // contract of `slurm_error`; both strings outlive the call.
    unsafe { sys::slurm_error(c"%s".as_ptr(), message.as_ptr()) }
}

/// Logs through Slurm at info level.
pub fn info(message: &str) {
    let message = c_string(message);
    // SAFETY: as in `error`: "%s" and one valid C string.
    unsafe { sys::slurm_info(c"%s".as_ptr(), message.as_ptr()) }
}

/// The SPANK handle a callback received.
#[derive(Clone, Copy)]
pub struct Spank(sys::spank_t);

/// A failed SPANK call: the error code and its text.
#[derive(Debug)]
pub struct SpankError(pub String);

fn check(code: sys::spank_err_t, what: &str) -> Result<(), SpankError> {
    if code.0 == sys::ESPANK_SUCCESS {
        return Ok(());
    }
    // SAFETY: `spank_strerror` accepts any error code and returns a static string (or NULL).
    let text = unsafe { sys::spank_strerror(code) };
    let text = if text.is_null() {
        format!("error {}", code.0)
    } else {
        // SAFETY: non-NULL results of `spank_strerror` are static NUL-terminated strings.
        unsafe { CStr::from_ptr(text) }
            .to_string_lossy()
            .into_owned()
    };
    Err(SpankError(format!("{what}: {text}")))
}

impl Spank {
    /// Wraps the handle Slurm passed to a callback.
    pub fn new(handle: sys::spank_t) -> Spank {
        Spank(handle)
    }

    /// Registers an option; `option` must stay valid for the life of the process.
    pub fn register(self, option: &'static OptionSpec) -> Result<(), SpankError> {
        // SAFETY: the handle comes from Slurm for this callback; `option.raw` points to a leaked
        // (never freed) `spank_option` whose strings are 'static C literals, so Slurm may keep
        // the pointer as long as it likes.
        let code = unsafe { sys::spank_option_register(self.0, option.raw) };
        check(code, "spank_option_register")
    }

    /// The option's value if the user gave it (job prolog/epilog and remote contexts).
    pub fn getopt(self, option: &'static OptionSpec) -> Option<String> {
        let mut value: *mut c_char = std::ptr::null_mut();
        // SAFETY: valid handle and option (see `register`); `value` is a valid out-pointer.
        let code = unsafe { sys::spank_option_getopt(self.0, option.raw, &mut value) };
        if code.0 != sys::ESPANK_SUCCESS || value.is_null() {
            return None;
        }
        // SAFETY: on success Slurm stores a NUL-terminated string it owns for the callback.
        Some(
            unsafe { CStr::from_ptr(value) }
                .to_string_lossy()
                .into_owned(),
        )
    }

    /// `spank_job_control_setenv`: `SPANK_<name>` for the prolog and epilog (local/allocator).
    pub fn job_control_setenv(self, name: &str, value: &str) -> Result<(), SpankError> {
        let (name, value) = (c_string(name), c_string(value));
        // SAFETY: valid handle; both strings are NUL-terminated and outlive the call (Slurm
        // copies them).
        let code =
            unsafe { sys::spank_job_control_setenv(self.0, name.as_ptr(), value.as_ptr(), 1) };
        check(code, "spank_job_control_setenv")
    }

    /// `spank_setenv`: a variable in the job's environment (remote context).
    pub fn setenv(self, name: &str, value: &str) -> Result<(), SpankError> {
        let (name, value) = (c_string(name), c_string(value));
        // SAFETY: as in `job_control_setenv`.
        let code = unsafe { sys::spank_setenv(self.0, name.as_ptr(), value.as_ptr(), 1) };
        check(code, "spank_setenv")
    }

    /// The job id, if this context knows it.
    pub fn job_id(self) -> Option<u32> {
        let mut job_id: u32 = 0;
        // SAFETY: S_JOB_ID takes exactly one `uint32_t *` variadic argument.
        let code = unsafe {
            sys::spank_get_item(self.0, sys::spank_item::S_JOB_ID, &mut job_id as *mut u32)
        };
        (code.0 == sys::ESPANK_SUCCESS && job_id != 0).then_some(job_id)
    }
}

/// The callback type Slurm calls when the user gives an option.
pub type OptionCallback = unsafe extern "C" fn(c_int, *const c_char, c_int) -> c_int;

/// A registered option: a leaked `spank_option` Slurm may point to forever.
pub struct OptionSpec {
    raw: *mut sys::spank_option,
}

// SAFETY: the pointee is written once before publication and never mutated by us; Slurm calls
// plugins from one thread.
unsafe impl Send for OptionSpec {}
// SAFETY: as above, shared references only read the pointer.
unsafe impl Sync for OptionSpec {}

impl OptionSpec {
    /// Leaks a `spank_option` with 'static strings.
    pub fn new(
        name: &'static CStr,
        arginfo: &'static CStr,
        usage: &'static CStr,
        val: c_int,
        callback: OptionCallback,
    ) -> OptionSpec {
        let raw = Box::into_raw(Box::new(sys::spank_option {
            // Slurm declares these `char *` but never writes through them.
            name: name.as_ptr().cast_mut(),
            arginfo: arginfo.as_ptr().cast_mut(),
            usage: usage.as_ptr().cast_mut(),
            has_arg: 1,
            val,
            cb: Some(callback),
        }));
        OptionSpec { raw }
    }
}

/// The text of a C string argument (`None` for NULL).
pub fn optarg(pointer: *const c_char) -> Option<String> {
    if pointer.is_null() {
        return None;
    }
    // SAFETY: Slurm passes option arguments as NUL-terminated strings valid for the callback.
    Some(
        unsafe { CStr::from_ptr(pointer) }
            .to_string_lossy()
            .into_owned(),
    )
}

/// The plugin arguments from plugstack.conf (`argv[0..argc]`).
pub fn plugin_args(argc: c_int, argv: *mut *mut c_char) -> Vec<String> {
    let count = usize::try_from(argc).unwrap_or(0).min(64);
    if argv.is_null() {
        return Vec::new();
    }
    (0..count)
        .filter_map(|index| {
            // SAFETY: Slurm passes `argc` valid entries in `argv` (bounded to 64 here).
            let entry = unsafe { *argv.add(index) };
            optarg(entry)
        })
        .collect()
}
