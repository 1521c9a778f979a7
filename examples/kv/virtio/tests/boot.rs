//! Boots the kv-virtio image twice under QEMU (TCG) on the same raw disk
//! image: the first boot formats the blank image, the second finds the
//! counter the first left. Builds the image itself (see
//! `examples/hello/virtio/tests/boot.rs`); needs `qemu-system-x86_64`
//! (Debian: `qemu-system-x86`) and prints a SKIP line without it.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long one boot may take before the test kills QEMU.
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

fn image() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("kernel-images");
    let status = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--profile", "kernel", "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target)
        .status()
        .expect("run cargo to build the kernel image");
    assert!(status.success(), "building the kv-virtio image failed: {status}");
    target.join("kernel/kv-virtio")
}

fn boot(image: &Path, disk: &Path, append: &str) -> (Option<i32>, String) {
    let mut qemu = Command::new("qemu-system-x86_64")
        .args(["-M", "microvm", "-accel", "tcg", "-m", "128", "-nodefaults", "-nographic", "-no-reboot"])
        .args(["-serial", "stdio", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-kernel"])
        .arg(image)
        .args(["-append", append, "-drive"])
        .arg(format!("if=none,file={},format=raw,id=d0", disk.display()))
        .args(["-device", "virtio-blk-device,drive=d0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start qemu");
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
            let _ = qemu.wait();
            let output = String::from_utf8_lossy(&reader.join().expect("reader thread")).into_owned();
            panic!("QEMU ({append:?}) did not exit within {BOOT_TIMEOUT:?}; output:\n{output}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (status.code(), String::from_utf8_lossy(&reader.join().expect("reader thread")).into_owned())
}

#[test]
fn counts_boots_across_two_runs_on_one_image() {
    if !Command::new("qemu-system-x86_64").arg("--version").stdout(Stdio::null()).status().is_ok_and(|s| s.success()) {
        println!("SKIP: qemu-system-x86_64 not found (Debian package qemu-system-x86)");
        return;
    }
    let image = image();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temporary directory");
    let disk = dir.path().join("store.img");
    File::create(&disk).and_then(|f| f.set_len(1 << 20)).expect("create disk image");

    let (status, output) = boot(&image, &disk, "--block store");
    assert_eq!(status, Some(1), "first boot; output:\n{output}");
    assert!(output.contains("formatting a new store") && output.contains("boot count: 1"), "{output}");

    let (status, output) = boot(&image, &disk, "--block store -- /boot/count");
    assert_eq!(status, Some(1), "second boot; output:\n{output}");
    assert!(!output.contains("formatting"), "{output}");
    assert!(output.contains("/boot/count = \"1\"") && output.contains("boot count: 2"), "{output}");
}
