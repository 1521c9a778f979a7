//! The async TCP layer: mirage-types' [`Tcp`], [`TcpListener`] and
//! [`TcpFlow`] over the sans-IO core of this module's parent.
//!
//! Reading list (the core's files have the protocol's):
//! - RFC 9293 §3.10.7.1: a segment for no connection and no listener is
//!   answered with a reset.
//! - RFC 6335 §6: ephemeral ports are drawn from 49152–65535.
//! - RFC 2525 §2.17: closing with unread data resets the connection.
//!
//! # How it runs
//!
//! [`TcpLayer::input`] takes every received TCP datagram, synchronously:
//! by 4-tuple to a connection, else by port to a listener, else a reset.
//! User calls act on the connection at once too. Everything that may have
//! produced segments marks its connection *dirty*. [`TcpLayer::run`], one
//! task beside the stack's input loop, drives one sender per connection
//! and per listener (a future allocated once, when the connection is
//! created): it sends what its connection has to send when it is dirty,
//! and runs its timers at their deadline. Senders are independent, so one
//! waiting for ARP (a peer that has gone, a SYN-ACK to a spoofed address)
//! delays nobody else. `run` must be beside the input loop, not inside
//! it: sending may wait for ARP, whose answer only the input loop
//! receives.
//!
//! Segments are emitted straight into the device's transmit buffer by
//! [`Ip::write`]'s fill closure; the payload is lent from the connection's
//! send buffer, so nothing is copied or allocated on the way out. Received
//! payloads are slices of the frame's [`Bytes`].
//!
//! While a connection's sender waits inside `Ip::write` (ARP resolution, a
//! busy device), the connection is lent to it:
//! segments that arrive for it meanwhile are queued (at most
//! [`DEFERRED_SEGMENTS`], then dropped, as a congested link would) and user
//! calls wait.
//!
//! # Bounds
//!
//! Everything a peer can make us hold ([`TcpLimits`]):
//!
//! - the connection table (connecting, established, closing and TIME-WAIT
//!   connections, including those created by listeners and not yet
//!   accepted) holds at most [`TcpLimits::max_connections`]. When it is
//!   full, the oldest TIME-WAIT connection whose flow is gone is dropped
//!   early to make room (as Linux does beyond `tcp_max_tw_buckets`); if
//!   there is none, a SYN reaching a listener is **dropped without an
//!   answer** (the peer retries after its RTO, by which time there may be
//!   room; a reset would make it give up), and [`Tcp::connect`] fails with
//!   kind [`ErrorKind::ResourceExhausted`];
//! - each listener holds at most its `backlog` (clamped to
//!   [`TcpLimits::max_backlog`]) established connections waiting for
//!   `accept`, and [`TcpLimits::syn_backlog`] half-open ones; beyond that
//!   it answers with SYN cookies, which keep no state;
//! - at most [`TcpLimits::max_listeners`] listeners;
//! - per connection, the send and receive buffers of [`TcpConfig`] and
//!   [`DEFERRED_SEGMENTS`] queued segments;
//! - at most [`MAX_PENDING_RESETS`] resets for unknown connections queued
//!   for sending, and per listener at most
//!   [`super::MAX_PENDING_REPLIES`] answers (SYN-ACKs, resets) waiting to
//!   be sent (for ARP, typically); a new one replaces the one that has
//!   waited longest (a flood must not grow memory, nor starve the answers
//!   that can go out at once, nor keep a real client's answer, which waits
//!   milliseconds, from a slot that spoofed ones hold for seconds).

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use core::convert::Infallible;
use core::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use core::task::{Context, Poll, Waker};

use bytes::Bytes;
use futures::future::{self, AbortHandle, Either, FutureExt, LocalBoxFuture};
use futures::stream::{FuturesUnordered, StreamExt};
use mirage_types::flow::{ErrorKind as FlowErrorKind, Flow, FlowError, Shutdown};
use mirage_types::ip::{Error as _, ErrorKind as IpErrorKind, Ip, IpPacket, IpProtocol, WriteOptions};
use mirage_types::random::Random;
use mirage_types::tcp::{ErrorKind, Keepalive, Tcp, TcpError, TcpFlow, TcpListener};
use mirage_types::time::{Instant, Sleep};

use super::{
    reset_for_unknown, ConnectionError, ConnectionStats, IsnGenerator, RecvMemory, SendError, TcpConfig, TcpConnection,
    TcpListener as ListenerCore, TcpState, MAX_PENDING_REPLIES,
};
use crate::wire::tcp::TcpRepr;
use crate::wire::TcpPacket;

/// The ephemeral port range (RFC 6335 §6).
pub const EPHEMERAL_PORTS: core::ops::RangeInclusive<u16> = 49152..=65535;

/// Segments queued for a connection while its sender has it lent out;
/// more are dropped.
pub const DEFERRED_SEGMENTS: usize = 64;

/// Resets for segments that reached no connection, queued for sending at
/// most; more are dropped.
pub const MAX_PENDING_RESETS: usize = 64;

/// IPv4 header bytes without options: `TcpConfig::mtu` is the IP MTU, and
/// [`Ip::mtu`] gives the largest payload.
const IPV4_HEADER_LEN: usize = 20;

/// Bounds on what peers can make a [`TcpLayer`] hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpLimits {
    /// Connections in the table at most, in any state, counting those held
    /// by listeners. Default 1024.
    pub max_connections: usize,
    /// Listeners at most. Default 64.
    pub max_listeners: usize,
    /// The largest `backlog` a listener gets; larger requests are clamped.
    /// Default 1024.
    pub max_backlog: usize,
    /// Half-open connections per listener before SYN cookies take over.
    /// Default 128.
    pub syn_backlog: usize,
}

impl Default for TcpLimits {
    fn default() -> TcpLimits {
        TcpLimits { max_connections: 1024, max_listeners: 64, max_backlog: 1024, syn_backlog: 128 }
    }
}

/// Counters of a [`TcpLayer`] since it was created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpStats {
    /// Segments received with a valid checksum.
    pub segments_in: u64,
    /// Segments dropped as malformed or with a bad checksum.
    pub malformed: u64,
    /// Segments sent (including resets and listeners' answers).
    pub segments_out: u64,
    /// Segments the IP layer failed to send (no route, no ARP answer, link
    /// failure); the connection retransmits them.
    pub send_errors: u64,
    /// Resets sent for segments that reached no connection or listener.
    pub resets_sent: u64,
    /// Resets not sent because [`MAX_PENDING_RESETS`] were queued.
    pub resets_dropped: u64,
    /// Segments dropped because [`DEFERRED_SEGMENTS`] were queued for a
    /// connection that was busy sending.
    pub deferred_dropped: u64,
    /// Listener answers abandoned while waiting (for ARP, typically) to
    /// make room for a newer one, [`MAX_PENDING_REPLIES`] being in wait.
    pub replies_dropped: u64,
    /// SYNs to a listener dropped because the connection table was full.
    pub syns_dropped_table_full: u64,
    /// Segments with both SYN and FIN set dropped at a listener (they
    /// open nothing; see the listener's notes).
    pub syn_fin_dropped: u64,
    /// TIME-WAIT connections dropped early to make room.
    pub time_wait_evicted: u64,
}

