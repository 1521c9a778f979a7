//! A scripted peer that drives one [`TcpConnection`] (or a [`TcpListener`]
//! holding a half-open one) with segments decoded from arbitrary bytes,
//! checking after every step the invariants that must hold whatever
//! arrives. Shared by the `tcp_connection` cargo-fuzz target and the
//! `tcp_core_fuzz` proptest, so both exercise the same code.
//!
//! The first input byte picks a [`Prologue`], a fixed handshake that brings
//! the connection into one state; the second picks configuration bits. The
//! rest is read as steps of (time advance, user call, segment fields); a
//! short input just ends the run. [`run`] panics, with a message naming the
//! invariant, when one is broken: that is the finding a fuzzer reports.
//!
//! Invariants checked:
//! - `send_queued() + send_capacity() <= send_buffer`;
//! - `recv_available() + recv_out_of_order() <= recv_buffer`;
//! - the receive side's memory (`recv_memory()`) within the bounds of
//!   the module docs: at most `⌊recv_buffer / 1024⌋ + 1` frames kept
//!   alive, and its own allocations within their bound for the most data
//!   it has held at once;
//! - every byte we send lies at the sequence number the user's data put it
//!   at, and never past the data written (plus SYN and FIN); the bytes
//!   sent are the bytes written;
//! - every byte received is in stream order: the scripted peer's byte at
//!   sequence number `s` is `s as u8`, so any overlap, duplicate or gap
//!   that reassembly got wrong shows as a wrong byte;
//! - after `handle_timeout(now)` and draining the output, `poll_deadline()`
//!   is not in the past;
//! - a listener holds at most `syn_backlog` half-open and `backlog`
//!   established connections;
//! - `poll_transmit` stops within [`MAX_POLLS`] calls, and every segment
//!   emitted parses back with a right checksum.

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use core::net::{IpAddr, Ipv4Addr, SocketAddr};
use core::time::Duration;

use bytes::Bytes;
use mirage_types::time::Instant;

use super::{IsnGenerator, TcpConfig, TcpConnection, TcpListener, TcpState};
use crate::wire::tcp::{SackBlocks, TcpFlags, TcpOptions, TcpTimestamp};
use crate::wire::{SeqNumber, TcpPacket, TcpRepr};

/// Our address in the script.
const LOCAL_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
/// The scripted peer's address.
const PEER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
/// The peer's initial sequence number in the prologues.
const PEER_ISS: SeqNumber = SeqNumber(0xffff_f000);

/// Steps of one run at most, so a long input stays fast.
pub const MAX_STEPS: usize = 512;
/// Payload bytes of one scripted segment at most.
pub const MAX_PAYLOAD: usize = 4096;
/// `poll_transmit` calls after one step at most before the run fails: a
/// connection that never stops sending is a bug.
pub const MAX_POLLS: usize = 10_000;

/// The send and receive buffers of the driven connection: small, so a few
/// steps fill them.
const BUFFER: usize = 8 * 1024;

/// Bytes where the byte at index `i` is `i as u8`; a payload for sequence
/// number `s` is a slice starting at `s as u8`.
static PATTERN: [u8; 256 + MAX_PAYLOAD] = {
    let mut p = [0u8; 256 + MAX_PAYLOAD];
    let mut i = 0;
    while i < p.len() {
        p[i] = i as u8;
        i += 1;
    }
    p
};

/// The state a run's prologue brings the connection into before the
/// arbitrary steps start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prologue {
    /// We connected; no answer yet.
    SynSent,
    /// A listener answered the peer's SYN; segments go through the listener.
    ListenerSynReceived,
    /// Simultaneous open: we connected and the peer's bare SYN crossed ours.
    SynReceived,
    /// Handshake done, data flowing neither way.
    Established,
    /// We closed; our FIN is unacknowledged.
    FinWait1,
    /// We closed and the peer acknowledged our FIN.
    FinWait2,
    /// The peer closed.
    CloseWait,
    /// Both closed at once; our FIN is unacknowledged.
    Closing,
    /// The peer closed, then we did.
    LastAck,
    /// Both closed and acknowledged.
    TimeWait,
}

