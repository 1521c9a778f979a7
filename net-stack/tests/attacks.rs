//! Attacks found from outside (issue "Reliability", scapy and hping3
//! against a stack on a LAN), replayed on the virtual switch in virtual
//! time, deterministically. Each test sends what the attacker sent from a
//! raw port and counts what the victim stack puts on the link, read from a
//! mirror port; each prints its figures (`cargo test -p mirage-net-stack
//! --test attacks -- --nocapture`).
//!
//! - **Reassembly lock-out** (RFC 791 §3.2, RFC 815, RFC 4963): incomplete
//!   fragments from spoofed sources used to fill the reassembly table for
//!   its whole 30 s timeout, so a fragmented ping from a real host got no
//!   answer (0 of 7). The table now evicts under pressure (per-source
//!   quotas, then the datagram that has gone longest without a fragment):
//!   7 of 7.
//! - **Bogus sources** (RFC 1122 §3.2.1.3, §4.2.3.10; RFC 1812 §5.3.7):
//!   a SYN from the subnet's broadcast address was answered with SYN-ACKs
//!   to ff:ff:ff:ff:ff:ff, retransmitted (2000 SYNs: 2349 broadcast frames
//!   in the issue, 2768 in this test before the fix); a "land" SYN (source
//!   = destination = us) made the stack ARP for its own address; echo
//!   requests and UDP from a broadcast source were answered to the whole
//!   link; SYN+FIN opened connections. All are now dropped without a frame
//!   sent, and counted (`Ipv4Stats::bad_source`, `TcpStats::syn_fin_dropped`).
//!
//! The README's IPv4 section has the figures before and after.

use std::cell::{Cell, RefCell};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use mirage_net_stack::ipv4::reassembly::ReassemblyConfig;
use mirage_net_stack::ipv4::Ipv4Config;
use mirage_net_stack::stack::{NetStack, StackBuilder};
use mirage_net_stack::switch::{PortConfig, Simulation, SwitchPort, VirtualClock, VirtualPlatform, VirtualSwitch};
use mirage_net_stack::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetPacket, EthernetRepr, Icmpv4Packet, Icmpv4Repr, Ipv4Packet, Ipv4Repr,
    SeqNumber, TcpFlags, TcpOptions, TcpPacket, TcpRepr, UdpPacket, UdpRepr,
};
use mirage_types::ethernet::EtherType;
use mirage_types::icmp::Icmp;
use mirage_types::ip::{IpProtocol, Ipv4Cidr};
use mirage_types::net::{MacAddress, NetworkDevice};
use mirage_types::stack::Stack;
use mirage_types::tcp::Tcp;
use mirage_types::time::{MonotonicClock, Sleep};
use mirage_types::udp::{Udp, UdpSocket};

type TestStack = NetStack<SwitchPort, VirtualPlatform>;

const MAC_VICTIM: MacAddress = MacAddress([2, 0, 0, 0, 0, 1]);
const MAC_PEER: MacAddress = MacAddress([2, 0, 0, 0, 0, 2]);
const MAC_RAW: MacAddress = MacAddress([2, 0, 0, 0, 0, 0xf]);
const MAC_MIRROR: MacAddress = MacAddress([2, 0, 0, 0, 0, 0xe]);
/// The stack under attack.
const VICTIM: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
/// A real host beside it.
const PEER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
/// The victim's subnet's directed broadcast.
const SUBNET_BROADCAST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 255);
/// The victim's listening TCP port and its UDP echo port.
const PORT: u16 = 80;
const UDP_ECHO: u16 = 7;

/// What the victim put on the link, as the mirror port saw it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Sent {
    /// Every frame from the victim's MAC address.
    frames: u64,
    /// Of those, frames to ff:ff:ff:ff:ff:ff.
    broadcast: u64,
    /// ARP requests for the victim's own address.
    arp_for_ourselves: u64,
    /// TCP segments with SYN set (SYN-ACKs).
    syn: u64,
    /// ICMP messages.
    icmp: u64,
    /// UDP datagrams.
    udp: u64,
    /// Of the ICMP messages, Time Exceeded for a reassembly (type 11 code
    /// 1), and the identification the last one quoted.
    reassembly_expired: u64,
    quoted_ident: u16,
}

