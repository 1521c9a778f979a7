//! Event channels as futures: a bound port ([`EventChannel`]) that tasks
//! notify and wait on, and the dispatch that turns Xen's pending bits into
//! task wake-ups.
//!
//! Every bound port has an entry in one table: whether the port fired since
//! its owner last waited, and the wakers of the tasks waiting. [`dispatch`]
//! takes vCPU 0's upcall notice (clears `evtchn_upcall_pending` and the
//! selector word), scans the shared info page's pending bitmap for the
//! table's ports, clears each pending bit, marks the entry fired and wakes
//! its waiters. Bound ports are unmasked.
//!
//! # Delivery
//!
//! [`crate::run`] sets `HVM_PARAM_CALLBACK_IRQ` to the vector type with a
//! vector claimed from the kernel
//! (`mirage_kernel::interrupt::set_software_vector_handler`): Xen injects
//! it while vCPU 0's `evtchn_upcall_pending` is set, without the APIC (no
//! end-of-interrupt), and its handler calls [`dispatch`]. `VIRQ_TIMER` is
//! bound to a port of the table, so the one-shot timer `halt` arms
//! (`VCPUOP_set_singleshot_timer`) raises the same upcall.
//!
//! The idle loop ([`crate::XenIdle`]) does not wait for the upcall,
//! though: it dispatches with interrupts masked, then blocks in Xen with
//! `block` (`SCHEDOP_poll` on the table's ports, with the executor's
//! deadline or the backstop below as its timeout) and dispatches again.
//! The poll returns at once if a table port is pending, so an event after
//! the scan is not lost, and Xen ends it on a polled port's event, on any
//! upcall notice, or at the timeout, which unblocks the vCPU directly
//! rather than through an injected interrupt. Halting with `sti; hlt` and
//! letting the upcall wake the vCPU (`halt`, which the probe still
//! checks) was the idle loop's wait until the stress runs described in
//! the crate's README showed events that did not wake the halted vCPU
//! (under Xen nested in QEMU's software emulation): their ports were
//! pending with neither selector bit nor upcall flag set, so no upcall was
//! due and none came, and a task with no deadline waited for good.
//!
//! The lock of the table is never contended with the handler: tasks run
//! with interrupts masked (the kernel's executor enables them only inside
//! its idle wait, and only in `halt`), and nothing holds the lock while
//! the vCPU halts, so the handler only ever runs while no code of this
//! module holds the lock.
//!
//! # Backstop
//!
//! The idle loop never blocks without a timeout: when the executor has no
//! deadline (a driver waiting for its backend, a listener), `block`
//! polls with a timeout [`BACKSTOP_NS`] (1 s) ahead. When that timeout
//! ends a poll, every bound port is marked fired and all its waiters are
//! woken: each driver looks at its ring again, so an event missed anywhere
//! between Xen and the driver delays its task by at most a second instead
//! of forever. That costs one look per waiting task per idle second.
//!
//! Counters ([`stats`]) tell where events go: upcalls taken, waits,
//! timer firings, backstop wakes, ports found pending at a backstop wake
//! (`rescued`; with the poll this should stay 0), and ports found pending
//! that Xen had not announced (`lost`: Xen sets a port's pending bit,
//! then its selector bit, then `evtchn_upcall_pending`, so a port pending
//! while neither was set when the scan took the notice, and the flag still
//! clear after the scan, raised no upcall; the first is logged as a
//! warning with the flags). The idle loop logs the counters and the bound ports' bits at debug level every 10 s.
//!
//! # The driver's side
//!
//! A wait is edge-like: [`EventChannel::wait`] completes once per firing
//! since the previous wait (several firings in between count once). So a
//! driver checks its shared ring, and only if what it needs is not there
//! waits and checks again; an event that arrives between the check and
//! the wait leaves the entry fired and the wait completes at once.
//!
//! # Bounds
//!
//! At most [`MAX_PORTS`] ports are bound at a time (Xen's `SCHEDOP_poll`
//! takes at most 128); binding another fails with
//! [`XenError::Unexpected`]. An entry holds one waker per distinct waiting
//! task.