impl Prologue {
    /// Every prologue, in the order the first input byte selects them.
    pub const ALL: [Prologue; 10] = [
        Prologue::SynSent,
        Prologue::ListenerSynReceived,
        Prologue::SynReceived,
        Prologue::Established,
        Prologue::FinWait1,
        Prologue::FinWait2,
        Prologue::CloseWait,
        Prologue::Closing,
        Prologue::LastAck,
        Prologue::TimeWait,
    ];

    /// The state the prologue ends in.
    pub fn state(self) -> TcpState {
        match self {
            Prologue::SynSent => TcpState::SynSent,
            Prologue::ListenerSynReceived | Prologue::SynReceived => TcpState::SynReceived,
            Prologue::Established => TcpState::Established,
            Prologue::FinWait1 => TcpState::FinWait1,
            Prologue::FinWait2 => TcpState::FinWait2,
            Prologue::CloseWait => TcpState::CloseWait,
            Prologue::Closing => TcpState::Closing,
            Prologue::LastAck => TcpState::LastAck,
            Prologue::TimeWait => TcpState::TimeWait,
        }
    }
}

/// What a run did, for tests that want to see the states were reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The prologue the input selected.
    pub prologue: Prologue,
    /// The state right after the prologue.
    pub state_after_prologue: TcpState,
    /// The state at the end (of the accepted connection, or `SynReceived`
    /// while the listener still holds it half-open).
    pub final_state: TcpState,
    /// Steps decoded from the input.
    pub steps: usize,
    /// Bytes the connection read in order.
    pub bytes_received: u64,
}

/// Reads the input; past its end every read yields zero and [`Self::done`]
/// turns true.
struct Input<'a> {
    data: &'a [u8],
    at: usize,
}

impl Input<'_> {
    fn done(&self) -> bool {
        self.at >= self.data.len()
    }

    fn u8(&mut self) -> u8 {
        let b = self.data.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        b
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    /// A sequence number near `base`: exact, a small offset either way, a
    /// large offset, or anything.
    fn seq_near(&mut self, base: SeqNumber) -> SeqNumber {
        match self.u8() % 4 {
            0 => base,
            1 => SeqNumber(base.0.wrapping_add(i32::from(self.u16() as i16) as u32)),
            2 => SeqNumber(base.0.wrapping_add((i32::from(self.u16() as i16) << 14) as u32)),
            _ => SeqNumber(self.u32()),
        }
    }
}

/// Where the scripted segments go.
enum Target {
    Connection(Box<TcpConnection>),
    Listener(Box<TcpListener>),
}

/// The driver: the connection under test and the peer's view of it.
struct Driver {
    config: TcpConfig,
    local: SocketAddr,
    remote: SocketAddr,
    target: Target,
    now: Instant,
    /// Our initial sequence number, learnt from our SYN or SYN-ACK.
    our_iss: Option<SeqNumber>,
    /// The highest sequence number we have sent up to (exclusive); set
    /// with `our_iss`.
    our_max: SeqNumber,
    /// Bytes [`TcpConnection::send`] accepted.
    written: u64,
    /// The peer's next sequence number in its own script.
    peer_nxt: SeqNumber,
    /// The last byte read, to check the next one follows it.
    last_read: Option<u8>,
    bytes_received: u64,
    /// The most data the receive side has held at once.
    recv_peak: usize,
    backlog: usize,
    syn_backlog: usize,
}

/// The bound of the module docs on what a connection's receive side
/// allocates itself after holding at most `peak` bytes at once: the ring
/// (at most twice the most it held, at least 4 KiB, at most the buffer),
/// copies (the data, plus a copy of 16 KiB read in part), the chunk list
/// (96 bytes per entry, `2 × ⌊peak / 1024⌋ + 3` entries) and the
/// out-of-order list (128 bytes per segment).
fn recv_allocated_bound(config: &TcpConfig, peak: usize) -> usize {
    let ring = (2 * peak).max(4096).min(config.recv_buffer);
    ring + peak + 16 * 1024 + 96 * (2 * (peak / 1024) + 3) + 128 * config.max_ooo_segments
}

