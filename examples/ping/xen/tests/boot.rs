//! Boots the ping-xen image as a domU of a Linux dom0 on Xen 4.17 under
//! QEMU (TCG), through the project's harness (`cargo xtask xen domu IMAGE
//! -- -- --ipv4 10.0.0.2/24 10.0.0.1 -c 3`): the guest pings dom0
//! (10.0.0.1/24 on the vif, netback) over netfront and prints the replies
//! on its PV console.
//!
//! The test builds the image itself (`--profile kernel`, in a target
//! directory of its own under `CARGO_TARGET_TMPDIR`), and runs `cargo
//! xtask xen prepare` first (see `examples/hello/xen/tests/boot.rs`); it
//! prints a SKIP line when the harness cannot be prepared because the
//! Debian mirror is unreachable. One boot takes a minute or more.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../..")
}

/// `cargo xtask ARGS`, built in a target directory of the test's own.
fn xtask(args: &[&str]) -> Output {
    Command::new(env!("CARGO"))
        .args(["run", "--quiet", "--package", "xtask", "--target-dir"])
        .arg(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("xtask"))
        .arg("--")
        .args(args)
        .current_dir(workspace())
        .output()
        .expect("run cargo xtask")
}

/// Prepares the harness once; `Err` with the reason to skip if the Debian
/// mirror cannot be reached.
fn harness() -> &'static Result<(), String> {
    static HARNESS: OnceLock<Result<(), String>> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let out = xtask(&["xen", "prepare"]);
        if out.status.success() {
            return Ok(());
        }
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        if text.contains("apt-get download") || text.contains("apt-get update") || text.contains("Temporary failure") {
            return Err(format!("the Xen harness cannot download its Debian packages: {}", text.trim_end()));
        }
        panic!("cargo xtask xen prepare failed ({}):\n{text}", out.status);
    })
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
        assert!(status.success(), "building the ping-xen image failed: {status}");
        target.join("kernel/ping-xen")
    })
}

macro_rules! require_harness {
    () => {
        if let Err(reason) = harness() {
            println!("SKIP: {reason}");
            return;
        }
    };
}

/// Path B: boots the image as a domU with `args` as its command line;
/// returns the harness's exit status and output.
fn boot_domu(args: &[&str]) -> (Option<i32>, String) {
    let image = image().to_str().expect("UTF-8 path").to_string();
    let mut words = vec!["xen", "domu", image.as_str(), "--"];
    words.extend_from_slice(args);
    let out = xtask(&words);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code(), text)
}

/// The text between `start` and `end` in `text`.
fn section<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = text.find(start)? + start.len();
    let to = from + text[from..].find(end)?;
    Some(&text[from..to])
}

#[test]
fn the_guest_pings_dom0_three_times_over_netback_and_powers_off() {
    require_harness!();
    let (status, output) = boot_domu(&["--", "--ipv4", "10.0.0.2/24", "10.0.0.1", "-c", "3", "-i", "0.5"]);
    assert_eq!(status, Some(0), "harness status; output:\n{output}");
    let console = section(&output, "===== guest console =====", "===== end guest console =====")
        .unwrap_or_else(|| panic!("no guest console:\n{output}"));
    assert!(console.contains("netfront: device/vif/0 connected, MAC 00:16:3e:00:00:01"), "{console}");
    assert!(console.contains("PING 10.0.0.1 56 data bytes"), "{console}");
    for seq in 1..=3 {
        let line = format!("64 bytes from 10.0.0.1: icmp_seq={seq} ttl=64 time=");
        assert!(console.contains(&line), "no reply {seq}:\n{console}");
    }
    assert!(console.contains("3 packets transmitted, 3 received, 0% packet loss"), "{console}");
    // on_crash = "preserve" keeps a domain that exited with a failure,
    // which the harness reports as still running.
    assert!(!output.contains("harness: guest still running"), "the guest did not power off:\n{output}");
}
