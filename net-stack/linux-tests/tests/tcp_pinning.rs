//! A remote memory attack on our stack over TAP, measured in the server's
//! resident memory (`VmRSS` of `/proc/PID/status`): a peer sends TCP
//! payload that our stack must hold (out of order behind a hole, or in
//! order to an application that does not read), each segment followed by
//! junk frames. When `TapNetwork` cut received frames from shared blocks
//! of 32 maximum-sized frames (48 608 bytes), each byte held kept a block
//! alive: 16 800 bytes held over 600 connections took the server from
//! 7.8 MB (connected) to 826.5 MB, and 5 000 KiB held in order by 20
//! connections from 5.3 MB to 248.9 MB; now 9.8 MB and 12.0 MB. The
//! bounds asserted are those of
//! `mirage_net_stack::tcp`'s module docs (per connection: our own
//! allocations at most `3.2 × D + 25 KiB` for `D` bytes held, and at most
//! `⌊D / 1024⌋ + 1` frames of at most 1.6 KiB each kept alive, none
//! past `TcpConfig::recv_frame_hold`), plus 8 MiB for the allocator's and
//! the kernel's page granularity.
//!
//! The server is this test binary run again inside a network namespace
//! (`ip netns exec … env PIN_SERVER=… <this binary> --exact pin_server`):
//! our stack on a TAP interface it creates there, with an application
//! that accepts every connection on port 80 and never reads; it prints its
//! stack's figures (`usage().tcp_recv`) every 100 ms. The attacker is this
//! process: a raw `AF_PACKET` socket on the interface's kernel end (opened
//! by a thread that entered the namespace), which answers ARP for a
//! made-up address and speaks just enough TCP.
//!
//! Needs root, /dev/net/tun, `ip` (iproute2) and `env` (coreutils);
//! without them the test skips, or fails under CI (`mirage_test_env`).
//! Figures: `cargo test -p mirage-net-stack-linux-tests --test tcp_pinning
//! -- --nocapture`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mirage_net_stack::ipv4::Ipv4Config;
use mirage_net_stack::stack::{StackBuilder, StackUsage};
use mirage_net_stack::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetPacket, EthernetRepr, Ipv4Packet, Ipv4Repr, SeqNumber, TcpFlags,
    TcpOptions, TcpPacket, TcpRepr,
};
use mirage_net_stack_linux_tests::{iface_name, missing, sh, KillOnDrop, Netns};
use mirage_platform_unix::tap::TapNetwork;
use mirage_platform_unix::UnixPlatform;
use mirage_types::ethernet::EtherType;
use mirage_types::ip::{IpProtocol, Ipv4Cidr};
use mirage_types::net::MacAddress;
use mirage_types::stack::Stack;
use mirage_types::tcp::{Tcp, TcpListener};

/// The environment variable that turns [`pin_server`] on: `IFACE,IP`.
const SERVER_VAR: &str = "PIN_SERVER";
/// The port the server listens on.
const PORT: u16 = 80;
/// The attacker's made-up addresses.
const ATTACKER_MAC: MacAddress = MacAddress([2, 0, 0, 0, 0, 0xe]);
const ATTACKER_HOST: u8 = 66;
/// What TAP read per frame (MTU 1500, header, a VLAN tag, one byte more),
/// and the blocks it cut frames from.
const MAX_READ: usize = 1500 + 14 + 4 + 1;
const BLOCK_LEN: usize = 32 * MAX_READ;
/// Junk frames after each segment, to use up the rest of its block.
const JUNK_PER_SEGMENT: usize = BLOCK_LEN / 1514 + 1;
/// Room for the allocator's and the kernel's page granularity.
const SLACK: u64 = 8 << 20;

/// The documented bound of our own allocations for a connection holding
/// `data` bytes: `3.2 × data + 25 KiB`.
fn allocated_bound(data: u64) -> u64 {
    data * 16 / 5 + 25 * 1024
}

