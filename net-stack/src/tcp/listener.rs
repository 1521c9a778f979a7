//! The LISTEN state: half-open connections, SYN cookies, the accept
//! queue, and initial sequence numbers.
//!
//! Reading list:
//! - RFC 9293 §3.10.7.2: a segment that reaches a listener (RST ignored,
//!   ACK answered with a reset, SYN starts a connection). A SYN with FIN
//!   set starts nothing: no stack opens that way (T/TCP, RFC 1644, which
//!   did, is historic by RFC 6247), scanners send it to fingerprint, and
//!   Linux's LISTEN state and FreeBSD (`net.inet.tcp.drop_synfin`) drop it
//!   silently; so do we.
//! - RFC 4987 §3.6: SYN cookies, the encoding of the ISN (5 bits of time, 3
//!   of MSS, 24 of keyed hash) and what a cookie cannot carry (§3.6's
//!   "options": no window scaling, SACK or timestamps).
//! - RFC 6528 §3: ISN = M + F(localip, localport, remoteip, remoteport,
//!   secretkey), M a 4 µs timer, F a keyed pseudo-random function; we use
//!   SipHash-1-3 keyed with 128 bits from the platform's CSPRNG.
//!
//! Bounds: at most `syn_backlog` half-open connections (beyond it, SYN
//! cookies keep no state), at most `backlog` established connections
//! waiting for [`TcpListener::accept`] (beyond it, SYNs and handshake-ending
//! ACKs are dropped, so peers retry), and at most [`MAX_PENDING_REPLIES`]
//! stateless answers (cookie SYN-ACKs, resets) queued between two
//! [`TcpListener::poll_transmit`] drains.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::hash::Hasher;
use core::net::SocketAddr;

use bytes::Bytes;
use mirage_types::time::Instant;
use siphasher::sip::SipHasher13;

use super::connection::{reset_for_unknown, TcpConnection};
use super::{RecvMemory, TcpConfig};
use crate::wire::tcp::{SeqNumber, TcpFlags, TcpOptions, TcpRepr};

/// Stateless answers a listener queues between two drains at most (more
/// are dropped), and answers its sender keeps waiting for ARP at most (a
/// new one replaces the oldest): a SYN flood must not grow memory.
pub const MAX_PENDING_REPLIES: usize = 64;

/// MSS values a SYN cookie can encode in its 3 bits (RFC 4987 §3.6); the
/// largest not above the peer's is used.
const COOKIE_MSS: [u16; 8] = [216, 536, 1024, 1220, 1360, 1440, 1460, 8960];

/// A cookie's time counter ticks every 64 s; a cookie is valid in the tick
/// it was made and the next one.
const COOKIE_TICK_NANOS: u64 = 64_000_000_000;

/// Initial sequence numbers per RFC 6528.
#[derive(Clone)]
pub struct IsnGenerator {
    key: [u8; 16],
}

impl core::fmt::Debug for IsnGenerator {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("IsnGenerator { key: <secret> }")
    }
}

impl IsnGenerator {
    /// A generator keyed with 16 bytes from a CSPRNG (RFC 6528 §3: the key
    /// must be unknown to an attacker).
    pub fn new(key: [u8; 16]) -> IsnGenerator {
        IsnGenerator { key }
    }

    /// The ISN for a connection between `local` and `remote` at `now`:
    /// a 4 µs clock plus a keyed hash of the 4-tuple (RFC 6528 §3), so
    /// successive ISNs of one tuple increase and those of different tuples
    /// are unrelated.
    pub fn isn(&self, now: Instant, local: SocketAddr, remote: SocketAddr) -> SeqNumber {
        let mut h = SipHasher13::new_with_key(&self.key);
        hash_tuple(&mut h, local, remote);
        let m = (now.as_nanos() / 4_000) as u32;
        SeqNumber(m.wrapping_add(h.finish() as u32))
    }
}

fn hash_tuple(h: &mut SipHasher13, local: SocketAddr, remote: SocketAddr) {
    for addr in [local, remote] {
        match addr {
            SocketAddr::V4(a) => h.write(&a.ip().octets()),
            SocketAddr::V6(a) => h.write(&a.ip().octets()),
        }
        h.write(&addr.port().to_be_bytes());
    }
}