/// Runs the driver over `data`; panics when an invariant breaks (see the
/// module documentation). Returns what the run did.
pub fn run(data: &[u8]) -> Outcome {
    let mut input = Input { data, at: 0 };
    let prologue = Prologue::ALL[usize::from(input.u8()) % Prologue::ALL.len()];
    let bits = input.u8();
    let config = TcpConfig {
        send_buffer: BUFFER,
        recv_buffer: BUFFER,
        max_ooo_segments: 4,
        mtu: 576 + usize::from(bits & 0x03) * 300,
        window_scaling: bits & 0x04 == 0,
        timestamps: bits & 0x08 == 0,
        sack: bits & 0x10 == 0,
        nodelay: bits & 0x20 != 0,
        delayed_ack: if bits & 0x40 != 0 { Duration::ZERO } else { Duration::from_millis(40) },
        ..TcpConfig::default()
    };
    let mut driver = Driver::new(prologue, config);
    let state_after_prologue = driver.state();
    let mut steps = 0;
    while !input.done() && steps < MAX_STEPS {
        driver.step(&mut input);
        steps += 1;
    }
    Outcome {
        prologue,
        state_after_prologue,
        final_state: driver.state(),
        steps,
        bytes_received: driver.bytes_received,
    }
}

impl Driver {
    fn new(prologue: Prologue, config: TcpConfig) -> Driver {
        let local = SocketAddr::new(IpAddr::V4(LOCAL_IP), 80);
        let remote = SocketAddr::new(IpAddr::V4(PEER_IP), 40_000);
        let isn = IsnGenerator::new([7; 16]);
        let now = Instant::ZERO;
        let target = if prologue == Prologue::ListenerSynReceived {
            Target::Listener(Box::new(TcpListener::new(local, config.clone(), 2, 4, isn, [9; 16])))
        } else {
            Target::Connection(Box::new(TcpConnection::connect(
                now,
                config.clone(),
                local,
                remote,
                isn.isn(now, local, remote),
            )))
        };
        let mut d = Driver {
            config,
            local,
            remote,
            target,
            now,
            our_iss: None,
            our_max: SeqNumber(0),
            written: 0,
            peer_nxt: PEER_ISS,
            last_read: None,
            bytes_received: 0,
            recv_peak: 0,
            backlog: 2,
            syn_backlog: 4,
        };
        d.drain();
        d.prologue(prologue);
        d
    }

    fn state(&self) -> TcpState {
        match &self.target {
            Target::Connection(c) => c.state(),
            Target::Listener(_) => TcpState::SynReceived,
        }
    }

    fn syn_options(&self) -> TcpOptions {
        TcpOptions {
            max_seg_size: Some(1460),
            window_scale: Some(7),
            sack_permitted: true,
            sack_blocks: SackBlocks::EMPTY,
            timestamp: Some(TcpTimestamp { value: 1, echo: 0 }),
        }
    }

    /// A segment of the scripted peer at its next sequence number,
    /// acknowledging everything we sent.
    fn peer_segment(&self, flags: TcpFlags) -> TcpRepr {
        let syn = flags.syn();
        TcpRepr {
            src_port: self.remote.port(),
            dst_port: self.local.port(),
            seq_number: self.peer_nxt,
            ack_number: self.our_max,
            flags,
            window_len: 65_535,
            options: if syn {
                self.syn_options()
            } else {
                TcpOptions { timestamp: Some(TcpTimestamp { value: 2, echo: 0 }), ..TcpOptions::default() }
            },
            payload_len: 0,
        }
    }

    /// Sends one scripted segment and advances the peer's sequence number
    /// past its SYN or FIN.
    fn peer_send(&mut self, flags: TcpFlags) {
        let repr = self.peer_segment(flags);
        self.deliver(&repr);
        self.peer_nxt += usize::from(flags.syn()) + usize::from(flags.fin());
    }

    fn connection(&mut self) -> &mut TcpConnection {
        match &mut self.target {
            Target::Connection(c) => c,
            Target::Listener(_) => unreachable!("the listener prologue never asks for a connection"),
        }
    }

