//! The two 8259 programmable interrupt controllers of the PC.
//!
//! The kernel uses them only to deliver the PIT's IRQ 0; every other line
//! stays masked. Their vectors are moved to 32–47, clear of the CPU's
//! exceptions.

use super::port::Port;

/// The vector of IRQ 0 (the PIT) after [`remap_and_mask`].
pub const IRQ_BASE: u8 = 32;

fn port(address: u16) -> Port {
    // SAFETY: 0x20/0x21 and 0xa0/0xa1 are the PICs' command and data ports;
    // interrupt controllers do not access memory.
    unsafe { Port::new(address) }
}

/// Moves IRQs 0–15 to vectors [`IRQ_BASE`]..+16 and masks every line but
/// IRQ 0.
pub fn remap_and_mask() {
    let (master_command, master_data, slave_command, slave_data) = (port(0x20), port(0x21), port(0xa0), port(0xa1));
    master_command.write_u8(0x11); // ICW1: initialise, ICW4 follows
    slave_command.write_u8(0x11);
    master_data.write_u8(IRQ_BASE); // ICW2: vector base
    slave_data.write_u8(IRQ_BASE + 8);
    master_data.write_u8(0x04); // ICW3: slave on IRQ 2
    slave_data.write_u8(0x02);
    master_data.write_u8(0x01); // ICW4: 8086 mode
    slave_data.write_u8(0x01);
    master_data.write_u8(0xfe); // masks: only IRQ 0
    slave_data.write_u8(0xff);
}

/// Unmasks IRQ `line` (0–15; lines 8–15 also need IRQ 2 unmasked).
pub fn unmask(line: u8) {
    let data = if line < 8 { port(0x21) } else { port(0xa1) };
    data.write_u8(data.read_u8() & !(1 << (line % 8)));
}

/// Whether IRQ `line` (0–15) is really being serviced, as opposed to a
/// spurious IRQ 7 or 15, which must not be acknowledged at its own PIC.
pub fn in_service(line: u8) -> bool {
    let (command, bit) = if line < 8 { (port(0x20), line) } else { (port(0xa0), line - 8) };
    command.write_u8(0x0b); // OCW3: read the in-service register
    command.read_u8() & (1 << bit) != 0
}

/// Acknowledges IRQ `line` (0–15).
pub fn end_of_interrupt(line: u8) {
    if line >= 8 {
        port(0xa0).write_u8(0x20);
    }
    port(0x20).write_u8(0x20);
}
