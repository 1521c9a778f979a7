//! Time: a monotonic clock, the wall clock, and sleeping.
//!
//! The monotonic clock counts nanoseconds from an arbitrary origin (usually
//! boot) and never goes back; protocol timers and timeouts use it. The wall
//! clock tells POSIX time and may jump when it is set; use it only to show
//! or store dates (file modification times, log stamps, certificates).
//!
//! None of these operations can fail, so this family has no error type.
//!
//! # For implementors
//!
//! - [`MonotonicClock::now`] must never return a value smaller than one it
//!   returned before, on the same handle or on any clone of it.
//! - [`Sleep::sleep_until`] completes at the first poll at which the clock
//!   reads at or after the deadline; a deadline in the past completes
//!   immediately (but still yields once to the event loop, so a loop of
//!   zero sleeps cannot starve other tasks).
//!
//! # For users
//!
//! Compute deadlines once and sleep until them (`sleep_until(start +
//! period * n)`) rather than sleeping for a period again and again, so
//! errors do not accumulate.
//!
//! ```
//! use core::time::Duration;
//! use mirage_types::time::{Instant, Sleep};
//!
//! /// Runs `tick` every `period`, `n` times, without drift.
//! async fn every<S: Sleep>(clock: &S, period: Duration, n: u32, mut tick: impl FnMut(Instant)) {
//!     let start = clock.now();
//!     for i in 1..=n {
//!         clock.sleep_until(start + period * i).await;
//!         tick(clock.now());
//!     }
//! }
//! ```

use core::fmt;
use core::ops::{Add, AddAssign, Sub};
use core::time::Duration;

/// A reading of the monotonic clock: nanoseconds since an arbitrary origin.
///
/// Instants from different systems (or different boots) are not comparable.
/// Arithmetic saturates instead of overflowing: 2^64 ns is 584 years.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(u64);

impl Instant {
    /// The clock's origin.
    pub const ZERO: Instant = Instant(0);

    /// An instant `nanos` nanoseconds after the origin.
    pub const fn from_nanos(nanos: u64) -> Instant {
        Instant(nanos)
    }

    /// An instant `millis` milliseconds after the origin (saturating).
    pub const fn from_millis(millis: u64) -> Instant {
        Instant(millis.saturating_mul(1_000_000))
    }

    /// Nanoseconds since the origin.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// Time from `earlier` to `self`, or zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// `self + d`, or `None` if that is not representable.
    pub fn checked_add(self, d: Duration) -> Option<Instant> {
        let nanos = u64::try_from(d.as_nanos()).ok()?;
        self.0.checked_add(nanos).map(Instant)
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    /// Saturates at the largest representable instant.
    fn add(self, d: Duration) -> Instant {
        self.checked_add(d).unwrap_or(Instant(u64::MAX))
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, d: Duration) {
        *self = *self + d;
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    /// Saturates at zero when `rhs` is later than `self`.
    fn sub(self, rhs: Instant) -> Duration {
        self.saturating_duration_since(rhs)
    }
}

impl fmt::Display for Instant {
    /// Seconds since the origin with microsecond precision, as in log
    /// lines. Width and alignment flags apply (`{:>13}`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // u64::MAX ns is "18446744073.709551": 18 bytes; format into a stack
        // buffer first so `pad` can honour the caller's width.
        let mut buf = StackText::<24>::default();
        fmt::Write::write_fmt(
            &mut buf,
            format_args!("{}.{:06}", self.0 / 1_000_000_000, (self.0 % 1_000_000_000) / 1_000),
        )?;
        f.pad(buf.as_str())
    }
}

/// A fixed-capacity text buffer for formatting without allocation.
struct StackText<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> StackText<N> {
    fn as_str(&self) -> &str {
        // Only whole `&str`s are ever copied in, so this cannot fail.
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
    }
}

impl<const N: usize> Default for StackText<N> {
    fn default() -> Self {
        StackText { bytes: [0; N], len: 0 }
    }
}

impl<const N: usize> fmt::Write for StackText<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len.checked_add(s.len()).filter(|&end| end <= N).ok_or(fmt::Error)?;
        self.bytes[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// A point in POSIX time: seconds and nanoseconds since 1970-01-01 UTC,
/// ignoring leap seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PosixTime {
    secs: i64,
    nanos: u32,
}

impl PosixTime {
    /// The epoch, 1970-01-01T00:00:00Z.
    pub const EPOCH: PosixTime = PosixTime { secs: 0, nanos: 0 };

    /// A time `secs` seconds and `nanos` nanoseconds after the epoch;
    /// `None` if `nanos` is not below one second.
    pub const fn new(secs: i64, nanos: u32) -> Option<PosixTime> {
        if nanos < 1_000_000_000 {
            Some(PosixTime { secs, nanos })
        } else {
            None
        }
    }

    /// Whole seconds since the epoch (negative before it).
    pub const fn secs(self) -> i64 {
        self.secs
    }

    /// Nanoseconds within the second, below 10^9.
    pub const fn subsec_nanos(self) -> u32 {
        self.nanos
    }
}

/// A clock that never goes back.
pub trait MonotonicClock {
    /// The current reading.
    fn now(&self) -> Instant;
}

/// The wall clock.
pub trait WallClock {
    /// The current POSIX time. It may jump (forward or back) when the host's
    /// clock is set.
    fn wall_time(&self) -> PosixTime;
}

/// Waiting until a deadline on the monotonic clock.
pub trait Sleep: MonotonicClock {
    /// Completes once [`MonotonicClock::now`] reads at or after `deadline`.
    ///
    /// Cancel-safe: dropping the future only forgets the timer.
    async fn sleep_until(&self, deadline: Instant);

    /// Completes after at least `duration` has passed.
    async fn sleep(&self, duration: Duration) {
        self.sleep_until(self.now() + duration).await
    }
}

forward_handle!(MonotonicClock {
    fn now(&self) -> Instant {
        (**self).now()
    }
});

forward_handle!(WallClock {
    fn wall_time(&self) -> PosixTime {
        (**self).wall_time()
    }
});

forward_handle!(Sleep {
    async fn sleep_until(&self, deadline: Instant) {
        (**self).sleep_until(deadline).await
    }
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instant_arithmetic_saturates() {
        let t = Instant::from_nanos(u64::MAX - 1);
        assert_eq!((t + Duration::from_secs(1)).as_nanos(), u64::MAX);
        assert_eq!(Instant::ZERO - t, Duration::ZERO);
        assert_eq!(t - Instant::ZERO, Duration::from_nanos(u64::MAX - 1));
        assert_eq!(Instant::from_millis(u64::MAX).as_nanos(), u64::MAX);
    }

    #[test]
    fn instant_displays_as_seconds() {
        let t = Instant::from_nanos(3_000_123_456);
        assert_eq!(alloc::format!("{t}"), "3.000123");
        assert_eq!(alloc::format!("[{t:>10}]"), "[  3.000123]");
        assert_eq!(alloc::format!("{}", Instant::from_nanos(u64::MAX)), "18446744073.709551");
    }

    #[test]
    fn posix_time_rejects_bad_nanos() {
        assert!(PosixTime::new(1, 999_999_999).is_some());
        assert!(PosixTime::new(1, 1_000_000_000).is_none());
    }
}