/// A segment a listener sends: its addresses and header (a listener's
/// segments never carry data).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenerTransmit {
    /// Our address (the destination of the segment that caused it).
    pub local: SocketAddr,
    /// The peer's address.
    pub remote: SocketAddr,
    /// The header to send.
    pub repr: TcpRepr,
}

/// Counters of a listener since it was created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListenerStats {
    /// SYN-ACKs sent statelessly because the SYN backlog was full.
    pub cookies_sent: u64,
    /// Connections established from a valid cookie.
    pub cookies_accepted: u64,
    /// SYNs and handshake-ending ACKs dropped because the accept queue was
    /// full.
    pub accept_queue_drops: u64,
    /// Answers dropped because [`MAX_PENDING_REPLIES`] were queued.
    pub reply_drops: u64,
}

/// A listening socket's core: LISTEN for one local address and port.
#[derive(Debug)]
pub struct TcpListener {
    local: SocketAddr,
    config: TcpConfig,
    isn: IsnGenerator,
    cookie_key: [u8; 16],
    backlog: usize,
    syn_backlog: usize,
    half_open: Vec<TcpConnection>,
    ready: VecDeque<TcpConnection>,
    replies: VecDeque<ListenerTransmit>,
    stats: ListenerStats,
}

impl TcpListener {
    /// Listens on `local` (an unspecified address matches every local
    /// address; the caller routes segments here by port).
    ///
    /// `backlog` bounds established connections not yet accepted,
    /// `syn_backlog` half-open ones (both at least 1). `isn` is the
    /// stack's generator; `cookie_key` is 16 bytes from a CSPRNG.
    pub fn new(
        local: SocketAddr,
        config: TcpConfig,
        backlog: usize,
        syn_backlog: usize,
        isn: IsnGenerator,
        cookie_key: [u8; 16],
    ) -> TcpListener {
        TcpListener {
            local,
            config,
            isn,
            cookie_key,
            backlog: backlog.max(1),
            syn_backlog: syn_backlog.max(1),
            half_open: Vec::new(),
            ready: VecDeque::new(),
            replies: VecDeque::new(),
            stats: ListenerStats::default(),
        }
    }

    /// The address listened on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Counters since creation.
    pub fn stats(&self) -> ListenerStats {
        self.stats
    }

    /// Half-open connections (SYN-RECEIVED) held.
    pub fn half_open_len(&self) -> usize {
        self.half_open.len()
    }

    /// Established connections waiting for [`Self::accept`].
    pub fn ready_len(&self) -> usize {
        self.ready.len()
    }

    /// What the receive sides of the connections held (half-open and
    /// waiting for [`Self::accept`]) hold, summed: see
    /// [`TcpConnection::recv_memory`].
    pub fn recv_memory(&self) -> RecvMemory {
        let mut sum = RecvMemory::default();
        for conn in self.half_open.iter().chain(self.ready.iter()) {
            sum += conn.recv_memory();
        }
        sum
    }

    /// Takes the oldest established connection. It may already have
    /// received data, or even a FIN or a reset: check its state.
    pub fn accept(&mut self) -> Option<TcpConnection> {
        self.ready.pop_front()
    }

    /// Processes a segment for this listener's port from `remote` to
    /// `local` (the caller found no connection of its own for the 4-tuple
    /// and checked the checksum).
    pub fn handle_segment(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        repr: &TcpRepr,
        payload: Bytes,
    ) {
        let matches = |c: &TcpConnection| c.local_addr() == local && c.remote_addr() == remote;
        if let Some(conn) = self.ready.iter_mut().find(|c| matches(c)) {
            conn.handle_segment(now, repr, payload);
            return;
        }
        if let Some(i) = self.half_open.iter().position(matches) {
            if self.ready.len() >= self.backlog && repr.flags.ack() && !repr.flags.rst() && !repr.flags.syn() {
                // No room to accept: drop the handshake's last ACK, the
                // peer retransmits it (as Linux does).
                self.stats.accept_queue_drops += 1;
                return;
            }
            let conn = &mut self.half_open[i];
            conn.handle_segment(now, repr, payload);
            if conn.is_synchronized() {
                let conn = self.half_open.swap_remove(i);
                self.ready.push_back(conn);
            }
            return;
        }
        self.handle_listen(now, local, remote, repr, payload);
    }

