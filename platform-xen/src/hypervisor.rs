//! Typed hypercalls: each wrapper builds the argument structure Xen's
//! header defines ([`crate::abi`]) and returns Xen's answer or a
//! [`XenError`] naming the operation. All need [`crate::hypercall::init`]
//! first and fail with [`XenError::NotInitialised`] otherwise.

use crate::abi::*;
use crate::hypercall::{call_checked, XenError};

/// Why the domain shuts down (`SHUTDOWN_*` in `sched.h`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownReason {
    /// `SHUTDOWN_poweroff`: the domain finished.
    PowerOff = 0,
    /// `SHUTDOWN_reboot`.
    Reboot = 1,
    /// `SHUTDOWN_crash`: the domain failed (the toolstack's `on_crash`).
    Crash = 3,
}

/// The Xen version as `(major, minor)`.
pub fn xen_version() -> Result<(u16, u16), XenError> {
    // SAFETY: XENVER_version takes no argument buffer.
    let v = unsafe { call_checked("XENVER_version", HYPERCALL_XEN_VERSION, [XENVER_VERSION, 0, 0, 0, 0]) }?;
    Ok(((v >> 16) as u16, v as u16))
}

/// Writes `bytes` to Xen's console (`CONSOLEIO_write`). Only the hardware
/// domain (dom0) may, unless Xen was built with a debug console for
/// guests: a domU gets `EPERM`. `Ok` means Xen took all bytes.
pub fn console_write(bytes: &[u8]) -> Result<(), XenError> {
    let mut rest = bytes;
    // Xen writes at most what it accepts per call and returns 0 on success;
    // chunks keep each call short so other vCPUs' output interleaves by line.
    while !rest.is_empty() {
        let chunk = &rest[..rest.len().min(1024)];
        // SAFETY: the buffer is live and `chunk.len()` bytes long; Xen only reads it.
        unsafe {
            call_checked(
                "CONSOLEIO_write",
                HYPERCALL_CONSOLE_IO,
                [CONSOLEIO_WRITE, chunk.len() as u64, chunk.as_ptr() as u64, 0, 0],
            )
        }?;
        rest = &rest[chunk.len()..];
    }
    Ok(())
}

/// Shuts the domain down with `reason`. Returns only if Xen refuses.
pub fn shutdown(reason: ShutdownReason) -> XenError {
    let arg = SchedShutdown { reason: reason as u32 };
    // SAFETY: `arg` is a live `sched_shutdown`.
    match unsafe {
        call_checked("SCHEDOP_shutdown", HYPERCALL_SCHED_OP, [SCHEDOP_SHUTDOWN, &arg as *const _ as u64, 0, 0, 0])
    } {
        Ok(_) => XenError::Unexpected("SCHEDOP_shutdown returned"),
        Err(e) => e,
    }
}

/// Blocks the vCPU until one of `ports` is pending (any event if `ports`
/// is empty) or Xen system time reaches `timeout` ns (never if 0).
/// Returns at once if a port is pending already. At most
/// [`SCHEDOP_POLL_MAX_PORTS`] ports.
pub fn poll(ports: &[u32], timeout: u64) -> Result<(), XenError> {
    if ports.len() > SCHEDOP_POLL_MAX_PORTS {
        return Err(XenError::Hypercall { op: "SCHEDOP_poll with more than 128 ports", errno: -22 });
    }
    let arg = SchedPoll { ports: ports.as_ptr() as u64, nr_ports: ports.len() as u32, timeout };
    // SAFETY: `arg` is a live `sched_poll` whose port array is `ports`.
    unsafe { call_checked("SCHEDOP_poll", HYPERCALL_SCHED_OP, [SCHEDOP_POLL, &arg as *const _ as u64, 0, 0, 0]) }
        .map(|_| ())
}

