//! Links the binary as a freestanding kernel image when it is built with
//! the `kernel` profile (`cargo build -p hello-xen --profile kernel`).
//!
//! A build script cannot see the panic strategy, which is what makes the
//! crate a kernel (src/main.rs), so it recognises the profile by the
//! directory cargo builds it in (`<target>/kernel/build/<pkg>-<hash>/out`).
//! Any other profile builds the host stub, linked normally.

use std::env;
use std::path::Path;

fn main() {
    let out_dir = env::var("OUT_DIR").expect("cargo sets OUT_DIR for build scripts");
    let profile_dir = Path::new(&out_dir).ancestors().nth(3).and_then(Path::file_name);
    println!("cargo:rerun-if-env-changed=DEP_MIRAGE_KERNEL_LINKER_SCRIPT");
    if profile_dir.is_some_and(|name| name == "kernel") {
        let script = env::var("DEP_MIRAGE_KERNEL_LINKER_SCRIPT").expect("mirage-kernel publishes its linker script");
        for arg in ["-nostdlib", "-static", "-no-pie", "-Wl,--gc-sections", "-Wl,--build-id=none"] {
            println!("cargo:rustc-link-arg-bins={arg}");
        }
        println!("cargo:rustc-link-arg-bins=-T{script}");
    }
}
