//! TCP request/response with 1-byte messages between two of our sans-IO
//! TCP cores beside two smoltcp interfaces, in one process.
//!
//! ```text
//! cargo run --release -p mirage-net-stack --example tcp_rr_bench \
//!     [-- [--seconds S] [--rounds N] [--transactions T] [--only ours|smoltcp]]
//! ```
//!
//! A client writes 1 byte, the server reads it and writes it back, the
//! client reads it, and again: one transaction in flight, on one
//! established connection, Nagle off on both ends, for `S` seconds
//! (default 2) after 1 000 warm-up transactions; best of `N` rounds
//! (default 3), the stacks taking turns. The link is the one of
//! `tcp_bench`: in memory, lossless, zero delay, IP MTU 1500, every
//! segment emitted into an IPv4 datagram with real header and TCP
//! checksums, then parsed and verified on the other side. Time is wall
//! time on one core, which the stacks also see as their `now`, so their
//! delayed-ACK timers run as in real use (each response carries the ACK
//! of its request, so none fires).
//!
//! The figure is therefore the CPU cost of one transaction in both
//! stacks: two small data segments emitted, checksummed, parsed and
//! delivered, and the application's send and receive calls. The same
//! measurement against the Linux kernel over TAP is part 3 of
//! `tcp_tap_bench` (mirage-net-stack-linux-tests); `cargo xtask bench
//! tcp` runs both.
//!
//! Both links do the same work per segment: ours emits into a receive
//! arena and hands the frame up as `Bytes` whose payload is the frame cut
//! down (as `tcp_bench`'s link), smoltcp's device recycles frame buffers
//! through a pool; neither allocates once warm. Also printed: segments per
//! transaction (both links count them; 2.00 means no pure ACK on either
//! side) and heap allocations per transaction (stacks and links together).
//!
//! Instructions per transaction come from callgrind on a fixed number of
//! transactions of one stack, minus a run of one transaction (start-up):
//!
//! ```text
//! valgrind --tool=callgrind target/release/examples/tcp_rr_bench --transactions 20001 --rounds 1 --only ours
//! valgrind --tool=callgrind target/release/examples/tcp_rr_bench --transactions 1 --rounds 1 --only ours
//! ```
//!
//! # What the profile showed (2026-11-21)
//!
//! Per transaction (both ends), this bench's source on both: ours 6 896
//! → 6 191 instructions, smoltcp 5 711 (1.21× → 1.08× smoltcp's). Both
//! stacks send exactly 2 segments per transaction (no extra pure ACK: the
//! response carries the ACK of the request, the next request that of the
//! response) and allocate nothing. Where ours went:
//!
//! - the RTT estimator did its RFC 6298 arithmetic in `Duration`
//!   (multiplications and divisions that split seconds from nanoseconds),
//!   ~150 instructions per ACK, and the RTO (backoff shift, clamp) was
//!   recomputed the same way at every segment sent: now `u64` nanoseconds,
//!   the RTO computed when it changes;
//! - the Internet checksum's four-lane loop costs its setup and folds on
//!   20- to 33-byte buffers (~110 instructions per header, 4 per segment);
//!   short buffers now take one 64-bit accumulator (~72, as smoltcp's);
//! - empty `copy_from_slice`/`copy_within` calls (the second half of a
//!   ring copy that does not wrap, the SACK scoreboard's shift when no
//!   range goes) still call `memcpy`/`memmove`, eight per transaction;
//! - in this bench's link, a locked counter increment and the
//!   reference-count traffic of slicing each frame cost as much as a
//!   tenth of a transaction in wall time (perf), though few instructions.
//!
//! What is left is spread thin: `poll_transmit` returning `None` (4 of
//! its 6 calls per transaction, ~60 instructions each), building and
//! moving `TcpRepr`s (SACK blocks make the segment struct large),
//! `TcpRepr::parse` with its options. Wall-time ratio (ours / smoltcp,
//! `--seconds 2 --rounds 5`, old and new binary alternating on a shared
//! machine): 0.70 and 0.89 before, 0.93 and 0.94 after. Ours still hands
//! payloads up as reference-counted `Bytes` (atomic operations per
//! frame), which smoltcp's borrowed frames do not pay.
//!
//! Over TAP against Linux (`tcp_tap_bench`), the TCP core is a small part
//! of a transaction: callgrind counts ~15 000 instructions per
//! transaction in the stack's process, of which the core's share is about
//! 3 000; the rest is the socket layer, tokio's timers, wakers and I/O
//! readiness, and the TAP system calls (1 write, 2 reads, 2 `epoll_wait`
//! per transaction, plus ~0.27 eventfd writes by tokio waking its own
//! thread). The socket layer's sender now re-arms its timer only for an
//! earlier deadline (~16 800 → ~14 800 instructions per transaction).

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant as WallInstant};

