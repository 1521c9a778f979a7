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
//! bytes held never exceed the receive buffer; the number of disjoint runs
//! held (each a gap the peer has to fill) is at most `max_segments`, and a
//! segment that would exceed it is dropped (the peer retransmits it).

use alloc::vec::Vec;

use bytes::Bytes;

use crate::wire::tcp::{SackBlocks, SeqNumber, MAX_SACK_BLOCKS};

/// Held segments, sorted by sequence number, never overlapping.
#[derive(Debug)]
pub(crate) struct Reassembly {
    /// (start, data, arrival stamp): a run of contiguous segments was
    /// last changed at the highest stamp among them, which orders SACK
    /// blocks by recency (RFC 2018 §4).
    segments: Vec<(SeqNumber, Bytes, u64)>,
    max_segments: usize,
    /// Counts insertions; never wraps in practice (2^64 segments).
    next_stamp: u64,
}

impl Reassembly {
    pub(crate) fn new(max_segments: usize) -> Reassembly {
        Reassembly { segments: Vec::new(), max_segments, next_stamp: 0 }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// Bytes held.
    pub(crate) fn len_bytes(&self) -> usize {
        self.segments.iter().map(|(_, d, _)| d.len()).sum()
    }

    /// Holds `data` starting at `seq` (after `rcv_nxt`), keeping bytes
    /// already held where they overlap. Returns false if it was dropped
    /// for lack of room for another segment.
    pub(crate) fn insert(&mut self, seq: SeqNumber, mut data: Bytes) -> bool {
        let mut start = seq;
        // Cut the part that the segment before already holds.
        let pos = self.segments.partition_point(|(s, _, _)| *s <= start);
        if let Some((prev_seq, prev, _)) = pos.checked_sub(1).and_then(|i| self.segments.get(i)) {
            let prev_end = *prev_seq + prev.len();
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
        while let Some((next_seq, next, _)) = self.segments.get(i) {
            if *next_seq >= end {
                break;
            }
            if *next_seq + next.len() <= end {
                self.segments.remove(i);
                continue;
            }
            let keep = *next_seq - start;
            data = data.slice(..keep);
            break;
        }
        if data.is_empty() {
            return true;
        }
        if self.segments.len() >= self.max_segments {
            return false;
        }
        self.next_stamp += 1;
        self.segments.insert(pos, (start, data, self.next_stamp));
        true
    }

    /// Takes the next held bytes that start at or before `rcv_nxt`,
    /// trimmed to start at `rcv_nxt`.
    pub(crate) fn pop_ready(&mut self, rcv_nxt: SeqNumber) -> Option<Bytes> {
        while let Some((seq, _, _)) = self.segments.first() {
            if *seq > rcv_nxt {
                return None;
            }
            let skip = rcv_nxt - *seq;
            let (_, data, _) = self.segments.remove(0);
            if skip < data.len() {
                return Some(data.slice(skip..));
            }
        }
        None
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
        for (seq, data, stamp) in &self.segments {
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

    fn bytes(range: core::ops::Range<u8>) -> Bytes {
        Bytes::from(range.collect::<Vec<u8>>())
    }

    #[test]
    fn overlapping_segments_keep_the_first_copy_and_come_out_in_order() {
        let mut r = Reassembly::new(8);
        assert!(r.insert(SeqNumber(10), bytes(10..20)));
        assert!(r.insert(SeqNumber(15), bytes(15..30))); // overlaps the end
        assert!(r.insert(SeqNumber(5), bytes(5..12))); // overlaps the start
        assert!(r.insert(SeqNumber(40), bytes(40..45)));
        assert_eq!(r.len_bytes(), 25 + 5);
        let mut out = vec![];
        let mut next = SeqNumber(5);
        while let Some(chunk) = r.pop_ready(next) {
            next += chunk.len();
            out.extend_from_slice(&chunk);
        }
        assert_eq!(out, (5..30).collect::<Vec<u8>>());
        assert_eq!(next, SeqNumber(30));
        assert!(!r.is_empty());
    }

    #[test]
    fn a_segment_covering_others_replaces_them() {
        let mut r = Reassembly::new(8);
        r.insert(SeqNumber(12), bytes(12..14));
        r.insert(SeqNumber(16), bytes(16..18));
        r.insert(SeqNumber(10), bytes(10..20));
        assert_eq!(r.sack_blocks().as_slice(), &[(SeqNumber(10), SeqNumber(20))]);
        assert_eq!(r.pop_ready(SeqNumber(10)).unwrap(), bytes(10..20));
        assert!(r.is_empty());
    }

    #[test]
    fn the_number_of_gaps_is_bounded() {
        let mut r = Reassembly::new(2);
        assert!(r.insert(SeqNumber(10), bytes(0..2)));
        assert!(r.insert(SeqNumber(20), bytes(0..2)));
        assert!(!r.insert(SeqNumber(30), bytes(0..2)));
        assert_eq!(r.len_bytes(), 4);
    }

    #[test]
    fn sack_blocks_put_the_latest_run_first() {
        // RFC 2018 §4: the first block reports the most recent segment,
        // the others the most recently reported runs.
        let mut r = Reassembly::new(8);
        r.insert(SeqNumber(100), bytes(0..10));
        r.insert(SeqNumber(110), bytes(0..10)); // joins the first run
        r.insert(SeqNumber(200), bytes(0..10));
        r.insert(SeqNumber(150), bytes(0..10));
        let blocks = r.sack_blocks();
        assert_eq!(
            blocks.as_slice(),
            &[(SeqNumber(150), SeqNumber(160)), (SeqNumber(200), SeqNumber(210)), (SeqNumber(100), SeqNumber(120))]
        );
        // Only the four most recent of more runs are reported.
        r.insert(SeqNumber(300), bytes(0..10));
        r.insert(SeqNumber(400), bytes(0..10));
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
}
