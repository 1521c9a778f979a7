//! One TCP connection as a sans-IO state machine.
//!
//! Reading list:
//! - RFC 9293 §3.3.2: the states; §3.4: sequence numbers and the segment
//!   acceptability test; §3.5: opening (including simultaneous open);
//!   §3.6: closing; §3.7.1: MSS; §3.7.4: Nagle; §3.8.4: keepalive;
//!   §3.8.6: windows, zero-window probing, silly window avoidance, delayed
//!   ACKs; §3.10.7: "SEGMENT ARRIVES", followed step by step below.
//! - RFC 5961 §3–5: RST and SYN inside the window get a challenge ACK, the
//!   ACK range check; §7: the challenge ACK rate limit.
//! - RFC 6298: the retransmission timer (see `rto.rs`).
//! - RFC 5681, RFC 6582 and RFC 9438: congestion control (see
//!   `congestion.rs`).
//! - RFC 6675: SACK-based loss recovery (the scoreboard is `sack.rs`;
//!   `next_recovery_segment` below is its §5 step C).
//! - RFC 8985 (RACK-TLP) §6.2: a retransmission is lost once a round trip
//!   and a reordering allowance have passed without its acknowledgment;
//!   used for the segment at SND.UNA only (`check_lost_retransmission`).
//! - RFC 7323 §2: window scaling; §3–5: timestamps, RTTM and PAWS.
//! - RFC 2018: SACK-permitted, SACK blocks reported on receive and used
//!   on send.
//! - RFC 2525 §2.17: closing with unread data resets the connection.
//!
//! The connection never reads a clock: every entry point takes `now`. It
//! never allocates per segment on the send path: [`TcpConnection::poll_transmit`]
//! lends the payload out of the send buffer.

use core::fmt;
use core::net::SocketAddr;
use core::ops::{ControlFlow, Index, IndexMut};
use core::time::Duration;

use bytes::Bytes;
use mirage_types::tcp::Keepalive;
use mirage_types::time::Instant;

use super::buffer::{earliest, RecvBuffer, RecvMemory, SendBuffer, SendSlices};
use super::congestion::{AckAction, Congestion};
use super::reassembly::Reassembly;
use super::rto::RttEstimator;
use super::sack::{NextSegment, Scoreboard};
use super::TcpConfig;
use crate::wire::tcp::{SackBlocks, SeqNumber, TcpFlags, TcpOptions, TcpPacket, TcpRepr, TcpTimestamp};

/// Bytes of IPv4 and TCP headers without options: MSS = MTU − 40
/// (RFC 9293 §3.7.1, RFC 879).
const IPV4_TCP_HEADERS: usize = 40;

/// The MSS assumed when the peer sends none (RFC 9293 §3.7.1).
const DEFAULT_PEER_MSS: usize = 536;

/// Largest window scale shift (RFC 7323 §2.3).
const MAX_WINDOW_SCALE: u8 = 14;

/// Timestamps older than this are not used by PAWS (RFC 7323 §5.5).
const PAWS_IDLE_LIMIT: Duration = Duration::from_secs(24 * 24 * 3600);

/// Bytes the Timestamps option takes in every segment once negotiated
/// (10, padded to 12).
const TIMESTAMP_OPTION_LEN: usize = 12;

/// A connection state (RFC 9293 §3.3.2). LISTEN belongs to
/// [`super::TcpListener`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TcpState {
    /// No connection: never opened, or finished.
    Closed,
    /// Our SYN is sent; waiting for the peer's.
    SynSent,
    /// Both SYNs seen; waiting for the ACK of ours.
    SynReceived,
    /// Open in both directions.
    Established,
    /// We closed; our FIN is not yet acknowledged.
    FinWait1,
    /// Our FIN is acknowledged; waiting for the peer's.
    FinWait2,
    /// The peer closed; we may still send.
    CloseWait,
    /// Both closed at once; waiting for the ACK of our FIN.
    Closing,
    /// The peer closed, then we did; waiting for the ACK of our FIN.
    LastAck,
    /// Both closed; lingering 2·MSL for stray segments.
    TimeWait,
}

impl fmt::Display for TcpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TcpState::Closed => "CLOSED",
            TcpState::SynSent => "SYN-SENT",
            TcpState::SynReceived => "SYN-RECEIVED",
            TcpState::Established => "ESTABLISHED",
            TcpState::FinWait1 => "FIN-WAIT-1",
            TcpState::FinWait2 => "FIN-WAIT-2",
            TcpState::CloseWait => "CLOSE-WAIT",
            TcpState::Closing => "CLOSING",
            TcpState::LastAck => "LAST-ACK",
            TcpState::TimeWait => "TIME-WAIT",
        })
    }
}

/// Why a connection ended other than by the user's `abort` or a clean
/// close.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionError {
    /// The peer answered our SYN with a reset (RFC 9293 §3.10.7.3).
    #[error("connection refused: the peer answered the SYN with a reset")]
    Refused,
    /// The peer reset the connection (RFC 9293 §3.10.7.4).
    #[error("connection reset by the peer")]
    Reset,
    /// No SYN-ACK within the connect timeout.
    #[error("connection timed out: no answer to the SYN within the connect timeout")]
    ConnectTimeout,
    /// Sent data stayed unacknowledged longer than the user timeout (RFC
    /// 9293 §3.8.3).
    #[error("connection timed out: data unacknowledged for longer than the user timeout")]
    UserTimeout,
    /// Keepalive probes went unanswered (RFC 9293 §3.8.4).
    #[error("connection timed out: keepalive probes unanswered")]
    KeepaliveTimeout,
}

/// Why [`TcpConnection::send`] took nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The write side was shut down (our FIN is queued or sent).
    #[error("write after the write side was shut down")]
    WriteClosed,
    /// The connection is closed (or ended with an error, see
    /// [`TcpConnection::error`]).
    #[error("connection is closed")]
    Closed,
}

/// Counters of one connection's sending and loss recovery, from
/// [`TcpConnection::stats`]. They only grow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct ConnectionStats {
    /// Segments with data or FIN sent, retransmissions included.
    pub data_segments_sent: u64,
    /// Of those, retransmissions (of data or a FIN sent before).
    pub retransmitted_segments: u64,
    /// Retransmission timeouts that fired with data outstanding (RFC 6298
    /// §5.4), backed-off repeats included; SYN retransmissions count too.
    pub timeouts: u64,
    /// Loss recoveries entered on duplicate ACKs or SACK evidence (RFC
    /// 5681 §3.2 fast retransmit; RFC 6675 §5 or RFC 6582 recovery).
    pub fast_recoveries: u64,
    /// Of those, SACK-based ones (RFC 6675).
    pub sack_recoveries: u64,
    /// Retransmissions at SND.UNA found lost and sent again before the
    /// retransmission timer fired (after RFC 8985 §6.2).
    pub lost_retransmissions: u64,
    /// Closed connections reset after waiting
    /// [`TcpConfig::fin_wait_2_timeout`] in FIN-WAIT-2 (0 or 1).
    pub fin_wait_2_timeouts: u64,
}

/// A segment to send, lent by [`TcpConnection::poll_transmit`]: the
/// header and the payload, which stays in the send buffer.
#[derive(Clone, Debug)]
pub struct TcpSegment<'a> {
    /// The header to send; `repr.payload_len` is the payload's length.
    pub repr: TcpRepr,
    payload: SendSlices<'a>,
}

impl<'a> TcpSegment<'a> {
    /// A segment without payload.
    pub fn header_only(repr: TcpRepr) -> TcpSegment<'static> {
        TcpSegment { repr, payload: SendSlices::EMPTY }
    }

    /// The payload, in the pieces of the send buffer it lies in (runs of
    /// its ring of copied bytes and `Bytes` handed over with
    /// [`TcpConnection::send_bytes`]), in order; none is empty.
    pub fn payload_parts(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.payload.clone()
    }

    /// Copies the payload into `out`, which must be `repr.payload_len`
    /// bytes long (panics otherwise: a bug in the caller).
    pub fn copy_payload(&self, out: &mut [u8]) {
        self.payload.clone().copy_to(out);
    }

    /// Writes the whole TCP segment (header, options, payload, checksum
    /// over the IPv4 pseudo-header) into `out`, which must be exactly
    /// `repr.buffer_len()` bytes (panics otherwise: a bug in the caller).
    pub fn emit_ipv4(&self, src: core::net::Ipv4Addr, dst: core::net::Ipv4Addr, out: &mut [u8]) {
        self.repr.emit(&mut TcpPacket::new_unchecked(out), src, dst, |p| self.copy_payload(p));
    }
}

/// One TCP connection, from SYN-SENT or SYN-RECEIVED to CLOSED.
///
/// See the [module documentation](super) for how the async layer drives it.
#[derive(Debug)]
pub struct TcpConnection {
    config: TcpConfig,
    local: SocketAddr,
    remote: SocketAddr,
    state: TcpState,
    error: Option<ConnectionError>,
    /// Created by a listener (RFC 9293 §3.10.7.4: a reset in SYN-RECEIVED
    /// then just ends the attempt, it is not "refused").
    passive: bool,
    snd: SendSpace,
    rcv: RecvSpace,
    ts: Timestamps,
    /// What the peer's SYN offered, for our SYN-ACK to offer no more.
    peer_syn: PeerSynOptions,
    loss: LossRecovery,
    timers: TimerTable,
    persist: ZeroWindowProbe,
    keepalive: KeepaliveProbes,
    challenge: ChallengeAckLimit,
    stats: ConnectionStats,
    /// An ACK is owed now, not after the delayed-ACK time.
    ack_now: bool,
    /// The user closed: data that arrives now is answered with a reset
    /// (RFC 2525 §2.17).
    user_closed: bool,
    /// When the peer acknowledged our FIN (entering FIN-WAIT-2).
    fin_wait_2_since: Option<Instant>,
    /// The last acceptable ACK, or when we sent with nothing outstanding:
    /// the user timeout counts from it.
    last_progress: Instant,
    /// When the peer was last heard: keepalive idleness counts from it.
    last_recv: Instant,
    /// Nagle's algorithm is off (RFC 9293 §3.7.4).
    nodelay: bool,
    /// A reset to send in answer to a segment (RFC 9293 §3.10.7), or to
    /// announce an abort.
    pending_rst: Option<TcpRepr>,
}

/// The send sequence space (RFC 9293 §3.3.1) and what is sent from it.
/// `nxt` goes back to `una` on a timeout (go-back-N); `max` stays.
#[derive(Debug)]
struct SendSpace {
    /// ISS.
    iss: SeqNumber,
    /// SND.UNA.
    una: SeqNumber,
    /// SND.NXT.
    nxt: SeqNumber,
    /// SND.MAX (4.4BSD's name): one past the highest sequence number sent.
    max: SeqNumber,
    /// SND.WND, scaled.
    wnd: usize,
    /// SND.WL1: SEG.SEQ of the segment that last updated the window.
    wl1: SeqNumber,
    /// SND.WL2: SEG.ACK of the segment that last updated the window.
    wl2: SeqNumber,
    /// MAX.SND.WND (RFC 5961 §5.2, and sender SWS avoidance).
    max_wnd: usize,
    /// Shift the peer applies to the windows it sends (RFC 7323 §2.2).
    wscale: u8,
    /// Bytes from `buf_start` on: unacknowledged, then unsent.
    buf: SendBuffer,
    buf_start: SeqNumber,
    /// The user shut the write side: a FIN follows the data.
    fin_queued: bool,
    /// Payload bytes per segment: the effective send MSS less options.
    smss: usize,
}

/// The receive sequence space (RFC 9293 §3.3.1) and what it holds.
#[derive(Debug)]
struct RecvSpace {
    /// IRS.
    irs: SeqNumber,
    /// RCV.NXT.
    nxt: SeqNumber,
    /// Our shift (RFC 7323 §2.2); 0 unless both SYNs carried the option.
    wscale: u8,
    /// In-order data not yet read; its free space is RCV.WND.
    buf: RecvBuffer,
    /// Data that arrived ahead of a gap.
    ooo: Reassembly,
    /// Sequence number of a FIN that arrived ahead of missing data.
    ooo_fin: Option<SeqNumber>,
    /// Right edge of the window we advertised last (never moves left,
    /// RFC 9293 §3.8.6.2.2).
    adv: SeqNumber,
    fin_received: bool,
    /// Our MSS, what we announce: MTU − 40.
    rmss: usize,
    /// Bytes taken since our last ACK (RFC 9293 §3.8.6.3).
    unacked_bytes: usize,
}

/// RFC 7323 timestamps: RTTM and PAWS.
#[derive(Debug)]
struct Timestamps {
    /// Both SYNs carried the option (RFC 7323 §3.2).
    enabled: bool,
    /// Added to our clock (RFC 7323 §5.4).
    offset: u32,
    /// TS.Recent (RFC 7323 §4.3).
    recent: u32,
    /// When TS.Recent was taken (PAWS ignores it after 24 days, §5.5).
    recent_at: Instant,
    /// Last.ACK.sent (RFC 7323 §4.3): TS.Recent comes from the segment
    /// that covers it.
    last_ack_sent: SeqNumber,
    /// Our timestamp clock when the retransmission timer last fired: an
    /// echo older than that gives no RTT sample (see `sample_rtt`).
    at_timeout: Option<u32>,
}

/// The options of the peer's SYN.
#[derive(Debug)]
struct PeerSynOptions {
    window_scale: Option<u8>,
    sack_permitted: bool,
    timestamp: Option<u32>,
}

/// Round-trip time, congestion control and loss recovery (RFC 6298, RFC
/// 5681, RFC 6582, RFC 6675).
#[derive(Debug)]
struct LossRecovery {
    /// Both ends agreed on SACK (RFC 2018 §2): recovery follows RFC 6675.
    sack: bool,
    /// What the peer SACKed (RFC 6675), used only when `sack` is on.
    scoreboard: Scoreboard,
    /// Congestion window and the recovery in progress, if any.
    cc: Congestion,
    rtt: RttEstimator,
    /// The segment being timed without timestamps: its end and when it was
    /// sent (RFC 6298 §3).
    rtt_sample: Option<(SeqNumber, Instant)>,
    /// When the segment at SND.UNA was last retransmitted (its SEG.SEQ and
    /// the time), to tell when that retransmission was lost too (see
    /// `check_lost_retransmission`).
    una_rexmit_at: Option<(SeqNumber, Instant)>,
    /// The next data segment is the one at SND.UNA, sent again (fast
    /// retransmit, a partial ACK, a lost retransmission).
    retransmit_first: bool,
}

/// The timers a connection sets itself. The deadlines that follow from
/// other state (user timeout, keepalive, frame hold, FIN-WAIT-2) are
/// computed when asked for (see [`TcpConnection::poll_deadline`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Timer {
    /// RFC 6298.
    Retransmission,
    /// RFC 9293 §3.8.6.3.
    DelayedAck,
    /// Zero-window probing (RFC 9293 §3.8.6.1).
    Persist,
    /// 2·MSL (RFC 9293 §3.10.8).
    TimeWait,
    /// The handshake's time limit ([`TcpConfig::connect_timeout`]).
    Connect,
}

impl Timer {
    const COUNT: usize = 5;
}

/// A deadline per [`Timer`], `None` when it is not running.
#[derive(Clone, Copy, Debug, Default)]
struct TimerTable([Option<Instant>; Timer::COUNT]);

impl TimerTable {
    /// The earliest running timer's deadline.
    #[inline]
    fn next_deadline(&self) -> Option<Instant> {
        self.0.iter().flatten().min().copied()
    }

    fn stop_all(&mut self) {
        self.0 = [None; Timer::COUNT];
    }
}

impl Index<Timer> for TimerTable {
    type Output = Option<Instant>;

    #[inline]
    fn index(&self, timer: Timer) -> &Option<Instant> {
        &self.0[timer as usize]
    }
}

impl IndexMut<Timer> for TimerTable {
    #[inline]
    fn index_mut(&mut self, timer: Timer) -> &mut Option<Instant> {
        &mut self.0[timer as usize]
    }
}

/// Zero-window probing (RFC 9293 §3.8.6.1); its deadline is
/// [`Timer::Persist`].
#[derive(Debug)]
struct ZeroWindowProbe {
    /// Doublings of the probe interval so far (at most 16).
    backoff: u32,
    /// The persist timer fired: the next transmission is a probe.
    probe_now: bool,
}

/// Keepalive probing (RFC 9293 §3.8.4).
#[derive(Debug)]
struct KeepaliveProbes {
    /// `None`: keepalive is off.
    params: Option<Keepalive>,
    /// Probes sent since the peer was last heard.
    probes: u32,
    /// A probe is due with the next transmission.
    probe_now: bool,
}

