//! A report of the hypervisor interfaces this domain reaches, checked by
//! using each once: the version, an event channel looped back to
//! ourselves and notified, the grant table's first frame mapped, and the
//! HVM parameters naming the console and xenstore rings.

use core::fmt;

use crate::abi::{
    DOMID_SELF, HVM_PARAM_CONSOLE_EVTCHN, HVM_PARAM_CONSOLE_PFN, HVM_PARAM_STORE_EVTCHN, HVM_PARAM_STORE_PFN,
    PAGE_SIZE, XENMAPSPACE_GRANT_TABLE,
};
use crate::hypercall::{leak_page, XenError};
use crate::hypervisor::*;
use crate::shared_info;

/// What [`probe`] found.
#[derive(Clone, Debug)]
pub struct Probe {
    /// Xen's `(major, minor)` version.
    pub version: (u16, u16),
    /// The two ports of the loopback channel: `(unbound end, bound end)`.
    pub loopback: (u32, u32),
    /// Grant table frames `(in use, allowed)`.
    pub grant_frames: (u32, u32),
    /// Where grant table frame 0 is mapped.
    pub grant_table: u64,
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
        write!(
            f,
            "Xen {major}.{minor}; event channel: port {b} bound to port {a} of our own domain, notified and \
             delivered; grant table: {used} of {max} frames, frame 0 mapped at {:#x}; console ring pfn {cpfn:#x} \
             port {cport}, xenstore ring pfn {spfn:#x} port {sport}",
            self.grant_table
        )
    }
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
/// Leaks one page (the grant table frame stays mapped for later drivers).
pub fn probe() -> Result<Probe, ProbeError> {
    let step = |step: &'static str| move |error| ProbeError { step, error };
    let version = xen_version().map_err(step("version"))?;
    let loopback = loopback_event().map_err(step("event channel loopback"))?;
    let grant_frames = gnttab_query_size().map_err(step("grant table size"))?;
    let grant_table = leak_page("grant table").map_err(step("grant table frame"))?;
    add_to_physmap(XENMAPSPACE_GRANT_TABLE, 0, grant_table / PAGE_SIZE as u64).map_err(step("grant table frame"))?;
    let mut rings = [0; 4];
    for (value, param) in rings.iter_mut().zip([
        HVM_PARAM_CONSOLE_PFN,
        HVM_PARAM_CONSOLE_EVTCHN,
        HVM_PARAM_STORE_PFN,
        HVM_PARAM_STORE_EVTCHN,
    ]) {
        *value = hvm_get_param(param).map_err(step("HVM parameters"))?;
    }
    Ok(Probe { version, loopback, grant_frames, grant_table, rings })
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