impl Sent {
    fn count(&mut self, frame: &[u8]) {
        let Ok(eth) = EthernetPacket::new_checked(frame) else { return };
        let Ok(eth) = EthernetRepr::parse(&eth) else { return };
        if eth.src_addr != MAC_VICTIM {
            return;
        }
        self.frames += 1;
        if eth.dst_addr == MacAddress::BROADCAST {
            self.broadcast += 1;
        }
        let payload = &frame[14..];
        if eth.ethertype == EtherType::ARP {
            let arp = ArpPacket::new_checked(payload).and_then(|p| ArpRepr::parse(&p));
            if let Ok(arp) = arp {
                if arp.operation == ArpOperation::Request && arp.target_protocol_addr == VICTIM {
                    self.arp_for_ourselves += 1;
                }
            }
            return;
        }
        let Ok(ip) = Ipv4Packet::new_checked(payload).and_then(|p| Ipv4Repr::parse(&p)) else { return };
        match ip.protocol {
            IpProtocol::ICMP => {
                self.icmp += 1;
                let icmp = &payload[ip.header_len..];
                // Type, code, checksum, unused, then the quoted header.
                if icmp.len() >= 8 + 20 && icmp[0] == 11 && icmp[1] == 1 {
                    self.reassembly_expired += 1;
                    self.quoted_ident = u16::from_be_bytes([icmp[12], icmp[13]]);
                }
            }
            IpProtocol::UDP => self.udp += 1,
            // The flags byte of the TCP header.
            IpProtocol::TCP if payload.get(ip.header_len + 13).is_some_and(|f| f & TcpFlags::SYN.0 != 0) => {
                self.syn += 1
            }
            _ => {}
        }
    }
}

/// The victim (10.0.0.1/24, a TCP listener on [`PORT`], a UDP echo on
/// [`UDP_ECHO`]), a real peer (10.0.0.2), the attacker's raw port and a
/// mirror port whose frames are tallied in `sent`.
struct Lab {
    sim: Simulation,
    clock: VirtualClock,
    victim: Rc<TestStack>,
    peer: Rc<TestStack>,
    raw: Rc<SwitchPort>,
    sent: Rc<RefCell<Sent>>,
}

fn cidr(ip: Ipv4Addr) -> Ipv4Config {
    Ipv4Config { address: Ipv4Cidr::new(ip, 24).unwrap(), gateway: None }
}

impl Lab {
    fn new(seed: u64) -> Lab {
        let clock = VirtualClock::new();
        let sim = Simulation::new(&clock);
        let switch = VirtualSwitch::new(&clock, seed);
        let (pv, pp) = (switch.add_port(MAC_VICTIM), switch.add_port(MAC_PEER));
        let raw = Rc::new(switch.add_port(MAC_RAW));
        let mirror =
            switch.add_port_with(PortConfig { mirror: true, queue_len: 1 << 20, ..PortConfig::new(MAC_MIRROR) });
        let (platform_v, platform_p) = (VirtualPlatform::new(&sim, seed + 1), VirtualPlatform::new(&sim, seed + 2));
        let (victim, peer) = sim
            .run_until(
                async {
                    let v = StackBuilder::new(pv, platform_v).ipv4(cidr(VICTIM)).build().await.unwrap();
                    let p = StackBuilder::new(pp, platform_p).ipv4(cidr(PEER)).build().await.unwrap();
                    (Rc::new(v), Rc::new(p))
                },
                Duration::from_secs(1),
            )
            .unwrap();
        for s in [&victim, &peer] {
            let s = s.clone();
            sim.spawn(async move {
                s.run().await.expect("the virtual link never fails");
            });
        }
        let sent = Rc::new(RefCell::new(Sent::default()));
        {
            let sent = sent.clone();
            sim.spawn(async move {
                while let Ok(frame) = mirror.receive().await {
                    sent.borrow_mut().count(&frame);
                }
            });
        }
        let listener = {
            let victim = victim.clone();
            sim.run_until(
                async move { victim.tcp().listen(SocketAddr::from((VICTIM, PORT)), 16).await.unwrap() },
                Duration::from_secs(1),
            )
            .unwrap()
        };
        {
            let victim = victim.clone();
            sim.spawn(async move {
                // Keeps the listener open for the test's life; nobody accepts.
                let _listener = listener;
                let socket = victim.udp().bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, UDP_ECHO))).await.unwrap();
                while let Ok(d) = socket.recv_from().await {
                    let _ = socket.send_to(&d.payload, d.src).await;
                }
            });
        }
        let lab = Lab { sim, clock, victim, peer, raw, sent };
        // The address announcements (2, 2 s apart) are over after this.
        lab.idle(Duration::from_secs(10));
        *lab.sent.borrow_mut() = Sent::default();
        lab
    }

    /// Lets virtual time pass with nothing sent.
    fn idle(&self, d: Duration) {
        let clock = self.clock.clone();
        self.sim.run_until(async move { clock.sleep(d).await }, d + Duration::from_secs(1)).unwrap();
    }

    /// Sends `frames` from the raw port, one per `gap`, then lets `settle`
    /// pass (for retransmissions), and returns what the victim sent
    /// meanwhile.
    fn attack(&self, frames: &[Vec<u8>], gap: Duration, settle: Duration) -> Sent {
        *self.sent.borrow_mut() = Sent::default();
        let (raw, clock) = (&self.raw, &self.clock);
        self.sim
            .run_until(
                async {
                    for f in frames {
                        raw.transmit(f.len(), |buf| buf.copy_from_slice(f)).await.unwrap();
                        clock.sleep(gap).await;
                    }
                    clock.sleep(settle).await;
                },
                gap * frames.len() as u32 + settle + Duration::from_secs(1),
            )
            .unwrap();
        *self.sent.borrow()
    }
}

