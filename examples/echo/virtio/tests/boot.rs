//! Boots the echo-virtio image under QEMU (TCG) on a TAP device inside a
//! network namespace the test creates (and deletes): Linux's `nc` sends
//! data to the echo server and gets the same bytes back.
//!
//! QEMU runs inside the namespace (`ip netns exec`) on a persistent TAP
//! interface made there beforehand. Every wait is bounded. The test builds
//! the image itself (`cargo build -p echo-virtio --profile kernel`, under
//! `CARGO_TARGET_TMPDIR`). It needs root, /dev/net/tun,
//! `qemu-system-x86_64` (Debian `qemu-system-x86`), `ip` (iproute2), `nc`
//! (netcat-openbsd) and `timeout` (coreutils); without one it prints SKIP
//! and the reason.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use mirage_net_stack_linux_tests::{iface_name, missing, KillOnDrop, Netns};

/// How long the boot may take to reach the listening server.
const BOOT_TIMEOUT: Duration = Duration::from_secs(180);

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
        assert!(status.success(), "building the echo-virtio image failed: {status}");
        target.join("kernel/echo-virtio")
    })
}

/// 256 KiB of xorshift bytes, with no line structure for `nc` to care about.
fn payload() -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    (0..256 << 10)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

#[test]
fn echoes_what_nc_sends() {
    let qemu = Command::new("qemu-system-x86_64").arg("--version").stdout(Stdio::null()).status();
    if !qemu.is_ok_and(|s| s.success()) {
        println!("SKIP: qemu-system-x86_64 not found (Debian package qemu-system-x86)");
        return;
    }
    if let Some(reason) = missing(&[("nc", "netcat-openbsd"), ("timeout", "coreutils")]) {
        println!("SKIP: {reason}");
        return;
    }
    let tap = iface_name("ve");
    let ns = Netns::new("mirage-vecho").expect("create a network namespace");
    ns.exec(&["ip", "tuntap", "add", "dev", &tap, "mode", "tap"]).unwrap();
    ns.exec(&["ip", "addr", "add", "10.83.0.1/24", "dev", &tap]).unwrap();
    ns.exec(&["ip", "link", "set", &tap, "up"]).unwrap();

    let mut qemu = Command::new("ip")
        .args(["netns", "exec", ns.name(), "timeout", "600", "qemu-system-x86_64"])
        .args(["-M", "microvm", "-accel", "tcg", "-m", "128", "-nodefaults", "-nographic", "-no-reboot"])
        .args(["-serial", "stdio", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
        .args(["-device", "virtio-rng-device", "-netdev"])
        .arg(format!("tap,id=n0,ifname={tap},script=no,downscript=no"))
        .args(["-device", "virtio-net-device,netdev=n0", "-kernel"])
        .arg(image())
        .args(["-append", "--net net0 --ipv4 10.83.0.2/24"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start qemu");
    let mut stdout = qemu.stdout.take().unwrap();
    let _qemu = KillOnDrop(qemu);
    let output = Arc::new(Mutex::new(Vec::new()));
    let sink = output.clone();
    std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut chunk) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&chunk[..n]);
        }
    });
    let serial = || String::from_utf8_lossy(&output.lock().unwrap()).into_owned();
    let started = Instant::now();
    while !serial().contains("listening on 0.0.0.0:7") {
        assert!(started.elapsed() < BOOT_TIMEOUT, "the server did not start; serial output:\n{}", serial());
        std::thread::sleep(Duration::from_millis(100));
    }

    let data = payload();
    // -N: shut the connection down at the end of input, so the server's
    // echo ends and nc exits once it has everything back.
    let mut nc = Command::new("ip")
        .args(["netns", "exec", ns.name(), "timeout", "120", "nc", "-N", "10.83.0.2", "7"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start nc");
    let mut stdin = nc.stdin.take().unwrap();
    let input = data.clone();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let got = nc.wait_with_output().expect("wait for nc");
    writer.join().unwrap().expect("write to nc");
    assert!(got.status.success(), "nc: {}\nserial output:\n{}", got.status, serial());
    assert_eq!(got.stdout.len(), data.len(), "echoed length; serial output:\n{}", serial());
    assert!(got.stdout == data, "the echo differs");
}
