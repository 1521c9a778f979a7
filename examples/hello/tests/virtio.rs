//! Boots the hello example's virtio image under QEMU (TCG) and checks what
//! it prints on the serial console and how it exits.
//!
//! The test builds the image itself (as `cargo mirage build -t virtio`
//! does), in a target directory of its own under `CARGO_TARGET_TMPDIR`
//! (the outer `cargo test` holds the lock of the usual one). It needs
//! `qemu-system-x86_64` (Debian: `qemu-system-x86`); without it the tests
//! skip, or fail under CI (`mirage_test_env`).

use std::time::Duration;

use mirage_kernel_host::kernel_image;
use mirage_kernel_host::qemu::{exit_code, missing_qemu, Machine, Qemu};
use mirage_test_env::require;

/// How long one boot may take before the test kills QEMU: hello needs
/// about 3 s, TCG on a loaded 2-core machine can be several times slower.
const BOOT_TIMEOUT: Duration = Duration::from_secs(60);

/// Boots the image on `machine` with `append` as the command line; returns
/// QEMU's exit code and the serial output.
fn boot(machine: Machine, append: &str) -> (Option<i32>, String) {
    let exit = Qemu::new(&kernel_image!(virtio), machine).append(append).run(BOOT_TIMEOUT);
    (exit.code, exit.output)
}

fn check_greetings(machine: Machine) {
    let exit = Qemu::new(&kernel_image!(virtio), machine).run(BOOT_TIMEOUT);
    let (status, output, ran) = (exit.code, exit.output, exit.ran);
    assert_eq!(status, Some(exit_code(0)), "{machine}: exit status; output:\n{output}");
    // Three sleeps of a second cannot end early in real time either: a TSC
    // calibrated too slow would make the guest's seconds short.
    assert!(ran >= Duration::from_secs(3), "{machine}: the guest slept {ran:?} in all");
    let greetings: Vec<&str> = output.lines().filter(|l| l.contains("hello from mirage-rs")).collect();
    assert_eq!(greetings.len(), 4, "{machine}: output:\n{output}");
    let mut stamps = Vec::new();
    for (i, line) in greetings.iter().enumerate() {
        assert!(line.contains(&format!("({}/4)", i + 1)), "line {i} out of order: {line}");
        assert!(line.contains("INFO"), "not logged at info level: {line}");
        // "[     1.032675] INFO ...": the kernel's monotonic clock. On q35 the
        // first line follows SeaBIOS's output without a newline.
        let before_level = line.split("] INFO").next().unwrap_or("");
        let stamp = before_level.rsplit('[').next().unwrap_or("").trim();
        stamps.push(stamp.parse::<f64>().unwrap_or_else(|_| panic!("no timestamp in {line:?}")));
    }
    // Greeting i is due i seconds after the start (hello sleeps until fixed
    // deadlines), and a timer never fires early on the kernel's clock; the
    // first greeting is logged a little after the start, hence the 10 ms.
    // There is no upper bound: a loaded host may run the guest late, and
    // that is no error of the kernel.
    for (i, stamp) in stamps.iter().enumerate() {
        let since_first = stamp - stamps[0];
        assert!(since_first >= i as f64 - 0.01, "{machine}: greeting {i} {since_first} s after the first: {stamps:?}");
    }
}

#[test]
fn greets_four_times_one_second_apart_and_exits_zero_on_microvm() {
    require!(missing_qemu());
    check_greetings(Machine::Microvm);
}

#[test]
fn greets_on_q35_too() {
    require!(missing_qemu());
    check_greetings(Machine::Q35);
}

#[test]
fn a_bad_command_line_is_a_usage_error() {
    require!(missing_qemu());
    let (status, output) = boot(Machine::Microvm, "--frobnicate");
    assert_eq!(status, Some(exit_code(2)), "output:\n{output}");
    assert!(output.contains("hello: error: unknown flag \"--frobnicate\""), "{output}");
    assert!(output.contains("usage: APP [--net NAME[=BACKING]]"), "{output}");
}

#[test]
fn the_log_filter_comes_from_the_command_line() {
    require!(missing_qemu());
    let (status, output) = boot(Machine::Microvm, "-l debug");
    assert_eq!(status, Some(exit_code(0)), "output:\n{output}");
    assert!(output.contains("DEBUG mirage_kernel::platform: heap"), "{output}");
    let (status, output) = boot(Machine::Microvm, "-l off");
    assert_eq!(status, Some(exit_code(0)), "output:\n{output}");
    assert!(!output.contains("hello from"), "{output}");
}
