//! A SYN flood from spoofed addresses against our stack over TAP while
//! Linux's `curl` fetches 2 MiB from it: the transfer must
//! complete byte-exact, our stack's TCP usage must stay within the
//! documented bounds (`TcpLimits`: `syn_backlog` half-open connections per
//! listener, then SYN cookies; `max_connections` in all) during and after
//! the flood, and new clients must be served during it: one whose ARP
//! entry is in use, and one from an address we have never resolved.
//!
//! The spoofed sources are on our subnet, so every SYN-ACK to one needs an
//! ARP resolution that never completes: the flood loads the ARP layer's
//! pending table (which must stay within `ArpConfig::max_pending`, and
//! its resolved entries within `max_entries`). Our ARP entries are made
//! to expire every second, so the running transfer's peer must be kept
//! resolved (by unicast polls) in the middle of the flood; and one new
//! client connects from a second address of the namespace, which Linux
//! does not announce to us (it has our MAC already), so our answer to it
//! needs a resolution while the spoofed ones spend the link's request
//! budget.
//!
//! The sender is this test binary run again inside the namespace (`ip
//! netns exec … env SYNFLOOD_TARGET=… <this binary> flood_sender`): the
//! ignored test [`flood_sender`] does the sending when that variable is
//! set, through a raw IPv4 socket (`IPPROTO_RAW`, so it writes the IP
//! header with the spoofed source itself).
//!
//! Needs root, /dev/net/tun, `ip` (iproute2), `curl` (curl), `nc`
//! (netcat-openbsd) and `timeout`/`env` (coreutils); without them the test
//! skips, or fails under CI (`mirage_test_env`).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::rc::Rc;
use std::time::{Duration, Instant};

use mirage_net_stack::arp::ArpConfig;
use mirage_net_stack::tcp::TcpLimits;
use mirage_net_stack::wire::tcp::{TcpFlags, TcpOptions};
use mirage_net_stack::wire::{SeqNumber, TcpPacket, TcpRepr};
use mirage_net_stack_linux_tests::tcp_services::{curl_fetch, nc_echo, run_in, with_tcp_services, HTTP_PORT};
use mirage_types::stack::Stack;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// The environment variable that turns [`flood_sender`] on: `IP:PORT:COUNT`.
const TARGET_VAR: &str = "SYNFLOOD_TARGET";
/// SYNs in the flood.
const FLOOD_SYNS: u32 = 5000;
/// The flood is paced over about this long, so it overlaps the transfer
/// and the new clients.
const FLOOD_TIME: Duration = Duration::from_secs(6);
/// The namespace's second address, outside the spoofed .10–.249, from
/// which a new client connects during the flood.
const SECOND_HOST: u8 = 7;
/// Listeners our stack has in `with_tcp_services` (echo and HTTP).
const LISTENERS: usize = 2;
/// The backlog `with_tcp_services` listens with.
const BACKLOG: usize = 16;

/// One SYN from `src` to `dst`, IPv4 header included (the kernel fills
/// the IP checksum, total length and ID of an `IPPROTO_RAW` socket).
fn spoofed_syn(src: SocketAddrV4, dst: SocketAddrV4, seq: u32) -> Vec<u8> {
    let repr = TcpRepr {
        src_port: src.port(),
        dst_port: dst.port(),
        seq_number: SeqNumber(seq),
        ack_number: SeqNumber(0),
        flags: TcpFlags::SYN,
        window_len: 64_240,
        options: TcpOptions { max_seg_size: Some(1460), sack_permitted: true, ..TcpOptions::default() },
        payload_len: 0,
    };
    let mut packet = vec![0u8; 20 + repr.buffer_len()];
    let (ip, tcp) = packet.split_at_mut(20);
    ip[0] = 0x45;
    ip[8] = 64; // TTL
    ip[9] = 6; // TCP
    ip[12..16].copy_from_slice(&src.ip().octets());
    ip[16..20].copy_from_slice(&dst.ip().octets());
    repr.emit(&mut TcpPacket::new_unchecked(tcp), *src.ip(), *dst.ip(), |_| {});
    packet
}

