//! TCP between two of our stacks on the virtual switch, in virtual time:
//! bulk echo under seeded loss, reordering, duplication and corruption;
//! connection state that does not leak; the listener's and the table's
//! bounds; and a SYN flood from spoofed addresses beside a transfer.

use std::cell::RefCell;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use futures::future;
use mirage_net_stack::arp::ArpConfig;
use mirage_net_stack::ipv4::Ipv4Config;
use mirage_net_stack::stack::{NetStack, StackBuilder};
use mirage_net_stack::switch::{LinkFaults, Simulation, SwitchPort, VirtualClock, VirtualPlatform, VirtualSwitch};
use mirage_net_stack::tcp::{TcpConfig, TcpLimits};
use mirage_net_stack::wire::{ArpOperation, ArpPacket, ArpRepr, TcpPacket, TcpRepr};
use mirage_net_stack::wire::{EthernetPacket, EthernetRepr, Ipv4Packet, Ipv4Repr, SeqNumber, TcpFlags, TcpOptions};
use mirage_testkit::pattern;
use mirage_types::ethernet::EtherType;
use mirage_types::flow::{Flow, Shutdown};
use mirage_types::ip::{IpProtocol, Ipv4Cidr};
use mirage_types::net::{MacAddress, NetworkDevice};
use mirage_types::stack::Stack;
use mirage_types::tcp::{Error as _, ErrorKind, Tcp, TcpListener};
use mirage_types::time::{MonotonicClock, Sleep};

type TestStack = NetStack<SwitchPort, VirtualPlatform>;

const MAC_A: MacAddress = MacAddress([2, 0, 0, 0, 0, 0xa]);
const MAC_B: MacAddress = MacAddress([2, 0, 0, 0, 0, 0xb]);
const MAC_RAW: MacAddress = MacAddress([2, 0, 0, 0, 0, 0xf]);
const IP_A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const IP_B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const ECHO_PORT: u16 = 7;

struct Net {
    sim: Simulation,
    clock: VirtualClock,
    a: Rc<TestStack>,
    b: Rc<TestStack>,
    raw: SwitchPort,
}

/// Settings that survive heavy loss: a long user timeout, and an RTO cap
/// that keeps backoff from stretching virtual time to hours.
fn patient() -> TcpConfig {
    TcpConfig { user_timeout: Duration::from_secs(3600), max_rto: Duration::from_secs(4), ..TcpConfig::default() }
}

