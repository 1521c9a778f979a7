//! Boots the block example's virtio image under QEMU (TCG) with a raw disk
//! image and checks the example and the command-line errors (the driver's
//! own tests are `platform-virtio/selftest`'s).
//!
//! The test builds the image itself (as `cargo mirage build -t virtio`
//! does), in a target directory of its own under `CARGO_TARGET_TMPDIR`. It
//! needs `qemu-system-x86_64` (Debian: `qemu-system-x86`); without it the
//! tests skip, or fail under CI (`mirage_test_env`).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mirage_kernel_host::kernel_image;
use mirage_kernel_host::qemu::{exit_code, missing_qemu, Machine, Qemu};
use mirage_test_env::require;

/// How long one boot may take before the test kills QEMU: the 16 MiB run
/// takes about 4 s; TCG on a loaded 2-core machine can be much slower.
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

/// A zeroed disk image of `len` bytes in a fresh directory.
fn disk(len: u64) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temporary directory");
    let path = dir.path().join("disk.img");
    File::create(&path).and_then(|f| f.set_len(len)).expect("create disk image");
    (dir, path)
}

/// Boots on microvm with `disk` as a virtio-blk device and a virtio-rng
/// device; returns QEMU's exit code and the serial output.
fn boot(disk: Option<&Path>, append: &str) -> (Option<i32>, String) {
    boot_on(Machine::Microvm, disk, append)
}

/// [`boot`] on `machine`.
fn boot_on(machine: Machine, disk: Option<&Path>, append: &str) -> (Option<i32>, String) {
    // The entropy source: the example draws its seed from it (QEMU's
    // default CPU model has no RDRAND to fall back on).
    let mut qemu = Qemu::new(&kernel_image!(virtio), machine).rng().append(append);
    if let Some(disk) = disk {
        qemu = qemu.disk(disk, false);
    }
    let exit = qemu.run(BOOT_TIMEOUT);
    (exit.code, exit.output)
}

#[test]
fn verifies_a_16_mib_disk_on_microvm() {
    require!(missing_qemu());
    let (_dir, path) = disk(16 << 20);
    let (status, output) = boot(Some(&path), "--block disk");
    assert_eq!(status, Some(exit_code(0)), "output:\n{output}");
    assert!(output.contains("testing 32768 sectors of 512 bytes (16.0 MiB)"), "{output}");
    assert!(output.contains("all 32768 sectors are intact"), "{output}");
    // The pattern is really on the host's file: each sector names itself.
    let file = File::open(&path).expect("open image");
    for sector in [0u64, 1, 4095, 32_767] {
        let mut header = [0u8; 8];
        file.read_exact_at(&mut header, sector * 512).expect("read header");
        assert_eq!(u64::from_le_bytes(header), sector, "sector {sector}");
    }
}

#[test]
fn virtio_pci_on_q35_passes_the_block_example() {
    require!(missing_qemu());
    let (_dir, path) = disk(4 << 20);
    let (status, output) = boot_on(Machine::Q35, Some(&path), "--block disk");
    assert_eq!(status, Some(exit_code(0)), "output:\n{output}");
    assert!(output.contains("all 8192 sectors are intact"), "{output}");
}

#[test]
fn a_missing_device_and_a_bad_flag_stop_the_kernel_with_a_message() {
    require!(missing_qemu());
    let (status, output) = boot(None, "--block disk");
    assert_eq!(status, Some(exit_code(2)), "output:\n{output}");
    assert!(
        output.contains("--block disk=virtio:0: there is no such device; this machine has 0 virtio-blk"),
        "{output}"
    );
    let (status, output) = boot(None, "--block disk=nvme:0");
    assert_eq!(status, Some(exit_code(2)), "output:\n{output}");
    assert!(output.contains("on virtio the device is virtio:N"), "{output}");
    let (status, output) = boot(None, "");
    assert_eq!(status, Some(exit_code(1)), "output:\n{output}");
    assert!(
        output.contains("this application needs a block device named disk: pass --block disk[=virtio:N]"),
        "{output}"
    );
}