/// An Ethernet frame from the raw port to the victim carrying `ip` and its
/// `payload` (already emitted).
fn frame(ip: Ipv4Repr, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 14 + ip.header_len + payload.len()];
    EthernetRepr { src_addr: MAC_RAW, dst_addr: MAC_VICTIM, ethertype: EtherType::IPV4 }
        .emit(&mut EthernetPacket::new_unchecked(&mut f[..]));
    ip.emit(&mut Ipv4Packet::new_unchecked(&mut f[14..14 + ip.header_len]));
    f[14 + ip.header_len..].copy_from_slice(payload);
    f
}

fn tcp_segment(src: Ipv4Addr, dst: Ipv4Addr, src_port: u16, flags: TcpFlags, isn: u32) -> Vec<u8> {
    let tcp = TcpRepr {
        src_port,
        dst_port: PORT,
        seq_number: SeqNumber(isn),
        ack_number: SeqNumber(0),
        flags,
        window_len: 65535,
        options: TcpOptions { max_seg_size: Some(1460), ..TcpOptions::default() },
        payload_len: 0,
    };
    let mut payload = vec![0u8; tcp.buffer_len()];
    tcp.emit(&mut TcpPacket::new_unchecked(&mut payload[..]), src, dst, |_| ());
    frame(Ipv4Repr::new(src, dst, IpProtocol::TCP, payload.len(), 64), &payload)
}

fn echo_request(src: Ipv4Addr, dst: Ipv4Addr, seq: u16) -> Vec<u8> {
    let icmp = Icmpv4Repr::EchoRequest { ident: 0x4242, seq_no: seq, data: b"abcdefgh" };
    let mut payload = vec![0u8; icmp.buffer_len()];
    icmp.emit(&mut Icmpv4Packet::new_unchecked(&mut payload[..]));
    frame(Ipv4Repr::new(src, dst, IpProtocol::ICMP, payload.len(), 64), &payload)
}

fn udp_datagram(src: Ipv4Addr, dst: Ipv4Addr, src_port: u16, dst_port: u16) -> Vec<u8> {
    let udp = UdpRepr { src_port, dst_port, payload_len: 8 };
    let mut payload = vec![0u8; udp.buffer_len()];
    udp.emit(&mut UdpPacket::new_unchecked(&mut payload[..]), src, dst, |p| p.copy_from_slice(b"hping3!!"));
    frame(Ipv4Repr::new(src, dst, IpProtocol::UDP, payload.len(), 64), &payload)
}