/// What a [`TcpLayer`] holds now, against its [`TcpLimits`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpUsage {
    /// Connections in the table (any state, owned by a flow or not).
    pub connections: usize,
    /// Of those, connections in TIME-WAIT.
    pub time_wait: usize,
    /// Listeners open.
    pub listeners: usize,
    /// Half-open connections held by listeners.
    pub half_open: usize,
    /// Established connections waiting in listeners for `accept`.
    pub accept_queue: usize,
    /// What the receive sides of the connections hold, summed, those
    /// held by listeners included ([`TcpConnection::recv_memory`];
    /// connections lent to their sender at the moment are not counted).
    pub recv: RecvMemory,
}

/// The key of the connection table: (local, remote).
type Key = (SocketAddrV4, SocketAddrV4);

/// One connection of the table, shared by the table, its flow, and the
/// sender while it sends.
struct ConnSlot {
    local: SocketAddrV4,
    remote: SocketAddrV4,
    /// `None` while its sender has it lent out.
    conn: RefCell<Option<Box<TcpConnection>>>,
    /// Segments that arrived while it was lent out.
    deferred: RefCell<VecDeque<(TcpRepr, Bytes)>>,
    /// User calls that came while it was lent out and cannot wait (drop,
    /// the option setters): applied when it comes back.
    pending_abort: Cell<bool>,
    pending_nodelay: Cell<Option<bool>>,
    pending_keepalive: Cell<Option<Option<Keepalive>>>,
    read_waker: RefCell<Option<Waker>>,
    write_waker: RefCell<Option<Waker>>,
    /// A flow (or a connect in progress) owns the connection; without one,
    /// a closed connection is removed from the table.
    has_flow: Cell<bool>,
    /// `shutdown(Read)`: received data is read and thrown away, so the
    /// peer is not stalled by a window nobody opens.
    discard_input: Cell<bool>,
    /// Something may have changed that calls for sending.
    dirty: Cell<bool>,
    /// The sender, waiting for `dirty` or its deadline.
    sender: RefCell<Option<Waker>>,
    /// Sending the SYN failed for lack of a route or an ARP answer.
    unreachable: Cell<bool>,
    /// The connection's `poll_deadline` when it was last handled.
    deadline: Cell<Option<Instant>>,
    /// Its state when last handled (for usage counts while it is lent out).
    state: Cell<TcpState>,
}

impl ConnSlot {
    fn new(conn: TcpConnection, local: SocketAddrV4, remote: SocketAddrV4) -> ConnSlot {
        ConnSlot {
            local,
            remote,
            state: Cell::new(conn.state()),
            deadline: Cell::new(conn.poll_deadline()),
            conn: RefCell::new(Some(Box::new(conn))),
            deferred: RefCell::default(),
            pending_abort: Cell::new(false),
            pending_nodelay: Cell::new(None),
            pending_keepalive: Cell::new(None),
            read_waker: RefCell::new(None),
            write_waker: RefCell::new(None),
            has_flow: Cell::new(true),
            discard_input: Cell::new(false),
            dirty: Cell::new(false),
            sender: RefCell::new(None),
            unreachable: Cell::new(false),
        }
    }

    /// Runs `f` on the connection unless it is lent out.
    fn with<R>(&self, f: impl FnOnce(&mut TcpConnection) -> R) -> Option<R> {
        self.conn.borrow_mut().as_deref_mut().map(f)
    }

    fn wake_flow(&self) {
        for waker in [&self.read_waker, &self.write_waker] {
            if let Some(w) = waker.borrow_mut().take() {
                w.wake();
            }
        }
    }
}

/// Completes once `dirty` is set, with the task registered in `sender`
/// to be woken when it is.
fn touched<'a>(
    dirty: &'a Cell<bool>,
    sender: &'a RefCell<Option<Waker>>,
) -> impl core::future::Future<Output = ()> + 'a {
    future::poll_fn(move |cx| {
        if dirty.get() {
            return Poll::Ready(());
        }
        register(sender, cx);
        Poll::Pending
    })
}

fn register(slot: &RefCell<Option<Waker>>, cx: &Context<'_>) {
    let mut slot = slot.borrow_mut();
    if !slot.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
        *slot = Some(cx.waker().clone());
    }
}

/// One listener, shared by the listener table, its handle and the sender.
struct ListenerSlot {
    local: SocketAddrV4,
    core: RefCell<ListenerCore>,
    /// Tasks waiting in `accept` (deduplicated; several may accept).
    acceptors: RefCell<Vec<Waker>>,
    /// Its handle is alive; once not, the sender sends the resets of the
    /// connections it held, then ends.
    open: Cell<bool>,
    dirty: Cell<bool>,
    sender: RefCell<Option<Waker>>,
    deadline: Cell<Option<Instant>>,
}

impl ListenerSlot {
    fn wake_acceptors(&self) {
        for w in self.acceptors.borrow_mut().drain(..) {
            w.wake();
        }
    }
}

struct Shared<I, P> {
    ip: I,
    platform: P,
    config: TcpConfig,
    limits: TcpLimits,
    isn: IsnGenerator,
    conns: RefCell<BTreeMap<Key, Rc<ConnSlot>>>,
    listeners: RefCell<BTreeMap<u16, Rc<ListenerSlot>>>,
    /// Connections and listeners whose sender `run` has not started yet.
    new_senders: RefCell<Vec<Sender>>,
    /// `run`, waiting for new senders.
    run_waker: RefCell<Option<Waker>>,
    resets: RefCell<VecDeque<(Ipv4Addr, Ipv4Addr, TcpRepr)>>,
    /// The sender of resets, waiting for some.
    reset_waker: RefCell<Option<Waker>>,
    stats: Cell<TcpStats>,
}

/// What a sender sends for.
enum Sender {
    Connection(Rc<ConnSlot>),
    Listener(Rc<ListenerSlot>),
}

fn wake(waker: &RefCell<Option<Waker>>) {
    if let Some(w) = waker.borrow_mut().take() {
        w.wake();
    }
}

impl<I, P> Shared<I, P> {
    fn count(&self, f: impl FnOnce(&mut TcpStats)) {
        let mut stats = self.stats.get();
        f(&mut stats);
        self.stats.set(stats);
    }

    /// Has the connection's sender send what it has to send (and wake its
    /// flow).
    fn touch(&self, slot: &ConnSlot) {
        slot.dirty.set(true);
        wake(&slot.sender);
    }

    fn touch_listener(&self, slot: &ListenerSlot) {
        slot.dirty.set(true);
        wake(&slot.sender);
    }

    /// Hands a new connection or listener to `run`, which starts its
    /// sender.
    fn adopt(&self, sender: Sender) {
        self.new_senders.borrow_mut().push(sender);
        wake(&self.run_waker);
    }

    fn queue_reset(&self, src: Ipv4Addr, dst: Ipv4Addr, repr: TcpRepr) {
        let mut resets = self.resets.borrow_mut();
        if resets.len() < MAX_PENDING_RESETS {
            resets.push_back((src, dst, repr));
            drop(resets);
            wake(&self.reset_waker);
        } else {
            self.count(|s| s.resets_dropped += 1);
        }
    }