use alloc::vec::Vec;
use core::future::poll_fn;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use core::task::{Poll, Waker};

use crate::abi::{HVM_CALLBACK_TYPE_VECTOR, HVM_PARAM_CALLBACK_IRQ, VIRQ_TIMER};
use crate::hypercall::XenError;
use crate::hypervisor::{
    evtchn_alloc_unbound, evtchn_bind_interdomain, evtchn_bind_virq, evtchn_close, evtchn_send, evtchn_unmask,
    hvm_set_param, poll, set_singleshot_timer,
};
use crate::shared_info;

/// The most ports bound at once (see the module's bounds).
pub const MAX_PORTS: usize = 64;

/// One bound port's state.
#[derive(Debug)]
struct Entry {
    port: u32,
    fired: bool,
    wakers: Vec<Waker>,
}

/// The table of bound ports: pure bookkeeping, tested on the host.
#[derive(Debug, Default)]
struct PortTable {
    entries: Vec<Entry>,
}

impl PortTable {
    const fn new() -> PortTable {
        PortTable { entries: Vec::new() }
    }

    fn add(&mut self, port: u32) -> Result<(), XenError> {
        if self.entries.iter().any(|e| e.port == port) {
            return Err(XenError::Unexpected("event channel port bound twice"));
        }
        if self.entries.len() >= MAX_PORTS {
            return Err(XenError::Unexpected("too many event channel ports bound (at most 64)"));
        }
        self.entries.push(Entry { port, fired: false, wakers: Vec::new() });
        Ok(())
    }

    /// Removes `port`'s entry and returns its waiters (to wake, so they
    /// see the channel gone).
    fn remove(&mut self, port: u32) -> Vec<Waker> {
        match self.entries.iter().position(|e| e.port == port) {
            Some(i) => self.entries.swap_remove(i).wakers,
            None => Vec::new(),
        }
    }

    /// Takes a firing of `port` if there is one, else records `waker`.
    fn poll_wait(&mut self, port: u32, waker: &Waker) -> Poll<()> {
        let Some(entry) = self.entries.iter_mut().find(|e| e.port == port) else {
            return Poll::Ready(());
        };
        if core::mem::take(&mut entry.fired) {
            return Poll::Ready(());
        }
        if !entry.wakers.iter().any(|w| w.will_wake(waker)) {
            entry.wakers.push(waker.clone());
        }
        Poll::Pending
    }

    /// Marks `port` fired and returns its waiters.
    fn fire(&mut self, port: u32) -> Vec<Waker> {
        match self.entries.iter_mut().find(|e| e.port == port) {
            Some(entry) => {
                entry.fired = true;
                core::mem::take(&mut entry.wakers)
            }
            None => Vec::new(),
        }
    }

    /// Marks every port fired and returns all their waiters: the
    /// backstop's re-check (see the module docs).
    fn fire_all(&mut self) -> Vec<Waker> {
        self.entries
            .iter_mut()
            .flat_map(|entry| {
                entry.fired = true;
                core::mem::take(&mut entry.wakers)
            })
            .collect()
    }

    fn ports(&self) -> impl Iterator<Item = u32> + '_ {
        self.entries.iter().map(|e| e.port)
    }
}

/// The bound ports. Never contended: see the module's delivery section.
static PORTS: spin::Mutex<PortTable> = spin::Mutex::new(PortTable::new());

/// A port bound by this domain: notify its other end, wait for events on
/// it. Dropping it closes the port if this handle bound it.
#[derive(Debug)]
pub struct EventChannel {
    port: u32,
    close_on_drop: bool,
}

impl EventChannel {
    fn register(port: u32, close_on_drop: bool) -> Result<EventChannel, XenError> {
        if let Err(e) = PORTS.lock().add(port) {
            if close_on_drop {
                let _ = evtchn_close(port);
            }
            return Err(e);
        }
        // A masked port raises no upcall (`SCHEDOP_poll` ignores masks).
        if let Err(e) = evtchn_unmask(port) {
            PORTS.lock().remove(port);
            if close_on_drop {
                let _ = evtchn_close(port);
            }
            return Err(e);
        }
        Ok(EventChannel { port, close_on_drop })
    }