/// One IPv4 fragment from `src` to the victim: `len` bytes at `offset` of
/// datagram `ident`, more to come.
fn fragment(src: Ipv4Addr, ident: u16, offset: usize, len: usize) -> Vec<u8> {
    let mut ip = Ipv4Repr::new(src, VICTIM, IpProtocol::ICMP, len, 64);
    ip.ident = ident;
    ip.fragment_offset = offset as u16;
    ip.more_fragments = true;
    frame(ip, &vec![0x5a; len])
}

/// xorshift32, for ports and sequence numbers.
fn xorshift(x: &mut u32) -> u32 {
    *x ^= *x << 13;
    *x ^= *x >> 17;
    *x ^= *x << 5;
    *x
}

/// Pings the victim from the peer `count` times, 1 s apart, with a
/// payload of `size` bytes (fragmented); returns how many were answered.
fn fragmented_pings(lab: &Lab, count: u16, size: usize) -> u16 {
    let payload: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    let (peer, clock) = (&lab.peer, &lab.clock);
    lab.sim
        .run_until(
            async {
                let mut answered = 0;
                for seq in 0..count {
                    let started = clock.now();
                    let reply = peer.icmp().ping(IpAddr::V4(VICTIM), seq, &payload, Duration::from_secs(1)).await;
                    if reply.is_ok_and(|r| r.payload[..] == payload[..]) {
                        answered += 1;
                    }
                    clock.sleep_until(started + Duration::from_secs(1)).await;
                }
                answered
            },
            Duration::from_secs(u64::from(count) + 10),
        )
        .unwrap()
}

// --- Reassembly lock-out ------------------------------------------------

#[test]
fn a_flood_of_incomplete_fragments_does_not_lock_out_a_fragmented_ping() {
    // The attack: 8-byte fragments, each the start of a datagram
    // that never completes, from spoofed sources (on-link and off-link),
    // going on while a real host pings with 3000 bytes (3 fragments).
    let lab = Lab::new(1);
    let flooding = Rc::new(Cell::new(true));
    let flood_sent = Rc::new(Cell::new(0u32));
    {
        let (raw, clock, flooding, flood_sent) =
            (lab.raw.clone(), lab.clock.clone(), flooding.clone(), flood_sent.clone());
        lab.sim.spawn(async move {
            let mut x = 0x9e37_79b9u32;
            // One fragment of a new datagram every 10 ms: 100 a second, 16
            // within 160 ms, over the 30 s timeout 3000 of them.
            while flooding.get() {
                let r = xorshift(&mut x);
                let src = if r & 1 == 0 {
                    Ipv4Addr::new(10, 0, 0, 10 + (r >> 8) as u8 % 200)
                } else {
                    Ipv4Addr::from(0xc633_6400 | (r >> 24))
                };
                let f = fragment(src, (r >> 16) as u16, 0, 8);
                raw.transmit(f.len(), |buf| buf.copy_from_slice(&f)).await.unwrap();
                flood_sent.set(flood_sent.get() + 1);
                clock.sleep(Duration::from_millis(10)).await;
            }
        });
    }
    // Let the flood fill the table first.
    lab.idle(Duration::from_secs(2));
    let answered = fragmented_pings(&lab, 7, 3000);
    flooding.set(false);
    let (stats, datagrams, bytes) = lab.victim.ipv4().reassembly_usage();
    println!(
        "reassembly flood: {} spoofed 8-byte fragments, 100/s; fragmented pings (3000 bytes) answered: \
         {answered}/7; victim holds {datagrams} datagrams, {bytes} bytes; {stats:?}",
        flood_sent.get()
    );
    assert_eq!(answered, 7, "the fragmented pings were locked out by the flood");
    let usage = lab.victim.usage();
    assert!(usage.reassembly_datagrams <= 16 && usage.reassembly_bytes <= 256 * 1024, "{usage:?}");
}