    /// Connections held by listeners (half-open and not yet accepted).
    fn listener_held(&self) -> usize {
        self.listeners
            .borrow()
            .values()
            .map(|l| l.core.try_borrow().map_or(0, |c| c.half_open_len() + c.ready_len()))
            .sum()
    }

    fn table_full(&self) -> bool {
        self.conns.borrow().len() + self.listener_held() >= self.limits.max_connections
    }

    /// Makes room for one more connection if the table is full, by dropping
    /// a TIME-WAIT connection nobody owns; false if there is no room.
    fn make_room(&self) -> bool {
        if !self.table_full() {
            return true;
        }
        let victim = self
            .conns
            .borrow()
            .iter()
            .filter(|(_, s)| !s.has_flow.get() && s.state.get() == TcpState::TimeWait)
            .min_by_key(|(_, s)| s.deadline.get())
            .map(|(k, _)| *k);
        let Some(key) = victim else { return false };
        if let Some(slot) = self.conns.borrow_mut().remove(&key) {
            // Its sender sees it gone from the table and ends.
            self.touch(&slot);
        }
        self.count(|s| s.time_wait_evicted += 1);
        true
    }
}

/// TCP over an IPv4 layer; a cheap handle (clones share the connections).
///
/// # Bounds
///
/// The connection table holds at most [`TcpLimits::max_connections`]
/// connections in any state, counting those held by listeners. When full,
/// an unowned TIME-WAIT connection is dropped early to make room; if there
/// is none, a SYN reaching a listener is dropped without an answer (the
/// peer retries; a reset would make it give up) and [`Tcp::connect`] fails
/// with kind [`ErrorKind::ResourceExhausted`]. Each listener holds at most
/// its backlog (clamped to [`TcpLimits::max_backlog`]) of established
/// connections and [`TcpLimits::syn_backlog`] half-open ones, then answers
/// with SYN cookies. Per connection: the buffers of [`TcpConfig`] and
/// [`DEFERRED_SEGMENTS`] segments queued while it sends. At most
/// [`MAX_PENDING_RESETS`] resets and, per listener, [`MAX_PENDING_REPLIES`]
/// answers waiting for ARP.
///
/// Feed it received TCP datagrams with [`TcpLayer::input`] and run
/// [`TcpLayer::run`] beside the input loop; [`crate::stack::NetStack`]
/// does both.
pub struct TcpLayer<I, P> {
    shared: Rc<Shared<I, P>>,
}

impl<I, P> Clone for TcpLayer<I, P> {
    fn clone(&self) -> Self {
        TcpLayer { shared: self.shared.clone() }
    }
}

impl<I, P> core::fmt::Debug for TcpLayer<I, P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TcpLayer")
            .field("connections", &self.shared.conns.borrow().len())
            .field("listeners", &self.shared.listeners.borrow().len())
            .field("stats", &self.shared.stats.get())
            .finish()
    }
}

fn other(kind: ErrorKind, message: String) -> TcpError {
    TcpError::Other { kind, message }
}

fn v4(addr: SocketAddr) -> Option<SocketAddrV4> {
    match addr {
        SocketAddr::V4(a) => Some(a),
        SocketAddr::V6(_) => None,
    }
}

impl<I: Ip<Addr = Ipv4Addr>, P: Sleep + Random> TcpLayer<I, P> {
    /// A layer over `ip`, taking time and randomness (ISN and cookie keys,
    /// ephemeral ports) from `platform`. Every connection starts from
    /// `config` (its `mtu` lowered to the IP layer's when that is smaller);
    /// `limits` bounds what peers can make it hold. Fails only if the
    /// random source does.
    pub fn new(
        ip: I,
        platform: P,
        config: TcpConfig,
        limits: TcpLimits,
    ) -> Result<TcpLayer<I, P>, mirage_types::random::RandomError> {
        let mut key = [0u8; 16];
        platform.fill(&mut key)?;
        Ok(TcpLayer {
            shared: Rc::new(Shared {
                ip,
                platform,
                config,
                limits,
                isn: IsnGenerator::new(key),
                conns: RefCell::default(),
                listeners: RefCell::default(),
                new_senders: RefCell::default(),
                run_waker: RefCell::new(None),
                resets: RefCell::default(),
                reset_waker: RefCell::new(None),
                stats: Cell::default(),
            }),
        })
    }

    /// Counters so far.
    pub fn stats(&self) -> TcpStats {
        self.shared.stats.get()
    }

    /// What the layer holds now.
    pub fn usage(&self) -> TcpUsage {
        let conns = self.shared.conns.borrow();
        let listeners = self.shared.listeners.borrow();
        let (mut half_open, mut accept_queue) = (0, 0);
        for l in listeners.values() {
            if let Ok(core) = l.core.try_borrow() {
                half_open += core.half_open_len();
                accept_queue += core.ready_len();
            }
        }
        let mut recv = RecvMemory::default();
        for slot in conns.values() {
            recv += slot.with(|c| c.recv_memory()).unwrap_or_default();
        }
        for l in listeners.values() {
            if let Ok(core) = l.core.try_borrow() {
                recv += core.recv_memory();
            }
        }
        TcpUsage {
            recv,
            connections: conns.len(),
            time_wait: conns.values().filter(|s| s.state.get() == TcpState::TimeWait).count(),
            listeners: listeners.len(),
            half_open,
            accept_queue,
        }
    }

    fn config_toward(&self, dst: Ipv4Addr) -> TcpConfig {
        let mut config = self.shared.config.clone();
        config.mtu = config.mtu.min(self.shared.ip.mtu(dst) + IPV4_HEADER_LEN);
        config
    }

