//! Bulk TCP throughput of our sans-IO core beside smoltcp, in one process.
//!
//! ```text
//! cargo run --release -p mirage-net-stack --example tcp_bench --features test-utils \
//!     [-- [MIB] [--rounds N] [--write BYTES] [--buffer KIB] [--skip-idle]
//!         [--only ours|ours-copy|ours-zero-copy|smoltcp]]
//! ```
//!
//! Each stack transfers `MIB` MiB (default 128), best of `N` rounds (default
//! 9), the application offering at most `BYTES` (default 65536) per send
//! call, from one endpoint to
//! another over an in-memory, lossless, zero-delay link with an IP MTU of
//! 1500: every segment is emitted into an IPv4 datagram with real header
//! and TCP checksums, queued, parsed and verified on the other side. Ours
//! runs two [`TcpConnection`]s (CUBIC, SACK, timestamps, window scaling,
//! send and receive buffers of `KIB` KiB, default 256, defaults otherwise) and is measured in both directions
//! (active → passive opener and back), and with two ways of writing:
//! `send` of a slice, which copies it into the send buffer (what smoltcp's
//! `send_slice` does), and `send_bytes` of a `Bytes` slice of the same
//! data, which the send buffer holds by reference count until it is
//! acknowledged, so each byte is copied once on the way out (into the
//! frame) instead of twice (zero-copy: the application hands over data it
//! owns). smoltcp runs two `Interface`s with
//! one TCP socket each (buffers of the same size, defaults otherwise) joined by the
//! same kind of queue. Time is wall-clock time on one core; the cores see
//! it as their `now`, so delayed-ACK timers run as in real use. A pass of
//! the loop in which neither side sends anything waits for a timer by
//! polling, which costs CPU time a real event loop would sleep through;
//! such idle passes are counted and printed, and `--skip-idle` moves the
//! clock to the next deadline of either side instead (smoltcp has tens of
//! thousands per 64 MiB, ours none in a lossless transfer).
//!
//! Our link hands each frame up as `Bytes` over a receive buffer of its
//! own that the sender emitted into (as a driver hands up its receive
//! buffers, recycled once released), and the payload reaches the
//! connection as a slice of that frame; smoltcp's device lends its frame
//! as `&[u8]` the same way. Neither link copies or clears a buffer.
//!
//! Each round reports wall-clock throughput and throughput per CPU-second
//! of the benchmark thread (its CPU clock, `CLOCK_THREAD_CPUTIME_ID`): on a machine
//! shared with other work, wall time counts the time others had the CPU
//! and swings several-fold between rounds, CPU time much less. Printed:
//! the best round and the median per stack, and for each way of writing
//! and each direction the ratio of ours to smoltcp computed per round (the
//! stacks take turns, so a round's transfers ran close together): median,
//! best and worst, and the lower of the two directions' medians, the
//! figure our goal (1.5× smoltcp's bulk throughput) is read against.
//!
//! Also printed: the segments the receiver sends back (ACKs and window
//! updates) per data segment, so a difference in acknowledgment policy
//! shows; CPU time per segment (`perf stat -e instructions` reports
//! "not supported" in this VM, so no instruction counts), and heap
//! allocations per segment in the steady state (after the first tenth of
//! the transfer), counted by a global allocator. For our core they are
//! counted only inside its calls (`send`, `recv`, `handle_segment`,
//! `poll_transmit`, `handle_timeout`); the link's (a new receive buffer
//! when the oldest is still held) are counted apart. For
//! smoltcp everything inside `Interface::poll` and the socket calls is
//! counted; its device reuses frame buffers, so the link adds nothing.
//!
//! Instructions per byte, which `perf` cannot count here, come from
//! callgrind on a smaller transfer of one stack at a time (`--only`);
//! glibc's `rep movsb` copies are switched off there because callgrind
//! counts each byte `rep movsb` moves as an instruction:
//!
//! ```text
//! GLIBC_TUNABLES=glibc.cpu.x86_rep_movsb_threshold=1000000000 valgrind --tool=callgrind \
//!     target/release/examples/tcp_bench 16 --rounds 1 --only ours-zero-copy
//! ```
//!
//! Ours moves the data in both directions (twice the bytes); smoltcp once.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant as WallInstant;