#[test]
fn large_incomplete_datagrams_do_not_lock_out_by_bytes() {
    // The byte bound under the same kind of attack: four spoofed sources
    // each send 44 full fragments (64 KiB) of a datagram whose end never
    // comes, filling the 256 KiB of buffer, and keep doing it.
    let lab = Lab::new(2);
    let flooding = Rc::new(Cell::new(true));
    {
        let (raw, clock, flooding) = (lab.raw.clone(), lab.clock.clone(), flooding.clone());
        lab.sim.spawn(async move {
            let mut ident = 0u16;
            // Each pass sends one 64 KiB incomplete datagram from the next of
            // four spoofed sources, then waits 100 ms.
            while flooding.get() {
                ident = ident.wrapping_add(1);
                let src = Ipv4Addr::new(192, 0, 2, 1 + (ident % 4) as u8);
                for i in 0..44 {
                    let f = fragment(src, ident, i * 1480, 1480);
                    raw.transmit(f.len(), |buf| buf.copy_from_slice(&f)).await.unwrap();
                }
                clock.sleep(Duration::from_millis(100)).await;
            }
        });
    }
    lab.idle(Duration::from_secs(2));
    let answered = fragmented_pings(&lab, 7, 3000);
    flooding.set(false);
    let (stats, datagrams, bytes) = lab.victim.ipv4().reassembly_usage();
    println!(
        "reassembly byte flood: 64 KiB incomplete datagrams from 4 sources, 10/s; fragmented pings answered: \
         {answered}/7; victim holds {datagrams} datagrams, {bytes} bytes; {stats:?}"
    );
    assert_eq!(answered, 7, "the fragmented pings were locked out by the byte bound");
    let usage = lab.victim.usage();
    assert!(usage.reassembly_datagrams <= 16 && usage.reassembly_bytes <= 256 * 1024, "{usage:?}");
}

#[test]
fn one_source_cannot_take_the_whole_reassembly_table() {
    // An attacker that does not bother to spoof: one address, many
    // datagrams, none completed. Its quota is a quarter of the table, so
    // the rest is for everybody else even without eviction.
    let lab = Lab::new(3);
    let attacker = Ipv4Addr::new(10, 0, 0, 66);
    let frames: Vec<Vec<u8>> = (0..200u16).map(|ident| fragment(attacker, ident, 0, 8)).collect();
    lab.attack(&frames, Duration::from_micros(100), Duration::ZERO);
    let (_, datagrams, _) = lab.victim.ipv4().reassembly_usage();
    let answered = fragmented_pings(&lab, 3, 3000);
    println!("one source, 200 incomplete datagrams: victim holds {datagrams}; fragmented pings answered {answered}/3");
    assert!(datagrams <= 4, "one source holds {datagrams} datagrams");
    assert_eq!(answered, 3);
}

// --- Bogus source addresses ------------------------------------------------

/// Prints and checks the figures of one attack: nothing at all may have
/// been sent, in particular nothing to the broadcast address and no ARP
/// request for our own address.
#[test]
fn a_reassembly_that_times_out_is_reported_to_its_sender_rfc_1122_3_3_2() {
    // The first fragment of one datagram from the real peer, and a later
    // fragment of another: both time out, and only the one whose first
    // fragment came can be quoted in a Time Exceeded message.
    let lab = Lab::new(10);
    let frames = [fragment(PEER, 0x1234, 0, 16), fragment(PEER, 0x5678, 16, 16)];
    let timeout = ReassemblyConfig::default().timeout;
    let sent = lab.attack(&frames, Duration::ZERO, timeout + Duration::from_secs(1));
    println!("two fragments, never completed: victim sent {sent:?}");
    assert_eq!((sent.reassembly_expired, sent.quoted_ident), (1, 0x1234), "{sent:?}");
    assert_eq!(lab.victim.ipv4().reassembly_usage().0.timed_out, 2);
    // From a spoofed source nobody answers ARP for, the report waits for
    // ARP and goes nowhere; nothing is broadcast but the ARP requests.
    let spoofed = Ipv4Addr::new(10, 0, 0, 99);
    let sent = lab.attack(&[fragment(spoofed, 1, 0, 16)], Duration::ZERO, timeout + Duration::from_secs(10));
    assert_eq!((sent.icmp, sent.reassembly_expired), (0, 0), "{sent:?}");
}

fn assert_silent(name: &str, packets: usize, sent: Sent) {
    println!("{name}: {packets} packets -> victim sent {sent:?}");
    assert_eq!(sent.broadcast, 0, "{name}: frames to ff:ff:ff:ff:ff:ff");
    assert_eq!(sent.arp_for_ourselves, 0, "{name}: ARP requests for our own address");
    assert_eq!(sent, Sent::default(), "{name}: the victim answered");
}

