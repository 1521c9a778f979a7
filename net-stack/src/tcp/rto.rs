//! The retransmission timer's value.
//!
//! Reading list:
//! - RFC 6298 §2: SRTT, RTTVAR and RTO from round-trip samples; §3: Karn's
//!   rule (no samples from retransmitted segments; enforced by the caller,
//!   which only times segments sent once); §5: exponential backoff.
//! - RFC 7323 §4: samples from timestamps, one per acknowledgment.

use core::time::Duration;

/// The clock granularity G of RFC 6298 §2 in nanoseconds: our clock counts
/// nanoseconds, but timestamps tick in milliseconds, so samples are never
/// finer.
const GRANULARITY: u64 = 1_000_000;

/// Most doublings of the RTO: 2^16 × 200 ms is already beyond any sane
/// `max_rto`; the cap keeps the shift from overflowing.
const MAX_BACKOFF: u32 = 16;

/// Smoothed round-trip time and the retransmission timeout it implies.
///
/// The arithmetic is on `u64` nanoseconds: `Duration`'s multiplications
/// and divisions split seconds from nanoseconds and cost a few hundred
/// instructions per sample, which a request/response exchange pays on
/// every acknowledgment. 2^64 ns is 584 years, and every input is clamped
/// to that, so nothing here can overflow; the timeout, backoff included,
/// is computed when it changes, not each time it is read.
#[derive(Clone, Debug)]
pub(crate) struct RttEstimator {
    /// SRTT in ns, once there is a sample.
    srtt: Option<u64>,
    /// RTTVAR in ns.
    rttvar: u64,
    /// The RTO before backoff, in ns.
    base_rto: u64,
    min_rto: u64,
    max_rto: u64,
    backoff: u32,
    /// `rto()`: `base_rto` doubled `backoff` times, at most `max_rto`.
    rto: Duration,
}

/// `d` in nanoseconds, saturating (at 584 years).
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl RttEstimator {
    /// Before any sample the RTO is `initial` (RFC 6298 §2.1: 1 s).
    pub(crate) fn new(initial: Duration, min_rto: Duration, max_rto: Duration) -> RttEstimator {
        let (min_rto, max_rto) = (nanos(min_rto), nanos(max_rto));
        let mut rtt = RttEstimator {
            srtt: None,
            rttvar: 0,
            // Not `clamp`, which panics when a configuration has min > max.
            base_rto: nanos(initial).max(min_rto).min(max_rto),
            min_rto,
            max_rto,
            backoff: 0,
            rto: Duration::ZERO,
        };
        rtt.update_rto();
        rtt
    }

    /// Takes one round-trip sample and clears the backoff (RFC 6298 §5.7:
    /// a new sample after a backoff gives a fresh RTO).
    pub(crate) fn sample(&mut self, r: Duration) {
        // Below 2^61 ns (73 years), so the sums below cannot overflow.
        let r = nanos(r).min(1 << 61);
        let srtt = match self.srtt {
            // RFC 6298 §2.2.
            None => {
                self.rttvar = r / 2;
                r
            }
            // RFC 6298 §2.3, with alpha = 1/8 and beta = 1/4.
            Some(srtt) => {
                let delta = srtt.abs_diff(r);
                self.rttvar = self.rttvar - self.rttvar / 4 + delta / 4;
                srtt - srtt / 8 + r / 8
            }
        };
        self.srtt = Some(srtt);
        // RFC 6298 §2.4 (lower bound, configurable, see `TcpConfig::min_rto`)
        // and §2.5 (upper bound).
        self.base_rto =
            srtt.saturating_add(GRANULARITY.max(self.rttvar.saturating_mul(4))).max(self.min_rto).min(self.max_rto);
        self.backoff = 0;
        self.update_rto();
    }

    /// Doubles the timeout after it expired (RFC 6298 §5.5).
    pub(crate) fn back_off(&mut self) {
        self.backoff = (self.backoff + 1).min(MAX_BACKOFF);
        self.update_rto();
    }

    fn update_rto(&mut self) {
        self.rto = Duration::from_nanos(self.base_rto.saturating_mul(1 << self.backoff).min(self.max_rto));
    }

    /// The current timeout, backoff included, at most `max_rto`.
    pub(crate) fn rto(&self) -> Duration {
        self.rto
    }

    /// The smoothed round-trip time, once there is a sample.
    pub(crate) fn srtt(&self) -> Option<Duration> {
        self.srtt.map(Duration::from_nanos)
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