/// RFC 5961 §7's rate limit of challenge ACKs.
#[derive(Debug)]
struct ChallengeAckLimit {
    /// Start of the current one-second window.
    window_start: Instant,
    /// Challenge ACKs sent in it.
    count: u32,
}

impl TcpConnection {
    /// Opens a connection actively (RFC 9293 §3.10.1): the connection is in
    /// SYN-SENT and its first [`Self::poll_transmit`] is the SYN.
    ///
    /// `iss` is the initial sequence number, from
    /// [`super::IsnGenerator::isn`] for this 4-tuple (RFC 6528).
    pub fn connect(now: Instant, config: TcpConfig, local: SocketAddr, remote: SocketAddr, iss: SeqNumber) -> Self {
        let mut conn = TcpConnection::new(now, config, local, remote, iss);
        conn.state = TcpState::SynSent;
        conn.timers[Timer::Connect] = now.checked_add(conn.config.connect_timeout);
        conn
    }

    /// A connection in SYN-RECEIVED for a `syn` that reached a listener
    /// (RFC 9293 §3.10.7.2); its first transmission is the SYN-ACK.
    pub(crate) fn accept_syn(
        now: Instant,
        config: TcpConfig,
        local: SocketAddr,
        remote: SocketAddr,
        iss: SeqNumber,
        syn: &TcpRepr,
    ) -> Self {
        let mut conn = TcpConnection::new(now, config, local, remote, iss);
        conn.passive = true;
        conn.state = TcpState::SynReceived;
        conn.timers[Timer::Connect] = now.checked_add(conn.config.connect_timeout);
        conn.take_syn(now, syn);
        conn
    }

    /// An ESTABLISHED connection from a SYN cookie's handshake (RFC 4987
    /// §3.6): no window scaling, SACK or timestamps, since the cookie
    /// keeps only the MSS.
    pub(crate) fn from_cookie(
        now: Instant,
        config: TcpConfig,
        local: SocketAddr,
        remote: SocketAddr,
        iss: SeqNumber,
        ack: &TcpRepr,
        peer_mss: usize,
    ) -> Self {
        let mut conn = TcpConnection::new(now, config, local, remote, iss);
        conn.passive = true;
        conn.rcv.irs = ack.seq_number.sub_len(1);
        conn.rcv.nxt = ack.seq_number;
        conn.rcv.adv = conn.rcv.nxt;
        conn.snd.nxt = iss + 1;
        conn.snd.max = iss + 1;
        conn.snd.una = iss + 1;
        conn.ts.enabled = false;
        conn.loss.sack = false;
        conn.rcv.wscale = 0;
        conn.set_peer_mss(peer_mss);
        conn.snd.wnd = usize::from(ack.window_len);
        conn.snd.max_wnd = conn.snd.wnd;
        conn.snd.wl1 = ack.seq_number;
        conn.snd.wl2 = ack.ack_number;
        conn.state = TcpState::Established;
        conn
    }

    fn new(now: Instant, config: TcpConfig, local: SocketAddr, remote: SocketAddr, iss: SeqNumber) -> Self {
        let rmss = config.mtu.saturating_sub(IPV4_TCP_HEADERS).clamp(64, usize::from(u16::MAX));
        let recv_capacity = config.recv_buffer.max(1);
        let mut rcv_wscale = 0;
        while rcv_wscale < MAX_WINDOW_SCALE && (recv_capacity >> rcv_wscale) > usize::from(u16::MAX) {
            rcv_wscale += 1;
        }
        let rtt = RttEstimator::new(config.initial_rto, config.min_rto, config.max_rto);
        TcpConnection {
            local,
            remote,
            state: TcpState::Closed,
            error: None,
            passive: false,
            snd: SendSpace {
                iss,
                una: iss,
                nxt: iss,
                max: iss,
                wnd: 0,
                wl1: SeqNumber(0),
                wl2: SeqNumber(0),
                max_wnd: 0,
                wscale: 0,
                buf: SendBuffer::new(config.send_buffer),
                buf_start: iss + 1,
                fin_queued: false,
                smss: DEFAULT_PEER_MSS.min(rmss),
            },
            rcv: RecvSpace {
                irs: SeqNumber(0),
                nxt: SeqNumber(0),
                wscale: if config.window_scaling { rcv_wscale } else { 0 },
                buf: RecvBuffer::new(config.recv_buffer, config.recv_frame_hold),
                ooo: Reassembly::new(config.max_ooo_segments, config.recv_frame_hold),
                ooo_fin: None,
                adv: SeqNumber(0),
                fin_received: false,
                rmss,
                unacked_bytes: 0,
            },
            ts: Timestamps {
                enabled: config.timestamps,
                // RFC 7323 §5.4: a per-connection offset hides the clock;
                // the ISN is already a keyed hash of the 4-tuple.
                offset: iss.0.rotate_left(13),
                recent: 0,
                recent_at: now,
                last_ack_sent: SeqNumber(0),
                at_timeout: None,
            },
            peer_syn: PeerSynOptions { window_scale: None, sack_permitted: false, timestamp: None },
            loss: LossRecovery {
                sack: config.sack,
                scoreboard: Scoreboard::default(),
                cc: Congestion::new(config.congestion, DEFAULT_PEER_MSS.min(rmss)),
                rtt,
                rtt_sample: None,
                una_rexmit_at: None,
                retransmit_first: false,
            },
            timers: TimerTable::default(),
            persist: ZeroWindowProbe { backoff: 0, probe_now: false },
            keepalive: KeepaliveProbes { params: config.keepalive, probes: 0, probe_now: false },
            challenge: ChallengeAckLimit { window_start: now, count: 0 },
            stats: ConnectionStats::default(),
            ack_now: false,
            user_closed: false,
            fin_wait_2_since: None,
            last_progress: now,
            last_recv: now,
            nodelay: config.nodelay,
            pending_rst: None,
            config,
        }
    }

    // ---- Queries ------------------------------------------------------

    /// The state.
    pub fn state(&self) -> TcpState {
        self.state
    }

    /// Why the connection ended, if the peer or a timer ended it.
    pub fn error(&self) -> Option<ConnectionError> {
        self.error
    }

    /// Our address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The peer's address.
    pub fn remote_addr(&self) -> SocketAddr {
        self.remote
    }

    /// Whether the connection is finished and nothing remains to send: the
    /// owner may drop it. TIME-WAIT is not closed: keep the connection
    /// until it expires, so its 4-tuple is not reused (RFC 9293 §3.6.1).
    pub fn is_closed(&self) -> bool {
        self.state == TcpState::Closed && self.pending_rst.is_none()
    }

    /// Whether both SYNs are acknowledged (ESTABLISHED or a later state).
    pub fn is_synchronized(&self) -> bool {
        !matches!(self.state, TcpState::Closed | TcpState::SynSent | TcpState::SynReceived)
    }

    /// Bytes [`Self::send`] would take now.
    pub fn send_capacity(&self) -> usize {
        if self.can_queue_data() {
            self.snd.buf.free()
        } else {
            0
        }
    }

    /// Bytes sent or queued and not yet acknowledged by the peer.
    pub fn send_queued(&self) -> usize {
        self.snd.buf.len()
    }

    /// Bytes [`Self::recv`] would return now.
    pub fn recv_available(&self) -> usize {
        self.rcv.buf.len()
    }

    /// Bytes held out of order, waiting for a gap to fill (part of the
    /// receive buffer's bound).
    pub fn recv_out_of_order(&self) -> usize {
        self.rcv.ooo.len_bytes()
    }

    /// What the receive side holds, in order and out of order: data, the
    /// frames kept alive by payloads held as slices of them, and what it
    /// allocated itself (see the bounds in the [module docs](super)).
    pub fn recv_memory(&self) -> RecvMemory {
        self.rcv.buf.memory() + self.rcv.ooo.memory()
    }

    /// Whether the peer closed its side and every byte before its FIN has
    /// been read: [`Self::recv`] will return no more data.
    pub fn is_recv_finished(&self) -> bool {
        self.rcv.buf.is_empty() && (self.rcv.fin_received || self.state == TcpState::Closed)
    }

    /// The smoothed round-trip time, once measured.
    pub fn srtt(&self) -> Option<Duration> {
        self.loss.rtt.srtt()
    }

    /// The current retransmission timeout.
    pub fn rto(&self) -> Duration {
        self.loss.rtt.rto()
    }

    /// The congestion window in bytes.
    pub fn cwnd(&self) -> usize {
        self.loss.cc.cwnd()
    }

    /// The slow start threshold in bytes (`usize::MAX` until the first
    /// loss, RFC 5681 §3.1).
    pub fn ssthresh(&self) -> usize {
        self.loss.cc.ssthresh()
    }

    /// Whether both ends agreed on SACK (RFC 2018 §2), so that loss
    /// recovery follows RFC 6675 rather than NewReno.
    pub fn sack_enabled(&self) -> bool {
        self.loss.sack
    }

    /// Counters of segments sent, retransmissions, timeouts and recoveries.
    pub fn stats(&self) -> ConnectionStats {
        self.stats
    }

    /// Payload bytes per full-sized segment we send.
    pub fn send_mss(&self) -> usize {
        self.snd.smss
    }

    // ---- User calls (RFC 9293 §3.10.2–3.10.6) -------------------------

    /// Queues up to [`Self::send_capacity`] bytes of `data` for sending and
    /// returns how many were taken (0 if the buffer is full).
    ///
    /// Data may be queued in SYN-SENT and SYN-RECEIVED (RFC 9293 §3.10.2);
    /// it goes out once the connection is established. Errors with
    /// [`SendError::WriteClosed`] after [`Self::shutdown_write`] or
    /// [`Self::close`], and [`SendError::Closed`] once the connection is
    /// closed.
    pub fn send(&mut self, data: &[u8]) -> Result<usize, SendError> {
        if self.snd.fin_queued {
            return Err(SendError::WriteClosed);
        }
        if !self.can_queue_data() {
            return Err(SendError::Closed);
        }
        Ok(self.snd.buf.write(data))
    }

    /// Queues up to [`Self::send_capacity`] bytes of `data` for sending,
    /// as [`Self::send`] does, without copying them when that is at least
    /// 1 KiB: the send buffer keeps a slice of `data` (a reference count)
    /// until the peer acknowledges its last byte, and segments are copied
    /// from it straight into the frame. Less is copied into the buffer,
    /// so that small writes still fill segments. The bytes taken count
    /// against the send buffer's limit exactly as copied ones do; a `data`
    /// larger than the room left is taken in part (a cheap slice).
    pub fn send_bytes(&mut self, data: &Bytes) -> Result<usize, SendError> {
        if self.snd.fin_queued {
            return Err(SendError::WriteClosed);
        }
        if !self.can_queue_data() {
            return Err(SendError::Closed);
        }
        Ok(self.snd.buf.write_bytes(data))
    }

    fn can_queue_data(&self) -> bool {
        !self.snd.fin_queued
            && matches!(
                self.state,
                TcpState::SynSent | TcpState::SynReceived | TcpState::Established | TcpState::CloseWait
            )
    }

    /// Moves up to `buf.len()` received bytes into `buf` and returns how
    /// many. 0 means no data now; [`Self::is_recv_finished`] tells whether
    /// more can come. Reading opens the receive window; a window update is
    /// sent when it grew enough (RFC 9293 §3.8.6.2.2).
    pub fn recv(&mut self, buf: &mut [u8]) -> usize {
        let n = self.rcv.buf.read(buf);
        if n > 0 && self.is_synchronized() && !self.rcv.fin_received {
            let threshold = (self.config.recv_buffer / 2).min(self.rcv.rmss).max(1);
            let edge = self.rcv.nxt + self.window_to_advertise();
            if edge - self.rcv.adv >= threshold {
                self.ack_now = true;
            }
        }
        n
    }

    /// Turns Nagle's algorithm off (`true`) or on (RFC 9293 §3.7.4).
    pub fn set_nodelay(&mut self, nodelay: bool) {
        self.nodelay = nodelay;
    }

    /// Sets or clears keepalive probing (RFC 9293 §3.8.4).
    pub fn set_keepalive(&mut self, keepalive: Option<Keepalive>) {
        self.keepalive.params = keepalive;
        self.keepalive.probes = 0;
    }

    /// Shuts the write side: a FIN follows the queued data (RFC 9293
    /// §3.10.4). Reading stays possible. In SYN-SENT with nothing queued
    /// this closes the connection (§3.10.4: delete the TCB); with data
    /// queued, as in SYN-RECEIVED, the FIN waits for the handshake so the
    /// data is not lost.
    pub fn shutdown_write(&mut self) {
        match self.state {
            TcpState::SynSent if self.snd.buf.is_empty() => self.enter_closed(None),
            TcpState::SynSent | TcpState::SynReceived => self.snd.fin_queued = true,
            TcpState::Established => {
                self.snd.fin_queued = true;
                self.state = TcpState::FinWait1;
            }
            TcpState::CloseWait => {
                self.snd.fin_queued = true;
                self.state = TcpState::LastAck;
            }
            _ => {}
        }
    }

    /// Closes the connection: like [`Self::shutdown_write`], but received
    /// data still unread, or arriving later, resets the connection instead
    /// (RFC 2525 §2.17), since nobody will read it.
    pub fn close(&mut self) {
        self.user_closed = true;
        if !self.rcv.buf.is_empty() {
            self.abort();
        } else {
            self.shutdown_write();
        }
    }

    /// Resets the connection (RFC 9293 §3.10.5): a RST goes out if the
    /// peer knows of the connection, buffers are dropped, the state is
    /// CLOSED.
    pub fn abort(&mut self) {
        if matches!(self.state, TcpState::Closed | TcpState::SynSent | TcpState::TimeWait) {
            self.enter_closed(None);
            return;
        }
        self.pending_rst = Some(self.rst_repr(self.snd.nxt));
        self.enter_closed(None);
    }

    fn enter_closed(&mut self, error: Option<ConnectionError>) {
        self.state = TcpState::Closed;
        if self.error.is_none() {
            self.error = error;
        }
        self.snd.buf.clear();
        self.rcv.ooo = Reassembly::new(0, Duration::ZERO);
        self.timers.stop_all();
        self.ack_now = false;
    }

    // ---- Time -----------------------------------------------------------

