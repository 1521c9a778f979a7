//! Time arithmetic: TSC ticks to nanoseconds, PIT ticks for a timeout, and
//! the CMOS clock's registers to POSIX time. Pure functions; the kernel
//! feeds them hardware readings.

use core::fmt;

use mirage_types::time::PosixTime;

/// Converts TSC ticks to nanoseconds: `ns = ticks * mult >> 32`, with
/// `mult` the nanoseconds per tick in 32.32 fixed point (an error below
/// one part in 4·10⁹).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TscScale {
    mult: u64,
}

/// Why the TSC frequency could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadTscFrequency(pub u64);

impl fmt::Display for BadTscFrequency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "measured TSC frequency {} Hz is outside 1 MHz..100 GHz", self.0)
    }
}

impl TscScale {
    /// The scale for a TSC running at `hz`; `Err` for a frequency no real or
    /// virtual CPU has (outside 1 MHz to 100 GHz), which means the
    /// calibration went wrong.
    pub fn from_hz(hz: u64) -> Result<TscScale, BadTscFrequency> {
        if !(1_000_000..=100_000_000_000).contains(&hz) {
            return Err(BadTscFrequency(hz));
        }
        Ok(TscScale { mult: ((1_000_000_000u128 << 32) / u128::from(hz)) as u64 })
    }

    /// The frequency from `ticks` TSC ticks counted over `pit_ticks` ticks of
    /// a reference clock running at `pit_hz`.
    pub fn from_measurement(ticks: u64, pit_ticks: u64, pit_hz: u64) -> Result<TscScale, BadTscFrequency> {
        let hz = u128::from(ticks) * u128::from(pit_hz) / u128::from(pit_ticks.max(1));
        TscScale::from_hz(u64::try_from(hz).unwrap_or(u64::MAX))
    }

    /// Nanoseconds in `ticks` ticks, saturating.
    pub fn ticks_to_nanos(self, ticks: u64) -> u64 {
        u64::try_from((u128::from(ticks) * u128::from(self.mult)) >> 32).unwrap_or(u64::MAX)
    }

    /// The raw multiplier, for storing in an atomic.
    pub fn mult(self) -> u64 {
        self.mult
    }

    /// A scale from a multiplier [`TscScale::mult`] returned.
    pub fn from_mult(mult: u64) -> TscScale {
        TscScale { mult }
    }
}

/// How many ticks of a `hz` clock cover `nanos` nanoseconds, rounded up so
/// a timer never fires early, and clamped to `1..=max`.
pub fn ticks_for(nanos: u64, hz: u64, max: u64) -> u64 {
    let ticks = (u128::from(nanos) * u128::from(hz)).div_ceil(1_000_000_000);
    u64::try_from(ticks).unwrap_or(u64::MAX).clamp(1, max)
}

/// The registers of a CMOS RTC reading, as read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RtcReading {
    /// Register 0x00.
    pub seconds: u8,
    /// Register 0x02.
    pub minutes: u8,
    /// Register 0x04 (bit 7 is PM in 12-hour mode).
    pub hours: u8,
    /// Register 0x07, day of the month.
    pub day: u8,
    /// Register 0x08.
    pub month: u8,
    /// Register 0x09, year within the century.
    pub year: u8,
    /// Register 0x32, the century where the ACPI FADT says so (QEMU does).
    pub century: u8,
    /// Status register B: bit 2 binary (else BCD), bit 1 24-hour mode.
    pub status_b: u8,
}

/// An RTC reading that is not a valid date.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadRtcReading(pub RtcReading);

impl fmt::Display for BadRtcReading {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CMOS clock reads an invalid date: {:x?}", self.0)
    }
}

fn from_bcd(value: u8) -> Option<u8> {
    let (high, low) = (value >> 4, value & 0xf);
    (high < 10 && low < 10).then_some(high * 10 + low)
}