/// The flood itself, run in the namespace by the outer test; does nothing
/// (and passes) without [`TARGET_VAR`].
#[test]
#[ignore = "the sender half of syn_flood_while_curl_transfers, run by it inside the namespace"]
fn flood_sender() {
    let Ok(target) = std::env::var(TARGET_VAR) else {
        return;
    };
    let fields: Vec<&str> = target.split(':').collect();
    let [ip, port, count] = fields[..] else {
        panic!("{TARGET_VAR}={target:?} is not IP:PORT:COUNT");
    };
    let ip: Ipv4Addr = ip.parse().expect("target IP");
    let dst = SocketAddrV4::new(ip, port.parse().expect("target port"));
    let count: u32 = count.parse().expect("SYN count");
    let socket = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(255))).expect("a raw IPv4 socket (root?)");
    let to = SockAddr::from(SocketAddr::V4(dst));
    let [a, b, c, _] = ip.octets();
    // xorshift: spoofed hosts .10–.249 of the subnet, random ports and ISNs.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let pause = FLOOD_TIME / (count / 50).max(1);
    for i in 0..count {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let host = 10 + (x % 240) as u8;
        let src = SocketAddrV4::new(Ipv4Addr::new(a, b, c, host), 1024 + ((x >> 16) % 60_000) as u16);
        socket.send_to(&spoofed_syn(src, dst, (x >> 32) as u32), &to).expect("sending a spoofed SYN");
        if i % 50 == 49 {
            std::thread::sleep(pause);
        }
    }
}

