//! [`SharedPage`]: one 4 KiB page of guest memory that another domain or
//! Xen reads and writes concurrently (a ring, a data buffer), accessed only
//! through volatile reads and writes at checked offsets.
//!
//! The guest runs identity-mapped, so a page's address divided by 4096 is
//! its guest frame number, which is what grants and HVM parameters name.
//! On the host (unit tests) the same type is an ordinary heap page, which
//! lets ring logic be tested against a simulated other end.

use alloc::alloc::{alloc_zeroed, dealloc};
use core::alloc::Layout;
use core::ptr::NonNull;

use zerocopy::{FromBytes, Immutable, IntoBytes};

use crate::abi::PAGE_SIZE;
use crate::hypercall::XenError;

/// A page shared with another domain. Offsets past the page are
/// programming errors and panic; callers mask indices that come from the
/// other end before turning them into offsets.
#[derive(Debug)]
pub struct SharedPage {
    ptr: NonNull<u8>,
    /// Whether the page came from our heap (freed on drop) or from the
    /// toolstack (left alone).
    owned: bool,
}

// SAFETY: the page is plain memory reached only through volatile accesses;
// the guest has one vCPU and no handle is shared across threads on the
// host tests, but nothing about the page is tied to a thread.
unsafe impl Send for SharedPage {}

fn page_layout() -> Layout {
    // PAGE_SIZE is a non-zero power of two.
    Layout::from_size_align(PAGE_SIZE, PAGE_SIZE).unwrap_or(Layout::new::<u8>())
}

impl SharedPage {
    /// A zeroed page from the heap, freed when dropped. Whatever was
    /// granted on it must be ended first (a [`crate::grant::Grant`] holds
    /// no borrow of the page, so the owner keeps both and drops the grant
    /// first).
    pub fn alloc() -> Result<SharedPage, XenError> {
        let layout = page_layout();
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc_zeroed(layout) };
        NonNull::new(ptr).map(|ptr| SharedPage { ptr, owned: true }).ok_or(XenError::OutOfMemory("a shared page"))
    }

    /// The page at guest frame `frame`, which the toolstack set up for us
    /// (the console's or xenstore's ring, from its HVM parameter). It is
    /// not freed on drop.
    ///
    /// # Safety
    ///
    /// `frame` must be a page of this guest's RAM, identity-mapped, that
    /// nothing else in the guest uses as ordinary memory while the handle
    /// lives.
    pub unsafe fn from_frame(frame: u64) -> Option<SharedPage> {
        let address = usize::try_from(frame.checked_mul(PAGE_SIZE as u64)?).ok()?;
        NonNull::new(address as *mut u8).map(|ptr| SharedPage { ptr, owned: false })
    }

    /// The page's address (its guest-physical address too).
    pub fn address(&self) -> u64 {
        self.ptr.as_ptr() as u64
    }

    /// The page's guest frame number.
    pub fn frame(&self) -> u64 {
        self.address() / PAGE_SIZE as u64
    }

    fn at<T>(&self, offset: usize) -> *mut T {
        let size = core::mem::size_of::<T>();
        assert!(
            offset.checked_add(size).is_some_and(|end| end <= PAGE_SIZE) && offset % size == 0,
            "shared page access of {size} bytes at offset {offset} is out of the page or unaligned"
        );
        // SAFETY: the offset was checked to lie within the page.
        unsafe { self.ptr.as_ptr().add(offset).cast::<T>() }
    }

    /// Reads the value of type `T` (an integer, or a structure of them) at
    /// `offset`, which must be aligned for it. `FromBytes` because the
    /// other domain may have written any bytes there: a `bool`, an enum or
    /// a reference read from the page could be invalid.
    pub fn read<T: FromBytes>(&self, offset: usize) -> T {
        // SAFETY: `at` checked bounds and alignment, and every bit pattern
        // is a valid `T` (`FromBytes`); the page is live memory another
        // domain writes concurrently, hence volatile.
        unsafe { self.at::<T>(offset).read_volatile() }
    }

    /// Writes `value` (an integer, or a structure of them without padding)
    /// at `offset`, aligned for it. `IntoBytes` because the other domain
    /// reads every byte written, so none may be uninitialised.
    pub fn write<T: IntoBytes + Immutable>(&self, offset: usize, value: T) {
        // SAFETY: `at` checked bounds and alignment; `T` has no padding
        // (`IntoBytes`), so the page receives only initialised bytes.
        unsafe { self.at::<T>(offset).write_volatile(value) }
    }

    /// Copies `out.len()` bytes from `offset` on into `out`: a data buffer
    /// the other end has handed over (a received frame, a block read),
    /// copied in one `memcpy` after the ring index that handed it over was
    /// read (with its acquire fence).
    pub fn read_bytes(&self, offset: usize, out: &mut [u8]) {
        let end = offset.checked_add(out.len()).filter(|&end| end <= PAGE_SIZE);
        assert!(end.is_some(), "shared page read of {} bytes at offset {offset} is out of the page", out.len());
        // SAFETY: the range was checked to lie within the page, which is
        // live, and `out` is ours, so the two do not overlap. The protocol
        // on top gives the bytes to us before we read them (the other end
        // no longer writes them), so a plain copy sees what was written.
        unsafe { core::ptr::copy_nonoverlapping(self.ptr.as_ptr().add(offset), out.as_mut_ptr(), out.len()) }
    }

    /// Copies `bytes` to the page from `offset` on, in one `memcpy`: a data
    /// buffer the other end reads only once a ring index published after
    /// it (with a release fence) hands it over.
    pub fn write_bytes(&self, offset: usize, bytes: &[u8]) {
        let end = offset.checked_add(bytes.len()).filter(|&end| end <= PAGE_SIZE);
        assert!(end.is_some(), "shared page write of {} bytes at offset {offset} is out of the page", bytes.len());
        // SAFETY: as in `read_bytes`; the other end does not read the range
        // until it is handed over.
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ptr.as_ptr().add(offset), bytes.len()) }
    }

    /// Sets the whole page to zero.
    pub fn zero(&self) {
        for offset in (0..PAGE_SIZE).step_by(8) {
            self.write::<u64>(offset, 0);
        }
    }
}

impl Drop for SharedPage {
    fn drop(&mut self) {
        if self.owned {
            // SAFETY: an owned page was allocated by `alloc` with this layout
            // and is freed once.
            unsafe { dealloc(self.ptr.as_ptr(), page_layout()) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heap_page_is_aligned_zeroed_and_round_trips_values() {
        let page = SharedPage::alloc().unwrap();
        assert_eq!(page.address() % PAGE_SIZE as u64, 0);
        assert_eq!(page.read::<u64>(4088), 0);
        page.write::<u32>(4, 0xdead_beef);
        page.write_bytes(100, b"ring");
        let mut out = [0; 4];
        page.read_bytes(100, &mut out);
        assert_eq!((page.read::<u32>(4), &out), (0xdead_beef, b"ring"));
        page.zero();
        assert_eq!(page.read::<u32>(4), 0);
    }

    #[test]
    #[should_panic(expected = "out of the page")]
    fn an_access_past_the_page_panics() {
        SharedPage::alloc().unwrap().read::<u32>(4094);
    }
}