use bytes::Bytes;
use mirage_net_stack::tcp::{IsnGenerator, TcpConfig, TcpConnection, TcpListener, TcpState};
use mirage_net_stack::wire::{Ipv4Packet, Ipv4Repr, TcpPacket, TcpRepr};
use mirage_types::ip::IpProtocol;
use mirage_types::time::Instant;

#[path = "common/link.rs"]
mod link;
use link::{ipv4, Wire, MTU};

// ---- Allocation counting -----------------------------------------------------

/// Counts allocations (and reallocations) while `COUNTING` is set, in
/// `LINK_ALLOCATIONS` while `LINK` is set too, else in `ALLOCATIONS`.
struct CountingAllocator;

static COUNTING: AtomicBool = AtomicBool::new(false);
static LINK: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static LINK_ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

fn count_one() {
    if COUNTING.load(Ordering::Relaxed) {
        let counter = if LINK.load(Ordering::Relaxed) { &LINK_ALLOCATIONS } else { &ALLOCATIONS };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged, so `System`'s guarantees are ours; counting touches only
// atomics and never allocates.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: forwarded unchanged (see the impl's comment).
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged; `ptr` came from `System.alloc`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one();
        // SAFETY: forwarded unchanged; `ptr` came from `System.alloc`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Runs `f` with allocation counting on when `on`.
fn counted<R>(on: bool, f: impl FnOnce() -> R) -> R {
    COUNTING.store(on, Ordering::Relaxed);
    let r = f();
    COUNTING.store(false, Ordering::Relaxed);
    r
}

// ---- Results -------------------------------------------------------------------

/// The calling thread's CPU time in nanoseconds (`CLOCK_THREAD_CPUTIME_ID`).
/// Not `/proc/thread-self/schedstat`: in this VM it advances in scheduler
/// ticks of several milliseconds, a large error on a round of tens.
fn thread_cpu_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    u64::try_from(t.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(t.tv_nsec).unwrap_or(0)
}

/// Wall-clock and CPU time since it was started.
struct Stopwatch {
    wall: WallInstant,
    cpu_ns: u64,
}

impl Stopwatch {
    fn start() -> Stopwatch {
        Stopwatch { wall: WallInstant::now(), cpu_ns: thread_cpu_ns() }
    }

    /// (wall seconds, CPU seconds).
    fn elapsed(&self) -> (f64, f64) {
        (self.wall.elapsed().as_secs_f64(), thread_cpu_ns().saturating_sub(self.cpu_ns) as f64 / 1e9)
    }
}

struct Run {
    bytes: usize,
    seconds: f64,
    /// CPU time the transfer took (this thread on the CPU): on a shared
    /// machine, wall time also counts the time other processes had it.
    cpu_seconds: f64,
    /// Data segments the sender emitted.
    segments: u64,
    /// Data segments emitted during the steady state.
    steady_segments: u64,
    /// Segments the receiver emitted (ACKs and window updates).
    acks: u64,
    /// Allocations inside the stack during the steady state.
    steady_allocations: u64,
    /// Allocations by the link (receive buffers) in the steady state.
    link_allocations: u64,
    /// Passes of the loop (each offers data, moves what the stacks send
    /// and reads what arrived).
    passes: u64,
    /// Passes in which neither side sent anything: waiting for a timer
    /// (delayed ACK, persist, retransmission), which costs CPU time here
    /// since the loop polls.
    idle_passes: u64,
}

impl Run {
    fn gbps(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.seconds / 1e9
    }

    /// Gigabits moved per CPU-second.
    fn cpu_gbps(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.cpu_seconds.max(1e-9) / 1e9
    }

    fn print(&self, name: &str) {
        let per_segment = |n: u64| n as f64 / self.steady_segments.max(1) as f64;
        println!(
            "{name:<38} {:>7.2} Gbit/s  {:>7.2} Gbit/CPU-s  {:>6.0} CPU-ns/segment  {:>9} segments  {:.3} ACKs/segment  allocations/segment: {:.3} in the stack, {:.3} by the link  {} passes ({} idle)",
            self.gbps(),
            self.cpu_gbps(),
            self.cpu_seconds * 1e9 / self.segments.max(1) as f64,
            self.segments,
            self.acks as f64 / self.segments.max(1) as f64,
            per_segment(self.steady_allocations),
            per_segment(self.link_allocations),
            self.passes,
            self.idle_passes,
        );
    }
}

/// Measurements per stack and direction; the best and the median are printed.
const ROUNDS: usize = 9;
/// Bytes the application offers per `send` call unless `--write` says otherwise.
const WRITE: usize = 64 * 1024;
/// Send and receive buffer size of every socket unless `--buffer` says otherwise.
const BUFFER: usize = 256 * 1024;
/// The test data a sender repeats (a debug build checks every byte
/// received against it).
const CHUNK: usize = 64 * 1024;
const IP_A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const IP_B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

/// What the application offers next: at most `write` bytes of the
/// pattern, continuing where the last accepted byte left off (so the
/// receiver's check holds whatever the stack accepted before).
fn next_write(data: &[u8], written: usize, total: usize, write: usize) -> &[u8] {
    let offset = written % data.len();
    let len = (total - written).min(write).min(data.len() - offset);
    &data[offset..offset + len]
}

// ---- Ours ----------------------------------------------------------------------

/// Emits everything `conn` sends as IPv4 datagrams into `wire`; returns the
/// number of data segments.
fn drain(conn: &mut TcpConnection, now: Instant, wire: &mut Wire, count: bool) -> u64 {
    let (src, dst) = (ipv4(conn.local_addr()), ipv4(conn.remote_addr()));
    let mut data = 0;
    // Counting is switched on for the whole loop, not per call (a closure
    // per call moves each segment through it), and to the link's counter
    // for the link's part.
    COUNTING.store(count, Ordering::Relaxed);
    while let Some(seg) = conn.poll_transmit(now) {
        let tcp_len = seg.repr.buffer_len();
        LINK.store(true, Ordering::Relaxed);
        let frame = wire.frame(20 + tcp_len);
        LINK.store(false, Ordering::Relaxed);
        seg.emit_ipv4(src, dst, &mut frame[20..]);
        Ipv4Repr::new(src, dst, IpProtocol::TCP, tcp_len, 64).emit(&mut Ipv4Packet::new_unchecked(&mut frame[..]));
        data += u64::from(seg.repr.payload_len > 0);
        LINK.store(true, Ordering::Relaxed);
        wire.send();
        LINK.store(false, Ordering::Relaxed);
    }
    COUNTING.store(false, Ordering::Relaxed);
    data
}

/// Parses and verifies one frame, the IPv4 header and then the TCP
/// segment, and hands `f` the header, the payload (a slice of `frame`)
/// and the IPv4 header, whose addresses a stack looks its connection up by
/// (the bench has one connection per side and uses them only for the
/// handshake). A continuation, so the headers are not moved out and back.
fn parse<R>(frame: &Bytes, f: impl FnOnce(&TcpRepr, Bytes, &Ipv4Repr) -> R) -> R {
    let ip = Ipv4Packet::new_checked(&frame[..]).expect("our datagram parses");
    let ip_repr = Ipv4Repr::parse(&ip).expect("our IPv4 checksum is right");
    let tcp = TcpPacket::new_checked(ip.payload()).expect("our segment parses");
    let repr = TcpRepr::parse(&tcp, ip_repr.src_addr, ip_repr.dst_addr).expect("our TCP checksum is right");
    let start = ip.header_len() + repr.header_len();
    let payload = frame.slice(start..start + repr.payload_len);
    f(&repr, payload, &ip_repr)
}

/// Parses `frame` (the link's work, as in [`parse`]'s callers before) and
/// hands the segment to `conn`, counting allocations as `drain` does.
fn deliver(frame: &Bytes, conn: &mut TcpConnection, now: Instant, count: bool) {
    COUNTING.store(count, Ordering::Relaxed);
    LINK.store(true, Ordering::Relaxed);
    parse(frame, |repr, payload, _| {
        LINK.store(false, Ordering::Relaxed);
        conn.handle_segment(now, repr, payload);
    });
    COUNTING.store(false, Ordering::Relaxed);
}

/// Connects A to B; returns both established connections.
fn handshake(start: WallInstant, buffer: usize) -> (TcpConnection, TcpConnection) {
    let now = || Instant::from_nanos(start.elapsed().as_nanos() as u64);
    let config = TcpConfig { send_buffer: buffer, recv_buffer: buffer, ..TcpConfig::default() };
    let a_addr = SocketAddr::new(IpAddr::V4(IP_A), 40_000);
    let b_addr = SocketAddr::new(IpAddr::V4(IP_B), 5001);
    let isn = IsnGenerator::new([7; 16]);
    let mut a = TcpConnection::connect(now(), config.clone(), a_addr, b_addr, isn.isn(now(), a_addr, b_addr));
    let mut listener = TcpListener::new(b_addr, config, 1, 1, isn, [9; 16]);
    let mut to_b = Wire::default();
    for _ in 0..16 {
        drain(&mut a, now(), &mut to_b, false);
        while let Some(frame) = to_b.queue.pop_front() {
            parse(&frame, |repr, payload, ip| {
                let src = SocketAddr::new(IpAddr::V4(ip.src_addr), repr.src_port);
                let dst = SocketAddr::new(IpAddr::V4(ip.dst_addr), repr.dst_port);
                listener.handle_segment(now(), dst, src, repr, payload);
            });
        }
        while let Some(t) = listener.poll_transmit(now()) {
            let mut tcp = vec![0u8; t.repr.buffer_len()];
            t.repr.emit(&mut TcpPacket::new_unchecked(&mut tcp[..]), IP_B, IP_A, |_| ());
            let tcp = TcpPacket::new_checked(&tcp[..]).expect("our segment parses");
            let repr = TcpRepr::parse(&tcp, IP_B, IP_A).expect("our TCP checksum is right");
            a.handle_segment(now(), &repr, Bytes::new());
        }
        if let Some(b) = listener.accept() {
            assert_eq!(a.state(), TcpState::Established);
            return (a, b);
        }
    }
    panic!("handshake did not complete");
}

/// How our application hands data to the connection.
#[derive(Clone, Copy, PartialEq)]
enum Writes {
    /// `send(&[u8])`: copied into the send buffer.
    Copy,
    /// `send_bytes(&Bytes)`: held by the send buffer, no copy.
    ZeroCopy,
}

/// Sends `total` bytes from one of our connections to the other;
/// `reverse` makes the passive opener the sender.
fn ours(total: usize, write: usize, buffer: usize, reverse: bool, writes: Writes, skip_idle: bool) -> Run {
    let start = WallInstant::now();
    // Time skipped forward over idle passes (`--skip-idle`).
    let skipped = std::cell::Cell::new(0u64);
    let now = || Instant::from_nanos(start.elapsed().as_nanos() as u64 + skipped.get());
    let (a, b) = handshake(start, buffer);
    let (mut tx, mut rx) = if reverse { (b, a) } else { (a, b) };
    assert!(tx.sack_enabled(), "SACK negotiated");
    let data = mirage_testkit::pattern(1, CHUNK);
    // The same bytes as a `Bytes` the application owns, for `send_bytes`.
    let source = Bytes::from(data.clone());
    let mut buf = vec![0u8; 64 * 1024];
    let (mut forward, mut backward) = (Wire::default(), Wire::default());
    let (mut written, mut received, mut segments, mut acks) = (0usize, 0usize, 0u64, 0u64);
    let (mut steady_segments, mut idle_passes) = (0u64, 0u64);
    ALLOCATIONS.store(0, Ordering::Relaxed);
    LINK_ALLOCATIONS.store(0, Ordering::Relaxed);
    let began = Stopwatch::start();
    // Each round moves at least one segment; the bound is generous.
    for passes in 1.. {
        assert!(passes <= total, "transfer stalled at {received} of {total} bytes");
        let steady = received > total / 10;
        let t = now();
        if written < total {
            let chunk = next_write(&data, written, total, write);
            written += counted(steady, || match writes {
                Writes::Copy => tx.send(chunk),
                Writes::ZeroCopy => {
                    let offset = written % data.len();
                    tx.send_bytes(&source.slice(offset..offset + chunk.len()))
                }
            })
            .expect("the sender stays open");
        }
        let sent = drain(&mut tx, t, &mut forward, steady);
        segments += sent;
        if steady {
            steady_segments += sent;
        }
        while let Some(frame) = forward.queue.pop_front() {
            deliver(&frame, &mut rx, t, steady);
            drain(&mut rx, t, &mut backward, steady);
        }
        loop {
            let n = counted(steady, || rx.recv(&mut buf));
            if n == 0 {
                break;
            }
            // The application reads what it received: without this the
            // optimiser may drop the copy into `buf`, which is never read.
            std::hint::black_box(&buf[..n]);
            debug_assert!(buf[..n].iter().enumerate().all(|(i, &x)| x == data[(received + i) % data.len()]));
            received += n;
        }
        drain(&mut rx, t, &mut backward, steady);
        acks += backward.queue.len() as u64;
        let idle = sent == 0 && backward.queue.is_empty();
        idle_passes += u64::from(idle);
        if idle && skip_idle {
            // Nothing moves until a timer fires: move the clock there, as
            // an event loop would sleep, instead of polling until then.
            if let Some(deadline) = tx.poll_deadline().into_iter().chain(rx.poll_deadline()).min() {
                let ahead = deadline.as_nanos().saturating_sub(t.as_nanos());
                skipped.set(skipped.get() + ahead);
            }
        }
        while let Some(frame) = backward.queue.pop_front() {
            deliver(&frame, &mut tx, t, steady);
        }
        for conn in [&mut tx, &mut rx] {
            if conn.poll_deadline().is_some_and(|d| d <= t) {
                counted(steady, || conn.handle_timeout(t));
            }
        }
        if received >= total {
            let stats = tx.stats();
            assert_eq!(
                stats.retransmitted_segments, 0,
                "a lossless link needs no retransmission (a timeout: the thread was descheduled for longer than the RTO?): {stats:?}"
            );
            return Run {
                bytes: total,
                seconds: began.elapsed().0,
                cpu_seconds: began.elapsed().1,
                segments,
                steady_segments,
                acks,
                steady_allocations: ALLOCATIONS.load(Ordering::Relaxed),
                link_allocations: LINK_ALLOCATIONS.load(Ordering::Relaxed),
                passes: passes as u64,
                idle_passes,
            };
        }
    }
    unreachable!("the pass loop ends by returning or by its assertion")
}

// ---- smoltcp -------------------------------------------------------------------

mod peer {
    use super::link::{Queue, QueueDevice};
    use super::*;
    use smoltcp::iface::{Config, Interface, SocketSet};
    use smoltcp::socket::tcp;
    use smoltcp::time::Instant as SmolInstant;
    use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr};

    struct Host {
        iface: Interface,
        device: QueueDevice,
        sockets: SocketSet<'static>,
        handle: smoltcp::iface::SocketHandle,
    }

    fn host(ip: Ipv4Addr, rx: Queue, tx: Queue, pool: Queue, now: SmolInstant, buffer: usize) -> Host {
        let mut device = QueueDevice { rx, tx, pool, on_transmit: || {} };
        let mut iface = Interface::new(Config::new(HardwareAddress::Ip), &mut device, now);
        iface.update_ip_addrs(|addrs| {
            addrs.push(IpCidr::new(IpAddress::Ipv4(ip), 24)).expect("one address fits");
        });
        let socket = tcp::Socket::new(tcp::SocketBuffer::new(vec![0; buffer]), tcp::SocketBuffer::new(vec![0; buffer]));
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

    /// smoltcp sending `total` bytes from one interface to the other.
    pub fn smoltcp(total: usize, write: usize, buffer: usize, skip_idle: bool) -> Run {
        let start = WallInstant::now();
        let skipped = std::cell::Cell::new(0i64);
        let now = || SmolInstant::from_micros(start.elapsed().as_micros() as i64 + skipped.get());
        let (ab, ba, pool): (Queue, Queue, Queue) = Default::default();
        let mut a = host(IP_A, ba.clone(), ab.clone(), pool.clone(), now(), buffer);
        let mut b = host(IP_B, ab.clone(), ba.clone(), pool, now(), buffer);
        b.socket().listen(5001).expect("port 5001 is free");
        let cx = a.iface.context();
        a.sockets
            .get_mut::<tcp::Socket>(a.handle)
            .connect(cx, (IpAddress::Ipv4(IP_B), 5001), 40_000)
            .expect("connect starts");
        for _ in 0..64 {
            a.poll(now());
            b.poll(now());
            if a.socket().state() == tcp::State::Established && b.socket().state() == tcp::State::Established {
                break;
            }
        }
        assert_eq!(a.socket().state(), tcp::State::Established, "smoltcp handshake");
        let data = mirage_testkit::pattern(1, CHUNK);
        let mut buf = vec![0u8; 64 * 1024];
        let (mut written, mut received, mut segments, mut steady_segments) = (0usize, 0usize, 0u64, 0u64);
        let (mut acks, mut idle_passes) = (0u64, 0u64);
        ALLOCATIONS.store(0, Ordering::Relaxed);
        let began = Stopwatch::start();
        for passes in 1.. {
            assert!(passes <= total, "smoltcp transfer stalled at {received} of {total} bytes");
            let steady = received > total / 10;
            let t = now();
            if written < total {
                let chunk = next_write(&data, written, total, write);
                written += counted(steady, || a.socket().send_slice(chunk)).expect("the sender stays open");
            }
            counted(steady, || a.poll(t));
            // Every frame from A carries data once established (pure ACKs
            // go the other way).
            let sent = ab.borrow().len() as u64;
            segments += sent;
            if steady {
                steady_segments += sent;
            }
            counted(steady, || b.poll(t));
            loop {
                let n = counted(steady, || b.socket().recv_slice(&mut buf)).expect("the receiver stays open");
                if n == 0 {
                    break;
                }
                std::hint::black_box(&buf[..n]);
                debug_assert!(buf[..n].iter().enumerate().all(|(i, &x)| x == data[(received + i) % data.len()]));
                received += n;
            }
            counted(steady, || b.poll(t));
            // A polls next, so B's segments of this round are all queued.
            acks += ba.borrow().len() as u64;
            let idle = sent == 0 && ba.borrow().is_empty();
            idle_passes += u64::from(idle);
            if idle && skip_idle {
                let a_at = a.iface.poll_at(t, &a.sockets);
                let b_at = b.iface.poll_at(t, &b.sockets);
                if let Some(deadline) = a_at.into_iter().chain(b_at).min() {
                    skipped.set(skipped.get() + (deadline - t).total_micros() as i64);
                }
            }
            if received >= total {
                return Run {
                    bytes: total,
                    seconds: began.elapsed().0,
                    cpu_seconds: began.elapsed().1,
                    segments,
                    steady_segments,
                    acks,
                    steady_allocations: ALLOCATIONS.load(Ordering::Relaxed),
                    link_allocations: 0,
                    passes: passes as u64,
                    idle_passes,
                };
            }
        }
        unreachable!("the pass loop ends by returning or by its assertion")
    }
}

/// What to run, from the command line.
struct Options {
    mib: usize,
    rounds: usize,
    write: usize,
    /// Socket buffer size in bytes.
    buffer: usize,
    /// Move the clock to the next timer on an idle pass instead of
    /// polling until it fires.
    skip_idle: bool,
    /// Our stack with copying writes.
    copy: bool,
    /// Our stack with `send_bytes`.
    zero_copy: bool,
    smoltcp: bool,
}

const USAGE: &str =
    "usage: tcp_bench [MIB] [--rounds N] [--write BYTES] [--buffer KIB] [--skip-idle] [--only ours|ours-copy|ours-zero-copy|smoltcp]";

fn options() -> Result<Options, String> {
    let mut opts = Options {
        mib: 128,
        rounds: ROUNDS,
        write: WRITE,
        buffer: BUFFER,
        skip_idle: false,
        copy: true,
        zero_copy: true,
        smoltcp: true,
    };
    let mut args = std::env::args().skip(1);
    let positive = |what: &str, arg: Option<String>| -> Result<usize, String> {
        match arg.as_deref().map(str::parse) {
            Some(Ok(n)) if n > 0 => Ok(n),
            _ => Err(format!("{what} must be a positive integer, not {arg:?}")),
        }
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--rounds" => opts.rounds = positive("--rounds", args.next())?,
            "--write" => opts.write = positive("--write", args.next())?,
            // Our window scale reaches 1 GiB; smoltcp's buffers are plain vectors.
            "--buffer" => opts.buffer = positive("--buffer", args.next())?.min(1 << 20) << 10,
            "--skip-idle" => opts.skip_idle = true,
            "--only" => {
                let (copy, zero_copy, smoltcp) = match args.next().as_deref() {
                    Some("ours") => (true, true, false),
                    Some("ours-copy") => (true, false, false),
                    Some("ours-zero-copy") => (false, true, false),
                    Some("smoltcp") => (false, false, true),
                    other => {
                        return Err(format!(
                            "--only takes `ours`, `ours-copy`, `ours-zero-copy` or `smoltcp`, not {other:?}"
                        ))
                    }
                };
                (opts.copy, opts.zero_copy, opts.smoltcp) = (copy, zero_copy, smoltcp);
            }
            _ => opts.mib = positive("MIB, the transfer size in MiB,", Some(arg))?,
        }
    }
    Ok(opts)
}

fn main() {
    let opts = options().unwrap_or_else(|e| {
        eprintln!("{USAGE}: {e}");
        std::process::exit(2);
    });
    let Options { mib, rounds, write, buffer, skip_idle, .. } = opts;
    let total = mib << 20;
    println!(
        "bulk transfer of {mib} MiB over an in-memory IPv4 link, MTU {MTU}, checksums emitted and verified, {} KiB socket buffers",
        buffer >> 10
    );
    println!("best of {rounds} rounds each, the stacks taking turns (the machine is shared: rounds differ)");
    // Per way of writing: its name, and its runs A -> B and B -> A.
    let mut ours_runs =
        [("write, copying", Writes::Copy, opts.copy), ("write_bytes, zero-copy", Writes::ZeroCopy, opts.zero_copy)]
            .map(|(name, writes, on)| (name, writes, on, Vec::new(), Vec::new()));
    let mut peer = Vec::new();
    for _ in 0..rounds {
        for (_, writes, on, forward, backward) in &mut ours_runs {
            if *on {
                forward.push(ours(total, write, buffer, false, *writes, skip_idle));
                backward.push(ours(total, write, buffer, true, *writes, skip_idle));
            }
        }
        if opts.smoltcp {
            peer.push(peer::smoltcp(total, write, buffer, skip_idle));
        }
    }
    for (name, _, _, forward, backward) in &ours_runs {
        report(&format!("ours ({name}) A -> B"), forward);
        report(&format!("ours ({name}) B -> A"), backward);
    }
    report("smoltcp 0.12 A -> B", &peer);
    for (name, _, _, forward, backward) in &ours_runs {
        if forward.is_empty() || peer.is_empty() {
            continue;
        }
        // Per round, so both sides of a ratio ran at about the same time,
        // and per direction: the median of each direction's ratios, not of
        // the slower direction per round, which under noise is biased low
        // (the minimum of two noisy samples).
        for (what, rate) in [("wall", Run::gbps as fn(&Run) -> f64), ("CPU", Run::cpu_gbps)] {
            let ratios =
                |ours: &[Run]| -> Vec<f64> { sorted(ours.iter().zip(&peer).map(|(o, p)| rate(o) / rate(p)).collect()) };
            let (f, b) = (ratios(forward), ratios(backward));
            let median = |r: &[f64]| r[r.len() / 2];
            println!(
                "ours ({name}): ratio by {what} time to smoltcp, per round: A -> B median {:.2}x (best {:.2}x, worst {:.2}x), B -> A median {:.2}x (best {:.2}x, worst {:.2}x); lower median {:.2}x",
                median(&f),
                f[f.len() - 1],
                f[0],
                median(&b),
                b[b.len() - 1],
                b[0],
                median(&f).min(median(&b)),
            );
        }
    }
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

/// Prints the best round (by CPU time) and the median rates of `runs`.
fn report(name: &str, runs: &[Run]) {
    let Some(best) = runs.iter().max_by(|a, b| a.cpu_gbps().total_cmp(&b.cpu_gbps())) else {
        return;
    };
    best.print(name);
    let wall = sorted(runs.iter().map(Run::gbps).collect());
    let cpu = sorted(runs.iter().map(Run::cpu_gbps).collect());
    println!(
        "{:<38} median of {}: {:>7.2} Gbit/s  {:>7.2} Gbit/CPU-s",
        "",
        runs.len(),
        wall[wall.len() / 2],
        cpu[cpu.len() / 2]
    );
}
