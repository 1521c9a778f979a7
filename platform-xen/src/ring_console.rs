//! [`RingConsole`]: a domU's PV console, the `xencons_interface` page
//! (`io/console.h`) shared with the backend in dom0 (xenconsoled, which
//! `xl console` reads), and the event channel that notifies it.
//!
//! Only output is implemented. The guest owns `out_prod`; the backend owns
//! `out_cons`. Bytes are stored before the producer index is published
//! (a fence between), and the consumer index is read before the slots it
//! frees are reused (a fence between), as the header's protocol requires.
//!
//! Writers do not take a lock: the domain has one vCPU and no event
//! upcalls, so two writes never interleave; a panic in the middle of a
//! write (which never resumes it) at worst repeats the unpublished bytes.

use alloc::format;
use alloc::string::String;
use core::ptr::{addr_of, addr_of_mut};
use core::sync::atomic::{fence, Ordering};

use mirage_types::console::Console;
use mirage_types::flow::{ErrorKind, FlowError};

use crate::abi::{XenconsInterface, HVM_PARAM_CONSOLE_EVTCHN, HVM_PARAM_CONSOLE_PFN, PAGE_SIZE, XENCONS_OUT_SIZE};
use crate::hypercall::XenError;
use crate::hypervisor::{evtchn_send, hvm_get_param, poll};
use crate::shared_info;

/// The kernel's boot page tables identity-map the first 4 GiB; the ring
/// page must lie there (Xen's toolstack puts it just below 4 GiB).
const IDENTITY_MAPPED_END: u64 = 1 << 32;

/// How long one wait for the backend lasts (ns of Xen system time) before
/// the guest notifies it again: a lost notification costs at most this.
const WAIT_SLICE_NS: u64 = 1_000_000;

/// How many [`WAIT_SLICE_NS`] waits a write makes for space in a full
/// ring before it gives up: 5 s without the backend reading a byte means
/// nobody reads the console (no xenconsoled), and output is dropped
/// rather than hanging the domain.
const MAX_WAITS: u32 = 5_000;

/// The PV console ring of this domain. `Copy`, `Send + Sync` (it is an
/// address and a port), so a logger can hold it.
#[derive(Clone, Copy, Debug)]
pub struct RingConsole {
    /// The `xencons_interface` page, identity-mapped.
    page: *mut XenconsInterface,
    /// The event channel to the backend.
    port: u32,
}

// SAFETY: the page is shared memory every access to which is volatile, and
// the domain runs one vCPU (see the module documentation); the handle
// itself is an address and a number.
unsafe impl Send for RingConsole {}
// SAFETY: as for `Send`.
unsafe impl Sync for RingConsole {}

impl RingConsole {
    /// Finds this domain's console ring from its HVM parameters
    /// (`HVM_PARAM_CONSOLE_PFN`, `HVM_PARAM_CONSOLE_EVTCHN`), which the
    /// toolstack sets for every domU it builds. Errors: Xen refused a
    /// parameter, or the domain has no ring (both 0: dom0 without a
    /// toolstack), or the page lies outside the kernel's identity map.
    pub fn from_hvm_params() -> Result<RingConsole, XenError> {
        let pfn = hvm_get_param(HVM_PARAM_CONSOLE_PFN)?;
        let port = hvm_get_param(HVM_PARAM_CONSOLE_EVTCHN)?;
        if pfn == 0 || port == 0 {
            return Err(XenError::Unexpected("this domain has no PV console ring (HVM console parameters are 0)"));
        }
        let Some(address) = pfn.checked_mul(PAGE_SIZE as u64).filter(|a| *a < IDENTITY_MAPPED_END) else {
            return Err(XenError::Unexpected("the PV console ring page lies above the identity-mapped 4 GiB"));
        };
        let port = u32::try_from(port).map_err(|_| XenError::Unexpected("the PV console port is out of range"))?;
        // SAFETY: Xen's toolstack gave this page to the domain as its console
        // ring, below 4 GiB (checked), which the kernel maps identically and
        // allocates nothing in (it is outside the memory map's RAM).
        Ok(unsafe { RingConsole::from_raw(address as *mut XenconsInterface, port) })
    }

    /// A console over the ring at `page`, notifying `port`.
    ///
    /// # Safety
    ///
    /// `page` must point to a live `xencons_interface` that nothing else in
    /// this domain writes, for as long as the console (or a copy) is used.
    pub unsafe fn from_raw(page: *mut XenconsInterface, port: u32) -> RingConsole {
        RingConsole { page, port }
    }