/// Stacks A and B (with the given TCP settings and limits), both links
/// with `faults`, their input loops spawned, and a fault-free raw port.
fn net(seed: u64, faults: LinkFaults, tcp: TcpConfig, limits_a: TcpLimits, limits_b: TcpLimits) -> Net {
    let clock = VirtualClock::new();
    let sim = Simulation::new(&clock);
    let switch = VirtualSwitch::new(&clock, seed);
    let (pa, pb) = (switch.add_port(MAC_A), switch.add_port(MAC_B));
    switch.set_faults(&pa, faults);
    switch.set_faults(&pb, faults);
    let raw = switch.add_port(MAC_RAW);
    let cidr = |ip| Ipv4Config { address: Ipv4Cidr::new(ip, 24).unwrap(), gateway: None };
    let (pa_platform, pb_platform) = (VirtualPlatform::new(&sim, seed + 1), VirtualPlatform::new(&sim, seed + 2));
    let (a, b) = sim
        .run_until(
            async {
                let a = StackBuilder::new(pa, pa_platform)
                    .ipv4(cidr(IP_A))
                    .tcp_config(tcp.clone())
                    .tcp_limits(limits_a)
                    .build()
                    .await
                    .unwrap();
                let b = StackBuilder::new(pb, pb_platform)
                    .ipv4(cidr(IP_B))
                    .tcp_config(tcp.clone())
                    .tcp_limits(limits_b)
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

/// Echoes one flow until end of stream, then closes it.
async fn echo<F: Flow>(mut flow: F) {
    let mut buf = vec![0u8; 16 * 1024];
    // Each pass echoes one read; it ends at end of stream or an error.
    loop {
        match flow.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if flow.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = flow.close().await;
}

/// An echo server on B's port 7 that serves every connection it accepts
/// in its own task.
fn serve_echo(n: &Net, backlog: usize) {
    let (b, sim) = (n.b.clone(), n.sim.clone());
    n.sim.spawn(async move {
        let listener = b.tcp().listen(SocketAddr::from((Ipv4Addr::UNSPECIFIED, ECHO_PORT)), backlog).await.unwrap();
        // Each pass accepts one connection; the server runs as long as the
        // test does.
        loop {
            let flow = listener.accept().await.expect("accept never fails");
            sim.spawn(echo(flow));
        }
    });
}

/// Writes `data` and then shuts the write side, while reading until end
/// of stream, on one flow: both directions progress together (write and
/// read are cancel-safe, so each poll tries both afresh). Returns what was
/// read.
async fn duplex<F: Flow>(flow: &mut F, data: &[u8]) -> Result<Vec<u8>, F::Error> {
    duplex_with(flow, data, None).await
}

/// [`duplex`], writing slices of `handed` with [`Flow::write_bytes`] when
/// it is given (`data` is then its contents).
async fn duplex_with<F: Flow>(flow: &mut F, data: &[u8], handed: Option<&Bytes>) -> Result<Vec<u8>, F::Error> {
    let (mut sent, mut shut) = (0, false);
    let mut got = Vec::with_capacity(data.len());
    let mut buf = vec![0u8; 64 * 1024];
    future::poll_fn(|cx| {
        // Each pass makes progress in at least one direction or returns;
        // there are at most data.len() bytes to move each way.
        loop {
            let mut progress = false;
            if sent < data.len() {
                let written = match handed {
                    Some(bytes) => pin!(flow.write_bytes(bytes.slice(sent..))).poll(cx),
                    None => pin!(flow.write(&data[sent..])).poll(cx),
                };
                if let Poll::Ready(r) = written {
                    match r {
                        Ok(n) => sent += n,
                        Err(e) => return Poll::Ready(Err(e)),
                    }
                    progress = true;
                }
            } else if !shut {
                if let Poll::Ready(r) = pin!(flow.shutdown(Shutdown::Write)).poll(cx) {
                    if let Err(e) = r {
                        return Poll::Ready(Err(e));
                    }
                    shut = true;
                    progress = true;
                }
            }
            let read = pin!(flow.read(&mut buf)).poll(cx);
            match read {
                Poll::Ready(Ok(0)) => return Poll::Ready(Ok(std::mem::take(&mut got))),
                Poll::Ready(Ok(n)) => {
                    got.extend_from_slice(&buf[..n]);
                    progress = true;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {}
            }
            if !progress {
                return Poll::Pending;
            }
        }
    })
    .await
}

fn faults(loss: f64) -> LinkFaults {
    LinkFaults {
        loss,
        duplicate: 0.01,
        reorder: 0.02,
        reorder_delay: Duration::from_millis(3),
        corrupt: 0.01,
        delay: Duration::from_millis(1),
        jitter: Duration::from_micros(300),
    }
}

/// `size` bytes from A to B's echo server and back, byte-exact, under
/// `loss` (with the reordering, duplication and corruption of [`faults`]);
/// afterwards both stacks hold no connection once TIME-WAIT is over.
fn echo_through_b(seed: u64, loss: f64, size: usize, limit: Duration) {
    let n = net(seed, faults(loss), patient(), TcpLimits::default(), TcpLimits::default());
    serve_echo(&n, 16);
    let data = pattern(seed, size);
    let echoed = n
        .sim
        .run_until(
            async {
                let mut flow = n.a.tcp().connect(SocketAddr::from((IP_B, ECHO_PORT))).await.unwrap();
                let echoed = duplex(&mut flow, &data).await.unwrap();
                flow.close().await.unwrap();
                echoed
            },
            limit,
        )
        .unwrap_or_else(|e| panic!("seed {seed}, loss {loss}: {e}"));
    let took = n.clock.now().saturating_duration_since(mirage_types::time::Instant::ZERO);
    std::println!("seed {seed}, loss {loss}, {size} bytes each way: {took:?} of virtual time");
    assert_eq!(echoed.len(), data.len(), "seed {seed}, loss {loss}");
    assert!(echoed == data, "seed {seed}, loss {loss}: the echo differs from what was sent");
    assert_no_connections_after_time_wait(&n);
}

/// Runs the simulation past TIME-WAIT (2·MSL) and checks that neither
/// stack holds connection state.
fn assert_no_connections_after_time_wait(n: &Net) {
    let msl = TcpConfig::default().msl;
    let clock = n.clock.clone();
    n.sim.run_until(clock.sleep(msl * 2 + Duration::from_secs(5)), msl * 3).unwrap();
    for (name, s) in [("A", &n.a), ("B", &n.b)] {
        let u = s.usage();
        assert_eq!(
            (u.tcp_connections, u.tcp_half_open, u.tcp_accept_queue),
            (0, 0, 0),
            "stack {name} still holds TCP state: {u:?}"
        );
    }
}

#[test]
fn echo_10_mib_on_a_clean_link() {
    echo_through_b(11, 0.0, 10 << 20, Duration::from_secs(120));
}

// The echo tests under loss once stalled for some seeds (23 at 5 %, for
// one): B's echo task blocked writing with its send buffer full, so it
// stopped reading and B's receive window closed; every segment from A was
// then unacceptable, and B dropped it without looking at its ACK, so B
// never learned that its data had arrived. Seed 23 and the others that
// stalled are kept here.

#[test]
fn echo_10_mib_under_5_percent_loss() {
    for seed in [21, 22, 23] {
        echo_through_b(seed, 0.05, 10 << 20, Duration::from_secs(1800));
    }
}

#[test]
fn echo_10_mib_under_10_percent_loss() {
    for seed in [31, 32] {
        echo_through_b(seed, 0.10, 10 << 20, Duration::from_secs(3600));
    }
}

/// 30 % loss each way: most of the time goes to retransmission timeouts
/// (at small windows a lost segment or ACK leaves nothing to trigger fast
/// retransmit), about 3000 s of virtual time per seed, a few seconds of
/// wall time. It once took some 9000 s: RTT samples from timestamps
/// echoed before a timeout held the timeout's wait and drove SRTT, and so
/// the RTO, to seconds (see `sample_rtt` in connection.rs).
#[test]
fn echo_10_mib_under_30_percent_loss() {
    for seed in [41, 42, 43, 44] {
        echo_through_b(seed, 0.30, 10 << 20, Duration::from_secs(4 * 3600));
    }
}

/// ARP failing in the middle of a transfer: at 30 % loss each way, with
/// entries expiring every second and two unanswered requests failing a
/// resolution, both stacks keep losing each other's address. Each failure
/// is held for `failure_hold`, and TCP's next retransmission must start a
/// new resolution even when the peer is silent, so the stack's input loop
/// is asleep and runs no ARP timers (a transfer once stopped here for
/// good, a peer in FIN-WAIT-2 unreachable).
#[test]
fn a_transfer_survives_arp_failures_under_30_percent_loss() {
    let arp = ArpConfig { entry_lifetime: Duration::from_secs(1), max_attempts: 2, ..ArpConfig::default() };
    let mut failures = 0;
    for seed in [16, 17] {
        let n = net(seed, faults(0.30), patient(), TcpLimits::default(), TcpLimits::default());
        serve_echo(&n, 16);
        let data = pattern(seed, 256 << 10);
        let echoed = n
            .sim
            .run_until(
                async {
                    // A connect whose SYN finds no neighbour fails, as on
                    // Linux (EHOSTUNREACH): the failures start after it.
                    let mut flow = n.a.tcp().connect(SocketAddr::from((IP_B, ECHO_PORT))).await.unwrap();
                    n.a.arp().set_config(arp);
                    n.b.arp().set_config(arp);
                    let echoed = duplex(&mut flow, &data).await.unwrap();
                    flow.close().await.unwrap();
                    echoed
                },
                Duration::from_secs(4 * 3600),
            )
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert!(echoed == data, "seed {seed}: the echo differs from what was sent");
        assert_no_connections_after_time_wait(&n);
        let failed = |s: &TestStack| s.arp().with_cache(|c| c.stats().resolutions_failed);
        failures += failed(&n.a) + failed(&n.b);
        println!(
            "seed {seed}: {} ARP resolutions failed in {:?} of virtual time",
            failed(&n.a) + failed(&n.b),
            n.clock.now().saturating_duration_since(mirage_types::time::Instant::ZERO)
        );
    }
    // Otherwise the seeds no longer exercise what this test is about.
    assert!(failures >= 4, "only {failures} ARP resolutions failed over both seeds");
}

/// `Flow::write_bytes`: the stack holds the slices it is handed (no
/// copy), resends lost segments from them, and lets go of them once
/// acknowledged.
#[test]
fn echo_of_data_handed_over_as_bytes_under_loss() {
    for seed in [51, 52] {
        let n = net(seed, faults(0.05), patient(), TcpLimits::default(), TcpLimits::default());
        serve_echo(&n, 16);
        let data = Bytes::from(pattern(seed, 1 << 20));
        let echoed = n
            .sim
            .run_until(
                async {
                    let mut flow = n.a.tcp().connect(SocketAddr::from((IP_B, ECHO_PORT))).await.unwrap();
                    let echoed = duplex_with(&mut flow, &data, Some(&data)).await.unwrap();
                    flow.close().await.unwrap();
                    echoed
                },
                Duration::from_secs(1800),
            )
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert!(echoed == data, "seed {seed}: the echo differs from what was sent");
        assert_no_connections_after_time_wait(&n);
        assert!(data.is_unique(), "seed {seed}: the stack still holds data handed to it");
    }
}

/// Many seeds, smaller transfers: seeds 21, 25 and 26 stalled at 5 %
/// before the zero-window fix.
#[test]
fn echo_1_mib_under_loss_over_many_seeds() {
    for seed in 20..28 {
        echo_through_b(seed, 0.05, 1 << 20, Duration::from_secs(1800));
        echo_through_b(seed + 100, 0.10, 1 << 20, Duration::from_secs(1800));
    }
}

#[test]
fn a_thousand_connect_close_cycles_leak_no_connection_state() {
    let n = net(
        5,
        LinkFaults { delay: Duration::from_micros(100), ..LinkFaults::default() },
        TcpConfig::default(),
        TcpLimits::default(),
        TcpLimits::default(),
    );
    serve_echo(&n, 16);
    let peak = n
        .sim
        .run_until(
            async {
                let mut peak = 0;
                for i in 0..1000u32 {
                    let mut flow = n.a.tcp().connect(SocketAddr::from((IP_B, ECHO_PORT))).await.unwrap();
                    let msg = format!("cycle {i}");
                    let echoed = duplex(&mut flow, msg.as_bytes()).await.unwrap();
                    assert_eq!(echoed, msg.as_bytes());
                    flow.close().await.unwrap();
                    peak = peak.max(n.a.usage().tcp_connections).max(n.b.usage().tcp_connections);
                }
                peak
            },
            Duration::from_secs(600),
        )
        .unwrap();
    // The active closer keeps TIME-WAIT; the table bounds how many.
    assert!(peak <= TcpLimits::default().max_connections, "peak {peak}");
    assert!(n.a.usage().tcp_time_wait > 0, "A closed first, so it holds TIME-WAIT: {:?}", n.a.usage());
    assert_no_connections_after_time_wait(&n);
}

#[test]
fn listener_backlog_bounds_connections_waiting_for_accept() {
    let n = net(6, LinkFaults::default(), TcpConfig::default(), TcpLimits::default(), TcpLimits::default());
    let listener = Rc::new(RefCell::new(None));
    let holder = listener.clone();
    let b = n.b.clone();
    n.sim
        .run_until(
            async move {
                let l = b.tcp().listen(SocketAddr::from((IP_B, 80)), 2).await.unwrap();
                *holder.borrow_mut() = Some(l);
            },
            Duration::from_secs(1),
        )
        .unwrap();
    // Five clients connect; nobody accepts for 3 s.
    let connected = Rc::new(RefCell::new(Vec::new()));
    for _ in 0..5 {
        let (a, connected) = (n.a.clone(), connected.clone());
        n.sim.spawn(async move {
            let flow = a.tcp().connect(SocketAddr::from((IP_B, 80))).await.unwrap();
            connected.borrow_mut().push(flow);
        });
    }
    let clock = n.clock.clone();
    n.sim.run_until(clock.sleep(Duration::from_secs(3)), Duration::from_secs(4)).unwrap();
    // Clients count themselves connected once the SYN-ACK comes (as with
    // any TCP); the bound is on what B holds for accept.
    let u = n.b.usage();
    assert!(u.tcp_accept_queue <= 2, "backlog 2 exceeded: {u:?}");
    assert_eq!(u.tcp_accept_queue, 2, "{u:?}");
    let drops = listener.borrow().as_ref().map(|l| l.stats().accept_queue_drops).unwrap();
    assert!(drops > 0, "handshakes beyond the backlog were not held back");
    // Accepting makes room: every client gets in (they retry their SYNs).
    let accepted = n
        .sim
        .run_until(
            async {
                let l = listener.borrow_mut().take().unwrap();
                let mut flows = Vec::new();
                for _ in 0..5 {
                    flows.push(l.accept().await.unwrap());
                }
                flows.len()
            },
            Duration::from_secs(60),
        )
        .unwrap();
    assert_eq!(accepted, 5);
    n.sim
        .run_until(
            future::poll_fn(|cx| {
                if connected.borrow().len() == 5 {
                    Poll::Ready(())
                } else {
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
            }),
            Duration::from_secs(30),
        )
        .unwrap();
}

#[test]
fn the_connection_table_bound_refuses_beyond_it() {
    let limits = TcpLimits { max_connections: 4, ..TcpLimits::default() };
    let short = TcpConfig { connect_timeout: Duration::from_secs(3), ..TcpConfig::default() };
    // A unbounded, B bounded: B drops the fifth SYN, so A's connect times out.
    let n = net(7, LinkFaults::default(), short.clone(), TcpLimits::default(), limits);
    serve_echo(&n, 16);
    n.sim
        .run_until(
            async {
                let mut flows = Vec::new();
                for _ in 0..4 {
                    flows.push(n.a.tcp().connect(SocketAddr::from((IP_B, ECHO_PORT))).await.unwrap());
                }
                assert_eq!(n.b.usage().tcp_connections, 4);
                let e = n.a.tcp().connect(SocketAddr::from((IP_B, ECHO_PORT))).await.unwrap_err();
                assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
                let u = n.b.usage();
                assert!(u.tcp_connections + u.tcp_half_open + u.tcp_accept_queue <= 4, "{u:?}");
                // One client closes; B's side finishes (LAST-ACK, then
                // gone), making room for a new connection.
                let mut flow = flows.pop().unwrap();
                assert!(duplex(&mut flow, b"bye").await.unwrap() == b"bye");
                flow.close().await.unwrap();
                n.clock.sleep(Duration::from_secs(1)).await;
                let again = n.a.tcp().connect(SocketAddr::from((IP_B, ECHO_PORT))).await;
                assert!(again.is_ok(), "{again:?}");
            },
            Duration::from_secs(60),
        )
        .unwrap();
    // A bounded: its own fifth connect fails at once.
    let n = net(8, LinkFaults::default(), short, limits, TcpLimits::default());
    serve_echo(&n, 16);
    n.sim
        .run_until(
            async {
                let mut flows = Vec::new();
                for _ in 0..4 {
                    flows.push(n.a.tcp().connect(SocketAddr::from((IP_B, ECHO_PORT))).await.unwrap());
                }
                let e = n.a.tcp().connect(SocketAddr::from((IP_B, ECHO_PORT))).await.unwrap_err();
                assert_eq!(e.kind(), ErrorKind::ResourceExhausted, "{e}");
                assert!(e.to_string().contains("table is full"), "{e}");
            },
            Duration::from_secs(10),
        )
        .unwrap();
}

/// An Ethernet frame carrying a SYN from `src` (spoofed) to B's echo port.
fn spoofed_syn(src: Ipv4Addr, port: u16, isn: u32) -> Vec<u8> {
    let tcp = TcpRepr {
        src_port: port,
        dst_port: ECHO_PORT,
        seq_number: SeqNumber(isn),
        ack_number: SeqNumber(0),
        flags: TcpFlags::SYN,
        window_len: 65535,
        options: TcpOptions { max_seg_size: Some(1460), ..TcpOptions::default() },
        payload_len: 0,
    };
    let ip = Ipv4Repr::new(src, IP_B, IpProtocol::TCP, tcp.buffer_len(), 64);
    let mut frame = vec![0u8; 14 + ip.buffer_len()];
    EthernetRepr { src_addr: MAC_RAW, dst_addr: MAC_B, ethertype: EtherType::IPV4 }
        .emit(&mut EthernetPacket::new_unchecked(&mut frame[..]));
    ip.emit(&mut Ipv4Packet::new_unchecked(&mut frame[14..14 + ip.header_len]));
    tcp.emit(&mut TcpPacket::new_unchecked(&mut frame[14 + ip.header_len..]), src, IP_B, |_| ());
    frame
}

#[test]
fn a_syn_flood_from_spoofed_addresses_stays_bounded_and_service_goes_on() {
    let limits = TcpLimits { max_connections: 256, syn_backlog: 32, ..TcpLimits::default() };
    let n = net(9, faults(0.0), patient(), TcpLimits::default(), limits);
    serve_echo(&n, 16);
    let Net { sim, clock, a, b, raw } = n;
    let flooding = Rc::new(std::cell::Cell::new(true));
    let sent = Rc::new(std::cell::Cell::new(0u64));
    {
        let (clock, flooding, sent) = (clock.clone(), flooding.clone(), sent.clone());
        sim.spawn(async move {
            let mut x: u32 = 0x9e37_79b9;
            // One SYN every 200 µs until the test ends the flood; each pass
            // sends one.
            while flooding.get() {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                // Half on-link (B's ARP for them fails), half off-link (no
                // route without a gateway): the sources that cost most.
                let src = if x & 1 == 0 {
                    Ipv4Addr::new(10, 0, 0, 10 + (x >> 8) as u8 % 200)
                } else {
                    Ipv4Addr::from(0xc633_6400 | (x >> 24))
                };
                let frame = spoofed_syn(src, 1024 + (x >> 16) as u16 % 60000, x);
                let _ = raw.transmit(frame.len(), |buf| buf.copy_from_slice(&frame)).await;
                sent.set(sent.get() + 1);
                clock.sleep(Duration::from_micros(200)).await;
            }
        });
    }
    let data = pattern(9, 2 << 20);
    let (echoed, max_usage) = sim
        .run_until(
            async {
                let watch = std::cell::Cell::new((0usize, 0usize));
                let mut flow = a.tcp().connect(SocketAddr::from((IP_B, ECHO_PORT))).await.unwrap();
                let echoed = {
                    let transfer = pin!(duplex(&mut flow, &data));
                    let watcher = pin!(async {
                        // Samples B's usage every 10 ms while the transfer runs.
                        loop {
                            let u = b.usage();
                            let (held, arp) = watch.get();
                            let now_held = u.tcp_connections + u.tcp_half_open + u.tcp_accept_queue;
                            watch.set((held.max(now_held), arp.max(u.arp_pending)));
                            clock.sleep(Duration::from_millis(10)).await;
                        }
                    });
                    match future::select(transfer, watcher).await {
                        future::Either::Left((r, _)) => r.unwrap(),
                        future::Either::Right(_) => unreachable!("the watcher never ends"),
                    }
                };
                flow.close().await.unwrap();
                // A new client still gets in while the flood goes on.
                let mut late = a.tcp().connect(SocketAddr::from((IP_B, ECHO_PORT))).await.unwrap();
                assert!(duplex(&mut late, b"still here").await.unwrap() == b"still here");
                late.close().await.unwrap();
                let w = watch.get();
                (echoed, w)
            },
            Duration::from_secs(600),
        )
        .unwrap();
    flooding.set(false);
    assert!(echoed == data, "the transfer beside the flood was not byte-exact");
    assert!(sent.get() > 1000, "the flood sent only {} SYNs", sent.get());
    assert!(
        max_usage.0 <= limits.max_connections,
        "B held {} connections, bound {}",
        max_usage.0,
        limits.max_connections
    );
    // Each listener holds at most syn_backlog half-open connections; the
    // rest were answered with SYN cookies.
    assert!(b.usage().tcp_half_open <= limits.syn_backlog, "{:?}", b.usage());
}

/// A client we have never resolved connects during a SYN flood from more
/// spoofed on-link addresses than B's pending table holds, so each SYN
/// starts a resolution and first requests outrun the link's request
/// budget. The client knows B's MAC address already (as a second address
/// of a host we talk to would), so it never asks for it, and B's answer
/// to it would wait in that race; it is asked instead at the MAC address
/// its SYN came from (the `arp` module docs, "Asking the sender").
#[test]
fn a_client_that_knows_us_is_served_during_a_flood_that_spends_the_arp_budget() {
    let n = net(11, faults(0.0), patient(), TcpLimits::default(), TcpLimits::default());
    serve_echo(&n, 16);
    let Net { sim, clock, a, b, raw } = n;
    b.arp().set_config(ArpConfig { max_pending: 32, ..ArpConfig::default() });
    // A learns B from a reply addressed to it that it did not ask for, so
    // B never hears A ask.
    let told = ArpRepr {
        operation: ArpOperation::Reply,
        source_hardware_addr: MAC_B,
        source_protocol_addr: IP_B,
        target_hardware_addr: MAC_A,
        target_protocol_addr: IP_A,
    };
    let mut frame = vec![0u8; 14 + told.buffer_len()];
    EthernetRepr { src_addr: MAC_RAW, dst_addr: MAC_A, ethertype: EtherType::ARP }
        .emit(&mut EthernetPacket::new_unchecked(&mut frame[..]));
    told.emit(&mut ArpPacket::new_unchecked(&mut frame[14..]));
    sim.run_until(raw.transmit(frame.len(), |buf| buf.copy_from_slice(&frame)), Duration::from_secs(1))
        .unwrap()
        .unwrap();
    const FLOOD_SYNS: u32 = 50_000;
    let flood_over = Rc::new(std::cell::Cell::new(false));
    {
        let (clock, flood_over) = (clock.clone(), flood_over.clone());
        sim.spawn(async move {
            let mut x: u32 = 0x9e37_79b9;
            // One SYN every 200 µs from one of 240 on-link addresses; each
            // pass sends one.
            for _ in 0..FLOOD_SYNS {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                let src = Ipv4Addr::new(10, 0, 0, 10 + (x >> 8) as u8 % 240);
                let frame = spoofed_syn(src, 1024 + (x >> 16) as u16 % 60000, x);
                let _ = raw.transmit(frame.len(), |buf| buf.copy_from_slice(&frame)).await;
                clock.sleep(Duration::from_micros(200)).await;
            }
            flood_over.set(true);
        });
    }
    let (served_during_flood, syn_timeouts) = sim
        .run_until(
            async {
                clock.sleep(Duration::from_secs(1)).await;
                assert!(
                    a.arp().with_cache(|c| c.entries().any(|(ip, _)| ip == IP_B)),
                    "A does not know B: it would ask, and B would learn A from that"
                );
                let mut flow = a.tcp().connect(SocketAddr::from((IP_B, ECHO_PORT))).await.unwrap();
                let syn_timeouts = flow.connection_stats().map(|s| s.timeouts);
                assert!(duplex(&mut flow, b"hello").await.unwrap() == b"hello");
                flow.close().await.unwrap();
                (!flood_over.get(), syn_timeouts)
            },
            Duration::from_secs(120),
        )
        .unwrap();
    let arp = b.arp().with_cache(|c| c.stats());
    assert!(arp.rate_limited > 1000, "the flood did not spend B's request budget: {arp:?}");
    assert!(served_during_flood, "A was served only after the flood: {arp:?}");
    // Its first SYN was answered: B did not leave the SYN-ACK waiting
    // for a turn in the budget until A's retransmission.
    assert_eq!(syn_timeouts, Some(0), "A's SYN had to be retransmitted: {arp:?}");
    assert!(arp.sender_requests_sent > 0, "{arp:?}");
}

/// A peer that acknowledges a server's FIN and never sends its own (its
/// side stays in CLOSE-WAIT) held the server's table slot for good: the
/// server closed, so nobody would ever read or end the connection. After
/// `fin_wait_2_timeout` it is reset and the slot is free.
#[test]
fn a_peer_that_never_sends_its_fin_does_not_hold_the_servers_slot() {
    let timeout = Duration::from_secs(60);
    let config = TcpConfig { fin_wait_2_timeout: timeout, ..TcpConfig::default() };
    let n = net(12, faults(0.0), config, TcpLimits::default(), TcpLimits::default());
    let b = n.b.clone();
    n.sim.spawn(async move {
        let listener = b.tcp().listen(SocketAddr::from((Ipv4Addr::UNSPECIFIED, ECHO_PORT)), 16).await.unwrap();
        // Each pass answers one connection and closes it.
        loop {
            let mut flow = listener.accept().await.expect("accept never fails");
            flow.write_all(b"bye").await.unwrap();
            flow.close().await.unwrap();
        }
    });
    let flows = n
        .sim
        .run_until(
            async {
                let mut flows = Vec::new();
                for _ in 0..8 {
                    let mut flow = n.a.tcp().connect(SocketAddr::from((IP_B, ECHO_PORT))).await.unwrap();
                    let mut got = Vec::new();
                    let mut buf = [0u8; 16];
                    // Reads to the server's FIN, then neither closes nor
                    // drops the flow: no FIN from A.
                    loop {
                        match flow.read(&mut buf).await.unwrap() {
                            0 => break,
                            k => got.extend_from_slice(&buf[..k]),
                        }
                    }
                    assert_eq!(got, b"bye");
                    flows.push(flow);
                }
                flows
            },
            Duration::from_secs(10),
        )
        .unwrap();
    assert_eq!(n.b.usage().tcp_connections, 8, "the server's side waits in FIN-WAIT-2");
    let clock = n.clock.clone();
    n.sim.run_until(clock.sleep(timeout + Duration::from_secs(1)), timeout * 2).unwrap();
    assert_eq!(n.b.usage().tcp_connections, 0, "{:?}", n.b.usage());
    assert!(flows.iter().all(|f| f.state() == mirage_net_stack::tcp::TcpState::Closed), "A's side was reset too");
}
