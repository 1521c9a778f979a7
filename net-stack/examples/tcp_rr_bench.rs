//! TCP request/response with 1-byte messages between two of our sans-IO
//! TCP cores beside two smoltcp interfaces, in one process.
//!
//! ```text
//! cargo run --release -p mirage-net-stack --example tcp_rr_bench [-- [--seconds S] [--rounds N]]
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

use std::cell::RefCell;
use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant as WallInstant};

use bytes::Bytes;
use mirage_net_stack::tcp::{IsnGenerator, TcpConfig, TcpConnection, TcpListener, TcpState};
use mirage_net_stack::wire::{Ipv4Packet, Ipv4Repr, TcpPacket, TcpRepr};
use mirage_types::ip::IpProtocol;
use mirage_types::time::Instant;

const MTU: usize = 1500;
const IP_A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const IP_B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const WARM_UP: u64 = 1000;
/// Transactions per run at most, whatever `--seconds` says.
const MAX_TRANSACTIONS: u64 = 100_000_000;

/// Transactions and the wall time they took.
struct Run {
    transactions: u64,
    elapsed: Duration,
}

impl Run {
    fn per_second(&self) -> f64 {
        self.transactions as f64 / self.elapsed.as_secs_f64()
    }
}

// ---- Ours ----------------------------------------------------------------------

/// Emits everything `conn` has to send as IPv4 datagrams onto `wire`.
fn drain(conn: &mut TcpConnection, now: Instant, wire: &mut VecDeque<Vec<u8>>) {
    let (src, dst) = (ipv4(conn.local_addr()), ipv4(conn.remote_addr()));
    while let Some(seg) = conn.poll_transmit(now) {
        let tcp_len = seg.repr.buffer_len();
        let mut frame = vec![0u8; 20 + tcp_len];
        seg.emit_ipv4(src, dst, &mut frame[20..]);
        Ipv4Repr::new(src, dst, IpProtocol::TCP, tcp_len, 64).emit(&mut Ipv4Packet::new_unchecked(&mut frame[..]));
        wire.push_back(frame);
    }
}

fn ipv4(addr: SocketAddr) -> Ipv4Addr {
    match addr.ip() {
        IpAddr::V4(ip) => ip,
        IpAddr::V6(_) => unreachable!("the bench uses IPv4 addresses only"),
    }
}

/// Parses and verifies one datagram our side emitted.
fn parse(frame: &[u8]) -> (TcpRepr, Bytes, SocketAddr, SocketAddr) {
    let ip = Ipv4Packet::new_checked(frame).expect("our datagram parses");
    let ip_repr = Ipv4Repr::parse(&ip).expect("our IPv4 checksum is right");
    let tcp = TcpPacket::new_checked(ip.payload()).expect("our segment parses");
    let repr = TcpRepr::parse(&tcp, ip_repr.src_addr, ip_repr.dst_addr).expect("our TCP checksum is right");
    let payload = Bytes::copy_from_slice(&ip.payload()[repr.header_len()..]);
    let src = SocketAddr::new(IpAddr::V4(ip_repr.src_addr), repr.src_port);
    let dst = SocketAddr::new(IpAddr::V4(ip_repr.dst_addr), repr.dst_port);
    (repr, payload, src, dst)
}

