//! Linux as a TCP peer of our stack, over TAP in a network namespace each
//! test creates (and deletes): `curl` fetches 10 MiB over HTTP, and `nc`
//! (netcat-openbsd) pushes bytes to an echo service and reads them back,
//! byte-exact; on a clean link, under `tc netem` delay, loss, reordering
//! and duplication, and with Linux's SACK, timestamps and window scaling
//! each turned off. `tcp_lossy.rs` makes the same faults on our side of
//! the TAP device, for kernels without netem.
//!
//! The services are test-local (an echo and a one-file HTTP responder on
//! our stack, in this process, from `tcp_services`), so the tests need no
//! other binary.
//!
//! Needs root, /dev/net/tun, `ip` and `tc` (iproute2), `curl` (curl) and
//! `nc` (netcat-openbsd), and the netem test a kernel with netem; without
//! them each test skips, or fails under CI (`mirage_test_env`).
//! Every command runs under a deadline, so a stall fails instead of
//! hanging.

use std::rc::Rc;
use std::time::Duration;

use mirage_net_stack_linux_tests::tcp_services::{curl_fetch, nc_echo, run_in, with_tcp_services};
use mirage_test_env::skip;

#[test]
fn curl_and_nc_move_10_mib_byte_exact() {
    with_tcp_services("mirage-tcp", "t", 81, 10 << 20, Rc::new, |s| async move {
        curl_fetch(&s.ns, s.ours, &s.file, Duration::from_secs(60)).await;
        nc_echo(&s.ns, s.ours, 10 << 20, 1, Duration::from_secs(90)).await;
    });
}

#[test]
#[ignore = "needs the netem qdisc, which the kernels of this project's machines and CI lack; \
            tcp_lossy.rs covers loss, reordering and duplication with nftables and the fault injector"]
fn curl_and_nc_under_netem_delay_loss_reordering_and_duplication() {
    with_tcp_services("mirage-tcpnetem", "n", 82, 2 << 20, Rc::new, |s| async move {
        let netem = [
            "tc",
            "qdisc",
            "add",
            "dev",
            &s.iface,
            "root",
            "netem",
            "delay",
            "20ms",
            "loss",
            "5%",
            "reorder",
            "25%",
            "duplicate",
            "1%",
        ];
        if let Err(e) = run_in(&s.ns, &netem, None, Duration::from_secs(10)).await {
            return skip(format!(
                "the kernel has no netem qdisc (CONFIG_NET_SCH_NETEM, the module sch_netem of Debian's kernels); \
                 tcp_lossy.rs makes the same faults without it: {e}"
            ));
        }
        curl_fetch(&s.ns, s.ours, &s.file, Duration::from_secs(60)).await;
        nc_echo(&s.ns, s.ours, 2 << 20, 2, Duration::from_secs(90)).await;
    });
}

#[test]
fn nc_echo_with_linux_sack_timestamps_and_window_scaling_each_off() {
    with_tcp_services("mirage-tcpopts", "o", 83, 1 << 20, Rc::new, |s| async move {
        for (i, option) in
            ["net.ipv4.tcp_sack", "net.ipv4.tcp_timestamps", "net.ipv4.tcp_window_scaling"].into_iter().enumerate()
        {
            run_in(&s.ns, &["sysctl", "-qw", &format!("{option}=0")], None, Duration::from_secs(10)).await.unwrap();
            nc_echo(&s.ns, s.ours, 4 << 20, 10 + i as u64, Duration::from_secs(90)).await;
            run_in(&s.ns, &["sysctl", "-qw", &format!("{option}=1")], None, Duration::from_secs(10)).await.unwrap();
        }
    });
}
