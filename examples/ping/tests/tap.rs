//! Runs the ping binary on our own stack (`--net net0=tap:IFACE`) on a TAP
//! device in a network namespace the
//! test creates (and deletes) against the namespace's Linux address, and
//! against an address nobody has.
//!
//! The TAP interface is created persistent in the namespace beforehand and
//! the binary runs inside the namespace, so it attaches to that interface
//! while its kernel end already has the Linux address.
//!
//! Needs root, /dev/net/tun, `ip` (iproute2) and `timeout` (coreutils);
//! without them the test skips, or fails under CI (`mirage_test_env`).

use std::process::{Command, Output};

use mirage_net_stack_linux_tests::{iface_name, missing, Netns};
use mirage_test_env::require;

fn ping_unix(ns: &Netns, iface: &str, app_args: &[&str]) -> Output {
    // `timeout` bounds the run even if the binary misbehaves.
    let net = format!("net0=tap:{iface}");
    Command::new("ip")
        .args(["netns", "exec", ns.name(), "timeout", "60", env!("CARGO_BIN_EXE_ping")])
        .args(["--net", &net, "--ipv4", "10.80.0.2/24", "--"])
        .args(app_args)
        .output()
        .expect("run ping")
}

#[test]
fn ping_unix_pings_linux_over_tap() {
    require!(missing(&[("timeout", "coreutils")]));
    let Some(ns) = Netns::new_or_skip("mirage-ping") else { return };
    let iface = iface_name("p");
    ns.exec(&["ip", "tuntap", "add", "dev", &iface, "mode", "tap"]).unwrap();
    ns.exec(&["ip", "addr", "add", "10.80.0.1/24", "dev", &iface]).unwrap();
    ns.exec(&["ip", "link", "set", &iface, "up"]).unwrap();

    let out = ping_unix(&ns, &iface, &["10.80.0.1", "-c", "3", "-i", "0.2", "-s", "1400"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = format!("status {}\nstdout:\n{stdout}\nstderr:\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{report}");
    assert!(stdout.lines().any(|l| l == "PING 10.80.0.1 1400 data bytes"), "{report}");
    for seq in 1..=3 {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("1408 bytes from 10.80.0.1: icmp_seq={seq} ttl=64 time=")))
            .unwrap_or_else(|| panic!("no reply line for icmp_seq={seq}: {report}"));
        assert!(line.ends_with(" ms"), "{line}");
    }
    assert!(stdout.contains("--- 10.80.0.1 ping statistics ---"), "{report}");
    assert!(stdout.contains("3 packets transmitted, 3 received, 0% packet loss"), "{report}");
    assert!(stdout.contains("rtt min/avg/max = "), "{report}");

    // Nobody has 10.80.0.99: every request fails, the summary says so and
    // the exit status is not zero.
    let out = ping_unix(&ns, &iface, &["10.80.0.99", "-c", "2", "-i", "0.1", "-W", "0.5"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "stdout:\n{stdout}\nstderr:\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("2 packets transmitted, 0 received, 100% packet loss"), "{stdout}");
    assert!(!stdout.contains("rtt"), "{stdout}");
}
