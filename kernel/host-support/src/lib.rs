//! Host-side support for the tests of mirage-rs kernel images, so that
//! each example's tests do not carry their own copy:
//!
//! | item | for |
//! |---|---|
//! | [`kernel_image!`] / [`build_image`] | building the calling package's image for `virtio` or `xen` with [`cargo_mirage::build`] |
//! | [`qemu`] | booting an image under QEMU, collecting its serial output, decoding its exit status |
//! | [`xen`] / [`xen_harness!`] | booting an image under Xen, as dom0 or as a domU of a Linux dom0 ([`cargo_mirage::xen`]) |
//!
//! Everything here runs on the build host; nothing links into an image.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub use cargo_mirage::build::Target;

pub mod qemu;
pub mod xen;

/// Builds the kernel image of the calling test's package (its binary of
/// the package's name) for `virtio` or `xen`, once per test process, and
/// returns its path: see [`build_image`].
///
/// ```ignore
/// let image = mirage_kernel_host::kernel_image!(virtio);
/// ```
#[macro_export]
macro_rules! kernel_image {
    (virtio) => {
        $crate::build_image(
            env!("CARGO_MANIFEST_DIR"),
            env!("CARGO_TARGET_TMPDIR"),
            env!("CARGO_PKG_NAME"),
            $crate::Target::Virtio,
        )
    };
    (xen) => {
        $crate::build_image(
            env!("CARGO_MANIFEST_DIR"),
            env!("CARGO_TARGET_TMPDIR"),
            env!("CARGO_PKG_NAME"),
            $crate::Target::Xen,
        )
    };
}

/// Builds the binary `bin` of the package in `manifest_dir` for `target`
/// with [`cargo_mirage::build::Build`] (quiet), in a target directory of
/// its own under `target_tmpdir` (the outer `cargo test` holds the lock of
/// the usual one), and returns the image's path. Each package is built
/// once per process and target; concurrent callers wait for that build.
///
/// # Panics
///
/// When the build fails (cargo's errors are on stderr, the reason in the
/// message): a test cannot go on without its image.
pub fn build_image(manifest_dir: &str, target_tmpdir: &str, bin: &str, target: Target) -> PathBuf {
    static BUILT: Mutex<Option<HashMap<(PathBuf, Target), PathBuf>>> = Mutex::new(None);
    let manifest = Path::new(manifest_dir).join("Cargo.toml");
    // A panicking build leaves no entry, so a poisoned map is still right.
    let mut built = BUILT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let built = built.get_or_insert_with(HashMap::new);
    if let Some(image) = built.get(&(manifest.clone(), target)) {
        return image.clone();
    }
    let image = cargo_mirage::build::Build::new(&manifest, target)
        .bin(Some(bin))
        .target_dir(&Path::new(target_tmpdir).join("kernel-images"))
        .quiet(true)
        .run()
        .unwrap_or_else(|e| panic!("building the {target} image of {bin} failed: {e}"));
    built.insert((manifest, target), image.path.clone());
    image.path
}
