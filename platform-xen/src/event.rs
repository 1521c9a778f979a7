//! Event channels as futures: a bound port ([`EventChannel`]) that tasks
//! notify and wait on, and the dispatch that turns Xen's pending bits into
//! task wake-ups.
//!
//! Every bound port has an entry in one table: whether the port fired since
//! its owner last waited, and the wakers of the tasks waiting. [`dispatch`]
//! scans the shared info page's pending bitmap for the table's ports,
//! clears each pending bit, marks the entry fired and wakes its waiters.
//! The idle loop ([`crate::XenIdle`]) calls it before it blocks and after
//! every wake-up, so an event is never lost between the check and the
//! block: `SCHEDOP_poll` on the table's ports returns at once when one of
//! them is already pending.
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
use core::task::{Poll, Waker};

use crate::hypercall::XenError;
use crate::hypervisor::{evtchn_alloc_unbound, evtchn_bind_interdomain, evtchn_bind_virq, evtchn_close, evtchn_send};
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

    fn ports(&self) -> impl Iterator<Item = u32> + '_ {
        self.entries.iter().map(|e| e.port)
    }
}

/// The bound ports. Tasks and the idle loop run on the one vCPU with no
/// upcall handler touching it, so the lock is never contended.
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
    let mut woken = Vec::new();
    let mut fired = 0;
    {
        let mut table = PORTS.lock();
        let pending: Vec<u32> = table.ports().filter(|&p| shared_info::is_pending(p) == Some(true)).collect();
        for port in pending {
            shared_info::clear_pending(port);
            woken.extend(table.fire(port));
            fired += 1;
        }
    }
    // Outside the lock: a waker may poll nothing, but keep it simple.
    woken.into_iter().for_each(Waker::wake);
    fired
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