    /// Handles a received TCP datagram: checks it (checksum over the
    /// pseudo-header) and hands it to its connection, else to the listener
    /// on its port, else answers with a reset (RFC 9293 §3.10.7.1). Never
    /// waits: answers go out from [`TcpLayer::run`].
    pub fn input(&self, packet: &IpPacket<Ipv4Addr>) {
        let shared = &self.shared;
        let parsed = TcpPacket::new_checked(&packet.payload[..])
            .and_then(|p| TcpRepr::parse(&p, packet.src, packet.dst).map(|r| (p.header_len(), r)));
        let Ok((header_len, repr)) = parsed else {
            shared.count(|s| s.malformed += 1);
            return;
        };
        let Some(payload) = packet.payload.get(header_len..header_len + repr.payload_len).map(|_| {
            // Checked just above, so the slice is in range.
            packet.payload.slice(header_len..header_len + repr.payload_len)
        }) else {
            shared.count(|s| s.malformed += 1);
            return;
        };
        shared.count(|s| s.segments_in += 1);
        let now = shared.platform.now();
        let local = SocketAddrV4::new(packet.dst, repr.dst_port);
        let remote = SocketAddrV4::new(packet.src, repr.src_port);
        let slot = shared.conns.borrow().get(&(local, remote)).cloned();
        // A connection that is CLOSED (its flow not yet dropped) answers
        // as if it were not there (RFC 9293 §3.10.7.1).
        let slot = slot.filter(|s| s.with(|c| c.state() != TcpState::Closed).unwrap_or(true));
        if let Some(slot) = slot {
            log::trace!(
                "tcp {local} <- {remote}: seq {} ack {} len {} {:?} win {} sack {:?}",
                repr.seq_number.0,
                repr.ack_number.0,
                repr.payload_len,
                repr.flags,
                repr.window_len,
                repr.options.sack_blocks
            );
            let delivered = slot.with(|c| c.handle_segment(now, &repr, payload.clone())).is_some();
            if !delivered {
                let mut deferred = slot.deferred.borrow_mut();
                if deferred.len() < DEFERRED_SEGMENTS {
                    // A copy, so a queued segment keeps no frame alive:
                    // the sender may wait for ARP for seconds.
                    deferred.push_back((repr, Bytes::copy_from_slice(&payload)));
                } else {
                    shared.count(|s| s.deferred_dropped += 1);
                }
            }
            shared.touch(&slot);
            slot.wake_flow();
            return;
        }
        // TCP is unicast only: nothing answers a broadcast or multicast
        // segment (RFC 9293 MUST-57 for SYNs), nor one whose source is no
        // single host (RFC 1122 §4.2.3.10: "ignored either by TCP or by the
        // IP layer"; ours drops and counts them, but this layer may sit on
        // another). Our own addresses are checked only on this path, which
        // a flood reaches at most once per segment.
        if packet.dst.is_broadcast()
            || packet.dst.is_multicast()
            || !crate::ipv4::is_host_address(packet.src)
            || !shared.ip.addresses().contains(&packet.dst)
        {
            return;
        }
        let listener = shared.listeners.borrow().get(&repr.dst_port).cloned();
        if let Some(listener) = listener.filter(|l| l.local.ip().is_unspecified() || *l.local.ip() == packet.dst) {
            if repr.flags.syn() && repr.flags.fin() {
                // Opens nothing (the listener core ignores it too); counted
                // here.
                shared.count(|s| s.syn_fin_dropped += 1);
                return;
            }
            let opens = repr.flags.syn() && !repr.flags.ack() && !repr.flags.rst();
            if opens && shared.table_full() && !shared.make_room() {
                shared.count(|s| s.syns_dropped_table_full += 1);
                return;
            }
            let ready = {
                let mut core = listener.core.borrow_mut();
                core.handle_segment(now, SocketAddr::V4(local), SocketAddr::V4(remote), &repr, payload);
                core.ready_len()
            };
            shared.touch_listener(&listener);
            if ready > 0 {
                listener.wake_acceptors();
            }
            return;
        }
        if let Some(rst) = reset_for_unknown(&repr) {
            shared.queue_reset(packet.dst, packet.src, rst);
        }
    }

    /// Sends what connections and listeners have to send and runs their
    /// timers, forever: it drives one sender per connection and listener,
    /// and one for resets. Run it as one task beside the stack's input
    /// loop (not inside it: sending may wait for ARP);
    /// [`crate::stack::NetStack::run`] does.
    pub async fn run(&self) -> Infallible {
        let shared = &self.shared;
        let mut senders: FuturesUnordered<LocalBoxFuture<'_, ()>> = FuturesUnordered::new();
        senders.push(Box::pin(self.send_resets()));
        // Each pass starts the senders of new connections and listeners,
        // then waits until one ends or new ones come; the reset sender
        // never ends, so `senders` is never empty.
        loop {
            for sender in shared.new_senders.borrow_mut().drain(..) {
                senders.push(match sender {
                    Sender::Connection(slot) => Box::pin(self.send_connection(slot)),
                    Sender::Listener(slot) => Box::pin(self.send_listener(slot)),
                });
            }
            let new = core::pin::pin!(future::poll_fn(|cx| {
                if !shared.new_senders.borrow().is_empty() {
                    return Poll::Ready(());
                }
                register(&shared.run_waker, cx);
                Poll::Pending
            }));
            match future::select(senders.next(), new).await {
                Either::Left(_) | Either::Right(_) => {}
            }
        }
    }

    async fn send_resets(&self) {
        let shared = &self.shared;
        // Each pass sends one reset or waits for one.
        loop {
            let reset = shared.resets.borrow_mut().pop_front();
            match reset {
                Some((src, dst, repr)) => {
                    if self.send_header(src, dst, &repr).await {
                        shared.count(|s| s.resets_sent += 1);
                    }
                }
                None => {
                    future::poll_fn(|cx| {
                        if shared.resets.borrow().is_empty() {
                            register(&shared.reset_waker, cx);
                            Poll::Pending
                        } else {
                            Poll::Ready(())
                        }
                    })
                    .await
                }
            }
        }
    }

    /// Waits until `dirty` is set or `deadline` passes.
    async fn wait_dirty(&self, dirty: &Cell<bool>, sender: &RefCell<Option<Waker>>, deadline: Option<Instant>) {
        let touched = core::pin::pin!(touched(dirty, sender));
        let timer = core::pin::pin!(async {
            match deadline {
                Some(at) => self.shared.platform.sleep_until(at).await,
                None => future::pending().await,
            }
        });
        match future::select(touched, timer).await {
            Either::Left(_) | Either::Right(_) => {}
        }
    }

