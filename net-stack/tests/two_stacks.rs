//! Two stacks on the virtual switch, in virtual time, with injected faults;
//! plus a raw port that floods one of them to check its bounds.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use futures::future::{self, Either};
use mirage_net_stack::arp::ArpConfig;
use mirage_net_stack::ipv4::reassembly::ReassemblyConfig;
use mirage_net_stack::ipv4::Ipv4Config;
use mirage_net_stack::stack::{NetStack, StackBuilder};
use mirage_net_stack::switch::{LinkFaults, Simulation, SwitchPort, VirtualClock, VirtualPlatform, VirtualSwitch};
use mirage_net_stack::wire::{ArpOperation, ArpPacket, ArpRepr, EthernetPacket, EthernetRepr, Ipv4Packet, Ipv4Repr};
use mirage_types::ethernet::EtherType;
use mirage_types::icmp::Icmp;
use mirage_types::ip::IpProtocol;
use mirage_types::net::{MacAddress, NetworkDevice};
use mirage_types::stack::Stack;
use mirage_types::tcp::{Error as _, Tcp};
use mirage_types::time::{MonotonicClock, Sleep};
use mirage_types::udp::Error as _;
use mirage_types::udp::{Datagram, Udp, UdpSocket};

type TestStack = NetStack<SwitchPort, VirtualPlatform>;

const MAC_A: MacAddress = MacAddress([2, 0, 0, 0, 0, 0xa]);
const MAC_B: MacAddress = MacAddress([2, 0, 0, 0, 0, 0xb]);
const MAC_RAW: MacAddress = MacAddress([2, 0, 0, 0, 0, 0xf]);
const IP_A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const IP_B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const IP_RAW: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 99);

struct Net {
    sim: Simulation,
    clock: VirtualClock,
    a: Rc<TestStack>,
    b: Rc<TestStack>,
    raw: SwitchPort,
}

fn cidr(ip: Ipv4Addr) -> Ipv4Config {
    Ipv4Config { address: mirage_types::ip::Ipv4Cidr::new(ip, 24).unwrap(), gateway: None }
}

/// Stacks A and B (B with `reassembly`), both links with `faults`, their
/// input loops spawned, and a fault-free raw port.
fn net(seed: u64, faults: LinkFaults, reassembly: ReassemblyConfig) -> Net {
    let clock = VirtualClock::new();
    let sim = Simulation::new(&clock);
    let switch = VirtualSwitch::new(&clock, seed);
    let (pa, pb) = (switch.add_port(MAC_A), switch.add_port(MAC_B));
    switch.set_faults(&pa, faults);
    switch.set_faults(&pb, faults);
    let raw = switch.add_port(MAC_RAW);
    let (pa_platform, pb_platform) = (VirtualPlatform::new(&sim, seed + 1), VirtualPlatform::new(&sim, seed + 2));
    let (a, b) = sim
        .run_until(
            async {
                let a = StackBuilder::new(pa, pa_platform).ipv4(cidr(IP_A)).build().await.unwrap();
                let b = StackBuilder::new(pb, pb_platform)
                    .ipv4(cidr(IP_B))
                    .reassembly_config(reassembly)
                    .build()
                    .await
                    .unwrap();
                (Rc::new(a), Rc::new(b))
            },
            Duration::from_secs(1),
        )
        .unwrap();
    for s in [&a, &b] {
        let s = s.clone();
        sim.spawn(async move {
            s.run().await.expect("the virtual link never fails");
        });
    }
    Net { sim, clock, a, b, raw }
}

async fn recv_within(clock: &VirtualClock, socket: &impl UdpSocket, d: Duration) -> Option<Datagram> {
    let recv = std::pin::pin!(socket.recv_from());
    let timer = std::pin::pin!(clock.sleep(d));
    match future::select(recv, timer).await {
        Either::Left((r, _)) => r.ok(),
        Either::Right(_) => None,
    }
}

const LOSSY: LinkFaults = LinkFaults {
    loss: 0.1,
    duplicate: 0.0,
    reorder: 0.0,
    reorder_delay: Duration::ZERO,
    corrupt: 0.0,
    delay: Duration::from_millis(1),
    jitter: Duration::ZERO,
};