use bytes::{Buf, Bytes};
use mirage_net_stack::tcp::{IsnGenerator, TcpConfig, TcpConnection, TcpListener, TcpState};
use mirage_net_stack::wire::{Ipv4Packet, Ipv4Repr, TcpPacket, TcpRepr};
use mirage_types::ip::IpProtocol;
use mirage_types::time::Instant;

#[path = "common/link.rs"]
mod link;
use link::{ipv4, Wire, MTU};

const IP_A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const IP_B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const WARM_UP: u64 = 1000;
/// Transactions per run at most, whatever `--seconds` says.
const MAX_TRANSACTIONS: u64 = 100_000_000;

// ---- Counting ------------------------------------------------------------------

/// Counts allocations (and reallocations) while `COUNTING` is set.
struct CountingAllocator;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
/// Segments (IPv4 datagrams) either link carried.
static SEGMENTS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged, so `System`'s guarantees are ours; counting touches only
// atomics and never allocates.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarded unchanged (see the impl's comment).
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged; `ptr` came from `System.alloc`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarded unchanged; `ptr` came from `System.alloc`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Counts one segment. A load and a store, not `fetch_add`: the bench is
/// single-threaded, and a locked add costs as much as a tenth of a
/// transaction.
fn count_segment() {
    SEGMENTS.store(SEGMENTS.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

/// When a run ends: after `duration` or `transactions`, whichever first.
#[derive(Clone, Copy)]
struct Limit {
    duration: Duration,
    transactions: u64,
}

/// Transactions, the wall time they took, and what they cost.
struct Run {
    transactions: u64,
    elapsed: Duration,
    /// Segments both links carried.
    segments: u64,
    /// Heap allocations by the stacks and the link together.
    allocations: u64,
}

impl Run {
    fn per_second(&self) -> f64 {
        self.transactions as f64 / self.elapsed.as_secs_f64()
    }

    /// Runs `exchange(n)` for warm-up and then until `limit`, counting
    /// segments and allocations in the measured part only.
    fn measure(limit: Limit, mut exchange: impl FnMut(u64)) -> Run {
        for n in 0..WARM_UP {
            exchange(n);
        }
        SEGMENTS.store(0, Ordering::Relaxed);
        ALLOCATIONS.store(0, Ordering::Relaxed);
        COUNTING.store(true, Ordering::Relaxed);
        let began = WallInstant::now();
        let mut transactions = 0;
        while transactions < limit.transactions && began.elapsed() < limit.duration {
            exchange(transactions);
            transactions += 1;
        }
        let elapsed = began.elapsed();
        COUNTING.store(false, Ordering::Relaxed);
        Run {
            transactions,
            elapsed,
            segments: SEGMENTS.load(Ordering::Relaxed),
            allocations: ALLOCATIONS.load(Ordering::Relaxed),
        }
    }
}

// ---- Ours ----------------------------------------------------------------------

/// Emits everything `conn` has to send as IPv4 datagrams onto `wire`.
fn drain(conn: &mut TcpConnection, now: Instant, wire: &mut Wire) {
    let (src, dst) = (ipv4(conn.local_addr()), ipv4(conn.remote_addr()));
    while let Some(seg) = conn.poll_transmit(now) {
        let tcp_len = seg.repr.buffer_len();
        let frame = wire.frame(20 + tcp_len);
        seg.emit_ipv4(src, dst, &mut frame[20..]);
        Ipv4Repr::new(src, dst, IpProtocol::TCP, tcp_len, 64).emit(&mut Ipv4Packet::new_unchecked(&mut frame[..]));
        wire.send();
        count_segment();
    }
}

/// Parses and verifies one datagram our side emitted; the payload is
/// `frame` cut down to it (no reference-count traffic, which a slice of
/// the frame would cost twice).
fn parse(frame: Bytes) -> (TcpRepr, Bytes, SocketAddr, SocketAddr) {
    let ip = Ipv4Packet::new_checked(&frame[..]).expect("our datagram parses");
    let ip_repr = Ipv4Repr::parse(&ip).expect("our IPv4 checksum is right");
    let tcp = TcpPacket::new_checked(ip.payload()).expect("our segment parses");
    let repr = TcpRepr::parse(&tcp, ip_repr.src_addr, ip_repr.dst_addr).expect("our TCP checksum is right");
    let start = ip.header_len() + repr.header_len();
    let src = SocketAddr::new(IpAddr::V4(ip_repr.src_addr), repr.src_port);
    let dst = SocketAddr::new(IpAddr::V4(ip_repr.dst_addr), repr.dst_port);
    let mut payload = frame;
    payload.advance(start);
    payload.truncate(repr.payload_len);
    (repr, payload, src, dst)
}

/// Delivers every datagram on `wire` to `conn`, then lets it answer onto
/// `back`.
fn deliver(wire: &mut Wire, conn: &mut TcpConnection, now: Instant, back: &mut Wire) {
    while let Some(frame) = wire.queue.pop_front() {
        let (repr, payload, _, _) = parse(frame);
        conn.handle_segment(now, &repr, payload);
    }
    drain(conn, now, back);
}

/// Connects a client to a server through a listener; both established.
fn handshake(now: impl Fn() -> Instant) -> (TcpConnection, TcpConnection) {
    let config = TcpConfig { nodelay: true, ..TcpConfig::default() };
    let (a_addr, b_addr) = (SocketAddr::new(IpAddr::V4(IP_A), 40_000), SocketAddr::new(IpAddr::V4(IP_B), 5001));
    let isn = IsnGenerator::new([7; 16]);
    let mut a = TcpConnection::connect(now(), config.clone(), a_addr, b_addr, isn.isn(now(), a_addr, b_addr));
    let mut listener = TcpListener::new(b_addr, config, 1, 1, isn, [9; 16]);
    let (mut to_b, mut to_a) = (Wire::default(), VecDeque::new());
    // Three passes complete a handshake; the bound is generous.
    for _ in 0..16 {
        drain(&mut a, now(), &mut to_b);
        while let Some(frame) = to_b.queue.pop_front() {
            let (repr, payload, src, dst) = parse(frame);
            listener.handle_segment(now(), dst, src, &repr, payload);
        }
        while let Some(t) = listener.poll_transmit(now()) {
            let mut tcp = vec![0u8; t.repr.buffer_len()];
            t.repr.emit(&mut TcpPacket::new_unchecked(&mut tcp[..]), IP_B, IP_A, |_| ());
            let tcp = TcpPacket::new_checked(&tcp[..]).expect("our segment parses");
            to_a.push_back(TcpRepr::parse(&tcp, IP_B, IP_A).expect("our TCP checksum is right"));
        }
        while let Some(repr) = to_a.pop_front() {
            a.handle_segment(now(), &repr, Bytes::new());
        }
        if let Some(b) = listener.accept() {
            assert_eq!(a.state(), TcpState::Established);
            return (a, b);
        }
    }
    panic!("handshake did not complete");
}

fn ours(limit: Limit) -> Run {
    let start = WallInstant::now();
    let now = || Instant::from_nanos(start.elapsed().as_nanos() as u64);
    let (mut client, mut server) = handshake(now);
    let (mut to_server, mut to_client) = (Wire::default(), Wire::default());
    let mut byte = [0u8; 1];
    Run::measure(limit, |n| {
        let t = now();
        for conn in [&mut client, &mut server] {
            if conn.poll_deadline().is_some_and(|d| d <= t) {
                conn.handle_timeout(t);
            }
        }
        assert_eq!(client.send(&[n as u8]), Ok(1), "the client's send buffer has room");
        drain(&mut client, t, &mut to_server);
        deliver(&mut to_server, &mut server, t, &mut to_client);
        assert_eq!(server.recv(&mut byte), 1, "the request arrived");
        assert_eq!(server.send(&byte), Ok(1), "the server's send buffer has room");
        drain(&mut server, t, &mut to_client);
        deliver(&mut to_client, &mut client, t, &mut to_server);
        assert_eq!((client.recv(&mut byte), byte[0]), (1, n as u8), "the response arrived");
    })
}

// ---- smoltcp -------------------------------------------------------------------

mod peer {
    use super::link::{Queue, QueueDevice};
    use super::*;
    use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
    use smoltcp::socket::tcp;
    use smoltcp::time::Instant as SmolInstant;
    use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr};

    struct Host {
        iface: Interface,
        device: QueueDevice,
        sockets: SocketSet<'static>,
        handle: SocketHandle,
    }

    fn host(ip: Ipv4Addr, rx: Queue, tx: Queue, pool: Queue, now: SmolInstant) -> Host {
        let mut device = QueueDevice { rx, tx, pool, on_transmit: count_segment };
        let mut iface = Interface::new(Config::new(HardwareAddress::Ip), &mut device, now);
        iface.update_ip_addrs(|addrs| {
            addrs.push(IpCidr::new(IpAddress::Ipv4(ip), 24)).expect("one address fits");
        });
        let buffer = || tcp::SocketBuffer::new(vec![0; 64 * 1024]);
        let mut socket = tcp::Socket::new(buffer(), buffer());
        socket.set_nagle_enabled(false);
        let mut sockets = SocketSet::new(vec![]);
        let handle = sockets.add(socket);
        Host { iface, device, sockets, handle }
    }

    impl Host {
        fn poll(&mut self, now: SmolInstant) {
            self.iface.poll(now, &mut self.device, &mut self.sockets);
        }

        fn socket(&mut self) -> &mut tcp::Socket<'static> {
            self.sockets.get_mut::<tcp::Socket>(self.handle)
        }
    }

    pub fn smoltcp(limit: Limit) -> Run {
        let start = WallInstant::now();
        let now = || SmolInstant::from_micros(start.elapsed().as_micros() as i64);
        let (ab, ba, pool): (Queue, Queue, Queue) = Default::default();
        let mut client = host(IP_A, ba.clone(), ab.clone(), pool.clone(), now());
        let mut server = host(IP_B, ab, ba, pool, now());
        server.socket().listen(5001).expect("port 5001 is free");
        let cx = client.iface.context();
        client
            .sockets
            .get_mut::<tcp::Socket>(client.handle)
            .connect(cx, (IpAddress::Ipv4(IP_B), 5001), 40_000)
            .expect("connect starts");
        // Three passes complete a handshake; the bound is generous.
        for _ in 0..64 {
            client.poll(now());
            server.poll(now());
        }
        assert_eq!(client.socket().state(), tcp::State::Established, "smoltcp handshake");
        server.socket().set_nagle_enabled(false);
        let mut byte = [0u8; 1];
        Run::measure(limit, |n| {
            let t = now();
            assert_eq!(client.socket().send_slice(&[n as u8]), Ok(1), "the client's send buffer has room");
            client.poll(t);
            server.poll(t);
            assert_eq!(server.socket().recv_slice(&mut byte), Ok(1), "the request arrived");
            assert_eq!(server.socket().send_slice(&byte), Ok(1), "the server's send buffer has room");
            server.poll(t);
            client.poll(t);
            assert_eq!(client.socket().recv_slice(&mut byte), Ok(1), "the response arrived");
            assert_eq!(byte[0], n as u8);
        })
    }
}