    /// The event channel to the backend.
    pub fn port(&self) -> u32 {
        self.port
    }

    /// Copies as much of `bytes` as fits into the out ring and publishes
    /// it; returns how much. Does not notify.
    fn produce(&self, bytes: &[u8]) -> usize {
        // SAFETY: `page` is a live ring (`from_raw`'s contract); the indices
        // are written by the backend concurrently, hence volatile.
        let (cons, prod) = unsafe {
            (addr_of!((*self.page).out_cons).read_volatile(), addr_of!((*self.page).out_prod).read_volatile())
        };
        // The slots up to `cons` are free only once we have seen `cons`.
        fence(Ordering::SeqCst);
        let used = prod.wrapping_sub(cons) as usize;
        // A backend that moved `out_cons` past `out_prod` broke the
        // protocol: write nothing rather than overwrite unread bytes.
        let free = XENCONS_OUT_SIZE.saturating_sub(used);
        let n = free.min(bytes.len());
        for (i, byte) in bytes[..n].iter().enumerate() {
            let slot = (prod.wrapping_add(i as u32) as usize) & (XENCONS_OUT_SIZE - 1);
            // SAFETY: `slot` < XENCONS_OUT_SIZE, inside `output` of the live ring.
            unsafe { addr_of_mut!((*self.page).output).cast::<u8>().add(slot).write_volatile(*byte) };
        }
        // The backend must see the bytes before the index that covers them.
        fence(Ordering::SeqCst);
        // SAFETY: as above; only this domain writes `out_prod`.
        unsafe { addr_of_mut!((*self.page).out_prod).write_volatile(prod.wrapping_add(n as u32)) };
        n
    }

    /// Whether the out ring has room for at least one byte.
    fn has_space(&self) -> bool {
        // SAFETY: as in `produce`.
        let (cons, prod) = unsafe {
            (addr_of!((*self.page).out_cons).read_volatile(), addr_of!((*self.page).out_prod).read_volatile())
        };
        (prod.wrapping_sub(cons) as usize) < XENCONS_OUT_SIZE
    }

    /// Waits until the backend frees space: notifies it, then blocks in
    /// `SCHEDOP_poll` on the port (the backend notifies back after reading)
    /// for slices of [`WAIT_SLICE_NS`], at most [`MAX_WAITS`] of them.
    fn wait_for_space(&self) -> Result<(), XenError> {
        for _ in 0..MAX_WAITS {
            if self.has_space() {
                return Ok(());
            }
            evtchn_send(self.port)?;
            let now = shared_info::now().ok_or(XenError::NotInitialised)?;
            poll(&[self.port], now.saturating_add(WAIT_SLICE_NS))?;
            shared_info::clear_pending(self.port);
        }
        if self.has_space() {
            return Ok(());
        }
        Err(XenError::Unexpected("the PV console's backend read nothing for 5 s"))
    }

    /// Waits until the backend has read everything written (at most
    /// 5 s of backend silence), so output is not lost when the domain shuts
    /// down and the toolstack destroys it. `Ok` means the ring is empty.
    pub fn flush(&self) -> Result<(), XenError> {
        let drained = || {
            // SAFETY: as in `produce`.
            unsafe {
                addr_of!((*self.page).out_cons).read_volatile() == addr_of!((*self.page).out_prod).read_volatile()
            }
        };
        for _ in 0..MAX_WAITS {
            if drained() {
                return Ok(());
            }
            evtchn_send(self.port)?;
            let now = shared_info::now().ok_or(XenError::NotInitialised)?;
            poll(&[self.port], now.saturating_add(WAIT_SLICE_NS))?;
            shared_info::clear_pending(self.port);
        }
        if drained() {
            return Ok(());
        }
        Err(XenError::Unexpected("the PV console's backend read nothing for 5 s"))
    }

    /// Writes all of `bytes`, waiting for space as needed; notifies the
    /// backend. `Ok(n)` is how much was written, all of it on `Ok`; the
    /// error says why the rest was not (`.0` is what was written before).
    fn write_blocking(&self, bytes: &[u8]) -> Result<usize, (usize, XenError)> {
        let mut written = 0;
        while written < bytes.len() {
            written += self.produce(&bytes[written..]);
            if written < bytes.len() {
                self.wait_for_space().map_err(|e| (written, e))?;
            }
        }
        // The poll loop clears the port's pending bit; so does this, so a
        // notification from the backend does not stay pending forever.
        shared_info::clear_pending(self.port);
        evtchn_send(self.port).map_err(|e| (written, e))?;
        Ok(written)
    }
}