/// The documented bound of the memory the frames a connection keeps alive
/// take, for `data` bytes held, on TAP: `⌊data / 1024⌋ + 1` frames, each
/// a receive buffer of 1519 bytes and its 32-byte reference count, plus
/// glibc's 16 bytes per allocation.
fn frames_bound(data: u64) -> u64 {
    (data / 1024 + 1) * (1519 + 32 + 2 * 16)
}

// ---------------------------------------------------------------------------
// The server, run in the namespace

/// One line of the server's figures: data held, frames kept, their data,
/// bytes allocated, connections.
fn usage_line(usage: &StackUsage) -> String {
    let r = usage.tcp_recv;
    format!("USAGE {} {} {} {} {}", r.data, r.frames, r.frame_data, r.allocated, usage.tcp_connections)
}

#[test]
#[ignore = "the server half of the pinning tests, run by them inside a namespace"]
fn pin_server() {
    let Ok(spec) = std::env::var(SERVER_VAR) else {
        return;
    };
    let (iface, ip) = spec.split_once(',').expect("PIN_SERVER is IFACE,IP");
    let ip: Ipv4Addr = ip.parse().expect("the server's address");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        let tap = TapNetwork::open(iface).expect("opening the TAP interface");
        // A long queue toward us, so that nothing the attacker sends is
        // dropped while we are descheduled.
        sh(&["ip", "link", "set", iface, "txqueuelen", "100000", "up"]).expect("bringing the interface up");
        let config = Ipv4Config { address: Ipv4Cidr::new(ip, 24).unwrap(), gateway: None };
        let stack = StackBuilder::new(tap, UnixPlatform::new(Vec::new())).ipv4(config).build().await;
        let stack = Rc::new(stack.expect("building our stack"));
        let runner = stack.clone();
        tokio::task::spawn_local(async move {
            let _ = runner.run().await;
        });
        let listener = stack.tcp().listen(SocketAddr::from((Ipv4Addr::UNSPECIFIED, PORT)), 1024).await.unwrap();
        tokio::task::spawn_local(async move {
            let mut flows = Vec::new();
            // Each pass accepts one connection, never read.
            while let Ok(flow) = listener.accept().await {
                flows.push(flow);
            }
        });
        println!("READY");
        // Each pass prints the figures; the test kills the process.
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            println!("{}", usage_line(&stack.usage()));
        }
    });
}

/// The server process, killed when dropped.
struct Server {
    child: KillOnDrop,
    /// Its latest figures line.
    usage: Arc<Mutex<String>>,
}

impl Server {
    fn start(ns: &Netns, iface: &str, ip: Ipv4Addr) -> Server {
        let exe = std::env::current_exe().expect("the test binary's path");
        let spec = format!("{SERVER_VAR}={iface},{ip}");
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns.name(), "env", &spec])
            .arg(exe)
            .args(["--exact", "pin_server", "--ignored", "--nocapture"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting the server");
        let stdout = child.stdout.take().expect("the server's stdout");
        let usage = Arc::new(Mutex::new(String::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        let latest = usage.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line == "READY" {
                    let _ = ready_tx.send(());
                } else if line.starts_with("USAGE") {
                    *latest.lock().unwrap() = line;
                }
            }
        });
        let server = Server { child: KillOnDrop(child), usage };
        ready_rx.recv_timeout(Duration::from_secs(30)).expect("the server did not become ready");
        server
    }

    /// Resident memory, bytes.
    fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.0.id())).expect("its status");
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status");
        kib * 1024
    }

    /// Its figures (data, frames, frame data, allocated, connections),
    /// at least 200 ms fresh.
    fn figures(&self) -> [u64; 5] {
        std::thread::sleep(Duration::from_millis(200));
        let line = self.usage.lock().unwrap().clone();
        let numbers: Vec<u64> = line.split_whitespace().skip(1).filter_map(|n| n.parse().ok()).collect();
        numbers.try_into().unwrap_or_else(|_| panic!("no figures from the server: {line:?}"))
    }
}

// ---------------------------------------------------------------------------
// The attacker: an AF_PACKET socket on the kernel end of the interface

/// A raw socket that sends and receives whole Ethernet frames on one
/// interface of a namespace.
struct Wire {
    fd: OwnedFd,
}