/// Delivers every datagram on `wire` to `conn`, then lets it answer onto
/// `back`.
fn deliver(wire: &mut VecDeque<Vec<u8>>, conn: &mut TcpConnection, now: Instant, back: &mut VecDeque<Vec<u8>>) {
    while let Some(frame) = wire.pop_front() {
        let (repr, payload, _, _) = parse(&frame);
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
    let (mut to_b, mut to_a) = (VecDeque::new(), VecDeque::new());
    // Three passes complete a handshake; the bound is generous.
    for _ in 0..16 {
        drain(&mut a, now(), &mut to_b);
        while let Some(frame) = to_b.pop_front() {
            let (repr, payload, src, dst) = parse(&frame);
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

fn ours(duration: Duration) -> Run {
    let start = WallInstant::now();
    let now = || Instant::from_nanos(start.elapsed().as_nanos() as u64);
    let (mut client, mut server) = handshake(now);
    let (mut to_server, mut to_client) = (VecDeque::new(), VecDeque::new());
    let mut byte = [0u8; 1];
    let mut exchange = |n: u64| {
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
    };
    for n in 0..WARM_UP {
        exchange(n);
    }
    let began = WallInstant::now();
    let mut transactions = 0;
    while began.elapsed() < duration && transactions < MAX_TRANSACTIONS {
        exchange(transactions);
        transactions += 1;
    }
    Run { transactions, elapsed: began.elapsed() }
}

// ---- smoltcp -------------------------------------------------------------------

mod peer {
    use super::*;
    use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
    use smoltcp::phy::{Device, DeviceCapabilities, Medium};
    use smoltcp::socket::tcp;
    use smoltcp::time::Instant as SmolInstant;
    use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr};

    type Queue = Rc<RefCell<VecDeque<Vec<u8>>>>;

    /// One end of a two-queue link.
    pub struct QueueDevice {
        rx: Queue,
        tx: Queue,
    }

    pub struct Rx(Vec<u8>);

    pub struct Tx(Queue);

    impl smoltcp::phy::RxToken for Rx {
        fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
            f(&self.0)
        }
    }

    impl smoltcp::phy::TxToken for Tx {
        fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
            let mut frame = vec![0u8; len];
            let r = f(&mut frame);
            self.0.borrow_mut().push_back(frame);
            r
        }
    }

    impl Device for QueueDevice {
        type RxToken<'a> = Rx;
        type TxToken<'a> = Tx;

        fn receive(&mut self, _: SmolInstant) -> Option<(Rx, Tx)> {
            let frame = self.rx.borrow_mut().pop_front()?;
            Some((Rx(frame), Tx(self.tx.clone())))
        }

        fn transmit(&mut self, _: SmolInstant) -> Option<Tx> {
            Some(Tx(self.tx.clone()))
        }

        fn capabilities(&self) -> DeviceCapabilities {
            let mut caps = DeviceCapabilities::default();
            caps.medium = Medium::Ip;
            caps.max_transmission_unit = MTU;
            // Checksums: the default computes and verifies all of them.
            caps
        }
    }

    struct Host {
        iface: Interface,
        device: QueueDevice,
        sockets: SocketSet<'static>,
        handle: SocketHandle,
    }

    fn host(ip: Ipv4Addr, rx: Queue, tx: Queue, now: SmolInstant) -> Host {
        let mut device = QueueDevice { rx, tx };
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

    pub fn smoltcp(duration: Duration) -> Run {
        let start = WallInstant::now();
        let now = || SmolInstant::from_micros(start.elapsed().as_micros() as i64);
        let (ab, ba): (Queue, Queue) = Default::default();
        let mut client = host(IP_A, ba.clone(), ab.clone(), now());
        let mut server = host(IP_B, ab, ba, now());
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
        let mut exchange = |n: u64| {
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
        };
        for n in 0..WARM_UP {
            exchange(n);
        }
        let began = WallInstant::now();
        let mut transactions = 0;
        while began.elapsed() < duration && transactions < MAX_TRANSACTIONS {
            exchange(transactions);
            transactions += 1;
        }
        Run { transactions, elapsed: began.elapsed() }
    }
}

const USAGE: &str = "usage: tcp_rr_bench [--seconds S] [--rounds N]";

fn options() -> Result<(f64, usize), String> {
    let (mut seconds, mut rounds) = (2.0, 3);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
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
    Ok((seconds, rounds))
}

fn main() {
    let (seconds, rounds) = options().unwrap_or_else(|e| {
        eprintln!("{USAGE}: {e}");
        std::process::exit(2);
    });
    let duration = Duration::from_secs_f64(seconds);
    let (mut best_ours, mut best_smoltcp) = (0.0f64, 0.0f64);
    for _ in 0..rounds {
        best_ours = best_ours.max(ours(duration).per_second());
        best_smoltcp = best_smoltcp.max(peer::smoltcp(duration).per_second());
    }
    println!(
        "request/response, 1-byte messages, one connection, Nagle off, over an in-memory IPv4 link \
         (MTU {MTU}, checksums emitted and verified), {seconds} s per round, best of {rounds}"
    );
    println!("mirage-net-stack ⇄ mirage-net-stack  {best_ours:>10.0} transactions/s  {:>6.2} µs each", 1e6 / best_ours);
    println!(
        "smoltcp 0.12 ⇄ smoltcp 0.12          {best_smoltcp:>10.0} transactions/s  {:>6.2} µs each",
        1e6 / best_smoltcp
    );
    println!("ratio (ours / smoltcp): {:.2}x", best_ours / best_smoltcp);
}
