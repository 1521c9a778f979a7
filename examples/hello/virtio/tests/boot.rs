//! Boots the hello-virtio image under QEMU (TCG) and checks what it prints
//! on the serial console and how it exits.
//!
//! The test builds the image itself with `cargo build -p hello-virtio
//! --profile kernel`, in a target directory of its own under
//! `CARGO_TARGET_TMPDIR` (the outer `cargo test` holds the lock of the
//! usual one). It needs `qemu-system-x86_64` (Debian: `qemu-system-x86`)
//! and prints a SKIP line when it is absent.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long one boot may take before the test kills QEMU: hello needs
/// about 3 s, TCG on a loaded 2-core machine can be several times slower.
const BOOT_TIMEOUT: Duration = Duration::from_secs(60);

/// QEMU's exit status for a guest status through isa-debug-exit.
fn qemu_status(guest: i32) -> i32 {
    (guest << 1) | 1
}

fn qemu_available() -> bool {
    Command::new("qemu-system-x86_64").arg("--version").stdout(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// Builds the image once per test process and returns its path.
fn image() -> &'static PathBuf {
    static IMAGE: OnceLock<PathBuf> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
        let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("kernel-images");
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "--profile", "kernel", "--manifest-path"])
            .arg(&manifest)
            .arg("--target-dir")
            .arg(&target)
            .status()
            .expect("run cargo to build the kernel image");
        assert!(status.success(), "building the hello-virtio image failed: {status}");
        target.join("kernel/hello-virtio")
    })
}

/// Boots the image on `machine` with `append` as the command line; returns
/// QEMU's exit code and the serial output.
fn boot(machine: &str, append: &str) -> (Option<i32>, String) {
    let (status, output, _) = boot_timed(machine, append);
    (status, output)
}

/// [`boot`], also returning how long QEMU ran on the host.
fn boot_timed(machine: &str, append: &str) -> (Option<i32>, String, Duration) {
    let mut qemu = Command::new("qemu-system-x86_64")
        .args(["-M", machine, "-accel", "tcg", "-m", "128", "-nodefaults", "-nographic", "-no-reboot"])
        .args(["-serial", "stdio", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-kernel"])
        .arg(image())
        .args(["-append", append])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start qemu-system-x86_64");
    let mut stdout = qemu.stdout.take().expect("stdout is piped");
    let reader = std::thread::spawn(move || {
        let mut output = Vec::new();
        let _ = stdout.read_to_end(&mut output);
        output
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = qemu.try_wait().expect("wait for qemu") {
            break status;
        }
        if started.elapsed() > BOOT_TIMEOUT {
            let _ = qemu.kill();
            let status = qemu.wait().expect("reap qemu");
            let output = String::from_utf8_lossy(&reader.join().expect("reader thread")).into_owned();
            panic!("QEMU ({machine}, {append:?}) did not exit within {BOOT_TIMEOUT:?} ({status}); output:\n{output}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let ran = started.elapsed();
    let output = String::from_utf8_lossy(&reader.join().expect("reader thread")).into_owned();
    (status.code(), output, ran)
}

macro_rules! require_qemu {
    () => {
        if !qemu_available() {
            println!("SKIP: qemu-system-x86_64 not found (Debian package qemu-system-x86)");
            return;
        }
    };
}

fn check_greetings(machine: &str) {
    let (status, output, ran) = boot_timed(machine, "");
    assert_eq!(status, Some(qemu_status(0)), "{machine}: exit status; output:\n{output}");
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
    require_qemu!();
    check_greetings("microvm");
}

#[test]
fn greets_on_q35_too() {
    require_qemu!();
    check_greetings("q35");
}

#[test]
fn a_panic_prints_message_and_location_and_exits_non_zero() {
    require_qemu!();
    let (status, output) = boot("microvm", "-- panic");
    assert_eq!(status, Some(qemu_status(101)), "output:\n{output}");
    assert!(output.contains("kernel panic: panic requested on the command line"), "{output}");
    assert!(output.contains("examples/hello/virtio/src/main.rs:"), "no location: {output}");
    assert!(!output.contains("hello from mirage-rs"), "{output}");
}

#[test]
fn a_cpu_exception_is_reported_and_exits_non_zero() {
    require_qemu!();
    let (status, output) = boot("microvm", "-- breakpoint");
    assert_eq!(status, Some(qemu_status(102)), "output:\n{output}");
    assert!(output.contains("kernel exception: breakpoint (vector 3), error code 0x0, at rip 0x"), "{output}");
}

#[test]
fn a_bad_command_line_is_a_usage_error() {
    require_qemu!();
    let (status, output) = boot("microvm", "--frobnicate");
    assert_eq!(status, Some(qemu_status(2)), "output:\n{output}");
    assert!(output.contains("unknown kernel flag \"--frobnicate\""), "{output}");
}

#[test]
fn the_log_filter_comes_from_the_command_line() {
    require_qemu!();
    let (status, output) = boot("microvm", "-l debug");
    assert_eq!(status, Some(qemu_status(0)), "output:\n{output}");
    assert!(output.contains("DEBUG mirage_kernel::platform: heap"), "{output}");
    let (status, output) = boot("microvm", "-l off");
    assert_eq!(status, Some(qemu_status(0)), "output:\n{output}");
    assert!(!output.contains("hello from"), "{output}");
}
