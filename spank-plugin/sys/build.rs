//! Generates Rust declarations for Slurm's SPANK API from the installed `spank.h`
//! (Debian: `libslurm-dev`; bindgen needs `libclang-dev`). Nothing is linked: the Slurm process
//! that loads the plugin (sbatch, srun, slurmd, slurmstepd) provides every `spank_*` symbol.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=wrapper.h");
    println!("cargo:rerun-if-changed=/usr/include/slurm/spank.h");
    println!("cargo:rerun-if-changed=/usr/include/slurm/slurm_version.h");
    let bindings = bindgen::Builder::default()
        .header("wrapper.h")
        .allowlist_function("spank_.*")
        // `spank_context()` shares its name with `enum spank_context`, which Rust cannot hold in
        // one namespace: lib.rs declares the function as `spank_current_context`.
        .blocklist_function("spank_context")
        .allowlist_function("slurm_(error|info|verbose|debug|spank_log)")
        .allowlist_type("spank_.*")
        .allowlist_var("SLURM_VERSION_NUMBER")
        .allowlist_var("ESPANK_.*")
        .allowlist_var("SPANK_OPTION_MAXLEN")
        // Values of these enums come from C: a newtype cannot hold an invalid discriminant.
        .newtype_enum("spank_context")
        .newtype_enum("spank_item")
        .newtype_enum("slurm_err_t")
        .layout_tests(false)
        .generate()
        .unwrap_or_else(|error| {
            panic!("bindgen on spank.h failed ({error}): install libslurm-dev and libclang-dev")
        });
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_else(|_| ".".into()));
    bindings
        .write_to_file(out.join("bindings.rs"))
        .unwrap_or_else(|error| panic!("writing the SPANK bindings: {error}"));
}
