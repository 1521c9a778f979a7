//! [`RingConsole`]: a domU's PV console, the `xencons_interface` page
//! (`io/console.h`) shared with the backend in dom0 (xenconsoled, which
//! `xl console` reads), and the event channel that notifies it.
//!
//! Output: the guest owns `out_prod`; the backend owns `out_cons`. Bytes
//! are stored before the producer index is published (a fence between),
//! and the consumer index is read before the slots it frees are reused (a
//! fence between), as the header's protocol requires.
//!
//! Input ([`Console::read`]): the backend owns `in_prod`, the guest
//! `in_cons`. The guest reads `in_prod`, then (after a fence) the bytes up
//! to it, then (after a fence) publishes `in_cons` and notifies the
//! backend, which may then reuse the slots. Slots are the indices masked
//! to the ring, so no index the backend writes reaches outside it; a
//! producer more than a ring's size ahead of the consumer (or behind it)
//! breaks the protocol and fails the read. An empty ring is waited on
//! through the console's event channel, adopted once
//! ([`crate::event::EventChannel::adopt`]) and kept for the rest of the run.
//!
//! Writers do not take a lock: the domain has one vCPU and tasks are never
//! interrupted by one another (the event upcall only dispatches events),
//! so two writes never interleave; a panic in the middle of a write (which
//! never resumes it) at worst repeats the unpublished bytes.

use alloc::format;
use core::ptr::{addr_of, addr_of_mut};
use core::sync::atomic::{fence, Ordering};

use mirage_types::console::Console;
use mirage_types::flow::{ErrorKind, FlowError};

use crate::abi::{
    XenconsInterface, HVM_PARAM_CONSOLE_EVTCHN, HVM_PARAM_CONSOLE_PFN, PAGE_SIZE, XENCONS_IN_SIZE, XENCONS_OUT_SIZE,
};
use crate::event::EventChannel;
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

/// The console's event channel as a waitable [`EventChannel`], adopted
/// by the first read that finds no input.
static INPUT_CHANNEL: spin::Once<EventChannel> = spin::Once::new();

/// The unread input between the consumer index `cons` and the producer
/// index `prod`, or an error if the producer is more than a ring ahead.
fn unread_input(cons: u32, prod: u32) -> Result<usize, FlowError> {
    let unread = prod.wrapping_sub(cons) as usize;
    if unread > XENCONS_IN_SIZE {
        return Err(FlowError::Other {
            kind: ErrorKind::Io,
            message: format!(
                "Xen PV console: the backend's in_prod ({prod}) is {unread} bytes past in_cons ({cons}), more than \
                 the {XENCONS_IN_SIZE}-byte ring"
            ),
        });
    }
    Ok(unread)
}

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

    /// Clears the port's pending notification after a poll. Once a reader
    /// has adopted the port, through the event table, so the reader is
    /// woken rather than the notification lost (if the table is busy, the
    /// bit stays for the idle loop's dispatch).
    fn take_notification(&self) {
        if INPUT_CHANNEL.get().is_some() {
            crate::event::try_dispatch();
        } else {
            shared_info::clear_pending(self.port);
        }
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
            self.take_notification();
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
            self.take_notification();
        }
        if drained() {
            return Ok(());
        }
        Err(XenError::Unexpected("the PV console's backend read nothing for 5 s"))
    }

    /// Copies up to `buf.len()` unread input bytes into `buf`, publishes the
    /// new consumer index and returns how many (0: the ring is empty). Does
    /// not notify. Errors: the backend's producer index is out of range.
    fn consume_input(&self, buf: &mut [u8]) -> Result<usize, FlowError> {
        // SAFETY: `page` is a live ring (`from_raw`'s contract); the backend
        // writes `in_prod` concurrently, hence volatile.
        let (cons, prod) =
            unsafe { (addr_of!((*self.page).in_cons).read_volatile(), addr_of!((*self.page).in_prod).read_volatile()) };
        let n = unread_input(cons, prod)?.min(buf.len());
        // The bytes up to `prod` are valid only once we have seen `prod`.
        fence(Ordering::SeqCst);
        for (i, byte) in buf[..n].iter_mut().enumerate() {
            let slot = (cons.wrapping_add(i as u32) as usize) & (XENCONS_IN_SIZE - 1);
            // SAFETY: `slot` < XENCONS_IN_SIZE, inside `input` of the live ring.
            *byte = unsafe { addr_of!((*self.page).input).cast::<u8>().add(slot).read_volatile() };
        }
        // The backend may reuse the slots once it sees `in_cons` past them:
        // the reads above come first.
        fence(Ordering::SeqCst);
        // SAFETY: as above; only this domain writes `in_cons`.
        unsafe { addr_of_mut!((*self.page).in_cons).write_volatile(cons.wrapping_add(n as u32)) };
        Ok(n)
    }

    /// Waits for an event on the console's port (the backend notifies
    /// after writing input).
    async fn wait_for_input(&self) -> Result<(), XenError> {
        // Adopted once and kept: several readers share it, and no lock is
        // held across the wait.
        let channel = match INPUT_CHANNEL.get() {
            Some(channel) => channel,
            None => {
                let adopted = EventChannel::adopt(self.port)?;
                INPUT_CHANNEL.call_once(|| adopted)
            }
        };
        if channel.port() != self.port {
            return Err(XenError::Unexpected("a second PV console ring with another port"));
        }
        channel.wait().await;
        Ok(())
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
        self.take_notification();
        evtchn_send(self.port).map_err(|e| (written, e))?;
        Ok(written)
    }
}

