//! What a peer can make our TCP receive side hold in real memory, on a
//! device that cuts received frames from large shared blocks, as
//! `TapNetwork` did (blocks of 32 maximum-sized frames, 48 608 bytes): a
//! payload kept as a slice of its frame keeps the whole block alive.
//!
//! An outside attack found that a peer could make us hold tens of
//! kilobytes per byte it sent: out-of-order bytes behind a hole, and
//! in-order data a blocked application does not read, were kept as slices
//! of their frames, each followed by junk frames so that every one kept a
//! block of its own (16 672 payload bytes held over 600 connections took
//! a TAP server from 14.5 MB to 807.7 MB). Here the same attacks run on
//! the virtual switch, in virtual time, from a raw port that speaks just
//! enough TCP: the victim's device is [`BlockDevice`], and a counting
//! allocator measures the memory of the test's thread (blocks alive, heap
//! bytes alive), beside the stack's own figures
//! (`NetStack::usage().tcp_recv`). The bounds asserted are those of
//! `tcp`'s module docs: per connection, our own allocations at most
//! `3.2 × D + 25 KiB` for `D` bytes held, and at most `⌊D / 1024⌋ + 1`
//! frames kept alive, none for longer than `TcpConfig::recv_frame_hold`.
//!
//! The same holds for UDP: datagrams queued to a socket nobody reads.
//!
//! Before the fix: the out-of-order attack (64 connections, 28 bytes
//! each) kept 1 792 blocks (87 MB) alive, the in-order one (4 connections,
//! 250 KiB each) 1 000 blocks (49 MB), for as long as the connections
//! lived; 64 one-byte datagrams to an unread UDP socket kept 64 blocks
//! (3.0 MiB). Figures: `cargo test -p mirage-net-stack --test pinning --
//! --nocapture`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use mirage_net_stack::ipv4::Ipv4Config;
use mirage_net_stack::stack::{NetStack, StackBuilder, StackUsage};
use mirage_net_stack::switch::{Simulation, SwitchPort, VirtualClock, VirtualPlatform, VirtualSwitch};
use mirage_net_stack::tcp::TcpConfig;
use mirage_net_stack::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetPacket, EthernetRepr, Ipv4Packet, Ipv4Repr, SeqNumber, TcpFlags,
    TcpOptions, TcpPacket, TcpRepr, UdpPacket, UdpRepr,
};
use mirage_types::ethernet::EtherType;
use mirage_types::ip::{IpProtocol, Ipv4Cidr};
use mirage_types::net::{MacAddress, NetStats, NetworkDevice};
use mirage_types::stack::Stack;
use mirage_types::tcp::{Tcp, TcpListener};
use mirage_types::time::Sleep;
use mirage_types::udp::Udp;

// ---------------------------------------------------------------------------
// Memory of this thread, counted by the allocator

/// Counts, per thread, the bytes allocated and not freed, and the blocks
/// of [`BLOCK_LEN`] bytes alive (the allocations of [`BlockDevice`]; no
/// other allocation of the stack has that size).
struct Counting;

thread_local! {
    static LIVE_BYTES: Cell<isize> = const { Cell::new(0) };
    static LIVE_BLOCKS: Cell<isize> = const { Cell::new(0) };
}

fn count(size: usize, sign: isize) {
    let _ = LIVE_BYTES.try_with(|c| c.set(c.get() + sign * size as isize));
    if size == BLOCK_LEN {
        let _ = LIVE_BLOCKS.try_with(|c| c.set(c.get() + sign));
    }
}

// SAFETY: every call is passed to `System` unchanged; the counting around
// it touches only thread-local integers (no allocation, no reentrancy).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size(), 1);
        // SAFETY: the caller's contract is `System`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(layout.size(), -1);
        // SAFETY: the caller's contract is `System`'s.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size(), 1);
        // SAFETY: the caller's contract is `System`'s.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(layout.size(), -1);
        count(new_size, 1);
        // SAFETY: the caller's contract is `System`'s.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live_bytes() -> isize {
    LIVE_BYTES.with(Cell::get)
}

fn live_blocks() -> isize {
    LIVE_BLOCKS.with(Cell::get)
}

// ---------------------------------------------------------------------------
// A device that cuts frames from shared blocks

