//! The sender's SACK scoreboard: which data beyond SND.UNA the peer
//! holds, and from it which data is lost, how much is in the network, and
//! what to send next during loss recovery.
//!
//! Reading list:
//! - RFC 2018 §3: SACK blocks (left edge, right edge) of data held beyond
//!   the cumulative acknowledgment; §8: a sender must not discard data
//!   that is only SACKed, since the receiver may renege.
//! - RFC 6675 §2: HighACK, HighData, HighRxt, RescueRxt, DupThresh; §4:
//!   Update(), IsLost(), SetPipe() and NextSeg(); §5.1: what a timeout does
//!   to the scoreboard.
//!
//! Bounds: the scoreboard holds at most [`MAX_SACKED_RANGES`] disjoint
//! ranges, whatever the peer sends. A block that would start another range
//! beyond that is dropped when it lies above every range held; otherwise
//! the highest range is forgotten to make room. Forgetting SACK
//! information is always safe (RFC 2018 §8 makes it advisory): the data
//! just counts as not received, so we may retransmit it needlessly, never
//! skip it.
//!
//! Blocks are checked before use: a block that is empty, inverted, below
//! SND.UNA or beyond what we sent (RFC 6675 §4 Update() only records
//! "previously unSACKed" data "between HighACK and HighData") is ignored,
//! so a peer cannot make us believe data it never got was received.

use crate::wire::tcp::{SackBlocks, SeqNumber};

use super::congestion::DUPACK_THRESHOLD;

/// The most disjoint SACKed ranges kept per connection. A peer reports 3
/// or 4 blocks per ACK; 32 covers every hole a receiver with our default
/// of 32 out-of-order runs can have, and keeps the linear scans of
/// `pipe` and `next_segment` short.
pub const MAX_SACKED_RANGES: usize = 32;

/// What [`Scoreboard::next_segment`] says to send (RFC 6675 §4 NextSeg()).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NextSegment {
    /// Retransmit from `seq`, at most `max_len` sequence numbers (up to
    /// the next SACKed range). `rescue` marks rule (4): HighRxt is not
    /// advanced for it.
    Retransmit { seq: SeqNumber, max_len: usize, rescue: bool },
    /// Send new data at HighData (rule 2).
    NewData,
}

/// SACKed ranges above SND.UNA, sorted, disjoint and not adjacent.
#[derive(Clone, Debug)]
pub(crate) struct Scoreboard {
    ranges: [(SeqNumber, SeqNumber); MAX_SACKED_RANGES],
    len: usize,
    /// HighRxt (RFC 6675 §2): the end of the highest retransmission in
    /// this recovery.
    high_rxt: Option<SeqNumber>,
    /// RescueRxt (RFC 6675 §2).
    rescue_rxt: Option<SeqNumber>,
}

impl Default for Scoreboard {
    fn default() -> Scoreboard {
        Scoreboard {
            ranges: [(SeqNumber(0), SeqNumber(0)); MAX_SACKED_RANGES],
            len: 0,
            high_rxt: None,
            rescue_rxt: None,
        }
    }
}

