//! Boots the kv-xen image twice on the same disk as a domU of a Linux dom0
//! (path B, `cargo xtask xen domu IMAGE --runs 2`): the first run finds the
//! harness's zeroed 8 MiB `xvda` blank and formats a store, the second
//! finds the boot counter the first left there through blkback.
//!
//! Builds the image and prepares the harness as
//! `examples/hello/xen/tests/boot.rs` does; prints a SKIP line when the
//! Debian mirror cannot be reached.

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
        assert!(status.success(), "building the kv-xen image failed: {status}");
        target.join("kernel/kv-xen")
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

/// Path B: boots the image as a domU of a Linux dom0 with the harness's
/// zeroed 8 MiB disk `xvda` (`cargo xtask xen domu IMAGE ARGS`); returns
/// the harness's exit status and output, in which dom0 prints each run's
/// `xl console` between markers.
fn boot_domu(args: &[&str]) -> (Option<i32>, String) {
    let image = image().to_str().expect("UTF-8 path").to_string();
    let mut words = vec!["xen", "domu", image.as_str()];
    words.extend_from_slice(args);
    let out = xtask(&words);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code(), text)
}

/// Every run's guest console, in order.
fn consoles(output: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = output;
    while let Some(start) = rest.find("===== guest console =====") {
        let Some(len) = rest[start..].find("===== end guest console =====") else { break };
        out.push(&rest[start..start + len]);
        rest = &rest[start + len..];
    }
    out
}

#[test]
fn counts_boots_across_two_guest_runs_on_the_same_disk() {
    require_harness!();
    let (status, output) = boot_domu(&["--runs", "2", "--", "/boot/count"]);
    assert_eq!(status, Some(0), "harness status; output:\n{output}");
    let runs = consoles(&output);
    assert_eq!(runs.len(), 2, "output:\n{output}");
    assert!(runs[0].contains("formatting a new store"), "first run:\n{}", runs[0]);
    assert!(runs[0].contains("/boot/count is not set") && runs[0].contains("boot count: 1"), "first run:\n{}", runs[0]);
    assert!(!runs[1].contains("formatting"), "second run:\n{}", runs[1]);
    assert!(runs[1].contains("/boot/count = \"1\"") && runs[1].contains("boot count: 2"), "second run:\n{}", runs[1]);
    assert!(!output.contains("harness: guest still running"), "a run did not power off:\n{output}");
}
