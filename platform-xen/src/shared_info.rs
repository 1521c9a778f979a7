//! The shared info page: Xen's time records, the wall clock and the
//! 2-level event channel bitmaps, mapped once with
//! `XENMEM_add_to_physmap(XENMAPSPACE_shared_info)` into a page of ours.

use core::sync::atomic::{fence, AtomicU64, AtomicU8, Ordering};

use mirage_kernel::arch::cpu;
use zerocopy::FromBytes;

use crate::abi::shared_info::*;
use crate::abi::{system_time, PAGE_SIZE, XENMAPSPACE_SHARED_INFO};
use crate::hypercall::{leak_page, XenError};
use crate::hypervisor::add_to_physmap;

/// The shared info page's address, 0 until [`map`].
static PAGE: AtomicU64 = AtomicU64::new(0);

/// How often a reader retries while Xen updates a record. Xen's updates
/// take microseconds; a record still odd after this many tries is read as
/// it is rather than spinning forever.
const MAX_RETRIES: u32 = 1_000;

/// Maps the shared info page; idempotent. Returns its address.
pub fn map() -> Result<u64, XenError> {
    let existing = PAGE.load(Ordering::Relaxed);
    if existing != 0 {
        return Ok(existing);
    }
    let page = leak_page("shared info")?;
    add_to_physmap(XENMAPSPACE_SHARED_INFO, 0, page / PAGE_SIZE as u64)?;
    PAGE.store(page, Ordering::Relaxed);
    Ok(page)
}

/// Reads the u32 or u64 at `offset` of the mapped page.
fn read<T: FromBytes>(page: u64, offset: usize) -> T {
    debug_assert!(offset + core::mem::size_of::<T>() <= PAGE_SIZE);
    // SAFETY: `page` is the mapped shared info page (set by `map` only after
    // Xen mapped it), every offset used is within it and aligned for `T`
    // (the header's layout), every bit pattern is a valid `T` (`FromBytes`),
    // and Xen writes it concurrently, hence volatile.
    unsafe { core::ptr::read_volatile((page as *const u8).add(offset).cast::<T>()) }
}

/// Xen system time in ns (vCPU 0's record), or `None` before [`map`].
pub fn now() -> Option<u64> {
    let page = PAGE.load(Ordering::Relaxed);
    if page == 0 {
        return None;
    }
    let mut result = 0;
    for _ in 0..MAX_RETRIES {
        let version: u32 = read(page, VCPU0_TIME + TIME_VERSION);
        fence(Ordering::Acquire);
        let stamp: u64 = read(page, VCPU0_TIME + TIME_TSC_TIMESTAMP);
        let base: u64 = read(page, VCPU0_TIME + TIME_SYSTEM_TIME);
        let mul: u32 = read(page, VCPU0_TIME + TIME_MUL);
        let shift: i8 = read(page, VCPU0_TIME + TIME_SHIFT);
        result = system_time(cpu::rdtsc(), stamp, base, mul, shift);
        fence(Ordering::Acquire);
        if version & 1 == 0 && read::<u32>(page, VCPU0_TIME + TIME_VERSION) == version {
            break;
        }
    }
    Some(result)
}

/// The wall-clock time (seconds, nanoseconds since the Unix epoch) at Xen
/// system time 0, or `None` before [`map`].
pub fn wall_clock_base() -> Option<(i64, u32)> {
    let page = PAGE.load(Ordering::Relaxed);
    if page == 0 {
        return None;
    }
    let mut result = (0, 0);
    for _ in 0..MAX_RETRIES {
        let version: u32 = read(page, WC_VERSION);
        fence(Ordering::Acquire);
        let secs = (u64::from(read::<u32>(page, WC_SEC_HI)) << 32) | u64::from(read::<u32>(page, WC_SEC));
        result = (secs as i64, read::<u32>(page, WC_NSEC));
        fence(Ordering::Acquire);
        if version & 1 == 0 && read::<u32>(page, WC_VERSION) == version {
            break;
        }
    }
    Some(result)
}

/// The word and bit of `port` in an event channel bitmap.
fn bit(port: u32) -> Option<(usize, u64)> {
    (port < EVTCHN_2L_PORTS).then(|| ((port / 64) as usize * 8, 1u64 << (port % 64)))
}

/// Whether `port` is pending; `None` before [`map`] or for a port beyond
/// the 2-level ABI's [`EVTCHN_2L_PORTS`].
pub fn is_pending(port: u32) -> Option<bool> {
    let page = PAGE.load(Ordering::Relaxed);
    let (word, mask) = bit(port)?;
    (page != 0).then(|| read::<u64>(page, EVTCHN_PENDING + word) & mask != 0)
}

/// Clears `port`'s pending bit, as a guest does once it has handled the
/// event. Does nothing before [`map`] or for a port out of range.
pub fn clear_pending(port: u32) {
    let page = PAGE.load(Ordering::Relaxed);
    let Some((word, mask)) = bit(port) else { return };
    if page == 0 {
        return;
    }
    // SAFETY: the word lies within the mapped page and is 8-byte aligned;
    // Xen sets bits in it concurrently, so the clear must be atomic, which
    // an `AtomicU64` at that address gives (the page is ordinary RAM).
    let word = unsafe { &*((page as usize + EVTCHN_PENDING + word) as *const AtomicU64) };
    word.fetch_and(!mask, Ordering::SeqCst);
}

