//! The attacks of issue "Reliability" (scapy and hping3 against our stack
//! on a LAN) from a real Linux host over TAP, with Linux's own `ping` as
//! the legitimate traffic. `tests/attacks.rs` of mirage-net-stack replays
//! the same attacks deterministically on the virtual switch; this checks
//! them against the kernel's packets and timing.
//!
//! - A flood of incomplete 8-byte fragments from spoofed sources while
//!   Linux pings us with 3000 bytes (three fragments each way): every ping
//!   must be answered (the reassembly table used to fill for its 30 s
//!   timeout: 0 of 7 answered).
//! - SYNs, echo requests and UDP from our subnet's broadcast address, and
//!   "land" SYNs and echo requests from our own address: our stack must
//!   send nothing at all, in particular no frame to ff:ff:ff:ff:ff:ff and
//!   no ARP request for its own address. A wrapper around the TAP device
//!   counts what the stack transmits.
//!
//! The attacker is this test binary run again inside the namespace (`ip
//! netns exec … env ATTACK=… <this binary> attack_sender`): the ignored
//! test [`attack_sender`] sends what that variable names through a raw
//! IPv4 socket (`IPPROTO_RAW`: it writes the IP header, spoofed source
//! included; the kernel fills length, checksum and, when zero, the ID).
//!
//! Needs root, /dev/net/tun, `ip` (iproute2), `ping` (iputils-ping),
//! `curl` and `nc` (for the shared set-up), `timeout` and `env`
//! (coreutils); without them the test skips, or fails under CI.
//!
//! ```text
//! sudo -E cargo test -p mirage-net-stack-linux-tests --test attacks_interop -- --nocapture
//! ```

use std::cell::RefCell;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use mirage_net_stack::wire::tcp::{TcpFlags, TcpOptions};
use mirage_net_stack::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetPacket, EthernetRepr, Icmpv4Packet, Icmpv4Repr, Ipv4Packet, Ipv4Repr,
    SeqNumber, TcpPacket, TcpRepr, UdpPacket, UdpRepr,
};
use mirage_net_stack_linux_tests::tcp_services::{run_in, with_tcp_services, HTTP_PORT};
use mirage_types::ethernet::EtherType;
use mirage_types::ip::IpProtocol;
use mirage_types::net::{MacAddress, NetStats, NetworkDevice};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// The environment variable that turns [`attack_sender`] on:
/// `KIND:TARGET_IP:COUNT:SECONDS` (COUNT packets paced over SECONDS).
const ATTACK_VAR: &str = "ATTACK";

/// What our stack transmitted, as the device wrapper saw it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Sent {
    /// Frames but ARP replies (Linux resolves our address to send the
    /// attack; answering it is right).
    frames: u64,
    /// Frames to ff:ff:ff:ff:ff:ff.
    broadcast: u64,
    /// ARP requests for `ours` (an announcement looks the same: count
    /// after those are over).
    arp_for_ourselves: u64,
    /// TCP segments with SYN set.
    syn: u64,
    icmp: u64,
    udp: u64,
}

/// A network device that counts what the stack sends through it.
struct Tally<N> {
    inner: Rc<N>,
    ours: Ipv4Addr,
    sent: Rc<RefCell<Sent>>,
}

impl<N> Clone for Tally<N> {
    fn clone(&self) -> Self {
        Tally { inner: self.inner.clone(), ours: self.ours, sent: self.sent.clone() }
    }
}

impl<N> Tally<N> {
    fn new(inner: N, ours: Ipv4Addr) -> Tally<N> {
        Tally { inner: Rc::new(inner), ours, sent: Rc::default() }
    }

    fn take(&self) -> Sent {
        core::mem::take(&mut *self.sent.borrow_mut())
    }