/// Maps page `idx` of `space` (`XENMAPSPACE_*`) at guest frame `gpfn`
/// (`XENMEM_add_to_physmap`). The frame's previous page leaves the guest.
pub fn add_to_physmap(space: u32, idx: u64, gpfn: u64) -> Result<(), XenError> {
    let arg = AddToPhysmap { domid: DOMID_SELF, size: 0, space, idx, gpfn };
    // SAFETY: `arg` is a live `xen_add_to_physmap`.
    unsafe {
        call_checked(
            "XENMEM_add_to_physmap",
            HYPERCALL_MEMORY_OP,
            [XENMEM_ADD_TO_PHYSMAP, &arg as *const _ as u64, 0, 0, 0],
        )
    }
    .map(|_| ())
}

/// Reads HVM parameter `index` of this domain (`HVMOP_get_param`), e.g.
/// [`HVM_PARAM_CONSOLE_PFN`].
pub fn hvm_get_param(index: u32) -> Result<u64, XenError> {
    let mut arg = HvmParam { domid: DOMID_SELF, index, value: 0 };
    // SAFETY: `arg` is a live, writable `xen_hvm_param`.
    unsafe {
        call_checked("HVMOP_get_param", HYPERCALL_HVM_OP, [HVMOP_GET_PARAM, &mut arg as *mut _ as u64, 0, 0, 0])
    }?;
    Ok(arg.value)
}

/// Makes event channel operation `cmd` on `arg` (the structure that
/// `cmd` takes).
fn event_channel_op<T>(op: &'static str, cmd: u64, arg: &mut T) -> Result<(), XenError> {
    // SAFETY: every caller pairs `cmd` with the structure Xen expects for it.
    unsafe { call_checked(op, HYPERCALL_EVENT_CHANNEL_OP, [cmd, arg as *mut T as u64, 0, 0, 0]) }.map(|_| ())
}

/// Allocates an unbound port that `remote_dom` may bind to
/// (`EVTCHNOP_alloc_unbound`); returns the port.
pub fn evtchn_alloc_unbound(remote_dom: u16) -> Result<u32, XenError> {
    let mut arg = EvtchnAllocUnbound { dom: DOMID_SELF, remote_dom, port: 0 };
    event_channel_op("EVTCHNOP_alloc_unbound", EVTCHNOP_ALLOC_UNBOUND, &mut arg)?;
    Ok(arg.port)
}

/// Binds a local port to `remote_port` of `remote_dom`
/// (`EVTCHNOP_bind_interdomain`); returns the local port.
pub fn evtchn_bind_interdomain(remote_dom: u16, remote_port: u32) -> Result<u32, XenError> {
    let mut arg = EvtchnBindInterdomain { remote_dom, remote_port, local_port: 0 };
    event_channel_op("EVTCHNOP_bind_interdomain", EVTCHNOP_BIND_INTERDOMAIN, &mut arg)?;
    Ok(arg.local_port)
}

/// Binds virtual interrupt `virq` of vCPU 0 to a new port
/// (`EVTCHNOP_bind_virq`); returns the port.
pub fn evtchn_bind_virq(virq: u32) -> Result<u32, XenError> {
    let mut arg = EvtchnBindVirq { virq, vcpu: 0, port: 0 };
    event_channel_op("EVTCHNOP_bind_virq", EVTCHNOP_BIND_VIRQ, &mut arg)?;
    Ok(arg.port)
}

/// Notifies the other end of `port` (`EVTCHNOP_send`).
pub fn evtchn_send(port: u32) -> Result<(), XenError> {
    event_channel_op("EVTCHNOP_send", EVTCHNOP_SEND, &mut EvtchnPort { port })
}

/// Closes `port` (`EVTCHNOP_close`).
pub fn evtchn_close(port: u32) -> Result<(), XenError> {
    event_channel_op("EVTCHNOP_close", EVTCHNOP_CLOSE, &mut EvtchnPort { port })
}