/// The largest frame TAP read (MTU 1500, header, one VLAN tag, one byte to
/// tell a truncated frame).
const MAX_READ: usize = 1500 + 14 + 4 + 1;
/// A receive block: 32 of those, as `TapNetwork` allocated them.
const BLOCK_LEN: usize = 32 * MAX_READ;

/// A [`SwitchPort`] whose received frames are copied into a shared block
/// and handed up as slices of it, as `TapNetwork` did: a frame kept alive
/// keeps its whole block.
struct BlockDevice {
    port: SwitchPort,
    block: RefCell<BytesMut>,
}

impl BlockDevice {
    fn new(port: SwitchPort) -> BlockDevice {
        BlockDevice { port, block: RefCell::new(BytesMut::new()) }
    }
}

impl NetworkDevice for BlockDevice {
    type Error = <SwitchPort as NetworkDevice>::Error;

    fn mac(&self) -> MacAddress {
        self.port.mac()
    }

    fn mtu(&self) -> usize {
        self.port.mtu()
    }

    fn stats(&self) -> NetStats {
        self.port.stats()
    }

    async fn receive(&self) -> Result<Bytes, Self::Error> {
        let frame = self.port.receive().await?;
        let mut block = self.block.borrow_mut();
        if block.capacity() - block.len() < MAX_READ {
            // A new block; the old one lives on while a frame of it does.
            *block = BytesMut::with_capacity(BLOCK_LEN);
        }
        block.extend_from_slice(&frame);
        Ok(block.split_to(frame.len()).freeze())
    }

    async fn transmit<R>(&self, len: usize, fill: impl FnOnce(&mut [u8]) -> R) -> Result<R, Self::Error> {
        self.port.transmit(len, fill).await
    }
}

// ---------------------------------------------------------------------------
// The attacker: a raw port that speaks just enough TCP

const MAC_VICTIM: MacAddress = MacAddress([2, 0, 0, 0, 0, 0xb]);
const MAC_ATTACKER: MacAddress = MacAddress([2, 0, 0, 0, 0, 0xe]);
const IP_VICTIM: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const IP_ATTACKER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 66);
const PORT: u16 = 80;
/// Junk frames after each segment: enough to use up the rest of its block,
/// so the next segment lands in a block of its own.
const JUNK_PER_SEGMENT: usize = BLOCK_LEN / 1514 + 1;

/// One ready-made Ethernet frame.
fn frame(ethertype: EtherType, len: usize, fill: impl FnOnce(&mut [u8])) -> Vec<u8> {
    let mut frame = vec![0u8; 14 + len];
    EthernetRepr { src_addr: MAC_ATTACKER, dst_addr: MAC_VICTIM, ethertype }
        .emit(&mut EthernetPacket::new_unchecked(&mut frame[..]));
    fill(&mut frame[14..]);
    frame
}

fn tcp_frame(repr: &TcpRepr, payload: &[u8]) -> Vec<u8> {
    let ip = Ipv4Repr::new(IP_ATTACKER, IP_VICTIM, IpProtocol::TCP, repr.buffer_len(), 64);
    frame(EtherType::IPV4, ip.buffer_len(), |buf| {
        ip.emit(&mut Ipv4Packet::new_unchecked(&mut buf[..ip.header_len]));
        repr.emit(&mut TcpPacket::new_unchecked(&mut buf[ip.header_len..]), IP_ATTACKER, IP_VICTIM, |out| {
            out.copy_from_slice(payload)
        });
    })
}

struct Attacker {
    port: SwitchPort,
    /// Our port → the victim's initial sequence number, from its SYN-ACK.
    synacks: RefCell<BTreeMap<u16, u32>>,
}

/// One connection of the attacker: the sequence number of its first data
/// byte.
struct Conn {
    port: u16,
    data_seq: SeqNumber,
    ack: SeqNumber,
}

impl Attacker {
    async fn send(&self, frame: &[u8]) {
        self.port.transmit(frame.len(), |buf| buf.copy_from_slice(frame)).await.expect("the switch takes frames");
        // Lets the victim take it before the next one.
        yield_now().await;
    }

