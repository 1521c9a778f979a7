//! Boots the hello example's Xen image on Xen 4.17 under QEMU (TCG) as
//! Xen's PVH dom0 and as a domU, through the project's harness (`cargo
//! xtask xen dom0|domu IMAGE`), and checks what it prints and how it exits.
//! (The platform's own probes are tested by `platform-xen/selftest`.)
//!
//! The test builds the image itself (as `cargo mirage build -t xen` does,
//! in a target directory of its own under `CARGO_TARGET_TMPDIR`). It needs
//! the harness prepared in `target/xen-harness` by `cargo xtask xen
//! prepare`, which downloads Xen's Debian packages once and installs
//! QEMU >= 10 from bookworm-backports (Debian: `qemu-system-x86`, `cpio`,
//! `gzip`); `cargo xtask test` runs it before the tests, which never reach
//! the network themselves. Without it the tests skip, or fail under CI
//! (`mirage_test_env`).

use mirage_kernel_host::xen::XenRun;
use mirage_kernel_host::{kernel_image, xen_harness};

#[test]
fn hello_greets_four_times_as_dom0_and_exits_zero() {
    let Some(xen) = xen_harness!() else { return };
    let XenRun { status, output } = xen.dom0(&kernel_image!(xen), &[]);
    assert_eq!(status, Some(0), "exit status; output:\n{output}");
    let greetings: Vec<&str> = output.lines().filter(|l| l.contains("hello from mirage-rs")).collect();
    assert_eq!(greetings.len(), 4, "output:\n{output}");
    let mut stamps = Vec::new();
    for (i, line) in greetings.iter().enumerate() {
        assert!(line.contains(&format!("({}/4)", i + 1)), "line {i} out of order: {line}");
        let stamp = line.split("] INFO").next().unwrap_or("").rsplit('[').next().unwrap_or("").trim();
        stamps.push(stamp.parse::<f64>().unwrap_or_else(|_| panic!("no timestamp in {line:?}")));
    }
    // hello sleeps until fixed deadlines one second apart; idling until
    // Xen's one-shot timer must not wake it early (no upper bound: TCG may be late).
    for (i, stamp) in stamps.iter().enumerate() {
        assert!(stamp - stamps[0] >= i as f64 - 0.01, "greeting {i}: {stamps:?}");
    }
}

#[test]
fn a_bad_command_line_is_a_usage_error_on_the_xen_console() {
    let Some(xen) = xen_harness!() else { return };
    let XenRun { status, output } = xen.dom0(&kernel_image!(xen), &["--", "--frobnicate"]);
    assert_eq!(status, Some(2), "output:\n{output}");
    assert!(output.contains("hello: error: unknown flag \"--frobnicate\""), "{output}");
    assert!(!output.contains("hello from"), "{output}");
}

#[test]
fn hello_greets_four_times_through_the_pv_console_ring_as_a_domu_and_powers_off() {
    let Some(xen) = xen_harness!() else { return };
    let run = xen.domu(&kernel_image!(xen), &[]);
    let (status, output) = (run.status, &run.output);
    assert_eq!(status, Some(0), "harness status; output:\n{output}");
    let console = *run.consoles().first().unwrap_or_else(|| panic!("no guest console:\n{output}"));
    let greetings: Vec<&str> = console.lines().filter(|l| l.contains("hello from mirage-rs")).collect();
    assert_eq!(greetings.len(), 4, "console:\n{console}");
    for (i, line) in greetings.iter().enumerate() {
        assert!(line.contains(&format!("({}/4)", i + 1)), "line {i} out of order: {line}");
    }
    assert!(output.lines().any(|l| l.starts_with("harness: ") && l.contains(" guest running")), "{output}");
    // on_crash = "preserve" keeps a crashed domain, which the harness then
    // reports as crashed: its absence means SHUTDOWN_poweroff.
    assert!(run.every_run_powered_off(), "the guest did not power off:\n{output}");
}
