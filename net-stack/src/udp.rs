//! UDP over an [`Ip`] layer.
//!
//! Reading list:
//! - RFC 768: the protocol; a zero checksum means "none computed".
//! - RFC 1122 §4.1.3: checksums are sent always and verified when present;
//!   port unreachable for datagrams nobody listens to.
//! - RFC 6335 §6: the dynamic (ephemeral) port range 49152–65535.
//!
//! Each bound socket queues received datagrams up to
//! [`UdpConfig::queue_datagrams`] datagrams and [`UdpConfig::queue_bytes`]
//! payload bytes; beyond that new datagrams are dropped and counted in
//! [`UdpSocketHandle::dropped`]. A queued payload of up to
//! [`COPIED_PAYLOAD`] bytes (every datagram of a 1500-byte link) is a copy,
//! not a slice of its frame: a device may cut frames from large shared
//! blocks, and a one-byte datagram nobody reads would otherwise keep a
//! whole block alive. Larger payloads come out of reassembly in a buffer
//! of their own, or are most of a jumbo frame, and are kept as they are.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::rc::Rc;
use core::cell::{Cell, RefCell};
use core::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use core::task::{Poll, Waker};

use bytes::Bytes;
use futures::future;
use mirage_types::ip::{Error as _, ErrorKind as IpErrorKind, Ip, IpPacket, IpProtocol, WriteOptions};
use mirage_types::random::Random;
use mirage_types::udp::{Datagram, ErrorKind, Udp, UdpError, UdpSocket};

use crate::ipv4::MAX_PAYLOAD;
use crate::wire::udp::UDP_HEADER_LEN;
use crate::wire::{UdpPacket, UdpRepr};

/// Received payloads up to this size are copied out of their frame before
/// they are queued (see the module documentation).
pub const COPIED_PAYLOAD: usize = 2048;

/// Largest UDP payload over IPv4 with a minimal header: 65 507 bytes.
pub const MAX_UDP_PAYLOAD: usize = MAX_PAYLOAD - UDP_HEADER_LEN;

/// The ephemeral port range (RFC 6335 §6).
pub const EPHEMERAL_PORTS: core::ops::RangeInclusive<u16> = 49152..=65535;

/// Receive-queue bounds of each socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpConfig {
    /// Datagrams queued per socket at most. Default 64.
    pub queue_datagrams: usize,
    /// Payload bytes queued per socket at most. Default 256 KiB.
    pub queue_bytes: usize,
}

impl Default for UdpConfig {
    fn default() -> UdpConfig {
        UdpConfig { queue_datagrams: 64, queue_bytes: 256 * 1024 }
    }
}

/// What [`UdpLayer::input`] did with a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UdpInput {
    /// Queued to a socket.
    Delivered,
    /// Malformed, bad checksum, or the socket's queue was full.
    Dropped,
    /// No socket is bound to the port and the datagram was unicast: the
    /// caller should answer with ICMP port unreachable.
    PortUnreachable,
}

/// Counters of a [`UdpLayer`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UdpStats {
    /// Datagrams queued to sockets.
    pub delivered: u64,
    /// Datagrams dropped as malformed or with a bad checksum.
    pub malformed: u64,
    /// Datagrams for ports nobody bound.
    pub no_socket: u64,
    /// Datagrams dropped because a socket's queue was full.
    pub queue_full: u64,
    /// Datagrams sent.
    pub sent: u64,
}

struct SocketState {
    local: SocketAddrV4,
    queue: RefCell<VecDeque<Datagram>>,
    queued_bytes: Cell<usize>,
    dropped: Cell<u64>,
    waker: RefCell<Option<Waker>>,
}

struct Shared<I, R> {
    ip: I,
    rng: R,
    config: UdpConfig,
    sockets: RefCell<BTreeMap<(Ipv4Addr, u16), Rc<SocketState>>>,
    stats: Cell<UdpStats>,
}

impl<I, R> Shared<I, R> {
    fn count(&self, f: impl FnOnce(&mut UdpStats)) {
        let mut stats = self.stats.get();
        f(&mut stats);
        self.stats.set(stats);
    }

    fn port_taken(&self, addr: Ipv4Addr, port: u16) -> bool {
        let sockets = self.sockets.borrow();
        if addr.is_unspecified() {
            sockets.range((Ipv4Addr::UNSPECIFIED, port)..=(Ipv4Addr::BROADCAST, port)).any(|((_, p), _)| *p == port)
        } else {
            sockets.contains_key(&(addr, port)) || sockets.contains_key(&(Ipv4Addr::UNSPECIFIED, port))
        }
    }
}

/// UDP over an IPv4 layer; a cheap handle (clones share the sockets).
pub struct UdpLayer<I, R> {
    shared: Rc<Shared<I, R>>,
}

impl<I, R> Clone for UdpLayer<I, R> {
    fn clone(&self) -> Self {
        UdpLayer { shared: self.shared.clone() }
    }
}

