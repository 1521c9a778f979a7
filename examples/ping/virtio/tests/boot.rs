//! Boots the ping-virtio image under QEMU (TCG) on a TAP device inside a
//! network namespace the test creates (and deletes): the unikernel pings
//! Linux's address and exits 0 with three replies; pinging an address
//! nobody has exits 1.
//!
//! QEMU runs inside the namespace (`ip netns exec`) on a persistent TAP
//! interface made there beforehand, under `timeout`. The test builds the
//! image itself (`cargo build -p ping-virtio --profile kernel`, under
//! `CARGO_TARGET_TMPDIR`). It needs root, /dev/net/tun,
//! `qemu-system-x86_64` (Debian `qemu-system-x86`), `ip` (iproute2) and
//! `timeout` (coreutils); without one it prints SKIP and the reason.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use mirage_net_stack_linux_tests::{iface_name, missing, Netns};

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
        assert!(status.success(), "building the ping-virtio image failed: {status}");
        target.join("kernel/ping-virtio")
    })
}

/// Boots the image in `ns` on `tap` with `append`; `timeout` bounds the
/// run, and the output is complete when QEMU has exited.
fn boot(ns: &Netns, tap: &str, append: &str) -> Output {
    Command::new("ip")
        .args(["netns", "exec", ns.name(), "timeout", "300", "qemu-system-x86_64"])
        .args(["-M", "microvm", "-accel", "tcg", "-m", "128", "-nodefaults", "-nographic", "-no-reboot"])
        .args(["-serial", "stdio", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
        .args(["-device", "virtio-rng-device", "-netdev"])
        .arg(format!("tap,id=n0,ifname={tap},script=no,downscript=no"))
        .args(["-device", "virtio-net-device,netdev=n0", "-kernel"])
        .arg(image())
        .args(["-append", append])
        .stdin(Stdio::null())
        .output()
        .expect("run qemu")
}

#[test]
fn pings_linux_and_reports_a_silent_address() {
    let qemu = Command::new("qemu-system-x86_64").arg("--version").stdout(Stdio::null()).status();
    if !qemu.is_ok_and(|s| s.success()) {
        println!("SKIP: qemu-system-x86_64 not found (Debian package qemu-system-x86)");
        return;
    }
    if let Some(reason) = missing(&[("timeout", "coreutils")]) {
        println!("SKIP: {reason}");
        return;
    }
    let tap = iface_name("vp");
    let ns = Netns::new("mirage-vping").expect("create a network namespace");
    ns.exec(&["ip", "tuntap", "add", "dev", &tap, "mode", "tap"]).unwrap();
    ns.exec(&["ip", "addr", "add", "10.85.0.1/24", "dev", &tap]).unwrap();
    ns.exec(&["ip", "link", "set", &tap, "up"]).unwrap();

    let out = boot(&ns, &tap, "--net net0 --ipv4 10.85.0.2/24 -- 10.85.0.1 -c 3 -i 0.2 -s 1400");
    let serial = String::from_utf8_lossy(&out.stdout);
    // Success (0) through isa-debug-exit: 0 * 2 + 1.
    assert_eq!(out.status.code(), Some(1), "serial output:\n{serial}");
    for seq in 1..=3 {
        assert!(serial.contains(&format!("1408 bytes from 10.85.0.1: icmp_seq={seq} ttl=64 time=")), "{serial}");
    }
    assert!(serial.contains("3 packets transmitted, 3 received, 0% packet loss"), "{serial}");

    let out = boot(&ns, &tap, "--net net0 --ipv4 10.85.0.2/24 -- 10.85.0.99 -c 2 -i 0.1 -W 0.5");
    let serial = String::from_utf8_lossy(&out.stdout);
    // Application error (1): 1 * 2 + 1.
    assert_eq!(out.status.code(), Some(3), "serial output:\n{serial}");
    assert!(serial.contains("2 packets transmitted, 0 received, 100% packet loss"), "{serial}");
}