#[test]
fn syns_from_the_subnet_broadcast_get_no_answer() {
    // RFC 1122 §3.2.1.3: a host silently discards a datagram from a
    // broadcast source; here the directed broadcast of our own subnet,
    // which the stack used to answer with SYN-ACKs to ff:ff:ff:ff:ff:ff.
    let lab = Lab::new(4);
    let mut x = 1u32;
    let syns: Vec<Vec<u8>> = (0..2000)
        .map(|_| {
            let r = xorshift(&mut x);
            tcp_segment(SUBNET_BROADCAST, VICTIM, 1024 + (r % 60000) as u16, TcpFlags::SYN, r)
        })
        .collect();
    let sent = lab.attack(&syns, Duration::from_millis(1), Duration::from_secs(120));
    let dropped = lab.victim.ipv4().stats().bad_source;
    assert_silent("2000 SYNs from 10.0.0.255", syns.len(), sent);
    assert_eq!(dropped, 2000, "drops counted in Ipv4Stats::bad_source");
    assert_eq!(lab.victim.usage().tcp_half_open, 0);
}

#[test]
fn syns_from_the_limited_broadcast_multicast_and_martians_get_no_answer() {
    // RFC 1122 §3.2.1.3 and RFC 1812 §5.3.7: limited broadcast, multicast,
    // 0.0.0.0 (to a unicast address), loopback and class E sources.
    let lab = Lab::new(5);
    let sources = [
        Ipv4Addr::BROADCAST,
        Ipv4Addr::new(224, 0, 0, 1),
        Ipv4Addr::new(239, 1, 2, 3),
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::new(0, 1, 2, 3),
        Ipv4Addr::new(127, 0, 0, 1),
        Ipv4Addr::new(240, 0, 0, 1),
    ];
    let syns: Vec<Vec<u8>> = sources
        .iter()
        .enumerate()
        .flat_map(|(i, &src)| {
            (0..50u16).map(move |p| tcp_segment(src, VICTIM, 2000 + p, TcpFlags::SYN, i as u32 * 1000 + u32::from(p)))
        })
        .collect();
    let sent = lab.attack(&syns, Duration::from_millis(1), Duration::from_secs(120));
    assert_silent("SYNs from 255.255.255.255, multicast, 0/8, 127/8, 240/4", syns.len(), sent);
    assert_eq!(lab.victim.usage().tcp_half_open, 0, "no state for a bogus source");
}

#[test]
fn a_land_syn_gets_no_answer_and_no_arp_for_ourselves() {
    // "land": source = destination = our address and port. The stack used
    // to take it as a SYN from itself and ARP for its own address to answer.
    let lab = Lab::new(6);
    let syns: Vec<Vec<u8>> = (0..100u16)
        .map(|i| {
            let port = if i == 0 { PORT } else { 3000 + i };
            tcp_segment(VICTIM, VICTIM, port, TcpFlags::SYN, u32::from(i))
        })
        .collect();
    let sent = lab.attack(&syns, Duration::from_millis(1), Duration::from_secs(120));
    assert_silent("100 land SYNs (10.0.0.1 -> 10.0.0.1)", syns.len(), sent);
    assert_eq!(lab.victim.usage().tcp_half_open, 0);
    assert_eq!(lab.victim.arp().with_cache(|c| c.pending_count()), 0, "a resolution of our own address");
}