/// Days from 1970-01-01 to the given civil date (proleptic Gregorian),
/// after Howard Hinnant's `days_from_civil`.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let shifted_month = i64::from((month + 9) % 12);
    let day_of_year = (153 * shifted_month + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

impl RtcReading {
    /// The POSIX time this reading names (the RTC is taken to run in UTC,
    /// as VMMs set it). The century register is used when it holds 19 to
    /// 29; otherwise the year is taken to be in 2000–2099.
    pub fn to_posix(self) -> Result<PosixTime, BadRtcReading> {
        let bad = || BadRtcReading(self);
        let binary = self.status_b & 0x04 != 0;
        let decode = |v: u8| if binary { Some(v) } else { from_bcd(v) };
        let pm = self.hours & 0x80 != 0;
        let mut hours = decode(self.hours & 0x7f).ok_or_else(bad)?;
        if self.status_b & 0x02 == 0 {
            // 12-hour mode: 12 AM is 0 h, 12 PM is 12 h.
            if !(1..=12).contains(&hours) {
                return Err(bad());
            }
            hours = hours % 12 + if pm { 12 } else { 0 };
        }
        let (seconds, minutes) = (decode(self.seconds).ok_or_else(bad)?, decode(self.minutes).ok_or_else(bad)?);
        let (day, month, year) = (
            decode(self.day).ok_or_else(bad)?,
            decode(self.month).ok_or_else(bad)?,
            decode(self.year).ok_or_else(bad)?,
        );
        let century = decode(self.century).filter(|c| (19..=29).contains(c)).unwrap_or(20);
        if seconds > 59
            || minutes > 59
            || hours > 23
            || !(1..=31).contains(&day)
            || !(1..=12).contains(&month)
            || year > 99
        {
            return Err(bad());
        }
        let year = i64::from(century) * 100 + i64::from(year);
        let days = days_from_civil(year, u32::from(month), u32::from(day));
        let secs = days * 86_400 + i64::from(hours) * 3600 + i64::from(minutes) * 60 + i64::from(seconds);
        PosixTime::new(secs, 0).ok_or_else(bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsc_scale_converts_ticks_to_nanos() {
        let scale = TscScale::from_hz(2_500_000_000).unwrap();
        assert_eq!(scale.ticks_to_nanos(2_500_000_000), 1_000_000_000 - 1); // fixed-point floor
        assert_eq!(scale.ticks_to_nanos(0), 0);
        let ghz = TscScale::from_hz(1_000_000_000).unwrap();
        assert_eq!(ghz.ticks_to_nanos(123_456_789), 123_456_789);
        // Saturates rather than wrapping.
        assert_eq!(TscScale::from_hz(1_000_000).unwrap().ticks_to_nanos(u64::MAX), u64::MAX);
        assert_eq!(TscScale::from_mult(scale.mult()), scale);
    }

    #[test]
    fn tsc_scale_rejects_absurd_frequencies() {
        assert_eq!(TscScale::from_hz(0), Err(BadTscFrequency(0)));
        assert!(TscScale::from_hz(999_999).is_err());
        assert!(TscScale::from_hz(200_000_000_000).is_err());
        assert!(BadTscFrequency(5).to_string().contains("5 Hz"));
    }

    #[test]
    fn tsc_frequency_from_a_pit_measurement() {
        // 50 ms of PIT ticks and 150 million TSC ticks: 3 GHz.
        let scale = TscScale::from_measurement(150_000_000, 59_659, 1_193_182).unwrap();
        let one_second = scale.ticks_to_nanos(3_000_000_000);
        assert!((999_990_000..=1_000_010_000).contains(&one_second), "{one_second}");
        // A PIT that never counted is caught rather than dividing by zero.
        assert!(TscScale::from_measurement(0, 0, 1_193_182).is_err());
    }

    #[test]
    fn timeouts_round_up_and_clamp() {
        assert_eq!(ticks_for(1_000_000, 1_193_182, 65_535), 1194); // 1 ms: 1193.182 rounded up
        assert_eq!(ticks_for(0, 1_193_182, 65_535), 1);
        assert_eq!(ticks_for(10_000_000_000, 1_193_182, 65_535), 65_535);
        assert_eq!(ticks_for(u64::MAX, u64::MAX, u64::MAX), u64::MAX);
    }

    fn bcd(v: u8) -> u8 {
        (v / 10) << 4 | (v % 10)
    }

    #[test]
    fn rtc_bcd_24_hour() {
        // 2024-02-29 23:59:58, as QEMU presents it (BCD, 24-hour).
        let reading = RtcReading {
            seconds: bcd(58),
            minutes: bcd(59),
            hours: bcd(23),
            day: bcd(29),
            month: bcd(2),
            year: bcd(24),
            century: bcd(20),
            status_b: 0x02,
        };
        assert_eq!(reading.to_posix().unwrap().secs(), 1_709_251_198);
    }

    #[test]
    fn rtc_binary_12_hour_and_missing_century() {
        // 1970-01-01 12:00:00 AM is the epoch; 12 PM is noon. Century
        // register 0 is taken as absent (2000s).
        let midnight =
            RtcReading { seconds: 0, minutes: 0, hours: 12, day: 1, month: 1, year: 70, century: 19, status_b: 0x04 };
        assert_eq!(midnight.to_posix().unwrap().secs(), 0);
        let noon = RtcReading { hours: 0x80 | 12, ..midnight };
        assert_eq!(noon.to_posix().unwrap().secs(), 12 * 3600);
        let no_century = RtcReading { century: 0, year: 1, ..midnight };
        assert_eq!(no_century.to_posix().unwrap().secs(), 978_307_200); // 2001-01-01
    }

    #[test]
    fn rtc_garbage_is_an_error() {
        let good =
            RtcReading { seconds: 0, minutes: 0, hours: 0, day: 1, month: 1, year: 0, century: 0, status_b: 0x06 };
        assert!(good.to_posix().is_ok());
        for bad in [
            RtcReading { month: 13, ..good },
            RtcReading { day: 0, ..good },
            RtcReading { seconds: 60, ..good },
            RtcReading { hours: 24, ..good },
            RtcReading { status_b: 0x02, seconds: 0x5a, ..good }, // not BCD
            RtcReading { status_b: 0x04, hours: 0, ..good },      // 12-hour mode has no hour 0
            RtcReading {
                seconds: 0xff,
                minutes: 0xff,
                hours: 0xff,
                day: 0xff,
                month: 0xff,
                year: 0xff,
                century: 0xff,
                status_b: 0xff,
            },
        ] {
            let err = bad.to_posix().unwrap_err();
            assert!(err.to_string().contains("invalid date"));
        }
    }
}