    /// Allocates a port that domain `remote` may bind to (a front-end's
    /// channel, whose number it then writes to xenstore).
    pub fn alloc_unbound(remote: u16) -> Result<EventChannel, XenError> {
        EventChannel::register(evtchn_alloc_unbound(remote)?, true)
    }

    /// Binds to port `remote_port` of domain `remote`.
    pub fn bind_interdomain(remote: u16, remote_port: u32) -> Result<EventChannel, XenError> {
        EventChannel::register(evtchn_bind_interdomain(remote, remote_port)?, true)
    }

    /// Binds virtual interrupt `virq` (e.g. `VIRQ_TIMER`) of vCPU 0.
    pub fn bind_virq(virq: u32) -> Result<EventChannel, XenError> {
        EventChannel::register(evtchn_bind_virq(virq)?, true)
    }

    /// Takes a port the toolstack bound for this domain already (the
    /// console's and xenstore's, from their HVM parameters). Dropping the
    /// handle unregisters it but leaves the port open.
    pub fn adopt(port: u32) -> Result<EventChannel, XenError> {
        EventChannel::register(port, false)
    }

    /// The port number.
    pub fn port(&self) -> u32 {
        self.port
    }

    /// Notifies the other end (`EVTCHNOP_send`).
    pub fn notify(&self) -> Result<(), XenError> {
        evtchn_send(self.port)
    }

    /// Completes once the port has fired since the previous wait (at once
    /// if it has). Cancel-safe: dropping the future loses no firing.
    pub async fn wait(&self) {
        poll_fn(|cx| PORTS.lock().poll_wait(self.port, cx.waker())).await
    }
}

impl Drop for EventChannel {
    fn drop(&mut self) {
        let waiters = PORTS.lock().remove(self.port);
        waiters.into_iter().for_each(Waker::wake);
        if self.close_on_drop {
            let _ = evtchn_close(self.port);
        }
    }
}

/// Takes every pending event of a bound port: clears its pending bit,
/// marks it fired and wakes its waiters. Returns how many ports fired.
pub fn dispatch() -> usize {
    take_pending(PORTS.lock())
}

/// The work of [`dispatch`] on the locked table.
fn take_pending(mut table: spin::MutexGuard<'_, PortTable>) -> usize {
    // Before the scan: an event after it sets the selector and the upcall
    // again.
    let notice = shared_info::take_upcall().unwrap_or_default();
    let pending: Vec<u32> = table.ports().filter(|&p| shared_info::is_pending(p) == Some(true)).collect();
    let mut woken = Vec::new();
    let mut unannounced = 0;
    for &port in &pending {
        shared_info::clear_pending(port);
        woken.extend(table.fire(port));
        unannounced += u64::from(!notice.announces(port));
    }
    let timer = TIMER.get().map(EventChannel::port);
    drop(table);
    if timer.is_some_and(|t| pending.contains(&t)) {
        TIMER_FIRINGS.fetch_add(1, Ordering::Relaxed);
    }
    if unannounced > 0 {
        // Xen sets a port's pending bit before its selector bit and the
        // upcall flag: if the flag is set now, Xen was announcing these
        // ports while we took the notice, and the upcall is on its way.
        let (now_pending, mask, selector) = shared_info::upcall_state().unwrap_or_default();
        if now_pending == 0 {
            LOST.fetch_add(unannounced, Ordering::Relaxed);
            LOST_STATE.call_once(|| LostState { ports: pending.clone(), notice, mask, selector });
        }
    }
    // Outside the lock: a waker may poll nothing, but keep it simple.
    woken.into_iter().for_each(Waker::wake);
    pending.len()
}

/// [`dispatch`], unless the table is locked (a diagnostic written while
/// a lock is held): then nothing is taken and the pending bits stay for the
/// next dispatch. Returns how many ports fired.
pub(crate) fn try_dispatch() -> usize {
    PORTS.try_lock().map_or(0, take_pending)
}

