//! Out-of-order data waiting for the gap before it to fill.
//!
//! Reading list:
//! - RFC 9293 §3.10.7.4 ("seventh, process the segment text"): segments
//!   beyond RCV.NXT but inside the window should be held for later.
//! - RFC 2018 §4: which SACK blocks a receiver reports: the first holds
//!   the most recently received segment, the others repeat the most
//!   recently reported blocks.
//!
//! Bounds: the caller only inserts data inside its receive window, so the
//! bytes held never exceed the receive buffer; the number of segments held
//! (at least one per disjoint run, each a gap the peer has to fill) is at
//! most `max_segments`, and a segment that would exceed it is dropped (the
//! peer retransmits it).
//!
//! In real memory: a segment of at least [`MIN_HELD`] bytes is kept as a
//! slice of its frame (zero-copy), so it keeps the frame's buffer alive,
//! for at most the hold time (`TcpConfig::recv_frame_hold`): then
//! [`Reassembly::compact`] copies it into an allocation of its own. A
//! smaller one is copied at once into an allocation of exactly its length,
//! so a peer cannot make us keep a frame (or a device's shared buffer) for
//! a byte. So at most `max_segments` frames are kept, each for at most the
//! hold time, and our own allocations are the copies (exactly the data
//! they hold) and the segment list (64 bytes an entry, in a list whose
//! capacity is at most twice `max_segments`). [`Reassembly::memory`]
//! reports these figures as they are.

use alloc::vec::Vec;
use core::time::Duration;

use bytes::Bytes;
use mirage_types::time::Instant;

use super::buffer::{earliest, hold_over, RecvMemory, MIN_HELD};
use crate::wire::tcp::{SackBlocks, SeqNumber, MAX_SACK_BLOCKS};

/// One segment held.
#[derive(Debug)]
struct Segment {
    start: SeqNumber,
    data: Bytes,
    /// A run of contiguous segments was last changed at the highest stamp
    /// among them, which orders SACK blocks by recency (RFC 2018 §4).
    stamp: u64,
    /// `Some(arrival)` while `data` is a slice of its frame; `None` once
    /// it is a copy of our own.
    received: Option<Instant>,
}

/// Held segments, sorted by sequence number, never overlapping.
#[derive(Debug)]
pub(crate) struct Reassembly {
    segments: Vec<Segment>,
    max_segments: usize,
    /// Counts insertions; never wraps in practice (2^64 segments).
    next_stamp: u64,
    /// How long a segment may stay a slice of its frame; zero: never.
    hold: Duration,
    /// At or before the arrival of the oldest frame slice held (exact
    /// after [`Reassembly::compact`]); `None` when none is held.
    frames_since: Option<Instant>,
}