    fn count(&self, frame: &[u8]) {
        let mut sent = self.sent.borrow_mut();
        let Ok(eth) = EthernetPacket::new_checked(frame).and_then(|p| EthernetRepr::parse(&p)) else { return };
        let payload = &frame[14..];
        let arp =
            (eth.ethertype == EtherType::ARP).then(|| ArpPacket::new_checked(payload).and_then(|p| ArpRepr::parse(&p)));
        if let Some(Ok(arp)) = arp {
            if arp.operation == ArpOperation::Reply {
                return;
            }
            if arp.target_protocol_addr == self.ours {
                sent.arp_for_ourselves += 1;
            }
        }
        sent.frames += 1;
        if eth.dst_addr == MacAddress::BROADCAST {
            sent.broadcast += 1;
        }
        if eth.ethertype == EtherType::ARP {
            return;
        }
        let Ok(ip) = Ipv4Packet::new_checked(payload).and_then(|p| Ipv4Repr::parse(&p)) else { return };
        match ip.protocol {
            IpProtocol::ICMP => sent.icmp += 1,
            IpProtocol::UDP => sent.udp += 1,
            // The flags byte of the TCP header.
            IpProtocol::TCP if payload.get(ip.header_len + 13).is_some_and(|f| f & TcpFlags::SYN.0 != 0) => {
                sent.syn += 1
            }
            _ => {}
        }
    }
}

impl<N: NetworkDevice> NetworkDevice for Tally<N> {
    type Error = N::Error;

    fn mac(&self) -> MacAddress {
        self.inner.mac()
    }

    fn mtu(&self) -> usize {
        self.inner.mtu()
    }

    fn stats(&self) -> NetStats {
        self.inner.stats()
    }

    async fn receive(&self) -> Result<Bytes, Self::Error> {
        self.inner.receive().await
    }

    async fn transmit<R>(&self, len: usize, fill: impl FnOnce(&mut [u8]) -> R) -> Result<R, Self::Error> {
        self.inner
            .transmit(len, |buf| {
                let r = fill(buf);
                self.count(buf);
                r
            })
            .await
    }
}

/// An IPv4 header for a raw socket, `payload` after it.
fn ip_packet(src: Ipv4Addr, dst: Ipv4Addr, protocol: IpProtocol, ident: u16, more: bool, payload: &[u8]) -> Vec<u8> {
    let mut header = Ipv4Repr::new(src, dst, protocol, payload.len(), 64);
    header.ident = ident;
    header.more_fragments = more;
    let mut packet = vec![0u8; header.buffer_len()];
    header.emit(&mut Ipv4Packet::new_unchecked(&mut packet[..]));
    packet[header.header_len..].copy_from_slice(payload);
    packet
}

fn syn(src: Ipv4Addr, dst: Ipv4Addr, src_port: u16, isn: u32) -> Vec<u8> {
    let repr = TcpRepr {
        src_port,
        dst_port: HTTP_PORT,
        seq_number: SeqNumber(isn),
        ack_number: SeqNumber(0),
        flags: TcpFlags::SYN,
        window_len: 64_240,
        options: TcpOptions { max_seg_size: Some(1460), ..TcpOptions::default() },
        payload_len: 0,
    };
    let mut tcp = vec![0u8; repr.buffer_len()];
    repr.emit(&mut TcpPacket::new_unchecked(&mut tcp[..]), src, dst, |_| {});
    ip_packet(src, dst, IpProtocol::TCP, 1, false, &tcp)
}

fn echo_request(src: Ipv4Addr, dst: Ipv4Addr, seq: u16) -> Vec<u8> {
    let repr = Icmpv4Repr::EchoRequest { ident: 0x4242, seq_no: seq, data: b"hping3!!" };
    let mut icmp = vec![0u8; repr.buffer_len()];
    repr.emit(&mut Icmpv4Packet::new_unchecked(&mut icmp[..]));
    ip_packet(src, dst, IpProtocol::ICMP, seq.max(1), false, &icmp)
}

