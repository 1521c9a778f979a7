//! Boots the virtio-selftest image under QEMU (TCG) and checks the
//! platform's own paths: the kernel's panic and CPU exception reports, the
//! DRBG (different bytes on two boots, a clear failure without a source), the
//! virtio-blk driver under concurrent and cancelled reads on both
//! transports (virtio-mmio on microvm, virtio-pci on q35), and how the
//! platform refuses a block device that is not there.
//!
//! The test builds the image itself (as `cargo mirage build -t virtio`
//! does), in a target directory of its own under `CARGO_TARGET_TMPDIR`.
//! It needs `qemu-system-x86_64` (Debian: `qemu-system-x86`); without it
//! each test skips, or fails under CI (`mirage_test_env`).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mirage_kernel_host::kernel_image;
use mirage_kernel_host::qemu::{exit_code, missing_qemu, Machine, Qemu};
use mirage_test_env::require;

/// How long one boot may take before the test kills QEMU: the block test
/// takes about a second, the others less; TCG on a loaded 2-core machine
/// can be many times slower.
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

/// The kernel's exit statuses for a panic and a CPU exception.
const PANIC_STATUS: u8 = 101;
const EXCEPTION_STATUS: u8 = 102;

/// A zeroed disk image of `len` bytes in a fresh directory.
fn disk(len: u64) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temporary directory");
    let path = dir.path().join("disk.img");
    File::create(&path).and_then(|f| f.set_len(len)).expect("create disk image");
    (dir, path)
}

/// Boots the image on `machine` with a virtio-rng device, `disk` (if any)
/// as the first virtio-blk device and `append` as the command line;
/// returns QEMU's exit code and the serial output.
fn boot(machine: Machine, disk: Option<&Path>, append: &str) -> (Option<i32>, String) {
    let mut qemu = Qemu::new(&kernel_image!(virtio), machine).rng().append(append);
    if let Some(disk) = disk {
        qemu = qemu.disk(disk, false);
    }
    let exit = qemu.run(BOOT_TIMEOUT);
    (exit.code, exit.output)
}

/// The hex string of `selftest: random HEX` in `output`.
fn random_line(output: &str) -> Option<&str> {
    output.lines().find_map(|l| l.split("selftest: random ").nth(1)).map(str::trim)
}

#[test]
fn two_boots_draw_different_random_bytes() {
    require!(missing_qemu());
    let draws: Vec<String> = (0..2)
        .map(|_| {
            let (status, output) = boot(Machine::Microvm, None, "-- random");
            assert_eq!(status, Some(exit_code(0)), "output:\n{output}");
            let hex = random_line(&output).unwrap_or_else(|| panic!("no random line:\n{output}"));
            assert_eq!(hex.len(), 64, "{hex}");
            hex.to_string()
        })
        .collect();
    assert_ne!(draws[0], draws[1], "two boots drew the same bytes");
    assert!(draws.iter().all(|d| d.chars().any(|c| c != '0')), "{draws:?}");
}

#[test]
fn without_any_entropy_source_the_first_draw_fails_and_says_why() {
    // QEMU's default CPU model has neither RDSEED nor RDRAND, and this
    // boot has no virtio-rng device.
    require!(missing_qemu());
    let exit = Qemu::new(&kernel_image!(virtio), Machine::Microvm).append("-- random").run(BOOT_TIMEOUT);
    let output = exit.output;
    assert_eq!(exit.code, Some(exit_code(1)), "output:\n{output}");
    assert!(random_line(&output).is_none(), "{output}");
    assert!(output.contains("none of the DRBG's sources answered"), "{output}");
    assert!(
        output.contains("RDSEED: the CPU has no RDSEED") && output.contains("RDRAND: the CPU has no RDRAND"),
        "{output}"
    );
}

#[test]
fn a_panic_prints_message_and_location_and_exits_101() {
    require!(missing_qemu());
    let (status, output) = boot(Machine::Microvm, None, "-- panic");
    assert_eq!(status, Some(exit_code(PANIC_STATUS)), "output:\n{output}");
    assert!(output.contains("kernel panic: panic requested on the command line at "), "{output}");
    assert!(output.contains("platform-virtio/selftest/src/main.rs:"), "no location: {output}");
}

#[test]
fn a_cpu_exception_is_reported_and_exits_102() {
    require!(missing_qemu());
    let (status, output) = boot(Machine::Microvm, None, "-- breakpoint");
    assert_eq!(status, Some(exit_code(EXCEPTION_STATUS)), "output:\n{output}");
    assert!(output.contains("kernel exception: breakpoint (vector 3), error code 0x0, at rip 0x"), "{output}");
    assert!(!output.contains("returned instead of stopping"), "{output}");
}

/// Runs the block selftest on `machine` with a 4 MiB disk.
fn check_block_selftest(machine: Machine) {
    let (_dir, path) = disk(4 << 20);
    let (status, output) = boot(machine, Some(&path), "--block disk=virtio:0 -- block");
    assert_eq!(status, Some(exit_code(0)), "{machine}: exit status; output:\n{output}");
    let line = output
        .lines()
        .find(|l| l.contains("concurrent reads verified"))
        .unwrap_or_else(|| panic!("{machine}: no concurrent reads line:\n{output}"));
    let most = line.rsplit("at most ").next().and_then(|r| r.split(' ').next()).and_then(|n| n.parse::<usize>().ok());
    assert!(most.is_some_and(|n| n > 1), "{machine}: requests never overlapped: {line}");
    assert!(output.contains("selftest: cancelled reads (") && output.contains("left no trace"), "{output}");
}

#[test]
fn concurrent_and_cancelled_reads_return_the_right_data_on_microvm() {
    require!(missing_qemu());
    check_block_selftest(Machine::Microvm);
}

#[test]
fn concurrent_and_cancelled_reads_return_the_right_data_on_q35_virtio_pci() {
    require!(missing_qemu());
    check_block_selftest(Machine::Q35);
}

#[test]
fn a_block_device_that_is_not_there_stops_the_kernel_with_a_message() {
    require!(missing_qemu());
    // A flag naming a device the machine does not have: a usage error.
    let (status, output) = boot(Machine::Microvm, None, "--block disk -- block");
    assert_eq!(status, Some(exit_code(2)), "output:\n{output}");
    assert!(
        output.contains("--block disk=virtio:0: there is no such device; this machine has 0 virtio-blk"),
        "{output}"
    );
    assert!(output.contains("usage: APP"), "{output}");
    // A backing of another platform: a usage error.
    let (status, output) = boot(Machine::Microvm, None, "--block disk=xen:51712 -- block");
    assert_eq!(status, Some(exit_code(2)), "output:\n{output}");
    assert!(output.contains("on virtio the device is virtio:N"), "{output}");
    // No flag for the device the application asks for: its error.
    let (status, output) = boot(Machine::Microvm, None, "-- block");
    assert_eq!(status, Some(exit_code(1)), "output:\n{output}");
    assert!(output.contains("this application needs a block device named disk: pass --block disk"), "{output}");
}

#[test]
fn an_unknown_test_is_a_usage_error() {
    require!(missing_qemu());
    let (status, output) = boot(Machine::Microvm, None, "-- frobnicate");
    assert_eq!(status, Some(exit_code(2)), "output:\n{output}");
    assert!(output.contains("virtio-selftest: error: say which test to run after `--`"), "{output}");
    assert!(output.contains("[\"frobnicate\"]") && output.contains("usage: APP"), "{output}");
}
