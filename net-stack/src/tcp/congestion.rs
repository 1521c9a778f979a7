//! Congestion control: slow start, congestion avoidance, fast retransmit
//! and NewReno fast recovery.
//!
//! Reading list:
//! - RFC 5681 §3.1: initial window, slow start, congestion avoidance, the
//!   loss window after a timeout; §3.2: fast retransmit and recovery.
//! - RFC 6582 §3.2: NewReno's partial acknowledgments and `recover`.
//! - RFC 3465 §2.1: slow start counts acknowledged bytes, at most one SMSS
//!   per acknowledgment (L = 1 SMSS).

use crate::wire::tcp::SeqNumber;

/// Duplicate acknowledgments that signal a loss (RFC 5681 §3.2).
const DUPACK_THRESHOLD: u32 = 3;

/// What the sender should do after an acknowledgment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AckAction {
    /// Nothing beyond sending what the window allows.
    None,
    /// Retransmit the segment at SND.UNA now (fast retransmit, or a
    /// NewReno partial acknowledgment).
    RetransmitFirst,
}

/// NewReno congestion state, in bytes.
#[derive(Clone, Debug)]
pub(crate) struct NewReno {
    smss: usize,
    cwnd: usize,
    ssthresh: usize,
    dupacks: u32,
    /// `Some(recover)` while in fast recovery (RFC 6582 §3.2).
    recovery: Option<SeqNumber>,
}

impl NewReno {
    pub(crate) fn new(smss: usize) -> NewReno {
        NewReno {
            smss,
            cwnd: initial_window(smss),
            // RFC 5681 §3.1: "arbitrarily high".
            ssthresh: usize::MAX,
            dupacks: 0,
            recovery: None,
        }
    }

    /// Resets the windows to a new sender MSS (learned from the SYN).
    pub(crate) fn set_smss(&mut self, smss: usize) {
        self.smss = smss.max(1);
        self.cwnd = initial_window(self.smss);
    }

    pub(crate) fn cwnd(&self) -> usize {
        self.cwnd
    }

    #[cfg(test)]
    pub(crate) fn in_recovery(&self) -> bool {
        self.recovery.is_some()
    }

    /// An acknowledgment that advanced SND.UNA by `acked` bytes to `ack`.
    pub(crate) fn on_new_ack(&mut self, ack: SeqNumber, acked: usize, flight_after: usize) -> AckAction {
        self.dupacks = 0;
        if let Some(recover) = self.recovery {
            if ack >= recover {
                // RFC 6582 §3.2 step 3: full acknowledgment, deflate.
                self.cwnd = self.ssthresh.min(flight_after.max(self.smss) + self.smss);
                self.recovery = None;
                return AckAction::None;
            }
            // Step 3, partial acknowledgment: retransmit the next hole and
            // deflate by what was acknowledged, adding back one SMSS.
            self.cwnd = self.cwnd.saturating_sub(acked).max(self.smss) + if acked >= self.smss { self.smss } else { 0 };
            return AckAction::RetransmitFirst;
        }
        if self.cwnd < self.ssthresh {
            // RFC 5681 §3.1 slow start, RFC 3465 L = 1 SMSS.
            self.cwnd += acked.min(self.smss);
        } else {
            // RFC 5681 §3.1 congestion avoidance, eq. (3).
            self.cwnd += (self.smss * self.smss / self.cwnd).max(1);
        }
        AckAction::None
    }

    /// A duplicate acknowledgment (RFC 5681 §2's definition, checked by the
    /// caller) with `flight` bytes outstanding; `snd_max` is the highest
    /// sequence number sent.
    pub(crate) fn on_dup_ack(&mut self, flight: usize, snd_max: SeqNumber) -> AckAction {
        if self.recovery.is_some() {
            // RFC 5681 §3.2 step 4: inflate for the segment that left.
            self.cwnd += self.smss;
            return AckAction::None;
        }
        self.dupacks += 1;
        if self.dupacks < DUPACK_THRESHOLD {
            return AckAction::None;
        }
        self.dupacks = 0;
        // RFC 5681 §3.2 step 2, eq. (4), and step 3.
        self.ssthresh = (flight / 2).max(2 * self.smss);
        self.cwnd = self.ssthresh + DUPACK_THRESHOLD as usize * self.smss;
        self.recovery = Some(snd_max);
        AckAction::RetransmitFirst
    }

    /// The retransmission timer expired with `flight` bytes outstanding.
    pub(crate) fn on_timeout(&mut self, flight: usize) {
        // RFC 5681 §3.1 eq. (4) and the loss window of one SMSS; RFC 6582
        // §3.2 step 4 leaves fast recovery.
        self.ssthresh = (flight / 2).max(2 * self.smss);
        self.cwnd = self.smss;
        self.dupacks = 0;
        self.recovery = None;
    }
}

/// RFC 5681 §3.1, eq. (1).
fn initial_window(smss: usize) -> usize {
    if smss > 2190 {
        2 * smss
    } else if smss > 1095 {
        3 * smss
    } else {
        4 * smss
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_start_then_avoidance() {
        let mut cc = NewReno::new(1000);
        // RFC 5681 §3.1 eq. (1): 1000-byte SMSS starts at 4 segments.
        assert_eq!(cc.cwnd(), 4000);
        cc.on_new_ack(SeqNumber(1000), 1000, 0);
        assert_eq!(cc.cwnd(), 5000);
        // RFC 3465: one ACK of many segments still grows by one SMSS.
        cc.on_new_ack(SeqNumber(6000), 5000, 0);
        assert_eq!(cc.cwnd(), 6000);
        cc.on_timeout(6000);
        assert_eq!(cc.cwnd(), 1000);
        cc.on_new_ack(SeqNumber(7000), 1000, 0);
        cc.on_new_ack(SeqNumber(8000), 1000, 0);
        assert_eq!(cc.cwnd(), 3000); // ssthresh = 6000 / 2 reached
        cc.on_new_ack(SeqNumber(9000), 1000, 0);
        assert_eq!(cc.cwnd(), 3000 + 1000 * 1000 / 3000);
    }

    #[test]
    fn three_dupacks_enter_newreno_recovery() {
        // RFC 5681 §3.2 and RFC 6582 §3.2.
        let mut cc = NewReno::new(1000);
        assert_eq!(cc.on_dup_ack(8000, SeqNumber(9000)), AckAction::None);
        assert_eq!(cc.on_dup_ack(8000, SeqNumber(9000)), AckAction::None);
        assert_eq!(cc.on_dup_ack(8000, SeqNumber(9000)), AckAction::RetransmitFirst);
        assert_eq!(cc.cwnd(), 4000 + 3000);
        assert!(cc.in_recovery());
        assert_eq!(cc.on_dup_ack(8000, SeqNumber(9000)), AckAction::None);
        assert_eq!(cc.cwnd(), 8000);
        // A partial ack retransmits the next hole.
        assert_eq!(cc.on_new_ack(SeqNumber(3000), 2000, 6000), AckAction::RetransmitFirst);
        assert!(cc.in_recovery());
        // A full ack ends recovery with cwnd at most ssthresh.
        assert_eq!(cc.on_new_ack(SeqNumber(9000), 6000, 0), AckAction::None);
        assert!(!cc.in_recovery());
        assert_eq!(cc.cwnd(), 2000);
    }
}
