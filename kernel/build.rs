//! Tells the build scripts of kernel binaries where the linker script is.

use std::path::Path;

fn main() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("kernel.ld");
    println!("cargo:rerun-if-changed={}", script.display());
    // Reaches dependents as DEP_MIRAGE_KERNEL_LINKER_SCRIPT (the `links` key).
    println!("cargo:linker_script={}", script.display());
}
