//! Runs the echo binary on our own stack (`--net net0=tap:IFACE`) on a
//! TAP device in a network namespace the
//! test creates (and deletes): Linux's `nc` (netcat-openbsd) pushes 10 MiB
//! to it and reads them back byte-exact.
//!
//! The TAP interface is created persistent in the namespace beforehand and
//! the binary runs inside the namespace, so it attaches to that interface
//! while its kernel end already has the Linux address.
//!
//! Needs root, /dev/net/tun, `ip` (iproute2), `nc` (netcat-openbsd) and
//! `timeout` (coreutils); without them the test skips, or fails under CI
//! (`mirage_test_env`).

use std::process::{Command, Stdio};
use std::time::Duration;

use mirage_net_stack_linux_tests::{iface_name, missing, run_in_netns, KillOnDrop, Netns};
use mirage_test_env::require;

const OURS: &str = "10.88.0.2";

/// `len` bytes no run of which repeats soon (so a misplaced segment shows).
fn content(len: usize) -> Vec<u8> {
    mirage_testkit::pattern(0x2545_f491_4f6c_dd1d, len)
}

/// Sends a short line until echo echoes it, for at most 20 s; panics
/// if the binary exits or never answers.
fn wait_until_echoing(ns: &Netns, server: &mut KillOnDrop) {
    // Each pass is one attempt of at most 2 s.
    for _ in 0..10 {
        if let Some(status) = server.0.try_wait().unwrap() {
            panic!("echo exited with {status} before listening");
        }
        let hello = b"hello\n".to_vec();
        match run_in_netns(ns.name(), &["nc", "-N", "-w", "2", OURS, "7"], Some(hello.clone()), Duration::from_secs(3))
        {
            Ok(back) => {
                assert_eq!(back, hello, "the echo differs");
                return;
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
    panic!("echo did not echo on {OURS} port 7 within 20 s");
}

#[test]
fn echo_tap_echoes_10_mib_byte_exact() {
    require!(missing(&[("nc", "netcat-openbsd"), ("timeout", "coreutils")]));
    let Some(ns) = Netns::new_or_skip("mirage-echotap") else { return };
    let iface = iface_name("e");
    ns.exec(&["ip", "tuntap", "add", "dev", &iface, "mode", "tap"]).unwrap();
    ns.exec(&["ip", "addr", "add", "10.88.0.1/24", "dev", &iface]).unwrap();
    ns.exec(&["ip", "link", "set", &iface, "up"]).unwrap();
    // `ip netns exec` execs the binary itself, so killing this child kills echo.
    let mut server = KillOnDrop(
        Command::new("ip")
            .args(["netns", "exec", ns.name(), env!("CARGO_BIN_EXE_echo")])
            .args(["--net", &format!("net0=tap:{iface}"), "--ipv4", &format!("{OURS}/24"), "-l", "warn"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("start echo"),
    );
    wait_until_echoing(&ns, &mut server);

    let data = content(10 << 20);
    // -N: shut the socket's write side at end of stdin, then read until
    // echo closes.
    let got = run_in_netns(ns.name(), &["nc", "-N", OURS, "7"], Some(data.clone()), Duration::from_secs(90));
    let got = got.unwrap();
    assert_eq!(got.len(), data.len(), "nc got {} of {} bytes back", got.len(), data.len());
    assert!(got == data, "the echo differs from what nc sent");
    assert!(server.0.try_wait().unwrap().is_none(), "echo exited during the test");
}