    /// Answers ARP for our address and notes SYN-ACKs; drops the rest.
    async fn receive_loop(&self) {
        // Each pass handles one frame; the loop lasts as long as the test.
        loop {
            let received = self.port.receive().await.expect("the switch port never fails");
            let Ok(eth) = EthernetPacket::new_checked(&received[..]) else { continue };
            let Ok(eth_repr) = EthernetRepr::parse(&eth) else { continue };
            if eth_repr.ethertype == EtherType::ARP {
                let Ok(arp) = ArpPacket::new_checked(eth.payload()).and_then(|p| ArpRepr::parse(&p)) else {
                    continue;
                };
                if arp.operation == ArpOperation::Request && arp.target_protocol_addr == IP_ATTACKER {
                    let reply = ArpRepr {
                        operation: ArpOperation::Reply,
                        source_hardware_addr: MAC_ATTACKER,
                        source_protocol_addr: IP_ATTACKER,
                        target_hardware_addr: arp.source_hardware_addr,
                        target_protocol_addr: arp.source_protocol_addr,
                    };
                    let out =
                        frame(EtherType::ARP, reply.buffer_len(), |buf| reply.emit(&mut ArpPacket::new_unchecked(buf)));
                    self.send(&out).await;
                }
                continue;
            }
            let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else { continue };
            let Ok(tcp) = TcpPacket::new_checked(ip.payload()) else { continue };
            let Ok(repr) = TcpRepr::parse(&tcp, IP_VICTIM, IP_ATTACKER) else { continue };
            if repr.flags.syn() && repr.flags.ack() {
                self.synacks.borrow_mut().insert(repr.dst_port, repr.seq_number.0);
            }
        }
    }

    /// Opens a connection from `port` (window scaling offered, so the
    /// victim's window can be its whole buffer).
    async fn connect(&self, clock: &VirtualClock, port: u16) -> Conn {
        let iss = SeqNumber(0x1000_0000 + u32::from(port) * 7919);
        let syn = TcpRepr {
            src_port: port,
            dst_port: PORT,
            seq_number: iss,
            ack_number: SeqNumber(0),
            flags: TcpFlags::SYN,
            window_len: 65535,
            options: TcpOptions { max_seg_size: Some(1460), window_scale: Some(7), ..TcpOptions::default() },
            payload_len: 0,
        };
        self.send(&tcp_frame(&syn, &[])).await;
        // The SYN-ACK waits for the victim's ARP resolution of us.
        let mut waited = 0;
        let irs = loop {
            if let Some(irs) = self.synacks.borrow_mut().remove(&port) {
                break irs;
            }
            waited += 1;
            assert!(waited < 1000, "no SYN-ACK for port {port}");
            clock.sleep(Duration::from_millis(1)).await;
        };
        let conn = Conn { port, data_seq: iss + 1, ack: SeqNumber(irs) + 1 };
        self.send(&tcp_frame(&self.segment(&conn, 0, 0), &[])).await;
        conn
    }

    /// A data segment (or the handshake's ACK, with no payload) at
    /// `offset` into the connection's stream.
    fn segment(&self, conn: &Conn, offset: usize, len: usize) -> TcpRepr {
        TcpRepr {
            src_port: conn.port,
            dst_port: PORT,
            seq_number: conn.data_seq + offset,
            ack_number: conn.ack,
            flags: TcpFlags::ACK,
            window_len: 65535,
            options: TcpOptions::default(),
            payload_len: len,
        }
    }

    /// Sends `payload` at `offset`, then junk frames that use up the rest
    /// of the victim's receive block.
    async fn send_pinned(&self, conn: &Conn, offset: usize, payload: &[u8]) {
        self.send(&tcp_frame(&self.segment(conn, offset, payload.len()), payload)).await;
        let junk = frame(EtherType(0x88b5), 1500, |buf| buf.fill(0x5a));
        for _ in 0..JUNK_PER_SEGMENT {
            self.send(&junk).await;
        }
    }
}

/// Returns `Pending` once, so the other tasks run before this one goes on.
async fn yield_now() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            std::task::Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await
}

// ---------------------------------------------------------------------------
// The victim

type Victim = NetStack<BlockDevice, VirtualPlatform>;

