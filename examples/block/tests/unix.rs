//! Runs the built `block` binary as a Linux process against real files.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Command, Output};

/// A sparse file of `len` bytes in a fresh directory on the target's file
/// system.
fn sparse_image(len: u64) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temporary directory");
    let path = dir.path().join("disk.img");
    File::create(&path).and_then(|f| f.set_len(len)).expect("create sparse image");
    (dir, path)
}

fn block(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_block")).args(args).output().expect("run block")
}

fn block_flag(path: &Path, suffix: &str) -> String {
    format!("disk={}{suffix}", path.display())
}

fn describe(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn fills_and_verifies_a_64_mib_sparse_file() {
    let (_dir, path) = sparse_image(64 * 1024 * 1024);
    let out = block(&["--block", &block_flag(&path, "")]);
    assert!(out.status.success(), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("testing 131072 sectors of 512 bytes (64.0 MiB)"), "{stdout}");
    assert_eq!(stdout.matches("MiB/s").count(), 2, "a write and a read rate: {stdout}");
    assert!(stdout.contains("all 131072 sectors are intact"), "{stdout}");
    // The pattern really is on the disk: each sector starts with its number.
    let file = File::open(&path).expect("open image");
    for sector in [0u64, 1, 4095, 131_071] {
        let mut header = [0u8; 8];
        file.read_exact_at(&mut header, sector * 512).expect("read header");
        assert_eq!(u64::from_le_bytes(header), sector);
    }
}

#[test]
fn refuses_a_read_only_device() {
    let (_dir, path) = sparse_image(1024 * 1024);
    let out = block(&["--block", &block_flag(&path, ":ro")]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("refusing to test a read-only block device"), "{stdout}");
    assert!(std::fs::read(&path).expect("read image").iter().all(|&b| b == 0), "a read-only device was written");
}

#[test]
fn says_which_flag_is_missing() {
    let out = block(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("this application needs a block device named disk: pass --block disk=PATH"), "{stdout}");
}

#[test]
fn the_error_gets_out_even_with_logging_off() {
    let out = block(&["-l", "off"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(out.stdout.is_empty(), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("block: this application needs a block device named disk"), "{stderr}");
}

#[test]
fn names_a_missing_file() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temporary directory");
    let path = dir.path().join("absent.img");
    let out = block(&["--block", &block_flag(&path, "")]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("disk: cannot open read-write {}", path.display())), "{stdout}");
}

#[test]
fn a_malformed_block_flag_is_a_usage_error() {
    let out = block(&["--block", "disk"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--block"), "{}", describe(&out));
}