    /// RFC 9293 §3.10.7.2.
    fn handle_listen(&mut self, now: Instant, local: SocketAddr, remote: SocketAddr, repr: &TcpRepr, payload: Bytes) {
        let flags = repr.flags;
        // SYN+FIN is not a SYN (see the module documentation), nor worth a
        // reset that would tell a scanner who we are.
        if flags.rst() || (flags.syn() && flags.fin()) {
            return;
        }
        if flags.ack() {
            if !flags.syn() {
                if let Some(mss) = self.check_cookie(now, local, remote, repr) {
                    if self.ready.len() >= self.backlog {
                        self.stats.accept_queue_drops += 1;
                        return;
                    }
                    let iss = repr.ack_number.sub_len(1);
                    let mut conn = TcpConnection::from_cookie(
                        now,
                        self.config.clone(),
                        local,
                        remote,
                        iss,
                        repr,
                        usize::from(mss),
                    );
                    if repr.payload_len > 0 || flags.fin() {
                        conn.handle_segment(now, repr, payload);
                    }
                    self.stats.cookies_accepted += 1;
                    self.ready.push_back(conn);
                    return;
                }
            }
            if let Some(rst) = reset_for_unknown(repr) {
                self.reply(local, remote, rst);
            }
            return;
        }
        if !flags.syn() {
            return;
        }
        if self.ready.len() >= self.backlog {
            self.stats.accept_queue_drops += 1;
            return;
        }
        if self.half_open.len() < self.syn_backlog {
            let iss = self.isn.isn(now, local, remote);
            let conn = TcpConnection::accept_syn(now, self.config.clone(), local, remote, iss, repr);
            self.half_open.push(conn);
            return;
        }
        // The SYN backlog is full: answer statelessly (RFC 4987 §3.6).
        let peer_mss = repr.options.max_seg_size.unwrap_or(536);
        let our_mss = self.config.mtu.saturating_sub(40).min(usize::from(u16::MAX)) as u16;
        let mss = peer_mss.min(our_mss);
        let index = COOKIE_MSS.iter().rposition(|&m| m <= mss).unwrap_or(0) as u8;
        let cookie = self.cookie(local, remote, repr.seq_number, index, tick(now));
        let syn_ack = TcpRepr {
            src_port: local.port(),
            dst_port: remote.port(),
            seq_number: SeqNumber(cookie),
            ack_number: repr.seq_number + 1,
            flags: TcpFlags::SYN | TcpFlags::ACK,
            window_len: self.config.recv_buffer.min(usize::from(u16::MAX)) as u16,
            options: TcpOptions { max_seg_size: Some(COOKIE_MSS[usize::from(index)]), ..TcpOptions::default() },
            payload_len: 0,
        };
        self.stats.cookies_sent += 1;
        self.reply(local, remote, syn_ack);
    }

    fn reply(&mut self, local: SocketAddr, remote: SocketAddr, repr: TcpRepr) {
        if self.replies.len() >= MAX_PENDING_REPLIES {
            self.stats.reply_drops += 1;
            return;
        }
        self.replies.push_back(ListenerTransmit { local, remote, repr });
    }

    /// RFC 4987 §3.6: top 5 bits a time counter, 3 bits the MSS index, 24
    /// bits a keyed hash of the 4-tuple, the peer's ISN, the counter and the
    /// MSS index (so none of them can be forged).
    fn cookie(&self, local: SocketAddr, remote: SocketAddr, peer_isn: SeqNumber, mss_index: u8, tick: u64) -> u32 {
        let mut h = SipHasher13::new_with_key(&self.cookie_key);
        hash_tuple(&mut h, local, remote);
        h.write(&peer_isn.0.to_be_bytes());
        h.write(&tick.to_be_bytes());
        h.write(&[mss_index]);
        let hash = (h.finish() as u32) & 0x00ff_ffff;
        (((tick & 0x1f) as u32) << 27) | (u32::from(mss_index & 7) << 24) | hash
    }