impl Scoreboard {
    pub(crate) fn ranges(&self) -> &[(SeqNumber, SeqNumber)] {
        &self.ranges[..self.len]
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets every SACKed range and the retransmission marks: on a
    /// retransmission timeout (RFC 6675 §5.1 keeps RFC 2018 §8's rule that
    /// the sender must ignore prior SACK information when deciding what to
    /// retransmit after a timeout, since the receiver may have reneged).
    pub(crate) fn clear(&mut self) {
        self.len = 0;
        self.high_rxt = None;
        self.rescue_rxt = None;
    }

    /// Starts a recovery phase: no retransmission in it yet (RFC 6675 §5
    /// step 4.3 sets HighRxt with the first one).
    pub(crate) fn start_recovery(&mut self) {
        self.high_rxt = None;
        self.rescue_rxt = None;
    }

    /// Records a retransmission of `seq..end` (RFC 6675 §5 steps 4.3 and
    /// C.2): HighRxt moves to its end, unless it was a rescue (rule 4),
    /// which sets RescueRxt to `recovery_point` instead.
    pub(crate) fn on_retransmit(&mut self, end: SeqNumber, rescue: Option<SeqNumber>) {
        match rescue {
            Some(point) => self.rescue_rxt = Some(point),
            None => self.high_rxt = Some(self.high_rxt.map_or(end, |h| h.max(end))),
        }
    }

    /// Update() of RFC 6675 §4: drops what the cumulative ACK `snd_una`
    /// covers and records `blocks`, keeping only blocks inside
    /// `snd_una..snd_max`. Returns the bytes newly SACKed.
    #[inline]
    pub(crate) fn update(&mut self, snd_una: SeqNumber, snd_max: SeqNumber, blocks: &SackBlocks) -> usize {
        if self.len == 0 && blocks.is_empty() {
            // Bulk transfer without loss: nothing held, nothing reported
            // (inline, for every ACK).
            if self.high_rxt.is_some_and(|h| h <= snd_una) {
                self.high_rxt = None;
            }
            return 0;
        }
        self.update_ranges(snd_una, snd_max, blocks)
    }

    /// [`Self::update`] when ranges are held or blocks arrived.
    fn update_ranges(&mut self, snd_una: SeqNumber, snd_max: SeqNumber, blocks: &SackBlocks) -> usize {
        self.advance(snd_una);
        let before = self.sacked_bytes();
        for &(left, right) in blocks.as_slice() {
            // Checked in this order so that no arithmetic below sees an
            // inverted or out-of-window block (RFC 2883 D-SACK blocks lie
            // below SND.UNA and are ignored here too).
            if !(left < right && snd_una <= left && right <= snd_max) {
                continue;
            }
            self.insert(left, right);
        }
        self.sacked_bytes().saturating_sub(before)
    }

    /// Drops ranges (and parts of ranges) below `snd_una`.
    fn advance(&mut self, snd_una: SeqNumber) {
        let gone = self.ranges().iter().take_while(|(_, r)| *r <= snd_una).count();
        // Most ACKs drop no range; even an empty `copy_within` calls `memmove`.
        if gone > 0 {
            self.ranges.copy_within(gone..self.len, 0);
            self.len -= gone;
        }
        if let Some(first) = self.ranges[..self.len].first_mut() {
            first.0 = first.0.max(snd_una);
        }
        if self.high_rxt.is_some_and(|h| h <= snd_una) {
            self.high_rxt = None;
        }
    }

    fn insert(&mut self, mut left: SeqNumber, mut right: SeqNumber) {
        // Ranges that overlap or touch the new one merge into it.
        let first = self.ranges().iter().position(|(_, r)| *r >= left).unwrap_or(self.len);
        let mut last = first;
        while last < self.len && self.ranges[last].0 <= right {
            left = left.min(self.ranges[last].0);
            right = right.max(self.ranges[last].1);
            last += 1;
        }
        let merged = last - first;
        if merged == 0 && self.len == MAX_SACKED_RANGES {
            if first == self.len {
                return; // above everything held: dropped (see the bounds)
            }
            self.len -= 1; // forget the highest range
        }
        // Replace ranges[first..last] by the one merged range.
        let tail = self.len;
        if merged == 0 {
            self.ranges.copy_within(first..tail, first + 1);
            self.len += 1;
        } else {
            self.ranges.copy_within(last..tail, first + 1);
            self.len -= merged - 1;
        }
        self.ranges[first] = (left, right);
    }

    fn sacked_bytes(&self) -> usize {
        self.ranges().iter().map(|&(l, r)| r - l).sum()
    }

    /// The highest SACKed sequence number (its range's right edge).
    fn highest_sacked(&self) -> Option<SeqNumber> {
        self.ranges().last().map(|&(_, r)| r)
    }

    /// IsLost(seq) of RFC 6675 §4: DupThresh discontiguous SACKed ranges
    /// above `seq`, or more than (DupThresh − 1)·SMSS bytes SACKed above
    /// it. Both counts only grow as `seq` goes down, so a hole is lost or
    /// not as a whole.
    pub(crate) fn is_lost(&self, seq: SeqNumber, smss: usize) -> bool {
        let mut ranges = 0;
        let mut bytes = 0;
        for &(l, r) in self.ranges().iter().rev() {
            if r <= seq {
                break;
            }
            ranges += 1;
            bytes += r - l.max(seq);
        }
        ranges >= DUPACK_THRESHOLD as usize || bytes > (DUPACK_THRESHOLD as usize - 1) * smss
    }

    /// The holes between `snd_una` and `snd_max`: the unSACKed runs, the
    /// last one ending at `snd_max` (it may be empty).
    fn holes(&self, snd_una: SeqNumber, snd_max: SeqNumber) -> impl Iterator<Item = (SeqNumber, SeqNumber)> + '_ {
        let mut start = snd_una;
        self.ranges().iter().map(|&(l, r)| (l, r)).chain(core::iter::once((snd_max, snd_max))).filter_map(
            move |(l, r)| {
                let hole = (start, l.max(start));
                start = start.max(r);
                (hole.0 < hole.1).then_some(hole)
            },
        )
    }