/// The upcall's vector, 0 until [`enable_upcalls`] succeeded.
static UPCALL_VECTOR: AtomicU8 = AtomicU8::new(0);

/// How many upcalls the handler has taken.
static UPCALLS: AtomicU64 = AtomicU64::new(0);

/// How many times a scan found `VIRQ_TIMER`'s port fired.
static TIMER_FIRINGS: AtomicU64 = AtomicU64::new(0);

/// Ports a scan found pending that Xen had not announced (no upcall flag,
/// no selector bit, and still none after the scan): events that raised no
/// upcall. See the module's backstop section.
static LOST: AtomicU64 = AtomicU64::new(0);

/// The state of the first scan that counted [`LOST`] ports.
static LOST_STATE: spin::Once<LostState> = spin::Once::new();

/// Whether the warning about [`LOST`] ports was logged.
static LOST_REPORTED: AtomicBool = AtomicBool::new(false);

/// Idle waits (polls and halts) so far.
static HALTS: AtomicU64 = AtomicU64::new(0);

/// Idle waits without a deadline that the backstop's timeout ended, and
/// the ports their scans found pending (events that had not ended the
/// poll, or came in the same instant); whether the first such find was
/// logged.
static BACKSTOP_WAKES: AtomicU64 = AtomicU64::new(0);
static RESCUED: AtomicU64 = AtomicU64::new(0);
static RESCUE_REPORTED: AtomicBool = AtomicBool::new(false);

/// What the first scan that found unannounced ports saw.
#[derive(Debug)]
struct LostState {
    ports: Vec<u32>,
    notice: shared_info::UpcallNotice,
    mask: u8,
    selector: u64,
}

/// `VIRQ_TIMER`'s port, bound for the rest of the run.
static TIMER: spin::Once<EventChannel> = spin::Once::new();

/// The upcall's handler, run by the kernel with interrupts masked.
fn on_upcall() {
    UPCALLS.fetch_add(1, Ordering::Relaxed);
    dispatch();
}

/// Sets up event delivery by upcall (see the module's delivery section):
/// claims a vector, binds `VIRQ_TIMER`, unmasks vCPU 0's upcalls and sets
/// `HVM_PARAM_CALLBACK_IRQ`. Returns the vector; idempotent. On an error
/// the idle loop keeps polling (a vector slot may stay claimed).
pub(crate) fn enable_upcalls() -> Result<u8, XenError> {
    let existing = UPCALL_VECTOR.load(Ordering::Relaxed);
    if existing != 0 {
        return Ok(existing);
    }
    if TIMER.get().is_none() {
        let timer = EventChannel::bind_virq(VIRQ_TIMER)?;
        TIMER.call_once(|| timer);
    }
    let vector = mirage_kernel::interrupt::set_software_vector_handler(on_upcall)
        .map_err(|_| XenError::Unexpected("no free interrupt vector for the event channel upcall"))?;
    shared_info::set_upcall_mask(false);
    hvm_set_param(HVM_PARAM_CALLBACK_IRQ, HVM_CALLBACK_TYPE_VECTOR | u64::from(vector))?;
    UPCALL_VECTOR.store(vector, Ordering::Relaxed);
    // Selector bits left set by events seen through `SCHEDOP_poll` would
    // keep Xen from raising the upcall for their words: take them now.
    dispatch();
    Ok(vector)
}

/// The upcall's vector, if delivery by upcall is set up.
pub(crate) fn upcall_vector() -> Option<u8> {
    Some(UPCALL_VECTOR.load(Ordering::Relaxed)).filter(|&v| v != 0)
}

/// How many upcalls have been taken.
pub(crate) fn upcalls() -> u64 {
    UPCALLS.load(Ordering::Relaxed)
}

/// The longest a halt lasts when the executor has no deadline: the
/// backstop of the module's backstop section. One second: long enough to
/// cost nothing measurable (one timer event per idle second), short enough
/// that an event without an upcall delays its task by a second rather
/// than forever.
pub const BACKSTOP_NS: u64 = 1_000_000_000;

