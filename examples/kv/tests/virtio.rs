//! Boots the kv example's virtio image twice under QEMU (TCG) on the same
//! raw disk image: the first boot formats the blank image, the second
//! finds the counter the first left. Builds the image itself (see
//! `examples/hello/tests/virtio.rs`); needs `qemu-system-x86_64` (Debian:
//! `qemu-system-x86`); without it the test skips, or fails under CI
//! (`mirage_test_env`).

use std::fs::File;
use std::path::Path;
use std::time::Duration;

use mirage_kernel_host::kernel_image;
use mirage_kernel_host::qemu::{exit_code, missing_qemu, Machine, Qemu};
use mirage_test_env::require;

/// How long one boot may take before the test kills QEMU.
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

fn boot(image: &Path, disk: &Path, append: &str) -> (Option<i32>, String) {
    let exit = Qemu::new(image, Machine::Microvm).disk(disk, false).append(append).run(BOOT_TIMEOUT);
    (exit.code, exit.output)
}

#[test]
fn counts_boots_across_two_runs_on_one_image() {
    require!(missing_qemu());
    let image = kernel_image!(virtio);
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temporary directory");
    let disk = dir.path().join("store.img");
    File::create(&disk).and_then(|f| f.set_len(1 << 20)).expect("create disk image");

    let (status, output) = boot(&image, &disk, "--block store");
    assert_eq!(status, Some(exit_code(0)), "first boot; output:\n{output}");
    assert!(output.contains("formatted a new store") && output.contains("boot count: 1"), "{output}");

    let (status, output) = boot(&image, &disk, "--block store -- /boot/count");
    assert_eq!(status, Some(exit_code(0)), "second boot; output:\n{output}");
    assert!(output.contains("mounted the store"), "{output}");
    assert!(output.contains("/boot/count = \"1\"") && output.contains("boot count: 2"), "{output}");
}