    /// The MSS a valid cookie in `ack` (ACK − 1) encodes; `None` if it is
    /// not one of ours from this or the previous 64 s tick.
    fn check_cookie(&self, now: Instant, local: SocketAddr, remote: SocketAddr, ack: &TcpRepr) -> Option<u16> {
        let cookie = ack.ack_number.sub_len(1).0;
        let peer_isn = ack.seq_number.sub_len(1);
        let index = ((cookie >> 24) & 7) as u8;
        let current = tick(now);
        [current, current.wrapping_sub(1)]
            .into_iter()
            .filter(|t| (t & 0x1f) as u32 == cookie >> 27)
            .any(|t| self.cookie(local, remote, peer_isn, index, t) == cookie)
            .then_some(COOKIE_MSS[usize::from(index)])
    }

    /// The next segment to send (SYN-ACKs, resets, and the ACKs of
    /// connections not yet accepted); call until `None`.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<ListenerTransmit> {
        if let Some(reply) = self.replies.pop_front() {
            return Some(reply);
        }
        for conn in self.half_open.iter_mut().chain(self.ready.iter_mut()) {
            let (local, remote) = (conn.local_addr(), conn.remote_addr());
            if let Some(segment) = conn.poll_transmit(now) {
                // Connections held by a listener have no data to send: the
                // user has not seen them yet.
                debug_assert_eq!(segment.repr.payload_len, 0);
                return Some(ListenerTransmit { local, remote, repr: segment.repr });
            }
        }
        self.half_open.retain(|c| !c.is_closed());
        None
    }

    /// The earliest deadline of the connections held.
    pub fn poll_deadline(&self) -> Option<Instant> {
        self.half_open.iter().chain(self.ready.iter()).filter_map(|c| c.poll_deadline()).min()
    }

    /// Runs the timers of the connections held (SYN-ACK retransmission,
    /// handshake timeout, delayed ACKs).
    pub fn handle_timeout(&mut self, now: Instant) {
        for conn in self.half_open.iter_mut().chain(self.ready.iter_mut()) {
            conn.handle_timeout(now);
        }
    }

    /// Stops listening: every connection held is reset (their resets come
    /// out of [`Self::poll_transmit`]), as dropping a listener must
    /// (mirage-types `TcpListener`).
    pub fn close(&mut self) {
        for conn in self.half_open.iter_mut().chain(self.ready.iter_mut()) {
            conn.abort();
        }
        // Keep them until their resets are polled; then they are dropped.
        self.half_open.extend(self.ready.drain(..));
    }
}

