//! Device interrupts: binding an interrupt line (a GSI at the I/O APIC) to
//! the tasks waiting for it.
//!
//! A driver claims its device's line with [`InterruptLine::claim`] and,
//! whenever a task must wait for the device, *arms* the line with the
//! task's waker ([`InterruptLine::arm`]) and returns `Pending`. When the
//! line fires, the kernel's handler masks it at the I/O APIC, signals the
//! end of the interrupt, and wakes every waker armed since the last fire.
//! The line stays masked until the next `arm`.
//!
//! # The driver's side of the protocol
//!
//! Lines are level-triggered: a device holds its line up until the driver
//! acknowledges the interrupt at the device (virtio: the ISR register).
//! Masking on fire is what lets the handler know nothing about devices;
//! the driver acknowledges when it next runs. So a driver polls in this
//! order, which loses no event:
//!
//! 1. acknowledge the interrupt at the device (the line drops);
//! 2. collect what the device completed (e.g. the virtqueue's used ring);
//! 3. if what the task waits for is not there: [`InterruptLine::arm`] and
//!    return `Pending`.
//!
//! An event after step 1 raises the line again; it is unmasked at step 3,
//! so the interrupt is delivered (at the latest when the executor next
//! halts, since tasks run with interrupts masked) and the task is woken.
//! Lines may be shared (several PCI functions on one INTx line): every
//! driver on the line is woken and finds nothing new; a device whose driver
//! never acknowledges keeps its line firing while some task waits on it.
//!
//! # Software vectors
//!
//! A platform whose hypervisor injects an interrupt vector of its own
//! (Xen's event channel upcall, `HVM_PARAM_CALLBACK_IRQ` of the vector
//! type) claims a free slot's vector with [`set_software_vector_handler`]:
//! the kernel routes nothing to it and calls the handler on each delivery,
//! with interrupts masked, without any end-of-interrupt write (the
//! hypervisor delivered it without the APIC; a source that needs one is
//! the handler's to acknowledge).
//!
//! # Vectors and bounds
//!
//! Lines get vectors [`FIRST_VECTOR`] to `FIRST_VECTOR + MAX_LINES - 1`.
//! At most [`MAX_LINES`] distinct GSIs and software vectors together can
//! be claimed; claiming a GSI again shares its slot. A line holds one waker per distinct task that
//! armed it since its last fire (tasks are the application's own, so
//! this grows only with what it spawns).
//!
//! The registry ([`LineTable`]) is pure logic, tested on the host; the
//! I/O APIC is touched only in kernel images, where [`init`] finds it.

use alloc::vec::Vec;
use core::fmt;
use core::future::poll_fn;
use core::task::{Poll, Waker};

use crate::arch::ioapic::IoApic;

/// The most distinct interrupt lines the kernel routes.
pub const MAX_LINES: usize = 16;

/// The vector of the first line slot (right after the 8259 PIC's 32–47).
pub const FIRST_VECTOR: u8 = 48;

/// Why a line could not be claimed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InterruptError {
    /// No I/O APIC serves this GSI (none found, or the GSI is beyond its
    /// pins).
    NoIoApic {
        /// The GSI asked for.
        gsi: u32,
    },
    /// [`MAX_LINES`] distinct lines are claimed already.
    TooManyLines {
        /// The GSI asked for.
        gsi: u32,
    },
    /// All [`MAX_LINES`] vector slots are taken: no software vector left.
    NoFreeVector,
}

impl fmt::Display for InterruptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InterruptError::NoIoApic { gsi } => write!(
                f,
                "cannot route interrupt line (GSI) {gsi}: no I/O APIC serves it (the kernel looks at 0xfec00000 \
                 and, for QEMU microvm, 0xfec10000)"
            ),
            InterruptError::TooManyLines { gsi } => {
                write!(f, "cannot route interrupt line (GSI) {gsi}: all {MAX_LINES} line slots are in use")
            }
            InterruptError::NoFreeVector => {
                write!(f, "cannot claim a software interrupt vector: all {MAX_LINES} vector slots are in use")
            }
        }
    }
}

impl core::error::Error for InterruptError {}

/// One claimed line.
#[derive(Debug)]
struct Line {
    gsi: u32,
    claims: usize,
    fires: u64,
    wakers: Vec<Waker>,
}

/// The registry of claimed lines: which GSI each slot holds, how often it
/// fired, and who waits for it. Pure bookkeeping; the caller does the
/// hardware side of each transition (see the method docs).
#[derive(Debug, Default)]
pub struct LineTable {
    slots: [Option<Line>; MAX_LINES],
    /// The handler of each slot claimed as a software vector.
    software: [Option<fn()>; MAX_LINES],
}