fn udp(src: Ipv4Addr, dst: Ipv4Addr, src_port: u16) -> Vec<u8> {
    let repr = UdpRepr { src_port, dst_port: 9999, payload_len: 8 };
    let mut udp = vec![0u8; repr.buffer_len()];
    repr.emit(&mut UdpPacket::new_unchecked(&mut udp[..]), src, dst, |p| p.copy_from_slice(b"hping3!!"));
    ip_packet(src, dst, IpProtocol::UDP, src_port, false, &udp)
}

/// The packets of attack `kind` against `target` (our stack, .2 of a /24),
/// number `i` of them, `x` a fresh random word.
fn attack_packet(kind: &str, target: Ipv4Addr, i: u32, x: u64) -> Vec<u8> {
    let [a, b, c, _] = target.octets();
    let subnet_broadcast = Ipv4Addr::new(a, b, c, 255);
    let port = 1024 + (x % 60_000) as u16;
    match kind {
        // The start of a datagram that never completes: 8 bytes, MF set,
        // from a spoofed source on the link or beyond it.
        "fragments" => {
            let src = if x & 1 == 0 {
                Ipv4Addr::new(a, b, c, 10 + ((x >> 8) % 240) as u8)
            } else {
                Ipv4Addr::from(0xc633_6400 | ((x >> 8) & 0xff) as u32)
            };
            ip_packet(src, target, IpProtocol::ICMP, (x >> 16) as u16 | 1, true, &[0x5a; 8])
        }
        "broadcast-syn" => syn(subnet_broadcast, target, port, (x >> 32) as u32),
        "land" => syn(target, target, if i == 0 { HTTP_PORT } else { port }, (x >> 32) as u32),
        "broadcast-echo" => echo_request(subnet_broadcast, target, i as u16),
        "land-echo" => echo_request(target, target, i as u16),
        "broadcast-udp" => udp(subnet_broadcast, target, port),
        other => panic!("unknown attack {other:?}"),
    }
}

/// The attacker, run in the namespace by the tests below; does nothing
/// (and passes) without [`ATTACK_VAR`].
#[test]
#[ignore = "the sender half of the tests below, run by them inside the namespace"]
fn attack_sender() {
    let Ok(attack) = std::env::var(ATTACK_VAR) else { return };
    let fields: Vec<&str> = attack.split(':').collect();
    let [kind, target, count, seconds] = fields[..] else {
        panic!("{ATTACK_VAR}={attack:?} is not KIND:IP:COUNT:SECONDS");
    };
    let target: Ipv4Addr = target.parse().expect("target IP");
    let count: u32 = count.parse().expect("packet count");
    let seconds: u64 = seconds.parse().expect("seconds");
    let socket = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(255))).expect("a raw IPv4 socket (root?)");
    let to = SockAddr::from(SocketAddr::V4(SocketAddrV4::new(target, 0)));
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    // 20 packets, then a pause: paced so the TAP queue (500 frames) never
    // overflows, and spread over the time asked.
    let pause = Duration::from_secs(seconds) / (count / 20).max(1);
    for i in 0..count {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        socket.send_to(&attack_packet(kind, target, i, x), &to).expect("sending an attack packet");
        if i % 20 == 19 {
            std::thread::sleep(pause);
        }
    }
}

/// Runs [`attack_sender`] in namespace `ns`: `count` packets of `kind`
/// to `target` over `seconds`.
async fn attack(ns: &str, kind: &str, target: Ipv4Addr, count: u32, seconds: u64) {
    let exe = std::env::current_exe().expect("the test binary's path");
    let exe = exe.to_str().expect("a UTF-8 test binary path");
    let var = format!("{ATTACK_VAR}={kind}:{target}:{count}:{seconds}");
    let args = ["env", &var, exe, "--exact", "attack_sender", "--ignored", "--nocapture"];
    run_in(ns, &args, None, Duration::from_secs(seconds + 30)).await.expect("the attack sender");
}