impl Wire {
    /// Opens the socket on `iface` inside namespace `ns`, from a thread
    /// that enters the namespace (a socket stays in the namespace it was
    /// made in; the calling thread's namespace does not change).
    fn open(ns: &str, iface: &str) -> Wire {
        let (ns, iface) = (format!("/var/run/netns/{ns}"), iface.to_string());
        std::thread::spawn(move || Wire::open_here(&ns, &iface)).join().expect("the socket thread").unwrap()
    }

    fn open_here(ns_path: &str, iface: &str) -> Result<Wire, String> {
        let ns = std::fs::File::open(ns_path).map_err(|e| format!("{ns_path}: {e}"))?;
        // SAFETY: setns(2) with an open namespace descriptor; it changes
        // only this (short-lived) thread's network namespace.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(format!("setns: {}", std::io::Error::last_os_error()));
        }
        let protocol = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain socket(2); the result is checked.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, i32::from(protocol)) };
        if raw < 0 {
            return Err(format!("socket(AF_PACKET): {}", std::io::Error::last_os_error()));
        }
        // SAFETY: `raw` is a new descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let name = std::ffi::CString::new(iface).map_err(|e| e.to_string())?;
        // SAFETY: a NUL-terminated name that outlives the call.
        let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if index == 0 {
            return Err(format!("if_nametoindex({iface}): {}", std::io::Error::last_os_error()));
        }
        // SAFETY: all-zero is a valid `sockaddr_ll`.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = protocol;
        addr.sll_ifindex = index as i32;
        // SAFETY: bind(2) with a valid `sockaddr_ll` and its size; `fd` is open.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                &addr as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(format!("bind(AF_PACKET, {iface}): {}", std::io::Error::last_os_error()));
        }
        Ok(Wire { fd })
    }

    fn send(&self, frame: &[u8]) {
        // Each pass retries a send the kernel had no room for.
        loop {
            // SAFETY: send(2) of a valid buffer on an open socket bound to
            // one interface.
            let n = unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
            if n == frame.len() as isize {
                return;
            }
            let e = std::io::Error::last_os_error();
            assert!(e.raw_os_error() == Some(libc::ENOBUFS), "sending a frame: {e}");
            std::thread::sleep(Duration::from_micros(100));
        }
    }

    /// The next frame, waiting at most `timeout`.
    fn recv(&self, buf: &mut [u8], timeout: Duration) -> Option<usize> {
        let mut pfd = libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: poll(2) on one valid `pollfd`.
        let ready = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as i32) };
        if ready <= 0 {
            return None;
        }
        // SAFETY: recv(2) into a valid, exclusively borrowed buffer.
        let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
        usize::try_from(n).ok()
    }
}

/// One connection of the attacker.
struct Conn {
    port: u16,
    /// The sequence number of its first data byte.
    data_seq: SeqNumber,
    /// What it acknowledges (the server's SYN).
    ack: SeqNumber,
}

/// What the attacker heard from the server.
enum Heard {
    SynAck { port: u16, seq: u32 },
    Ack { port: u16, ack: SeqNumber },
    Other,
}

struct Attacker {
    wire: Wire,
    ip: Ipv4Addr,
    server_ip: Ipv4Addr,
    server_mac: MacAddress,
    buf: Vec<u8>,
}