    /// SetPipe() of RFC 6675 §4: the bytes thought to be in the network,
    /// between `snd_una` and `snd_max` — every unSACKed byte not deemed
    /// lost, plus every byte retransmitted in this recovery (below
    /// HighRxt) that is not SACKed.
    pub(crate) fn pipe(&self, snd_una: SeqNumber, snd_max: SeqNumber, smss: usize) -> usize {
        let high_rxt = self.high_rxt.unwrap_or(snd_una);
        let mut pipe = 0;
        for (start, end) in self.holes(snd_una, snd_max) {
            if !self.is_lost(start, smss) {
                pipe += end - start;
            }
            if start < high_rxt {
                pipe += high_rxt.min(end) - start;
            }
        }
        pipe
    }

    /// NextSeg() of RFC 6675 §4. `new_data` says whether unsent data may
    /// go out now (there is some and the receive window allows it).
    pub(crate) fn next_segment(
        &self,
        snd_una: SeqNumber,
        snd_max: SeqNumber,
        smss: usize,
        new_data: bool,
    ) -> Option<NextSegment> {
        let high_rxt = self.high_rxt.unwrap_or(snd_una);
        let highest_sacked = self.highest_sacked();
        let mut rule3 = None;
        for (start, end) in self.holes(snd_una, snd_max) {
            let from = start.max(high_rxt);
            if from >= end {
                continue;
            }
            // Rule (1): the first unSACKed, lost octet above HighRxt.
            if self.is_lost(from, smss) {
                return Some(NextSegment::Retransmit { seq: from, max_len: end - from, rescue: false });
            }
            // Rule (3) candidate: unSACKed, above HighRxt, below the
            // highest SACKed octet.
            if rule3.is_none() && highest_sacked.is_some_and(|h| from < h) {
                rule3 = Some(NextSegment::Retransmit { seq: from, max_len: end - from, rescue: false });
            }
        }
        // Rule (2): new data.
        if new_data {
            return Some(NextSegment::NewData);
        }
        if rule3.is_some() {
            return rule3;
        }
        // Rule (4): one rescue retransmission of the highest outstanding
        // unSACKed segment per recovery, when nothing else can go.
        if snd_una < snd_max && self.rescue_rxt.is_none_or(|r| snd_una > r) {
            let (start, end) = self.holes(snd_una, snd_max).last()?;
            let seq = start.max(end.sub_len(smss));
            return Some(NextSegment::Retransmit { seq, max_len: end - seq, rescue: true });
        }
        None
    }