#[test]
fn ping_resolves_arp_and_gets_replies_under_10_percent_loss() {
    let n = net(1, LOSSY, ReassemblyConfig::default());
    let answered = n
        .sim
        .run_until(
            async {
                let mut answered = 0;
                for seq in 0..20u16 {
                    // ICMP does not retransmit; the test does, as ping(8)'s
                    // user would.
                    for _ in 0..10 {
                        if let Ok(reply) =
                            n.a.icmp().ping(IpAddr::V4(IP_B), seq, b"mirage ping", Duration::from_secs(1)).await
                        {
                            assert_eq!(
                                (reply.from, reply.seq, &reply.payload[..]),
                                (IpAddr::V4(IP_B), seq, &b"mirage ping"[..])
                            );
                            answered += 1;
                            break;
                        }
                    }
                }
                answered
            },
            Duration::from_secs(600),
        )
        .unwrap();
    assert_eq!(answered, 20);
    let entry = n.a.arp().with_cache(|c| c.entries().find(|(ip, _)| *ip == IP_B));
    assert_eq!(entry, Some((IP_B, MAC_B)));
}

#[test]
fn ping_to_an_absent_host_times_out_and_arp_reports_it() {
    let n = net(2, LinkFaults::default(), ReassemblyConfig::default());
    let e = n
        .sim
        .run_until(
            n.a.icmp().ping(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 77)), 1, b"x", Duration::from_secs(30)),
            Duration::from_secs(60),
        )
        .unwrap()
        .unwrap_err();
    assert_eq!(mirage_types::icmp::Error::kind(&e), mirage_types::icmp::ErrorKind::Unreachable, "{e}");
    // ArpConfig::default(): five requests a second apart, then failure,
    // well before the ping's own timeout.
    assert_eq!(n.clock.now(), mirage_types::time::Instant::ZERO + Duration::from_secs(5));
}

#[test]
fn udp_exchange_under_10_percent_loss() {
    let n = net(3, LOSSY, ReassemblyConfig::default());
    let b = n.b.clone();
    n.sim.spawn(async move {
        let socket = b.udp().bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 7))).await.unwrap();
        for _ in 0..1000 {
            let d = socket.recv_from().await.unwrap();
            assert_eq!(d.dst, SocketAddr::from((IP_B, 7)));
            let _ = socket.send_to(&d.payload, d.src).await;
        }
    });
    let exchanged = n
        .sim
        .run_until(
            async {
                let socket = n.a.udp().bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))).await.unwrap();
                assert!(socket.local_addr().port() >= 49152);
                let mut exchanged = 0;
                for i in 0..30u32 {
                    let msg = format!("message {i}");
                    for _ in 0..20 {
                        socket.send_to(msg.as_bytes(), SocketAddr::from((IP_B, 7))).await.unwrap();
                        // Stale echoes of earlier attempts are skipped.
                        if let Some(d) = recv_within(&n.clock, &socket, Duration::from_millis(500)).await {
                            if d.payload == msg.as_bytes() {
                                assert_eq!(d.src, SocketAddr::from((IP_B, 7)));
                                exchanged += 1;
                                break;
                            }
                        }
                    }
                }
                exchanged
            },
            Duration::from_secs(600),
        )
        .unwrap();
    assert_eq!(exchanged, 30);
}

#[test]
fn udp_to_a_closed_port_gets_port_unreachable_and_binding_rules_hold() {
    let n = net(4, LinkFaults::default(), ReassemblyConfig::default());
    n.sim
        .run_until(
            async {
                let socket = n.a.udp().bind(SocketAddr::from((IP_A, 5000))).await.unwrap();
                let again = n.a.udp().bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 5000))).await;
                assert_eq!(again.unwrap_err().kind(), mirage_types::udp::ErrorKind::AddressInUse);
                let foreign = n.a.udp().bind(SocketAddr::from((IP_B, 5001))).await;
                assert_eq!(foreign.unwrap_err().kind(), mirage_types::udp::ErrorKind::AddressNotAvailable);
                socket.send_to(b"anyone?", SocketAddr::from((IP_B, 9))).await.unwrap();
                n.clock.sleep(Duration::from_millis(100)).await;
                drop(socket);
                // Dropping unbinds.
                n.a.udp().bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 5000))).await.unwrap();
            },
            Duration::from_secs(10),
        )
        .unwrap();
    assert_eq!(n.b.usage().udp_sockets, 0);
    assert_eq!(n.b.icmp().stats().errors_sent, 1);
    assert_eq!(n.b.udp().stats().no_socket, 1);
}