impl Attacker {
    fn new(wire: Wire, ip: Ipv4Addr, server_ip: Ipv4Addr) -> Attacker {
        let mut attacker = Attacker { wire, ip, server_ip, server_mac: MacAddress::BROADCAST, buf: vec![0; 65536] };
        // Ask for the server's address: its answer tells its MAC.
        let ask = ArpRepr {
            operation: ArpOperation::Request,
            source_hardware_addr: ATTACKER_MAC,
            source_protocol_addr: ip,
            target_hardware_addr: MacAddress([0; 6]),
            target_protocol_addr: server_ip,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        // Each pass asks once and listens for 100 ms.
        while attacker.server_mac == MacAddress::BROADCAST {
            assert!(Instant::now() < deadline, "the server never answered ARP");
            attacker.send_frame(EtherType::ARP, ask.buffer_len(), |buf| ask.emit(&mut ArpPacket::new_unchecked(buf)));
            let until = Instant::now() + Duration::from_millis(100);
            while Instant::now() < until && attacker.server_mac == MacAddress::BROADCAST {
                attacker.hear(Duration::from_millis(10));
            }
        }
        attacker
    }

    fn send_frame(&self, ethertype: EtherType, len: usize, fill: impl FnOnce(&mut [u8])) {
        let mut frame = vec![0u8; 14 + len];
        EthernetRepr { src_addr: ATTACKER_MAC, dst_addr: self.server_mac, ethertype }
            .emit(&mut EthernetPacket::new_unchecked(&mut frame[..]));
        fill(&mut frame[14..]);
        self.wire.send(&frame);
    }

    fn send_tcp(&self, repr: &TcpRepr, payload: &[u8]) {
        let ip = Ipv4Repr::new(self.ip, self.server_ip, IpProtocol::TCP, repr.buffer_len(), 64);
        let (src, dst) = (self.ip, self.server_ip);
        self.send_frame(EtherType::IPV4, ip.buffer_len(), |buf| {
            ip.emit(&mut Ipv4Packet::new_unchecked(&mut buf[..ip.header_len]));
            repr.emit(&mut TcpPacket::new_unchecked(&mut buf[ip.header_len..]), src, dst, |out| {
                out.copy_from_slice(payload)
            });
        });
    }

    /// Takes one frame (waiting at most `timeout`): answers ARP for our
    /// address, learns the server's MAC, and reports TCP from the server.
    fn hear(&mut self, timeout: Duration) -> Heard {
        let Some(n) = self.wire.recv(&mut self.buf, timeout) else { return Heard::Other };
        let Ok(eth) = EthernetPacket::new_checked(&self.buf[..n]) else { return Heard::Other };
        let Ok(eth_repr) = EthernetRepr::parse(&eth) else { return Heard::Other };
        if eth_repr.src_addr == ATTACKER_MAC {
            // Our own frame, seen on its way out.
            return Heard::Other;
        }
        if eth_repr.ethertype == EtherType::ARP {
            let Ok(arp) = ArpPacket::new_checked(eth.payload()).and_then(|p| ArpRepr::parse(&p)) else {
                return Heard::Other;
            };
            if arp.source_protocol_addr == self.server_ip {
                self.server_mac = arp.source_hardware_addr;
            }
            if arp.operation == ArpOperation::Request && arp.target_protocol_addr == self.ip {
                let reply = ArpRepr {
                    operation: ArpOperation::Reply,
                    source_hardware_addr: ATTACKER_MAC,
                    source_protocol_addr: self.ip,
                    target_hardware_addr: arp.source_hardware_addr,
                    target_protocol_addr: arp.source_protocol_addr,
                };
                self.send_frame(EtherType::ARP, reply.buffer_len(), |buf| {
                    reply.emit(&mut ArpPacket::new_unchecked(buf))
                });
            }
            return Heard::Other;
        }
        let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else { return Heard::Other };
        let Ok(tcp) = TcpPacket::new_checked(ip.payload()) else { return Heard::Other };
        let Ok(repr) = TcpRepr::parse(&tcp, self.server_ip, self.ip) else { return Heard::Other };
        match (repr.flags.syn(), repr.flags.ack()) {
            (true, true) => Heard::SynAck { port: repr.dst_port, seq: repr.seq_number.0 },
            (false, true) => Heard::Ack { port: repr.dst_port, ack: repr.ack_number },
            _ => Heard::Other,
        }
    }

    fn segment(conn: &Conn, offset: usize, len: usize) -> TcpRepr {
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

    /// Opens connections from `ports`, 32 at a time (fewer than the
    /// listener's half-open slots, so none gets a SYN cookie, which
    /// would lose window scaling).
    fn connect(&mut self, ports: std::ops::Range<u16>) -> Vec<Conn> {
        let mut conns = Vec::new();
        let ports: Vec<u16> = ports.collect();
        for batch in ports.chunks(32) {
            let iss = |port: u16| SeqNumber(0x1000_0000u32.wrapping_add(u32::from(port) * 7919));
            let mut waiting: BTreeMap<u16, Option<u32>> = batch.iter().map(|&p| (p, None)).collect();
            let deadline = Instant::now() + Duration::from_secs(20);
            // Each pass (re)sends the SYNs not answered yet and listens.
            while waiting.values().any(Option::is_none) {
                assert!(Instant::now() < deadline, "no SYN-ACK for some of ports {batch:?}");
                for (&port, _) in waiting.iter().filter(|(_, irs)| irs.is_none()) {
                    let syn = TcpRepr {
                        src_port: port,
                        dst_port: PORT,
                        seq_number: iss(port),
                        ack_number: SeqNumber(0),
                        flags: TcpFlags::SYN,
                        window_len: 65535,
                        options: TcpOptions {
                            max_seg_size: Some(1460),
                            window_scale: Some(7),
                            ..TcpOptions::default()
                        },
                        payload_len: 0,
                    };
                    self.send_tcp(&syn, &[]);
                }
                let until = Instant::now() + Duration::from_millis(500);
                while Instant::now() < until && waiting.values().any(Option::is_none) {
                    if let Heard::SynAck { port, seq } = self.hear(Duration::from_millis(10)) {
                        if let Some(slot) = waiting.get_mut(&port) {
                            *slot = Some(seq);
                        }
                    }
                }
            }
            for (port, irs) in waiting {
                let conn = Conn { port, data_seq: iss(port) + 1, ack: SeqNumber(irs.unwrap_or(0)) + 1 };
                self.send_tcp(&Attacker::segment(&conn, 0, 0), &[]);
                conns.push(conn);
            }
        }
        conns
    }

    /// Sends `payload` at `offset` in `conn`'s stream, then junk frames
    /// that use up the rest of a TAP receive block.
    fn send_pinned(&self, conn: &Conn, offset: usize, payload: &[u8]) {
        self.send_tcp(&Attacker::segment(conn, offset, payload.len()), payload);
        for _ in 0..JUNK_PER_SEGMENT {
            self.send_frame(EtherType(0x88b5), 1500, |buf| buf.fill(0x5a));
        }
    }

    /// Waits (at most a second) until the server acknowledges something on
    /// `conn` that satisfies `done`; false if it did not.
    fn await_ack(&mut self, conn: &Conn, done: impl Fn(SeqNumber) -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(1);
        // Each pass takes one frame.
        while Instant::now() < deadline {
            if let Heard::Ack { port, ack } = self.hear(Duration::from_millis(10)) {
                if port == conn.port && done(ack) {
                    return true;
                }
            }
        }
        false
    }

    /// Drains what the server sent for `wait`.
    fn drain(&mut self, wait: Duration) {
        let until = Instant::now() + wait;
        while Instant::now() < until {
            self.hear(Duration::from_millis(10));
        }
    }
}

// ---------------------------------------------------------------------------
// The tests

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

/// Runs one attack: `attack` gets the attacker and its connections; then
/// the server's resident memory must not have grown by more than `bound`
/// bytes (plus [`SLACK`]) over what the connections alone cost.
fn pinning_attack(tag: &str, net: u8, conns: u16, held_per_conn: u64, attack: impl FnOnce(&mut Attacker, &[Conn])) {
    mirage_test_env::require!(missing(&[("env", "coreutils")]));
    let Some(ns) = Netns::new_or_skip(&format!("mirage-pin-{tag}")) else { return };
    let iface = iface_name(tag);
    let server_ip = Ipv4Addr::new(10, net, 0, 2);
    let server = Server::start(&ns, &iface, server_ip);
    let rss_ready = server.rss();
    let mut attacker =
        Attacker::new(Wire::open(ns.name(), &iface), Ipv4Addr::new(10, net, 0, ATTACKER_HOST), server_ip);
    let opened = attacker.connect(20_000..20_000 + conns);
    attacker.drain(Duration::from_millis(300));
    let [_, _, _, _, connections] = server.figures();
    assert_eq!(connections, u64::from(conns), "the server holds every connection");
    let rss_connected = server.rss();
    let started = Instant::now();
    attack(&mut attacker, &opened);
    let took = started.elapsed();
    let rss_attacked = server.rss();
    // Past the hold time (100 ms), with room for the server's timers.
    attacker.drain(Duration::from_millis(400));
    let rss_after = server.rss();
    let [data, frames, frame_data, allocated, _] = server.figures();
    let held = u64::from(conns) * held_per_conn;
    let bound = u64::from(conns) * allocated_bound(held_per_conn);
    let grown = rss_after.saturating_sub(rss_connected);
    println!(
        "{tag}: {conns} connections holding {held} bytes ({took:.1?} of sending): server RSS {:.1} MB ready, \
         {:.1} MB connected, {:.1} MB right after the attack, {:.1} MB after the hold time (+{:.1} MB for the data, \
         bound {:.1} MB + {:.1} MB slack); the stack's figures: {data} bytes held, {frames} frames kept \
         ({frame_data} bytes), {allocated} bytes allocated",
        mb(rss_ready),
        mb(rss_connected),
        mb(rss_attacked),
        mb(rss_after),
        mb(grown),
        mb(bound),
        mb(SLACK),
    );
    let within_hold = bound + u64::from(conns) * frames_bound(held_per_conn);
    assert!(
        rss_attacked.saturating_sub(rss_connected) <= within_hold + SLACK,
        "the server's RSS grew by {} bytes within the hold time, over the bound {within_hold} + {SLACK}",
        rss_attacked.saturating_sub(rss_connected)
    );
    assert!(grown <= bound + SLACK, "the server's RSS grew by {grown} bytes, over the bound {bound} + {SLACK}");
    // The stack's own figures: what it holds, within the same bounds.
    // (Otherwise the attack did not land, and tested nothing.)
    assert!(data * 10 >= held * 9, "the server holds only {data} of the {held} bytes sent");
    assert_eq!(frames, 0, "frames kept past the hold time");
    assert!(allocated <= bound, "the stack allocated {allocated} bytes, over the bound {bound}");
    // The ns is deleted after the server is gone.
    drop(server);
    drop(ns);
}

/// 600 connections each hold 28 bytes out of order, one byte per segment
/// behind a hole, as in the attack found: 16 800 bytes.
#[test]
fn out_of_order_bytes_over_600_connections_keep_the_server_small() {
    const SEGMENTS: usize = 28;
    pinning_attack("po", 93, 600, SEGMENTS as u64, |attacker, conns| {
        let mut missed = 0;
        for conn in conns {
            for k in 0..SEGMENTS {
                // Offset 0 is the hole; bytes at 2, 4, ... are held.
                attacker.send_pinned(conn, 2 + 2 * k, &[k as u8]);
                // The server answers each with a duplicate ACK: it has
                // taken the segment.
                if !attacker.await_ack(conn, |ack| ack == conn.data_seq) {
                    missed += 1;
                }
            }
        }
        println!("out of order: {missed} segments not acknowledged within a second");
    });
}

/// 20 connections each hold 250 KiB in order, unread, in segments of 1024
/// bytes: 5 000 KiB, as in the attack found.
#[test]
fn in_order_data_nobody_reads_over_20_connections_keeps_the_server_small() {
    const SEGMENTS: usize = 250;
    const SEGMENT: usize = 1024;
    pinning_attack("pi", 94, 20, (SEGMENTS * SEGMENT) as u64, |attacker, conns| {
        let payload: Vec<u8> = (0..SEGMENT).map(|i| i as u8).collect();
        let mut missed = 0;
        for conn in conns {
            for k in 0..SEGMENTS {
                attacker.send_pinned(conn, k * SEGMENT, &payload);
                // The server acknowledges every second full-sized
                // segment's worth (2 × 1460 bytes), so every third here.
                if k % 3 == 2 || k == SEGMENTS - 1 {
                    let end = conn.data_seq + (k + 1) * SEGMENT;
                    if !attacker.await_ack(conn, |ack| ack >= end) {
                        missed += 1;
                    }
                }
            }
        }
        println!("in order: {missed} acknowledgments not seen within a second");
    });
}
