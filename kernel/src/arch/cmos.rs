//! The CMOS real-time clock of the PC (MC146818): the wall clock at boot.

use super::port::Port;
use crate::time::RtcReading;

/// How many times [`read_rtc`] tries for two identical consecutive
/// readings. The RTC updates once a second and an update takes under
/// 2 ms, so two tries nearly always suffice.
pub const RTC_READ_ATTEMPTS: u32 = 1000;

fn read_register(register: u8) -> u8 {
    // SAFETY: 0x70/0x71 are the CMOS index and data ports; the CMOS does not
    // access memory. Bit 7 of the index (NMI disable) is left clear.
    let (index, data) = unsafe { (Port::new(0x70), Port::new(0x71)) };
    index.write_u8(register & 0x7f);
    data.read_u8()
}

fn read_once() -> RtcReading {
    RtcReading {
        seconds: read_register(0x00),
        minutes: read_register(0x02),
        hours: read_register(0x04),
        day: read_register(0x07),
        month: read_register(0x08),
        year: read_register(0x09),
        century: read_register(0x32),
        status_b: read_register(0x0b),
    }
}

/// Reads the RTC's registers, retrying until no update was in progress and
/// two readings agree; `None` if that did not happen within
/// [`RTC_READ_ATTEMPTS`] tries (an RTC that is absent or always updating).
pub fn read_rtc() -> Option<RtcReading> {
    let mut previous = None;
    for _ in 0..RTC_READ_ATTEMPTS {
        if read_register(0x0a) & 0x80 != 0 {
            continue; // update in progress
        }
        let reading = read_once();
        if previous == Some(reading) {
            return Some(reading);
        }
        previous = Some(reading);
    }
    None
}
