//! TCP's sans-IO core: connections, listeners, sequence numbers and timers.
//!
//! Reading list (each file lists its own in detail):
//! - RFC 9293: the protocol, states and "SEGMENT ARRIVES" processing.
//! - RFC 5961: resets and SYNs inside the window, ACK range, rate limit.
//! - RFC 6298: the retransmission timer; RFC 5681 and RFC 9438: congestion
//!   control (CUBIC by default, Reno selectable, see [`CongestionControl`]);
//!   RFC 6675: SACK-based loss recovery, RFC 6582: NewReno recovery when
//!   the peer does not do SACK.
//! - RFC 7323: window scaling, timestamps, PAWS; RFC 2018: SACK.
//! - RFC 6528: initial sequence numbers; RFC 4987 §3.6: SYN cookies.
//!
//! Nothing here reads a clock, draws randomness or touches a device: every
//! call takes `now`, secrets come in at construction, and segments go out
//! through `poll_transmit`. So every behaviour is testable in virtual time,
//! and the async layer above is a thin loop.
//!
//! # For the async layer
//!
//! The layer that implements mirage-types' `Tcp`, `TcpListener` and
//! `TcpFlow` over this core owns a table of [`TcpConnection`]s keyed by
//! 4-tuple and a table of [`TcpListener`]s keyed by local port, and runs
//! this loop:
//!
//! 1. **Input.** For each received IPv4 datagram with protocol TCP:
//!    [`TcpPacket::new_checked`](crate::wire::TcpPacket::new_checked) and
//!    [`TcpRepr::parse`](crate::wire::TcpRepr::parse) with the IP source and
//!    destination (this checks the checksum); drop on error. Slice the
//!    payload out of the frame's `Bytes` (no copy). Then, by 4-tuple:
//!    a connection → [`TcpConnection::handle_segment`]; else a listener on
//!    the destination port → [`TcpListener::handle_segment`]; else send
//!    [`reset_for_unknown`] (RFC 9293 §3.10.7.1) if it returns one.
//! 2. **Output.** After every input, timeout and user call on a connection
//!    or listener, drain `poll_transmit(now)` until `None`. A connection's
//!    [`TcpSegment`] is written with [`TcpSegment::emit_ipv4`] into a buffer
//!    of `repr.buffer_len()` bytes (its payload is lent from the send
//!    buffer, so nothing is allocated); a listener's [`ListenerTransmit`]
//!    carries its own addresses and a header-only `repr`
//!    (emit with an empty payload).
//! 3. **Timers.** Sleep until the earliest `poll_deadline()` of all
//!    connections and listeners (or until input or a user call), then call
//!    `handle_timeout(now)` on those due and drain their output.
//! 4. **Accept.** After a listener's input, [`TcpListener::accept`] yields
//!    established connections; move them into the connection table and
//!    wake `accept` waiters. The listener bounds how many wait.
//! 5. **User calls.** `Flow::write` → [`TcpConnection::send`] (0 means the
//!    send buffer is full: wait for input that frees it, i.e. an ACK);
//!    `Flow::read` → [`TcpConnection::recv`] (0 with
//!    [`TcpConnection::is_recv_finished`] is end of stream);
//!    `shutdown(Write)` → [`TcpConnection::shutdown_write`]; `close` →
//!    [`TcpConnection::close`]; dropping a flow → [`TcpConnection::abort`].
//!    `set_nodelay`/`set_keepalive` map one to one. Connect:
//!    pick a free local port, [`IsnGenerator::isn`] for the 4-tuple,
//!    [`TcpConnection::connect`], then wait until the state is
//!    `Established` (→ Ok) or closed with [`ConnectionError::Refused`] or
//!    [`ConnectionError::ConnectTimeout`].
//! 6. **Errors.** [`TcpConnection::error`] says why a connection ended
//!    (reset, refused, timed out); map it to the flow error kinds.
//! 7. **Cleanup.** Remove a connection once [`TcpConnection::is_closed`]
//!    (after TIME-WAIT expired, or a reset) and its flow is dropped.
//!
//! Wake-ups: a waiting writer can proceed when `send_capacity()` grows, a
//! waiting reader when `recv_available()` is non-zero or
//! `is_recv_finished()`; both can only change inside `handle_segment`,
//! `handle_timeout` or a user call, so checking after those is enough.
//!
//! # Bounds
//!
//! Per connection: the send buffer holds at most [`TcpConfig::send_buffer`]
//! bytes; received data (in order and out of order together) at most
//! [`TcpConfig::recv_buffer`] bytes, because the window we advertise never
//! exceeds the free space; out-of-order data in at most
//! [`TcpConfig::max_ooo_segments`] segments; the SACK scoreboard at most
//! [`MAX_SACKED_RANGES`] ranges. Per listener: see [`TcpListener`]'s
//! module notes (`backlog`, `syn_backlog`, [`MAX_PENDING_REPLIES`]).
//!
//! ## What a peer can make a connection hold, in real memory
//!
//! Counting data is not enough: a received payload kept as a slice of its
//! frame (zero-copy) keeps the whole buffer the device received the frame
//! into alive. So, with `D` the most data a connection's receive side has
//! held at once (`D ≤ recv_buffer`), it holds at most:
//!
//! - **frames kept alive**: only payloads of at least 1024 bytes are kept
//!   as slices (smaller ones, in order or out of order, are copied at
//!   once), so at most `⌊D / 1024⌋ + 1` frames (257 for the default 256
//!   KiB), and each for at most [`TcpConfig::recv_frame_hold`] (100 ms)
//!   after it arrived (then it is copied into an allocation of its own, at
//!   the connection's next timer). What one frame keeps alive is the
//!   device's business: TAP reads each frame into a buffer of its own of
//!   one maximum frame (1519 bytes for MTU 1500, with a 32-byte reference
//!   count), virtio-net and Xen netfront copy each frame into an
//!   allocation of exactly its length; with the allocator's overhead at
//!   most 1.6 KiB a frame, so at most `1.6 × D + 1.6 KiB` in all. A device
//!   that hands out slices of larger shared buffers makes each of those
//!   frames keep a whole shared buffer, but only for the hold time;
//! - **our own allocations** ([`RecvMemory::allocated`]): the ring of small
//!   payloads (at most `min(2 × D, recv_buffer)`, at least 4 KiB once
//!   used), copies (exactly the data they hold, plus at most 16 KiB of a
//!   copy the application has read in part) and the chunk and segment
//!   lists: at most `3.2 × D + 21 KiB + 128 bytes × max_ooo_segments`
//!   (`3.2 × D + 25 KiB` by default), and never more than `2.2 ×
//!   recv_buffer` plus the same constant (588 KiB by default), plus the
//!   allocator's overhead on each allocation (small: the ring and copies
//!   of 1 KiB or more, and at most `max_ooo_segments` smaller copies).
//!
//! Peers that send nothing to be held cost nothing here; one that fills
//! the window of a connection whose application does not read makes it
//! hold about `recv_buffer` bytes of copies and at most the frames of the
//! last 100 ms. In-order segments at least 1024 bytes long that the
//! application reads within the hold time are never copied, so a bulk
//! transfer stays zero-copy. [`TcpConnection::recv_memory`] reports the
//! figures (and `NetStack::usage` their sum over the connections).
//! Segments queued while a connection's sender is busy
//! ([`DEFERRED_SEGMENTS`]) are copies too, keeping no frame alive.
//!
//! # Not implemented
//!
//! HyStart++ (RFC 9406), PRR (RFC 6937), RACK-TLP (RFC 8985), D-SACK
//! (RFC 2883) and undoing spurious reductions; urgent data; IPv6
//! pseudo-headers (the core is address-family neutral, the checksum helper
//! is IPv4); ECN; TCP Fast Open; path MTU discovery.

