//! The 16550 UART: the console of QEMU, Firecracker and most x86 clouds.
//!
//! Only the polled transmit path is used: the kernel writes a byte when the
//! transmit holding register is empty. Interrupts stay off in the UART.

use super::port::Port;

/// How many times [`Uart16550::write_byte`] polls for room before dropping
/// the byte. An emulated UART is always ready; a real one at 115200 baud
/// drains a byte in about 87 µs, well within this many port reads. A UART
/// that never becomes ready (absent, or stuck) must not hang the kernel.
pub const TRANSMIT_POLL_LIMIT: u32 = 1_000_000;

/// Offsets of the registers from the base port.
mod reg {
    pub const DATA: u16 = 0; // DLAB=0: transmit/receive; DLAB=1: divisor low
    pub const INTERRUPT_ENABLE: u16 = 1; // DLAB=1: divisor high
    pub const FIFO_CONTROL: u16 = 2;
    pub const LINE_CONTROL: u16 = 3;
    pub const MODEM_CONTROL: u16 = 4;
    pub const LINE_STATUS: u16 = 5;
}

/// Line status: the transmit holding register is empty.
const LSR_THR_EMPTY: u8 = 1 << 5;
/// Line status: the transmitter has sent everything.
const LSR_TRANSMITTER_EMPTY: u8 = 1 << 6;
/// Line status: a received byte is waiting.
const LSR_DATA_READY: u8 = 1 << 0;

/// The first PC serial port, COM1.
pub const COM1: u16 = 0x3f8;

/// The interrupt line of COM1 at the PC's interrupt controller.
pub const COM1_IRQ: u8 = 4;

/// A 16550-compatible UART at a base I/O port.
#[derive(Clone, Copy, Debug)]
pub struct Uart16550 {
    base: u16,
}

impl Uart16550 {
    /// The UART at COM1 (0x3f8), as every PC-compatible VMM provides.
    pub const fn com1() -> Uart16550 {
        Uart16550 { base: COM1 }
    }

    fn port(&self, offset: u16) -> Port {
        // SAFETY: the eight ports from `base` are the UART's registers; a UART
        // cannot access memory, so no access to them affects memory safety.
        unsafe { Port::new(self.base + offset) }
    }

    /// Programs 115200 baud, 8 data bits, no parity, one stop bit, FIFOs on,
    /// UART interrupts off.
    pub fn init(&self) {
        self.port(reg::INTERRUPT_ENABLE).write_u8(0);
        self.port(reg::LINE_CONTROL).write_u8(0x80); // DLAB: the next two writes set the divisor
        self.port(reg::DATA).write_u8(1); // 115200 / 1
        self.port(reg::INTERRUPT_ENABLE).write_u8(0);
        self.port(reg::LINE_CONTROL).write_u8(0x03); // 8N1, DLAB off
        self.port(reg::FIFO_CONTROL).write_u8(0xc7); // enable and clear FIFOs, 14-byte threshold
        self.port(reg::MODEM_CONTROL).write_u8(0x03); // DTR, RTS
    }

    /// Writes one byte, waiting (at most [`TRANSMIT_POLL_LIMIT`] polls) for
    /// room; returns whether the byte was sent.
    pub fn write_byte(&self, byte: u8) -> bool {
        let status = self.port(reg::LINE_STATUS);
        for _ in 0..TRANSMIT_POLL_LIMIT {
            if status.read_u8() & LSR_THR_EMPTY != 0 {
                self.port(reg::DATA).write_u8(byte);
                return true;
            }
            core::hint::spin_loop();
        }
        false
    }

    /// Writes `bytes`, turning `\n` into `\r\n` as a terminal expects. Stops
    /// early if the UART stays busy past the poll limit.
    pub fn write_bytes(&self, bytes: &[u8]) {
        for &byte in bytes {
            if byte == b'\n' && !self.write_byte(b'\r') {
                return;
            }
            if !self.write_byte(byte) {
                return;
            }
        }
    }

    /// Waits (at most [`TRANSMIT_POLL_LIMIT`] polls) until every written
    /// byte has left the transmitter, so powering off loses none.
    pub fn flush(&self) {
        let status = self.port(reg::LINE_STATUS);
        for _ in 0..TRANSMIT_POLL_LIMIT {
            if status.read_u8() & LSR_TRANSMITTER_EMPTY != 0 {
                return;
            }
            core::hint::spin_loop();
        }
    }

    /// Makes the UART raise its interrupt line (IRQ 4 for COM1) when a byte
    /// arrives. OUT2 gates the line to the interrupt controller on PCs.
    pub fn enable_receive_interrupt(&self) {
        self.port(reg::INTERRUPT_ENABLE).write_u8(0x01);
        self.port(reg::MODEM_CONTROL).write_u8(0x0b); // DTR, RTS, OUT2
    }

    /// A received byte, if one is waiting.
    pub fn try_read_byte(&self) -> Option<u8> {
        (self.port(reg::LINE_STATUS).read_u8() & LSR_DATA_READY != 0).then(|| self.port(reg::DATA).read_u8())
    }
}

impl core::fmt::Write for Uart16550 {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.write_bytes(s.as_bytes());
        Ok(())
    }
}
