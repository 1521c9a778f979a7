//! x86 I/O ports: the one place that executes `in` and `out`.

use core::arch::asm;

/// One I/O port, 8, 16 or 32 bits wide depending on the access method.
///
/// Creating a port is `unsafe`; using it is not: the constructor's caller
/// vouches that every access to it is harmless to memory safety.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Port(u16);

impl Port {
    /// The port at `address`.
    ///
    /// # Safety
    ///
    /// Reading and writing this port must not break memory safety: the port
    /// belongs to a device the caller drives (a UART, the PIT, the CMOS),
    /// not to one that can write to memory behind the program's back (a DMA
    /// controller, a PCI configuration space mapping device memory over RAM).
    pub const unsafe fn new(address: u16) -> Port {
        Port(address)
    }

    /// The port's address.
    pub const fn address(self) -> u16 {
        self.0
    }

    /// Reads a byte.
    pub fn read_u8(self) -> u8 {
        let value: u8;
        // SAFETY: `new`'s contract: accessing this port cannot break memory safety.
        unsafe { asm!("in al, dx", out("al") value, in("dx") self.0, options(nomem, nostack, preserves_flags)) };
        value
    }

    /// Writes a byte.
    pub fn write_u8(self, value: u8) {
        // SAFETY: `new`'s contract: accessing this port cannot break memory safety.
        unsafe { asm!("out dx, al", in("dx") self.0, in("al") value, options(nomem, nostack, preserves_flags)) };
    }

    /// Reads 16 bits.
    pub fn read_u16(self) -> u16 {
        let value: u16;
        // SAFETY: `new`'s contract: accessing this port cannot break memory safety.
        unsafe { asm!("in ax, dx", out("ax") value, in("dx") self.0, options(nomem, nostack, preserves_flags)) };
        value
    }

    /// Writes 16 bits.
    pub fn write_u16(self, value: u16) {
        // SAFETY: `new`'s contract: accessing this port cannot break memory safety.
        unsafe { asm!("out dx, ax", in("dx") self.0, in("ax") value, options(nomem, nostack, preserves_flags)) };
    }

    /// Reads 32 bits.
    pub fn read_u32(self) -> u32 {
        let value: u32;
        // SAFETY: `new`'s contract: accessing this port cannot break memory safety.
        unsafe { asm!("in eax, dx", out("eax") value, in("dx") self.0, options(nomem, nostack, preserves_flags)) };
        value
    }

    /// Writes 32 bits.
    pub fn write_u32(self, value: u32) {
        // SAFETY: `new`'s contract: accessing this port cannot break memory safety.
        unsafe { asm!("out dx, eax", in("dx") self.0, in("eax") value, options(nomem, nostack, preserves_flags)) };
    }
}
