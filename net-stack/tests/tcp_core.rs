//! Two TCP cores against each other through a lossy in-memory pipe, in
//! virtual time: every segment is emitted to bytes, may be lost,
//! duplicated or delayed (reordered), and is parsed back (checksum
//! included) on the other side.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use mirage_net_stack::tcp::{IsnGenerator, TcpConfig, TcpConnection, TcpListener, TcpState};
use mirage_net_stack::wire::{TcpPacket, TcpRepr};
use mirage_types::time::Instant;

const A_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const B_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

/// A small deterministic generator (xorshift64*), so a failing seed
/// replays exactly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

struct Faults {
    loss_percent: u64,
    dup_percent: u64,
    reorder_percent: u64,
}

struct Pipe {
    rng: Rng,
    faults: Faults,
    /// (delivery time, towards B?, segment bytes)
    in_flight: Vec<(Instant, bool, Vec<u8>)>,
    sent: u64,
}

impl Pipe {
    fn push(&mut self, now: Instant, to_b: bool, bytes: Vec<u8>) {
        self.sent += 1;
        if self.rng.chance(self.faults.loss_percent) {
            return;
        }
        let copies = if self.rng.chance(self.faults.dup_percent) { 2 } else { 1 };
        for _ in 0..copies {
            let mut delay = Duration::from_millis(5);
            if self.rng.chance(self.faults.reorder_percent) {
                delay += Duration::from_millis(self.rng.next() % 20);
            }
            self.in_flight.push((now + delay, to_b, bytes.clone()));
        }
    }

    fn next_delivery(&self) -> Option<Instant> {
        self.in_flight.iter().map(|(t, _, _)| *t).min()
    }

    fn take_due(&mut self, now: Instant) -> Vec<(bool, Vec<u8>)> {
        let mut due = Vec::new();
        let mut i = 0;
        while i < self.in_flight.len() {
            if self.in_flight[i].0 <= now {
                let (_, to_b, bytes) = self.in_flight.swap_remove(i);
                due.push((to_b, bytes));
            } else {
                i += 1;
            }
        }
        due
    }
}

fn parse(bytes: &[u8], src: Ipv4Addr, dst: Ipv4Addr) -> (TcpRepr, Bytes) {
    let packet = TcpPacket::new_checked(bytes).expect("our own segment parses");
    let repr = TcpRepr::parse(&packet, src, dst).expect("our own checksum is right");
    let start = repr.header_len();
    (repr, Bytes::copy_from_slice(&bytes[start..]))
}

fn pattern(i: usize) -> u8 {
    (i.wrapping_mul(7) ^ (i >> 9)) as u8
}