/// Halts vCPU 0 until an upcall (or another interrupt), with the one-shot
/// timer armed for Xen system time `deadline`, and returns with interrupts
/// masked again, after the handler ran. Call it with interrupts masked and
/// after [`dispatch`]; `sti; hlt` is atomic, so an event since then wakes
/// the halt. The idle loop does not halt ([`block`] instead, see the
/// module docs); the probe checks the upcall path with it. Errors: no
/// upcall set up, or Xen refused the timer (nothing halted then).
pub(crate) fn halt(deadline: u64) -> Result<(), XenError> {
    if upcall_vector().is_none() {
        return Err(XenError::Unexpected("no event channel upcall set up"));
    }
    set_singleshot_timer(deadline)?;
    HALTS.fetch_add(1, Ordering::Relaxed);
    mirage_kernel::arch::cpu::enable_interrupts_and_halt();
    mirage_kernel::arch::cpu::disable_interrupts();
    Ok(())
}

/// Blocks vCPU 0 in Xen (`SCHEDOP_poll` on the bound ports) until one of
/// them is pending, an upcall is raised, or Xen system time reaches
/// `deadline` (the backstop, [`BACKSTOP_NS`] from now, if `None`), then
/// dispatches. Call it with interrupts masked, after [`dispatch`]: the
/// poll returns at once if a bound port is pending, so an event since the
/// scan is not missed, whether or not Xen announced it, and its timeout
/// unblocks the vCPU directly, not through an upcall. Returns how many
/// ports fired.
pub(crate) fn block(deadline: Option<u64>) -> Result<usize, XenError> {
    let now = shared_info::now().ok_or(XenError::NotInitialised)?;
    let until = deadline.unwrap_or(now.saturating_add(BACKSTOP_NS)).max(1);
    HALTS.fetch_add(1, Ordering::Relaxed);
    poll(&bound_ports(), until)?;
    let timed_out = shared_info::now().is_some_and(|t| t >= until);
    let fired = dispatch();
    if deadline.is_none() && timed_out {
        BACKSTOP_WAKES.fetch_add(1, Ordering::Relaxed);
        // The poll returns as soon as a polled port is pending: ports found
        // now arrived at the timeout's instant, or did not unblock the poll.
        if fired > 0 {
            RESCUED.fetch_add(fired as u64, Ordering::Relaxed);
        }
        // A second without any event while tasks wait: let every waiter
        // look at its ring again, in case its event was missed anywhere
        // between Xen and the driver. Waits are edge-like and drivers check
        // their rings before waiting, so a spurious firing costs one look.
        let waiters = PORTS.lock().fire_all();
        waiters.into_iter().for_each(Waker::wake);
        return Ok(fired + 1);
    }
    Ok(fired)
}

/// Counters of the event path, for diagnostics (see the module's backstop
/// section).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventStats {
    /// Upcalls the handler took.
    pub upcalls: u64,
    /// Idle waits: polls of the idle loop and halts of `halt`.
    pub halts: u64,
    /// Scans that found `VIRQ_TIMER` fired (deadlines and backstops).
    pub timer_firings: u64,
    /// Ports found pending that Xen had not announced with an upcall.
    pub lost: u64,
    /// Idle waits without a deadline that the backstop ended.
    pub backstop_wakes: u64,
    /// Ports the scans of those backstop wakes found pending besides the
    /// timer's: events that had not ended the wait by themselves.
    pub rescued: u64,
}

/// The event path's counters so far.
pub fn stats() -> EventStats {
    EventStats {
        upcalls: UPCALLS.load(Ordering::Relaxed),
        halts: HALTS.load(Ordering::Relaxed),
        timer_firings: TIMER_FIRINGS.load(Ordering::Relaxed),
        lost: LOST.load(Ordering::Relaxed),
        backstop_wakes: BACKSTOP_WAKES.load(Ordering::Relaxed),
        rescued: RESCUED.load(Ordering::Relaxed),
    }
}

