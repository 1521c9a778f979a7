//! Boots the block-xen image on Xen 4.17 under QEMU (TCG) as a domU of a
//! Linux dom0 (path B, `cargo xtask xen domu`), whose toolstack gives it
//! an 8 MiB zeroed disk `xvda` served by blkback: the block example writes
//! its pattern over every sector through blkfront, flushes, reads it all
//! back and verifies it byte for byte; then concurrent reads and the
//! grants left after close are checked.
//!
//! The test builds the image itself (`--profile kernel`, in a target
//! directory of its own under `CARGO_TARGET_TMPDIR`) and prepares the
//! harness (see `examples/hello/xen/tests/boot.rs`); it prints a SKIP line
//! when the Debian mirror cannot be reached.

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
        assert!(status.success(), "building the block-xen image failed: {status}");
        target.join("kernel/block-xen")
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
fn the_block_example_verifies_the_whole_8_mib_xvda_through_blkback() {
    require_harness!();
    let (status, output) = boot_domu(&[]);
    assert_eq!(status, Some(0), "harness status; output:\n{output}");
    let console = *consoles(&output).first().unwrap_or_else(|| panic!("no guest console:\n{output}"));
    assert!(
        console.contains("blkfront device/vbd/51712: 16384 sectors of 512 bytes (8.0 MiB), read-write"),
        "{console}"
    );
    // Every sector carries its number and the run's seed: a lost or
    // misdirected write fails verification with a message.
    assert!(console.contains("testing 16384 sectors of 512 bytes (8.0 MiB)"), "{console}");
    assert!(console.contains("wrote and flushed in"), "{console}");
    assert!(console.contains("all 16384 sectors are intact"), "{console}");
    let line = console.lines().find(|l| l.contains("concurrent reads verified")).expect("concurrent reads line");
    let most: usize = line.rsplit("at most ").next().and_then(|r| r.split(' ').next()).unwrap().parse().unwrap();
    assert!(most > 1, "requests never overlapped: {line}");
    let line = console.lines().find(|l| l.contains("blkfront: closed;")).unwrap_or_else(|| panic!("{console}"));
    let numbers: Vec<u64> = line.split(' ').filter_map(|w| w.trim_end_matches(',').parse().ok()).collect();
    assert!(numbers.len() == 2 && numbers[0] == numbers[1], "close left grants behind: {line}");
    assert!(!output.contains("harness: guest still running"), "the guest did not power off:\n{output}");
}
