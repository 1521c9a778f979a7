//! A report of the hypervisor interfaces this domain reaches, checked by
//! using each once: the version, an event channel looped back to
//! ourselves and notified (delivered through the upcall when [`crate::run`]
//! set it up), a page granted through the grant table (the
//! entry read back, copied through by Xen in dom0, ended), and the HVM
//! parameters naming the console and xenstore rings.

use core::fmt;
use core::future::Future;
use core::pin::pin;
use core::task::{Context, Waker};

use crate::abi::{
    GrantEntryV1, DOMID_SELF, GTF_PERMIT_ACCESS, GTF_READONLY, HVM_PARAM_CONSOLE_EVTCHN, HVM_PARAM_CONSOLE_PFN,
    HVM_PARAM_STORE_EVTCHN, HVM_PARAM_STORE_PFN,
};
use crate::console::console_io_allowed;
use crate::event::{self, EventChannel};
use crate::grant::{self, Grant, GrantRef};
use crate::hypercall::XenError;
use crate::hypervisor::*;
use crate::page::SharedPage;
use crate::shared_info;

/// What [`probe`] found.
#[derive(Clone, Debug)]
pub struct Probe {
    /// Xen's `(major, minor)` version.
    pub version: (u16, u16),
    /// The two ports of the loopback channel: `(unbound end, bound end)`.
    pub loopback: (u32, u32),
    /// The upcall vector that delivered the loopback's event, or `None`
    /// if it was seen by `SCHEDOP_poll` (no upcall set up).
    pub upcall: Option<u8>,
    /// Grant table frames `(mapped by us, allowed by Xen)`.
    pub grant_frames: (usize, u32),
    /// What the grant check did.
    pub grant: GrantCheck,
    /// HVM parameters: console page frame and port, xenstore page frame
    /// and port (0 where the domain has none, as dom0 booted without a
    /// toolstack).
    pub rings: [u64; 4],
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (major, minor) = self.version;
        let (a, b) = self.loopback;
        let (used, max) = self.grant_frames;
        let [cpfn, cport, spfn, sport] = self.rings;
        let GrantCheck { reference, copied } = self.grant;
        write!(
            f,
            "Xen {major}.{minor}; event channel: port {b} bound to port {a} of our own domain, notified and delivered"
        )?;
        match self.upcall {
            Some(vector) => write!(f, " through the upcall (vector {vector})")?,
            None => write!(f, " to SCHEDOP_poll (no upcall)")?,
        }
        write!(f, "; grant table: {used} of {max} frames mapped, ref {reference} granted, entry read back, ")?;
        if copied {
            write!(f, "copied through by GNTTABOP_copy, ")?;
        }
        write!(
            f,
            "ended, none in use; console ring pfn {cpfn:#x} port {cport}, xenstore ring pfn {spfn:#x} port {sport}"
        )
    }
}

/// What the grant step of [`probe`] did.
#[derive(Clone, Copy, Debug)]
pub struct GrantCheck {
    /// The reference the page was granted under.
    pub reference: GrantRef,
    /// Whether Xen copied the page through the grant (`GNTTABOP_copy`
    /// with ourselves as grantee: only in dom0, whose domain id, 0, we
    /// know without xenstore; a grant entry cannot name `DOMID_SELF`).
    pub copied: bool,
}

/// Why a step of [`probe`] failed.
#[derive(Clone, Debug)]
pub struct ProbeError {
    /// The step, e.g. `"event channel loopback"`.
    pub step: &'static str,
    /// What Xen said.
    pub error: XenError,
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Xen probe, {}: {}", self.step, self.error)
    }
}

/// Exercises each interface once (see the module documentation). Needs
/// the hypercall page and the shared info page ([`crate::run`] sets both
/// up). `Ok` means every step worked; the first failure is the error.
/// Sets up the grant table (see [`crate::grant`]) if nothing did yet.
pub fn probe() -> Result<Probe, ProbeError> {
    let step = |step: &'static str| move |error| ProbeError { step, error };
    let version = xen_version().map_err(step("version"))?;
    let upcall = event::upcall_vector();
    let loopback = match upcall {
        Some(_) => loopback_upcall(),
        None => loopback_event(),
    }
    .map_err(step("event channel loopback"))?;
    let grant = grant_page().map_err(step("grant table"))?;
    let grant_frames = (grant::frames(), gnttab_query_size().map_err(step("grant table size"))?.1);
    let mut rings = [0; 4];
    for (value, param) in rings.iter_mut().zip([
        HVM_PARAM_CONSOLE_PFN,
        HVM_PARAM_CONSOLE_EVTCHN,
        HVM_PARAM_STORE_PFN,
        HVM_PARAM_STORE_EVTCHN,
    ]) {
        *value = hvm_get_param(param).map_err(step("HVM parameters"))?;
    }
    Ok(Probe { version, loopback, upcall, grant_frames, grant, rings })
}