struct Net {
    sim: Simulation,
    clock: VirtualClock,
    victim: Rc<Victim>,
    attacker: Rc<Attacker>,
    /// The victim's accepted connections, never read.
    flows: Rc<RefCell<Vec<<<Victim as Stack>::Tcp as Tcp>::Flow>>>,
}

/// The victim's stack on a [`BlockDevice`], with an application that
/// accepts every connection on port 80 and never reads; the attacker's
/// receive loop runs.
fn net() -> Net {
    let clock = VirtualClock::new();
    let sim = Simulation::new(&clock);
    let switch = VirtualSwitch::new(&clock, 1);
    let victim_port = switch.add_port(MAC_VICTIM);
    let attacker = Rc::new(Attacker { port: switch.add_port(MAC_ATTACKER), synacks: RefCell::default() });
    let platform = VirtualPlatform::new(&sim, 2);
    let victim = sim
        .run_until(
            async {
                StackBuilder::new(BlockDevice::new(victim_port), platform)
                    .ipv4(Ipv4Config { address: Ipv4Cidr::new(IP_VICTIM, 24).unwrap(), gateway: None })
                    .tcp_config(TcpConfig::default())
                    .build()
                    .await
                    .unwrap()
            },
            Duration::from_secs(1),
        )
        .unwrap();
    let victim = Rc::new(victim);
    let flows = Rc::new(RefCell::new(Vec::new()));
    {
        let victim = victim.clone();
        sim.spawn(async move {
            victim.run().await.expect("the virtual link never fails");
        });
    }
    {
        let (victim, flows) = (victim.clone(), flows.clone());
        sim.spawn(async move {
            let listener = victim.tcp().listen(SocketAddr::from((Ipv4Addr::UNSPECIFIED, PORT)), 1024).await.unwrap();
            // Each pass accepts one connection, kept unread for the test.
            loop {
                let flow = listener.accept().await.expect("accept never fails");
                flows.borrow_mut().push(flow);
            }
        });
    }
    {
        let attacker = attacker.clone();
        sim.spawn(async move { attacker.receive_loop().await });
    }
    Net { sim, clock, victim, attacker, flows }
}

/// The documented bound of our own allocations for a connection holding
/// `data` bytes (`tcp` module docs): `3.2 × data + 25 KiB`.
fn allocated_bound(data: usize) -> usize {
    data * 16 / 5 + 25 * 1024
}

/// The documented bound of the frames a connection keeps alive for
/// `data` bytes held: `⌊data / 1024⌋ + 1`.
fn frames_bound(data: usize) -> usize {
    data / 1024 + 1
}

/// The stack's own figures of what its connections' receive sides hold:
/// (data, frames kept alive, bytes allocated).
fn recv_figures(usage: &StackUsage) -> (usize, usize, usize) {
    (usage.tcp_recv.data, usage.tcp_recv.frames, usage.tcp_recv.allocated)
}

fn mib(bytes: isize) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

