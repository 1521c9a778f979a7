//! What a freestanding kernel image needs and a host program must not have:
//! the PVH entry point, the memory functions, the panic handler, the global
//! allocator and the personality symbol. Compiled only when panics abort,
//! i.e. in the `kernel` profile (see the crate documentation).

mod boot;
mod interrupts;
mod mem;

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::{self, Write as _};
use core::ops::Range;
use core::panic::PanicInfo;

use linked_list_allocator::LockedHeap;

use crate::arch::power::power_off;
use crate::arch::serial::Uart16550;
use crate::pvh::{self, MemoryRegion, StartInfo, MAX_CMDLINE_LEN, MAX_MEMMAP_ENTRIES, START_INFO_LEN};
use crate::BootInfo;

extern "Rust" {
    /// The application's entry, defined by [`crate::entry!`].
    fn __mirage_kernel_app_main(boot: BootInfo) -> !;
}

extern "C" {
    /// First byte of the image (linker script).
    static __kernel_start: u8;
    /// First byte after the image, `.bss` included (linker script).
    static __kernel_end: u8;
}

/// The end of the memory the boot page tables map cacheable: the first
/// 3 GiB (the fourth is mapped uncached for devices).
const CACHEABLE_END: u64 = 3 << 30;

/// The end of all memory the boot page tables map.
const MAPPED_END: u64 = 4 << 30;

/// Boot data below this address (BIOS area, real-mode tables) is never
/// used for the heap.
const LOW_MEMORY_END: u64 = 1 << 20;

#[global_allocator]
static HEAP: LockedHeap = LockedHeap::empty();

/// The status the kernel exits with when it cannot boot.
pub const BOOT_FAILURE_STATUS: u8 = 100;

/// The status a kernel panic exits with.
pub const PANIC_STATUS: u8 = 101;

/// Prints a boot error and powers off.
fn fatal(args: fmt::Arguments<'_>) -> ! {
    let _ = writeln!(Uart16550::com1(), "mirage-kernel: boot failed: {args}");
    Uart16550::com1().flush();
    power_off(BOOT_FAILURE_STATUS)
}

/// The bytes at physical address `paddr`, which the boot page tables map
/// one to one, or `None` if the range is not mapped or starts at 0.
fn physical_bytes(paddr: u64, len: usize) -> Option<&'static [u8]> {
    let end = paddr.checked_add(u64::try_from(len).ok()?)?;
    if paddr == 0 || end > MAPPED_END {
        return None;
    }
    // SAFETY: the boot page tables identity-map [0, MAPPED_END), so the range
    // is mapped and readable. The VMM wrote it before entry, and nothing
    // writes it while the slice is used: the boot code copies what it needs
    // onto the stack before it sets up the heap, the only thing that could
    // hand this memory out for writing.
    Some(unsafe { core::slice::from_raw_parts(paddr as *const u8, len) })
}

/// Called by the boot trampoline on the boot stack, in long mode with SSE
/// enabled, with the physical address of the PVH start info.
#[no_mangle]
extern "C" fn mirage_kernel_entry(start_info_paddr: u32) -> ! {
    Uart16550::com1().init();

    let Some(header) = physical_bytes(u64::from(start_info_paddr), START_INFO_LEN) else {
        fatal(format_args!("PVH start info address {start_info_paddr:#x} is not mapped"))
    };
    let info = StartInfo::parse_any_version(header).unwrap_or_else(|e| fatal(format_args!("{e}")));

    let mut regions = [MemoryRegion::default(); MAX_MEMMAP_ENTRIES];
    let memory_map = if info.version == 0 {
        // No map in the start info: only Xen boots PVH that way, and it
        // answers the map by hypercall.
        let mut e820 = [0u8; MAX_MEMMAP_ENTRIES * pvh::E820_ENTRY_LEN];
        let Some(count) = crate::arch::xen::memory_map(&mut e820) else {
            fatal(format_args!("PVH start info version 0 has no memory map and XENMEM_memory_map gave none"))
        };
        pvh::parse_e820_map(&e820, count, &mut regions).unwrap_or_else(|e| fatal(format_args!("{e}")))
    } else {
        let Some(memmap_bytes) = physical_bytes(info.memmap_paddr, info.memmap_len()) else {
            fatal(format_args!("PVH memory map at {:#x} is not mapped", info.memmap_paddr))
        };
        pvh::parse_memory_map(memmap_bytes, info.memmap_entries, &mut regions)
            .unwrap_or_else(|e| fatal(format_args!("{e}")))
    };

    let mut cmdline_copy = [0u8; MAX_CMDLINE_LEN];
    let cmdline_len = if info.cmdline_paddr == 0 {
        0
    } else {
        // The line may end right before the end of mapped memory: read no
        // further than that.
        let readable = MAPPED_END.saturating_sub(info.cmdline_paddr).min(MAX_CMDLINE_LEN as u64 + 1) as usize;
        let Some(bytes) = physical_bytes(info.cmdline_paddr, readable) else {
            fatal(format_args!("kernel command line at {:#x} is not mapped", info.cmdline_paddr))
        };
        let line = pvh::parse_command_line(bytes).unwrap_or_else(|e| fatal(format_args!("{e}")));
        cmdline_copy[..line.len()].copy_from_slice(line.as_bytes());
        line.len()
    };

    let image = core::ptr::addr_of!(__kernel_start) as u64..core::ptr::addr_of!(__kernel_end) as u64;
    let reserved: [Range<u64>; 2] = [0..LOW_MEMORY_END, image];
    let Some(heap) = pvh::largest_free_region(memory_map, &reserved, CACHEABLE_END) else {
        fatal(format_args!("no free RAM for a heap in the PVH memory map {memory_map:x?}"))
    };
    // SAFETY: `heap` is RAM according to the VMM's map, lies outside the
    // image and the first MiB, is identity-mapped and cacheable, and
    // nothing else uses it: the boot data read above was copied to the stack.
    unsafe { HEAP.lock().init(heap.start as *mut u8, (heap.end - heap.start) as usize) };

    interrupts::init();
    let tsc_hz = crate::platform::init_clocks().unwrap_or_else(|e| fatal(format_args!("{e}")));

    let boot = BootInfo {
        tsc_hz,
        // The copied bytes were checked to be UTF-8 by `parse_command_line`.
        command_line: String::from(core::str::from_utf8(&cmdline_copy[..cmdline_len]).unwrap_or_default()),
        memory_map: Vec::from(memory_map),
        heap,
        rsdp_paddr: Some(info.rsdp_paddr).filter(|&paddr| paddr != 0),
    };
    // SAFETY: `entry!` defines this function in the kernel binary with
    // exactly this signature.
    unsafe { __mirage_kernel_app_main(boot) }
}

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    let mut uart = Uart16550::com1();
    let _ = write!(uart, "\nkernel panic: {}", info.message());
    if let Some(location) = info.location() {
        let _ = write!(uart, " at {}:{}:{}", location.file(), location.line(), location.column());
    }
    let _ = uart.write_str("\n");
    uart.flush();
    power_off(PANIC_STATUS)
}

/// The precompiled `alloc` refers to this symbol; with `panic = "abort"`
/// nothing unwinds, so it is never called.
#[no_mangle]
extern "C" fn rust_eh_personality() {}

/// Landing pads in the precompiled `alloc` (built to unwind) resume
/// unwinding through this symbol; with `panic = "abort"` no landing pad
/// runs, so it is never called. Should it be, the kernel stops as on a
/// panic rather than jump into nothing.
#[no_mangle]
extern "C" fn _Unwind_Resume() -> ! {
    power_off(PANIC_STATUS)
}