    /// The sender of one connection: until the connection leaves the
    /// table, sends its segments when it is touched and runs its timers.
    async fn send_connection(&self, slot: Rc<ConnSlot>) {
        let shared = &self.shared;
        let key = (slot.local, slot.remote);
        // The timer and the deadline it is armed for. It is re-armed only
        // for an earlier deadline: one that fires early costs one more
        // pass, which finds nothing due and re-arms, while re-arming at
        // every change would create and cancel a platform timer (and read
        // the clock) twice per request/response exchange, whose deadlines
        // (delayed ACK, RTO) move later at each segment.
        let mut timer: Option<(Instant, LocalBoxFuture<'_, ()>)> = None;
        // Each pass handles one wake-up; it ends when the connection is
        // closed and unowned (removed below) or was evicted.
        loop {
            slot.dirty.set(false);
            let now = shared.platform.now();
            if slot.deadline.get().is_some_and(|d| d <= now) {
                slot.with(|c| c.handle_timeout(now));
            }
            self.flush_connection(&slot).await;
            let closed = slot.with(|c| c.is_closed()).unwrap_or(false);
            let done = {
                let mut conns = shared.conns.borrow_mut();
                let ours = conns.get(&key).is_some_and(|s| Rc::ptr_eq(s, &slot));
                if ours && closed && !slot.has_flow.get() {
                    conns.remove(&key);
                }
                !ours || (closed && !slot.has_flow.get())
            };
            if done {
                return;
            }
            if let Some(deadline) = slot.deadline.get() {
                if timer.as_ref().is_none_or(|(armed, _)| deadline < *armed) {
                    timer = Some((deadline, shared.platform.sleep_until(deadline).boxed_local()));
                }
            }
            let touched = touched(&slot.dirty, &slot.sender);
            match &mut timer {
                Some((_, sleep)) => {
                    if let Either::Right(_) = future::select(core::pin::pin!(touched), sleep).await {
                        timer = None;
                    }
                }
                None => touched.await,
            }
        }
    }

    /// The sender of one listener: its SYN-ACKs, resets and the ACKs of
    /// the connections it holds, each sent beside the others (one may wait
    /// for ARP), at most [`MAX_PENDING_REPLIES`] waiting at once: a new one
    /// takes the place of the one that has waited longest. An answer to a
    /// real client waits for its resolution milliseconds, one to a spoofed
    /// source for seconds, so refusing new answers instead would leave
    /// every slot to a flood's.
    async fn send_listener(&self, slot: Rc<ListenerSlot>) {
        let shared = &self.shared;
        // Each yields its id when sent, failed or abandoned.
        let mut replies: FuturesUnordered<LocalBoxFuture<'_, u64>> = FuturesUnordered::new();
        // The answers still waiting, oldest first, and how to abandon each.
        let mut waiting: VecDeque<(u64, AbortHandle)> = VecDeque::new();
        let mut next_id = 0u64;
        // Each pass handles one wake-up; it ends once the listener is
        // closed and its last answers are sent.
        loop {
            slot.dirty.set(false);
            let now = shared.platform.now();
            if slot.deadline.get().is_some_and(|d| d <= now) {
                slot.core.borrow_mut().handle_timeout(now);
            }
            // Each pass takes one answer; the listener bounds how many it
            // holds.
            loop {
                let transmit = slot.core.borrow_mut().poll_transmit(now);
                let Some(t) = transmit else { break };
                let (Some(local), Some(remote)) = (v4(t.local), v4(t.remote)) else { continue };
                let mut reply: LocalBoxFuture<'_, ()> = Box::pin(async move {
                    self.send_header(*local.ip(), *remote.ip(), &t.repr).await;
                });
                // Most answers go out at once (the peer's MAC is known).
                // Only those that must wait (ARP for a spoofed source) take
                // a bounded slot, so a flood of them cannot starve the
                // answers to real clients.
                if (&mut reply).now_or_never().is_some() {
                    continue;
                }
                if waiting.len() >= MAX_PENDING_REPLIES {
                    // Its future ends (and lets go of its ARP wait) at the
                    // next poll of `replies`.
                    if let Some((_, oldest)) = waiting.pop_front() {
                        oldest.abort();
                    }
                    shared.count(|s| s.replies_dropped += 1);
                }
                let (reply, handle) = future::abortable(reply);
                let id = next_id;
                next_id += 1;
                waiting.push_back((id, handle));
                replies.push(Box::pin(reply.map(move |_| id)));
            }
            slot.deadline.set(slot.core.borrow().poll_deadline());
            if slot.core.borrow().ready_len() > 0 {
                slot.wake_acceptors();
            }
            if !slot.open.get() {
                // Each pass waits for one answer to go out.
                while replies.next().await.is_some() {}
                return;
            }
            let wait = core::pin::pin!(self.wait_dirty(&slot.dirty, &slot.sender, slot.deadline.get()));
            let reply = core::pin::pin!(async {
                if replies.is_empty() {
                    future::pending::<()>().await;
                }
                replies.next().await
            });
            match future::select(wait, reply).await {
                Either::Right((Some(done), _)) => waiting.retain(|(id, _)| *id != done),
                Either::Left(_) | Either::Right(_) => {}
            }
        }
    }

    async fn send_header(&self, src: Ipv4Addr, dst: Ipv4Addr, repr: &TcpRepr) -> bool {
        let options = WriteOptions { src: Some(src), ..WriteOptions::default() };
        let result = self
            .shared
            .ip
            .write(dst, IpProtocol::TCP, options, repr.buffer_len(), |buf| {
                repr.emit(&mut TcpPacket::new_unchecked(buf), src, dst, |_| ())
            })
            .await;
        self.shared.count(|s| match result {
            Ok(()) => s.segments_out += 1,
            Err(_) => s.send_errors += 1,
        });
        result.is_ok()
    }

    /// Sends a connection's segments, with the connection lent out of its
    /// slot for the duration (see the module documentation).
    async fn flush_connection(&self, slot: &ConnSlot) {
        let shared = &self.shared;
        let Some(mut conn) = slot.conn.borrow_mut().take() else { return };
        let (src, dst) = (*slot.local.ip(), *slot.remote.ip());
        let mut discard = [0u8; 1024];
        // Each pass applies what came while the connection was lent out,
        // then sends one segment; it ends when the connection has nothing
        // more to send, which the window and buffers bound.
        loop {
            let now = shared.platform.now();
            if let Some(nodelay) = slot.pending_nodelay.take() {
                conn.set_nodelay(nodelay);
            }
            if let Some(keepalive) = slot.pending_keepalive.take() {
                conn.set_keepalive(keepalive);
            }
            if slot.pending_abort.take() {
                conn.abort();
            }
            let deferred = core::mem::take(&mut *slot.deferred.borrow_mut());
            for (repr, payload) in deferred {
                conn.handle_segment(now, &repr, payload);
            }
            if slot.discard_input.get() {
                while conn.recv(&mut discard) > 0 {}
            }
            let Some(segment) = conn.poll_transmit(now) else { break };
            log::trace!(
                "tcp {} -> {}: seq {} ack {} len {} {:?} win {}",
                slot.local,
                slot.remote,
                segment.repr.seq_number.0,
                segment.repr.ack_number.0,
                segment.repr.payload_len,
                segment.repr.flags,
                segment.repr.window_len,
            );
            let syn = segment.repr.flags.syn() && !segment.repr.flags.ack();
            let options = WriteOptions { src: Some(src), ..WriteOptions::default() };
            let result = shared
                .ip
                .write(dst, IpProtocol::TCP, options, segment.repr.buffer_len(), |buf| segment.emit_ipv4(src, dst, buf))
                .await;
            match result {
                Ok(()) => shared.count(|s| s.segments_out += 1),
                Err(e) => {
                    shared.count(|s| s.send_errors += 1);
                    log::debug!("tcp {} -> {}: sending a segment failed: {e}", slot.local, slot.remote);
                    // A SYN nobody can be reached for fails the connect at
                    // once instead of after the connect timeout.
                    if syn && matches!(e.kind(), IpErrorKind::NoRoute | IpErrorKind::HostUnreachable) {
                        slot.unreachable.set(true);
                        conn.abort();
                    }
                }
            }
        }
        log::trace!(
            "tcp {} -> {}: {} cwnd {} ssthresh {} rto {:?} queued {} deadline {:?} now {:?}",
            slot.local,
            slot.remote,
            conn.state(),
            conn.cwnd(),
            conn.ssthresh(),
            conn.rto(),
            conn.send_queued(),
            conn.poll_deadline(),
            shared.platform.now()
        );
        slot.state.set(conn.state());
        slot.deadline.set(conn.poll_deadline());
        *slot.conn.borrow_mut() = Some(conn);
        slot.wake_flow();
    }

    fn ephemeral_port(&self, local: Ipv4Addr, remote: SocketAddrV4) -> Result<u16, TcpError> {
        let span = u32::from(EPHEMERAL_PORTS.end() - EPHEMERAL_PORTS.start()) + 1;
        let start = self
            .shared
            .platform
            .next_u64()
            .map_err(|e| other(ErrorKind::Other, format!("choosing an ephemeral port: {e}")))?
            % u64::from(span);
        let conns = self.shared.conns.borrow();
        let listeners = self.shared.listeners.borrow();
        // Linear probing from a random start: at most `span` tries. A port
        // is free toward `remote` if no connection uses the 4-tuple and no
        // listener the port.
        for i in 0..span {
            let port = EPHEMERAL_PORTS.start() + ((start as u32 + i) % span) as u16;
            if !listeners.contains_key(&port) && !conns.contains_key(&(SocketAddrV4::new(local, port), remote)) {
                return Ok(port);
            }
        }
        Err(other(ErrorKind::ResourceExhausted, format!("no free ephemeral port from {local} toward {remote}")))
    }
}

