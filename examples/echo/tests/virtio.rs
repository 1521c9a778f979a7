//! Boots the echo example's virtio image under QEMU (TCG) on a TAP device inside a
//! network namespace the test creates (and deletes): Linux's `nc` sends
//! data to the echo server and gets the same bytes back.
//!
//! QEMU runs inside the namespace (`ip netns exec`) on a persistent TAP
//! interface made there beforehand. Every wait is bounded. The test builds
//! the image itself (as `cargo mirage build -t virtio` does, under
//! `CARGO_TARGET_TMPDIR`). It needs root, /dev/net/tun,
//! `qemu-system-x86_64` (Debian `qemu-system-x86`), `ip` (iproute2), `nc`
//! (netcat-openbsd) and `timeout` (coreutils); without one it skips, or
//! fails under CI (`mirage_test_env`), naming it.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use mirage_kernel_host::kernel_image;
use mirage_kernel_host::qemu::{missing_qemu, Machine, Qemu};
use mirage_net_stack_linux_tests::{iface_name, missing, Netns};
use mirage_test_env::require;

/// How long the boot may take to reach the listening server.
const BOOT_TIMEOUT: Duration = Duration::from_secs(180);

/// 256 KiB of xorshift bytes, with no line structure for `nc` to care about.
fn payload() -> Vec<u8> {
    mirage_testkit::pattern(0x2545_f491_4f6c_dd1d, 256 << 10)
}

#[test]
fn echoes_what_nc_sends() {
    require!(missing_qemu());
    require!(missing(&[("nc", "netcat-openbsd"), ("timeout", "coreutils")]));
    let tap = iface_name("ve");
    let ns = Netns::new("mirage-vecho").expect("create a network namespace");
    ns.exec(&["ip", "tuntap", "add", "dev", &tap, "mode", "tap"]).unwrap();
    ns.exec(&["ip", "addr", "add", "10.83.0.1/24", "dev", &tap]).unwrap();
    ns.exec(&["ip", "link", "set", &tap, "up"]).unwrap();

    let guest = Qemu::new(&kernel_image!(virtio), Machine::Microvm)
        .rng()
        .tap(&tap)
        .append("--net net0 --ipv4 10.83.0.2/24")
        .in_netns(ns.name())
        .spawn();
    guest.wait_for("listening on 0.0.0.0:7", BOOT_TIMEOUT);
    let serial = || guest.output();

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
