//! Linux as a TCP peer of our stack over a lossy path: the faults of
//! netem's `delay 20ms loss 5% reorder 25% duplicate 1%`, made by
//! [`FaultyNetwork`] on our side of the TAP device in both directions
//! (this kernel may lack `tc netem`), so Linux's sender and ours both
//! recover from loss, reordering and duplicates.
//!
//! `curl` fetches a file from our HTTP responder and `nc` (netcat-openbsd)
//! pushes bytes to our echo and reads them back, byte-exact; once more
//! with Linux's SACK off in the namespace, so Linux recovers with NewReno
//! and our sender gets no SACK blocks.
//!
//! The sizes are 2 MiB, not the 10 MiB of the clean tests: at 5 % loss
//! and a 40 ms round trip TCP moves a few hundred KB/s. The tests run one
//! at a time, since the faults' delays are wall-clock and the limit is set
//! for one transfer on the machine's two cores. Each test checks that the
//! faults really struck in both directions.
//!
//! The SACK-off test once stalled now and then: when Linux had
//! filled our receive window and the segment at RCV.NXT was lost, its pure
//! ACKs carried SEG.SEQ at our window's right edge, which our
//! acceptability test refused; after our go-back-N timeout our pure ACKs
//! carried a SEG.SEQ below Linux's RCV.NXT, which Linux refused. Each side
//! dropped the other's acknowledgments and only backed-off retransmissions
//! of data already received went by. `connection.rs` now takes the ACK of
//! any segment from past RCV.NXT and sends pure ACKs at SND.MAX.
//!
//! Needs root, /dev/net/tun, `ip` (iproute2), `curl` (curl) and `nc`
//! (netcat-openbsd); without them each test skips, or fails under CI
//! (`mirage_test_env`).

use std::rc::Rc;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use mirage_net_stack_linux_tests::tcp_services::{curl_fetch, nc_echo, run_in, with_tcp_services};
use mirage_net_stack_linux_tests::{FaultCounts, FaultyNetwork, NetemFaults};
use mirage_platform_unix::tap::TapNetwork;

const LEN: usize = 2 << 20;
/// Far above the few seconds a transfer takes, but bounded.
const LIMIT: Duration = Duration::from_secs(50);

/// Held by each test for its whole run (see the module doc).
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    // A test that failed while holding it poisons it; the next still runs.
    ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn lossy(seed: u64) -> impl FnOnce(TapNetwork) -> Rc<FaultyNetwork<TapNetwork>> {
    move |tap| Rc::new(FaultyNetwork::new(tap, NetemFaults::LOSSY_WAN, seed))
}

/// The faults struck both directions: frames were lost and reordered each
/// way, and none were dropped for want of room.
fn assert_faults_struck(counts: FaultCounts) {
    for (direction, c) in [("receive", counts.receive), ("transmit", counts.transmit)] {
        assert!(c.lost > 0 && c.reordered > 0, "no loss or reordering on {direction}: {counts:?}");
        assert_eq!(c.overflowed, 0, "frames dropped for want of room: {counts:?}");
        assert_eq!(c.device_errors, 0, "the TAP device refused frames: {counts:?}");
    }
    println!("faults: {counts:?}");
}

#[test]
fn curl_fetches_2_mib_byte_exact_over_a_lossy_path() {
    let _turn = one_at_a_time();
    with_tcp_services("mirage-lossyhttp", "h", 84, LEN, lossy(84), |s| async move {
        curl_fetch(&s.ns, s.ours, &s.file, LIMIT).await;
        assert_faults_struck(s.device.counts());
    });
}

#[test]
fn nc_echoes_2_mib_byte_exact_over_a_lossy_path() {
    let _turn = one_at_a_time();
    with_tcp_services("mirage-lossyecho", "e", 85, 0, lossy(85), |s| async move {
        nc_echo(&s.ns, s.ours, LEN, 85, LIMIT).await;
        assert_faults_struck(s.device.counts());
    });
}

#[test]
fn nc_echoes_2_mib_byte_exact_over_a_lossy_path_with_linux_sack_off() {
    let _turn = one_at_a_time();
    with_tcp_services("mirage-lossysack", "s", 86, 0, lossy(86), |s| async move {
        // /proc/sys/net is the namespace's own: this leaves the host alone.
        let off = ["sh", "-c", "echo 0 > /proc/sys/net/ipv4/tcp_sack && cat /proc/sys/net/ipv4/tcp_sack"];
        let now = run_in(&s.ns, &off, None, Duration::from_secs(10)).await.unwrap();
        assert_eq!(String::from_utf8_lossy(&now).trim(), "0", "tcp_sack did not turn off");
        nc_echo(&s.ns, s.ours, LEN, 86, LIMIT).await;
        assert_faults_struck(s.device.counts());
    });
}