/// 64 connections each send 28 bytes one by one behind a hole (out of
/// order, never delivered), each byte followed by junk. Every byte used to
/// keep a 48 608-byte block alive; now each is copied at once, and what
/// the 64 connections hold is a few kilobytes each.
#[test]
fn out_of_order_bytes_behind_a_hole_keep_no_frame_alive() {
    const CONNS: u16 = 64;
    const SEGMENTS: usize = 28;
    let Net { sim, clock, victim, attacker, flows } = net();
    let report = sim
        .run_until(
            async {
                // The listener is up once the tasks have run.
                clock.sleep(Duration::from_millis(1)).await;
                let mut conns = Vec::new();
                for i in 0..CONNS {
                    conns.push(attacker.connect(&clock, 20_000 + i).await);
                }
                clock.sleep(Duration::from_millis(50)).await;
                assert_eq!(flows.borrow().len(), usize::from(CONNS), "every connection accepted");
                let (bytes_before, blocks_before) = (live_bytes(), live_blocks());
                for conn in &conns {
                    // Offset 0 is the hole; bytes at 2, 4, 6, ... are held.
                    for k in 0..SEGMENTS {
                        attacker.send_pinned(conn, 2 + 2 * k, &[k as u8]).await;
                    }
                }
                // Within the hold time and after it.
                clock.sleep(Duration::from_millis(10)).await;
                let soon = (live_blocks() - blocks_before, recv_figures(&victim.usage()));
                clock.sleep(TcpConfig::default().recv_frame_hold * 2).await;
                let later = (live_blocks() - blocks_before, live_bytes() - bytes_before, recv_figures(&victim.usage()));
                (soon, later)
            },
            Duration::from_secs(60),
        )
        .unwrap();
    let ((blocks_soon, (data, frames, _)), (blocks_later, heap, (_, _, allocated))) = report;
    let held = usize::from(CONNS) * SEGMENTS;
    println!(
        "out of order: {held} bytes held over {CONNS} connections: {blocks_soon} receive blocks alive ({:.1} MiB), \
         {blocks_later} after the hold time; heap {:+.2} MiB; the stack's figures: {data} bytes held, \
         {frames} frames kept, {allocated} bytes allocated",
        mib(blocks_soon * BLOCK_LEN as isize),
        mib(heap),
    );
    // What the memory really holds: no block, and at most the documented
    // bound of our own allocations per connection.
    assert!(blocks_soon <= 2 && blocks_later <= 2, "blocks alive: {blocks_soon}, then {blocks_later}");
    let bound = usize::from(CONNS) * allocated_bound(SEGMENTS);
    assert!(heap <= bound as isize, "the heap grew by {heap} bytes for {held} bytes held, over the bound {bound}");
    // What the stack says it holds: the same.
    assert_eq!(data, held, "every byte is held");
    assert_eq!(frames, 0, "1-byte payloads are copied, keeping no frame alive");
    assert!(allocated <= bound, "{allocated} bytes allocated for {held} bytes held, over the bound {bound}");
    // The heap grew by the stack's figure and little else (the attacker's
    // and the switch's bookkeeping).
    assert!(
        heap <= (allocated + 64 * 1024) as isize,
        "the heap grew by {heap} bytes, the stack accounts for {allocated}"
    );
}

/// 4 connections each send 250 KiB in order, in segments of 1024 bytes
/// each followed by junk, to an application that never reads. Each segment
/// used to keep a 48 608-byte block alive for as long as it was unread;
/// now at most `⌊D / 1024⌋ + 1` frames per connection are kept, none past
/// the hold time, after which the connections hold copies of exactly the
/// data.
#[test]
fn in_order_data_nobody_reads_keeps_frames_for_the_hold_time_only() {
    const CONNS: u16 = 4;
    const SEGMENTS: usize = 250;
    const SEGMENT: usize = 1024;
    let Net { sim, clock, victim, attacker, flows } = net();
    let report = sim
        .run_until(
            async {
                // The listener is up once the tasks have run.
                clock.sleep(Duration::from_millis(1)).await;
                let mut conns = Vec::new();
                for i in 0..CONNS {
                    conns.push(attacker.connect(&clock, 30_000 + i).await);
                }
                clock.sleep(Duration::from_millis(50)).await;
                assert_eq!(flows.borrow().len(), usize::from(CONNS), "every connection accepted");
                let (bytes_before, blocks_before) = (live_bytes(), live_blocks());
                let payload: Vec<u8> = (0..SEGMENT).map(|i| i as u8).collect();
                // The most blocks alive at once, and the frames the stack
                // said it kept then (one block holds the frame being cut,
                // and junk).
                let (mut peak, mut unaccounted) = ((0, 0), 0);
                for conn in &conns {
                    for k in 0..SEGMENTS {
                        attacker.send_pinned(conn, k * SEGMENT, &payload).await;
                        let (blocks, (_, frames, _)) = (live_blocks() - blocks_before, recv_figures(&victim.usage()));
                        unaccounted = unaccounted.max(blocks - frames as isize - 2);
                        peak = (peak.0.max(blocks), peak.1.max(frames));
                    }
                }
                let soon = recv_figures(&victim.usage());
                clock.sleep(TcpConfig::default().recv_frame_hold * 2).await;
                let later = (live_blocks() - blocks_before, live_bytes() - bytes_before, recv_figures(&victim.usage()));
                (peak, unaccounted, soon, later)
            },
            Duration::from_secs(60),
        )
        .unwrap();
    let ((peak_blocks, peak_frames), unaccounted, (data, _, _), (blocks_later, heap, (_, frames_later, allocated))) =
        report;
    let per_conn = SEGMENTS * SEGMENT;
    let held = per_conn * usize::from(CONNS);
    println!(
        "in order: {} KiB held unread by {CONNS} connections: at most {peak_blocks} receive blocks alive at once \
         ({:.1} MiB, the stack keeping {peak_frames} frames), {blocks_later} after the hold time; heap {:+.2} MiB; \
         the stack's figures: {data} bytes held, {frames_later} frames kept, {allocated} bytes allocated",
        held / 1024,
        mib(peak_blocks * BLOCK_LEN as isize),
        mib(heap),
    );
    // What the memory really holds after the hold time: no block, and at
    // most the documented bound of our own allocations per connection.
    assert!(blocks_later <= 2, "{blocks_later} blocks alive after the hold time");
    let bound = usize::from(CONNS) * allocated_bound(per_conn);
    assert!(heap <= bound as isize, "the heap grew by {heap} bytes for {held} bytes held, over the bound {bound}");
    // Within the hold time, the blocks alive are those of the frames the
    // stack says it keeps, at most the documented number.
    assert!(unaccounted <= 0, "{unaccounted} blocks alive beyond the frames the stack says it keeps");
    assert!(peak_frames <= usize::from(CONNS) * frames_bound(per_conn), "{peak_frames} frames kept");
    assert_eq!(data, held, "every byte is held");
    assert_eq!(frames_later, 0, "no frame kept past the hold time");
    assert!(allocated <= bound, "{allocated} bytes allocated for {held} bytes held, over the bound {bound}");
    assert!(
        heap <= (allocated + 64 * 1024) as isize,
        "the heap grew by {heap} bytes, the stack accounts for {allocated}"
    );
    drop(flows);
}

