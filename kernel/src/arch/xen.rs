//! The one hypercall the kernel itself needs on Xen: `XENMEM_memory_map`,
//! for the memory map that a version 0 PVH start info lacks (Xen 4.17
//! gives its PVH dom0 one), before the heap exists. Everything else about
//! Xen is `mirage-platform-xen`'s.

use core::arch::asm;

use crate::arch::cpu;

/// `__HYPERVISOR_memory_op`.
const HYPERCALL_MEMORY_OP: usize = 12;
/// `XENMEM_memory_map`.
const XENMEM_MEMORY_MAP: u64 = 9;

/// A page for Xen to write the hypercall stubs into, in `.bss` because the
/// heap does not exist yet when it is needed.
#[repr(C, align(4096))]
struct Page([u8; 4096]);

static mut HYPERCALL_PAGE: Page = Page([0; 4096]);

/// `struct xen_memory_map`.
#[repr(C)]
struct MemoryMapArg {
    nr_entries: u32,
    buffer: u64,
}

/// Asks Xen for this domain's memory map (packed E820 entries, see
/// `pvh::parse_e820_map`) into `buffer`; returns how many entries Xen
/// wrote, or `None` off Xen or if Xen refuses. At most
/// `buffer.len() / 20` entries.
pub fn memory_map(buffer: &mut [u8]) -> Option<usize> {
    let (base, _) = cpu::xen_cpuid_base()?;
    let msr = cpu::cpuid(base + 2, 0).ebx;
    let page = core::ptr::addr_of_mut!(HYPERCALL_PAGE) as u64;
    // SAFETY: writing the MSR that Xen's CPUID leaf names makes Xen fill
    // the page, which is ours alone (nothing else touches
    // `HYPERCALL_PAGE`); the kernel maps its image read-write-execute and
    // physical = virtual.
    unsafe { asm!("wrmsr", in("ecx") msr, in("eax") page as u32, in("edx") (page >> 32) as u32, options(nostack)) };
    let mut arg = MemoryMapArg {
        nr_entries: u32::try_from(buffer.len() / crate::pvh::E820_ENTRY_LEN).unwrap_or(u32::MAX),
        buffer: buffer.as_mut_ptr() as u64,
    };
    let result: i64;
    // SAFETY: the stub for memory_op is at its 32-byte slot of the page Xen
    // just wrote; `arg` is a live `xen_memory_map` whose buffer holds
    // `nr_entries` entries. Without `nostack` the compiler keeps the red
    // zone clear of the return address `call` pushes.
    unsafe {
        asm!(
            "call {entry}",
            entry = in(reg) page + (HYPERCALL_MEMORY_OP * 32) as u64,
            inlateout("rdi") XENMEM_MEMORY_MAP => _,
            inlateout("rsi") &mut arg as *mut MemoryMapArg as u64 => _,
            lateout("rdx") _,
            lateout("r10") _,
            lateout("r8") _,
            lateout("rax") result,
            lateout("rcx") _,
            lateout("r11") _,
        )
    };
    (result == 0).then_some(arg.nr_entries as usize)
}