mod buffer;
mod congestion;
mod connection;
#[cfg(feature = "test-utils")]
pub mod fuzz_driver;
mod listener;
mod reassembly;
mod rto;
mod sack;
mod socket;

use core::time::Duration;

use mirage_types::tcp::Keepalive;

pub use buffer::RecvMemory;
pub use congestion::CongestionControl;
pub use connection::{
    reset_for_unknown, ConnectionError, ConnectionStats, SendError, TcpConnection, TcpSegment, TcpState,
};
pub use listener::{IsnGenerator, ListenerStats, ListenerTransmit, TcpListener, MAX_PENDING_REPLIES};
pub use sack::MAX_SACKED_RANGES;
pub use socket::{
    TcpLayer, TcpLimits, TcpListenerHandle, TcpStats, TcpStream, TcpUsage, DEFERRED_SEGMENTS, EPHEMERAL_PORTS,
    MAX_PENDING_RESETS,
};

pub use crate::wire::tcp::SeqNumber;

/// Settings of a connection (and of the connections a listener creates).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpConfig {
    /// The IP MTU of the interface; our MSS is `mtu − 40` (RFC 9293
    /// §3.7.1). Default 1500.
    pub mtu: usize,
    /// Bytes the send buffer holds (sent but unacknowledged, plus unsent).
    /// Default 256 KiB.
    pub send_buffer: usize,
    /// Bytes the receive buffer holds; the advertised window never exceeds
    /// its free space, and window scaling is chosen so it can be advertised
    /// whole (RFC 7323 §2.3, at most shift 14, about 1 GiB). Default 256 KiB.
    pub recv_buffer: usize,
    /// Out-of-order segments held at most (so at most that many separate
    /// runs); a segment that would add another is dropped. Default 32.
    pub max_ooo_segments: usize,
    /// How long a received payload may stay a slice of the frame it
    /// arrived in (zero-copy, keeping the frame's buffer alive); after
    /// that it is copied into memory of our own, so a peer whose data
    /// waits (unread, or behind a gap) cannot keep device buffers alive.
    /// Zero copies every payload on arrival. Default 100 ms.
    pub recv_frame_hold: Duration,
    /// Maximum segment lifetime; TIME-WAIT lasts 2·MSL (RFC 9293 §3.4.2).
    /// Default 30 s (Linux's TIME-WAIT is 60 s).
    pub msl: Duration,
    /// RTO before any RTT sample (RFC 6298 §2.1: 1 s). Default 1 s.
    pub initial_rto: Duration,
    /// Lower bound of the RTO. RFC 6298 §2.4 says 1 s "SHOULD"; like Linux
    /// we default to 200 ms, which §2.4's own note allows experimenting
    /// with and which keeps recovery quick on LANs.
    pub min_rto: Duration,
    /// Upper bound of the RTO (RFC 6298 §2.5: at least 60 s). Default 60 s.
    pub max_rto: Duration,
    /// Longest delay of an ACK (RFC 9293 §3.8.6.3: under 0.5 s; RFC 5681
    /// §4.2 and we: at most 200 ms is advised). Zero acknowledges every
    /// segment at once. Default 40 ms.
    pub delayed_ack: Duration,
    /// Disable Nagle's algorithm (RFC 9293 §3.7.4). Default false.
    pub nodelay: bool,
    /// Keepalive probing (RFC 9293 §3.8.4). Default off.
    pub keepalive: Option<Keepalive>,
    /// Abort when sent data stays unacknowledged this long (RFC 9293
    /// §3.8.3, RFC 5482). Default 120 s.
    pub user_timeout: Duration,
    /// Give up on a handshake after this long. Default 75 s.
    pub connect_timeout: Duration,
    /// How long a connection the user has closed waits in FIN-WAIT-2 for
    /// the peer's FIN before it is reset and its slot freed (Linux's
    /// `tcp_fin_timeout`): otherwise a peer that acknowledges our FIN and
    /// goes silent holds a place in the table for good. A connection only
    /// shut for writing keeps waiting, since its user still reads. Default
    /// 60 s.
    pub fin_wait_2_timeout: Duration,
    /// Offer window scaling (RFC 7323 §2). Default true.
    pub window_scaling: bool,
    /// Offer timestamps (RFC 7323 §3). Default true.
    pub timestamps: bool,
    /// Offer SACK (RFC 2018). Default true.
    pub sack: bool,
    /// Challenge ACKs sent per second at most (RFC 5961 §7). Default 10.
    pub challenge_acks_per_second: u32,
    /// The congestion window algorithm. Default [`CongestionControl::Cubic`].
    pub congestion: CongestionControl,
}

impl Default for TcpConfig {
    fn default() -> TcpConfig {
        TcpConfig {
            mtu: 1500,
            send_buffer: 256 * 1024,
            recv_buffer: 256 * 1024,
            max_ooo_segments: 32,
            recv_frame_hold: Duration::from_millis(100),
            msl: Duration::from_secs(30),
            initial_rto: Duration::from_secs(1),
            min_rto: Duration::from_millis(200),
            max_rto: Duration::from_secs(60),
            delayed_ack: Duration::from_millis(40),
            nodelay: false,
            keepalive: None,
            user_timeout: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(75),
            fin_wait_2_timeout: Duration::from_secs(60),
            window_scaling: true,
            timestamps: true,
            sack: true,
            challenge_acks_per_second: 10,
            congestion: CongestionControl::Cubic,
        }
    }
}