#[test]
fn a_60000_byte_datagram_fragments_and_reassembles_under_10_percent_loss() {
    // A lost fragment leaves its datagram incomplete until the reassembly
    // timeout; a short one lets the test's retries reuse the buffer.
    let reassembly = ReassemblyConfig { timeout: Duration::from_secs(1), ..ReassemblyConfig::default() };
    let n = net(5, LOSSY, reassembly);
    let payload: Vec<u8> = (0..60_000u32).map(|i| (i % 253) as u8).collect();
    let tries = n
        .sim
        .run_until(
            async {
                let rx = n.b.udp().bind(SocketAddr::from((IP_B, 9000))).await.unwrap();
                let tx = n.a.udp().bind(SocketAddr::from((IP_A, 9001))).await.unwrap();
                // 41 fragments each cross a 10%-loss link: about 1.3% of
                // tries arrive whole, so allow plenty.
                for attempt in 1..=2000u32 {
                    tx.send_to(&payload, SocketAddr::from((IP_B, 9000))).await.unwrap();
                    if let Some(d) = recv_within(&n.clock, &rx, Duration::from_millis(1100)).await {
                        assert_eq!(d.payload.len(), 60_000);
                        assert!(d.payload == payload, "reassembled payload differs");
                        return attempt;
                    }
                    let usage = n.b.usage();
                    assert!(usage.reassembly_datagrams <= 16 && usage.reassembly_bytes <= 256 * 1024, "{usage:?}");
                }
                panic!("no datagram arrived whole in 2000 tries");
            },
            Duration::from_secs(3600),
        )
        .unwrap();
    assert!(tries >= 1);
    let (stats, _, _) = n.b.ipv4().reassembly_usage();
    assert_eq!(stats.completed, 1);
}

#[test]
fn a_60000_byte_datagram_arrives_at_once_on_a_clean_reordering_link() {
    let faults =
        LinkFaults { reorder: 0.2, reorder_delay: Duration::from_millis(3), duplicate: 0.1, ..LinkFaults::default() };
    let n = net(6, faults, ReassemblyConfig::default());
    let payload: Vec<u8> = (0..60_000u32).map(|i| (i * 31 % 256) as u8).collect();
    let got = n
        .sim
        .run_until(
            async {
                let rx = n.b.udp().bind(SocketAddr::from((IP_B, 9000))).await.unwrap();
                let tx = n.a.udp().bind(SocketAddr::from((IP_A, 9001))).await.unwrap();
                tx.send_to(&payload, SocketAddr::from((IP_B, 9000))).await.unwrap();
                rx.recv_from().await.unwrap()
            },
            Duration::from_secs(10),
        )
        .unwrap();
    assert!(got.payload == payload);
    assert!(n.a.ipv4().stats().fragmented == 1);
}

/// An Ethernet frame from the raw port carrying an IPv4 datagram (or
/// fragment) with `payload`.
fn raw_ipv4(dst_mac: MacAddress, header: Ipv4Repr, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0u8; 14 + header.header_len + payload.len()];
    EthernetRepr { src_addr: MAC_RAW, dst_addr: dst_mac, ethertype: EtherType::IPV4 }
        .emit(&mut EthernetPacket::new_unchecked(&mut frame[..]));
    header.emit(&mut Ipv4Packet::new_unchecked(&mut frame[14..]));
    frame[14 + header.header_len..].copy_from_slice(payload);
    frame
}

fn fragment(ident: u16, offset: u16, more: bool, payload: &[u8]) -> Ipv4Repr {
    let mut h = Ipv4Repr::new(IP_RAW, IP_B, IpProtocol::UDP, payload.len(), 64);
    h.ident = ident;
    h.fragment_offset = offset;
    h.more_fragments = more;
    h
}

async fn send_raw(port: &SwitchPort, frame: &[u8]) {
    port.transmit(frame.len(), |buf| buf.copy_from_slice(frame)).await.unwrap();
}

#[test]
fn a_flood_of_never_completing_fragments_stays_within_bounds_and_b_keeps_serving() {
    let n = net(7, LinkFaults::default(), ReassemblyConfig::default());
    n.sim
        .run_until(
            async {
                let chunk = [0x55u8; 1400];
                for ident in 0..5000u16 {
                    // First fragments only: none ever completes.
                    let frame = raw_ipv4(MAC_B, fragment(ident, 0, true, &chunk), &chunk);
                    send_raw(&n.raw, &frame).await;
                    if ident % 100 == 0 {
                        n.clock.sleep(Duration::from_millis(1)).await;
                        let usage = n.b.usage();
                        assert!(usage.reassembly_datagrams <= 16, "{usage:?}");
                        assert!(usage.reassembly_bytes <= 256 * 1024, "{usage:?}");
                    }
                }
                n.clock.sleep(Duration::from_millis(10)).await;
                // Unfragmented traffic is served during the flood's wake.
                n.a.icmp().ping(IpAddr::V4(IP_B), 1, b"still there?", Duration::from_secs(2)).await.unwrap();
                // Once the flood's partial datagrams time out, fragmented
                // traffic gets through again.
                n.clock.sleep(Duration::from_secs(31)).await;
                let big = vec![7u8; 4000];
                n.a.icmp().ping(IpAddr::V4(IP_B), 2, &big, Duration::from_secs(2)).await.unwrap();
            },
            Duration::from_secs(120),
        )
        .unwrap();
    let (stats, datagrams, bytes) = n.b.ipv4().reassembly_usage();
    assert!(stats.dropped_bound > 4000, "{stats:?}");
    assert_eq!((datagrams, bytes), (0, 0));
}

