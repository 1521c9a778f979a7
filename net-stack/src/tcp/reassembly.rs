//! Out-of-order data waiting for the gap before it to fill.
//!
//! Reading list:
//! - RFC 9293 §3.10.7.4 ("seventh, process the segment text"): segments
//!   beyond RCV.NXT but inside the window should be held for later.
//! - RFC 2018 §4: which SACK blocks a receiver reports, most recent first.
//!
//! Bounds: the caller only inserts data inside its receive window, so the
//! bytes held never exceed the receive buffer; the number of disjoint runs
//! held (each a gap the peer has to fill) is at most `max_segments`, and a
//! segment that would exceed it is dropped (the peer retransmits it).

use alloc::vec::Vec;

use bytes::Bytes;

use crate::wire::tcp::{SackBlocks, SeqNumber};

/// Held segments, sorted by sequence number, never overlapping.
#[derive(Debug)]
pub(crate) struct Reassembly {
    segments: Vec<(SeqNumber, Bytes)>,
    max_segments: usize,
    /// Start of the most recently inserted segment, for RFC 2018 §4's
    /// "first block holds the most recent segment".
    last_inserted: Option<SeqNumber>,
}

impl Reassembly {
    pub(crate) fn new(max_segments: usize) -> Reassembly {
        Reassembly { segments: Vec::new(), max_segments, last_inserted: None }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// Bytes held.
    pub(crate) fn len_bytes(&self) -> usize {
        self.segments.iter().map(|(_, d)| d.len()).sum()
    }

    /// Holds `data` starting at `seq` (after `rcv_nxt`), keeping bytes
    /// already held where they overlap. Returns false if it was dropped
    /// for lack of room for another segment.
    pub(crate) fn insert(&mut self, seq: SeqNumber, mut data: Bytes) -> bool {
        let mut start = seq;
        // Cut the part that the segment before already holds.
        let pos = self.segments.partition_point(|(s, _)| *s <= start);
        if let Some((prev_seq, prev)) = pos.checked_sub(1).and_then(|i| self.segments.get(i)) {
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
        while let Some((next_seq, next)) = self.segments.get(i) {
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
        self.segments.insert(pos, (start, data));
        self.last_inserted = Some(start);
        true
    }

    /// Takes the next held bytes that start at or before `rcv_nxt`,
    /// trimmed to start at `rcv_nxt`.
    pub(crate) fn pop_ready(&mut self, rcv_nxt: SeqNumber) -> Option<Bytes> {
        while let Some((seq, _)) = self.segments.first() {
            if *seq > rcv_nxt {
                return None;
            }
            let skip = rcv_nxt - *seq;
            let (_, data) = self.segments.remove(0);
            if skip < data.len() {
                return Some(data.slice(skip..));
            }
        }
        None
    }

    /// The runs held, as SACK blocks: the run holding the most recently
    /// received segment first (RFC 2018 §4), then the others in order.
    pub(crate) fn sack_blocks(&self) -> SackBlocks {
        let mut runs: Vec<(SeqNumber, SeqNumber)> = Vec::new();
        for (seq, data) in &self.segments {
            let end = *seq + data.len();
            match runs.last_mut() {
                Some((_, right)) if *right == *seq => *right = end,
                _ => runs.push((*seq, end)),
            }
        }
        let mut blocks = SackBlocks::EMPTY;
        let recent = self.last_inserted.and_then(|s| runs.iter().position(|(l, r)| s.in_range(*l, *r)));
        if let Some(i) = recent {
            blocks.push(runs[i].0, runs[i].1);
        }
        for (i, (l, r)) in runs.iter().enumerate() {
            if Some(i) != recent {
                blocks.push(*l, *r);
            }
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
        // RFC 2018 §4: the first block reports the most recent segment.
        let mut r = Reassembly::new(8);
        r.insert(SeqNumber(100), bytes(0..10));
        r.insert(SeqNumber(110), bytes(0..10)); // joins the first run
        r.insert(SeqNumber(200), bytes(0..10));
        r.insert(SeqNumber(150), bytes(0..10));
        let blocks = r.sack_blocks();
        assert_eq!(
            blocks.as_slice(),
            &[(SeqNumber(150), SeqNumber(160)), (SeqNumber(100), SeqNumber(120)), (SeqNumber(200), SeqNumber(210))]
        );
    }
}