impl<I: Ip<Addr = Ipv4Addr>, P: Sleep + Random> Tcp for TcpLayer<I, P> {
    type Error = TcpError;
    type Flow = TcpStream<I, P>;
    type Listener = TcpListenerHandle<I, P>;

    /// Opens a connection to `remote` from the address the route chooses
    /// and an ephemeral port, and waits until it is established.
    ///
    /// Errors: [`TcpError::ConnectionRefused`] when the peer answers with a
    /// reset; [`TcpError::TimedOut`] after [`TcpConfig::connect_timeout`];
    /// [`TcpError::Unreachable`] without a route, or when ARP gets no
    /// answer for the SYN; kind [`ErrorKind::InvalidInput`] for port 0 or
    /// an unspecified address; kind [`ErrorKind::AddressNotAvailable`] for
    /// IPv6; kind [`ErrorKind::ResourceExhausted`] when the connection
    /// table is full or no ephemeral port is free. Cancel-safe: dropping
    /// the future abandons the attempt (a reset goes out if the peer knows
    /// of it).
    async fn connect(&self, remote: SocketAddr) -> Result<TcpStream<I, P>, TcpError> {
        let Some(remote4) = v4(remote) else {
            return Err(other(
                ErrorKind::AddressNotAvailable,
                format!("cannot connect to {remote}: IPv6 is not supported"),
            ));
        };
        if remote4.port() == 0 || remote4.ip().is_unspecified() {
            return Err(other(ErrorKind::InvalidInput, format!("cannot connect to {remote}: no such destination")));
        }
        if remote4.ip().is_broadcast() || remote4.ip().is_multicast() {
            return Err(other(ErrorKind::InvalidInput, format!("cannot connect to {remote}: TCP is unicast only")));
        }
        let shared = &self.shared;
        let src = shared.ip.source_for(*remote4.ip()).ok_or(TcpError::Unreachable(remote))?;
        if !shared.make_room() {
            return Err(other(
                ErrorKind::ResourceExhausted,
                format!(
                    "cannot connect to {remote}: the connection table is full ({} connections)",
                    shared.limits.max_connections
                ),
            ));
        }
        let port = self.ephemeral_port(src, remote4)?;
        let local = SocketAddrV4::new(src, port);
        let now = shared.platform.now();
        let iss = shared.isn.isn(now, SocketAddr::V4(local), remote);
        let conn = TcpConnection::connect(now, self.config_toward(*remote4.ip()), SocketAddr::V4(local), remote, iss);
        let slot = Rc::new(ConnSlot::new(conn, local, remote4));
        shared.conns.borrow_mut().insert((local, remote4), slot.clone());
        shared.adopt(Sender::Connection(slot.clone()));
        // From here the stream owns the connection: if this future is
        // dropped, dropping the stream resets the attempt.
        let stream = TcpStream::new(shared.clone(), slot);
        let slot = &stream.slot;
        future::poll_fn(|cx| {
            if slot.unreachable.get() {
                return Poll::Ready(Err(TcpError::Unreachable(remote)));
            }
            let Some((state, error)) = slot.with(|c| (c.state(), c.error())) else {
                register(&slot.write_waker, cx);
                return Poll::Pending;
            };
            match state {
                TcpState::SynSent | TcpState::SynReceived => {
                    register(&slot.write_waker, cx);
                    Poll::Pending
                }
                TcpState::Closed => Poll::Ready(Err(match error {
                    Some(ConnectionError::ConnectTimeout) => TcpError::TimedOut(remote),
                    Some(ConnectionError::Refused | ConnectionError::Reset) | None => {
                        TcpError::ConnectionRefused(remote)
                    }
                    Some(e) => other(ErrorKind::Other, format!("connecting to {remote}: {e}")),
                })),
                _ => Poll::Ready(Ok(())),
            }
        })
        .await?;
        Ok(stream)
    }

    /// Listens on `local`: address 0.0.0.0 for every local address, port 0
    /// for a free ephemeral port. `backlog` is clamped to
    /// [`TcpLimits::max_backlog`].
    ///
    /// Errors: kind [`ErrorKind::InvalidInput`] for backlog 0;
    /// [`TcpError::AddressNotAvailable`] for an address not ours (or IPv6);
    /// [`TcpError::AddressInUse`] when a listener has the port; kind
    /// [`ErrorKind::ResourceExhausted`] beyond [`TcpLimits::max_listeners`].
    /// Cancel-safe (it never waits).
    async fn listen(&self, local: SocketAddr, backlog: usize) -> Result<TcpListenerHandle<I, P>, TcpError> {
        let shared = &self.shared;
        if backlog == 0 {
            return Err(other(ErrorKind::InvalidInput, format!("cannot listen on {local} with a backlog of 0")));
        }
        let Some(local4) = v4(local) else { return Err(TcpError::AddressNotAvailable(local)) };
        let addr = *local4.ip();
        if !addr.is_unspecified() && !shared.ip.addresses().contains(&addr) {
            return Err(TcpError::AddressNotAvailable(local));
        }
        if shared.listeners.borrow().len() >= shared.limits.max_listeners {
            return Err(other(
                ErrorKind::ResourceExhausted,
                format!("cannot listen on {local}: {} listeners are open already", shared.limits.max_listeners),
            ));
        }
        let port = match local4.port() {
            0 => self.ephemeral_port(addr, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))?,
            port if shared.listeners.borrow().contains_key(&port) => return Err(TcpError::AddressInUse(local)),
            port => port,
        };
        let local4 = SocketAddrV4::new(addr, port);
        let mut cookie_key = [0u8; 16];
        shared
            .platform
            .fill(&mut cookie_key)
            .map_err(|e| other(ErrorKind::Other, format!("cannot listen on {local}: SYN cookie key: {e}")))?;
        let core = ListenerCore::new(
            SocketAddr::V4(local4),
            self.config_toward(addr),
            backlog.min(shared.limits.max_backlog),
            shared.limits.syn_backlog,
            shared.isn.clone(),
            cookie_key,
        );
        let slot = Rc::new(ListenerSlot {
            local: local4,
            core: RefCell::new(core),
            acceptors: RefCell::default(),
            open: Cell::new(true),
            dirty: Cell::new(false),
            sender: RefCell::new(None),
            deadline: Cell::new(None),
        });
        shared.listeners.borrow_mut().insert(port, slot.clone());
        shared.adopt(Sender::Listener(slot.clone()));
        Ok(TcpListenerHandle { shared: shared.clone(), slot })
    }
}