impl LineTable {
    /// An empty table.
    pub const fn new() -> LineTable {
        LineTable { slots: [const { None }; MAX_LINES], software: [None; MAX_LINES] }
    }

    /// Claims a free slot for a software vector handled by `handler`;
    /// returns the slot.
    pub fn claim_software(&mut self, handler: fn()) -> Result<usize, InterruptError> {
        let slot = self.free_slot().ok_or(InterruptError::NoFreeVector)?;
        self.software[slot] = Some(handler);
        Ok(slot)
    }

    /// The handler of `slot` if it is a software vector.
    pub fn software_handler(&self, slot: usize) -> Option<fn()> {
        self.software.get(slot).copied().flatten()
    }

    fn free_slot(&self) -> Option<usize> {
        (0..MAX_LINES).find(|&slot| self.slots[slot].is_none() && self.software[slot].is_none())
    }

    /// Claims `gsi`: its slot and whether the slot is new (then the caller
    /// routes the GSI to the slot's vector, masked).
    pub fn claim(&mut self, gsi: u32) -> Result<(usize, bool), InterruptError> {
        if let Some(slot) = self.slot_of(gsi) {
            if let Some(line) = &mut self.slots[slot] {
                line.claims += 1;
            }
            return Ok((slot, false));
        }
        let slot = self.free_slot().ok_or(InterruptError::TooManyLines { gsi })?;
        self.slots[slot] = Some(Line { gsi, claims: 1, fires: 0, wakers: Vec::new() });
        Ok((slot, true))
    }

    /// Gives up one claim of `slot`; returns the GSI if it was the last
    /// (then the caller masks it).
    pub fn release(&mut self, slot: usize) -> Option<u32> {
        let line = self.slots.get_mut(slot)?.as_mut()?;
        line.claims -= 1;
        if line.claims > 0 {
            return None;
        }
        self.slots[slot].take().map(|line| line.gsi)
    }

    fn slot_of(&self, gsi: u32) -> Option<usize> {
        self.slots.iter().position(|line| line.as_ref().is_some_and(|line| line.gsi == gsi))
    }

    /// Adds `waker` to `slot`'s waiters (once per task); returns the GSI to
    /// unmask.
    pub fn arm(&mut self, slot: usize, waker: &Waker) -> Option<u32> {
        let line = self.slots.get_mut(slot)?.as_mut()?;
        if !line.wakers.iter().any(|w| w.will_wake(waker)) {
            line.wakers.push(waker.clone());
        }
        Some(line.gsi)
    }

    /// Records a fire of `slot` (the caller has masked it) and returns the
    /// wakers to wake. A fire of an unclaimed slot returns nothing.
    pub fn fire(&mut self, slot: usize) -> Vec<Waker> {
        match self.slots.get_mut(slot).and_then(Option::as_mut) {
            Some(line) => {
                line.fires = line.fires.wrapping_add(1);
                core::mem::take(&mut line.wakers)
            }
            None => Vec::new(),
        }
    }

    /// How often `slot` has fired.
    pub fn fires(&self, slot: usize) -> u64 {
        self.slots.get(slot).and_then(Option::as_ref).map_or(0, |line| line.fires)
    }
}

/// The registry shared by tasks and the handler. Tasks run with interrupts
/// masked (the executor enables them only to halt), so the handler never
/// finds the lock taken on the one CPU.
static LINES: spin::Mutex<LineTable> = spin::Mutex::new(LineTable::new());

/// The I/O APICs [`init`] found and the local APIC id to deliver to.
static IOAPICS: spin::Once<(Vec<IoApic>, u8)> = spin::Once::new();

/// Finds the I/O APICs (see [`crate::arch::ioapic`]). Called once at boot,
/// before interrupts are enabled; until then every claim fails with
/// [`InterruptError::NoIoApic`].
pub fn init() {
    IOAPICS.call_once(|| {
        let mut found = Vec::new();
        let candidates = [(crate::arch::ioapic::FIRST_IOAPIC, 0), (crate::arch::ioapic::MICROVM_SECOND_IOAPIC, 24)];
        for (base, gsi_base) in candidates {
            // SAFETY: both addresses lie in the uncached device GiB the boot
            // page tables map, where PC-compatible VMMs place I/O APICs and
            // nothing that accesses memory; writes to an unassigned address
            // are ignored by the VMM.
            if let Some(apic) = unsafe { IoApic::probe(base, gsi_base) } {
                found.push(apic);
            }
        }
        (found, crate::arch::lapic::id().unwrap_or(0))
    });
}