const USAGE: &str = "usage: tcp_rr_bench [--seconds S] [--rounds N] [--transactions T] [--only ours|smoltcp]";

/// What the command line asks for.
struct Options {
    seconds: f64,
    rounds: usize,
    /// A fixed number of transactions per run instead of `seconds`.
    transactions: Option<u64>,
    /// Run this stack only (for callgrind).
    only: Option<String>,
}

fn options() -> Result<Options, String> {
    let (mut seconds, mut rounds, mut transactions, mut only) = (2.0, 3, None, None);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--transactions" => {
                transactions = Some(
                    value
                        .parse::<u64>()
                        .ok()
                        .filter(|t| (1..=MAX_TRANSACTIONS).contains(t))
                        .ok_or(format!("--transactions {value}: expected 1 to {MAX_TRANSACTIONS}"))?,
                );
            }
            "--only" => {
                if value != "ours" && value != "smoltcp" {
                    return Err(format!("--only {value}: expected ours or smoltcp"));
                }
                only = Some(value);
            }
            "--seconds" => {
                seconds = value
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s > 0.0 && *s <= 60.0)
                    .ok_or(format!("--seconds {value}: expected seconds in (0, 60]"))?;
            }
            "--rounds" => {
                rounds = value
                    .parse()
                    .ok()
                    .filter(|r| (1..=20).contains(r))
                    .ok_or(format!("--rounds {value}: expected 1 to 20"))?;
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Options { seconds, rounds, transactions, only })
}