/// A listening socket of a [`TcpLayer`]. Dropping it stops listening and
/// resets the connections waiting in its backlog.
pub struct TcpListenerHandle<I, P> {
    shared: Rc<Shared<I, P>>,
    slot: Rc<ListenerSlot>,
}

impl<I, P> core::fmt::Debug for TcpListenerHandle<I, P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TcpListenerHandle").field("local", &self.slot.local).finish()
    }
}

impl<I, P> TcpListenerHandle<I, P> {
    /// Counters of the listener (SYN cookies, drops).
    pub fn stats(&self) -> super::ListenerStats {
        self.slot.core.borrow().stats()
    }
}

impl<I, P> Drop for TcpListenerHandle<I, P> {
    fn drop(&mut self) {
        self.slot.core.borrow_mut().close();
        let port = self.slot.local.port();
        if let Ok(mut listeners) = self.shared.listeners.try_borrow_mut() {
            if listeners.get(&port).is_some_and(|l| Rc::ptr_eq(l, &self.slot)) {
                listeners.remove(&port);
            }
        }
        // Its sender sends the resets of its connections, then ends.
        self.slot.open.set(false);
        self.shared.touch_listener(&self.slot);
    }
}

impl<I: Ip<Addr = Ipv4Addr>, P: Sleep + Random> TcpListener for TcpListenerHandle<I, P> {
    type Flow = TcpStream<I, P>;
    type Error = TcpError;

    fn local_addr(&self) -> SocketAddr {
        SocketAddr::V4(self.slot.local)
    }

    /// Waits for the next established connection. It may already carry
    /// data, a FIN or a reset: reads report those.
    ///
    /// Never fails. A connection that completed its handshake while the
    /// connection table is full is reset and skipped. Cancel-safe: the
    /// connection is taken in the same poll that returns it. Several tasks
    /// may accept at once.
    async fn accept(&self) -> Result<TcpStream<I, P>, TcpError> {
        let shared = &self.shared;
        let slot = &self.slot;
        future::poll_fn(|cx| {
            // Each pass takes one connection; the accept queue is bounded.
            loop {
                let Some(mut conn) = slot.core.borrow_mut().accept() else {
                    let mut acceptors = slot.acceptors.borrow_mut();
                    if !acceptors.iter().any(|w| w.will_wake(cx.waker())) {
                        acceptors.push(cx.waker().clone());
                    }
                    return Poll::Pending;
                };
                let (Some(local), Some(remote)) = (v4(conn.local_addr()), v4(conn.remote_addr())) else { continue };
                // The listener's count of it is gone now, so the table
                // check sees the room it left.
                if !shared.make_room() {
                    conn.abort();
                    if let Some(rst) = conn.poll_transmit(shared.platform.now()) {
                        shared.queue_reset(*local.ip(), *remote.ip(), rst.repr);
                    }
                    continue;
                }
                let new = Rc::new(ConnSlot::new(conn, local, remote));
                // A stale entry for the tuple can only be a connection
                // that closed; the new one replaces it, and its sender
                // ends.
                if let Some(old) = shared.conns.borrow_mut().insert((local, remote), new.clone()) {
                    shared.touch(&old);
                }
                shared.adopt(Sender::Connection(new.clone()));
                return Poll::Ready(Ok(TcpStream::new(shared.clone(), new)));
            }
        })
        .await
    }
}

/// A TCP connection of a [`TcpLayer`]: a [`Flow`] and [`TcpFlow`].
///
/// Dropping it without [`Flow::close`] resets the connection (mirage-types
/// `tcp`). After `close`, the connection lingers in the table to deliver
/// what was written, then through TIME-WAIT, and is removed by itself.
pub struct TcpStream<I, P> {
    shared: Rc<Shared<I, P>>,
    slot: Rc<ConnSlot>,
    closed: bool,
    read_shut: bool,
    write_shut: bool,
    eof: bool,
}

impl<I, P> core::fmt::Debug for TcpStream<I, P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TcpStream").field("local", &self.slot.local).field("remote", &self.slot.remote).finish()
    }
}

impl<I, P> TcpStream<I, P> {
    fn new(shared: Rc<Shared<I, P>>, slot: Rc<ConnSlot>) -> TcpStream<I, P> {
        slot.has_flow.set(true);
        TcpStream { shared, slot, closed: false, read_shut: false, write_shut: false, eof: false }
    }

    /// The connection's state now (as of the last event, if it is being
    /// sent from).
    pub fn state(&self) -> TcpState {
        self.slot.with(|c| c.state()).unwrap_or_else(|| self.slot.state.get())
    }

    /// The connection's sending and loss-recovery counters; `None` while
    /// its sender holds it (between two polls of the executor) or once it
    /// is gone.
    pub fn connection_stats(&self) -> Option<ConnectionStats> {
        self.slot.with(|c| c.stats())
    }

    /// Runs `f` on the connection, waiting while it is lent out to send.
    async fn with_conn<R>(&self, f: impl FnOnce(&mut TcpConnection) -> R) -> R {
        let mut f = Some(f);
        future::poll_fn(|cx| {
            let result = self.slot.with(|c| f.take().map(|f| f(c)));
            match result {
                Some(Some(r)) => Poll::Ready(r),
                // `f` is taken only when the connection is there, and that
                // returns Ready.
                Some(None) => Poll::Pending,
                None => {
                    register(&self.slot.write_waker, cx);
                    Poll::Pending
                }
            }
        })
        .await
    }

    /// `write` and `write_bytes`: runs `send` (which queues data on the
    /// connection) once it takes something, waiting while the buffer is
    /// full; `empty` says there is nothing to write.
    async fn write_with(
        &mut self,
        empty: bool,
        mut send: impl FnMut(&mut TcpConnection) -> Result<usize, SendError>,
    ) -> Result<usize, FlowError> {
        if self.closed {
            return Err(FlowError::NotConnected("write"));
        }
        if self.write_shut {
            return Err(FlowError::BrokenPipe);
        }
        if empty {
            return Ok(0);
        }
        let (shared, slot) = (&self.shared, &self.slot);
        let result = future::poll_fn(|cx| match slot.with(|c| send(c).map_err(|e| (e, c.error()))) {
            Some(Ok(0)) | None => {
                register(&slot.write_waker, cx);
                Poll::Pending
            }
            Some(Ok(n)) => {
                shared.touch(slot);
                Poll::Ready(Ok(n))
            }
            Some(Err(e)) => Poll::Ready(Err(e)),
        })
        .await;
        match result {
            Ok(n) => Ok(n),
            Err((SendError::WriteClosed, _)) => Err(FlowError::BrokenPipe),
            Err((_, error)) => Err(self.error_of(error)),
        }
    }

    fn error_of(&self, error: Option<ConnectionError>) -> FlowError {
        let remote = self.slot.remote;
        match error {
            Some(ConnectionError::Reset | ConnectionError::Refused) => FlowError::ConnectionReset,
            Some(
                e
                @ (ConnectionError::UserTimeout | ConnectionError::KeepaliveTimeout | ConnectionError::ConnectTimeout),
            ) => {
                FlowError::Other { kind: FlowErrorKind::TimedOut, message: format!("TCP connection to {remote}: {e}") }
            }
            None => FlowError::Other {
                kind: FlowErrorKind::ConnectionAborted,
                message: format!("TCP connection to {remote} is closed"),
            },
        }
    }
}