#[test]
fn syn_flood_while_curl_transfers() {
    mirage_test_env::require!(mirage_net_stack_linux_tests::missing(&[("env", "coreutils")]));
    let exe = std::env::current_exe().expect("the test binary's path");
    let exe = exe.to_str().expect("a UTF-8 test binary path").to_string();
    with_tcp_services("mirage-synflood", "f", 85, 2 << 20, Rc::new, |s| async move {
        let limits = TcpLimits::default();
        // Entries expire every second, so keeping the client resolved is
        // the ARP layer's work during the whole flood.
        let arp = ArpConfig { entry_lifetime: Duration::from_secs(1), ..ArpConfig::default() };
        s.stack.arp().set_config(arp);
        let [a, b, c, _] = s.ours.octets();
        let second = Ipv4Addr::new(a, b, c, SECOND_HOST);
        let add = ["ip", "addr", "add", &format!("{second}/24"), "dev", &s.iface];
        run_in(&s.ns, &add, None, Duration::from_secs(10)).await.expect("adding the second client address");
        let target = format!("{TARGET_VAR}={}:{HTTP_PORT}:{FLOOD_SYNS}", s.ours);
        let flood_args = ["env", &target, &exe, "--exact", "flood_sender", "--ignored", "--nocapture"];
        let flood_over = std::cell::Cell::new(false);
        let flood = async {
            let r = run_in(&s.ns, &flood_args, None, Duration::from_secs(30)).await;
            flood_over.set(true);
            r
        };
        let transfer = async {
            // Let the flood fill the listener's half-open slots first.
            tokio::time::sleep(Duration::from_millis(500)).await;
            curl_fetch(&s.ns, s.ours, &s.file, Duration::from_secs(20)).await;
        };
        let new_clients = async {
            tokio::time::sleep(Duration::from_millis(1000)).await;
            // From the running transfer's address, whose entry is in use...
            nc_echo(&s.ns, s.ours, 16 * 1024, 3, Duration::from_secs(20)).await;
            let first_during_flood = !flood_over.get();
            // ...and from one we have never heard of.
            let url = format!("http://{}:{HTTP_PORT}/file", s.ours);
            let from = second.to_string();
            let args = ["curl", "-sS", "--max-time", "20", "--interface", &from, &url];
            let got = run_in(&s.ns, &args, None, Duration::from_secs(30)).await.expect("curl from the second address");
            assert!(got == *s.file, "curl from {second} got {} bytes, not the file", got.len());
            (first_during_flood, !flood_over.get())
        };
        let stack = s.stack.clone();
        let bounds_held = move || {
            let u = stack.usage();
            assert!(u.arp_entries <= arp.max_entries, "ARP entries over max_entries: {u:?}");
            assert!(u.arp_pending <= arp.max_pending, "ARP resolutions over max_pending: {u:?}");
            assert!(u.arp_waiters <= arp.max_pending * arp.max_waiters, "ARP waiters over their bound: {u:?}");
            assert!(
                u.tcp_half_open <= limits.syn_backlog * LISTENERS,
                "{} half-open connections, over syn_backlog {} per listener: {u:?}",
                u.tcp_half_open,
                limits.syn_backlog
            );
            assert!(u.tcp_accept_queue <= BACKLOG * LISTENERS, "accept queue over the backlog: {u:?}");
            assert!(
                u.tcp_connections + u.tcp_half_open + u.tcp_accept_queue <= limits.max_connections,
                "over max_connections {}: {u:?}",
                limits.max_connections
            );
            (u.tcp_half_open, u.arp_pending)
        };
        let done = std::cell::Cell::new(false);
        let work = async {
            let (flood, (), during) = tokio::join!(flood, transfer, new_clients);
            done.set(true);
            (flood, during)
        };
        let watch = async {
            let mut peak = (0, 0);
            // Each pass samples the usage every 10 ms until the flood and
            // the transfer are over; their own deadlines (30 s) end them.
            for _ in 0..6000 {
                if done.get() {
                    break;
                }
                let (half_open, pending) = bounds_held();
                peak = (peak.0.max(half_open), peak.1.max(pending));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            peak
        };
        let started = Instant::now();
        let ((flood, during), (peak, peak_pending)) = tokio::join!(work, watch);
        flood.expect("the flood sender");
        // Otherwise the flood never reached the stack and tested nothing.
        assert!(peak >= limits.syn_backlog, "the flood filled only {peak} of {} half-open slots", limits.syn_backlog);
        // 64 was the pending bound that used to refuse real neighbours.
        assert!(peak_pending > 64, "the flood loaded the ARP layer with only {peak_pending} resolutions");
        let arp_stats = s.stack.arp().with_cache(|c| c.stats());
        assert!(arp_stats.polls_sent > 0, "the client's entry never expired and was polled: {arp_stats:?}");
        // The flood lasts seconds; a client whose entry is in use needs
        // milliseconds unless it waits behind the spoofed resolutions. The
        // second address is unknown to us: our SYN-ACK to it waits for its
        // resolution (milliseconds) among the listener's answers to
        // spoofed sources (seconds each), and takes the place of the
        // oldest of them rather than being dropped (tcp/socket.rs).
        let (echo_during, second_during) = during;
        assert!(echo_during, "the new echo client was served only after the flood");
        assert!(
            second_during,
            "the client from a new address was served only after the flood: {arp_stats:?}, TCP {:?}",
            s.stack.tcp().stats()
        );
        println!(
            "flood of {FLOOD_SYNS} SYNs, a 2 MiB curl fetch and two new clients took {:?}; \
             peak half-open {peak}, peak ARP pending {peak_pending}; ARP {arp_stats:?}",
            started.elapsed()
        );
        bounds_held();
        // A new client still gets through, and the stack still serves data.
        nc_echo(&s.ns, s.ours, 64 * 1024, 5, Duration::from_secs(20)).await;
        curl_fetch(&s.ns, s.ours, &s.file, Duration::from_secs(20)).await;
        println!("after the flood: {:?}", s.stack.usage());
    });
}