/// Whether an I/O APIC [`init`] found serves `gsi`, i.e. whether
/// [`InterruptLine::claim`] can route it. Lets a platform tell machine
/// layouts apart (QEMU microvm wires virtio-mmio to GSIs 24–47 when it has
/// a second I/O APIC, to 16–23 otherwise).
pub fn is_routable(gsi: u32) -> bool {
    ioapic_for(gsi).is_some()
}

fn ioapic_for(gsi: u32) -> Option<(IoApic, u8)> {
    let (apics, apic_id) = IOAPICS.get()?;
    apics.iter().find(|apic| apic.serves(gsi)).map(|apic| (*apic, *apic_id))
}

/// A claimed interrupt line; see the [module documentation](self) for how
/// a driver waits on it. Dropping the last claim of a GSI masks it.
#[derive(Debug)]
pub struct InterruptLine {
    slot: usize,
    gsi: u32,
}

impl InterruptLine {
    /// Claims `gsi` and routes it (level-triggered, active-high, masked
    /// until armed) to its vector. Claiming a GSI twice shares the line.
    ///
    /// Errors: no I/O APIC serves `gsi`, or [`MAX_LINES`] lines are taken.
    pub fn claim(gsi: u32) -> Result<InterruptLine, InterruptError> {
        let (apic, apic_id) = ioapic_for(gsi).ok_or(InterruptError::NoIoApic { gsi })?;
        let (slot, new) = LINES.lock().claim(gsi)?;
        if new {
            apic.route(gsi, FIRST_VECTOR + slot as u8, apic_id);
        }
        Ok(InterruptLine { slot, gsi })
    }

    /// The GSI of this line.
    pub fn gsi(&self) -> u32 {
        self.gsi
    }

    /// How often the line has fired since it was first claimed.
    pub fn fires(&self) -> u64 {
        LINES.lock().fires(self.slot)
    }

    /// Wakes `waker` at the line's next fire and unmasks the line. Call it
    /// after acknowledging the device and finding nothing to do.
    pub fn arm(&self, waker: &Waker) {
        let gsi = LINES.lock().arm(self.slot, waker);
        if let Some((apic, _)) = gsi.and_then(ioapic_for) {
            apic.set_masked(self.gsi, false);
        }
    }

    /// Completes at the line's next fire after the first poll. For drivers
    /// that only wait; most arm from their own `poll` instead.
    pub async fn next_fire(&self) {
        let mut start = None;
        poll_fn(|cx| {
            let fires = self.fires();
            match start {
                Some(seen) if fires != seen => return Poll::Ready(()),
                None => start = Some(fires),
                _ => {}
            }
            self.arm(cx.waker());
            Poll::Pending
        })
        .await
    }
}

impl Drop for InterruptLine {
    fn drop(&mut self) {
        if let Some(gsi) = LINES.lock().release(self.slot) {
            if let Some((apic, _)) = ioapic_for(gsi) {
                apic.set_masked(gsi, true);
            }
        }
    }
}

/// Claims a vector for an interrupt that something other than the I/O
/// APIC raises (a hypervisor's upcall) and returns it: a vector from
/// [`FIRST_VECTOR`] on, with its own interrupt stub. At each delivery the
/// kernel calls `handler` on the interrupt stack with interrupts masked and
/// writes no end-of-interrupt (see the [module documentation](self)). The
/// claim lasts for the rest of the run.
///
/// Since tasks run with interrupts masked (the executor enables them only
/// to halt), the handler never interrupts a task: it may take locks that
/// tasks take, as long as they are not held across a halt.
///
/// Errors: [`InterruptError::NoFreeVector`] when all slots are claimed.
pub fn set_software_vector_handler(handler: fn()) -> Result<u8, InterruptError> {
    let slot = LINES.lock().claim_software(handler)?;
    Ok(FIRST_VECTOR + slot as u8)
}