impl Console for RingConsole {
    type Error = FlowError;

    /// Console input is not implemented: always an `Other` error saying so.
    async fn read(&self, _buf: &mut [u8]) -> Result<usize, FlowError> {
        Err(FlowError::Other {
            kind: ErrorKind::Other,
            message: String::from("reading the Xen PV console is not implemented (output only)"),
        })
    }

    /// Writes all of `buf` synchronously, blocking the vCPU in Xen while
    /// the ring is full (at most 5 s without the backend reading). `Ok` is
    /// `buf.len()`. An `Io` error if the backend stopped reading or Xen
    /// refused the notification; a prefix of `buf` may have been written
    /// then, which the message says.
    async fn write(&self, buf: &[u8]) -> Result<usize, FlowError> {
        self.write_blocking(buf).map_err(|(written, e)| FlowError::Other {
            kind: ErrorKind::Io,
            message: format!("Xen PV console (port {}): {e} ({written} of {} bytes written)", self.port, buf.len()),
        })
    }

    fn write_diagnostic(&self, bytes: &[u8]) {
        let _ = self.write_blocking(bytes);
    }
}

#[cfg(test)]
mod tests {
    use alloc::boxed::Box;
    use alloc::vec::Vec;

    use super::*;

    fn ring(start: u32) -> Box<XenconsInterface> {
        Box::new(XenconsInterface {
            input: [0; 1024],
            output: [0xa5; XENCONS_OUT_SIZE],
            in_cons: 0,
            in_prod: 0,
            out_cons: start,
            out_prod: start,
        })
    }

    fn console(page: &mut XenconsInterface) -> RingConsole {
        // SAFETY: the box outlives every use in the test.
        unsafe { RingConsole::from_raw(page, 7) }
    }

    /// What the backend would read: the bytes from `out_cons` to `out_prod`.
    fn consume(page: &mut XenconsInterface) -> Vec<u8> {
        let mut read = Vec::new();
        while page.out_cons != page.out_prod {
            read.push(page.output[page.out_cons as usize & (XENCONS_OUT_SIZE - 1)]);
            page.out_cons = page.out_cons.wrapping_add(1);
        }
        read
    }

    #[test]
    fn bytes_land_at_the_producer_index_and_it_moves_past_them() {
        let mut page = ring(0);
        let c = console(&mut page);
        assert_eq!(c.produce(b"hello\n"), 6);
        assert_eq!(page.out_prod, 6);
        assert_eq!(&page.output[..7], b"hello\n\xa5");
        assert_eq!(consume(&mut page), b"hello\n");
    }

    #[test]
    fn indices_wrap_around_u32_and_the_ring() {
        let start = u32::MAX - 2;
        let mut page = ring(start);
        let c = console(&mut page);
        assert_eq!(c.produce(b"abcdef"), 6);
        assert_eq!(page.out_prod, start.wrapping_add(6));
        assert_eq!(consume(&mut page), b"abcdef");
        // u32::MAX - 2 is slot 2045: the write wrapped to the ring's start.
        assert_eq!(&page.output[2045..], b"abc");
        assert_eq!(&page.output[..3], b"def");
    }

    #[test]
    fn a_full_ring_takes_only_what_fits() {
        let mut page = ring(10);
        let c = console(&mut page);
        let big: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
        assert_eq!(c.produce(&big), XENCONS_OUT_SIZE);
        assert!(!c.has_space());
        assert_eq!(c.produce(b"more"), 0);
        assert_eq!(consume(&mut page), &big[..XENCONS_OUT_SIZE]);
        assert!(console(&mut page).has_space());
    }

    #[test]
    fn a_consumer_index_past_the_producer_writes_nothing() {
        let mut page = ring(100);
        page.out_cons = 200;
        let c = console(&mut page);
        // prod - cons wraps to a huge "used" count: no slot is free.
        assert_eq!(c.produce(b"x"), 0);
        assert_eq!(page.out_prod, 100);
    }

    #[test]
    fn a_full_ring_off_xen_is_an_error_naming_what_was_written() {
        let mut page = ring(0);
        let c = console(&mut page);
        let big = [b'z'; XENCONS_OUT_SIZE + 5];
        // Off Xen the wait's notification fails at once instead of blocking.
        let (written, error) = c.write_blocking(&big).unwrap_err();
        assert_eq!(written, XENCONS_OUT_SIZE);
        assert!(matches!(error, XenError::NotInitialised), "{error}");
    }
}
