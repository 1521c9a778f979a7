//! Ending the virtual machine with a status.

use super::cpu;
use super::port::Port;

/// The I/O port of QEMU's `isa-debug-exit` device as the kernel expects it
/// configured: `-device isa-debug-exit,iobase=0xf4,iosize=0x04`.
pub const DEBUG_EXIT_PORT: u16 = 0xf4;

/// The PM1a control register of QEMU's `pc` and `q35` ACPI (PIIX4 and ICH9
/// both put it at 0x604 under SeaBIOS and without firmware).
const QEMU_ACPI_PM1A_CONTROL: u16 = 0x604;
/// SLP_EN with SLP_TYP 0: the S5 (soft off) sleep state in QEMU's tables.
const ACPI_SLEEP_S5: u16 = 1 << 13;

/// The process exit status QEMU reports when the guest exits with
/// `status` through `isa-debug-exit`: `(status << 1) | 1`. QEMU cannot
/// report 0 this way, so a successful guest shows up as 1.
pub const fn qemu_exit_status(status: u8) -> i32 {
    ((status as i32) << 1) | 1
}

/// Powers the machine off, reporting `status` where the VMM can take it.
///
/// Tries, in order: QEMU's `isa-debug-exit` (the status reaches QEMU's exit
/// code, see [`qemu_exit_status`]); ACPI soft-off at QEMU's PM1a control
/// port (the status is lost); halting forever with interrupts off.
pub fn power_off(status: u8) -> ! {
    cpu::disable_interrupts();
    // SAFETY: 0xf4 is QEMU's debug-exit device when present and unassigned
    // otherwise; writing it either ends the VM or does nothing.
    unsafe { Port::new(DEBUG_EXIT_PORT) }.write_u32(u32::from(status));
    // SAFETY: 0x604 is the PM1a control register on QEMU's PC machines and
    // unassigned on microvm; writing S5 there powers off or does nothing.
    unsafe { Port::new(QEMU_ACPI_PM1A_CONTROL) }.write_u16(ACPI_SLEEP_S5);
    cpu::halt_forever()
}