impl<I, P> Drop for TcpStream<I, P> {
    fn drop(&mut self) {
        if !self.closed && self.slot.with(|c| c.abort()).is_none() {
            self.slot.pending_abort.set(true);
        }
        self.slot.has_flow.set(false);
        // The sender removes the connection once it is closed.
        self.shared.touch(&self.slot);
    }
}

impl<I: Ip<Addr = Ipv4Addr>, P: Sleep + Random> Flow for TcpStream<I, P> {
    type Error = FlowError;

    /// Reads received data into `buf`. `Ok(0)` for a non-empty `buf` means
    /// the peer sent its FIN and every byte before it has been read; later
    /// reads return `Ok(0)` again. After `shutdown(Read)` reads return
    /// `Ok(0)`.
    ///
    /// Errors: [`FlowError::ConnectionReset`] when the peer reset the
    /// connection (data not yet read when the reset came is still returned
    /// first); kind [`FlowErrorKind::TimedOut`] when the user or keepalive
    /// timeout ended it; [`FlowError::NotConnected`] after `close` or
    /// `shutdown(Both)`. Cancel-safe: nothing is consumed unless `Ok(n)` is
    /// returned.
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, FlowError> {
        if self.closed {
            return Err(FlowError::NotConnected("read"));
        }
        if buf.is_empty() || self.eof || self.read_shut {
            return Ok(0);
        }
        let (shared, slot) = (&self.shared, &self.slot);
        let result = future::poll_fn(|cx| {
            let polled = slot.with(|c| {
                let n = c.recv(buf);
                if n > 0 {
                    Some(Ok(n))
                } else if c.is_recv_finished() {
                    Some(c.error().map_or(Ok(0), Err))
                } else {
                    None
                }
            });
            match polled {
                Some(Some(Ok(n))) => {
                    if n > 0 {
                        // Reading opens the window: a window update may be due.
                        shared.touch(slot);
                    }
                    Poll::Ready(Ok(n))
                }
                Some(Some(Err(e))) => Poll::Ready(Err(e)),
                Some(None) | None => {
                    register(&slot.read_waker, cx);
                    Poll::Pending
                }
            }
        })
        .await;
        match result {
            Ok(0) => {
                self.eof = true;
                Ok(0)
            }
            Ok(n) => Ok(n),
            Err(e) => Err(self.error_of(Some(e))),
        }
    }

    /// Queues as much of `buf` as the send buffer takes, waiting while it
    /// is full. `Ok(n)` means `n` bytes will be sent in order (not that the
    /// peer got them).
    ///
    /// Errors: [`FlowError::BrokenPipe`] after `shutdown(Write)`;
    /// [`FlowError::NotConnected`] after `close`; [`FlowError::ConnectionReset`]
    /// when the peer reset the connection; kind [`FlowErrorKind::TimedOut`]
    /// when a timeout ended it; kind [`FlowErrorKind::ConnectionAborted`]
    /// when it is otherwise closed. Cancel-safe: nothing is queued unless
    /// `Ok` is returned.
    async fn write(&mut self, buf: &[u8]) -> Result<usize, FlowError> {
        self.write_with(buf.is_empty(), |c| c.send(buf)).await
    }

    /// Queues as much of `data` as the send buffer takes, as
    /// [`Flow::write`] does, without copying it when that is at least 1
    /// KiB: the connection keeps a slice of `data` until the peer
    /// acknowledges it (see [`TcpConnection::send_bytes`]). The bytes
    /// taken count against the send buffer's limit as copied ones do.
    /// Errors and cancel-safety as for `write`.
    async fn write_bytes(&mut self, data: Bytes) -> Result<usize, FlowError> {
        self.write_with(data.is_empty(), |c| c.send_bytes(&data)).await
    }

    /// `Write` queues a FIN after the data written (the peer reads end of
    /// stream); `Read` makes reads return `Ok(0)` and throws away data that
    /// arrives; `Both` does both, and later I/O fails with
    /// [`FlowError::NotConnected`]. Returns once the FIN is queued, not
    /// acknowledged. Errors: [`FlowError::NotConnected`] after `close` or
    /// `shutdown(Both)`. Cancel-safe.
    async fn shutdown(&mut self, how: Shutdown) -> Result<(), FlowError> {
        if self.closed {
            return Err(FlowError::NotConnected("shutdown"));
        }
        if matches!(how, Shutdown::Write | Shutdown::Both) && !self.write_shut {
            self.with_conn(|c| c.shutdown_write()).await;
            self.write_shut = true;
        }
        if matches!(how, Shutdown::Read | Shutdown::Both) {
            self.read_shut = true;
            self.slot.discard_input.set(true);
        }
        if how == Shutdown::Both {
            self.closed = true;
        }
        self.shared.touch(&self.slot);
        Ok(())
    }

    /// Closes the connection: data written is still delivered, then a FIN.
    /// Returns at once; the connection finishes in the background and is
    /// removed after TIME-WAIT. If received data was left unread, the
    /// connection is reset instead (RFC 2525 §2.17): read to end of stream
    /// first. Never fails; closing twice does nothing. Cancel-safe.
    async fn close(&mut self) -> Result<(), FlowError> {
        if self.closed {
            return Ok(());
        }
        if self.read_shut {
            // Data thrown away by shutdown(Read) counts as read.
            self.with_conn(|c| while c.recv(&mut [0u8; 1024]) > 0 {}).await;
        }
        self.with_conn(|c| c.close()).await;
        self.closed = true;
        self.shared.touch(&self.slot);
        Ok(())
    }
}

impl<I: Ip<Addr = Ipv4Addr>, P: Sleep + Random> TcpFlow for TcpStream<I, P> {
    fn local_addr(&self) -> SocketAddr {
        SocketAddr::V4(self.slot.local)
    }

    fn remote_addr(&self) -> SocketAddr {
        SocketAddr::V4(self.slot.remote)
    }

    /// Never fails.
    fn set_nodelay(&mut self, nodelay: bool) -> Result<(), FlowError> {
        if self.slot.with(|c| c.set_nodelay(nodelay)).is_none() {
            self.slot.pending_nodelay.set(Some(nodelay));
        }
        self.shared.touch(&self.slot);
        Ok(())
    }

    /// Fails with kind [`FlowErrorKind::InvalidInput`] for a zero idle
    /// time or interval, or zero probes.
    fn set_keepalive(&mut self, keepalive: Option<Keepalive>) -> Result<(), FlowError> {
        if let Some(k) = keepalive {
            if k.idle.is_zero() || k.interval.is_zero() || k.probes == 0 {
                return Err(FlowError::Other {
                    kind: FlowErrorKind::InvalidInput,
                    message: format!("keepalive needs a non-zero idle time, interval and probe count, got {k:?}"),
                });
            }
        }
        if self.slot.with(|c| c.set_keepalive(keepalive)).is_none() {
            self.slot.pending_keepalive.set(Some(keepalive));
        }
        self.shared.touch(&self.slot);
        Ok(())
    }
}