/// Logs, once each, a warning with the state of the first scan that
/// found unannounced ports and one when a backstop wake first found ports
/// pending, if there were such. The idle loop calls it (never the
/// handler, which must not log).
pub(crate) fn report_lost() {
    if RESCUED.load(Ordering::Relaxed) > 0 && !RESCUE_REPORTED.swap(true, Ordering::Relaxed) {
        log::warn!(
            "event channel: a poll without a deadline ran to its backstop timeout with ports pending \
             (their events had not ended it). {:?}",
            stats()
        );
    }
    let Some(state) = LOST_STATE.get() else { return };
    if LOST_REPORTED.swap(true, Ordering::Relaxed) {
        return;
    }
    log::warn!(
        "event channel: ports {:?} were pending without an upcall (upcall flag {}, selector {:#x} when taken; \
         mask {}, selector {:#x} after the scan); the idle loop's scan delivered them. {:?}",
        state.ports,
        u8::from(state.notice.pending),
        state.notice.selector,
        state.mask,
        state.selector,
        stats()
    );
}

/// The bound ports with their pending and mask bits, for diagnostics.
pub(crate) fn port_states() -> Vec<(u32, Option<bool>, Option<bool>)> {
    PORTS.lock().ports().map(|p| (p, shared_info::is_pending(p), shared_info::is_masked(p))).collect()
}

/// The bound ports, for `SCHEDOP_poll` (at most [`MAX_PORTS`]).
pub(crate) fn bound_ports() -> Vec<u32> {
    PORTS.lock().ports().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::sync::Arc;
    use alloc::task::Wake;
    use core::sync::atomic::{AtomicUsize, Ordering};

    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn waker() -> (Arc<CountingWaker>, Waker) {
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        (counter.clone(), Waker::from(counter))
    }

    #[test]
    fn a_firing_before_the_wait_completes_it_at_once_and_counts_once() {
        let mut table = PortTable::new();
        table.add(5).unwrap();
        let (_, w) = waker();
        assert!(table.fire(5).is_empty());
        assert!(table.fire(5).is_empty());
        assert_eq!(table.poll_wait(5, &w), Poll::Ready(()));
        assert_eq!(table.poll_wait(5, &w), Poll::Pending);
    }

    #[test]
    fn a_firing_wakes_each_waiting_task_once() {
        let mut table = PortTable::new();
        table.add(7).unwrap();
        let (count, w) = waker();
        assert_eq!(table.poll_wait(7, &w), Poll::Pending);
        assert_eq!(table.poll_wait(7, &w), Poll::Pending);
        table.fire(7).into_iter().for_each(Waker::wake);
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert_eq!(table.poll_wait(7, &w), Poll::Ready(()));
    }

    #[test]
    fn the_table_is_bounded_and_refuses_a_port_twice() {
        let mut table = PortTable::new();
        for port in 0..MAX_PORTS as u32 {
            table.add(port).unwrap();
        }
        assert!(table.add(1000).is_err());
        assert!(table.add(3).is_err());
        table.remove(3);
        table.add(1000).unwrap();
    }

    #[test]
    fn the_backstop_fires_every_port_once_and_wakes_every_waiter() {
        let mut table = PortTable::new();
        table.add(1).unwrap();
        table.add(4).unwrap();
        let (count_a, a) = waker();
        let (count_b, b) = waker();
        assert_eq!(table.poll_wait(1, &a), Poll::Pending);
        assert_eq!(table.poll_wait(4, &b), Poll::Pending);
        table.fire_all().into_iter().for_each(Waker::wake);
        assert_eq!((count_a.0.load(Ordering::SeqCst), count_b.0.load(Ordering::SeqCst)), (1, 1));
        // Each woken waiter sees one firing, then waits again.
        for (port, w) in [(1, &a), (4, &b)] {
            assert_eq!(table.poll_wait(port, w), Poll::Ready(()));
            assert_eq!(table.poll_wait(port, w), Poll::Pending);
        }
    }

    #[test]
    fn waiting_on_a_removed_port_completes() {
        let mut table = PortTable::new();
        table.add(9).unwrap();
        let (count, w) = waker();
        assert_eq!(table.poll_wait(9, &w), Poll::Pending);
        table.remove(9).into_iter().for_each(Waker::wake);
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert_eq!(table.poll_wait(9, &w), Poll::Ready(()));
    }
}