#[test]
fn overlapping_fragments_drop_the_datagram_rfc_5722() {
    let n = net(8, LinkFaults::default(), ReassemblyConfig::default());
    let got = n
        .sim
        .run_until(
            async {
                let rx = n.b.udp().bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 53))).await.unwrap();
                // A UDP datagram of 8 + 32 bytes in three fragments, the
                // second overlapping the first by 8 bytes.
                let mut datagram = [0u8; 40];
                datagram[0..2].copy_from_slice(&1234u16.to_be_bytes());
                datagram[2..4].copy_from_slice(&53u16.to_be_bytes());
                datagram[4..6].copy_from_slice(&40u16.to_be_bytes());
                let parts =
                    [(0u16, true, &datagram[0..24]), (16, true, &datagram[16..32]), (32, false, &datagram[32..40])];
                for (offset, more, part) in parts {
                    send_raw(&n.raw, &raw_ipv4(MAC_B, fragment(42, offset, more, part), part)).await;
                }
                recv_within(&n.clock, &rx, Duration::from_secs(1)).await
            },
            Duration::from_secs(10),
        )
        .unwrap();
    assert!(got.is_none(), "an overlapped datagram was delivered");
    let (stats, _, bytes) = n.b.ipv4().reassembly_usage();
    assert_eq!((stats.discarded_overlap, bytes), (1, 0));
}

#[test]
fn an_arp_flood_from_spoofed_addresses_stays_within_the_cache_bound() {
    let n = net(9, LinkFaults::default(), ReassemblyConfig::default());
    n.sim
        .run_until(
            async {
                for i in 0..20_000u32 {
                    let spoofed_mac =
                        MacAddress::local_from_random([0x10, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8, 1]);
                    let spoofed_ip = Ipv4Addr::from(0x0a00_0000 + 1000 + i);
                    // Half ask for B (an entry each, within the bound), half
                    // for hosts that are not B (no entry at all).
                    let target = if i % 2 == 0 { IP_B } else { Ipv4Addr::from(0x0a00_0000 + 500_000 + i) };
                    let arp = ArpRepr {
                        operation: ArpOperation::Request,
                        source_hardware_addr: spoofed_mac,
                        source_protocol_addr: spoofed_ip,
                        target_hardware_addr: MacAddress::UNSPECIFIED,
                        target_protocol_addr: target,
                    };
                    let mut frame = vec![0u8; 14 + 28];
                    EthernetRepr { src_addr: spoofed_mac, dst_addr: MacAddress::BROADCAST, ethertype: EtherType::ARP }
                        .emit(&mut EthernetPacket::new_unchecked(&mut frame[..]));
                    arp.emit(&mut ArpPacket::new_unchecked(&mut frame[14..]));
                    send_raw(&n.raw, &frame).await;
                    if i % 500 == 0 {
                        n.clock.sleep(Duration::from_millis(1)).await;
                        let usage = n.b.usage();
                        assert!(usage.arp_entries <= ArpConfig::default().max_entries, "{usage:?}");
                    }
                }
                n.clock.sleep(Duration::from_millis(10)).await;
                n.a.icmp().ping(IpAddr::V4(IP_B), 1, b"still there?", Duration::from_secs(5)).await.unwrap();
            },
            Duration::from_secs(60),
        )
        .unwrap();
    let usage = n.b.usage();
    assert_eq!(usage.arp_entries, ArpConfig::default().max_entries, "{usage:?}");
    let stats = n.b.arp().with_cache(|c| c.stats());
    assert!(stats.ignored >= 10_000 && stats.evicted > 9000, "{stats:?}");
}

#[test]
fn tcp_connect_to_a_closed_port_is_refused() {
    let n = net(10, LinkFaults::default(), ReassemblyConfig::default());
    let e = n.sim.run_until(n.a.tcp().connect(SocketAddr::from((IP_B, 80))), Duration::from_secs(5)).unwrap();
    let e = e.expect_err("nothing listens on port 80");
    assert_eq!(e.kind(), mirage_types::tcp::ErrorKind::ConnectionRefused, "{e}");
    assert_eq!(n.a.addresses(), vec![IpAddr::V4(IP_A)]);
}