impl<I, R> core::fmt::Debug for UdpLayer<I, R> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("UdpLayer")
            .field("sockets", &self.shared.sockets.borrow().len())
            .field("stats", &self.shared.stats.get())
            .finish()
    }
}

impl<I: Ip<Addr = Ipv4Addr>, R: Random> UdpLayer<I, R> {
    /// A layer over `ip`; `rng` picks ephemeral ports.
    pub fn new(ip: I, rng: R, config: UdpConfig) -> UdpLayer<I, R> {
        UdpLayer { shared: Rc::new(Shared { ip, rng, config, sockets: RefCell::default(), stats: Cell::default() }) }
    }

    /// Counters so far.
    pub fn stats(&self) -> UdpStats {
        self.shared.stats.get()
    }

    /// Sockets bound now.
    pub fn socket_count(&self) -> usize {
        self.shared.sockets.borrow().len()
    }

    /// Handles a received UDP datagram: verifies its checksum (a zero
    /// checksum is accepted, RFC 768) and queues it to the socket bound to
    /// its destination (the exact address first, then the wildcard).
    pub fn input(&self, packet: &IpPacket<Ipv4Addr>) -> UdpInput {
        let shared = &self.shared;
        let parsed =
            UdpPacket::new_checked(&packet.payload[..]).and_then(|p| UdpRepr::parse(&p, packet.src, packet.dst));
        let Ok(repr) = parsed else {
            shared.count(|s| s.malformed += 1);
            return UdpInput::Dropped;
        };
        let socket = {
            let sockets = shared.sockets.borrow();
            sockets
                .get(&(packet.dst, repr.dst_port))
                .or_else(|| sockets.get(&(Ipv4Addr::UNSPECIFIED, repr.dst_port)))
                .cloned()
        };
        let Some(socket) = socket else {
            shared.count(|s| s.no_socket += 1);
            let unicast = !packet.dst.is_broadcast() && !packet.dst.is_multicast();
            return if unicast { UdpInput::PortUnreachable } else { UdpInput::Dropped };
        };
        let len = repr.payload_len;
        let full = socket.queue.borrow().len() >= shared.config.queue_datagrams
            || socket.queued_bytes.get() + len > shared.config.queue_bytes;
        if full {
            socket.dropped.set(socket.dropped.get() + 1);
            shared.count(|s| s.queue_full += 1);
            return UdpInput::Dropped;
        }
        let datagram = Datagram {
            src: SocketAddr::V4(SocketAddrV4::new(packet.src, repr.src_port)),
            dst: SocketAddr::V4(SocketAddrV4::new(packet.dst, repr.dst_port)),
            payload: if len <= COPIED_PAYLOAD {
                Bytes::copy_from_slice(&packet.payload[UDP_HEADER_LEN..UDP_HEADER_LEN + len])
            } else {
                packet.payload.slice(UDP_HEADER_LEN..UDP_HEADER_LEN + len)
            },
        };
        socket.queue.borrow_mut().push_back(datagram);
        socket.queued_bytes.set(socket.queued_bytes.get() + len);
        if let Some(w) = socket.waker.borrow_mut().take() {
            w.wake();
        }
        shared.count(|s| s.delivered += 1);
        UdpInput::Delivered
    }

    fn ephemeral_port(&self, addr: Ipv4Addr) -> Result<u16, UdpError> {
        let span = u32::from(EPHEMERAL_PORTS.end() - EPHEMERAL_PORTS.start()) + 1;
        let start = self.shared.rng.next_u64().map_err(|e| UdpError::Other {
            kind: ErrorKind::Other,
            message: alloc::format!("choosing an ephemeral port: {e}"),
        })? % u64::from(span);
        // Linear probing from a random start: at most `span` tries.
        for i in 0..span {
            let port = EPHEMERAL_PORTS.start() + ((start as u32 + i) % span) as u16;
            if !self.shared.port_taken(addr, port) {
                return Ok(port);
            }
        }
        Err(UdpError::AddressInUse(SocketAddr::V4(SocketAddrV4::new(addr, 0))))
    }
}

impl<I: Ip<Addr = Ipv4Addr>, R: Random> Udp for UdpLayer<I, R> {
    type Error = UdpError;
    type Socket = UdpSocketHandle<I, R>;

    /// Binds `local`. Port 0 picks a free port in [`EPHEMERAL_PORTS`];
    /// address 0.0.0.0 receives on every local address (and broadcasts).
    /// Fails with [`UdpError::AddressInUse`] if the address (or the
    /// wildcard on the same port) is bound, [`UdpError::AddressNotAvailable`]
    /// for an IPv6 address or an IPv4 address that is not ours.
    async fn bind(&self, local: SocketAddr) -> Result<UdpSocketHandle<I, R>, UdpError> {
        let SocketAddr::V4(local4) = local else {
            return Err(UdpError::AddressNotAvailable(local));
        };
        let addr = *local4.ip();
        if !addr.is_unspecified() && !self.shared.ip.addresses().contains(&addr) {
            return Err(UdpError::AddressNotAvailable(local));
        }
        let port = match local4.port() {
            0 => self.ephemeral_port(addr)?,
            port if self.shared.port_taken(addr, port) => return Err(UdpError::AddressInUse(local)),
            port => port,
        };
        let state = Rc::new(SocketState {
            local: SocketAddrV4::new(addr, port),
            queue: RefCell::default(),
            queued_bytes: Cell::new(0),
            dropped: Cell::new(0),
            waker: RefCell::new(None),
        });
        self.shared.sockets.borrow_mut().insert((addr, port), state.clone());
        Ok(UdpSocketHandle { shared: self.shared.clone(), state })
    }
}