    fn prologue(&mut self, prologue: Prologue) {
        const SYN_ACK: TcpFlags = TcpFlags(TcpFlags::SYN.0 | TcpFlags::ACK.0);
        const FIN_ACK: TcpFlags = TcpFlags(TcpFlags::FIN.0 | TcpFlags::ACK.0);
        match prologue {
            Prologue::SynSent => {}
            Prologue::ListenerSynReceived => self.peer_send(TcpFlags::SYN),
            Prologue::SynReceived => self.peer_send(TcpFlags::SYN),
            Prologue::Established => self.peer_send(SYN_ACK),
            Prologue::FinWait1 | Prologue::FinWait2 | Prologue::Closing | Prologue::TimeWait => {
                self.peer_send(SYN_ACK);
                self.connection().close();
                self.drain();
                match prologue {
                    Prologue::FinWait2 => self.peer_send(TcpFlags::ACK),
                    Prologue::Closing => {
                        // The peer's FIN must not acknowledge ours.
                        let mut fin = self.peer_segment(FIN_ACK);
                        fin.ack_number = self.our_max.sub_len(1);
                        self.deliver(&fin);
                        self.peer_nxt += 1;
                    }
                    Prologue::TimeWait => {
                        self.peer_send(TcpFlags::ACK);
                        self.peer_send(FIN_ACK);
                    }
                    _ => {}
                }
            }
            Prologue::CloseWait | Prologue::LastAck => {
                self.peer_send(SYN_ACK);
                self.peer_send(FIN_ACK);
                if prologue == Prologue::LastAck {
                    self.connection().close();
                    self.drain();
                }
            }
        }
    }

    /// Feeds `repr` (with the peer's pattern as payload) to the target,
    /// then drains and checks.
    fn deliver(&mut self, repr: &TcpRepr) {
        let data_seq = repr.seq_number + usize::from(repr.flags.syn());
        let start = usize::from(data_seq.0 as u8);
        let payload = Bytes::from_static(&PATTERN[start..start + repr.payload_len]);
        match &mut self.target {
            Target::Connection(c) => c.handle_segment(self.now, repr, payload),
            Target::Listener(l) => l.handle_segment(self.now, self.local, self.remote, repr, payload),
        }
        self.drain();
    }

    fn step(&mut self, input: &mut Input<'_>) {
        let control = input.u8();
        let magnitude = u64::from(input.u8());
        let advance = match control & 0x03 {
            0 => Duration::ZERO,
            1 => Duration::from_millis(magnitude),
            2 => Duration::from_millis(magnitude * 100),
            _ => Duration::from_secs(magnitude * 4),
        };
        self.now += advance;
        self.run_timers();
        self.user_call(control >> 2, input);

        let flags = TcpFlags(input.u8());
        let seq = input.seq_near(self.peer_nxt);
        let ack = input.seq_near(self.our_max);
        let window_len = input.u16();
        let options = self.fuzzed_options(input);
        let payload_len = usize::from(input.u16()) % (MAX_PAYLOAD + 1);
        let repr = TcpRepr {
            src_port: self.remote.port(),
            dst_port: self.local.port(),
            seq_number: seq,
            ack_number: ack,
            flags,
            window_len,
            options,
            payload_len,
        };
        self.deliver(&repr);
        // A segment exactly at the peer's next number moves its script on,
        // so in-order data accumulates and fills the buffers.
        if seq == self.peer_nxt {
            self.peer_nxt += payload_len + usize::from(flags.syn()) + usize::from(flags.fin());
        }
        self.accept();
        self.check_bounds();
    }

    fn fuzzed_options(&self, input: &mut Input<'_>) -> TcpOptions {
        let which = input.u8();
        let mut options = TcpOptions::default();
        if which & 0x01 != 0 {
            options.max_seg_size = Some(input.u16());
        }
        if which & 0x02 != 0 {
            options.window_scale = Some(input.u8());
        }
        options.sack_permitted = which & 0x04 != 0;
        if which & 0x08 != 0 {
            options.timestamp = Some(TcpTimestamp { value: input.u32(), echo: input.u32() });
        }
        for _ in 0..(which >> 5) % 5 {
            let left = input.seq_near(self.our_max);
            let right = left + usize::from(input.u16());
            options.sack_blocks.push(left, right);
        }
        options
    }