fn tick(now: Instant) -> u64 {
    now.as_nanos() / COOKIE_TICK_NANOS
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tcp::TcpState;
    use core::net::{IpAddr, Ipv4Addr};

    const LOCAL: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 80);

    fn remote(port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), port)
    }

    fn seg(from: u16, flags: TcpFlags, seq: u32, ack: u32) -> TcpRepr {
        TcpRepr {
            src_port: from,
            dst_port: LOCAL.port(),
            seq_number: SeqNumber(seq),
            ack_number: SeqNumber(ack),
            flags,
            window_len: 1000,
            options: TcpOptions { max_seg_size: Some(1460), ..TcpOptions::default() },
            payload_len: 0,
        }
    }

    fn listener(backlog: usize, syn_backlog: usize) -> TcpListener {
        let config = TcpConfig { timestamps: false, sack: false, window_scaling: false, ..TcpConfig::default() };
        TcpListener::new(LOCAL, config, backlog, syn_backlog, IsnGenerator::new([7; 16]), [9; 16])
    }

    fn drain(l: &mut TcpListener, now: Instant) -> std::vec::Vec<ListenerTransmit> {
        core::iter::from_fn(|| l.poll_transmit(now)).take(1000).collect()
    }

    const SYN_ACK: TcpFlags = TcpFlags(TcpFlags::SYN.0 | TcpFlags::ACK.0);

    #[test]
    fn stateful_handshake_reaches_the_accept_queue() {
        // RFC 9293 §3.10.7.2: SYN → SYN-RECEIVED → ESTABLISHED.
        let mut l = listener(4, 4);
        let now = Instant::from_millis(5);
        l.handle_segment(now, LOCAL, remote(1000), &seg(1000, TcpFlags::SYN, 100, 0), Bytes::new());
        let out = drain(&mut l, now);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].repr.flags, SYN_ACK);
        assert_eq!(out[0].repr.ack_number, SeqNumber(101));
        assert_eq!(out[0].repr.seq_number, IsnGenerator::new([7; 16]).isn(now, LOCAL, remote(1000)));
        assert_eq!(l.half_open_len(), 1);
        let ack = seg(1000, TcpFlags::ACK, 101, out[0].repr.seq_number.0.wrapping_add(1));
        l.handle_segment(now, LOCAL, remote(1000), &ack, Bytes::new());
        let conn = l.accept().unwrap();
        assert_eq!(conn.state(), TcpState::Established);
        assert_eq!((conn.local_addr(), conn.remote_addr()), (LOCAL, remote(1000)));
        assert_eq!(l.half_open_len(), 0);
    }

    #[test]
    fn listen_answers_a_stray_ack_with_a_reset_and_ignores_resets() {
        // RFC 9293 §3.10.7.2.
        let mut l = listener(4, 4);
        l.handle_segment(Instant::ZERO, LOCAL, remote(1), &seg(1, TcpFlags::ACK, 5, 77), Bytes::new());
        let out = drain(&mut l, Instant::ZERO);
        assert_eq!((out[0].repr.flags, out[0].repr.seq_number), (TcpFlags::RST, SeqNumber(77)));
        l.handle_segment(Instant::ZERO, LOCAL, remote(1), &seg(1, TcpFlags::RST, 5, 0), Bytes::new());
        assert!(drain(&mut l, Instant::ZERO).is_empty());
    }

    #[test]
    fn syn_cookies_round_trip_when_the_backlog_is_full() {
        // RFC 4987 §3.6: beyond the SYN backlog, a stateless SYN-ACK whose
        // ISN encodes the MSS; the ACK that returns it creates the
        // connection. A forged or stale cookie gets a reset.
        let mut l = listener(4, 1);
        let now = Instant::from_millis(1_000);
        l.handle_segment(now, LOCAL, remote(1), &seg(1, TcpFlags::SYN, 100, 0), Bytes::new());
        drain(&mut l, now);
        l.handle_segment(now, LOCAL, remote(2), &seg(2, TcpFlags::SYN, 200, 0), Bytes::new());
        assert_eq!(l.half_open_len(), 1, "no state for the second SYN");
        let out = drain(&mut l, now);
        assert_eq!(out.len(), 1);
        let syn_ack = out[0].repr;
        assert_eq!(syn_ack.flags, SYN_ACK);
        assert_eq!(syn_ack.options.max_seg_size, Some(1460));
        assert_eq!(syn_ack.options.window_scale, None, "a cookie cannot keep options");
        assert_eq!(l.stats().cookies_sent, 1);
        let cookie = syn_ack.seq_number.0;

        // A forged cookie is refused.
        let later = now + core::time::Duration::from_secs(30);
        l.handle_segment(later, LOCAL, remote(2), &seg(2, TcpFlags::ACK, 201, cookie ^ 1), Bytes::new());
        assert_eq!(drain(&mut l, later)[0].repr.flags, TcpFlags::RST);
        // The right one is accepted, even in the next 64 s tick.
        l.handle_segment(later, LOCAL, remote(2), &seg(2, TcpFlags::ACK, 201, cookie.wrapping_add(1)), Bytes::new());
        let conn = l.accept().unwrap();
        assert_eq!(conn.state(), TcpState::Established);
        assert_eq!(conn.send_mss(), 1460);
        assert_eq!(l.stats().cookies_accepted, 1);
        // From another peer the same cookie is worthless.
        l.handle_segment(later, LOCAL, remote(3), &seg(3, TcpFlags::ACK, 201, cookie.wrapping_add(1)), Bytes::new());
        assert!(l.accept().is_none());
        // Two ticks later it has expired.
        let stale = now + core::time::Duration::from_secs(200);
        l.handle_segment(stale, LOCAL, remote(2), &seg(2, TcpFlags::ACK, 201, cookie.wrapping_add(1)), Bytes::new());
        assert!(l.accept().is_none());
    }

    #[test]
    fn a_full_accept_queue_drops_syns() {
        let mut l = listener(1, 4);
        let now = Instant::ZERO;
        l.handle_segment(now, LOCAL, remote(1), &seg(1, TcpFlags::SYN, 100, 0), Bytes::new());
        let iss = drain(&mut l, now)[0].repr.seq_number;
        l.handle_segment(now, LOCAL, remote(1), &seg(1, TcpFlags::ACK, 101, iss.0.wrapping_add(1)), Bytes::new());
        assert_eq!(l.ready_len(), 1);
        l.handle_segment(now, LOCAL, remote(2), &seg(2, TcpFlags::SYN, 100, 0), Bytes::new());
        assert!(drain(&mut l, now).is_empty());
        assert_eq!(l.stats().accept_queue_drops, 1);
    }

    #[test]
    fn syn_fin_opens_nothing_and_gets_no_answer() {
        let mut l = listener(4, 4);
        let syn_fin = TcpFlags(TcpFlags::SYN.0 | TcpFlags::FIN.0);
        for flags in [syn_fin, TcpFlags(syn_fin.0 | TcpFlags::ACK.0), TcpFlags(syn_fin.0 | TcpFlags::PSH.0)] {
            l.handle_segment(Instant::ZERO, LOCAL, remote(1), &seg(1, flags, 100, 0), Bytes::new());
        }
        assert!(drain(&mut l, Instant::ZERO).is_empty());
        assert_eq!(l.half_open_len(), 0);
        // Even with the SYN backlog full (no cookie either).
        let mut l = listener(4, 1);
        l.handle_segment(Instant::ZERO, LOCAL, remote(1), &seg(1, TcpFlags::SYN, 100, 0), Bytes::new());
        drain(&mut l, Instant::ZERO);
        l.handle_segment(Instant::ZERO, LOCAL, remote(2), &seg(2, syn_fin, 100, 0), Bytes::new());
        assert!(drain(&mut l, Instant::ZERO).is_empty());
        assert_eq!(l.stats().cookies_sent, 0);
    }

    #[test]
    fn flood_of_syns_is_bounded() {
        // The half-open table and the reply queue stay within their bounds.
        let mut l = listener(4, 8);
        for port in 1..=1000u16 {
            l.handle_segment(Instant::ZERO, LOCAL, remote(port), &seg(port, TcpFlags::SYN, 1, 0), Bytes::new());
        }
        assert_eq!(l.half_open_len(), 8);
        assert_eq!(drain(&mut l, Instant::ZERO).len(), MAX_PENDING_REPLIES + 8);
        assert!(l.stats().reply_drops > 0);
    }

    #[test]
    fn isn_increases_per_tuple_and_differs_across_tuples() {
        // RFC 6528 §3: M (4 µs ticks) plus a keyed hash of the 4-tuple.
        let isn = IsnGenerator::new([1; 16]);
        let a = isn.isn(Instant::from_millis(0), LOCAL, remote(1));
        let a_later = isn.isn(Instant::from_millis(1), LOCAL, remote(1));
        assert_eq!(a_later.0.wrapping_sub(a.0), 250, "1 ms is 250 ticks of 4 µs");
        assert!(a_later > a);
        let b = isn.isn(Instant::from_millis(0), LOCAL, remote(2));
        assert_ne!(a, b);
        let other_key = IsnGenerator::new([2; 16]).isn(Instant::from_millis(0), LOCAL, remote(1));
        assert_ne!(a, other_key);
    }
}