/// Called by the interrupt entry for vectors from [`FIRST_VECTOR`]: calls
/// a software vector's handler; for a line, masks it, wakes its waiters,
/// and ends the interrupt at the local APIC.
pub fn on_vector(vector: u8) {
    let slot = usize::from(vector.wrapping_sub(FIRST_VECTOR));
    // The lock is released before the handler runs, so it may claim lines.
    let software = LINES.lock().software_handler(slot);
    if let Some(handler) = software {
        handler();
        return;
    }
    let wakers = {
        let mut lines = LINES.lock();
        if let Some((apic, _)) = lines.slots.get(slot).and_then(Option::as_ref).and_then(|line| ioapic_for(line.gsi)) {
            if let Some(line) = &lines.slots[slot] {
                apic.set_masked(line.gsi, true);
                apic.end_of_interrupt(vector);
            }
        }
        lines.fire(slot)
    };
    crate::arch::lapic::end_of_interrupt();
    for waker in wakers {
        waker.wake();
    }
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
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn counting() -> (Arc<CountingWaker>, Waker) {
        let count = Arc::new(CountingWaker(AtomicUsize::new(0)));
        (count.clone(), Waker::from(count))
    }

    #[test]
    fn claims_share_a_slot_and_the_last_release_frees_it() {
        let mut table = LineTable::new();
        assert_eq!(table.claim(24), Ok((0, true)));
        assert_eq!(table.claim(25), Ok((1, true)));
        assert_eq!(table.claim(24), Ok((0, false)));
        assert_eq!(table.release(0), None);
        assert_eq!(table.release(0), Some(24));
        // The freed slot is reused.
        assert_eq!(table.claim(30), Ok((0, true)));
    }

    #[test]
    fn slots_are_bounded() {
        let mut table = LineTable::new();
        for gsi in 0..MAX_LINES as u32 {
            assert!(table.claim(gsi).is_ok());
        }
        assert_eq!(table.claim(99), Err(InterruptError::TooManyLines { gsi: 99 }));
        assert!(InterruptError::TooManyLines { gsi: 99 }.to_string().contains("GSI) 99"));
    }

    #[test]
    fn a_fire_wakes_each_armed_task_once_and_only_once() {
        let mut table = LineTable::new();
        let (slot, _) = table.claim(24).unwrap();
        let (a_count, a) = counting();
        let (b_count, b) = counting();
        assert_eq!(table.arm(slot, &a), Some(24));
        assert_eq!(table.arm(slot, &a), Some(24));
        table.arm(slot, &b);
        for waker in table.fire(slot) {
            waker.wake();
        }
        assert_eq!(a_count.0.load(Ordering::Relaxed), 1);
        assert_eq!(b_count.0.load(Ordering::Relaxed), 1);
        assert_eq!(table.fires(slot), 1);
        // Not armed again: the next fire wakes nobody.
        assert!(table.fire(slot).is_empty());
        assert_eq!(table.fires(slot), 2);
    }

    #[test]
    fn unclaimed_slots_ignore_fires_and_arms() {
        let mut table = LineTable::new();
        let (_, waker) = counting();
        assert!(table.fire(3).is_empty());
        assert_eq!(table.arm(3, &waker), None);
        assert_eq!(table.arm(MAX_LINES + 5, &waker), None);
        assert_eq!(table.release(MAX_LINES + 5), None);
    }

    static CALLS: AtomicUsize = AtomicUsize::new(0);

    fn nothing() {
        CALLS.fetch_add(1, Ordering::Relaxed);
    }

    #[test]
    fn software_vectors_take_free_slots_that_lines_then_skip() {
        let mut table = LineTable::new();
        assert_eq!(table.claim(24), Ok((0, true)));
        assert_eq!(table.claim_software(nothing), Ok(1));
        let before = CALLS.load(Ordering::Relaxed);
        table.software_handler(1).expect("slot 1 has the handler")();
        assert!(CALLS.load(Ordering::Relaxed) > before);
        assert!(table.software_handler(0).is_none());
        assert!(table.software_handler(MAX_LINES + 1).is_none());
        // The next line skips the software slot.
        assert_eq!(table.claim(25), Ok((2, true)));
        // Releasing a line frees its slot for a software vector too.
        assert_eq!(table.release(0), Some(24));
        assert_eq!(table.claim_software(nothing), Ok(0));
        // A fire of a software slot wakes nothing (the handler is called instead).
        assert!(table.fire(1).is_empty());
    }

    #[test]
    fn software_vectors_and_lines_share_the_bound() {
        let mut table = LineTable::new();
        for slot in 0..MAX_LINES / 2 {
            assert_eq!(table.claim_software(nothing), Ok(slot));
        }
        for gsi in 0..(MAX_LINES / 2) as u32 {
            assert!(table.claim(gsi).is_ok());
        }
        assert_eq!(table.claim_software(nothing), Err(InterruptError::NoFreeVector));
        assert_eq!(table.claim(99), Err(InterruptError::TooManyLines { gsi: 99 }));
        assert!(InterruptError::NoFreeVector.to_string().contains("software interrupt vector"));
    }

    #[test]
    fn claims_fail_without_an_ioapic() {
        // Host tests never run `init`.
        assert_eq!(InterruptLine::claim(24).unwrap_err(), InterruptError::NoIoApic { gsi: 24 });
    }
}