    fn run_timers(&mut self) {
        let deadline = match &self.target {
            Target::Connection(c) => c.poll_deadline(),
            Target::Listener(l) => l.poll_deadline(),
        };
        if deadline.is_none_or(|d| d > self.now) {
            return;
        }
        match &mut self.target {
            Target::Connection(c) => c.handle_timeout(self.now),
            Target::Listener(l) => l.handle_timeout(self.now),
        }
        self.drain();
        let after = match &self.target {
            Target::Connection(c) => c.poll_deadline(),
            Target::Listener(l) => l.poll_deadline(),
        };
        if let Some(after) = after {
            assert!(after >= self.now, "poll_deadline {after} is before now {} after handle_timeout", self.now);
        }
    }

    fn user_call(&mut self, call: u8, input: &mut Input<'_>) {
        let Target::Connection(conn) = &mut self.target else {
            return;
        };
        match call % 16 {
            0..=5 => {}
            6..=9 => {
                let len = usize::from(input.u16()) % (MAX_PAYLOAD + 1);
                // Our stream's byte at offset k is (k * 3) as u8, so the
                // bytes sent can be checked against their sequence number.
                let data: Vec<u8> = (self.written..self.written + len as u64).map(|k| (k * 3) as u8).collect();
                if let Ok(n) = conn.send(&data) {
                    assert!(n <= data.len(), "send took {n} bytes of {}", data.len());
                    self.written += n as u64;
                }
            }
            10..=12 => {
                let mut buf = vec![0u8; BUFFER];
                let n = conn.recv(&mut buf);
                assert!(n <= buf.len(), "recv returned {n} for a {} byte buffer", buf.len());
                for &b in &buf[..n] {
                    if let Some(prev) = self.last_read {
                        assert_eq!(b, prev.wrapping_add(1), "byte {} read out of stream order", self.bytes_received);
                    }
                    self.last_read = Some(b);
                    self.bytes_received += 1;
                }
            }
            13 => conn.shutdown_write(),
            14 => conn.close(),
            _ => {
                if input.u8() == 0 {
                    conn.abort();
                }
            }
        }
        self.drain();
    }

    /// Moves an established connection out of the listener, as the async
    /// layer does.
    fn accept(&mut self) {
        if let Target::Listener(l) = &mut self.target {
            if let Some(conn) = l.accept() {
                self.target = Target::Connection(Box::new(conn));
                self.drain();
            }
        }
    }

    fn check_bounds(&mut self) {
        match &self.target {
            Target::Connection(c) => {
                assert!(
                    c.send_queued() + c.send_capacity() <= self.config.send_buffer,
                    "send buffer over its bound: {} queued + {} free > {}",
                    c.send_queued(),
                    c.send_capacity(),
                    self.config.send_buffer
                );
                assert!(
                    c.recv_available() + c.recv_out_of_order() <= self.config.recv_buffer,
                    "receive buffer over its bound: {} in order + {} out of order > {}",
                    c.recv_available(),
                    c.recv_out_of_order(),
                    self.config.recv_buffer
                );
                assert!(c.send_queued() as u64 <= self.written, "more queued than written");
                let m = c.recv_memory();
                assert_eq!(m.data, c.recv_available() + c.recv_out_of_order(), "receive figures: {m:?}");
                assert!(m.frame_data <= m.data, "receive figures: {m:?}");
                assert!(m.frames <= self.config.recv_buffer / 1024 + 1, "{} frames kept alive", m.frames);
                self.recv_peak = self.recv_peak.max(m.data);
                let bound = recv_allocated_bound(&self.config, self.recv_peak);
                assert!(m.allocated <= bound, "receive side allocated {} bytes, over {bound}: {m:?}", m.allocated);
            }
            Target::Listener(l) => {
                assert!(l.half_open_len() <= self.syn_backlog, "{} half-open connections", l.half_open_len());
                assert!(l.ready_len() <= self.backlog, "{} connections waiting for accept", l.ready_len());
            }
        }
    }

