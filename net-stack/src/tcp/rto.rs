//! The retransmission timer's value.
//!
//! Reading list:
//! - RFC 6298 §2: SRTT, RTTVAR and RTO from round-trip samples; §3: Karn's
//!   rule (no samples from retransmitted segments; enforced by the caller,
//!   which only times segments sent once); §5: exponential backoff.
//! - RFC 7323 §4: samples from timestamps, one per acknowledgment.

use core::time::Duration;

/// The clock granularity G of RFC 6298 §2: our clock counts nanoseconds,
/// but timestamps tick in milliseconds, so samples are never finer.
const GRANULARITY: Duration = Duration::from_millis(1);

/// Most doublings of the RTO: 2^16 × 200 ms is already beyond any sane
/// `max_rto`; the cap keeps the shift from overflowing.
const MAX_BACKOFF: u32 = 16;

/// Smoothed round-trip time and the retransmission timeout it implies.
#[derive(Clone, Debug)]
pub(crate) struct RttEstimator {
    srtt: Option<Duration>,
    rttvar: Duration,
    base_rto: Duration,
    min_rto: Duration,
    max_rto: Duration,
    backoff: u32,
}

impl RttEstimator {
    /// Before any sample the RTO is `initial` (RFC 6298 §2.1: 1 s).
    pub(crate) fn new(initial: Duration, min_rto: Duration, max_rto: Duration) -> RttEstimator {
        RttEstimator {
            srtt: None,
            rttvar: Duration::ZERO,
            base_rto: initial.clamp(min_rto, max_rto),
            min_rto,
            max_rto,
            backoff: 0,
        }
    }

    /// Takes one round-trip sample and clears the backoff (RFC 6298 §5.7:
    /// a new sample after a backoff gives a fresh RTO).
    pub(crate) fn sample(&mut self, r: Duration) {
        match self.srtt {
            // RFC 6298 §2.2.
            None => {
                self.srtt = Some(r);
                self.rttvar = r / 2;
            }
            // RFC 6298 §2.3, with alpha = 1/8 and beta = 1/4.
            Some(srtt) => {
                let delta = srtt.abs_diff(r);
                self.rttvar = self.rttvar * 3 / 4 + delta / 4;
                self.srtt = Some(srtt * 7 / 8 + r / 8);
            }
        }
        let srtt = self.srtt.unwrap_or(r);
        // RFC 6298 §2.4 (lower bound, configurable, see `TcpConfig::min_rto`)
        // and §2.5 (upper bound).
        self.base_rto = (srtt + GRANULARITY.max(self.rttvar * 4)).clamp(self.min_rto, self.max_rto);
        self.backoff = 0;
    }

    /// Doubles the timeout after it expired (RFC 6298 §5.5).
    pub(crate) fn back_off(&mut self) {
        self.backoff = (self.backoff + 1).min(MAX_BACKOFF);
    }

    /// The current timeout, backoff included, at most `max_rto`.
    pub(crate) fn rto(&self) -> Duration {
        self.base_rto.saturating_mul(1 << self.backoff).min(self.max_rto)
    }

    /// The smoothed round-trip time, once there is a sample.
    pub(crate) fn srtt(&self) -> Option<Duration> {
        self.srtt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn initial_rto_and_backoff() {
        // RFC 6298 §2.1: 1 s before any sample; §5.5: doubles on expiry,
        // capped at the maximum (§2.5 allows 60 s).
        let mut rtt = RttEstimator::new(ms(1000), ms(200), ms(60_000));
        assert_eq!(rtt.rto(), ms(1000));
        let mut expected = 1000;
        for _ in 0..10 {
            rtt.back_off();
            expected = (expected * 2).min(60_000);
            assert_eq!(rtt.rto(), ms(expected));
        }
        assert_eq!(rtt.rto(), ms(60_000));
    }

    #[test]
    fn first_and_later_samples() {
        let mut rtt = RttEstimator::new(ms(1000), ms(200), ms(60_000));
        // RFC 6298 §2.2: SRTT = R, RTTVAR = R/2, RTO = SRTT + 4 RTTVAR.
        rtt.sample(ms(100));
        assert_eq!(rtt.srtt(), Some(ms(100)));
        assert_eq!(rtt.rto(), ms(300));
        // §2.3: RTTVAR = 3/4·50 + 1/4·|100 − 300| = 87.5; SRTT = 7/8·100 + 1/8·300 = 125.
        rtt.sample(ms(300));
        assert_eq!(rtt.srtt(), Some(Duration::from_micros(125_000)));
        assert_eq!(rtt.rto(), Duration::from_micros(125_000 + 4 * 87_500));
        // §2.4: never below the minimum.
        for _ in 0..50 {
            rtt.sample(ms(1));
        }
        assert_eq!(rtt.rto(), ms(200));
    }

    #[test]
    fn a_sample_clears_the_backoff() {
        let mut rtt = RttEstimator::new(ms(1000), ms(200), ms(60_000));
        rtt.back_off();
        rtt.back_off();
        assert_eq!(rtt.rto(), ms(4000));
        rtt.sample(ms(100));
        assert_eq!(rtt.rto(), ms(300));
    }
}