fn main() {
    let opts = options().unwrap_or_else(|e| {
        eprintln!("{USAGE}: {e}");
        std::process::exit(2);
    });
    let limit = Limit {
        duration: if opts.transactions.is_some() { Duration::MAX } else { Duration::from_secs_f64(opts.seconds) },
        transactions: opts.transactions.unwrap_or(MAX_TRANSACTIONS),
    };
    let run_ours = opts.only.as_deref() != Some("smoltcp");
    let run_smoltcp = opts.only.as_deref() != Some("ours");
    let (mut best_ours, mut best_smoltcp): (Option<Run>, Option<Run>) = (None, None);
    let keep_best = |best: &mut Option<Run>, run: Run| {
        if best.as_ref().is_none_or(|b| run.per_second() > b.per_second()) {
            *best = Some(run);
        }
    };
    for _ in 0..opts.rounds {
        if run_ours {
            keep_best(&mut best_ours, ours(limit));
        }
        if run_smoltcp {
            keep_best(&mut best_smoltcp, peer::smoltcp(limit));
        }
    }
    let span = match opts.transactions {
        Some(t) => format!("{t} transactions per round"),
        None => format!("{} s per round", opts.seconds),
    };
    println!(
        "request/response, 1-byte messages, one connection, Nagle off, over an in-memory IPv4 link \
         (MTU {MTU}, checksums emitted and verified), {span}, best of {}",
        opts.rounds
    );
    let line = |name: &str, run: &Run| {
        let t = run.transactions.max(1) as f64;
        println!(
            "{name}  {:>10.0} transactions/s  {:>6.2} µs each  {:.2} segments/transaction  {:.2} allocations/transaction",
            run.per_second(),
            1e6 / run.per_second(),
            run.segments as f64 / t,
            run.allocations as f64 / t,
        );
    };
    if let Some(run) = &best_ours {
        line("mirage-net-stack ⇄ mirage-net-stack", run);
    }
    if let Some(run) = &best_smoltcp {
        line("smoltcp 0.12 ⇄ smoltcp 0.12         ", run);
    }
    if let (Some(o), Some(s)) = (&best_ours, &best_smoltcp) {
        println!("ratio (ours / smoltcp): {:.2}x", o.per_second() / s.per_second());
    }
}