    /// Drains and checks everything the target sends.
    fn drain(&mut self) {
        let mut reprs: Vec<(TcpRepr, Vec<u8>)> = Vec::new();
        match &mut self.target {
            Target::Connection(c) => {
                while let Some(segment) = c.poll_transmit(self.now) {
                    assert!(reprs.len() < MAX_POLLS, "poll_transmit did not stop after {MAX_POLLS} segments");
                    let mut bytes = vec![0u8; segment.repr.buffer_len()];
                    segment.emit_ipv4(LOCAL_IP, PEER_IP, &mut bytes);
                    reprs.push((segment.repr, bytes));
                }
            }
            Target::Listener(l) => {
                while let Some(t) = l.poll_transmit(self.now) {
                    assert!(reprs.len() < MAX_POLLS, "poll_transmit did not stop after {MAX_POLLS} segments");
                    assert_eq!(t.repr.payload_len, 0, "a listener sent data");
                    let mut bytes = vec![0u8; t.repr.buffer_len()];
                    t.repr.emit(&mut TcpPacket::new_unchecked(&mut bytes[..]), LOCAL_IP, PEER_IP, |_| {});
                    reprs.push((t.repr, bytes));
                }
            }
        }
        for (repr, bytes) in reprs {
            self.check_sent(&repr, &bytes);
        }
    }

    /// Checks one segment we sent: it parses back, and its data and FIN
    /// sit where the bytes written put them.
    fn check_sent(&mut self, repr: &TcpRepr, bytes: &[u8]) {
        let packet = TcpPacket::new_checked(bytes).expect("a segment we emitted is well formed");
        let parsed = TcpRepr::parse(&packet, LOCAL_IP, PEER_IP).expect("a segment we emitted has a right checksum");
        assert_eq!(parsed.seq_number, repr.seq_number, "emitted sequence number");
        assert_eq!(parsed.payload_len, repr.payload_len, "emitted payload length");
        if repr.flags.rst() {
            return;
        }
        if repr.flags.syn() && matches!(self.target, Target::Listener(_)) {
            // A listener's half-open connection may be replaced by a new
            // incarnation (a new SYN after a reset) with its own ISS.
            self.our_iss = None;
        }
        if repr.flags.syn() {
            let iss = *self.our_iss.get_or_insert_with(|| {
                self.our_max = repr.seq_number + 1;
                repr.seq_number
            });
            assert_eq!(repr.seq_number, iss, "a SYN at another sequence number than our first");
        }
        let Some(iss) = self.our_iss else {
            return;
        };
        assert!(repr.payload_len <= self.config.send_buffer, "a segment larger than the send buffer");
        let data_start = repr.seq_number + usize::from(repr.flags.syn());
        let offset = i64::from(data_start.distance_from(iss + 1));
        let end = offset + repr.payload_len as i64;
        if repr.payload_len == 0 && !repr.flags.fin() {
            // A bare ACK occupies no sequence space; after our FIN it
            // carries the number past it.
            return;
        }
        assert!(
            offset >= 0 && end as u64 <= self.written,
            "data sent at stream offsets {offset}..{end}, but {} bytes were written",
            self.written
        );
        for (i, &b) in packet.payload().iter().enumerate() {
            let k = offset as u64 + i as u64;
            assert_eq!(b, (k * 3) as u8, "sent byte at stream offset {k} is not the byte written there");
        }
        if repr.flags.fin() {
            assert_eq!(
                end as u64, self.written,
                "FIN sent at offset {end}, not after the {} bytes written",
                self.written
            );
        }
        let seg_end = data_start + repr.payload_len + usize::from(repr.flags.fin());
        if seg_end > self.our_max {
            self.our_max = seg_end;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_prologue_reaches_its_state() {
        for (i, prologue) in Prologue::ALL.iter().enumerate() {
            let outcome = run(&[i as u8, 0]);
            assert_eq!(outcome.prologue, *prologue);
            assert_eq!(outcome.state_after_prologue, prologue.state(), "{prologue:?}");
        }
    }

    #[test]
    fn in_order_data_is_read_back() {
        // ESTABLISHED, then: recv call (control 10 << 2) with an in-order
        // ACK segment carrying 100 bytes, twice, then a final read.
        let mut data = vec![3, 0x08];
        for _ in 0..3 {
            data.extend_from_slice(&[10 << 2, 0, TcpFlags::ACK.0, 0, 0, 0xff, 0xff, 0, 0, 100]);
        }
        let outcome = run(&data);
        assert_eq!(outcome.final_state, TcpState::Established);
        assert_eq!(outcome.bytes_received, 200);
    }
}
