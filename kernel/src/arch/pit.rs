//! The 8254 programmable interval timer, channel 0: a reference to
//! calibrate the TSC against, then the one-shot timer that wakes a halted
//! CPU at the next deadline (IRQ 0).

use super::port::Port;

/// The PIT's input clock in Hz.
pub const PIT_HZ: u64 = 1_193_182;

fn channel0() -> Port {
    // SAFETY: 0x40 is the PIT's channel 0 data port; the PIT does not access memory.
    unsafe { Port::new(0x40) }
}

fn command() -> Port {
    // SAFETY: 0x43 is the PIT's mode/command port.
    unsafe { Port::new(0x43) }
}

/// Starts channel 0 counting down from 65536 over and over (mode 2), for
/// [`read_counter`] to measure time with. It raises IRQ 0 at every wrap,
/// so call it with interrupts masked or IRQ 0 masked.
pub fn start_free_running() {
    command().write_u8(0x34); // channel 0, low then high byte, mode 2, binary
    channel0().write_u8(0);
    channel0().write_u8(0);
}

/// The current count of channel 0.
pub fn read_counter() -> u16 {
    command().write_u8(0x00); // latch channel 0
    let low = channel0().read_u8();
    let high = channel0().read_u8();
    u16::from_le_bytes([low, high])
}

/// Raises IRQ 0 once, after `ticks` PIT ticks (mode 0, interrupt on
/// terminal count). A count of 0 means 65536.
pub fn one_shot(ticks: u16) {
    command().write_u8(0x30); // channel 0, low then high byte, mode 0, binary
    let [low, high] = ticks.to_le_bytes();
    channel0().write_u8(low);
    channel0().write_u8(high);
}
