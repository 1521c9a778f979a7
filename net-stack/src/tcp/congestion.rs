//! Congestion control: slow start, CUBIC or Reno congestion avoidance,
//! fast retransmit, and entering and leaving loss recovery.
//!
//! Reading list:
//! - RFC 5681 §3.1: initial window, slow start, congestion avoidance, the
//!   loss window after a timeout; §3.2: fast retransmit and recovery.
//! - RFC 6582 §3.2: NewReno's partial acknowledgments and `recover`,
//!   used when the peer does not do SACK.
//! - RFC 6675 §5: entering SACK-based loss recovery (the scoreboard and
//!   what to send during recovery live in `sack.rs` and the connection);
//!   §5.1: what a timeout does to recovery.
//! - RFC 3465 §2.1: slow start counts acknowledged bytes, at most one SMSS
//!   per acknowledgment (L = 1 SMSS).
//! - RFC 9438: CUBIC, the default window growth function. Followed: the
//!   cubic window W_cubic(t) and K (§4.2), the Reno-friendly region with
//!   α_cubic (§4.3), the concave and convex regions through the target
//!   window clamped to [cwnd, 1.5·cwnd] (§4.4, §4.5), the multiplicative
//!   decrease with β_cubic = 0.7 (§4.6), fast convergence (§4.7) and the
//!   timeout rule (§4.8), with C = 0.4. Not done: HyStart++ (RFC 9406,
//!   which §4.10 allows but does not require; slow start is RFC 5681's),
//!   undoing spurious reductions (§4.9), and the application-limited
//!   rule of §5.8 (the window keeps growing while the sender has less
//!   than a window of data to send).
//!
//! Everything is in bytes except inside [`Cubic`], which computes in
//! segments and seconds like the RFC's formulas and converts at the edge.
//! Time comes only from the `now` arguments.

use core::time::Duration;

use mirage_types::time::Instant;

use crate::wire::tcp::SeqNumber;

/// Duplicate acknowledgments that signal a loss (RFC 5681 §3.2,
/// DupThresh of RFC 6675 §2).
pub(crate) const DUPACK_THRESHOLD: u32 = 3;

/// RFC 9438 §4.6: β_cubic, the window kept after a loss.
const BETA_CUBIC: f64 = 0.7;

/// RFC 9438 §5: C, the aggressiveness of the cubic growth, in segments
/// per second³.
const C_CUBIC: f64 = 0.4;

/// RFC 9438 §4.3: α_cubic = 3·(1 − β)/(1 + β), so that CUBIC's average
/// window equals Reno's (AIMD) under the same loss rate.
const ALPHA_CUBIC: f64 = 3.0 * (1.0 - BETA_CUBIC) / (1.0 + BETA_CUBIC);

/// Which algorithm grows and shrinks the congestion window.
///
/// Loss recovery is independent of this choice: SACK-based (RFC 6675)
/// when both ends negotiated SACK, NewReno (RFC 6582) otherwise.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum CongestionControl {
    /// CUBIC (RFC 9438): the window grows as a cubic function of the time
    /// since the last reduction, and is cut to 0.7 of the flight on loss.
    /// Fills long fat pipes faster than Reno. The default.
    #[default]
    Cubic,
    /// Reno's AIMD (RFC 5681 §3.1): one segment per round trip, halved on
    /// loss.
    NewReno,
}

/// What the sender should do after an acknowledgment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AckAction {
    /// Nothing beyond sending what the window allows.
    None,
    /// Retransmit the segment at SND.UNA now (fast retransmit, or a
    /// NewReno partial acknowledgment).
    RetransmitFirst,
}

/// The recovery phase in progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Recovery {
    /// RecoveryPoint (RFC 6675 §5 step 4.1) or `recover` (RFC 6582 §3.2):
    /// recovery ends when this is acknowledged.
    pub(crate) point: SeqNumber,
    /// SACK-based (RFC 6675): the window is not inflated by duplicate
    /// ACKs; the connection sends what `cwnd − pipe` allows.
    pub(crate) sack: bool,
}