    /// Bytes SACKed below `end` (all of them lie above SND.UNA): go-back-N
    /// does not count them as in flight.
    pub(crate) fn sacked_below(&self, end: SeqNumber) -> usize {
        self.ranges().iter().take_while(|(l, _)| *l < end).map(|&(l, r)| r.min(end) - l).sum()
    }

    /// Whether `seq` lies in a SACKed range; if so, the range's end (go-back-N
    /// after a timeout skips data SACKed since).
    pub(crate) fn sacked_until(&self, seq: SeqNumber) -> Option<SeqNumber> {
        self.ranges().iter().find(|(l, r)| seq.in_range(*l, *r)).map(|&(_, r)| r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocks(list: &[(u32, u32)]) -> SackBlocks {
        let mut b = SackBlocks::EMPTY;
        for &(l, r) in list {
            b.push(SeqNumber(l), SeqNumber(r));
        }
        b
    }

    fn ranges(sb: &Scoreboard) -> std::vec::Vec<(u32, u32)> {
        sb.ranges().iter().map(|(l, r)| (l.0, r.0)).collect()
    }

    const UNA: SeqNumber = SeqNumber(1000);
    const MAX: SeqNumber = SeqNumber(11_000);
    const MSS: usize = 1000;

    #[test]
    fn update_merges_and_drops_acknowledged_ranges() {
        // RFC 6675 §4 Update().
        let mut sb = Scoreboard::default();
        assert_eq!(sb.update(UNA, MAX, &blocks(&[(3000, 4000), (6000, 7000)])), 2000);
        assert_eq!(sb.update(UNA, MAX, &blocks(&[(4000, 5000), (3000, 4000)])), 1000);
        assert_eq!(ranges(&sb), [(3000, 5000), (6000, 7000)]);
        assert_eq!(sb.sacked_below(SeqNumber(6500)), 2500);
        assert_eq!(sb.update(UNA, MAX, &blocks(&[(2500, 6500)])), 1500);
        assert_eq!(ranges(&sb), [(2500, 7000)]);
        // The cumulative ACK moving into a range trims it.
        sb.update(SeqNumber(3000), MAX, &SackBlocks::EMPTY);
        assert_eq!(ranges(&sb), [(3000, 7000)]);
        sb.update(SeqNumber(7000), MAX, &SackBlocks::EMPTY);
        assert!(sb.is_empty());
    }

    #[test]
    fn bogus_blocks_are_ignored() {
        let mut sb = Scoreboard::default();
        // Inverted, empty, below SND.UNA (a D-SACK), beyond SND.MAX.
        let b = blocks(&[(5000, 4000), (5000, 5000), (500, 900), (10_000, 12_000)]);
        assert_eq!(sb.update(UNA, MAX, &b), 0);
        assert!(sb.is_empty());
    }

    #[test]
    fn the_number_of_ranges_is_bounded() {
        let mut sb = Scoreboard::default();
        let max = SeqNumber(1_000_000);
        for i in 0..(MAX_SACKED_RANGES as u32 + 10) {
            let l = 2000 + i * 2000;
            sb.update(UNA, max, &blocks(&[(l, l + 1000)]));
        }
        assert_eq!(sb.ranges().len(), MAX_SACKED_RANGES);
        // A lower range still gets in, at the cost of the highest.
        sb.update(UNA, max, &blocks(&[(1200, 1300)]));
        assert_eq!(sb.ranges().len(), MAX_SACKED_RANGES);
        assert_eq!(sb.ranges()[0], (SeqNumber(1200), SeqNumber(1300)));
        // Merging still works when full.
        sb.update(UNA, max, &blocks(&[(1300, 2000)]));
        assert_eq!(sb.ranges()[0], (SeqNumber(1200), SeqNumber(3000)));
    }

    #[test]
    fn is_lost_needs_three_segments_sacked_above() {
        // RFC 6675 §4 IsLost(): more than (DupThresh − 1)·SMSS bytes above.
        let mut sb = Scoreboard::default();
        sb.update(UNA, MAX, &blocks(&[(2000, 4000)]));
        assert!(!sb.is_lost(UNA, MSS), "two segments above are not enough");
        sb.update(UNA, MAX, &blocks(&[(4000, 5000)]));
        assert!(sb.is_lost(UNA, MSS));
        assert!(!sb.is_lost(SeqNumber(4500), MSS));
        // Or DupThresh discontiguous ranges, even of small segments.
        let mut sb = Scoreboard::default();
        sb.update(UNA, MAX, &blocks(&[(2000, 2010), (3000, 3010), (4000, 4010)]));
        assert!(sb.is_lost(UNA, MSS));
        assert!(!sb.is_lost(SeqNumber(2500), MSS));
    }

    #[test]
    fn pipe_counts_unsacked_not_lost_and_retransmitted() {
        // RFC 6675 §4 SetPipe(): ten segments 1000..11000 sent; 2000..3000
        // and 4000..9000 SACKed. Holes: 1000..2000 (lost: 5 segments SACKed
        // above), 3000..4000 (lost), 9000..11000 (not lost).
        let mut sb = Scoreboard::default();
        sb.update(UNA, MAX, &blocks(&[(2000, 3000), (4000, 9000)]));
        assert_eq!(sb.pipe(UNA, MAX, MSS), 2000);
        // Retransmitting the first hole puts it back in the pipe.
        sb.start_recovery();
        sb.on_retransmit(SeqNumber(2000), None);
        assert_eq!(sb.pipe(UNA, MAX, MSS), 3000);
    }

    #[test]
    fn next_segment_retransmits_lost_holes_first_then_new_data() {
        // RFC 6675 §4 NextSeg() rules (1) and (2).
        let mut sb = Scoreboard::default();
        sb.update(UNA, MAX, &blocks(&[(2000, 3000), (4000, 9000)]));
        sb.start_recovery();
        let next = |sb: &Scoreboard, new| sb.next_segment(UNA, MAX, MSS, new);
        assert_eq!(
            next(&sb, true),
            Some(NextSegment::Retransmit { seq: SeqNumber(1000), max_len: 1000, rescue: false })
        );
        sb.on_retransmit(SeqNumber(2000), None);
        assert_eq!(
            next(&sb, true),
            Some(NextSegment::Retransmit { seq: SeqNumber(3000), max_len: 1000, rescue: false })
        );
        sb.on_retransmit(SeqNumber(4000), None);
        // 9000..11000 is not lost: new data goes first (rule 2)...
        assert_eq!(next(&sb, true), Some(NextSegment::NewData));
        // ...and without new data, rule (3) has nothing below the highest
        // SACKed octet, so the rescue retransmission (rule 4) takes the
        // last segment.
        assert_eq!(
            next(&sb, false),
            Some(NextSegment::Retransmit { seq: SeqNumber(10_000), max_len: 1000, rescue: true })
        );
        sb.on_retransmit(SeqNumber(11_000), Some(MAX));
        assert_eq!(next(&sb, false), None, "one rescue per recovery");
    }

    #[test]
    fn rule_three_retransmits_unsacked_data_below_the_highest_sack() {
        // RFC 6675 §4 NextSeg() rule (3): 1000..2000 is not lost (only two
        // segments SACKed above) but lies below the highest SACKed octet.
        let mut sb = Scoreboard::default();
        sb.update(UNA, MAX, &blocks(&[(2000, 4000)]));
        assert_eq!(
            sb.next_segment(UNA, MAX, MSS, false),
            Some(NextSegment::Retransmit { seq: SeqNumber(1000), max_len: 1000, rescue: false })
        );
    }

    #[test]
    fn clear_forgets_everything() {
        // RFC 6675 §5.1 / RFC 2018 §8: after a timeout.
        let mut sb = Scoreboard::default();
        sb.update(UNA, MAX, &blocks(&[(2000, 3000)]));
        sb.on_retransmit(SeqNumber(2000), None);
        sb.clear();
        assert!(sb.is_empty());
        assert_eq!(sb.pipe(UNA, MAX, MSS), 10_000);
    }
}