    /// The earliest instant at which [`Self::handle_timeout`] has work, if
    /// any.
    pub fn poll_deadline(&self) -> Option<Instant> {
        [
            self.timers.next_deadline(),
            self.user_timeout_deadline(),
            self.keepalive_deadline(),
            self.frame_hold_deadline(),
            self.fin_wait_2_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// When a closed connection stops waiting for the peer's FIN
    /// ([`TcpConfig::fin_wait_2_timeout`]).
    fn fin_wait_2_deadline(&self) -> Option<Instant> {
        if self.state != TcpState::FinWait2 || !self.user_closed {
            return None;
        }
        self.fin_wait_2_since?.checked_add(self.config.fin_wait_2_timeout)
    }

    /// When the oldest payload held as a slice of its frame has been held
    /// for [`TcpConfig::recv_frame_hold`] (or earlier: a payload read since
    /// may leave it early, costing one timer pass).
    fn frame_hold_deadline(&self) -> Option<Instant> {
        earliest(self.rcv.buf.frames_since(), self.rcv.ooo.frames_since())?.checked_add(self.config.recv_frame_hold)
    }

    fn user_timeout_deadline(&self) -> Option<Instant> {
        (self.is_synchronized() && self.snd.max > self.snd.una)
            .then(|| self.last_progress.checked_add(self.config.user_timeout))
            .flatten()
    }

    fn keepalive_deadline(&self) -> Option<Instant> {
        let ka = self.keepalive.params?;
        if !matches!(self.state, TcpState::Established | TcpState::CloseWait) || self.snd.max != self.snd.una {
            return None;
        }
        self.last_recv.checked_add(ka.idle)?.checked_add(ka.interval.saturating_mul(self.keepalive.probes))
    }

    /// Runs the timers due at `now`: retransmission, delayed ACK, zero
    /// window probe, keepalive, TIME-WAIT expiry, connect, user and
    /// FIN-WAIT-2 timeouts. Call it when [`Self::poll_deadline`] has passed (calling
    /// it early does nothing), then [`Self::poll_transmit`].
    pub fn handle_timeout(&mut self, now: Instant) {
        let due = |t: Option<Instant>| t.is_some_and(|t| t <= now);
        if due(self.frame_hold_deadline()) {
            // Payloads held for the hold time no longer keep their frames.
            self.rcv.buf.compact(now);
            self.rcv.ooo.compact(now);
        }
        if due(self.timers[Timer::TimeWait]) {
            // RFC 9293 §3.10.8: TIME-WAIT ends after 2·MSL.
            self.enter_closed(None);
            return;
        }
        if due(self.timers[Timer::Connect]) && matches!(self.state, TcpState::SynSent | TcpState::SynReceived) {
            self.enter_closed(Some(ConnectionError::ConnectTimeout));
            return;
        }
        if due(self.user_timeout_deadline()) {
            // RFC 9293 §3.8.3: give up after the user timeout.
            self.pending_rst = Some(self.rst_repr(self.snd.nxt));
            self.enter_closed(Some(ConnectionError::UserTimeout));
            return;
        }
        if due(self.fin_wait_2_deadline()) {
            // Nobody reads, and the peer has sent nothing to end it: free
            // the slot, and tell the peer in case it is still there.
            self.stats.fin_wait_2_timeouts += 1;
            self.pending_rst = Some(self.rst_repr(self.snd.nxt));
            self.enter_closed(None);
            return;
        }
        if let Some(ka) = self.keepalive.params.filter(|_| due(self.keepalive_deadline())) {
            if self.keepalive.probes >= ka.probes {
                self.pending_rst = Some(self.rst_repr(self.snd.nxt));
                self.enter_closed(Some(ConnectionError::KeepaliveTimeout));
                return;
            }
            self.keepalive.probes += 1;
            self.keepalive.probe_now = true;
        }
        if due(self.timers[Timer::Retransmission]) {
            self.on_retransmission_timeout(now);
        }
        if due(self.timers[Timer::DelayedAck]) {
            self.timers[Timer::DelayedAck] = None;
            self.ack_now = true;
        }
        if due(self.timers[Timer::Persist]) {
            // RFC 9293 §3.8.6.1: probe the zero window with one byte.
            self.timers[Timer::Persist] = None;
            self.persist.backoff = (self.persist.backoff + 1).min(16);
            self.persist.probe_now = true;
        }
    }

    fn on_retransmission_timeout(&mut self, now: Instant) {
        // RFC 6298 §5.4–5.6: retransmit the earliest unacknowledged
        // segment, back off, restart the timer. Go-back-N: everything after
        // SND.UNA is sent again as the window allows.
        let flight = self.snd.max - self.snd.una;
        self.stats.timeouts += 1;
        self.loss.rtt.back_off();
        self.loss.rtt_sample = None; // Karn's rule (RFC 6298 §3)
        self.ts.at_timeout = Some(self.ts_clock(now));
        self.loss.cc.on_timeout(now, flight, self.snd.max);
        // RFC 6675 §5.1 keeps RFC 2018 §8's rule: after a timeout, prior
        // SACK information must not decide what is retransmitted (the
        // receiver may have reneged), so forget it. SACKs that arrive from
        // now on are fresh and let go-back-N skip what they cover.
        self.loss.scoreboard.clear();
        self.snd.nxt = self.snd.una;
        self.loss.retransmit_first = false;
        self.timers[Timer::Retransmission] = now.checked_add(self.loss.rtt.rto());
    }

    // ---- Segment arrival (RFC 9293 §3.10.7) ----------------------------

    /// Processes a segment from the peer. The caller has checked the
    /// checksum ([`TcpRepr::parse`]) and that the 4-tuple is this
    /// connection's; `payload` holds `repr.payload_len` bytes.
    ///
    /// Afterwards call [`Self::poll_transmit`] for the answers it calls
    /// for, and check [`Self::state`] and [`Self::error`].
    pub fn handle_segment(&mut self, now: Instant, repr: &TcpRepr, payload: Bytes) {
        match self.state {
            TcpState::Closed => {}
            TcpState::SynSent => self.handle_syn_sent(now, repr),
            _ => {
                let _ = self.handle_synchronized(now, repr, payload);
            }
        }
    }

    /// RFC 9293 §3.10.7.3.
    fn handle_syn_sent(&mut self, now: Instant, repr: &TcpRepr) {
        let flags = repr.flags;
        let mut ack_ok = false;
        if flags.ack() {
            // First: an ACK of something we did not send gets a reset.
            if repr.ack_number <= self.snd.iss || repr.ack_number > self.snd.max {
                if !flags.rst() {
                    self.pending_rst = Some(self.rst_reply(repr));
                }
                return;
            }
            ack_ok = true;
        }
        if flags.rst() {
            // Second: a reset counts only if it acknowledges our SYN
            // (RFC 5961 §3.2 leaves SYN-SENT's check as RFC 793's).
            if ack_ok {
                self.enter_closed(Some(ConnectionError::Refused));
            }
            return;
        }
        if !flags.syn() {
            return;
        }
        // Fourth: the peer's SYN.
        self.take_syn(now, repr);
        self.last_recv = now;
        if ack_ok {
            self.snd.una = repr.ack_number;
            self.sample_rtt(now, repr);
            self.timers[Timer::Retransmission] = None;
            self.timers[Timer::Connect] = None;
            self.update_window(repr);
            self.state = if self.snd.fin_queued { TcpState::FinWait1 } else { TcpState::Established };
            self.ack_now = true;
        } else {
            // Simultaneous open (RFC 9293 §3.5, figure 8): answer with a
            // SYN-ACK, which is our SYN sent again with an ACK.
            self.state = TcpState::SynReceived;
            self.snd.nxt = self.snd.iss;
            self.snd.wnd = usize::from(repr.window_len);
            self.snd.wl1 = repr.seq_number;
            self.snd.wl2 = repr.ack_number;
        }
    }

    /// Takes the peer's initial sequence number and the options of its SYN.
    fn take_syn(&mut self, now: Instant, syn: &TcpRepr) {
        self.rcv.irs = syn.seq_number;
        self.rcv.nxt = syn.seq_number + 1;
        self.rcv.adv = self.rcv.nxt;
        let opts = &syn.options;
        self.peer_syn.window_scale = opts.window_scale;
        self.peer_syn.sack_permitted = opts.sack_permitted;
        self.peer_syn.timestamp = opts.timestamp.map(|ts| ts.value);
        // RFC 7323 §2.2: scaling only if both SYNs carry the option.
        match opts.window_scale {
            Some(shift) if self.config.window_scaling => self.snd.wscale = shift.min(MAX_WINDOW_SCALE),
            _ => {
                self.snd.wscale = 0;
                self.rcv.wscale = 0;
            }
        }
        self.loss.sack = self.config.sack && opts.sack_permitted;
        // RFC 7323 §3.2: timestamps only if both SYNs carry them.
        match opts.timestamp {
            Some(ts) if self.config.timestamps => {
                self.ts.enabled = true;
                self.ts.recent = ts.value;
                self.ts.recent_at = now;
            }
            _ => self.ts.enabled = false,
        }
        self.set_peer_mss(opts.max_seg_size.map_or(DEFAULT_PEER_MSS, usize::from));
        self.snd.wnd = usize::from(syn.window_len);
        self.snd.max_wnd = self.snd.wnd;
        self.snd.wl1 = syn.seq_number;
    }

    fn set_peer_mss(&mut self, peer_mss: usize) {
        // RFC 9293 §3.7.1: the effective send MSS is the smaller of the
        // peer's MSS and what our MTU allows; options come out of it.
        let mss = peer_mss.min(self.rcv.rmss).max(64);
        let options = if self.ts.enabled { TIMESTAMP_OPTION_LEN } else { 0 };
        self.snd.smss = mss - options;
        self.loss.cc.set_smss(self.snd.smss);
    }

    /// RFC 9293 §3.10.7.4, "Other states": a segment for SYN-RECEIVED or a
    /// later state, through the RFC's steps in order. A step that drops
    /// the segment, or finishes with it, breaks.
    fn handle_synchronized(&mut self, now: Instant, repr: &TcpRepr, payload: Bytes) -> ControlFlow<()> {
        if self.is_predicted_data(repr) {
            self.take_predicted_data(now, repr, payload);
            return ControlFlow::Break(());
        }
        self.check_repeated_syn(now, repr)?;
        self.check_paws(now, repr)?;
        self.check_sequence(now, repr)?;
        self.check_rst(now, repr)?;
        // Third: security. No compartments are implemented, so every
        // segment passes.
        self.check_syn(now, repr)?;
        self.check_ack(now, repr)?;
        // Sixth: URG. Not implemented: urgent data is delivered in line
        // with the rest, the pointer ignored.
        let accepts_data = matches!(self.state, TcpState::Established | TcpState::FinWait1 | TcpState::FinWait2);
        self.process_text(now, repr, payload, accepts_data)?;
        self.process_fin(now, repr, accepts_data);
        ControlFlow::Continue(())
    }

    /// A retransmitted SYN in SYN-RECEIVED: the peer lost our SYN-ACK,
    /// or (simultaneous open) this is its SYN-ACK.
    fn check_repeated_syn(&mut self, now: Instant, repr: &TcpRepr) -> ControlFlow<()> {
        let flags = repr.flags;
        if self.state == TcpState::SynReceived && flags.syn() && !flags.rst() && repr.seq_number == self.rcv.irs {
            if flags.ack() && repr.ack_number == self.snd.max && self.snd.max == self.snd.iss + 1 {
                self.snd.una = repr.ack_number;
                self.update_window(repr);
                self.establish(now, repr);
                self.ack_now = true;
            } else {
                self.snd.nxt = self.snd.iss;
            }
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }

    /// PAWS (RFC 7323 §5.3), before the sequence check.
    fn check_paws(&mut self, now: Instant, repr: &TcpRepr) -> ControlFlow<()> {
        if self.ts.enabled && !repr.flags.rst() {
            if let Some(ts) = repr.options.timestamp {
                let older = (ts.value.wrapping_sub(self.ts.recent) as i32) < 0;
                if older && now.saturating_duration_since(self.ts.recent_at) < PAWS_IDLE_LIMIT {
                    self.ack_now = true;
                    return ControlFlow::Break(());
                }
            }
        }
        ControlFlow::Continue(())
    }

    /// First: the acceptability test (RFC 9293 §3.10.7.4, four cases);
    /// then, for an acceptable segment, TS.Recent (RFC 7323 §4.3).
    fn check_sequence(&mut self, now: Instant, repr: &TcpRepr) -> ControlFlow<()> {
        let flags = repr.flags;
        let seg_len = repr.segment_len();
        let rcv_wnd = self.receive_space();
        let seq = repr.seq_number;
        let acceptable = match (seg_len, rcv_wnd) {
            (0, 0) => seq == self.rcv.nxt,
            (0, _) => seq.in_range(self.rcv.nxt, self.rcv.nxt + rcv_wnd),
            (_, 0) => false,
            (_, _) => {
                seq.in_range(self.rcv.nxt, self.rcv.nxt + rcv_wnd)
                    || (seq + (seg_len - 1)).in_range(self.rcv.nxt, self.rcv.nxt + rcv_wnd)
            }
        };
        if !acceptable {
            // A zero-window probe at RCV.NXT is not acceptable but must be
            // acknowledged, as must anything else that is not a reset.
            if !flags.rst() {
                self.ack_now = true;
            }
            // RFC 9293 §3.10.7.4: "If the RCV.WND is zero, no segments will
            // be acceptable, but special allowance should be made to accept
            // valid ACKs". Without it, a receiver whose buffer is full never
            // learns that its own data was acknowledged: if its reader waits
            // for that (an echo server blocked writing), neither side moves.
            // The same holds for a window that is open but that the peer
            // has filled: its SND.NXT is then our right edge, and its pure
            // ACKs carry SEG.SEQ = RCV.NXT + RCV.WND, one past what the test
            // accepts (Linux takes them: its right edge is inclusive). If
            // the segment at RCV.NXT was lost, every ACK it sends until it
            // retransmits would be dropped; when its retransmission timer
            // has backed off, that stalls both directions.
            // So the ACK of a segment from past RCV.NXT (never an old one)
            // is taken, whatever the window: the peer's SEG.SEQ is never
            // past a window we advertised, and none is larger than the
            // receive buffer. The ACK still passes RFC 5961 §5.2's range
            // check in `process_ack`; the text is not taken.
            let peer_edge = self.rcv.nxt + (self.config.recv_buffer + 1);
            if flags.ack() && !flags.syn() && !flags.rst() && seq.in_range(self.rcv.nxt, peer_edge) {
                self.last_recv = now;
                if self.process_ack(now, repr) {
                    self.after_ack(now, flags);
                }
            }
            return ControlFlow::Break(());
        }
        self.last_recv = now;
        self.keepalive.probes = 0;

        // RFC 7323 §4.3: remember the timestamp of the segment that covers
        // the last ACK we sent.
        if self.ts.enabled {
            if let Some(ts) = repr.options.timestamp {
                if seq <= self.ts.last_ack_sent {
                    self.ts.recent = ts.value;
                    self.ts.recent_at = now;
                }
            }
        }
        ControlFlow::Continue(())
    }

    /// Second: RST (RFC 9293 §3.10.7.4, with RFC 5961 §3.2's exact match).
    fn check_rst(&mut self, now: Instant, repr: &TcpRepr) -> ControlFlow<()> {
        if !repr.flags.rst() {
            return ControlFlow::Continue(());
        }
        if repr.seq_number == self.rcv.nxt {
            let error = match self.state {
                TcpState::SynReceived if self.passive => None,
                TcpState::SynReceived => Some(ConnectionError::Refused),
                TcpState::Closing | TcpState::LastAck | TcpState::TimeWait => None,
                _ => Some(ConnectionError::Reset),
            };
            self.enter_closed(error);
        } else {
            self.send_challenge_ack(now);
        }
        ControlFlow::Break(())
    }

    /// Fourth: a SYN in a synchronized state gets a challenge ACK (RFC
    /// 5961 §4.2).
    fn check_syn(&mut self, now: Instant, repr: &TcpRepr) -> ControlFlow<()> {
        if repr.flags.syn() {
            self.send_challenge_ack(now);
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }

    /// Fifth: ACK (RFC 9293 §3.10.7.4): SYN-RECEIVED's ACK of our SYN, then
    /// [`Self::process_ack`] and the state changes it makes.
    fn check_ack(&mut self, now: Instant, repr: &TcpRepr) -> ControlFlow<()> {
        if !repr.flags.ack() {
            return ControlFlow::Break(());
        }
        if self.state == TcpState::SynReceived {
            if self.snd.una < repr.ack_number && repr.ack_number <= self.snd.max {
                self.snd.una = repr.ack_number;
                self.update_window(repr);
                self.establish(now, repr);
            } else {
                self.pending_rst = Some(self.rst_reply(repr));
                return ControlFlow::Break(());
            }
        }
        if !self.process_ack(now, repr) || !self.after_ack(now, repr.flags) {
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }

    /// Seventh: segment text (RFC 9293 §3.10.7.4), taken in the states
    /// that receive (`accepts_data`, decided before this step).
    fn process_text(&mut self, now: Instant, repr: &TcpRepr, payload: Bytes, accepts_data: bool) -> ControlFlow<()> {
        if repr.payload_len > 0 {
            if !accepts_data {
                return ControlFlow::Break(());
            }
            if self.user_closed {
                // RFC 2525 §2.17: nobody will read this.
                self.pending_rst = Some(self.rst_repr(self.snd.nxt));
                self.enter_closed(None);
                return ControlFlow::Break(());
            }
            self.take_data(now, repr.seq_number, payload);
        }
        ControlFlow::Continue(())
    }

    /// Eighth: FIN (RFC 9293 §3.10.7.4); one that arrives ahead of missing
    /// data waits for it. `accepts_data` is the seventh step's, from
    /// before the text was taken.
    fn process_fin(&mut self, now: Instant, repr: &TcpRepr, accepts_data: bool) {
        if repr.flags.fin() && accepts_data {
            let fin_seq = repr.seq_number + repr.payload_len;
            if fin_seq == self.rcv.nxt {
                self.take_fin(now);
            } else if fin_seq > self.rcv.nxt {
                self.rcv.ooo_fin = Some(fin_seq);
                self.ack_now = true;
            }
        }
    }

    /// Header prediction (Van Jacobson's fast path, as in 4.4BSD's
    /// `tcp_input`): whether `repr` is the next in-order segment of a bulk
    /// transfer towards us, carrying data and an ACK and nothing else, that
    /// acknowledges nothing new while we have nothing outstanding, and
    /// whose data fits the window. For such a segment each step of RFC
    /// 9293 §3.10.7.4 has a known outcome, so
    /// [`Self::take_predicted_data`] does only the steps that change
    /// something; every other segment takes the full path. Timestamps
    /// must be present and not older than TS.Recent (so PAWS, RFC 7323
    /// §5.3, passes), and no SACK blocks may come with it.
    fn is_predicted_data(&self, repr: &TcpRepr) -> bool {
        let ts_ok = match repr.options.timestamp {
            Some(ts) => !self.ts.enabled || (ts.value.wrapping_sub(self.ts.recent) as i32) >= 0,
            None => !self.ts.enabled,
        };
        self.state == TcpState::Established
            && repr.flags.0 & !TcpFlags::PSH.0 == TcpFlags::ACK.0
            && repr.seq_number == self.rcv.nxt
            && repr.ack_number == self.snd.una
            && self.snd.una == self.snd.max
            && repr.payload_len > 0
            && repr.payload_len <= self.receive_space()
            && repr.options.sack_blocks.is_empty()
            && !self.user_closed
            && ts_ok
    }

    /// The steps of RFC 9293 §3.10.7.4 that change state for a segment
    /// [`Self::is_predicted_data`] accepted, in the full path's order: it
    /// is acceptable (it starts at RCV.NXT and fits the window), TS.Recent
    /// is taken from it (RFC 7323 §4.3), its ACK is a duplicate of SND.UNA
    /// with nothing in flight (no congestion response: RFC 5681 §2 counts
    /// only ACKs without data) that may still update the send window, and
    /// its text is queued.
    fn take_predicted_data(&mut self, now: Instant, repr: &TcpRepr, payload: Bytes) {
        let seq = repr.seq_number;
        self.last_recv = now;
        self.keepalive.probes = 0;
        if let Some(ts) = repr.options.timestamp {
            if self.ts.enabled && seq <= self.ts.last_ack_sent {
                self.ts.recent = ts.value;
                self.ts.recent_at = now;
            }
        }
        self.last_progress = now;
        if self.loss.sack {
            // Nothing is outstanding, so this only drops stale marks.
            self.loss.scoreboard.update(self.snd.una, self.snd.max, &repr.options.sack_blocks);
        }
        let ack = repr.ack_number;
        if self.snd.wl1 < seq || (self.snd.wl1 == seq && self.snd.wl2 <= ack) {
            self.update_window(repr);
        }
        self.take_data(now, seq, payload);
    }

    /// The state changes an acceptable ACK makes (RFC 9293 §3.10.7.4,
    /// fifth step, per state). Returns false if the segment's text and
    /// FIN are not to be processed.
    fn after_ack(&mut self, now: Instant, flags: TcpFlags) -> bool {
        match self.state {
            TcpState::FinWait1 if self.fin_acked() => {
                self.state = TcpState::FinWait2;
                self.fin_wait_2_since = Some(now);
            }
            TcpState::Closing if self.fin_acked() => self.enter_time_wait(now),
            TcpState::LastAck if self.fin_acked() => {
                self.enter_closed(None);
                return false;
            }
            TcpState::TimeWait => {
                // A retransmitted FIN: acknowledge it and restart 2·MSL.
                if flags.fin() {
                    self.ack_now = true;
                    self.enter_time_wait(now);
                }
                return false;
            }
            _ => {}
        }
        true
    }

    fn establish(&mut self, now: Instant, repr: &TcpRepr) {
        self.state = TcpState::Established;
        self.timers[Timer::Connect] = None;
        self.sample_rtt(now, repr);
        if self.snd.una == self.snd.max {
            self.timers[Timer::Retransmission] = None;
        }
        if self.snd.fin_queued {
            self.state = TcpState::FinWait1;
        }
    }

    /// RFC 9293 §3.10.7.4 fifth step for synchronized states, with RFC
    /// 5961 §5.2's range check. Returns false if the segment is dropped.
    fn process_ack(&mut self, now: Instant, repr: &TcpRepr) -> bool {
        let ack = repr.ack_number;
        if self.persist.backoff > 0 && self.snd.max == self.snd.una && ack == self.snd.una + 1 && self.data_end() > ack
        {
            // The peer took our zero-window probe's byte.
            self.snd.max = ack;
        }
        if ack > self.snd.max {
            // Acknowledges something not yet sent.
            self.ack_now = true;
            return false;
        }
        let lowest = self.snd.una.sub_len(self.snd.max_wnd.min(1 << 30)); // SND.UNA − MAX.SND.WND
        if ack < lowest {
            self.send_challenge_ack(now);
            return false;
        }
        self.last_progress = now;
        if ack > self.snd.una {
            let acked = ack - self.snd.una;
            self.snd.una = ack;
            if self.loss.una_rexmit_at.is_some_and(|(seq, _)| seq < ack) {
                self.loss.una_rexmit_at = None; // acknowledged: done with it
            }
            if self.snd.nxt < ack {
                self.snd.nxt = ack;
            }
            let data_acked = (ack - self.snd.buf_start).min(self.snd.buf.len());
            self.snd.buf.consume(data_acked);
            self.snd.buf_start += data_acked;
            self.sample_rtt(now, repr);
            // RFC 6298 §5.2–5.3.
            self.timers[Timer::Retransmission] =
                if self.snd.una == self.snd.max { None } else { now.checked_add(self.loss.rtt.rto()) };
            if self.loss.sack {
                // RFC 6675 §5: every ACK updates the scoreboard.
                self.loss.scoreboard.update(self.snd.una, self.snd.max, &repr.options.sack_blocks);
            }
            let flight = self.snd.max - self.snd.una;
            if self.loss.cc.on_new_ack(now, ack, acked, flight, self.loss.rtt.srtt()) == AckAction::RetransmitFirst {
                self.loss.retransmit_first = true;
            }
        } else if ack == self.snd.una && repr.payload_len == 0 && !repr.flags.fin() && self.snd.max > self.snd.una {
            let newly_sacked = if self.loss.sack {
                self.loss.scoreboard.update(self.snd.una, self.snd.max, &repr.options.sack_blocks)
            } else {
                0
            };
            // A duplicate acknowledgment: RFC 5681 §2 wants the window
            // unchanged; RFC 6675 §2 also counts an ACK whose SACK blocks
            // report new data (a window update cannot hide a loss then).
            let same_window = usize::from(repr.window_len) << self.snd.wscale == self.snd.wnd;
            if same_window || newly_sacked > 0 {
                self.on_dup_ack(now);
                self.check_lost_retransmission(now);
            }
        } else if self.loss.sack && ack == self.snd.una {
            self.loss.scoreboard.update(self.snd.una, self.snd.max, &repr.options.sack_blocks);
            if !self.loss.scoreboard.ranges().is_empty() {
                self.check_lost_retransmission(now);
            }
        }
        // RFC 9293 §3.10.7.4: update the window from the newest segment.
        if self.snd.wl1 < repr.seq_number || (self.snd.wl1 == repr.seq_number && self.snd.wl2 <= ack) {
            self.update_window(repr);
        }
        true
    }

    /// RFC 5681 §3.2 / RFC 6675 §5: count a duplicate ACK; on the third
    /// (or when the scoreboard already deems SND.UNA's segment lost),
    /// retransmit it and enter recovery.
    fn on_dup_ack(&mut self, now: Instant) {
        let flight = self.snd.max - self.snd.una;
        // RFC 6675 §5 step 2: IsLost(HighACK + 1).
        let first_lost = self.loss.sack && self.loss.scoreboard.is_lost(self.snd.una, self.snd.smss);
        if self.loss.cc.on_dup_ack(now, flight, self.snd.max, self.loss.sack, first_lost) == AckAction::RetransmitFirst
        {
            self.loss.retransmit_first = true;
            self.loss.rtt_sample = None;
            self.stats.fast_recoveries += 1;
            if self.loss.sack {
                self.stats.sack_recoveries += 1;
                self.loss.scoreboard.start_recovery();
            }
        }
    }

    /// Retransmits the segment at SND.UNA again when its last
    /// retransmission was lost as well.
    ///
    /// RFC 6675 repairs each hole once per recovery, and after a timeout
    /// RFC 6675 §5.1 (and RFC 6582 §3.2 step 4 without SACK) forbids a
    /// new recovery until everything sent before it is acknowledged, so a
    /// lost retransmission waits for the next, backed-off, timeout. Under
    /// heavy loss that is most retransmissions at SND.UNA, and nearly all
    /// of the transfer time. RFC 8985 (RACK) §6.2 instead deems
    /// a retransmission lost once a round trip and a reordering allowance
    /// have passed since it was sent while later data was delivered. The
    /// same test, for the one segment that holds SND.UNA back: it was
    /// retransmitted more than 1.5·SRTT ago, and an ACK that shows the
    /// peer received data beyond it (a duplicate ACK, or SACK blocks; the
    /// caller checks) still does not cover it: the peer sent that ACK
    /// about one SRTT after our retransmission, which should have reached
    /// it by then. Only that segment is sent, at most once per 1.5·SRTT;
    /// this is not a new congestion event (the loss it repairs was already
    /// answered), so the window is left alone, as RFC 8985 §9.3 leaves it
    /// for a retransmission lost in the same recovery. A false positive
    /// (a reordered ACK) costs one needless segment.
    fn check_lost_retransmission(&mut self, now: Instant) {
        let Some((seq, sent_at)) = self.loss.una_rexmit_at else { return };
        let Some(srtt) = self.loss.rtt.srtt() else { return };
        if seq != self.snd.una || self.loss.retransmit_first {
            return;
        }
        if now.saturating_duration_since(sent_at) > srtt + srtt / 2 {
            self.stats.lost_retransmissions += 1;
            self.loss.retransmit_first = true;
            self.loss.rtt_sample = None;
        }
    }

    fn update_window(&mut self, repr: &TcpRepr) {
        // RFC 7323 §2.2: the window of a SYN is never scaled.
        let shift = if repr.flags.syn() { 0 } else { self.snd.wscale };
        self.snd.wnd = usize::from(repr.window_len) << shift;
        self.snd.max_wnd = self.snd.max_wnd.max(self.snd.wnd);
        self.snd.wl1 = repr.seq_number;
        self.snd.wl2 = repr.ack_number;
        if self.snd.wnd > 0 {
            self.timers[Timer::Persist] = None;
            self.persist.backoff = 0;
        }
    }

    fn sample_rtt(&mut self, now: Instant, repr: &TcpRepr) {
        // RFC 7323 §4.1: with timestamps, TSecr gives a sample per ACK of
        // new data, unambiguous even for retransmissions.
        if self.ts.enabled {
            if let Some(ts) = repr.options.timestamp {
                let elapsed = self.ts_clock(now).wrapping_sub(ts.echo);
                // Karn's rule (RFC 6298 §3) for timestamps: a receiver
                // echoes TS.Recent, which a duplicate segment does not
                // update (RFC 7323 §4.3). If the ACK of the original was
                // lost, the ACK our go-back-N retransmission draws echoes
                // the original's timestamp, and the "sample" holds the
                // whole timeout. Under heavy loss such samples drove SRTT
                // to seconds; echoes from before the last
                // timeout are ambiguous, so they are not used.
                let stale = self.ts.at_timeout.is_some_and(|t| (ts.echo.wrapping_sub(t) as i32) < 0);
                if ts.echo != 0 && elapsed < 1 << 30 && !stale {
                    self.loss.rtt.sample(Duration::from_millis(u64::from(elapsed)));
                    // Later echoes are later still: forget the mark before
                    // the 2^31 ms timestamp wrap could make them look old.
                    self.ts.at_timeout = None;
                }
                return;
            }
        }
        // Otherwise one timed segment at a time, never a retransmitted one
        // (Karn's rule, RFC 6298 §3).
        if let Some((end, sent_at)) = self.loss.rtt_sample {
            if repr.ack_number >= end {
                self.loss.rtt.sample(now.saturating_duration_since(sent_at));
                self.loss.rtt_sample = None;
            }
        }
    }

    fn fin_acked(&self) -> bool {
        self.snd.fin_queued && self.snd.una == self.data_end() + 1
    }

    fn enter_time_wait(&mut self, now: Instant) {
        self.state = TcpState::TimeWait;
        self.timers[Timer::Retransmission] = None;
        self.timers[Timer::Persist] = None;
        self.timers[Timer::TimeWait] = now.checked_add(self.config.msl.saturating_mul(2));
    }

    /// Free space in the receive buffer: the receive window (RFC 9293
    /// §3.8.6.2.2; out-of-order data lies inside it).
    fn receive_space(&self) -> usize {
        self.rcv.buf.free()
    }

    fn take_data(&mut self, now: Instant, seq: SeqNumber, mut payload: Bytes) {
        let space = self.receive_space();
        // Trim what we already have and what lies beyond the window.
        if seq < self.rcv.nxt {
            let skip = (self.rcv.nxt - seq).min(payload.len());
            payload = payload.slice(skip..);
        }
        let start = seq.max(self.rcv.nxt);
        let room = (self.rcv.nxt + space) - start;
        if payload.len() > room {
            payload = payload.slice(..room);
        }
        if payload.is_empty() {
            self.ack_now = true;
            return;
        }
        if start != self.rcv.nxt {
            // Out of order: hold it and send a duplicate ACK at once
            // (RFC 5681 §4.2).
            self.rcv.ooo.insert(start, payload, now);
            self.ack_now = true;
            return;
        }
        let filled_gap = !self.rcv.ooo.is_empty();
        // Everything here lies inside the window we offered, so it fits;
        // counting what the buffer took keeps RCV.NXT true to the bytes
        // held even if that ever failed (the peer would resend the rest).
        let mut taken = self.rcv.buf.write(payload, Some(now));
        self.rcv.nxt += taken;
        while let Some((chunk, received)) = self.rcv.ooo.pop_ready(self.rcv.nxt) {
            let len = chunk.len();
            let n = self.rcv.buf.write(chunk, received);
            taken += n;
            self.rcv.nxt += n;
            if n < len {
                break;
            }
        }
        if self.rcv.ooo_fin == Some(self.rcv.nxt) {
            self.take_fin(now);
        }
        // RFC 9293 §3.8.6.3 and RFC 5681 §4.2: ACK at least every second
        // full-sized segment, at once when a gap was filled, else within
        // the delayed-ACK time. The count is SHLD-19's other form, 2·RMSS
        // bytes of new data: with timestamps a full segment carries 12
        // bytes less than RMSS, so that is every third one in a bulk
        // transfer (counting segments of RMSS − 12 bytes instead costs
        // 45% more ACKs, ~7% more instructions per segment in tcp_bench).
        self.rcv.unacked_bytes += taken;
        if filled_gap || self.rcv.unacked_bytes >= 2 * self.rcv.rmss || self.config.delayed_ack.is_zero() {
            self.ack_now = true;
        } else if self.timers[Timer::DelayedAck].is_none() {
            self.timers[Timer::DelayedAck] = now.checked_add(self.config.delayed_ack);
        }
    }

    fn take_fin(&mut self, now: Instant) {
        self.rcv.ooo_fin = None;
        self.rcv.nxt += 1;
        self.rcv.fin_received = true;
        self.ack_now = true;
        match self.state {
            TcpState::SynReceived | TcpState::Established => self.state = TcpState::CloseWait,
            TcpState::FinWait1 if self.fin_acked() => self.enter_time_wait(now),
            TcpState::FinWait1 => self.state = TcpState::Closing,
            TcpState::FinWait2 => self.enter_time_wait(now),
            _ => {}
        }
    }

    /// RFC 5961 §7: at most `challenge_acks_per_second` challenge ACKs per
    /// second on this connection.
    fn send_challenge_ack(&mut self, now: Instant) {
        if now.saturating_duration_since(self.challenge.window_start) >= Duration::from_secs(1) {
            self.challenge.window_start = now;
            self.challenge.count = 0;
        }
        if self.challenge.count < self.config.challenge_acks_per_second {
            self.challenge.count += 1;
            self.ack_now = true;
        }
    }

    // ---- Transmission ---------------------------------------------------

    fn data_end(&self) -> SeqNumber {
        self.snd.buf_start + self.snd.buf.len()
    }

    fn ts_clock(&self, now: Instant) -> u32 {
        // RFC 7323 §5.4: a 1 ms clock, offset per connection.
        ((now.as_nanos() / 1_000_000) as u32).wrapping_add(self.ts.offset)
    }

    fn rst_repr(&self, seq: SeqNumber) -> TcpRepr {
        TcpRepr {
            src_port: self.local.port(),
            dst_port: self.remote.port(),
            seq_number: seq,
            ack_number: SeqNumber(0),
            flags: TcpFlags::RST,
            window_len: 0,
            options: TcpOptions::default(),
            payload_len: 0,
        }
    }

    /// The reset answering an unacceptable ACK (RFC 9293 §3.10.7.3/4):
    /// `<SEQ=SEG.ACK><CTL=RST>`.
    fn rst_reply(&self, repr: &TcpRepr) -> TcpRepr {
        self.rst_repr(repr.ack_number)
    }

    /// The window field to send and the right edge it advertises.
    fn window_to_advertise(&self) -> usize {
        let space = self.receive_space();
        // Receiver SWS avoidance (RFC 9293 §3.8.6.2.2): do not advertise
        // a small increase; but never move the right edge left.
        let threshold = (self.config.recv_buffer / 2).min(self.rcv.rmss);
        let already = self.rcv.adv - self.rcv.nxt;
        let offered = if space.saturating_sub(already) >= threshold { space } else { already };
        offered.min(usize::from(u16::MAX) << self.rcv.wscale)
    }

    /// The next segment to send, if any; call it until it returns `None`
    /// after every [`Self::handle_segment`], [`Self::handle_timeout`] and
    /// user call. The segment is recorded as sent when it is returned.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<TcpSegment<'_>> {
        if let Some(rst) = self.pending_rst.take() {
            return Some(TcpSegment::header_only(rst));
        }
        match self.state {
            TcpState::Closed => return None,
            TcpState::SynSent | TcpState::SynReceived if self.snd.nxt == self.snd.iss => {
                return Some(self.transmit_syn(now));
            }
            _ => {}
        }
        if self.is_synchronized() && self.state != TcpState::TimeWait && self.may_have_data_to_send() {
            if let Some((seq, len, fin)) = self.next_data_segment(now) {
                return Some(self.transmit_data(now, seq, len, fin));
            }
        }
        if self.keepalive.probe_now {
            // RFC 9293 §3.8.4: a segment with SEG.SEQ = SND.NXT − 1 makes
            // the peer answer with an ACK.
            self.keepalive.probe_now = false;
            let repr = self.ack_repr(now, self.snd.una.sub_len(1));
            return Some(TcpSegment::header_only(repr));
        }
        if self.ack_now && self.state != TcpState::SynSent {
            // SEG.SEQ = SND.MAX, not SND.NXT: after a go-back-N timeout
            // SND.NXT is back at SND.UNA, below the peer's RCV.NXT when it
            // holds data we have not yet seen acknowledged, and the peer's
            // acceptability test (RFC 9293 §3.10.7.4, RCV.NXT =< SEG.SEQ)
            // would drop the ACK with its window (Linux does). SND.MAX is
            // the next new sequence number, what a pure ACK would carry had
            // nothing been rewound (4.4BSD's tcp_output does the same).
            let repr = self.ack_repr(now, self.snd.max);
            return Some(TcpSegment::header_only(repr));
        }
        None
    }

    fn transmit_syn(&mut self, now: Instant) -> TcpSegment<'static> {
        let syn_ack = self.state == TcpState::SynReceived;
        let mut options = TcpOptions { max_seg_size: Some(self.rcv.rmss as u16), ..TcpOptions::default() };
        // RFC 7323 §2.2 and §3.2, RFC 2018 §2: a SYN-ACK offers only what
        // the SYN offered.
        if self.config.window_scaling && (!syn_ack || self.peer_syn.window_scale.is_some()) {
            options.window_scale = Some(self.rcv.wscale);
        }
        if self.config.sack && (!syn_ack || self.peer_syn.sack_permitted) {
            options.sack_permitted = true;
        }
        if self.config.timestamps && (!syn_ack || self.peer_syn.timestamp.is_some()) {
            options.timestamp =
                Some(TcpTimestamp { value: self.ts_clock(now), echo: if syn_ack { self.ts.recent } else { 0 } });
        }
        let mut flags = TcpFlags::SYN;
        if syn_ack {
            flags |= TcpFlags::ACK;
        }
        let repr = TcpRepr {
            src_port: self.local.port(),
            dst_port: self.remote.port(),
            seq_number: self.snd.iss,
            ack_number: if syn_ack { self.rcv.nxt } else { SeqNumber(0) },
            flags,
            // RFC 7323 §2.2: the window in a SYN is not scaled.
            window_len: self.receive_space().min(usize::from(u16::MAX)) as u16,
            options,
            payload_len: 0,
        };
        if syn_ack {
            self.after_ack_sent(repr.ack_number, usize::from(repr.window_len));
        }
        self.record_sent(now, self.snd.iss, 1);
        TcpSegment::header_only(repr)
    }

    /// False when [`Self::next_data_segment`] would surely find nothing:
    /// no retransmission or probe is due, no SACK recovery is under way,
    /// and every byte (and the FIN) was sent. Most calls after a received
    /// segment end here, so this is checked before the window arithmetic.
    fn may_have_data_to_send(&self) -> bool {
        let data_end = self.data_end();
        self.loss.retransmit_first
            || self.persist.probe_now
            || self.snd.nxt != data_end
            || (self.snd.fin_queued && self.snd.nxt <= data_end)
            || self.loss.cc.recovery().is_some()
    }

    /// Chooses the next data (or FIN) segment: `(seq, payload length, FIN)`.
    fn next_data_segment(&mut self, now: Instant) -> Option<(SeqNumber, usize, bool)> {
        let data_end = self.data_end();
        // The FIN is still to be sent (again, after a go-back-N timeout).
        let fin_pending = self.snd.fin_queued && self.snd.nxt <= data_end;
        if self.loss.retransmit_first {
            // Fast retransmit or a NewReno partial ACK: one segment at
            // SND.UNA, without moving SND.NXT.
            self.loss.retransmit_first = false;
            let len = (data_end - self.snd.una).min(self.snd.smss);
            let fin = self.snd.fin_queued && self.snd.una + len == data_end && self.snd.max > data_end;
            if len > 0 || fin {
                self.loss.rtt_sample = None;
                if self.loss.cc.recovery().is_some_and(|r| r.sack) {
                    // RFC 6675 §5 step 4.3: HighRxt covers this segment.
                    self.loss.scoreboard.on_retransmit(self.snd.una + len + usize::from(fin), None);
                }
                return Some((self.snd.una, len, fin));
            }
        }
        if let Some(recovery) = self.loss.cc.recovery().filter(|r| r.sack) {
            return self.next_recovery_segment(recovery.point);
        }
        if self.loss.sack && self.snd.nxt < self.snd.max {
            // Go-back-N after a timeout: skip what the peer SACKed since
            // (the scoreboard was cleared at the timeout, so this is fresh).
            // Ranges are disjoint and not adjacent: one jump suffices.
            if let Some(end) = self.loss.scoreboard.sacked_until(self.snd.nxt) {
                self.snd.nxt = end.min(self.snd.max);
            }
        }
        let avail = data_end - self.snd.nxt;
        let in_flight = (self.snd.nxt - self.snd.una).saturating_sub(self.loss.scoreboard.sacked_below(self.snd.nxt));
        let window = self.snd.wnd.min(self.loss.cc.cwnd());
        let usable = window.saturating_sub(in_flight);
        let len = avail.min(usable).min(self.snd.smss);
        if self.persist.probe_now {
            self.persist.probe_now = false;
            if avail > 0 && self.snd.wnd == 0 && in_flight == 0 {
                return Some((self.snd.nxt, 1, false));
            }
        }
        let retransmission = self.snd.nxt < self.snd.max;
        let all_in = len == avail;
        let fin = fin_pending && all_in;
        if len == 0 && !fin {
            if avail > 0 && self.snd.wnd == 0 && in_flight == 0 && self.timers[Timer::Persist].is_none() {
                // RFC 9293 §3.8.6.1: start probing the zero window.
                let wait = self.loss.rtt.rto().saturating_mul(1 << self.persist.backoff).min(self.config.max_rto);
                self.timers[Timer::Persist] = now.checked_add(wait);
            }
            return None;
        }
        // Sender SWS avoidance and Nagle (RFC 9293 §3.8.6.2.1, §3.7.4).
        let may_send = retransmission
            || fin
            || len == self.snd.smss
            || (all_in && (self.nodelay || in_flight == 0))
            || (self.snd.max_wnd > 0 && len >= self.snd.max_wnd / 2 && (self.nodelay || in_flight == 0));
        if !may_send {
            return None;
        }
        Some((self.snd.nxt, len, fin))
    }

    /// RFC 6675 §5 step C: during SACK recovery, the next segment that
    /// NextSeg() picks, while `cwnd − pipe` leaves room for a full one.
    /// `point` is the recovery point, which a rescue retransmission
    /// records as RescueRxt.
    fn next_recovery_segment(&mut self, point: SeqNumber) -> Option<(SeqNumber, usize, bool)> {
        let pipe = self.loss.scoreboard.pipe(self.snd.una, self.snd.max, self.snd.smss);
        if self.loss.cc.cwnd() < pipe + self.snd.smss {
            return None;
        }
        let data_end = self.data_end();
        // New data is sent at HighData (SND.NXT is there during recovery),
        // as far as the peer's window allows.
        let avail = data_end - self.snd.max;
        let room = (self.snd.una + self.snd.wnd) - self.snd.max;
        let new_len = avail.min(room).min(self.snd.smss);
        let new_fin = self.snd.fin_queued && self.snd.max <= data_end && new_len == avail;
        let new_data = self.snd.nxt == self.snd.max && (new_len > 0 || new_fin);
        match self.loss.scoreboard.next_segment(self.snd.una, self.snd.max, self.snd.smss, new_data)? {
            NextSegment::NewData => Some((self.snd.max, new_len, new_fin)),
            NextSegment::Retransmit { seq, max_len, rescue } => {
                let len = max_len.min(self.snd.smss).min(data_end - seq);
                let fin = self.snd.fin_queued && seq + len == data_end && self.snd.max > data_end;
                if len == 0 && !fin {
                    return None;
                }
                // RFC 6675 §5 step C.2.
                self.loss.scoreboard.on_retransmit(seq + len + usize::from(fin), rescue.then_some(point));
                Some((seq, len, fin))
            }
        }
    }

    fn transmit_data(&mut self, now: Instant, seq: SeqNumber, len: usize, fin: bool) -> TcpSegment<'_> {
        let offset = seq - self.snd.buf_start;
        // A zero-window probe (RFC 9293 §3.8.6.1): one byte past the
        // window, not booked as sent (no retransmission timer, no
        // congestion response); the persist timer repeats it with backoff,
        // and `process_ack` accepts its acknowledgment.
        let probe = self.snd.wnd == 0 && seq == self.snd.una && self.snd.max == self.snd.una && len == 1 && !fin;
        let mut flags = TcpFlags::ACK;
        if fin {
            flags |= TcpFlags::FIN;
        }
        if len > 0 && seq + len == self.data_end() {
            flags |= TcpFlags::PSH;
        }
        let mut repr = self.ack_repr(now, seq);
        repr.flags = flags;
        repr.payload_len = len;
        let seg_len = len + usize::from(fin);
        if probe {
            let wait = self.loss.rtt.rto().saturating_mul(1 << self.persist.backoff).min(self.config.max_rto);
            self.timers[Timer::Persist] = now.checked_add(wait);
        } else {
            // A retransmission below SND.NXT (fast retransmit, a SACK hole)
            // leaves it; a segment that reaches past it moves it.
            let end = seq + seg_len;
            if seq <= self.snd.nxt && end > self.snd.nxt {
                self.snd.nxt = end;
            }
            self.stats.data_segments_sent += 1;
            if seq < self.snd.max {
                self.stats.retransmitted_segments += 1;
                if seq == self.snd.una {
                    self.loss.una_rexmit_at = Some((seq, now));
                }
            }
            self.record_sent(now, seq, seg_len);
        }
        let payload = self.snd.buf.slices(offset, len);
        TcpSegment { repr, payload }
    }

    /// Books a transmission of `seg_len` sequence numbers at `seq`.
    fn record_sent(&mut self, now: Instant, seq: SeqNumber, seg_len: usize) {
        let end = seq + seg_len;
        if seq == self.snd.nxt && seg_len > 0 && self.snd.nxt < end {
            self.snd.nxt = end;
        }
        if end > self.snd.max {
            if self.snd.max == self.snd.una {
                self.last_progress = now;
            }
            // Time one new segment at a time (RFC 6298 §3; Karn's rule
            // keeps retransmissions out).
            if seq >= self.snd.max && self.loss.rtt_sample.is_none() && !self.ts.enabled {
                self.loss.rtt_sample = Some((end, now));
            }
            self.snd.max = end;
        } else if seg_len > 0 {
            // A retransmission: Karn's rule (RFC 6298 §3) discards the
            // sample in progress, which it may cover.
            self.loss.rtt_sample = None;
        }
        // RFC 6298 §5.1: start the timer if it is not running.
        if seg_len > 0 && self.timers[Timer::Retransmission].is_none() {
            self.timers[Timer::Retransmission] = now.checked_add(self.loss.rtt.rto());
        }
    }

    /// A segment header acknowledging RCV.NXT with the current window,
    /// timestamps and SACK blocks; books the ACK as sent.
    #[inline(always)]
    fn ack_repr(&mut self, now: Instant, seq: SeqNumber) -> TcpRepr {
        let window = self.window_to_advertise();
        let window_len = (window >> self.rcv.wscale).min(usize::from(u16::MAX)) as u16;
        let mut options = TcpOptions::default();
        if self.ts.enabled {
            options.timestamp = Some(TcpTimestamp { value: self.ts_clock(now), echo: self.ts.recent });
        }
        if self.loss.sack && !self.rcv.ooo.is_empty() {
            options.sack_blocks = self.rcv.ooo.sack_blocks();
        } else {
            options.sack_blocks = SackBlocks::EMPTY;
        }
        let repr = TcpRepr {
            src_port: self.local.port(),
            dst_port: self.remote.port(),
            seq_number: seq,
            ack_number: self.rcv.nxt,
            flags: TcpFlags::ACK,
            window_len,
            options,
            payload_len: 0,
        };
        self.after_ack_sent(self.rcv.nxt, usize::from(window_len) << self.rcv.wscale);
        repr
    }

    fn after_ack_sent(&mut self, ack: SeqNumber, window: usize) {
        self.ack_now = false;
        self.timers[Timer::DelayedAck] = None;
        self.rcv.unacked_bytes = 0;
        self.ts.last_ack_sent = ack;
        let edge = ack + window;
        self.rcv.adv = self.rcv.adv.max(edge);
    }
}

/// The reset a host sends for a segment that reached no connection and no
/// listener (RFC 9293 §3.10.7.1), or `None` if the segment is itself a
/// reset. `repr` is the segment received, with ports swapped in the answer.
pub fn reset_for_unknown(repr: &TcpRepr) -> Option<TcpRepr> {
    if repr.flags.rst() {
        return None;
    }
    let (seq, ack, flags) = if repr.flags.ack() {
        (repr.ack_number, SeqNumber(0), TcpFlags::RST)
    } else {
        (SeqNumber(0), repr.seq_number + repr.segment_len(), TcpFlags::RST | TcpFlags::ACK)
    };
    Some(TcpRepr {
        src_port: repr.dst_port,
        dst_port: repr.src_port,
        seq_number: seq,
        ack_number: ack,
        flags,
        window_len: 0,
        options: TcpOptions::default(),
        payload_len: 0,
    })
}

#[cfg(test)]
mod tests {
    //! Each test drives one connection with segments from a scripted peer
    //! (`send`) in explicit virtual time (`at`) and checks what it sends
    //! (`expect`, `expect_nothing`). The connection's ISS is 1000, the
    //! peer's 5000.
    use super::*;
    use core::net::{IpAddr, Ipv4Addr};
    use std::vec::Vec;

    const LOCAL: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 4000);
    const REMOTE: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), 80);
    const SYN: TcpFlags = TcpFlags::SYN;
    const ACK: TcpFlags = TcpFlags::ACK;
    const FIN: TcpFlags = TcpFlags(TcpFlags::FIN.0 | TcpFlags::ACK.0);
    const RST: TcpFlags = TcpFlags::RST;
    const SYN_ACK: TcpFlags = TcpFlags(TcpFlags::SYN.0 | TcpFlags::ACK.0);

    fn config() -> TcpConfig {
        // Options off so sequence numbers and windows read plainly; tests
        // of the options turn them on.
        TcpConfig { timestamps: false, sack: false, window_scaling: false, ..TcpConfig::default() }
    }

    struct Harness {
        now: Instant,
        conn: TcpConnection,
        peer_window: u16,
    }

    impl Harness {
        fn active(config: TcpConfig) -> Harness {
            let conn = TcpConnection::connect(Instant::ZERO, config, LOCAL, REMOTE, SeqNumber(1000));
            Harness { now: Instant::ZERO, conn, peer_window: 65_535 }
        }

        fn established(config: TcpConfig) -> Harness {
            let mut h = Harness::active(config);
            h.expect(SYN, 1000, 0);
            let mut syn_ack = repr(SYN_ACK, 5000, 1001, 65_535, 0);
            syn_ack.options.max_seg_size = Some(1460);
            h.send_repr(&syn_ack, b"");
            h.expect(ACK, 1001, 5001);
            assert_eq!(h.conn.state(), TcpState::Established);
            // The handshake took 0 ms, so the RTO is at its 200 ms floor.
            assert_eq!(h.conn.rto(), Duration::from_millis(200));
            h
        }

        fn passive(config: TcpConfig) -> Harness {
            let syn = repr(SYN, 5000, 0, 65_535, 0);
            let conn = TcpConnection::accept_syn(Instant::ZERO, config, LOCAL, REMOTE, SeqNumber(1000), &syn);
            Harness { now: Instant::ZERO, conn, peer_window: 65_535 }
        }

        /// Moves the clock to `ms` and runs the timers due.
        fn at(&mut self, ms: u64) {
            self.now = Instant::from_millis(ms);
            self.conn.handle_timeout(self.now);
        }

        fn send(&mut self, flags: TcpFlags, seq: u32, ack: u32, payload: &[u8]) {
            let r = repr(flags, seq, ack, self.peer_window, payload.len());
            self.send_repr(&r, payload);
        }

        fn send_repr(&mut self, r: &TcpRepr, payload: &[u8]) {
            self.conn.handle_segment(self.now, r, Bytes::copy_from_slice(payload));
        }

        fn sent(&mut self) -> Vec<(TcpRepr, Vec<u8>)> {
            let mut out = Vec::new();
            for _ in 0..1000 {
                let Some(seg) = self.conn.poll_transmit(self.now) else { return out };
                let mut payload = std::vec![0u8; seg.repr.payload_len];
                seg.copy_payload(&mut payload);
                out.push((seg.repr, payload));
            }
            panic!("poll_transmit never returned None");
        }

        /// Expects exactly one segment with these flags, SEQ and ACK (ACK
        /// checked only when the flags have ACK).
        fn expect(&mut self, flags: TcpFlags, seq: u32, ack: u32) -> (TcpRepr, Vec<u8>) {
            let mut sent = self.sent();
            assert_eq!(sent.len(), 1, "expected one segment, got {sent:?}");
            let (r, payload) = sent.remove(0);
            assert_eq!(r.flags.0 & !TcpFlags::PSH.0, flags.0, "flags of {r:?}");
            assert_eq!(r.seq_number, SeqNumber(seq), "SEQ of {r:?}");
            if flags.ack() {
                assert_eq!(r.ack_number, SeqNumber(ack), "ACK of {r:?}");
            }
            assert_eq!((r.src_port, r.dst_port), (LOCAL.port(), REMOTE.port()));
            (r, payload)
        }

        fn expect_nothing(&mut self) {
            let sent = self.sent();
            assert!(sent.is_empty(), "expected nothing, got {sent:?}");
        }
    }

    fn repr(flags: TcpFlags, seq: u32, ack: u32, window: u16, payload_len: usize) -> TcpRepr {
        TcpRepr {
            src_port: REMOTE.port(),
            dst_port: LOCAL.port(),
            seq_number: SeqNumber(seq),
            ack_number: SeqNumber(ack),
            flags,
            window_len: window,
            options: TcpOptions::default(),
            payload_len,
        }
    }

    // ---- Opening (RFC 9293 §3.5) ------------------------------------------

    #[test]
    fn active_open_three_way_handshake() {
        // RFC 9293 §3.5 figure 6; §3.7.1: the SYN carries MSS = MTU − 40.
        let mut h = Harness::active(config());
        assert_eq!(h.conn.state(), TcpState::SynSent);
        let (syn, _) = h.expect(SYN, 1000, 0);
        assert_eq!(syn.options.max_seg_size, Some(1460));
        h.expect_nothing();
        h.send(SYN_ACK, 5000, 1001, b"");
        assert_eq!(h.conn.state(), TcpState::Established);
        h.expect(ACK, 1001, 5001);
        assert_eq!(h.conn.poll_deadline(), None, "nothing outstanding, no timer");
    }

    #[test]
    fn passive_open_three_way_handshake() {
        // RFC 9293 §3.10.7.2 then §3.10.7.4 in SYN-RECEIVED.
        let mut h = Harness::passive(config());
        assert_eq!(h.conn.state(), TcpState::SynReceived);
        h.expect(SYN_ACK, 1000, 5001);
        h.send(ACK, 5001, 1001, b"hello");
        assert_eq!(h.conn.state(), TcpState::Established);
        let mut buf = [0u8; 16];
        assert_eq!(h.conn.recv(&mut buf), 5);
        assert_eq!(&buf[..5], b"hello");
    }

    #[test]
    fn simultaneous_open() {
        // RFC 9293 §3.5 figure 7: SYN crosses SYN; both answer SYN-ACK.
        let mut h = Harness::active(config());
        h.expect(SYN, 1000, 0);
        h.send(SYN, 5000, 0, b"");
        assert_eq!(h.conn.state(), TcpState::SynReceived);
        h.expect(SYN_ACK, 1000, 5001);
        h.send(SYN_ACK, 5000, 1001, b"");
        assert_eq!(h.conn.state(), TcpState::Established);
        h.expect(ACK, 1001, 5001);
    }

    #[test]
    fn syn_sent_answers_a_bad_ack_with_a_reset() {
        // RFC 9293 §3.10.7.3 first check: <SEQ=SEG.ACK><CTL=RST>.
        let mut h = Harness::active(config());
        h.expect(SYN, 1000, 0);
        h.send(ACK, 7, 999, b"");
        h.expect(RST, 999, 0);
        assert_eq!(h.conn.state(), TcpState::SynSent);
    }

    #[test]
    fn syn_sent_reset_refuses_only_with_an_acceptable_ack() {
        // RFC 9293 §3.10.7.3 second check.
        let mut h = Harness::active(config());
        h.expect(SYN, 1000, 0);
        h.send(RST, 0, 0, b"");
        assert_eq!(h.conn.state(), TcpState::SynSent);
        h.send(TcpFlags(RST.0 | ACK.0), 0, 1001, b"");
        assert_eq!(h.conn.state(), TcpState::Closed);
        assert_eq!(h.conn.error(), Some(ConnectionError::Refused));
        h.expect_nothing();
    }

    #[test]
    fn syn_retransmission_follows_rfc6298_backoff_then_times_out() {
        // RFC 6298 §2.1: first RTO 1 s; §5.5: doubled each time.
        let mut h = Harness::active(TcpConfig { connect_timeout: Duration::from_secs(10), ..config() });
        h.expect(SYN, 1000, 0);
        for (before, at) in [(999, 1000), (2999, 3000), (6999, 7000)] {
            h.at(before);
            h.expect_nothing();
            h.at(at);
            h.expect(SYN, 1000, 0);
        }
        h.at(10_000);
        assert_eq!(h.conn.state(), TcpState::Closed);
        assert_eq!(h.conn.error(), Some(ConnectionError::ConnectTimeout));
    }

    #[test]
    fn karn_rule_ignores_the_retransmitted_syn() {
        // RFC 6298 §3: no sample from a segment that was retransmitted, so
        // the backed-off RTO stays until a clean sample (§5.7).
        let mut h = Harness::active(config());
        h.expect(SYN, 1000, 0);
        h.at(1000);
        h.expect(SYN, 1000, 0);
        h.at(1100);
        h.send(SYN_ACK, 5000, 1001, b"");
        h.expect(ACK, 1001, 5001);
        assert_eq!(h.conn.srtt(), None);
        assert_eq!(h.conn.rto(), Duration::from_secs(2));
        // A segment sent once gives a sample: 100 ms → RTO = 100 + 4·50.
        assert_eq!(h.conn.send(b"x"), Ok(1));
        h.expect(ACK, 1001, 5001);
        h.at(1200);
        h.send(ACK, 5001, 1002, b"");
        assert_eq!(h.conn.srtt(), Some(Duration::from_millis(100)));
        assert_eq!(h.conn.rto(), Duration::from_millis(300));
    }

    // ---- Data transfer (RFC 9293 §3.8) -------------------------------------

    #[test]
    fn data_is_retransmitted_after_the_rto_with_backoff() {
        // RFC 6298 §5.1 start, §5.4 retransmit the earliest, §5.5 back off
        // (from the 200 ms floor, `TcpConfig::min_rto`).
        let mut h = Harness::established(config());
        assert_eq!(h.conn.send(b"abc"), Ok(3));
        let (_, p) = h.expect(ACK, 1001, 5001);
        assert_eq!(p, b"abc");
        h.at(199);
        h.expect_nothing();
        h.at(200);
        let (_, p) = h.expect(ACK, 1001, 5001);
        assert_eq!(p, b"abc");
        h.at(599);
        h.expect_nothing();
        h.at(600);
        h.expect(ACK, 1001, 5001);
        h.send(ACK, 5001, 1004, b"");
        assert_eq!(h.conn.send_queued(), 0);
        assert_eq!(h.conn.poll_deadline(), None);
    }

    #[test]
    fn delayed_ack_fires_after_the_delay() {
        // RFC 9293 §3.8.6.3: an ACK may wait, but less than 0.5 s.
        let mut h = Harness::established(config());
        h.send(ACK, 5001, 1001, b"one");
        h.expect_nothing();
        assert_eq!(h.conn.poll_deadline(), Some(Instant::from_millis(40)));
        h.at(39);
        h.expect_nothing();
        h.at(40);
        h.expect(ACK, 1001, 5004);
    }

    #[test]
    fn every_second_full_segment_is_acked_at_once() {
        // RFC 5681 §4.2 / RFC 9293 §3.8.6.3.
        let mut h = Harness::established(config());
        let full = [7u8; 1460];
        h.send(ACK, 5001, 1001, &full);
        h.expect_nothing();
        h.send(ACK, 6461, 1001, &full);
        h.expect(ACK, 1001, 7921);
    }

    #[test]
    fn out_of_order_data_is_held_and_dup_acked() {
        // RFC 5681 §4.2: immediate duplicate ACK for out-of-order data and
        // an immediate ACK when the gap fills.
        let mut h = Harness::established(config());
        h.send(ACK, 5004, 1001, b"def");
        h.expect(ACK, 1001, 5001);
        assert_eq!(h.conn.recv_available(), 0);
        assert_eq!(h.conn.recv_out_of_order(), 3);
        h.send(ACK, 5001, 1001, b"abc");
        h.expect(ACK, 1001, 5007);
        let mut buf = [0u8; 8];
        assert_eq!(h.conn.recv(&mut buf), 6);
        assert_eq!(&buf[..6], b"abcdef");
    }

    #[test]
    fn the_window_never_exceeds_the_receive_buffer() {
        // RFC 9293 §3.8.6.2.2: data beyond the advertised window is dropped.
        let mut h = Harness::established(TcpConfig { recv_buffer: 4, delayed_ack: Duration::ZERO, ..config() });
        h.send(ACK, 5001, 1001, b"abcdef");
        let (ack, _) = h.expect(ACK, 1001, 5005);
        assert_eq!(ack.window_len, 0);
        assert_eq!(h.conn.recv_available(), 4);
        // A zero-window probe is answered with the same ACK.
        h.send(ACK, 5005, 1001, b"e");
        h.expect(ACK, 1001, 5005);
        let mut buf = [0u8; 4];
        assert_eq!(h.conn.recv(&mut buf), 4);
        // Reading opened the window by more than half the buffer: update.
        let (update, _) = h.expect(ACK, 1001, 5005);
        assert_eq!(update.window_len, 4);
    }

    /// The SYN-ACK of a peer at ISN 5000 answering `syn` with MSS 1460 and
    /// timestamps (TSval 500, echoing the SYN's).
    fn timestamped_syn_ack(syn: &TcpRepr) -> TcpRepr {
        let mut syn_ack = repr(SYN_ACK, 5000, 1001, 65_535, 0);
        syn_ack.options.timestamp = Some(TcpTimestamp { value: 500, echo: syn.options.timestamp.unwrap().value });
        syn_ack.options.max_seg_size = Some(1460);
        syn_ack
    }

    #[test]
    fn in_order_data_updates_the_send_window_and_ts_recent() {
        // The in-order data segment of a bulk transfer towards us (header
        // prediction's case) still does what RFC 9293 §3.10.7.4 asks of
        // its ACK field: SND.WND from the newest segment; and RFC 7323
        // §4.3: TS.Recent from a segment at the last ACK sent.
        let config = TcpConfig { timestamps: true, delayed_ack: Duration::ZERO, ..config() };
        let mut h = Harness::active(config);
        let (syn, _) = h.expect(SYN, 1000, 0);
        let syn_ack = timestamped_syn_ack(&syn);
        h.send_repr(&syn_ack, b"");
        h.expect(ACK, 1001, 5001);
        let mss = h.conn.send_mss();
        assert_eq!(h.conn.send(&[7; 3000]).unwrap(), 3000);
        // A window of 1.5 segments lets one full segment out, not two.
        let mut data = repr(ACK, 5001, 1001, (mss + mss / 2) as u16, 3);
        data.options.timestamp = Some(TcpTimestamp { value: 600, echo: 0 });
        h.send_repr(&data, b"abc");
        assert_eq!(h.conn.recv_available(), 3);
        let (seg, payload) = h.expect(ACK, 1001, 5004);
        assert_eq!(payload.len(), mss);
        assert_eq!(seg.options.timestamp.unwrap().echo, 600);
    }

    #[test]
    fn a_zero_window_still_takes_acks() {
        // RFC 9293 §3.10.7.4: with RCV.WND zero no segment is acceptable,
        // "but special allowance should be made to accept valid ACKs". Our
        // buffer is full and our data is in flight; the peer's segments
        // (data we cannot take, a pure ACK from beyond RCV.NXT) still
        // acknowledge it.
        let mut h = Harness::established(TcpConfig { recv_buffer: 4, delayed_ack: Duration::ZERO, ..config() });
        h.send(ACK, 5001, 1001, b"abcd");
        h.expect(ACK, 1001, 5005);
        assert_eq!(h.conn.send(b"0123456789").unwrap(), 10);
        let (data, _) = h.expect(ACK, 1001, 5005);
        assert_eq!(data.payload_len, 10);
        // Data at RCV.NXT with an ACK of our first 4 bytes: the data is
        // refused (the window is zero), the ACK is taken.
        h.send(ACK, 5005, 1005, b"efgh");
        h.expect(ACK, 1011, 5005);
        assert_eq!(h.conn.send_queued(), 6);
        // A pure ACK whose SEQ is past RCV.NXT (the peer sent what we
        // refused) acknowledges the rest.
        h.send(ACK, 5009, 1011, b"");
        assert_eq!(h.conn.send_queued(), 0);
        assert_eq!(h.conn.recv_available(), 4, "nothing was taken into the full buffer");
        // The RFC 5961 §5.2 range check still applies: an ACK of data we
        // never sent changes nothing.
        h.send(ACK, 5005, 2000, b"");
        assert_eq!(h.conn.send_queued(), 0);
    }

    #[test]
    fn an_ack_at_the_right_edge_of_an_open_window_is_taken() {
        // RFC 9293 §3.10.7.4's allowance for valid ACKs, beyond a zero
        // window: the peer filled our window but the segment at
        // RCV.NXT was lost, so its SND.NXT is our right edge and its pure
        // ACKs carry SEG.SEQ = RCV.NXT + RCV.WND, which the acceptability
        // test refuses. Their ACK must still count, or our data is never
        // seen acknowledged until the peer's retransmission comes.
        let mut h = Harness::established(TcpConfig { recv_buffer: 8, delayed_ack: Duration::ZERO, ..config() });
        assert_eq!(h.conn.send(b"hello").unwrap(), 5);
        let (data, _) = h.expect(ACK, 1001, 5001);
        assert_eq!(data.payload_len, 5);
        // 5001..5005 is lost; 5005..5009 reaches the right edge.
        h.send(ACK, 5005, 1001, b"efgh");
        h.expect(ACK, 1006, 5001);
        assert_eq!(h.conn.recv_out_of_order(), 4);
        h.send(ACK, 5009, 1006, b"");
        assert_eq!(h.conn.send_queued(), 0, "the ACK at the right edge was dropped");
        assert_eq!(h.conn.poll_deadline(), None, "the retransmission timer still runs");
        // An old segment (before RCV.NXT) still gets no say.
        assert_eq!(h.conn.send(b"world").unwrap(), 5);
        h.sent();
        h.send(ACK, 5000, 1011, b"");
        assert_eq!(h.conn.send_queued(), 5);
    }

    #[test]
    fn a_pure_ack_after_a_timeout_carries_snd_max() {
        // After a go-back-N timeout SND.NXT is back at SND.UNA; the peer
        // may hold everything up to SND.MAX, and its acceptability test
        // (RFC 9293 §3.10.7.4: RCV.NXT =< SEG.SEQ) would drop an ACK with
        // a lower SEG.SEQ, and the acknowledgment in it.
        let mut h = Harness::established(TcpConfig { delayed_ack: Duration::ZERO, ..config() });
        assert_eq!(h.conn.send(&[7u8; 2920]).unwrap(), 2920);
        let sent = h.sent();
        assert_eq!(sent.len(), 2);
        h.at(200);
        let (rexmit, _) = h.expect(ACK, 1001, 5001);
        assert_eq!(rexmit.payload_len, 1460);
        // The peer's data is acknowledged from SND.MAX = 3921, not from
        // SND.NXT = 2461.
        h.send(ACK, 5001, 1001, b"xyz");
        h.expect(ACK, 3921, 5004);
    }

    #[test]
    fn an_echo_from_before_a_timeout_gives_no_rtt_sample() {
        // Karn's rule (RFC 6298 §3) for timestamps: the ACK of the original
        // was lost, so the ACK of the retransmission echoes the original's
        // TSval (RFC 7323 §4.3: a duplicate does not update TS.Recent);
        // that "sample" would include the whole timeout.
        let config = TcpConfig { timestamps: true, delayed_ack: Duration::ZERO, ..config() };
        let mut h = Harness::active(config);
        let (syn, _) = h.expect(SYN, 1000, 0);
        let syn_ack = timestamped_syn_ack(&syn);
        h.at(20);
        h.send_repr(&syn_ack, b"");
        h.expect(ACK, 1001, 5001);
        assert_eq!(h.conn.srtt(), Some(Duration::from_millis(20)));
        h.conn.send(b"abc").unwrap();
        let (original, _) = h.expect(ACK, 1001, 5001);
        h.at(220);
        let (rexmit, _) = h.expect(ACK, 1001, 5001);
        let ack_with = |echo: u32, ack: u32| {
            let mut r = repr(ACK, 5001, ack, 65_535, 0);
            r.options.timestamp = Some(TcpTimestamp { value: 501, echo });
            r
        };
        h.at(240);
        h.send_repr(&ack_with(original.options.timestamp.unwrap().value, 1004), b"");
        assert_eq!(h.conn.send_queued(), 0);
        assert_eq!(h.conn.srtt(), Some(Duration::from_millis(20)), "a 220 ms sample was taken");
        // An echo from after the timeout is a true sample again.
        assert!(rexmit.options.timestamp.unwrap().value > original.options.timestamp.unwrap().value);
        h.conn.send(b"def").unwrap();
        let (fresh, _) = h.expect(ACK, 1004, 5001);
        h.at(280);
        h.send_repr(&ack_with(fresh.options.timestamp.unwrap().value, 1007), b"");
        // RFC 6298 §2.3: 7/8 · 20 ms + 1/8 · 40 ms.
        assert_eq!(h.conn.srtt(), Some(Duration::from_micros(22_500)));
        // Once an echo from after the timeout came, the mark is gone: 25
        // days later (past the timestamp clock's 2^31 ms half-wrap) echoes
        // still give samples.
        let later = 25 * 24 * 3600 * 1000;
        h.conn.send(b"ghi").unwrap();
        h.at(later);
        let (late, _) = h.expect(ACK, 1007, 5001);
        h.at(later + 20);
        h.send_repr(&ack_with(late.options.timestamp.unwrap().value, 1010), b"");
        assert_eq!(h.conn.send_queued(), 0);
        // 7/8 · 22.5 ms + 1/8 · 20 ms.
        assert_eq!(h.conn.srtt(), Some(Duration::from_nanos(22_187_500)));
    }

    #[test]
    fn nagle_holds_small_segments_while_data_is_unacked() {
        // RFC 9293 §3.7.4.
        let mut h = Harness::established(config());
        h.conn.send(b"a").unwrap();
        h.expect(ACK, 1001, 5001);
        h.conn.send(b"b").unwrap();
        h.conn.send(b"c").unwrap();
        h.expect_nothing();
        h.send(ACK, 5001, 1002, b"");
        let (_, p) = h.expect(ACK, 1002, 5001);
        assert_eq!(p, b"bc");
        // With nodelay, small segments go at once.
        h.conn.set_nodelay(true);
        h.conn.send(b"d").unwrap();
        h.expect(ACK, 1004, 5001);
    }

    #[test]
    fn zero_window_is_probed_with_backoff() {
        // RFC 9293 §3.8.6.1: probe a zero window with one byte; the probe
        // is retransmitted with exponential backoff while it stays shut.
        let mut h = Harness::established(config());
        h.peer_window = 0;
        h.send(ACK, 5001, 1001, b"");
        h.conn.send(b"hello").unwrap();
        h.expect_nothing();
        // The first probe after one RTO (200 ms), then 400 ms, then 800 ms.
        for (before, at) in [(199, 200), (599, 600), (1399, 1400)] {
            h.at(before);
            h.expect_nothing();
            h.at(at);
            let (_, p) = h.expect(ACK, 1001, 5001);
            assert_eq!(p, b"h");
            h.send(ACK, 5001, 1001, b""); // still shut, probe not taken
            h.expect_nothing();
        }
        h.peer_window = 1000;
        h.send(ACK, 5001, 1002, b"");
        let (_, p) = h.expect(ACK, 1002, 5001);
        assert_eq!(p, b"ello");
        assert_eq!(h.conn.state(), TcpState::Established, "a zero window never times out");
    }

    #[test]
    fn three_duplicate_acks_trigger_fast_retransmit() {
        // RFC 5681 §3.2.
        let mut h = Harness::established(TcpConfig { nodelay: true, ..config() });
        let data = [1u8; 1460 * 4];
        h.conn.send(&data).unwrap();
        assert_eq!(h.sent().len(), 3, "initial window of 3 segments (RFC 5681 §3.1)");
        for _ in 0..2 {
            h.send(ACK, 5001, 1001, b"");
            h.expect_nothing();
        }
        h.send(ACK, 5001, 1001, b"");
        let sent = h.sent();
        assert_eq!(sent[0].0.seq_number, SeqNumber(1001));
        assert_eq!(sent[0].1.len(), 1460);
    }

    // ---- Closing (RFC 9293 §3.6) -------------------------------------------

    #[test]
    fn half_close_then_time_wait_expiry() {
        // RFC 9293 §3.6 figure 12: FIN-WAIT-1 → FIN-WAIT-2 → TIME-WAIT,
        // reading while our side is shut; §3.10.8: 2·MSL later, CLOSED.
        let mut h = Harness::established(TcpConfig { msl: Duration::from_secs(1), ..config() });
        h.conn.shutdown_write();
        assert_eq!(h.conn.state(), TcpState::FinWait1);
        assert_eq!(h.conn.send(b"x"), Err(SendError::WriteClosed));
        h.expect(FIN, 1001, 5001);
        h.send(ACK, 5001, 1002, b"");
        assert_eq!(h.conn.state(), TcpState::FinWait2);
        h.send(ACK, 5001, 1002, b"still talking");
        assert_eq!(h.conn.recv_available(), 13);
        h.send(FIN, 5014, 1002, b"");
        assert_eq!(h.conn.state(), TcpState::TimeWait);
        h.expect(ACK, 1002, 5015);
        // A retransmitted FIN is acknowledged again.
        h.send(FIN, 5014, 1002, b"");
        h.expect(ACK, 1002, 5015);
        h.at(1999);
        assert_eq!(h.conn.state(), TcpState::TimeWait);
        h.at(2000);
        assert!(h.conn.is_closed());
        assert_eq!(h.conn.error(), None);
    }

    #[test]
    fn a_closed_connection_waits_for_the_peers_fin_only_so_long() {
        // A peer that acknowledges our FIN and goes silent: after
        // fin_wait_2_timeout the connection is reset and gone. One only
        // shut for writing keeps waiting (its user may still read).
        let timeout = Duration::from_secs(60);
        let mut h = Harness::established(TcpConfig { fin_wait_2_timeout: timeout, ..config() });
        h.at(1000);
        h.conn.close();
        h.expect(FIN, 1001, 5001);
        h.send(ACK, 5001, 1002, b"");
        assert_eq!(h.conn.state(), TcpState::FinWait2);
        assert_eq!(h.conn.poll_deadline(), Some(Instant::from_millis(61_000)));
        // Bare ACKs from the peer do not keep it.
        h.at(30_000);
        h.send(ACK, 5001, 1002, b"");
        h.at(60_999);
        assert_eq!(h.conn.state(), TcpState::FinWait2);
        h.at(61_000);
        assert_eq!(h.conn.state(), TcpState::Closed);
        h.expect(RST, 1002, 0);
        assert!(h.conn.is_closed());
        assert_eq!(h.conn.stats().fin_wait_2_timeouts, 1);

        let mut h = Harness::established(TcpConfig { fin_wait_2_timeout: timeout, ..config() });
        h.conn.shutdown_write();
        h.expect(FIN, 1001, 5001);
        h.send(ACK, 5001, 1002, b"");
        h.at(3_600_000);
        assert_eq!(h.conn.state(), TcpState::FinWait2);
        h.send(ACK, 5001, 1002, b"late");
        assert_eq!(h.conn.recv_available(), 4);
    }

    #[test]
    fn passive_close_through_close_wait_and_last_ack() {
        // RFC 9293 §3.6: CLOSE-WAIT → LAST-ACK → CLOSED.
        let mut h = Harness::established(config());
        h.send(FIN, 5001, 1001, b"");
        assert_eq!(h.conn.state(), TcpState::CloseWait);
        assert!(h.conn.is_recv_finished());
        h.expect(ACK, 1001, 5002);
        h.conn.send(b"bye").unwrap();
        h.conn.close();
        assert_eq!(h.conn.state(), TcpState::LastAck);
        let (fin, p) = h.expect(FIN, 1001, 5002);
        assert!(fin.flags.fin());
        assert_eq!(p, b"bye");
        h.send(ACK, 5002, 1005, b"");
        assert!(h.conn.is_closed());
    }

    #[test]
    fn simultaneous_close_through_closing() {
        // RFC 9293 §3.6 figure 13.
        let mut h = Harness::established(TcpConfig { msl: Duration::from_secs(1), ..config() });
        h.conn.close();
        h.expect(FIN, 1001, 5001);
        h.send(FIN, 5001, 1001, b"");
        assert_eq!(h.conn.state(), TcpState::Closing);
        h.expect(ACK, 1002, 5002);
        h.send(ACK, 5002, 1002, b"");
        assert_eq!(h.conn.state(), TcpState::TimeWait);
        h.at(2000);
        assert!(h.conn.is_closed());
    }

    #[test]
    fn close_with_unread_data_resets() {
        // RFC 2525 §2.17.
        let mut h = Harness::established(config());
        h.send(ACK, 5001, 1001, b"unread");
        h.conn.close();
        h.expect(RST, 1001, 0);
        assert!(h.conn.is_closed());
    }

    #[test]
    fn data_after_close_resets() {
        // RFC 2525 §2.17: nobody will read it.
        let mut h = Harness::established(config());
        h.conn.close();
        h.expect(FIN, 1001, 5001);
        h.send(ACK, 5001, 1002, b"late");
        h.expect(RST, 1002, 0);
        assert!(h.conn.is_closed());
    }

    #[test]
    fn abort_sends_a_reset() {
        // RFC 9293 §3.10.5.
        let mut h = Harness::established(config());
        h.conn.send(b"lost").unwrap();
        h.conn.abort();
        h.expect(RST, 1001, 0);
        assert!(h.conn.is_closed());
        assert_eq!(h.conn.send(b"x"), Err(SendError::Closed));
    }

    // ---- Resets and attacks (RFC 9293 §3.10.7.4, RFC 5961) -----------------

    #[test]
    fn reset_at_rcv_nxt_closes() {
        // RFC 5961 §3.2: exactly RCV.NXT resets.
        let mut h = Harness::established(config());
        h.send(RST, 5001, 0, b"");
        assert!(h.conn.is_closed());
        assert_eq!(h.conn.error(), Some(ConnectionError::Reset));
        h.expect_nothing();
    }

    #[test]
    fn reset_inside_the_window_gets_a_challenge_ack() {
        // RFC 5961 §3.2: in the window but not RCV.NXT → challenge ACK.
        let mut h = Harness::established(config());
        h.send(RST, 5002, 0, b"");
        assert_eq!(h.conn.state(), TcpState::Established);
        h.expect(ACK, 1001, 5001);
        // Outside the window: silently dropped.
        h.send(RST, 5001 + 300_000, 0, b"");
        h.expect_nothing();
        assert_eq!(h.conn.state(), TcpState::Established);
    }

    #[test]
    fn syn_in_a_synchronized_state_gets_a_challenge_ack() {
        // RFC 5961 §4.2: any SYN, in window or not.
        let mut h = Harness::established(config());
        h.send(SYN, 5001, 0, b"");
        h.expect(ACK, 1001, 5001);
        h.send(SYN, 9_999_999, 0, b"");
        h.expect(ACK, 1001, 5001);
        assert_eq!(h.conn.state(), TcpState::Established);
    }

    #[test]
    fn ack_range_check() {
        // RFC 5961 §5.2: too old → challenge ACK and drop; RFC 9293
        // §3.10.7.4: beyond SND.NXT → ACK and drop. Neither takes the data.
        let mut h = Harness::established(config());
        h.conn.send(b"abc").unwrap();
        h.expect(ACK, 1001, 5001);
        h.send(ACK, 5001, 1001u32.wrapping_sub(100_000), b"zz");
        h.expect(ACK, 1004, 5001);
        h.send(ACK, 5001, 2000, b"zz");
        h.expect(ACK, 1004, 5001);
        assert_eq!(h.conn.recv_available(), 0);
    }

    #[test]
    fn challenge_acks_are_rate_limited() {
        // RFC 5961 §7: at most `challenge_acks_per_second` per second.
        let mut h = Harness::established(config());
        let mut acks = 0;
        for _ in 0..25 {
            h.send(RST, 5002, 0, b"");
            acks += h.sent().len();
        }
        assert_eq!(acks, 10);
        h.at(1000);
        h.send(RST, 5002, 0, b"");
        h.expect(ACK, 1001, 5001);
    }

    #[test]
    fn syn_received_answers_a_bad_ack_with_a_reset() {
        // RFC 9293 §3.10.7.4, SYN-RECEIVED: unacceptable ACK → RST.
        let mut h = Harness::passive(config());
        h.expect(SYN_ACK, 1000, 5001);
        h.send(ACK, 5001, 77, b"");
        h.expect(RST, 77, 0);
        assert_eq!(h.conn.state(), TcpState::SynReceived);
        // A reset at RCV.NXT ends a passive attempt without an error.
        h.send(RST, 5001, 0, b"");
        assert!(h.conn.is_closed());
        assert_eq!(h.conn.error(), None);
    }

    // ---- Timers ------------------------------------------------------------

    #[test]
    fn keepalive_probes_then_gives_up() {
        // RFC 9293 §3.8.4: probe with SEQ = SND.NXT − 1 after the idle time.
        let ka = Keepalive { idle: Duration::from_secs(10), interval: Duration::from_secs(1), probes: 2 };
        let mut h = Harness::established(TcpConfig { keepalive: Some(ka), ..config() });
        h.at(9_999);
        h.expect_nothing();
        h.at(10_000);
        h.expect(ACK, 1000, 5001);
        // An answer resets the idle timer.
        h.send(ACK, 5001, 1001, b"");
        h.at(19_999);
        h.expect_nothing();
        h.at(20_000);
        h.expect(ACK, 1000, 5001);
        h.at(21_000);
        h.expect(ACK, 1000, 5001);
        h.at(22_000);
        h.expect(RST, 1001, 0);
        assert_eq!(h.conn.error(), Some(ConnectionError::KeepaliveTimeout));
    }

    #[test]
    fn user_timeout_aborts_unacknowledged_data() {
        // RFC 9293 §3.8.3.
        let mut h = Harness::established(TcpConfig { user_timeout: Duration::from_secs(5), ..config() });
        h.conn.send(b"x").unwrap();
        h.expect(ACK, 1001, 5001);
        for t in [1000, 3000] {
            h.at(t);
            h.expect(ACK, 1001, 5001);
        }
        h.at(5000);
        h.expect(RST, 1002, 0);
        assert_eq!(h.conn.error(), Some(ConnectionError::UserTimeout));
    }

    // ---- SACK (RFC 2018) and loss recovery (RFC 6675, RFC 6582) ------------

    fn established_sack(config: TcpConfig) -> Harness {
        let mut h = Harness::active(TcpConfig { sack: true, ..config });
        h.expect(SYN, 1000, 0);
        let mut syn_ack = repr(SYN_ACK, 5000, 1001, 65_535, 0);
        syn_ack.options.max_seg_size = Some(1460);
        syn_ack.options.sack_permitted = true;
        h.send_repr(&syn_ack, b"");
        h.expect(ACK, 1001, 5001);
        assert!(h.conn.sack_enabled());
        h
    }

    #[test]
    fn a_lost_retransmission_at_snd_una_is_sent_again_after_1_5_srtt() {
        // RFC 8985 §6.2's idea for the segment at SND.UNA: once 1.5·SRTT
        // have passed since its retransmission, an ACK that reports data
        // beyond it but still does not cover it means the retransmission
        // was lost too; it goes again without waiting for the timer, and
        // without another window reduction.
        let mut h = established_sack(TcpConfig { delayed_ack: Duration::ZERO, ..config() });
        h.conn.send(b"x").unwrap();
        h.expect(ACK, 1001, 5001);
        h.at(10);
        h.send(ACK, 5001, 1002, b"");
        // RFC 6298 §2.3 after the handshake's 0 ms: 1/8 · 10 ms.
        assert_eq!(h.conn.srtt(), Some(Duration::from_micros(1250)));
        h.conn.send(&[7u8; 3 * 1460]).unwrap();
        assert_eq!(h.sent().len(), 3);
        let sack = |h: &mut Harness, right: u32| {
            let mut r = repr(ACK, 5001, 1002, 65_535, 0);
            r.options.sack_blocks.push(SeqNumber(2462), SeqNumber(right));
            h.send_repr(&r, b"");
        };
        // Segment 1002 is lost; three SACKs start recovery with its fast
        // retransmission at 12 ms.
        h.at(12);
        for right in [3922, 5382, 5382] {
            sack(&mut h, right);
        }
        let rexmits =
            |sent: &[(TcpRepr, Vec<u8>)]| sent.iter().filter(|(r, _)| r.seq_number == SeqNumber(1002)).count();
        assert_eq!(rexmits(&h.sent()), 1);
        let (cwnd, fast) = (h.conn.cwnd(), h.conn.stats().fast_recoveries);
        // 1 ms (0.8·SRTT) after it, its ACK may still be on the way.
        h.at(13);
        sack(&mut h, 5382);
        assert_eq!(rexmits(&h.sent()), 0);
        // 2 ms (1.6·SRTT) after it, it is lost: sent again, long before
        // the 200 ms timer.
        h.at(14);
        sack(&mut h, 5382);
        assert_eq!(rexmits(&h.sent()), 1);
        assert_eq!(h.conn.stats().lost_retransmissions, 1);
        assert_eq!((h.conn.cwnd(), h.conn.stats().fast_recoveries), (cwnd, fast), "no new congestion response");
        assert_eq!(h.conn.stats().timeouts, 0);
        // And again only 1.5·SRTT after that.
        h.at(15);
        sack(&mut h, 5382);
        assert_eq!(rexmits(&h.sent()), 0);
        h.send(ACK, 5001, 5382, b"");
        assert_eq!(h.conn.send_queued(), 0);
    }

    fn sack_pairs(r: &TcpRepr) -> Vec<(u32, u32)> {
        r.options.sack_blocks.as_slice().iter().map(|(l, r)| (l.0, r.0)).collect()
    }

    /// RFC 2018 §6's examples: the peer sends 8 segments of 500 bytes from
    /// 5001 (the RFC's 5000 plus our SYN); `order` lists which arrive, in
    /// order; returns the ACK number and SACK blocks of each of our ACKs.
    /// Each ACK we sent: its ACK number and its SACK blocks.
    type AckLog = Vec<(u32, Vec<(u32, u32)>)>;

    fn rfc2018_receiver(order: &[u32]) -> (Harness, AckLog) {
        let mut h = established_sack(TcpConfig { delayed_ack: Duration::ZERO, ..config() });
        let mut acks = Vec::new();
        for &segment in order {
            h.send(ACK, 5001 + 500 * segment, 1001, &[segment as u8; 500]);
            let sent = h.sent();
            assert_eq!(sent.len(), 1, "one ACK per segment: {sent:?}");
            acks.push((sent[0].0.ack_number.0, sack_pairs(&sent[0].0)));
        }
        (h, acks)
    }

    #[test]
    fn rfc2018_case1_in_order_data_gets_no_sack() {
        // RFC 2018 §6 case 1: the first 4 arrive, the last 4 are dropped.
        let (_, acks) = rfc2018_receiver(&[0, 1, 2, 3]);
        assert_eq!(acks.last().unwrap(), &(7001, std::vec![]));
        assert!(acks.iter().all(|(_, blocks)| blocks.is_empty()));
    }

    #[test]
    fn rfc2018_case2_first_segment_dropped() {
        // RFC 2018 §6 case 2: each of the last seven is answered with
        // ACK 5000 and one block growing from 5500-6000 to 5500-9000.
        let (_, acks) = rfc2018_receiver(&[1, 2, 3, 4, 5, 6, 7]);
        let expected: AckLog = (1..=7).map(|n| (5001, std::vec![(5501, 5501 + 500 * n)])).collect();
        assert_eq!(acks, expected);
    }

    #[test]
    fn rfc2018_case3_alternate_segments_dropped_then_filled() {
        // RFC 2018 §6 case 3: the 2nd, 4th, 6th and 8th are dropped; the
        // first block is the latest segment, the others repeat the blocks
        // reported most recently.
        let (mut h, acks) = rfc2018_receiver(&[0, 2, 4, 6]);
        assert_eq!(
            acks,
            [
                (5501, std::vec![]),
                (5501, std::vec![(6001, 6501)]),
                (5501, std::vec![(7001, 7501), (6001, 6501)]),
                (5501, std::vec![(8001, 8501), (7001, 7501), (6001, 6501)]),
            ]
        );
        // The 4th segment arrives out of order: two blocks remain.
        h.send(ACK, 5001 + 500 * 3, 1001, &[3; 500]);
        let (ack, _) = h.expect(ACK, 1001, 5501);
        assert_eq!(sack_pairs(&ack), [(6001, 7501), (8001, 8501)]);
        // Then the 2nd: the cumulative ACK moves to 7500 (7501 here).
        h.send(ACK, 5001 + 500, 1001, &[1; 500]);
        let (ack, _) = h.expect(ACK, 1001, 7501);
        assert_eq!(sack_pairs(&ack), [(8001, 8501)]);
    }

    /// Grows the congestion window by slow start to at least `segments`
    /// full segments, every byte acknowledged; returns SND.UNA.
    fn grow_window(h: &mut Harness, segments: usize) -> u32 {
        let mut una = 1001;
        for _ in 0..64 {
            if h.conn.cwnd() >= segments * 1460 {
                return una;
            }
            h.conn.send(&[0; 1460]).unwrap();
            let sent = h.sent();
            una += sent.iter().map(|(r, _)| r.payload_len as u32).sum::<u32>();
            h.send(ACK, 5001, una, b"");
        }
        panic!("cwnd stuck at {}", h.conn.cwnd());
    }

    /// Sends one flight of 12 full segments, of which the peer loses the
    /// 2nd, 5th and 8th, and feeds back the ACKs (with SACK blocks if
    /// `sack`) a receiver sends for the other nine. Returns the harness and
    /// the start of every segment sent while those ACKs arrived.
    fn lose_three_of_twelve(sack: bool) -> (Harness, u32, Vec<u32>) {
        let config = TcpConfig { nodelay: true, ..config() };
        let mut h = if sack { established_sack(config) } else { Harness::established(config) };
        let una = grow_window(&mut h, 13);
        h.conn.send(&[1; 12 * 1460]).unwrap();
        let flight = h.sent();
        assert_eq!(flight.len(), 12);
        let start = |i: u32| una + 1460 * i;
        let lost = [1, 4, 7];
        let mut received = std::vec![false; 12];
        let mut resent = Vec::new();
        for i in (0..12u32).filter(|i| !lost.contains(i)) {
            received[i as usize] = true;
            let cumulative = received.iter().take_while(|r| **r).count() as u32;
            let mut ack = repr(ACK, 5001, start(cumulative), 65_535, 0);
            if sack {
                // Runs above the cumulative ACK, the newest first.
                let mut runs: Vec<(u32, u32)> = Vec::new();
                for j in cumulative..12 {
                    if received[j as usize] {
                        match runs.last_mut() {
                            Some(run) if run.1 == start(j) => run.1 = start(j + 1),
                            _ => runs.push((start(j), start(j + 1))),
                        }
                    }
                }
                runs.sort_by_key(|run| !(start(i) >= run.0 && start(i) < run.1));
                for (l, r) in runs.into_iter().take(4) {
                    ack.options.sack_blocks.push(SeqNumber(l), SeqNumber(r));
                }
            }
            h.send_repr(&ack, b"");
            resent.extend(h.sent().iter().map(|(r, _)| r.seq_number.0));
        }
        (h, una, resent)
    }

    #[test]
    fn sack_recovery_retransmits_every_hole_within_one_round_trip() {
        // RFC 6675 §5: with the ACKs of one flight, all three holes go out
        // again (rules 1 and 3 of NextSeg), within what cwnd − pipe allows,
        // without waiting for partial ACKs or a timeout.
        // The fourth retransmission is NextSeg()'s rule (4): once the holes
        // are repaired and nothing new is queued, one "rescue" copy of the
        // highest unSACKed segment guards against a lost tail.
        let (mut h, una, resent) = lose_three_of_twelve(true);
        let expected: Vec<u32> = [1, 4, 7, 11].iter().map(|i| una + 1460 * i).collect();
        assert_eq!(resent, expected);
        let stats = h.conn.stats();
        assert_eq!((stats.fast_recoveries, stats.sack_recoveries, stats.timeouts), (1, 1, 0));
        assert_eq!(stats.retransmitted_segments, 4);
        // RFC 9438 §4.6 (CUBIC by default): ssthresh = 0.7 · FlightSize
        // (11 segments outstanding at the third duplicate).
        assert_eq!(h.conn.ssthresh(), 11 * 1460 * 7 / 10);
        // The retransmissions arrive: one cumulative ACK ends recovery.
        h.send(ACK, 5001, una + 12 * 1460, b"");
        assert_eq!(h.conn.send_queued(), 0);
        assert_eq!(h.conn.loss.cc.recovery(), None);
        assert_eq!(h.conn.poll_deadline(), None);
    }

    #[test]
    fn newreno_recovery_without_sack_repairs_one_hole_per_round_trip() {
        // RFC 6582 §3.2: without SACK only SND.UNA's segment is known lost;
        // the next holes wait for partial ACKs, one round trip each.
        let (mut h, una, resent) = lose_three_of_twelve(false);
        assert_eq!(resent, [una + 1460]);
        let stats = h.conn.stats();
        assert_eq!((stats.fast_recoveries, stats.sack_recoveries), (1, 0));
        // A partial ACK (up to the second hole) retransmits it.
        h.send(ACK, 5001, una + 4 * 1460, b"");
        let sent = h.sent();
        assert_eq!(sent[0].0.seq_number, SeqNumber(una + 4 * 1460));
    }

    #[test]
    fn sack_blocks_outside_the_flight_are_ignored() {
        // RFC 6675 §4 Update() records only data between HighACK and
        // HighData: bogus blocks cannot fake progress.
        let mut h = established_sack(TcpConfig { nodelay: true, ..config() });
        h.conn.send(&[1; 3 * 1460]).unwrap();
        assert_eq!(h.sent().len(), 3);
        let mut ack = repr(ACK, 5001, 1001, 65_535, 0);
        ack.options.sack_blocks.push(SeqNumber(900_000), SeqNumber(900_100));
        ack.options.sack_blocks.push(SeqNumber(2461), SeqNumber(2000));
        ack.options.sack_blocks.push(SeqNumber(1), SeqNumber(1001));
        h.send_repr(&ack, b"");
        assert!(h.conn.loss.scoreboard.ranges().is_empty());
        h.expect_nothing();
    }

    #[test]
    fn a_timeout_clears_the_scoreboard_and_blocks_recovery_until_acknowledged() {
        // RFC 6675 §5.1: after an RTO the SACK information is discarded
        // (RFC 2018 §8) and no new recovery starts before HighData at the
        // timeout is acknowledged.
        let (mut h, una, _) = lose_three_of_twelve(true);
        assert!(!h.conn.loss.scoreboard.ranges().is_empty());
        let deadline = h.conn.poll_deadline().expect("the retransmission timer runs");
        h.at(deadline.as_nanos() / 1_000_000);
        let sent = h.sent();
        assert_eq!(sent[0].0.seq_number, SeqNumber(una + 1460), "go-back-N from SND.UNA");
        assert_eq!(h.conn.stats().timeouts, 1);
        assert!(h.conn.loss.scoreboard.ranges().is_empty());
        assert_eq!(h.conn.cwnd(), 1460);
        assert_eq!(h.conn.loss.cc.recovery(), None);
        // Fresh SACKs after the timeout are recorded and go-back-N skips
        // them, but duplicate ACKs start no recovery.
        for _ in 0..4 {
            let mut ack = repr(ACK, 5001, una + 1460, 65_535, 0);
            ack.options.sack_blocks.push(SeqNumber(una + 2 * 1460), SeqNumber(una + 4 * 1460));
            h.send_repr(&ack, b"");
        }
        assert_eq!(h.conn.stats().fast_recoveries, 1);
        h.send(ACK, 5001, una + 2 * 1460, b"");
        let sent = h.sent();
        assert!(
            sent.iter().all(|(r, _)| !r.seq_number.in_range(SeqNumber(una + 2 * 1460), SeqNumber(una + 4 * 1460))),
            "SACKed data is not resent: {sent:?}"
        );
        assert_eq!(sent[0].0.seq_number, SeqNumber(una + 4 * 1460));
    }

    // ---- Options (RFC 7323) -------------------------------------------------

    #[test]
    fn window_scaling_is_negotiated_and_applied() {
        // RFC 7323 §2.2–2.3: both SYNs carry the option; later windows are
        // shifted; the SYN's own window is not.
        let config = TcpConfig { window_scaling: true, recv_buffer: 1 << 20, ..config() };
        let mut h = Harness::active(config);
        let (syn, _) = h.expect(SYN, 1000, 0);
        assert_eq!(syn.options.window_scale, Some(5));
        assert_eq!(syn.window_len, 65_535);
        let mut syn_ack = repr(SYN_ACK, 5000, 1001, 100, 0);
        syn_ack.options.window_scale = Some(3);
        syn_ack.options.max_seg_size = Some(1460);
        h.send_repr(&syn_ack, b"");
        let (ack, _) = h.expect(ACK, 1001, 5001);
        assert_eq!(ack.window_len, ((1 << 20) >> 5) as u16);
        // The peer's window 100 << 3 = 800 bytes now limits what we send.
        h.peer_window = 100;
        h.send(ACK, 5001, 1001, b"");
        h.conn.set_nodelay(true);
        h.conn.send(&[0u8; 2000]).unwrap();
        let sent: usize = h.sent().iter().map(|(_, p)| p.len()).sum();
        assert_eq!(sent, 800);
    }

    #[test]
    fn paws_drops_old_timestamps() {
        // RFC 7323 §5.3: a segment whose TSval is older than TS.Recent is
        // acknowledged and dropped.
        let config = TcpConfig { timestamps: true, ..config() };
        let mut h = Harness::active(config);
        let (syn, _) = h.expect(SYN, 1000, 0);
        let our_ts = syn.options.timestamp.unwrap().value;
        let mut syn_ack = repr(SYN_ACK, 5000, 1001, 65_535, 0);
        syn_ack.options.timestamp = Some(TcpTimestamp { value: 500, echo: our_ts });
        syn_ack.options.max_seg_size = Some(1460);
        h.send_repr(&syn_ack, b"");
        let (ack, _) = h.expect(ACK, 1001, 5001);
        assert_eq!(ack.options.timestamp.unwrap().echo, 500);
        // Payload per segment leaves room for the option (RFC 7323 §3.2).
        assert_eq!(h.conn.send_mss(), 1460 - 12);
        let mut old = repr(ACK, 5001, 1001, 65_535, 3);
        old.options.timestamp = Some(TcpTimestamp { value: 400, echo: 0 });
        h.send_repr(&old, b"old");
        h.expect(ACK, 1001, 5001);
        assert_eq!(h.conn.recv_available(), 0);
        let mut fresh = old;
        fresh.options.timestamp = Some(TcpTimestamp { value: 600, echo: 0 });
        h.send_repr(&fresh, b"new");
        assert_eq!(h.conn.recv_available(), 3);
    }

    #[test]
    fn reset_for_unknown_follows_rfc9293_closed_rules() {
        // RFC 9293 §3.10.7.1.
        let with_ack = repr(ACK, 1, 77, 0, 0);
        let rst = reset_for_unknown(&with_ack).unwrap();
        assert_eq!((rst.flags, rst.seq_number), (TcpFlags::RST, SeqNumber(77)));
        let syn = repr(SYN, 41, 0, 0, 0);
        let rst = reset_for_unknown(&syn).unwrap();
        assert_eq!(
            (rst.flags, rst.seq_number, rst.ack_number),
            (TcpFlags::RST | TcpFlags::ACK, SeqNumber(0), SeqNumber(42))
        );
        assert_eq!(reset_for_unknown(&repr(RST, 1, 0, 0, 0)), None);
    }
}