impl Reassembly {
    /// An empty queue of at most `max_segments` segments, which keeps
    /// segments of at least [`MIN_HELD`] bytes as slices of their frames
    /// for at most `hold` (zero: copies every segment).
    pub(crate) fn new(max_segments: usize, hold: Duration) -> Reassembly {
        Reassembly { segments: Vec::new(), max_segments, next_stamp: 0, hold, frames_since: None }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// Bytes held.
    pub(crate) fn len_bytes(&self) -> usize {
        self.segments.iter().map(|s| s.data.len()).sum()
    }

    /// Holds `data` starting at `seq` (after `rcv_nxt`), a slice of a
    /// frame that arrived at `now`, keeping bytes already held where they
    /// overlap. Returns false if it was dropped for lack of room for
    /// another segment.
    pub(crate) fn insert(&mut self, seq: SeqNumber, mut data: Bytes, now: Instant) -> bool {
        let mut start = seq;
        // Cut the part that the segment before already holds.
        let pos = self.segments.partition_point(|s| s.start <= start);
        if let Some(prev) = pos.checked_sub(1).and_then(|i| self.segments.get(i)) {
            let prev_end = prev.start + prev.data.len();
            if prev_end > start {
                let overlap = (prev_end - start).min(data.len());
                data = data.slice(overlap..);
                start = prev_end;
            }
        }
        if data.is_empty() {
            return true;
        }
        let end = start + data.len();
        // Drop held segments the new one covers entirely; cut its end where
        // it meets the next one.
        let i = pos;
        while let Some(next) = self.segments.get(i) {
            if next.start >= end {
                break;
            }
            if next.start + next.data.len() <= end {
                self.segments.remove(i);
                continue;
            }
            let keep = next.start - start;
            data = data.slice(..keep);
            break;
        }
        if data.is_empty() {
            return true;
        }
        if self.segments.len() >= self.max_segments {
            return false;
        }
        let received = if data.len() >= MIN_HELD && !self.hold.is_zero() {
            self.frames_since = earliest(self.frames_since, Some(now));
            Some(now)
        } else {
            data = Bytes::copy_from_slice(&data);
            None
        };
        self.next_stamp += 1;
        self.segments.insert(pos, Segment { start, data, stamp: self.next_stamp, received });
        true
    }

    /// Takes the next held bytes that start at or before `rcv_nxt`,
    /// trimmed to start at `rcv_nxt`, with when their frame arrived if
    /// they are a slice of it (`None` for a copy of our own).
    pub(crate) fn pop_ready(&mut self, rcv_nxt: SeqNumber) -> Option<(Bytes, Option<Instant>)> {
        while let Some(first) = self.segments.first() {
            if first.start > rcv_nxt {
                return None;
            }
            let skip = rcv_nxt - first.start;
            let segment = self.segments.remove(0);
            if segment.received.is_some() && self.segments.iter().all(|s| s.received.is_none()) {
                self.frames_since = None;
            }
            if skip < segment.data.len() {
                return Some((segment.data.slice(skip..), segment.received));
            }
        }
        None
    }

    /// At or before the arrival of the oldest frame slice held (exact
    /// after [`Self::compact`]); `None` if none is.
    pub(crate) fn frames_since(&self) -> Option<Instant> {
        self.frames_since
    }

    /// Copies every segment held as a frame slice for the hold time or
    /// longer at `now` into memory of our own, releasing its frame.
    pub(crate) fn compact(&mut self, now: Instant) {
        for segment in &mut self.segments {
            if segment.received.is_some_and(|at| hold_over(at, self.hold, now)) {
                segment.data = Bytes::copy_from_slice(&segment.data);
                segment.received = None;
            }
        }
        self.frames_since = self.segments.iter().filter_map(|s| s.received).min();
    }

    /// What the queue holds (`data`, `frames`, `frame_data`, `allocated`).
    pub(crate) fn memory(&self) -> RecvMemory {
        let mut m = RecvMemory {
            allocated: self.segments.capacity() * core::mem::size_of::<Segment>(),
            ..RecvMemory::default()
        };
        for segment in &self.segments {
            m.data += segment.data.len();
            match segment.received {
                Some(_) => {
                    m.frames += 1;
                    m.frame_data += segment.data.len();
                }
                None => m.allocated += segment.data.len(),
            }
        }
        m
    }

    /// The runs held, as SACK blocks, most recently changed first: the
    /// first holds the segment received last, and the others follow in
    /// the order they were last reported (RFC 2018 §4), since a run's
    /// stamp is when it last grew. At most [`MAX_SACK_BLOCKS`].
    pub(crate) fn sack_blocks(&self) -> SackBlocks {
        // The most recent runs, newest first, chosen without allocating.
        let mut best: [(u64, SeqNumber, SeqNumber); MAX_SACK_BLOCKS] =
            [(0, SeqNumber(0), SeqNumber(0)); MAX_SACK_BLOCKS];
        let mut count = 0;
        let mut consider = |run: (SeqNumber, SeqNumber, u64)| {
            let (left, right, stamp) = run;
            let at = best[..count].iter().position(|(s, _, _)| *s < stamp).unwrap_or(count);
            if at < MAX_SACK_BLOCKS {
                let keep = count.min(MAX_SACK_BLOCKS - 1);
                best.copy_within(at..keep, at + 1);
                best[at] = (stamp, left, right);
                count = (count + 1).min(MAX_SACK_BLOCKS);
            }
        };
        let mut run: Option<(SeqNumber, SeqNumber, u64)> = None;
        for Segment { start: seq, data, stamp, .. } in &self.segments {
            let end = *seq + data.len();
            run = match run {
                Some((left, right, newest)) if right == *seq => Some((left, end, newest.max(*stamp))),
                Some(done) => {
                    consider(done);
                    Some((*seq, end, *stamp))
                }
                None => Some((*seq, end, *stamp)),
            };
        }
        if let Some(done) = run {
            consider(done);
        }
        let mut blocks = SackBlocks::EMPTY;
        for (_, left, right) in &best[..count] {
            blocks.push(*left, *right);
        }
        blocks
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;

    const HOLD: Duration = Duration::from_millis(100);
    const T0: Instant = Instant::ZERO;

    fn bytes(range: core::ops::Range<u8>) -> Bytes {
        Bytes::from(range.collect::<Vec<u8>>())
    }

    #[test]
    fn overlapping_segments_keep_the_first_copy_and_come_out_in_order() {
        let mut r = Reassembly::new(8, HOLD);
        assert!(r.insert(SeqNumber(10), bytes(10..20), T0));
        assert!(r.insert(SeqNumber(15), bytes(15..30), T0)); // overlaps the end
        assert!(r.insert(SeqNumber(5), bytes(5..12), T0)); // overlaps the start
        assert!(r.insert(SeqNumber(40), bytes(40..45), T0));
        assert_eq!(r.len_bytes(), 25 + 5);
        let mut out = vec![];
        let mut next = SeqNumber(5);
        while let Some((chunk, _)) = r.pop_ready(next) {
            next += chunk.len();
            out.extend_from_slice(&chunk);
        }
        assert_eq!(out, (5..30).collect::<Vec<u8>>());
        assert_eq!(next, SeqNumber(30));
        assert!(!r.is_empty());
    }

    #[test]
    fn a_segment_covering_others_replaces_them() {
        let mut r = Reassembly::new(8, HOLD);
        r.insert(SeqNumber(12), bytes(12..14), T0);
        r.insert(SeqNumber(16), bytes(16..18), T0);
        r.insert(SeqNumber(10), bytes(10..20), T0);
        assert_eq!(r.sack_blocks().as_slice(), &[(SeqNumber(10), SeqNumber(20))]);
        assert_eq!(r.pop_ready(SeqNumber(10)).unwrap(), (bytes(10..20), None));
        assert!(r.is_empty());
    }

    #[test]
    fn the_number_of_gaps_is_bounded() {
        let mut r = Reassembly::new(2, HOLD);
        assert!(r.insert(SeqNumber(10), bytes(0..2), T0));
        assert!(r.insert(SeqNumber(20), bytes(0..2), T0));
        assert!(!r.insert(SeqNumber(30), bytes(0..2), T0));
        assert_eq!(r.len_bytes(), 4);
    }

    #[test]
    fn sack_blocks_put_the_latest_run_first() {
        // RFC 2018 §4: the first block reports the most recent segment,
        // the others the most recently reported runs.
        let mut r = Reassembly::new(8, HOLD);
        r.insert(SeqNumber(100), bytes(0..10), T0);
        r.insert(SeqNumber(110), bytes(0..10), T0); // joins the first run
        r.insert(SeqNumber(200), bytes(0..10), T0);
        r.insert(SeqNumber(150), bytes(0..10), T0);
        let blocks = r.sack_blocks();
        assert_eq!(
            blocks.as_slice(),
            &[(SeqNumber(150), SeqNumber(160)), (SeqNumber(200), SeqNumber(210)), (SeqNumber(100), SeqNumber(120))]
        );
        // Only the four most recent of more runs are reported.
        r.insert(SeqNumber(300), bytes(0..10), T0);
        r.insert(SeqNumber(400), bytes(0..10), T0);
        assert_eq!(
            r.sack_blocks().as_slice(),
            &[
                (SeqNumber(400), SeqNumber(410)),
                (SeqNumber(300), SeqNumber(310)),
                (SeqNumber(150), SeqNumber(160)),
                (SeqNumber(200), SeqNumber(210))
            ]
        );
    }

    /// A payload as a device hands it up: a slice of a larger frame.
    fn in_frame(len: usize, fill: u8) -> (Bytes, Bytes) {
        let frame = Bytes::from(vec![fill; len + 66]);
        (frame.slice(66..), frame)
    }

    fn at(ms: u64) -> Instant {
        Instant::ZERO + Duration::from_millis(ms)
    }

    #[test]
    fn small_segments_are_copied_and_keep_no_frame() {
        let mut r = Reassembly::new(8, HOLD);
        let (tiny, tiny_frame) = in_frame(1, 1);
        let (large, large_frame) = in_frame(MIN_HELD, 2);
        assert!(r.insert(SeqNumber(100), tiny, at(0)));
        assert!(r.insert(SeqNumber(200), large, at(0)));
        // The byte was copied: its frame is free. The large one is a slice.
        assert!(tiny_frame.is_unique());
        assert!(!large_frame.is_unique());
        let m = r.memory();
        assert_eq!((m.data, m.frames, m.frame_data), (1 + MIN_HELD, 1, MIN_HELD));
        assert_eq!(m.allocated, 1 + r.segments.capacity() * core::mem::size_of::<Segment>());
        assert!(core::mem::size_of::<Segment>() <= 64);
        // A large segment trimmed to a few new bytes by what is held is
        // copied too.
        let (overlapping, overlapping_frame) = in_frame(MIN_HELD + 5, 3);
        assert!(r.insert(SeqNumber(200), overlapping, at(0)));
        assert!(overlapping_frame.is_unique());
        assert_eq!(r.memory().frames, 1);
        assert_eq!(r.frames_since(), Some(at(0)));
    }

    #[test]
    fn slices_held_past_the_hold_time_are_copied() {
        let mut r = Reassembly::new(8, HOLD);
        let (a, a_frame) = in_frame(1448, 1);
        let (b, b_frame) = in_frame(1448, 2);
        r.insert(SeqNumber(1000), a, at(0));
        r.insert(SeqNumber(5000), b, at(60));
        assert_eq!(r.frames_since(), Some(at(0)));
        r.compact(at(99));
        assert_eq!(r.memory().frames, 2);
        r.compact(at(100));
        assert!(a_frame.is_unique() && !b_frame.is_unique());
        assert_eq!(r.frames_since(), Some(at(60)));
        // What comes out is the same bytes, now a copy of our own.
        assert_eq!(r.pop_ready(SeqNumber(1000)), Some((Bytes::from(vec![1u8; 1448]), None)));
        let (rest, received) = r.pop_ready(SeqNumber(5010)).unwrap();
        assert_eq!((rest.len(), received), (1438, Some(at(60))));
        drop(rest);
        assert!(b_frame.is_unique());
        assert_eq!(r.frames_since(), None);
    }

    #[test]
    fn a_zero_hold_time_copies_every_segment() {
        let mut r = Reassembly::new(8, Duration::ZERO);
        let (a, a_frame) = in_frame(1448, 1);
        r.insert(SeqNumber(1000), a, at(0));
        assert!(a_frame.is_unique());
        assert_eq!((r.memory().frames, r.frames_since()), (0, None));
    }
}