fn require_tools() -> bool {
    let missing = mirage_net_stack_linux_tests::missing(&[("ping", "iputils-ping"), ("env", "coreutils")]);
    match missing {
        Some(reason) => {
            mirage_test_env::skip(reason);
            false
        }
        None => true,
    }
}

#[test]
fn a_fragment_flood_does_not_lock_out_linux_fragmented_pings() {
    if !require_tools() {
        return;
    }
    with_tcp_services("mirage-fragflood", "r", 87, 0, Rc::new, |s| async move {
        let ours = s.ours.to_string();
        // 500 spoofed fragments a second for 10 s, each a new datagram
        // (16 fill the table), while Linux pings with 3000 bytes.
        let flood = attack(&s.ns, "fragments", s.ours, 5000, 10);
        let pings = async {
            tokio::time::sleep(Duration::from_secs(2)).await;
            // ping exits non-zero when replies are missing: keep its output.
            let ping = format!("ping -c 7 -i 1 -W 1 -s 3000 {ours}; true");
            let out = run_in(&s.ns, &["sh", "-c", &ping], None, Duration::from_secs(30)).await;
            String::from_utf8_lossy(&out.expect("running ping")).into_owned()
        };
        let ((), out) = tokio::join!(flood, pings);
        let (stats, datagrams, bytes) = s.stack.ipv4().reassembly_usage();
        println!("fragment flood over TAP: {datagrams} datagrams, {bytes} bytes held; {stats:?}\n{out}");
        assert!(stats.evicted > 1000, "the flood did not reach the reassembly table: {stats:?}");
        assert!(out.contains("7 received"), "fragmented pings during the flood:\n{out}");
        let usage = s.stack.usage();
        assert!(usage.reassembly_datagrams <= 16 && usage.reassembly_bytes <= 256 * 1024, "{usage:?}");
    });
}

#[test]
fn bogus_sources_get_no_answer_over_tap() {
    if !require_tools() {
        return;
    }
    let wrap = |tap| Tally::new(tap, Ipv4Addr::new(10, 88, 0, 2));
    with_tcp_services("mirage-bogus", "x", 88, 0, wrap, |s| async move {
        // Our address announcements (2, 2 s apart) look like ARP requests
        // for ourselves: let them pass first.
        tokio::time::sleep(Duration::from_secs(5)).await;
        s.device.take();
        let mut results = Vec::new();
        let mut dropped = s.stack.ipv4().stats().bad_source;
        for (kind, count) in [
            ("broadcast-syn", 2000),
            ("land", 100),
            ("broadcast-echo", 200),
            ("land-echo", 100),
            ("broadcast-udp", 200),
        ] {
            attack(&s.ns, kind, s.ours, count, 2).await;
            // SYN-ACK retransmissions (1 s, 2 s, 4 s…) would follow.
            tokio::time::sleep(Duration::from_secs(8)).await;
            let sent = s.device.take();
            let now = s.stack.ipv4().stats().bad_source;
            println!("{count} {kind} packets: {} dropped as from a bad source; we sent {sent:?}", now - dropped);
            results.push((kind, count, now - dropped, sent));
            dropped = now;
        }
        for (kind, count, dropped, sent) in results {
            assert!(dropped >= u64::from(count) * 9 / 10, "{kind}: only {dropped} of {count} were seen and dropped");
            assert_eq!(sent.broadcast, 0, "{kind}: frames to ff:ff:ff:ff:ff:ff");
            assert_eq!(sent.arp_for_ourselves, 0, "{kind}: ARP requests for our own address");
            assert_eq!(sent, Sent::default(), "{kind}: our stack answered");
        }
        assert_eq!(s.stack.usage().tcp_half_open, 0);
        // Linux itself is still served.
        let args = ["ping", "-c", "2", "-W", "2", &s.ours.to_string()];
        run_in(&s.ns, &args, None, Duration::from_secs(10)).await.expect("a ping from Linux");
    });
}