#[test]
fn syn_fin_is_not_a_syn() {
    // RFC 9293 §3.10.7.2 has a listener open a connection for a SYN;
    // SYN+FIN is no legitimate opening (no stack sends it; scanners and
    // fingerprinting do), and Linux's LISTEN and FreeBSD's drop_synfin
    // discard it. From the real peer's address, so an answer would reach
    // it by unicast.
    let lab = Lab::new(7);
    let syns: Vec<Vec<u8>> = (0..100u16)
        .map(|i| tcp_segment(PEER, VICTIM, 4000 + i, TcpFlags(TcpFlags::SYN.0 | TcpFlags::FIN.0), u32::from(i)))
        .collect();
    let sent = lab.attack(&syns, Duration::from_millis(1), Duration::from_secs(120));
    println!("100 SYN+FIN from 10.0.0.2: victim sent {sent:?}, TCP {:?}", lab.victim.tcp().stats());
    assert_eq!(sent.syn, 0, "SYN-ACKs to SYN+FIN");
    assert_eq!(sent, Sent::default(), "the victim answered SYN+FIN");
    assert_eq!(lab.victim.tcp().stats().syn_fin_dropped, 100);
    // A plain SYN from the same peer is still answered.
    let sent =
        lab.attack(&[tcp_segment(PEER, VICTIM, 5000, TcpFlags::SYN, 7)], Duration::ZERO, Duration::from_millis(10));
    assert_eq!(sent.syn, 1, "a SYN after the SYN+FINs: {sent:?}");
}

#[test]
fn echo_requests_from_bogus_sources_get_no_reply() {
    // RFC 1122 §3.2.1.3 (and §3.2.2.6's care about broadcast echoes):
    // replies to a broadcast source go to the whole link; to our own
    // address, to ourselves by ARP.
    let lab = Lab::new(8);
    let mut pings = Vec::new();
    for (i, src) in [SUBNET_BROADCAST, Ipv4Addr::BROADCAST, VICTIM, Ipv4Addr::new(224, 0, 0, 1)].into_iter().enumerate()
    {
        pings.extend((0..100u16).map(|seq| echo_request(src, VICTIM, i as u16 * 1000 + seq)));
    }
    let sent = lab.attack(&pings, Duration::from_millis(1), Duration::from_secs(10));
    assert_silent("echo requests from 10.0.0.255, 255.255.255.255, 10.0.0.1, 224.0.0.1", pings.len(), sent);
    // A real host is still answered.
    let sent = lab.attack(&[echo_request(PEER, VICTIM, 1)], Duration::ZERO, Duration::from_millis(10));
    assert_eq!(sent.icmp, 1, "{sent:?}");
}

#[test]
fn udp_from_bogus_sources_is_neither_delivered_nor_answered() {
    // To a closed port (port unreachable would go to the source) and to
    // the victim's echo socket (the application would answer the source).
    let lab = Lab::new(9);
    let mut datagrams = Vec::new();
    for src in [SUBNET_BROADCAST, Ipv4Addr::BROADCAST, VICTIM, Ipv4Addr::UNSPECIFIED] {
        for i in 0..50u16 {
            datagrams.push(udp_datagram(src, VICTIM, 6000 + i, UDP_ECHO));
            datagrams.push(udp_datagram(src, VICTIM, 6000 + i, 9999));
        }
    }
    let sent = lab.attack(&datagrams, Duration::from_millis(1), Duration::from_secs(10));
    assert_silent("UDP from 10.0.0.255, 255.255.255.255, 10.0.0.1, 0.0.0.0", datagrams.len(), sent);
    assert_eq!(lab.victim.udp().stats().delivered, 0);
    // A real host's datagram is echoed, and one to a closed port answered.
    let sent = lab.attack(
        &[udp_datagram(PEER, VICTIM, 6000, UDP_ECHO), udp_datagram(PEER, VICTIM, 6001, 9999)],
        Duration::ZERO,
        Duration::from_millis(10),
    );
    assert_eq!((sent.udp, sent.icmp), (1, 1), "{sent:?}");
}

#[test]
fn udp_from_0_0_0_0_to_the_limited_broadcast_is_still_delivered() {
    // RFC 1122 §3.2.1.3 (a) and RFC 2131 §4.1: a host that does not know
    // its address yet (a DHCP client) sends from 0.0.0.0 to
    // 255.255.255.255, and a DHCP server must receive that.
    let lab = Lab::new(10);
    let victim = lab.victim.clone();
    let server = lab
        .sim
        .run_until(
            async move { victim.udp().bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 67))).await.unwrap() },
            Duration::from_secs(1),
        )
        .unwrap();
    let discover = udp_datagram(Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST, 68, 67);
    lab.attack(&[discover], Duration::ZERO, Duration::from_millis(10));
    assert_eq!(server.queued(), 1, "the DHCP-style broadcast from 0.0.0.0 was dropped");
}