/// vCPU 0's upcall notice as [`take_upcall`] found it: whether
/// `evtchn_upcall_pending` was set, and the selector word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UpcallNotice {
    /// `evtchn_upcall_pending` was set.
    pub pending: bool,
    /// `evtchn_pending_sel`: bit `w` set means word `w` of
    /// `evtchn_pending` has a newly pending port.
    pub selector: u64,
}

impl UpcallNotice {
    /// Whether this notice announces `port`: Xen sets the port's selector
    /// bit and `evtchn_upcall_pending` after its pending bit, so a port
    /// that is pending while neither is set was never announced (the
    /// upcall for it was lost, or Xen is between the two steps).
    pub fn announces(&self, port: u32) -> bool {
        self.pending || self.selector & (1u64 << ((port / 64) % 64)) != 0
    }
}

/// Takes vCPU 0's upcall notice: swaps `evtchn_upcall_pending` and then
/// `evtchn_pending_sel` to 0 and returns what they held (the selector
/// names the words of `evtchn_pending` with newly pending ports). Xen sets
/// a selector bit (and raises the upcall) only when it is clear, so a
/// guest that scans the bitmap must clear the selector first or later
/// events in that word never raise the upcall again. `None` before [`map`].
pub fn take_upcall() -> Option<UpcallNotice> {
    let page = PAGE.load(Ordering::Relaxed);
    if page == 0 {
        return None;
    }
    // SAFETY: both fields lie within vCPU 0's `vcpu_info` in the mapped page,
    // aligned for their size; Xen sets them concurrently (with atomic
    // operations), so they are accessed as atomics (the page is RAM).
    let (pending, selector) = unsafe {
        (
            &*((page as usize + VCPU0_UPCALL_PENDING) as *const AtomicU8),
            &*((page as usize + VCPU0_PENDING_SEL) as *const AtomicU64),
        )
    };
    let pending = pending.swap(0, Ordering::SeqCst) != 0;
    Some(UpcallNotice { pending, selector: selector.swap(0, Ordering::SeqCst) })
}

/// vCPU 0's `evtchn_upcall_pending`, `evtchn_upcall_mask` and
/// `evtchn_pending_sel` as they are now, without taking them (for
/// diagnostics). `None` before [`map`].
pub fn upcall_state() -> Option<(u8, u8, u64)> {
    let page = PAGE.load(Ordering::Relaxed);
    (page != 0).then(|| {
        (
            read::<u8>(page, VCPU0_UPCALL_PENDING),
            read::<u8>(page, VCPU0_UPCALL_MASK),
            read::<u64>(page, VCPU0_PENDING_SEL),
        )
    })
}

/// Sets vCPU 0's `evtchn_upcall_mask` (1: Xen raises no upcall). Does
/// nothing before [`map`].
pub fn set_upcall_mask(masked: bool) {
    let page = PAGE.load(Ordering::Relaxed);
    if page == 0 {
        return;
    }
    // SAFETY: as in `take_upcall`; the mask is a byte of vCPU 0's `vcpu_info`.
    let mask = unsafe { &*((page as usize + VCPU0_UPCALL_MASK) as *const AtomicU8) };
    mask.store(u8::from(masked), Ordering::SeqCst);
}

/// Whether `port` is masked in the 2-level bitmap.
pub fn is_masked(port: u32) -> Option<bool> {
    let page = PAGE.load(Ordering::Relaxed);
    let (word, mask) = bit(port)?;
    (page != 0).then(|| read::<u64>(page, EVTCHN_MASK + word) & mask != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_map_to_their_bitmap_bit() {
        assert_eq!(bit(0), Some((0, 1)));
        assert_eq!(bit(65), Some((8, 2)));
        assert_eq!(bit(EVTCHN_2L_PORTS - 1), Some((504, 1 << 63)));
        assert_eq!(bit(EVTCHN_2L_PORTS), None);
    }

    #[test]
    fn a_notice_announces_the_ports_of_its_selector_words_or_all_if_pending() {
        let words_0_and_2 = UpcallNotice { pending: false, selector: 0b101 };
        assert!(words_0_and_2.announces(5));
        assert!(!words_0_and_2.announces(64));
        assert!(words_0_and_2.announces(130));
        assert!(!UpcallNotice::default().announces(0));
        assert!(UpcallNotice { pending: true, selector: 0 }.announces(64));
    }

    #[test]
    fn nothing_is_read_before_the_page_is_mapped() {
        assert_eq!(now(), None);
        assert_eq!(wall_clock_base(), None);
        assert_eq!(is_pending(3), None);
        assert_eq!(take_upcall(), None);
        assert_eq!(upcall_state(), None);
        clear_pending(3);
        set_upcall_mask(false);
    }
}