/// The grant table's size: `(frames in use, most frames allowed)`
/// (`GNTTABOP_query_size`).
pub fn gnttab_query_size() -> Result<(u32, u32), XenError> {
    let mut arg = GnttabQuerySize { dom: DOMID_SELF, ..GnttabQuerySize::default() };
    // SAFETY: `arg` is one live, writable `gnttab_query_size` (count 1).
    unsafe {
        call_checked(
            "GNTTABOP_query_size",
            HYPERCALL_GRANT_TABLE_OP,
            [GNTTABOP_QUERY_SIZE, &mut arg as *mut _ as u64, 1, 0, 0],
        )
    }?;
    if arg.status != 0 {
        return Err(XenError::Hypercall { op: "GNTTABOP_query_size status", errno: i64::from(arg.status) });
    }
    Ok((arg.nr_frames, arg.max_nr_frames))
}

/// Sets HVM parameter `index` of this domain to `value`
/// (`HVMOP_set_param`), e.g. [`HVM_PARAM_CALLBACK_IRQ`].
pub fn hvm_set_param(index: u32, value: u64) -> Result<(), XenError> {
    let mut arg = HvmParam { domid: DOMID_SELF, index, value };
    // SAFETY: `arg` is a live `xen_hvm_param`.
    unsafe { call_checked("HVMOP_set_param", HYPERCALL_HVM_OP, [HVMOP_SET_PARAM, &mut arg as *mut _ as u64, 0, 0, 0]) }
        .map(|_| ())
}

/// Unmasks `port` (`EVTCHNOP_unmask`); Xen raises the upcall again if the
/// port is pending.
pub fn evtchn_unmask(port: u32) -> Result<(), XenError> {
    event_channel_op("EVTCHNOP_unmask", EVTCHNOP_UNMASK, &mut EvtchnPort { port })
}

/// Arms vCPU 0's one-shot timer (`VCPUOP_set_singleshot_timer`): Xen
/// raises `VIRQ_TIMER` once its system time reaches `deadline` ns (at
/// once if it has). Replaces a timer armed before.
pub fn set_singleshot_timer(deadline: u64) -> Result<(), XenError> {
    let arg = VcpuSetSingleshotTimer { timeout_abs_ns: deadline, flags: 0 };
    // SAFETY: `arg` is a live `vcpu_set_singleshot_timer`; vCPU 0 is ours.
    unsafe {
        call_checked(
            "VCPUOP_set_singleshot_timer",
            HYPERCALL_VCPU_OP,
            [VCPUOP_SET_SINGLESHOT_TIMER, 0, &arg as *const _ as u64, 0, 0],
        )
    }
    .map(|_| ())
}

/// Copies `len` bytes from offset `offset` of the page granted by
/// `granter` under `reference` to the same offset of our frame `dest`
/// (`GNTTABOP_copy`): Xen checks the grant exactly as for another domain.
pub fn gnttab_copy_from_grant(granter: u16, reference: u32, dest: u64, offset: u16, len: u16) -> Result<(), XenError> {
    let mut arg = GnttabCopy {
        source: GnttabCopyPtr { reference_or_frame: u64::from(reference), domid: granter, offset },
        dest: GnttabCopyPtr { reference_or_frame: dest, domid: DOMID_SELF, offset },
        len,
        flags: GNTCOPY_SOURCE_GREF,
        status: 0,
    };
    // SAFETY: `arg` is one live, writable `gnttab_copy` (count 1).
    unsafe {
        call_checked("GNTTABOP_copy", HYPERCALL_GRANT_TABLE_OP, [GNTTABOP_COPY, &mut arg as *mut _ as u64, 1, 0, 0])
    }?;
    if arg.status != 0 {
        return Err(XenError::Hypercall {
            op: "GNTTABOP_copy (GNTST_* status, not an errno)",
            errno: i64::from(arg.status),
        });
    }
    Ok(())
}
