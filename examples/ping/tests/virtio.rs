//! Boots the ping example's virtio image under QEMU (TCG) on a TAP device inside a
//! network namespace the test creates (and deletes): the unikernel pings
//! Linux's address and exits 0 with three replies; pinging an address
//! nobody has exits 1.
//!
//! QEMU runs inside the namespace (`ip netns exec`) on a persistent TAP
//! interface made there beforehand, under `timeout`. The test builds the
//! image itself (as `cargo mirage build -t virtio` does, under
//! `CARGO_TARGET_TMPDIR`). It needs root, /dev/net/tun,
//! `qemu-system-x86_64` (Debian `qemu-system-x86`), `ip` (iproute2) and
//! `timeout` (coreutils); without one it skips, or fails under CI
//! (`mirage_test_env`), naming it.

use std::time::Duration;

use mirage_kernel_host::kernel_image;
use mirage_kernel_host::qemu::{exit_code, missing_qemu, Exit, Machine, Qemu};
use mirage_net_stack_linux_tests::{iface_name, missing, Netns};
use mirage_test_env::require;

/// How long one run may take: QEMU is stopped then.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

/// Boots the image in `ns` on `tap` with `append` and waits until it exits.
fn boot(ns: &Netns, tap: &str, append: &str) -> Exit {
    Qemu::new(&kernel_image!(virtio), Machine::Microvm)
        .rng()
        .tap(tap)
        .append(append)
        .in_netns(ns.name())
        .run(RUN_TIMEOUT)
}

#[test]
fn pings_linux_and_reports_a_silent_address() {
    require!(missing_qemu());
    require!(missing(&[("timeout", "coreutils")]));
    let tap = iface_name("vp");
    let ns = Netns::new("mirage-vping").expect("create a network namespace");
    ns.exec(&["ip", "tuntap", "add", "dev", &tap, "mode", "tap"]).unwrap();
    ns.exec(&["ip", "addr", "add", "10.85.0.1/24", "dev", &tap]).unwrap();
    ns.exec(&["ip", "link", "set", &tap, "up"]).unwrap();

    let out = boot(&ns, &tap, "--net net0 --ipv4 10.85.0.2/24 -- 10.85.0.1 -c 3 -i 0.2 -s 1400");
    let serial = &out.output;
    assert_eq!(out.code, Some(exit_code(0)), "serial output:\n{serial}");
    for seq in 1..=3 {
        assert!(serial.contains(&format!("1408 bytes from 10.85.0.1: icmp_seq={seq} ttl=64 time=")), "{serial}");
    }
    assert!(serial.contains("3 packets transmitted, 3 received, 0% packet loss"), "{serial}");

    let out = boot(&ns, &tap, "--net net0 --ipv4 10.85.0.2/24 -- 10.85.0.99 -c 2 -i 0.1 -W 0.5");
    let serial = &out.output;
    // Application error (1).
    assert_eq!(out.code, Some(exit_code(1)), "serial output:\n{serial}");
    assert!(serial.contains("2 packets transmitted, 0 received, 100% packet loss"), "{serial}");
}
