//! The freestanding x86_64 runtime of the mirage-rs unikernels.

#![cfg_attr(not(test), no_std)]

extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;
use core::ops::Range;

pub mod arch;
#[cfg(panic = "abort")]
mod image;
pub mod pvh;

/// What the kernel learnt at boot, handed to the application's entry.
#[derive(Clone, Debug)]
pub struct BootInfo {
    /// The kernel command line as the VMM passed it.
    pub command_line: String,
    /// The VMM's memory map.
    pub memory_map: Vec<pvh::MemoryRegion>,
    /// The physical memory the heap allocates from.
    pub heap: Range<u64>,
}

/// Declares the kernel application's entry point: `entry!(main)` with
/// `fn main(boot: BootInfo) -> !`.
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