/// A bound UDP socket of a [`UdpLayer`]; dropping it unbinds the port and
/// discards its queue.
pub struct UdpSocketHandle<I, R> {
    shared: Rc<Shared<I, R>>,
    state: Rc<SocketState>,
}

impl<I, R> core::fmt::Debug for UdpSocketHandle<I, R> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("UdpSocketHandle").field("local", &self.state.local).finish()
    }
}

impl<I, R> UdpSocketHandle<I, R> {
    /// Datagrams dropped because this socket's queue was full.
    pub fn dropped(&self) -> u64 {
        self.state.dropped.get()
    }

    /// Datagrams waiting in the queue.
    pub fn queued(&self) -> usize {
        self.state.queue.borrow().len()
    }
}

impl<I, R> Drop for UdpSocketHandle<I, R> {
    fn drop(&mut self) {
        let key = (*self.state.local.ip(), self.state.local.port());
        if let Ok(mut sockets) = self.shared.sockets.try_borrow_mut() {
            sockets.remove(&key);
        }
    }
}

impl<I: Ip<Addr = Ipv4Addr>, R: Random> UdpSocket for UdpSocketHandle<I, R> {
    type Error = UdpError;

    fn local_addr(&self) -> SocketAddr {
        SocketAddr::V4(self.state.local)
    }

    /// Sends one datagram, checksummed, from the bound address (or, bound
    /// to the wildcard, the address the route chooses; 0.0.0.0 for a
    /// broadcast while unconfigured). IP fragments it if needed.
    ///
    /// Errors: [`UdpError::TooLarge`] above [`MAX_UDP_PAYLOAD`]; kind
    /// [`ErrorKind::Unreachable`] with no route or no ARP answer; kind
    /// [`ErrorKind::AddressNotAvailable`] for an IPv6 destination; kind
    /// [`ErrorKind::Other`] if the link fails. Cancel-safe: until the IP
    /// layer copies the datagram nothing is sent.
    async fn send_to(&self, payload: &[u8], dst: SocketAddr) -> Result<(), UdpError> {
        let SocketAddr::V4(dst4) = dst else {
            return Err(UdpError::Other {
                kind: ErrorKind::AddressNotAvailable,
                message: alloc::format!("cannot send to {dst}: IPv6 is not supported"),
            });
        };
        if payload.len() > MAX_UDP_PAYLOAD {
            return Err(UdpError::TooLarge { len: payload.len(), max: MAX_UDP_PAYLOAD });
        }
        let ip = &self.shared.ip;
        let dst_ip = *dst4.ip();
        let bound = *self.state.local.ip();
        let src = if !bound.is_unspecified() {
            bound
        } else {
            match ip.source_for(dst_ip) {
                Some(src) => src,
                None if dst_ip.is_broadcast() => Ipv4Addr::UNSPECIFIED,
                None => {
                    return Err(UdpError::Other {
                        kind: ErrorKind::Unreachable,
                        message: alloc::format!("no route to {dst}"),
                    })
                }
            }
        };
        let repr = UdpRepr { src_port: self.state.local.port(), dst_port: dst4.port(), payload_len: payload.len() };
        let options = WriteOptions { src: Some(src), ..WriteOptions::default() };
        ip.write(dst_ip, IpProtocol::UDP, options, repr.buffer_len(), |buf| {
            repr.emit(&mut UdpPacket::new_unchecked(buf), src, dst_ip, |p| p.copy_from_slice(payload))
        })
        .await
        .map_err(|e| {
            let kind = match e.kind() {
                IpErrorKind::NoRoute | IpErrorKind::HostUnreachable => ErrorKind::Unreachable,
                IpErrorKind::TooLarge => ErrorKind::TooLarge,
                _ => ErrorKind::Other,
            };
            UdpError::Other { kind, message: alloc::format!("sending to {dst}: {e}") }
        })?;
        self.shared.count(|s| s.sent += 1);
        Ok(())
    }

    /// Waits for the next datagram. Never fails. Cancel-safe.
    async fn recv_from(&self) -> Result<Datagram, UdpError> {
        future::poll_fn(|cx| match self.state.queue.borrow_mut().pop_front() {
            Some(d) => {
                self.state.queued_bytes.set(self.state.queued_bytes.get() - d.payload.len());
                Poll::Ready(Ok(d))
            }
            None => {
                *self.state.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}