/// Transfers `total` bytes from A to B over a pipe with `faults`, then
/// closes; returns the virtual time it took.
fn transfer(seed: u64, total: usize, faults: Faults) -> Duration {
    let a_addr = SocketAddr::new(IpAddr::V4(A_IP), 40_000);
    let b_addr = SocketAddr::new(IpAddr::V4(B_IP), 80);
    let config = TcpConfig { send_buffer: 64 * 1024, recv_buffer: 64 * 1024, ..TcpConfig::default() };
    let isn = IsnGenerator::new(seed.to_le_bytes().repeat(2).try_into().unwrap());
    let mut now = Instant::ZERO;
    let mut a = TcpConnection::connect(now, config.clone(), a_addr, b_addr, isn.isn(now, a_addr, b_addr));
    let mut listener = TcpListener::new(b_addr, config, 4, 16, isn.clone(), [3; 16]);
    let mut b: Option<TcpConnection> = None;
    let mut pipe = Pipe { rng: Rng(seed | 1), faults, in_flight: Vec::new(), sent: 0 };
    let mut written = 0;
    let mut received = Vec::with_capacity(total);
    let mut buf = vec![0u8; 16 * 1024];
    let mut shut = false;
    let limit = Instant::ZERO + Duration::from_secs(600);

    for _ in 0..5_000_000 {
        // Applications: A writes the pattern, B reads everything.
        while written < total {
            let chunk: Vec<u8> = (written..total.min(written + 8192)).map(pattern).collect();
            let n = a.send(&chunk).expect("A can write until it shuts down");
            if n == 0 {
                break;
            }
            written += n;
        }
        if written == total && !shut {
            a.shutdown_write();
            shut = true;
        }
        if let Some(b) = b.as_mut() {
            loop {
                let n = b.recv(&mut buf);
                if n == 0 {
                    break;
                }
                received.extend_from_slice(&buf[..n]);
            }
            if b.is_recv_finished() && b.state() == TcpState::CloseWait {
                b.close();
            }
        }
        // Output of both sides into the pipe.
        while let Some(seg) = a.poll_transmit(now) {
            let mut out = vec![0u8; seg.repr.buffer_len()];
            seg.emit_ipv4(A_IP, B_IP, &mut out);
            pipe.push(now, true, out);
        }
        while let Some(t) = listener.poll_transmit(now) {
            let mut out = vec![0u8; t.repr.buffer_len()];
            t.repr.emit(&mut TcpPacket::new_unchecked(&mut out[..]), B_IP, A_IP, |_| ());
            pipe.push(now, false, out);
        }
        if b.is_none() {
            b = listener.accept();
            if b.is_some() {
                continue;
            }
        }
        if let Some(b) = b.as_mut() {
            while let Some(seg) = b.poll_transmit(now) {
                let mut out = vec![0u8; seg.repr.buffer_len()];
                seg.emit_ipv4(B_IP, A_IP, &mut out);
                pipe.push(now, false, out);
            }
        }
        let b_done = b.as_ref().is_some_and(|b| b.is_closed());
        if received.len() == total && b_done && matches!(a.state(), TcpState::TimeWait | TcpState::Closed) {
            assert_eq!(a.error(), None);
            assert!(received.iter().enumerate().all(|(i, &x)| x == pattern(i)), "received bytes differ");
            return now.saturating_duration_since(Instant::ZERO);
        }
        assert!(a.error().is_none(), "A failed: {:?} at {now}", a.error());
        // Advance virtual time to the next event.
        let next = [
            pipe.next_delivery(),
            a.poll_deadline(),
            listener.poll_deadline(),
            b.as_ref().and_then(|b| b.poll_deadline()),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or_else(|| {
            panic!(
                "nothing pending at {now}: A {:?} {:?}, B {:?}, {} of {total} bytes received",
                a.state(),
                a.send_queued(),
                b.as_ref().map(|b| (b.state(), b.error())),
                received.len()
            )
        });
        now = now.max(next);
        assert!(now < limit, "transfer stalled: {} of {total} bytes after {now}", received.len());
        for (to_b, bytes) in pipe.take_due(now) {
            if to_b {
                let (repr, payload) = parse(&bytes, A_IP, B_IP);
                match b.as_mut() {
                    Some(b) => b.handle_segment(now, &repr, payload),
                    None => listener.handle_segment(now, b_addr, a_addr, &repr, payload),
                }
            } else {
                let (repr, payload) = parse(&bytes, B_IP, A_IP);
                a.handle_segment(now, &repr, payload);
            }
        }
        a.handle_timeout(now);
        listener.handle_timeout(now);
        if let Some(b) = b.as_mut() {
            b.handle_timeout(now);
        }
    }
    panic!("transfer did not finish within the iteration bound");
}

#[test]
fn one_mebibyte_over_a_clean_pipe() {
    let took = transfer(1, 1 << 20, Faults { loss_percent: 0, dup_percent: 0, reorder_percent: 0 });
    assert!(took < Duration::from_secs(60), "took {took:?}");
}

#[test]
fn one_mebibyte_over_a_lossy_reordering_duplicating_pipe() {
    // RFC 9293's reliability end to end: retransmission (RFC 6298), fast
    // retransmit (RFC 5681), reassembly, duplicate suppression.
    for seed in [7, 42, 1234] {
        transfer(seed, 1 << 20, Faults { loss_percent: 3, dup_percent: 2, reorder_percent: 10 });
    }
}

#[test]
fn heavy_loss_still_delivers_everything() {
    transfer(99, 64 * 1024, Faults { loss_percent: 20, dup_percent: 5, reorder_percent: 30 });
}