/// 64 one-byte datagrams, each followed by junk, to a UDP socket whose
/// application never reads: its queue (64 datagrams) fills, and each
/// datagram kept as a slice of its frame kept a receive block alive.
#[test]
fn datagrams_nobody_reads_keep_no_frame_alive() {
    const DATAGRAMS: usize = 64;
    const UDP_PORT: u16 = 53;
    let Net { sim, clock, victim, attacker, .. } = net();
    let report = sim
        .run_until(
            async {
                let socket = victim.udp().bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, UDP_PORT))).await.unwrap();
                let (bytes_before, blocks_before) = (live_bytes(), live_blocks());
                let junk = frame(EtherType(0x88b5), 1500, |buf| buf.fill(0x5a));
                for i in 0..DATAGRAMS {
                    let udp = UdpRepr { src_port: 40_000 + i as u16, dst_port: UDP_PORT, payload_len: 1 };
                    let ip = Ipv4Repr::new(IP_ATTACKER, IP_VICTIM, IpProtocol::UDP, udp.buffer_len(), 64);
                    let datagram = frame(EtherType::IPV4, ip.buffer_len(), |buf| {
                        ip.emit(&mut Ipv4Packet::new_unchecked(&mut buf[..ip.header_len]));
                        udp.emit(
                            &mut UdpPacket::new_unchecked(&mut buf[ip.header_len..]),
                            IP_ATTACKER,
                            IP_VICTIM,
                            |out| out.copy_from_slice(&[i as u8]),
                        );
                    });
                    attacker.send(&datagram).await;
                    for _ in 0..JUNK_PER_SEGMENT {
                        attacker.send(&junk).await;
                    }
                }
                clock.sleep(Duration::from_millis(10)).await;
                let report = (live_blocks() - blocks_before, live_bytes() - bytes_before, victim.usage().udp_sockets);
                drop(socket);
                report
            },
            Duration::from_secs(60),
        )
        .unwrap();
    let (blocks, heap, sockets) = report;
    println!(
        "UDP: {DATAGRAMS} one-byte datagrams queued unread: {blocks} receive blocks alive ({:.1} MiB); heap {:+.2} MiB",
        mib(blocks * BLOCK_LEN as isize),
        mib(heap)
    );
    assert_eq!(sockets, 1);
    assert!(blocks <= 2, "{blocks} receive blocks kept alive by {DATAGRAMS} queued bytes");
}