impl Console for RingConsole {
    type Error = FlowError;

    /// Reads what the backend (`xl console`'s input) wrote, at least one
    /// byte, at most `buf.len()`: waits on the console's event channel
    /// while the ring is empty. `Ok(n)`: `n` bytes consumed (the backend is
    /// notified). An `Io` error if the backend broke the ring protocol
    /// (nothing consumed then) or the channel could not be waited on.
    /// Cancel-safe: bytes are consumed only in the poll that returns them.
    /// An empty `buf` returns `Ok(0)` at once.
    async fn read(&self, buf: &mut [u8]) -> Result<usize, FlowError> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let n = self.consume_input(buf)?;
            if n > 0 {
                let _ = evtchn_send(self.port);
                return Ok(n);
            }
            self.wait_for_input().await.map_err(|e| FlowError::Other {
                kind: ErrorKind::Io,
                message: format!("Xen PV console (port {}): cannot wait for input: {e}", self.port),
            })?;
        }
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
    use mirage_types::flow::Error as _;

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

    /// The backend's side of the in ring: writes `bytes` at `in_prod`.
    fn backend_types(page: &mut XenconsInterface, bytes: &[u8]) {
        for &byte in bytes {
            page.input[page.in_prod as usize & (XENCONS_IN_SIZE - 1)] = byte;
            page.in_prod = page.in_prod.wrapping_add(1);
        }
    }

    fn input_ring(start: u32) -> Box<XenconsInterface> {
        let mut page = ring(0);
        page.input = [0xa5; XENCONS_IN_SIZE];
        page.in_cons = start;
        page.in_prod = start;
        page
    }

    #[test]
    fn input_is_read_in_order_and_the_consumer_index_follows() {
        let mut page = input_ring(0);
        backend_types(&mut page, b"ls -l\n");
        let mut buf = [0u8; 4];
        assert_eq!(console(&mut page).consume_input(&mut buf).unwrap(), 4);
        assert_eq!((&buf, page.in_cons), (b"ls -", 4));
        assert_eq!(console(&mut page).consume_input(&mut buf).unwrap(), 2);
        assert_eq!((&buf[..2], page.in_cons), (&b"l\n"[..], 6));
        // Empty now.
        assert_eq!(console(&mut page).consume_input(&mut buf).unwrap(), 0);
        assert_eq!(page.in_cons, 6);
    }

    #[test]
    fn input_wraps_around_the_ring_and_u32() {
        let start = u32::MAX - 1;
        let mut page = input_ring(start);
        backend_types(&mut page, b"wxyz");
        // u32::MAX - 1 is slot 1022: two bytes at the end, two at the start.
        assert_eq!(&page.input[1022..], b"wx");
        assert_eq!(&page.input[..2], b"yz");
        let mut buf = [0u8; 16];
        assert_eq!(console(&mut page).consume_input(&mut buf).unwrap(), 4);
        assert_eq!(&buf[..4], b"wxyz");
        assert_eq!(page.in_cons, start.wrapping_add(4));
        // A full ring (exactly its size unread) is read whole.
        let full: Vec<u8> = (0..XENCONS_IN_SIZE).map(|i| (i * 7) as u8).collect();
        backend_types(&mut page, &full);
        let mut all = vec![0u8; 2 * XENCONS_IN_SIZE];
        assert_eq!(console(&mut page).consume_input(&mut all).unwrap(), XENCONS_IN_SIZE);
        assert_eq!(&all[..XENCONS_IN_SIZE], &full[..]);
    }

    #[test]
    fn a_producer_more_than_a_ring_ahead_or_behind_is_an_error_and_consumes_nothing() {
        for (cons, prod) in [(0u32, XENCONS_IN_SIZE as u32 + 1), (100, 50), (5, u32::MAX), (u32::MAX, 2000)] {
            let mut page = input_ring(cons);
            page.in_prod = prod;
            let mut buf = [0u8; 64];
            let error = console(&mut page).consume_input(&mut buf).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Io, "{error}");
            assert!(error.to_string().contains("in_prod"), "{error}");
            assert_eq!(page.in_cons, cons);
        }
    }

    #[test]
    fn garbage_indices_within_a_ring_only_read_inside_it() {
        // Any consumer index, producer exactly a ring ahead: every slot is
        // read once, none outside `input` (the masks keep them in).
        for cons in [0u32, 1, 1023, 1024, 0x8000_0001, u32::MAX] {
            let mut page = input_ring(cons);
            page.in_prod = cons.wrapping_add(XENCONS_IN_SIZE as u32);
            let mut buf = vec![0u8; XENCONS_IN_SIZE];
            assert_eq!(console(&mut page).consume_input(&mut buf).unwrap(), XENCONS_IN_SIZE);
            assert!(buf.iter().all(|&b| b == 0xa5));
        }
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
