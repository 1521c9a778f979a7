//! The `virtio_drivers::Hal` of the kernel: DMA memory from the heap and
//! physical addresses equal to virtual ones.
//!
//! The kernel's boot page tables identity-map the first 4 GiB, and its heap
//! lies below 3 GiB (mirage-kernel's README), so the address of any heap or
//! stack object *is* its physical address, and devices (which see guest
//! physical memory) can use it as is. There is no IOMMU and no bounce
//! buffering: `share` hands out the buffer's own address.

use alloc::alloc::{alloc_zeroed, dealloc, handle_alloc_error, Layout};
use core::ptr::NonNull;
use core::sync::atomic::{fence, Ordering};

use virtio_drivers::{BufferDirection, Hal, PhysAddr, PAGE_SIZE};

/// The end of the identity-mapped memory: MMIO regions past it cannot be
/// reached.
pub const MAPPED_END: u64 = 4 << 30;

/// DMA through the kernel heap under the identity map.
#[derive(Debug)]
pub struct KernelHal;

fn dma_layout(pages: usize) -> Layout {
    // A request for more pages than the address space holds is a driver
    // bug (virtio-drivers asks for a queue's worth), not outside input.
    Layout::from_size_align(pages.max(1) * PAGE_SIZE, PAGE_SIZE).expect("DMA allocation size overflows")
}

// SAFETY: `dma_alloc` returns zeroed, page-aligned, exclusively owned heap
// memory whose address is its physical address (identity map, heap below
// 3 GiB); `mmio_phys_to_virt` returns the identity address of a region the
// caller vouches for, after checking it is mapped; `share` returns the
// buffer's own address, which the device can use for the same reason.
unsafe impl Hal for KernelHal {
    /// Panics (through `handle_alloc_error`, which ends the kernel) when the
    /// heap is exhausted: a driver cannot run without its queues.
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let layout = dma_layout(pages);
        // SAFETY: the layout has a non-zero size.
        let pointer = unsafe { alloc_zeroed(layout) };
        let Some(pointer) = NonNull::new(pointer) else { handle_alloc_error(layout) };
        (pointer.as_ptr() as PhysAddr, pointer)
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
        // SAFETY: the caller passes back what `dma_alloc` returned for the
        // same number of pages, so the layout matches the allocation.
        unsafe { dealloc(vaddr.as_ptr(), dma_layout(pages)) };
        0
    }

    /// Panics if the region is not identity-mapped; the platform checks BARs
    /// against [`MAPPED_END`] before it builds a PCI transport, so this
    /// cannot be reached from a device's configuration.
    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, size: usize) -> NonNull<u8> {
        let end = paddr.checked_add(size as u64);
        assert!(
            paddr != 0 && end.is_some_and(|end| end <= MAPPED_END),
            "MMIO region {paddr:#x}+{size:#x} is outside the identity-mapped 4 GiB"
        );
        NonNull::new(paddr as *mut u8).expect("checked non-zero above")
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        // The device reads what the driver wrote before the notify: order
        // the writes before the descriptor is published.
        fence(Ordering::SeqCst);
        buffer.as_ptr() as *mut u8 as PhysAddr
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {
        // And what the device wrote is read only after the used ring said so.
        fence(Ordering::SeqCst);
    }
}
