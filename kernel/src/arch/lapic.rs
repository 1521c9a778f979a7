//! The local APIC, as far as routing interrupts to the CPU goes: the 8259
//! PIC's through LINT0 ("virtual wire" mode: LINT0 delivers ExtINT), and
//! the I/O APIC's as fixed vectors, which need an end-of-interrupt write.
//!
//! Firmware usually leaves LINT0 so; QEMU's microvm firmware (qboot)
//! leaves it masked, and without this no timer interrupt arrives there.

use core::arch::asm;

/// IA32_APIC_BASE: the APIC's physical address and its global enable.
const IA32_APIC_BASE: u32 = 0x1b;
const APIC_GLOBAL_ENABLE: u64 = 1 << 11;

/// Register offsets.
const ID: usize = 0x20;
const END_OF_INTERRUPT: usize = 0xb0;
const SPURIOUS_VECTOR: usize = 0xf0;
const LVT_LINT0: usize = 0x350;

/// LVT delivery mode ExtINT, unmasked, edge-triggered.
const LVT_EXTINT: u32 = 0x700;
/// Spurious-interrupt register: APIC software enable and vector 0xff.
const SOFTWARE_ENABLE_SPURIOUS_FF: u32 = 0x1ff;

fn read_msr(msr: u32) -> u64 {
    let (low, high): (u32, u32);
    // SAFETY: IA32_APIC_BASE exists on every x86_64 CPU (CPUID.01H:EDX[9] is
    // always set on x86_64 VMs the kernel supports); reading it has no effect.
    unsafe { asm!("rdmsr", in("ecx") msr, out("eax") low, out("edx") high, options(nomem, nostack, preserves_flags)) };
    (u64::from(high) << 32) | u64::from(low)
}

/// The highest physical address of the APIC page the boot page tables map
/// (uncached: the fourth GiB).
const MAPPED_DEVICE_END: u64 = 4 << 30;

/// The base of the APIC's register page, if the APIC is enabled and its
/// page is mapped.
fn mapped_base() -> Option<u64> {
    let base_msr = read_msr(IA32_APIC_BASE);
    let base = base_msr & 0x000f_ffff_ffff_f000;
    (base_msr & APIC_GLOBAL_ENABLE != 0 && base + 0x1000 <= MAPPED_DEVICE_END).then_some(base)
}

/// This CPU's local APIC id, the destination of I/O APIC entries; `None`
/// without a usable local APIC.
pub fn id() -> Option<u8> {
    let base = mapped_base()?;
    // SAFETY: `base` is the APIC's register page, identity-mapped uncached
    // (checked by `mapped_base`); the ID register is 32-bit aligned and
    // reading it has no effect.
    let id = unsafe { ((base as usize + ID) as *const u32).read_volatile() };
    Some((id >> 24) as u8)
}

/// Signals the end of the interrupt being serviced, which a vector the
/// I/O APIC delivered needs (for a level-triggered one, the APIC forwards
/// it to the I/O APIC). Does nothing without a usable local APIC.
pub fn end_of_interrupt() {
    if let Some(base) = mapped_base() {
        // SAFETY: as in `id`; writing 0 to the EOI register only ends the
        // highest-priority interrupt in service.
        unsafe { ((base as usize + END_OF_INTERRUPT) as *mut u32).write_volatile(0) };
    }
}

/// Turns on the local APIC and sets LINT0 to ExtINT, so the PIC's
/// interrupts reach the CPU. Returns `false`, changing nothing, if the
/// APIC is disabled in IA32_APIC_BASE or sits outside the mapped memory.
pub fn enable_virtual_wire() -> bool {
    let Some(base) = mapped_base() else { return false };
    let register = |offset: usize| (base as usize + offset) as *mut u32;
    // SAFETY: `base` is the APIC's register page, identity-mapped uncached by
    // the boot page tables (checked above); the two registers written are
    // 32-bit aligned APIC registers, and writing them only changes how
    // interrupts are delivered.
    unsafe {
        register(SPURIOUS_VECTOR).write_volatile(SOFTWARE_ENABLE_SPURIOUS_FF);
        register(LVT_LINT0).write_volatile(LVT_EXTINT);
    }
    true
}
