//! Host-side support for the mirage-rs kernel images (the `*-virtio` and
//! `*-xen` entry crates), so that each of them does not carry its own copy:
//!
//! | item | for |
//! |---|---|
//! | [`emit_kernel_link_args`] | the entry crate's `build.rs`: link the binary as a kernel image under the `kernel` profile |
//! | [`kernel_image!`] / [`build_image`] | integration tests: build the image with `--profile kernel` |
//! | [`qemu`] | integration tests: boot the image under QEMU, collect its serial output, decode its exit status |
//! | [`xen`] / [`xen_harness!`] | integration tests of the Xen guests: boot the image under Xen through `cargo xtask xen` |
//!
//! Everything here runs on the build host; nothing links into an image.

use std::collections::HashMap;
use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

pub mod qemu;
pub mod xen;

/// The linker arguments of a freestanding kernel image, besides the
/// linker script.
const KERNEL_LINK_ARGS: [&str; 5] = ["-nostdlib", "-static", "-no-pie", "-Wl,--gc-sections", "-Wl,--build-id=none"];

/// For a kernel entry crate's build script: links the crate's binaries as
/// a freestanding kernel image (no libc, static, mirage-kernel's linker
/// script) when the crate is built with the `kernel` profile, and leaves
/// any other profile (the host stub) alone.
///
/// A build script cannot see the panic strategy, which is what makes the
/// crate a kernel, so this recognises the profile by the directory cargo
/// builds in (`<target>/kernel/build/<pkg>-<hash>/out`). The crate must
/// depend on `mirage-kernel`, which publishes its linker script as
/// `DEP_MIRAGE_KERNEL_LINKER_SCRIPT`.
///
/// # Panics
///
/// Outside a build script (no `OUT_DIR`), or under the `kernel` profile
/// without `mirage-kernel` as a dependency: both are mistakes in the
/// crate's manifest, and a panic fails its build with the message.
pub fn emit_kernel_link_args() {
    let out_dir = env::var("OUT_DIR").expect("cargo sets OUT_DIR for build scripts");
    println!("cargo:rerun-if-env-changed=DEP_MIRAGE_KERNEL_LINKER_SCRIPT");
    if is_kernel_profile(Path::new(&out_dir)) {
        let script = env::var("DEP_MIRAGE_KERNEL_LINKER_SCRIPT")
            .expect("the crate depends on mirage-kernel, which publishes its linker script");
        for arg in KERNEL_LINK_ARGS {
            println!("cargo:rustc-link-arg-bins={arg}");
        }
        println!("cargo:rustc-link-arg-bins=-T{script}");
    }
}

/// Whether a build script's `OUT_DIR` is that of the `kernel` profile.
fn is_kernel_profile(out_dir: &Path) -> bool {
    out_dir.ancestors().nth(3).and_then(Path::file_name).is_some_and(|name| name == "kernel")
}

/// Builds the kernel image of the calling test's package (its binary of
/// the package's name) once per test process and returns its path: see
/// [`build_image`].
#[macro_export]
macro_rules! kernel_image {
    () => {
        $crate::build_image(env!("CARGO_MANIFEST_DIR"), env!("CARGO_TARGET_TMPDIR"), env!("CARGO_PKG_NAME"))
    };
}

/// Builds the binary `bin` of the package in `manifest_dir` with
/// `cargo build --profile kernel`, in a target directory of its own under
/// `target_tmpdir` (the outer `cargo test` holds the lock of the usual
/// one), and returns the image's path. Each package is built once per
/// process; concurrent callers wait for that build.
///
/// # Panics
///
/// When cargo cannot be run or the build fails (its errors are on
/// stderr): a test cannot go on without its image.
pub fn build_image(manifest_dir: &str, target_tmpdir: &str, bin: &str) -> PathBuf {
    static BUILT: Mutex<Option<HashMap<PathBuf, PathBuf>>> = Mutex::new(None);
    let manifest = Path::new(manifest_dir).join("Cargo.toml");
    // A panicking build leaves no entry, so a poisoned map is still right.
    let mut built = BUILT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let built = built.get_or_insert_with(HashMap::new);
    if let Some(image) = built.get(&manifest) {
        return image.clone();
    }
    let target = Path::new(target_tmpdir).join("kernel-images");
    let status = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--profile", "kernel", "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target)
        .status()
        .expect("run cargo to build the kernel image");
    assert!(status.success(), "building the {bin} image failed: {status}");
    let image = target.join("kernel").join(bin);
    built.insert(manifest, image.clone());
    image
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_kernel_profile_directory_is_recognised() {
        assert!(is_kernel_profile(Path::new("/t/kernel/build/www-virtio-0123abcd/out")));
        assert!(!is_kernel_profile(Path::new("/t/debug/build/www-virtio-0123abcd/out")));
        assert!(!is_kernel_profile(Path::new("/t/release/build/kernel-0123abcd/out")));
        assert!(!is_kernel_profile(Path::new("out")));
    }
}