/// Grants a page read-only, checks the entry Xen reads, has Xen copy
/// through it in dom0, ends it, and checks the count of entries in use
/// went back to where it was.
fn grant_page() -> Result<GrantCheck, XenError> {
    let before = grant::in_use();
    let page = SharedPage::alloc()?;
    let pattern = b"mirage-rs grant check";
    page.write_bytes(64, pattern);
    // dom0's id is 0; a domU's is unknown here, so it grants to dom0, which
    // is also who its backends are.
    let dom0 = console_io_allowed();
    let grantee = 0;
    let grant = Grant::access(grantee, page.frame(), true)?;
    let expected = GrantEntryV1 {
        flags: GTF_PERMIT_ACCESS | GTF_READONLY,
        domid: grantee,
        frame: u32::try_from(page.frame()).unwrap_or(0),
    };
    if grant.entry() != Some(expected) || grant.frame() != page.frame() {
        return Err(XenError::Unexpected("the grant entry does not hold what was granted"));
    }
    if grant::in_use() != before + 1 {
        return Err(XenError::Unexpected("a grant is not counted in use"));
    }
    let copied = if dom0 {
        let target = SharedPage::alloc()?;
        gnttab_copy_from_grant(DOMID_SELF, grant.reference(), target.frame(), 64, pattern.len() as u16)?;
        let mut out = [0u8; 21];
        target.read_bytes(64, &mut out);
        if &out != pattern {
            return Err(XenError::Unexpected("GNTTABOP_copy through our grant copied other bytes"));
        }
        true
    } else {
        false
    };
    let reference = grant.reference();
    drop(grant);
    if grant::in_use() != before {
        return Err(XenError::Unexpected("an ended grant is still counted in use"));
    }
    Ok(GrantCheck { reference, copied })
}

/// How many 10 ms halts the upcall loopback waits for its event.
const LOOPBACK_HALTS: u32 = 100;

/// Binds a port to an unbound port of our own domain as
/// [`EventChannel`]s, notifies through it, and halts until the upcall's
/// handler dispatched the event to the unbound end's waiter: only the
/// handler dispatches while this runs (tasks run with interrupts masked,
/// so the upcall is taken in the halt). Both ports close when dropped.
fn loopback_upcall() -> Result<(u32, u32), XenError> {
    let unbound = EventChannel::alloc_unbound(DOMID_SELF)?;
    let bound = EventChannel::bind_interdomain(DOMID_SELF, unbound.port())?;
    let mut wait = pin!(unbound.wait());
    let mut cx = Context::from_waker(Waker::noop());
    if wait.as_mut().poll(&mut cx).is_ready() {
        return Err(XenError::Unexpected("the fresh loopback port fired already"));
    }
    let upcalls = event::upcalls();
    bound.notify()?;
    for _ in 0..LOOPBACK_HALTS {
        let deadline = shared_info::now().ok_or(XenError::NotInitialised)?.saturating_add(10_000_000);
        event::halt(deadline)?;
        if wait.as_mut().poll(&mut cx).is_ready() {
            if event::upcalls() == upcalls || shared_info::is_pending(unbound.port()) != Some(false) {
                return Err(XenError::Unexpected("the loopback port fired without an upcall, or stayed pending"));
            }
            return Ok((unbound.port(), bound.port()));
        }
    }
    Err(XenError::Unexpected("the loopback event raised no upcall within 1 s"))
}

/// Binds a port to an unbound port of our own domain, notifies through it
/// and checks the other end became pending and that `SCHEDOP_poll` on it
/// returns; closes both.
fn loopback_event() -> Result<(u32, u32), XenError> {
    let unbound = evtchn_alloc_unbound(DOMID_SELF)?;
    let bound = evtchn_bind_interdomain(DOMID_SELF, unbound)?;
    let delivered = (|| {
        if shared_info::is_pending(unbound) == Some(true) {
            return Err(XenError::Unexpected("the fresh loopback port is pending already"));
        }
        evtchn_send(bound)?;
        // A pending port makes the poll return at once; without the event
        // it would block until the timeout, 0 meaning never, so a lost
        // notification hangs here and the harness's timeout reports it.
        poll(&[unbound], 0)?;
        if shared_info::is_pending(unbound) != Some(true) {
            return Err(XenError::Unexpected("EVTCHNOP_send left the loopback port idle"));
        }
        shared_info::clear_pending(unbound);
        Ok(())
    })();
    let closed = evtchn_close(bound).and_then(|()| evtchn_close(unbound));
    delivered.and(closed).map(|()| (unbound, bound))
}
