//! Boots the ping example's Xen image as a domU of a Linux dom0 on Xen 4.17
//! under QEMU (TCG), through the project's harness (`cargo xtask xen domu
//! IMAGE -- --ipv4 10.0.0.2/24 -- 10.0.0.1 -c 3`): the guest pings dom0
//! (10.0.0.1/24 on the vif, netback) over netfront and prints the replies
//! on its PV console.
//!
//! The test builds the image itself (as `cargo mirage build -t xen` does,
//! in a target directory of its own under `CARGO_TARGET_TMPDIR`) and needs
//! the harness prepared by `cargo xtask xen prepare` (see
//! `examples/hello/tests/xen.rs`); without it the test skips, or fails
//! under CI. One boot takes a minute or more.

use mirage_kernel_host::{kernel_image, xen_harness};

#[test]
fn the_guest_pings_dom0_three_times_over_netback_and_powers_off() {
    let Some(xen) = xen_harness!() else { return };
    let run = xen.domu(&kernel_image!(xen), &["--", "--ipv4", "10.0.0.2/24", "--", "10.0.0.1", "-c", "3", "-i", "0.5"]);
    let output = &run.output;
    assert_eq!(run.status, Some(0), "harness status; output:\n{output}");
    let console = *run.consoles().first().unwrap_or_else(|| panic!("no guest console:\n{output}"));
    assert!(console.contains("--net net0: netfront device/vif/0 connected, MAC 00:16:3e:00:00:01"), "{console}");
    assert!(console.contains("PING 10.0.0.1 56 data bytes"), "{console}");
    for seq in 1..=3 {
        let line = format!("64 bytes from 10.0.0.1: icmp_seq={seq} ttl=64 time=");
        assert!(console.contains(&line), "no reply {seq}:\n{console}");
    }
    assert!(console.contains("3 packets transmitted, 3 received, 0% packet loss"), "{console}");
    // on_crash = "preserve" keeps a domain that exited with a failure,
    // which the harness reports as crashed.
    assert!(run.every_run_powered_off(), "the guest did not power off:\n{output}");
}
