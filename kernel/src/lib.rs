//! The freestanding x86_64 runtime of the mirage-rs unikernels: what the
//! virtio and Xen platforms share below their device drivers.
//!
//! | item | what it is |
//! |---|---|
//! | [`entry!`] | declares the kernel binary's `main(BootInfo) -> !` |
//! | [`BootInfo`] | what the VMM said at boot: command line, memory map, heap, TSC frequency |
//! | [`run`] | parses the command line, installs the logger, runs an application, powers off |
//! | [`KernelPlatform`] | `mirage_types::platform::Platform`: TSC clock, PIT timer, a DRBG over RDSEED and RDRAND, executor, power-off |
//! | [`entropy`] | RDSEED and RDRAND as entropy sources, and the DRBG over them |
//! | [`SerialConsole`] | `mirage_types::console::Console` on COM1 |
//! | [`KernelClock`] | the clocks as a `Send + Sync` value, for a logger |
//! | [`executor`] | the single-threaded event loop with its timer queue |
//! | [`interrupt`] | device interrupt lines (I/O APIC GSIs) and the tasks waiting for them |
//! | [`arch`] | the hardware, one safe module per mechanism (ports, CPU, descriptors, PIC, PIT, local and I/O APIC, CMOS, UART, power) |
//! | [`pvh`], [`time`] | pure parsing and arithmetic (start info, clock conversions) |
//!
//! # How a kernel image is built
//!
//! Only the host's `x86_64-unknown-linux-gnu` standard library is
//! installed, so an image is a static ELF for that target (docs/architecture.md, "Unikernel images"). A
//! kernel binary:
//!
//! - is `#![no_std] #![no_main]` when `cfg(panic = "abort")`, i.e. in an
//!   image build, and a host program otherwise, so `cargo
//!   build/test/clippy --workspace` keep working in the dev profile;
//! - calls [`entry!`] with its `main` (`mirage::main!` of crate `mirage-rs`
//!   does both for an application);
//! - is linked with `-nostdlib -static -no-pie -T<this crate's kernel.ld>`,
//!   given to that binary alone: `cargo mirage build -t virtio|xen` (crate
//!   `cargo-mirage-rs`) does it, finding `kernel.ld` beside this crate's
//!   manifest.
//!
//! This library follows the same switch: the entry point, interrupt stubs,
//! memory functions (`memcpy`…), panic handler, global allocator and
//! `rust_eh_personality` exist only under `cfg(panic = "abort")`, since a
//! host program has its own. Everything else, hardware modules included,
//! compiles on the host, so the workspace's clippy and rustdoc see it and
//! the pure parts are unit-tested there.
//!
//! # Boot sequence
//!
//! PVH 32-bit entry → page tables (4 GiB identity, 2 MiB pages), SSE, long
//! mode → COM1 → start info (memory map, command line) → heap over the
//! largest free RAM → GDT/TSS/IDT, PIC → TSC calibrated against the PIT,
//! wall clock from the CMOS RTC → the application's `main`.
//!
//! # Exit statuses
//!
//! `0` success, [`platform::APP_ERROR_STATUS`] application error,
//! [`platform::USAGE_STATUS`] bad command line, 100 boot failure, 101
//! panic, 102 CPU exception. Under QEMU with `isa-debug-exit` the process
//! exits with `status * 2 + 1` ([`arch::power::qemu_exit_status`]).
//!
//! # Cargo features
//!
//! This crate has no Cargo features.

#![cfg_attr(not(test), no_std)]

extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;
use core::ops::Range;

pub mod arch;
pub mod entropy;
pub mod executor;
#[cfg(panic = "abort")]
mod image;
pub mod interrupt;
pub mod platform;
pub mod pvh;
pub mod time;

pub use platform::{run, run_parsed, usage_exit, KernelClock, KernelPlatform, SerialConsole};

/// What the kernel learnt at boot, handed to the application's entry.
#[derive(Clone, Debug)]
pub struct BootInfo {
    /// The kernel command line as the VMM passed it (the flags of
    /// `mirage_types::devices::CommandLine`).
    pub command_line: String,
    /// The VMM's memory map.
    pub memory_map: Vec<pvh::MemoryRegion>,
    /// The physical memory the heap allocates from.
    pub heap: Range<u64>,
    /// The measured TSC frequency in Hz.
    pub tsc_hz: u64,
    /// The physical address of the ACPI RSDP as the boot loader gave it
    /// (`hvm_start_info.rsdp_paddr`), `None` when it gave none. Not
    /// checked: a reader must validate what it finds there.
    pub rsdp_paddr: Option<u64>,
}

/// Declares the kernel application's entry point: `entry!(main)` with
/// `fn main(boot: BootInfo) -> !`, called once the kernel has booted
/// (heap, interrupts and clocks ready). Expands to nothing in host builds.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[cfg(panic = "abort")]
        #[no_mangle]
        fn __mirage_kernel_app_main(boot: $crate::BootInfo) -> ! {
            $main(boot)
        }
    };
}