/// The congestion window and the state that decides its changes.
#[derive(Clone, Debug)]
pub(crate) struct Congestion {
    algorithm: CongestionControl,
    smss: usize,
    cwnd: usize,
    ssthresh: usize,
    dupacks: u32,
    recovery: Option<Recovery>,
    /// The highest sequence number sent when the last timeout fired: no
    /// new recovery starts until it is acknowledged (RFC 6675 §5.1, RFC
    /// 6582 §3.2 step 1), since duplicate ACKs until then are for data
    /// the timeout already retransmits.
    timeout_recover: Option<SeqNumber>,
    cubic: Cubic,
    /// Fractional bytes of window growth not yet added, so that growth of
    /// less than a byte per ACK (large windows) is not lost.
    growth_carry: f64,
}

impl Congestion {
    pub(crate) fn new(algorithm: CongestionControl, smss: usize) -> Congestion {
        Congestion {
            algorithm,
            smss,
            cwnd: initial_window(smss),
            // RFC 5681 §3.1: "arbitrarily high".
            ssthresh: usize::MAX,
            dupacks: 0,
            recovery: None,
            timeout_recover: None,
            cubic: Cubic::default(),
            growth_carry: 0.0,
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

    pub(crate) fn ssthresh(&self) -> usize {
        self.ssthresh
    }

    pub(crate) fn recovery(&self) -> Option<Recovery> {
        self.recovery
    }

    /// Whether a duplicate ACK may start a recovery now: not during one,
    /// and not before the data outstanding at the last timeout is
    /// acknowledged (RFC 6675 §5.1).
    #[cfg(test)]
    pub(crate) fn may_enter_recovery(&self) -> bool {
        self.recovery.is_none() && self.timeout_recover.is_none()
    }

    /// An acknowledgment that advanced SND.UNA by `acked` bytes to `ack`;
    /// `flight_after` bytes remain outstanding; `srtt` is the smoothed
    /// round-trip time if known (CUBIC looks one RTT ahead).
    pub(crate) fn on_new_ack(
        &mut self,
        now: Instant,
        ack: SeqNumber,
        acked: usize,
        flight_after: usize,
        srtt: Option<Duration>,
    ) -> AckAction {
        self.dupacks = 0;
        if self.timeout_recover.is_some_and(|point| ack >= point) {
            self.timeout_recover = None;
        }
        if let Some(recovery) = self.recovery {
            if ack >= recovery.point {
                // Full acknowledgment: recovery ends (RFC 6675 §5 step A,
                // RFC 6582 §3.2 step 3). NewReno deflates the window it
                // inflated; SACK recovery never inflated it.
                self.cwnd = if recovery.sack {
                    self.ssthresh
                } else {
                    self.ssthresh.min(flight_after.max(self.smss) + self.smss)
                };
                self.recovery = None;
                return AckAction::None;
            }
            if recovery.sack {
                // RFC 6675 §5 step B: the scoreboard and pipe decide what
                // goes next; the window stays at ssthresh.
                return AckAction::None;
            }
            // RFC 6582 §3.2 step 3, partial acknowledgment: retransmit the
            // next hole and deflate by what was acknowledged, adding back
            // one SMSS.
            self.cwnd = self.cwnd.saturating_sub(acked).max(self.smss) + if acked >= self.smss { self.smss } else { 0 };
            return AckAction::RetransmitFirst;
        }
        if self.cwnd < self.ssthresh {
            // RFC 5681 §3.1 slow start, RFC 3465 L = 1 SMSS.
            self.cwnd += acked.min(self.smss);
            return AckAction::None;
        }
        let growth = match self.algorithm {
            // RFC 5681 §3.1 congestion avoidance, eq. (3): about one SMSS
            // per round trip.
            CongestionControl::NewReno => (self.smss * self.smss) as f64 / self.cwnd as f64,
            CongestionControl::Cubic => {
                let smss = self.smss as f64;
                let cwnd = self.cwnd as f64 / smss;
                let rtt = srtt.unwrap_or(Duration::from_millis(100));
                let target = self.cubic.on_ack(now, cwnd, acked as f64 / smss, rtt);
                (target - cwnd).max(0.0) * smss
            }
        };
        self.growth_carry += growth;
        let whole = self.growth_carry as usize;
        self.growth_carry -= whole as f64;
        self.cwnd += whole;
        AckAction::None
    }

    /// A duplicate acknowledgment (RFC 5681 §2's definition, checked by the
    /// caller) with `flight` bytes outstanding; `snd_max` is the highest
    /// sequence number sent. `sack` says the connection negotiated SACK;
    /// `first_lost` says its scoreboard already deems SND.UNA's segment lost
    /// (RFC 6675 §5 step 2), which starts recovery before three duplicates.
    pub(crate) fn on_dup_ack(
        &mut self,
        now: Instant,
        flight: usize,
        snd_max: SeqNumber,
        sack: bool,
        first_lost: bool,
    ) -> AckAction {
        if let Some(recovery) = self.recovery {
            if !recovery.sack {
                // RFC 5681 §3.2 step 4: inflate for the segment that left.
                self.cwnd += self.smss;
            }
            return AckAction::None;
        }
        if self.timeout_recover.is_some() {
            return AckAction::None;
        }
        self.dupacks += 1;
        if self.dupacks < DUPACK_THRESHOLD && !(sack && first_lost) {
            return AckAction::None;
        }
        self.dupacks = 0;
        self.reduce(now, flight);
        self.cwnd = if sack {
            // RFC 6675 §5 step 4.2: cwnd = ssthresh; pipe limits what is sent.
            self.ssthresh
        } else {
            // RFC 5681 §3.2 step 3: inflate by the three segments that left.
            self.ssthresh + DUPACK_THRESHOLD as usize * self.smss
        };
        // RFC 6675 §5 step 4.1, RFC 6582 §3.2 step 2.
        self.recovery = Some(Recovery { point: snd_max, sack });
        AckAction::RetransmitFirst
    }

    /// The retransmission timer expired with `flight` bytes outstanding and
    /// `snd_max` the highest sequence number sent.
    pub(crate) fn on_timeout(&mut self, now: Instant, flight: usize, snd_max: SeqNumber) {
        // A second timeout for the same data (a backed-off retransmission
        // lost again) must not shrink ssthresh further: the flight it sees
        // is one segment, and it already reacted to this loss.
        if self.timeout_recover.is_none() {
            self.reduce(now, flight);
            if self.algorithm == CongestionControl::Cubic {
                // RFC 9438 §4.8: the first congestion avoidance after a
                // timeout starts from K = 0 and W_max = cwnd at its start.
                self.cubic.after_timeout = true;
            }
        }
        // RFC 5681 §3.1: the loss window is one segment. RFC 6675 §5.1 and
        // RFC 6582 §3.2 step 4: recovery ends; none starts again before
        // everything sent so far is acknowledged.
        self.cwnd = self.smss;
        self.dupacks = 0;
        self.recovery = None;
        self.timeout_recover = Some(snd_max);
    }

    /// The multiplicative decrease on a congestion event: sets ssthresh.
    fn reduce(&mut self, now: Instant, flight: usize) {
        let floor = 2 * self.smss;
        self.ssthresh = match self.algorithm {
            // RFC 5681 §3.1 eq. (4).
            CongestionControl::NewReno => (flight / 2).max(floor),
            CongestionControl::Cubic => {
                self.cubic.on_congestion_event(now, self.cwnd as f64 / self.smss as f64);
                // RFC 9438 §4.6: ssthresh = flight_size · β_cubic, at least
                // 2 SMSS.
                ((flight as f64 * BETA_CUBIC) as usize).max(floor)
            }
        };
        self.growth_carry = 0.0;
    }
}

/// CUBIC's state (RFC 9438 §4), in segments and seconds.
#[derive(Clone, Debug, Default)]
pub(crate) struct Cubic {
    /// W_max: the window just before the last reduction (§4.1), after
    /// fast convergence (§4.7). Zero before any loss.
    w_max: f64,
    /// cwnd_prior of §4.6: the window before the last reduction.
    cwnd_prior: f64,
    /// t_epoch of §4.2: when the current congestion avoidance stage began.
    epoch_start: Option<Instant>,
    /// K of §4.2, in seconds.
    k: f64,
    /// W_est of §4.3: the window Reno would have.
    w_est: f64,
    /// The last reduction was a timeout (§4.8).
    after_timeout: bool,
}

impl Cubic {
    /// W_cubic(t) of RFC 9438 §4.2, eq. (1): C·(t − K)³ + W_max.
    pub(crate) fn w_cubic(&self, t: f64) -> f64 {
        let d = t - self.k;
        C_CUBIC * d * d * d + self.w_max
    }

    /// A congestion event with the window at `cwnd` segments, before the
    /// reduction: §4.6 saves cwnd_prior, §4.7 sets W_max with fast
    /// convergence, and the next congestion avoidance starts a new epoch.
    fn on_congestion_event(&mut self, _now: Instant, cwnd: f64) {
        // RFC 9438 §4.7: a flow whose window did not reach its previous
        // W_max releases bandwidth to newer flows by remembering less.
        self.w_max = if cwnd < self.w_max { cwnd * (1.0 + BETA_CUBIC) / 2.0 } else { cwnd };
        self.cwnd_prior = cwnd;
        self.epoch_start = None;
        self.after_timeout = false;
    }

    /// An ACK of `acked` segments in congestion avoidance with the window
    /// at `cwnd` segments; returns the window (segments) to grow toward
    /// on this ACK.
    fn on_ack(&mut self, now: Instant, cwnd: f64, acked: f64, rtt: Duration) -> f64 {
        let epoch = match self.epoch_start {
            Some(epoch) => epoch,
            None => {
                // RFC 9438 §4.2: a new congestion avoidance stage. K from
                // eq. (2) with cwnd_epoch, the window at its start; after a
                // timeout (§4.8) or before any loss, K = 0 and W_max = cwnd.
                if self.after_timeout || self.w_max <= cwnd {
                    self.w_max = cwnd;
                    self.k = 0.0;
                } else {
                    self.k = libm::cbrt((self.w_max - cwnd) / C_CUBIC);
                }
                self.after_timeout = false;
                self.w_est = cwnd; // §4.3: W_est = cwnd_epoch
                self.epoch_start = Some(now);
                now
            }
        };
        let t = now.saturating_duration_since(epoch).as_secs_f64();
        // RFC 9438 §4.3: W_est grows by α_cubic per window of ACKed
        // segments, or 1 (Reno's rate) once it passed cwnd_prior.
        let alpha = if self.w_est >= self.cwnd_prior { 1.0 } else { ALPHA_CUBIC };
        self.w_est += alpha * acked / cwnd.max(1.0);
        if self.w_cubic(t) < self.w_est {
            // Reno-friendly region: at least Reno's window, reached now.
            return self.w_est;
        }
        // RFC 9438 §4.4–4.5: the target is W_cubic one RTT ahead, at least
        // cwnd and at most 1.5·cwnd; cwnd grows by (target − cwnd)/cwnd per
        // acknowledged segment.
        let target = self.w_cubic(t + rtt.as_secs_f64()).clamp(cwnd, 1.5 * cwnd);
        cwnd + (target - cwnd) / cwnd * acked
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

    fn reno() -> Congestion {
        Congestion::new(CongestionControl::NewReno, 1000)
    }

    fn at(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    const T0: Instant = Instant::ZERO;

    #[test]
    fn slow_start_then_avoidance() {
        let mut cc = reno();
        // RFC 5681 §3.1 eq. (1): 1000-byte SMSS starts at 4 segments.
        assert_eq!(cc.cwnd(), 4000);
        cc.on_new_ack(T0, SeqNumber(1000), 1000, 0, None);
        assert_eq!(cc.cwnd(), 5000);
        // RFC 3465: one ACK of many segments still grows by one SMSS.
        cc.on_new_ack(T0, SeqNumber(6000), 5000, 0, None);
        assert_eq!(cc.cwnd(), 6000);
        cc.on_timeout(T0, 6000, SeqNumber(6000));
        assert_eq!(cc.cwnd(), 1000);
        cc.on_new_ack(T0, SeqNumber(7000), 1000, 0, None);
        cc.on_new_ack(T0, SeqNumber(8000), 1000, 0, None);
        assert_eq!(cc.cwnd(), 3000); // ssthresh = 6000 / 2 reached
        cc.on_new_ack(T0, SeqNumber(9000), 1000, 0, None);
        assert_eq!(cc.cwnd(), 3000 + 1000 * 1000 / 3000);
    }

    #[test]
    fn three_dupacks_enter_newreno_recovery() {
        // RFC 5681 §3.2 and RFC 6582 §3.2.
        let mut cc = reno();
        let dup = |cc: &mut Congestion| cc.on_dup_ack(T0, 8000, SeqNumber(9000), false, false);
        assert_eq!(dup(&mut cc), AckAction::None);
        assert_eq!(dup(&mut cc), AckAction::None);
        assert_eq!(dup(&mut cc), AckAction::RetransmitFirst);
        assert_eq!(cc.cwnd(), 4000 + 3000);
        assert_eq!(cc.recovery(), Some(Recovery { point: SeqNumber(9000), sack: false }));
        assert_eq!(dup(&mut cc), AckAction::None);
        assert_eq!(cc.cwnd(), 8000);
        // A partial ack retransmits the next hole.
        assert_eq!(cc.on_new_ack(T0, SeqNumber(3000), 2000, 6000, None), AckAction::RetransmitFirst);
        assert!(cc.recovery().is_some());
        // A full ack ends recovery with cwnd at most ssthresh.
        assert_eq!(cc.on_new_ack(T0, SeqNumber(9000), 6000, 0, None), AckAction::None);
        assert!(cc.recovery().is_none());
        assert_eq!(cc.cwnd(), 2000);
    }

    #[test]
    fn sack_recovery_sets_cwnd_to_ssthresh_and_never_inflates() {
        // RFC 6675 §5 step 4.2: ssthresh = cwnd = FlightSize / 2 (NewReno).
        let mut cc = reno();
        for _ in 0..2 {
            assert_eq!(cc.on_dup_ack(T0, 8000, SeqNumber(9000), true, false), AckAction::None);
        }
        assert_eq!(cc.on_dup_ack(T0, 8000, SeqNumber(9000), true, false), AckAction::RetransmitFirst);
        assert_eq!((cc.cwnd(), cc.ssthresh()), (4000, 4000));
        assert_eq!(cc.on_dup_ack(T0, 8000, SeqNumber(9000), true, false), AckAction::None);
        assert_eq!(cc.cwnd(), 4000, "no inflation in SACK recovery");
        assert_eq!(cc.on_new_ack(T0, SeqNumber(3000), 2000, 6000, None), AckAction::None);
        assert_eq!(cc.on_new_ack(T0, SeqNumber(9000), 6000, 0, None), AckAction::None);
        assert!(cc.recovery().is_none());
        assert_eq!(cc.cwnd(), 4000);
    }

    #[test]
    fn sack_loss_evidence_enters_recovery_before_three_dupacks() {
        // RFC 6675 §5 step 2: IsLost(HighACK + 1) starts recovery.
        let mut cc = reno();
        assert_eq!(cc.on_dup_ack(T0, 8000, SeqNumber(9000), true, true), AckAction::RetransmitFirst);
        // Without SACK the same flag means nothing.
        let mut cc = reno();
        assert_eq!(cc.on_dup_ack(T0, 8000, SeqNumber(9000), false, true), AckAction::None);
    }

    #[test]
    fn no_recovery_until_the_data_of_a_timeout_is_acknowledged() {
        // RFC 6675 §5.1 / RFC 6582 §3.2 step 1.
        let mut cc = reno();
        cc.on_timeout(T0, 8000, SeqNumber(9000));
        assert!(!cc.may_enter_recovery());
        for _ in 0..5 {
            assert_eq!(cc.on_dup_ack(T0, 8000, SeqNumber(9000), true, true), AckAction::None);
        }
        cc.on_new_ack(T0, SeqNumber(8999), 1, 1, None);
        assert!(!cc.may_enter_recovery());
        cc.on_new_ack(T0, SeqNumber(9000), 1, 0, None);
        assert!(cc.may_enter_recovery());
        // A second timeout for the same data keeps ssthresh.
        let mut cc = reno();
        cc.on_timeout(T0, 8000, SeqNumber(9000));
        cc.on_timeout(T0, 1000, SeqNumber(9000));
        assert_eq!(cc.ssthresh(), 4000);
    }

    // ---- CUBIC (RFC 9438) ----------------------------------------------------

    /// A CUBIC connection in congestion avoidance right after a loss at
    /// `w` segments of 1000 bytes: ssthresh = cwnd = 0.7·w.
    fn cubic_after_loss(w: usize) -> Congestion {
        let mut cc = Congestion::new(CongestionControl::Cubic, 1000);
        cc.cwnd = w * 1000;
        for _ in 0..3 {
            cc.on_dup_ack(T0, w * 1000, SeqNumber(1_000_000), true, false);
        }
        cc.on_new_ack(T0, SeqNumber(1_000_000), 1000, 0, None);
        assert!(cc.recovery().is_none());
        cc
    }

    #[test]
    fn cubic_reduction_on_loss_is_beta_0_7() {
        // RFC 9438 §4.6: ssthresh = flight_size · 0.7; cwnd = ssthresh.
        let cc = cubic_after_loss(100);
        assert_eq!(cc.ssthresh(), 70_000);
        assert_eq!(cc.cwnd(), 70_000);
        assert_eq!(cc.cubic.w_max, 100.0);
        // RFC 9438 §4.2 eq. (2): K = ∛((W_max − cwnd_epoch)/C) is set when
        // congestion avoidance starts.
        let mut cc = cc;
        cc.on_new_ack(T0, SeqNumber(1_001_000), 1000, 69_000, Some(Duration::from_millis(10)));
        let k = libm::cbrt((100.0 - 70.0) / 0.4);
        assert!((cc.cubic.k - k).abs() < 1e-9, "K = {} want {k}", cc.cubic.k);
        assert!((k - 4.2172).abs() < 1e-3);
    }

    #[test]
    fn cubic_window_follows_w_cubic_at_chosen_times() {
        // RFC 9438 §4.2 eq. (1): W_cubic(t) = C·(t − K)³ + W_max, checked
        // at t = 0, K and 2K against the closed form.
        let cubic = Cubic { w_max: 100.0, k: libm::cbrt(30.0 / 0.4), ..Cubic::default() };
        let k = cubic.k;
        assert!((cubic.w_cubic(0.0) - 70.0).abs() < 1e-9, "starts at cwnd_epoch = β·W_max");
        assert!((cubic.w_cubic(k) - 100.0).abs() < 1e-9, "plateau at W_max after K seconds");
        assert!((cubic.w_cubic(2.0 * k) - 130.0).abs() < 1e-9, "convex region mirrors the concave");

        // Driving the connection: with a 100 ms RTT and an ACK per segment,
        // the window at time t tracks W_cubic(t) (one RTT of lag at most).
        let rtt = Duration::from_millis(100);
        let mut cc = cubic_after_loss(100);
        let mut now = T0;
        let mut ack = SeqNumber(1_000_000);
        let mut checked = 0;
        for step in 1..=80u64 {
            // One RTT: a window's worth of ACKs.
            let segments = cc.cwnd() / 1000;
            for _ in 0..segments {
                ack += 1000;
                cc.on_new_ack(now, ack, 1000, cc.cwnd(), Some(rtt));
            }
            now = at(step * 100);
            let t = now.saturating_duration_since(T0).as_secs_f64();
            let w = cc.cwnd() as f64 / 1000.0;
            if [2.0, 4.2, 6.0, 8.0].iter().any(|c| (t - c).abs() < 0.05) {
                let expected = cubic.w_cubic(t);
                // The window follows the curve within one RTT of growth:
                // between W_cubic(t − 2·RTT) and W_cubic(t + RTT).
                let low = cubic.w_cubic(t - 0.2).min(expected) - 1.0;
                let high = cubic.w_cubic(t + 0.1).max(expected) + 1.0;
                assert!(low <= w && w <= high, "t = {t}: cwnd {w} segments, W_cubic {expected}");
                checked += 1;
            }
        }
        assert_eq!(checked, 4);
    }

    #[test]
    fn cubic_reno_friendly_region_grows_at_least_like_reno() {
        // RFC 9438 §4.3: with a tiny W_max gap the cubic curve is flat, so
        // W_est (α_cubic per RTT, then 1 per RTT) drives the window.
        let mut cc = cubic_after_loss(10);
        let start = cc.cwnd();
        let rtt = Duration::from_millis(1);
        let mut ack = SeqNumber(1_000_000);
        // Ten RTTs of 1 ms: the cubic term grows by 0.4·(0.01)³, nothing.
        for step in 0..10u64 {
            let segments = cc.cwnd() / 1000;
            for _ in 0..segments {
                ack += 1000;
                cc.on_new_ack(at(step), ack, 1000, cc.cwnd(), Some(rtt));
            }
        }
        let grown = (cc.cwnd() - start) as f64 / 1000.0;
        // α_cubic = 3·0.3/1.7 ≈ 0.53 segments per RTT, so about 5.3
        // segments in 10 RTTs (minus a little for truncation).
        assert!((4.5..=6.5).contains(&grown), "grew {grown} segments");
    }

    #[test]
    fn cubic_fast_convergence_lowers_w_max() {
        // RFC 9438 §4.7: a loss below the previous W_max sets
        // W_max = cwnd·(1 + β)/2.
        let mut cc = cubic_after_loss(100);
        assert_eq!(cc.cubic.w_max, 100.0);
        // Loss again at 80 segments (below W_max = 100).
        cc.cwnd = 80_000;
        for _ in 0..3 {
            cc.on_dup_ack(T0, 80_000, SeqNumber(2_000_000), true, false);
        }
        assert!((cc.cubic.w_max - 80.0 * 1.7 / 2.0).abs() < 1e-9, "W_max = {}", cc.cubic.w_max);
        assert_eq!(cc.ssthresh(), 56_000);
        // A loss above W_max keeps that window as W_max.
        cc.on_new_ack(T0, SeqNumber(2_000_000), 1000, 0, None);
        cc.cwnd = 90_000;
        for _ in 0..3 {
            cc.on_dup_ack(T0, 90_000, SeqNumber(3_000_000), true, false);
        }
        assert_eq!(cc.cubic.w_max, 90.0);
    }

    #[test]
    fn cubic_timeout_resets_to_one_segment_and_restarts_with_k_zero() {
        // RFC 9438 §4.8: ssthresh by β_cubic, cwnd one segment; the next
        // congestion avoidance starts with K = 0 and W_max = its cwnd.
        let mut cc = Congestion::new(CongestionControl::Cubic, 1000);
        cc.cwnd = 50_000;
        cc.on_timeout(T0, 50_000, SeqNumber(100_000));
        assert_eq!((cc.cwnd(), cc.ssthresh()), (1000, 35_000));
        let mut ack = SeqNumber(100_000);
        let mut now = 0;
        while cc.cwnd() < cc.ssthresh() {
            ack += 1000;
            now += 1;
            cc.on_new_ack(at(now), ack, 1000, 0, Some(Duration::from_millis(10)));
        }
        ack += 1000;
        cc.on_new_ack(at(now), ack, 1000, 0, Some(Duration::from_millis(10)));
        assert_eq!(cc.cubic.k, 0.0);
        assert!((cc.cubic.w_max - 35.0).abs() < 1.0, "W_max = {}", cc.cubic.w_max);
    }
}
