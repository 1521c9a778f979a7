//! The parts of Xen's public ABI this crate uses: hypercall numbers,
//! sub-commands and argument structures, laid out as
//! `xen/include/public/*.h` defines them for x86_64 (`xen.h`, `sched.h`,
//! `memory.h`, `hvm/hvm_op.h`, `hvm/params.h`, `event_channel.h`,
//! `grant_table.h`, `vcpu.h`). Pure data; the layout tests below pin every
//! field offset the hypervisor reads or writes.
//!
//! The structures in memory shared with another domain (grant entries,
//! the console page, ring entries) derive zerocopy's traits: `FromBytes`
//! says any bytes the other end writes are a valid value, and `IntoBytes`
//! proves at compile time that the structure has no implicit padding, so
//! its explicit `pad` fields are the header's.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `__HYPERVISOR_memory_op`.
pub const HYPERCALL_MEMORY_OP: usize = 12;
/// `__HYPERVISOR_xen_version`.
pub const HYPERCALL_XEN_VERSION: usize = 17;
/// `__HYPERVISOR_console_io`.
pub const HYPERCALL_CONSOLE_IO: usize = 18;
/// `__HYPERVISOR_grant_table_op`.
pub const HYPERCALL_GRANT_TABLE_OP: usize = 20;
/// `__HYPERVISOR_vcpu_op`.
pub const HYPERCALL_VCPU_OP: usize = 24;
/// `__HYPERVISOR_sched_op`.
pub const HYPERCALL_SCHED_OP: usize = 29;
/// `__HYPERVISOR_event_channel_op`.
pub const HYPERCALL_EVENT_CHANNEL_OP: usize = 32;
/// `__HYPERVISOR_hvm_op`.
pub const HYPERCALL_HVM_OP: usize = 34;

/// The bytes of one hypercall's stub in the hypercall page.
pub const HYPERCALL_STUB_LEN: usize = 32;
/// The size of a Xen page (x86).
pub const PAGE_SIZE: usize = 4096;

/// `DOMID_SELF`: the calling domain.
pub const DOMID_SELF: u16 = 0x7ff0;

/// `XENVER_version`: returns `major << 16 | minor`.
pub const XENVER_VERSION: u64 = 0;

/// `CONSOLEIO_write`.
pub const CONSOLEIO_WRITE: u64 = 0;

/// `SCHEDOP_shutdown`.
pub const SCHEDOP_SHUTDOWN: u64 = 2;
/// `SCHEDOP_poll`.
pub const SCHEDOP_POLL: u64 = 3;
/// `SCHEDOP_poll` accepts at most this many ports (Xen's `do_poll`).
pub const SCHEDOP_POLL_MAX_PORTS: usize = 128;

/// `XENMEM_add_to_physmap`.
pub const XENMEM_ADD_TO_PHYSMAP: u64 = 7;
/// `XENMAPSPACE_shared_info`.
pub const XENMAPSPACE_SHARED_INFO: u32 = 0;
/// `XENMAPSPACE_grant_table`.
pub const XENMAPSPACE_GRANT_TABLE: u32 = 1;

/// `HVMOP_set_param`.
pub const HVMOP_SET_PARAM: u64 = 0;
/// `HVMOP_get_param`.
pub const HVMOP_GET_PARAM: u64 = 1;
/// `HVM_PARAM_CALLBACK_IRQ`: how Xen signals pending events to vCPU 0.
pub const HVM_PARAM_CALLBACK_IRQ: u32 = 0;
/// `HVM_PARAM_CALLBACK_TYPE_VECTOR << 56`: the value's type field saying
/// its low byte is an interrupt vector Xen injects directly (no APIC).
pub const HVM_CALLBACK_TYPE_VECTOR: u64 = 2 << 56;
/// `HVM_PARAM_STORE_PFN`: the xenstore ring's page frame.
pub const HVM_PARAM_STORE_PFN: u32 = 1;
/// `HVM_PARAM_STORE_EVTCHN`: the xenstore ring's event channel.
pub const HVM_PARAM_STORE_EVTCHN: u32 = 2;
/// `HVM_PARAM_CONSOLE_PFN`: the PV console ring's page frame.
pub const HVM_PARAM_CONSOLE_PFN: u32 = 17;
/// `HVM_PARAM_CONSOLE_EVTCHN`: the PV console ring's event channel.
pub const HVM_PARAM_CONSOLE_EVTCHN: u32 = 18;

/// `EVTCHNOP_bind_interdomain`.
pub const EVTCHNOP_BIND_INTERDOMAIN: u64 = 0;
/// `EVTCHNOP_bind_virq`.
pub const EVTCHNOP_BIND_VIRQ: u64 = 1;
/// `EVTCHNOP_close`.
pub const EVTCHNOP_CLOSE: u64 = 3;
/// `EVTCHNOP_send`.
pub const EVTCHNOP_SEND: u64 = 4;
/// `EVTCHNOP_alloc_unbound`.
pub const EVTCHNOP_ALLOC_UNBOUND: u64 = 6;
/// `EVTCHNOP_unmask`: clears a port's mask bit and re-raises the upcall if
/// it is pending.
pub const EVTCHNOP_UNMASK: u64 = 9;

/// `VIRQ_TIMER`: the per-vCPU virtual interrupt the one-shot timer raises.
pub const VIRQ_TIMER: u32 = 0;

/// `VCPUOP_set_singleshot_timer`.
pub const VCPUOP_SET_SINGLESHOT_TIMER: u64 = 8;

/// `struct vcpu_set_singleshot_timer`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct VcpuSetSingleshotTimer {
    /// Absolute Xen system time (ns) to raise `VIRQ_TIMER` at.
    pub timeout_abs_ns: u64,
    /// `VCPU_SSHOTTMR_*`; 0: a deadline in the past fires at once.
    pub flags: u32,
}

/// `GNTTABOP_copy`.
pub const GNTTABOP_COPY: u64 = 5;
/// `GNTTABOP_query_size`.
pub const GNTTABOP_QUERY_SIZE: u64 = 6;

/// `GNTTAB_NR_RESERVED_ENTRIES`: grant references the toolstack uses
/// (the console's and xenstore's rings); a guest never hands them out.
pub const GNTTAB_NR_RESERVED_ENTRIES: u32 = 8;
/// `GTF_permit_access`: the entry grants access to `frame`.
pub const GTF_PERMIT_ACCESS: u16 = 1;
/// `GTF_readonly`: the grantee may only read.
pub const GTF_READONLY: u16 = 1 << 2;
/// `GTF_reading`: set by Xen while the grantee has the frame mapped or is
/// copying from it.
pub const GTF_READING: u16 = 1 << 3;
/// `GTF_writing`: set by Xen while the grantee has it mapped writable.
pub const GTF_WRITING: u16 = 1 << 4;
/// `GNTCOPY_source_gref`: the copy's source is a grant reference.
pub const GNTCOPY_SOURCE_GREF: u16 = 1;

/// `struct grant_entry_v1`: one entry of the grant table's frames.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct GrantEntryV1 {
    /// `GTF_*`; written last by the granter, so Xen sees a whole entry.
    pub flags: u16,
    /// The domain allowed to use the entry.
    pub domid: u16,
    /// The granted guest frame.
    pub frame: u32,
}

/// `struct gnttab_copy_ptr`: one side of a `GNTTABOP_copy`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct GnttabCopyPtr {
    /// A grant reference (with the `GNTCOPY_*_gref` flag) or a frame.
    pub reference_or_frame: u64,
    /// The domain owning the reference or frame.
    pub domid: u16,
    /// The byte offset in the page.
    pub offset: u16,
}

/// `struct gnttab_copy`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct GnttabCopy {
    /// Where to copy from.
    pub source: GnttabCopyPtr,
    /// Where to copy to.
    pub dest: GnttabCopyPtr,
    /// How many bytes (within one page on each side).
    pub len: u16,
    /// `GNTCOPY_*`.
    pub flags: u16,
    /// Out: `GNTST_*` (0: done).
    pub status: i16,
}

/// `struct sched_shutdown`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SchedShutdown {
    /// `SHUTDOWN_*`.
    pub reason: u32,
}

/// `struct sched_poll`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SchedPoll {
    /// Guest address of the ports (`XEN_GUEST_HANDLE(evtchn_port_t)`).
    pub ports: u64,
    /// How many ports.
    pub nr_ports: u32,
    /// Absolute Xen system time (ns) to give up at; 0 for never.
    pub timeout: u64,
}

/// `struct xen_add_to_physmap`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct AddToPhysmap {
    /// The domain (`DOMID_SELF`).
    pub domid: u16,
    /// Pages for `XENMAPSPACE_gmfn_range`; unused otherwise.
    pub size: u16,
    /// `XENMAPSPACE_*`.
    pub space: u32,
    /// The index within the space (the grant-table frame number).
    pub idx: u64,
    /// The guest page frame to map it at.
    pub gpfn: u64,
}

/// `struct xen_hvm_param`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct HvmParam {
    /// The domain (`DOMID_SELF`).
    pub domid: u16,
    /// `HVM_PARAM_*`.
    pub index: u32,
    /// The value read.
    pub value: u64,
}

/// `struct evtchn_alloc_unbound`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct EvtchnAllocUnbound {
    /// The domain the port is allocated in.
    pub dom: u16,
    /// The domain allowed to bind the other end.
    pub remote_dom: u16,
    /// Out: the port.
    pub port: u32,
}

/// `struct evtchn_bind_interdomain`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct EvtchnBindInterdomain {
    /// The domain holding the unbound port.
    pub remote_dom: u16,
    /// The unbound port.
    pub remote_port: u32,
    /// Out: our end.
    pub local_port: u32,
}

/// `struct evtchn_bind_virq`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct EvtchnBindVirq {
    /// `VIRQ_*`.
    pub virq: u32,
    /// The vCPU it is delivered to.
    pub vcpu: u32,
    /// Out: the port.
    pub port: u32,
}

/// `struct evtchn_send` and `struct evtchn_close`: one port.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct EvtchnPort {
    /// The port.
    pub port: u32,
}

/// `struct gnttab_query_size`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct GnttabQuerySize {
    /// The domain (`DOMID_SELF`).
    pub dom: u16,
    /// Out: frames in use.
    pub nr_frames: u32,
    /// Out: the most frames the domain may have.
    pub max_nr_frames: u32,
    /// Out: `GNTST_*`.
    pub status: i16,
}

/// `struct xencons_interface` (`io/console.h`): the PV console's page.
/// Indices are free-running `u32` counters; a byte's slot is its index
/// modulo the ring's size (a power of two). The guest produces `out` and
/// the backend (xenconsoled) consumes it; `in` the other way round.
#[repr(C)]
#[derive(Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct XenconsInterface {
    /// Input from the backend.
    pub input: [u8; XENCONS_IN_SIZE],
    /// Output to the backend.
    pub output: [u8; XENCONS_OUT_SIZE],
    /// How far the guest has read `input`.
    pub in_cons: u32,
    /// How far the backend has written `input`.
    pub in_prod: u32,
    /// How far the backend has read `output`.
    pub out_cons: u32,
    /// How far the guest has written `output`.
    pub out_prod: u32,
}

/// The size of `xencons_interface.in`.
pub const XENCONS_IN_SIZE: usize = 1024;
/// The size of `xencons_interface.out`.
pub const XENCONS_OUT_SIZE: usize = 2048;

/// Offsets in the shared info page (`struct shared_info`, x86_64).
pub mod shared_info {
    /// `vcpu_info[0].evtchn_upcall_pending` (u8): Xen sets it when it
    /// sets a selector bit; the guest clears it before scanning.
    pub const VCPU0_UPCALL_PENDING: usize = 0;
    /// `vcpu_info[0].evtchn_upcall_mask` (u8).
    pub const VCPU0_UPCALL_MASK: usize = 1;
    /// `vcpu_info[0].evtchn_pending_sel` (u64): one bit per 64-port word
    /// of `evtchn_pending` that has a newly pending port.
    pub const VCPU0_PENDING_SEL: usize = 8;
    /// `vcpu_info[0].time` (`struct vcpu_time_info`).
    pub const VCPU0_TIME: usize = 32;
    /// `vcpu_time_info.version`: odd while Xen updates the record.
    pub const TIME_VERSION: usize = 0;
    /// `vcpu_time_info.tsc_timestamp`.
    pub const TIME_TSC_TIMESTAMP: usize = 8;
    /// `vcpu_time_info.system_time` (ns).
    pub const TIME_SYSTEM_TIME: usize = 16;
    /// `vcpu_time_info.tsc_to_system_mul`.
    pub const TIME_MUL: usize = 24;
    /// `vcpu_time_info.tsc_shift`.
    pub const TIME_SHIFT: usize = 28;
    /// `evtchn_pending`: one bit per port.
    pub const EVTCHN_PENDING: usize = 2048;
    /// `evtchn_mask`: one bit per port.
    pub const EVTCHN_MASK: usize = 2560;
    /// The ports the 2-level event channel ABI has (the bitmaps' bits).
    pub const EVTCHN_2L_PORTS: u32 = 4096;
    /// `wc_version`: odd while Xen updates the wall clock.
    pub const WC_VERSION: usize = 3072;
    /// `wc_sec`: low 32 bits of the wall-clock seconds at system time 0.
    pub const WC_SEC: usize = 3076;
    /// `wc_nsec`.
    pub const WC_NSEC: usize = 3080;
    /// `wc_sec_hi`: high 32 bits of the seconds (64-bit guests).
    pub const WC_SEC_HI: usize = 3084;
}

/// Xen system time (ns) from a TSC reading and the `vcpu_time_info`
/// values: `system_time + ((tsc - tsc_timestamp) << shift) * mul >> 32`
/// (`xen/include/public/xen.h`), with a negative shift shifting right.
pub fn system_time(tsc: u64, tsc_timestamp: u64, system_time: u64, mul: u32, shift: i8) -> u64 {
    let mut delta = tsc.wrapping_sub(tsc_timestamp);
    // A TSC read before the record's stamp (another update raced) counts as
    // no time: system time must not go back by almost 2^64 ns.
    if delta > u64::MAX / 2 {
        delta = 0;
    }
    let delta = if shift >= 0 { delta << shift.unsigned_abs() } else { delta >> shift.unsigned_abs() };
    let scaled = (u128::from(delta) * u128::from(mul)) >> 32;
    system_time.wrapping_add(scaled as u64)
}

/// The name of a Xen error number (the negated value a hypercall
/// returns), for messages.
pub fn errno_name(errno: i64) -> &'static str {
    match errno.checked_neg().unwrap_or(0) {
        1 => "EPERM",
        2 => "ENOENT",
        3 => "ESRCH",
        12 => "ENOMEM",
        13 => "EACCES",
        14 => "EFAULT",
        16 => "EBUSY",
        17 => "EEXIST",
        22 => "EINVAL",
        28 => "ENOSPC",
        38 => "ENOSYS",
        95 => "EOPNOTSUPP",
        _ => "unknown error",
    }
}

#[cfg(test)]
mod tests {
    use core::mem::{offset_of, size_of};

    use super::*;

    #[test]
    fn structures_have_the_headers_layout() {
        assert_eq!(
            (size_of::<SchedPoll>(), offset_of!(SchedPoll, nr_ports), offset_of!(SchedPoll, timeout)),
            (24, 8, 16)
        );
        assert_eq!(size_of::<AddToPhysmap>(), 24);
        assert_eq!(
            (offset_of!(AddToPhysmap, space), offset_of!(AddToPhysmap, idx), offset_of!(AddToPhysmap, gpfn)),
            (4, 8, 16)
        );
        assert_eq!((size_of::<HvmParam>(), offset_of!(HvmParam, index), offset_of!(HvmParam, value)), (16, 4, 8));
        assert_eq!((size_of::<EvtchnAllocUnbound>(), offset_of!(EvtchnAllocUnbound, port)), (8, 4));
        assert_eq!(
            (offset_of!(EvtchnBindInterdomain, remote_port), offset_of!(EvtchnBindInterdomain, local_port)),
            (4, 8)
        );
        assert_eq!((size_of::<EvtchnBindVirq>(), offset_of!(EvtchnBindVirq, port)), (12, 8));
        assert_eq!((offset_of!(GnttabQuerySize, nr_frames), offset_of!(GnttabQuerySize, max_nr_frames)), (4, 8));
        assert_eq!((offset_of!(GnttabQuerySize, status), size_of::<GnttabQuerySize>()), (12, 16));
        assert_eq!(
            (size_of::<GrantEntryV1>(), offset_of!(GrantEntryV1, domid), offset_of!(GrantEntryV1, frame)),
            (8, 2, 4)
        );
        assert_eq!(
            (size_of::<GnttabCopyPtr>(), offset_of!(GnttabCopyPtr, domid), offset_of!(GnttabCopyPtr, offset)),
            (16, 8, 10)
        );
        assert_eq!(
            (
                offset_of!(GnttabCopy, dest),
                offset_of!(GnttabCopy, len),
                offset_of!(GnttabCopy, flags),
                offset_of!(GnttabCopy, status),
                size_of::<GnttabCopy>()
            ),
            (16, 32, 34, 36, 40)
        );
        assert_eq!((size_of::<VcpuSetSingleshotTimer>(), offset_of!(VcpuSetSingleshotTimer, flags)), (16, 8));
        assert_eq!(
            (
                offset_of!(XenconsInterface, output),
                offset_of!(XenconsInterface, in_cons),
                offset_of!(XenconsInterface, in_prod),
                offset_of!(XenconsInterface, out_cons),
                offset_of!(XenconsInterface, out_prod),
                size_of::<XenconsInterface>()
            ),
            (1024, 3072, 3076, 3080, 3084, 3088)
        );
    }

    #[test]
    fn system_time_scales_the_tsc_delta() {
        // mul = 2^31 halves: a 2 GHz TSC. 2000 ticks after the stamp is 1000 ns.
        assert_eq!(system_time(12_000, 10_000, 5_000, 1 << 31, 0), 6_000);
        // shift 1 doubles before the multiplication, -1 halves.
        assert_eq!(system_time(12_000, 10_000, 0, 1 << 31, 1), 2_000);
        assert_eq!(system_time(12_000, 10_000, 0, 1 << 31, -1), 500);
        // A TSC behind the stamp gives the stamp's time, not a huge jump.
        assert_eq!(system_time(9_999, 10_000, 7, 1 << 31, 0), 7);
        // No overflow for hours of ticks at the largest multiplier.
        let hour_at_4ghz = 4_000_000_000u64 * 3600;
        assert_eq!(
            system_time(hour_at_4ghz, 0, 0, u32::MAX, -2),
            ((u128::from(hour_at_4ghz >> 2) * u128::from(u32::MAX)) >> 32) as u64
        );
    }

    #[test]
    fn error_numbers_have_names() {
        assert_eq!(errno_name(-1), "EPERM");
        assert_eq!(errno_name(-38), "ENOSYS");
        assert_eq!(errno_name(-9999), "unknown error");
        assert_eq!(errno_name(i64::MIN), "unknown error");
    }
}

/// The block device protocol's shared ring (`io/blkif.h` on the
/// `io/ring.h` layout), as the x86_64 ABI (`protocol = "x86_64-abi"`) lays
/// it out.
///
/// The ring page starts with a 64-byte header (`req_prod`, `req_event`,
/// `rsp_prod`, `rsp_event`, 48 bytes of padding), followed by
/// [`RING_SIZE`](blkif::RING_SIZE) slots of [`SLOT_SIZE`](blkif::SLOT_SIZE)
/// bytes, each the union of a request and its response. Indices are
/// free-running `u32` counters; an index's slot is the index modulo the
/// ring size.
pub mod blkif {
    use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

    /// `BLKIF_OP_READ`.
    pub const OP_READ: u8 = 0;
    /// `BLKIF_OP_WRITE`.
    pub const OP_WRITE: u8 = 1;
    /// `BLKIF_OP_WRITE_BARRIER`: a write ordered after every earlier one
    /// and durable before it completes; with no segments, a pure barrier.
    pub const OP_WRITE_BARRIER: u8 = 2;
    /// `BLKIF_OP_FLUSH_DISKCACHE`: makes every completed write durable.
    pub const OP_FLUSH_DISKCACHE: u8 = 3;

    /// `BLKIF_RSP_OKAY`.
    pub const RSP_OKAY: i16 = 0;
    /// `BLKIF_RSP_ERROR`.
    pub const RSP_ERROR: i16 = -1;
    /// `BLKIF_RSP_EOPNOTSUPP`: the backend does not do this operation.
    pub const RSP_EOPNOTSUPP: i16 = -2;

    /// `BLKIF_MAX_SEGMENTS_PER_REQUEST`.
    pub const MAX_SEGMENTS: usize = 11;
    /// The unit of `sector_number`, `first_sect`, `last_sect` and the
    /// backend's `sectors` key, whatever the disk's logical sector size.
    pub const WIRE_SECTOR: usize = 512;
    /// `VDISK_READONLY`: the bit of the backend's `info` key for a
    /// read-only disk.
    pub const VDISK_READONLY: u64 = 0x4;

    /// Offset of `req_prod` in the ring page: the frontend's published
    /// request producer index.
    pub const REQ_PROD: usize = 0;
    /// Offset of `req_event`: the backend wants a notification once
    /// `req_prod` passes this index.
    pub const REQ_EVENT: usize = 4;
    /// Offset of `rsp_prod`: the backend's published response producer.
    pub const RSP_PROD: usize = 8;
    /// Offset of `rsp_event`: the frontend wants a notification once
    /// `rsp_prod` passes this index.
    pub const RSP_EVENT: usize = 12;
    /// Offset of the first slot (after the header's 48 bytes of padding).
    pub const RING_OFFSET: usize = 64;
    /// Bytes per slot: the larger of a request and a response.
    pub const SLOT_SIZE: usize = {
        let (req, rsp) = (core::mem::size_of::<Request>(), core::mem::size_of::<Response>());
        if req > rsp {
            req
        } else {
            rsp
        }
    };
    /// Slots in the ring: the largest power of two that fits in the page
    /// after the header (`__RING_SIZE`), 32.
    pub const RING_SIZE: usize = {
        let fits = (super::PAGE_SIZE - RING_OFFSET) / SLOT_SIZE;
        let mut size = 1;
        while size * 2 <= fits {
            size *= 2;
        }
        size
    };

    // The slots must fit in the page after the header.
    const _: () = assert!(RING_OFFSET + RING_SIZE * SLOT_SIZE <= super::PAGE_SIZE);

    /// `struct blkif_request_segment`: one page of a request's data.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
    pub struct Segment {
        /// The grant reference of the page.
        pub gref: u32,
        /// The first 512-byte sector of the page to transfer.
        pub first_sect: u8,
        /// The last 512-byte sector of the page to transfer (inclusive).
        pub last_sect: u8,
        /// Padding.
        pub pad: u16,
    }

    /// `struct blkif_request` (x86_64: `id` is 8-aligned, so 4 bytes of
    /// implicit padding precede it, as in the header). Not `IntoBytes`
    /// for that reason: it is written field by field, never as a whole.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, Immutable, KnownLayout)]
    pub struct Request {
        /// One of the `OP_*` values.
        pub operation: u8,
        /// Segments used, at most [`MAX_SEGMENTS`]; 0 for a flush.
        pub nr_segments: u8,
        /// The virtual device's handle (unused by blkback for one ring).
        pub handle: u16,
        /// Echoed in the response.
        pub id: u64,
        /// The first 512-byte sector on the disk.
        pub sector_number: u64,
        /// The data pages.
        pub seg: [Segment; MAX_SEGMENTS],
    }

    /// `struct blkif_response`. It has implicit padding (after `operation`
    /// and at the end), as in the header, so it is not `IntoBytes`: it is
    /// written field by field, never as a whole.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, Immutable, KnownLayout)]
    pub struct Response {
        /// The request's `id`.
        pub id: u64,
        /// The request's operation.
        pub operation: u8,
        /// One of the `RSP_*` values.
        pub status: i16,
    }

    #[cfg(test)]
    mod tests {
        use core::mem::{offset_of, size_of};

        use super::*;

        #[test]
        fn the_ring_has_the_headers_layout_for_x86_64() {
            assert_eq!(
                (size_of::<Segment>(), offset_of!(Segment, first_sect), offset_of!(Segment, last_sect)),
                (8, 4, 5)
            );
            assert_eq!(
                (
                    offset_of!(Request, nr_segments),
                    offset_of!(Request, handle),
                    offset_of!(Request, id),
                    offset_of!(Request, sector_number),
                    offset_of!(Request, seg),
                    size_of::<Request>()
                ),
                (1, 2, 8, 16, 24, 112)
            );
            assert_eq!(
                (offset_of!(Response, operation), offset_of!(Response, status), size_of::<Response>()),
                (8, 10, 16)
            );
            // (4096 - 64) / 112 = 36 slots fit; the ring uses 32.
            assert_eq!((SLOT_SIZE, RING_SIZE), (112, 32));
        }
    }
}

/// The shared ring of `io/ring.h` and the network rings of `io/netif.h`
/// (x86_64): the layouts netfront and netback share.
pub mod netif {
    use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

    /// `struct *_sring`: `req_prod` (u32), the producer index of requests.
    pub const SRING_REQ_PROD: usize = 0;
    /// `req_event` (u32): the backend wants a notification when
    /// `req_prod` passes it.
    pub const SRING_REQ_EVENT: usize = 4;
    /// `rsp_prod` (u32): the producer index of responses.
    pub const SRING_RSP_PROD: usize = 8;
    /// `rsp_event` (u32): the frontend wants a notification when
    /// `rsp_prod` passes it.
    pub const SRING_RSP_EVENT: usize = 12;
    /// Where the entries begin: the four indices and 48 bytes of padding.
    pub const SRING_ENTRIES: usize = 64;

    /// `NETTXF_csum_blank`: the checksum is not filled in.
    pub const NETTXF_CSUM_BLANK: u16 = 1;
    /// `NETTXF_data_validated`: the checksum was checked already.
    pub const NETTXF_DATA_VALIDATED: u16 = 2;
    /// `NETTXF_more_data`: the frame continues in the next request.
    pub const NETTXF_MORE_DATA: u16 = 4;
    /// `NETTXF_extra_info`: an extra-info slot follows.
    pub const NETTXF_EXTRA_INFO: u16 = 8;

    /// `NETRXF_data_validated`: the backend checked the checksum.
    pub const NETRXF_DATA_VALIDATED: u16 = 1;
    /// `NETRXF_csum_blank`: the checksum is not filled in (only sent to
    /// frontends that do not set `feature-no-csum-offload`).
    pub const NETRXF_CSUM_BLANK: u16 = 2;
    /// `NETRXF_more_data`: the frame continues in the next response.
    pub const NETRXF_MORE_DATA: u16 = 4;
    /// `NETRXF_extra_info`: an extra-info slot follows this response.
    pub const NETRXF_EXTRA_INFO: u16 = 8;

    /// `XEN_NETIF_EXTRA_FLAG_MORE`, in byte 1 of `struct
    /// netif_extra_info`: another extra-info slot follows.
    pub const NETIF_EXTRA_FLAG_MORE: u8 = 1;

    /// `NETIF_RSP_NULL`: the response to an extra-info request.
    pub const NETIF_RSP_NULL: i16 = 1;
    /// `NETIF_RSP_OKAY`.
    pub const NETIF_RSP_OKAY: i16 = 0;
    /// `NETIF_RSP_ERROR`.
    pub const NETIF_RSP_ERROR: i16 = -1;
    /// `NETIF_RSP_DROPPED`.
    pub const NETIF_RSP_DROPPED: i16 = -2;

    /// `struct netif_tx_request`: a frame (or a piece of one) to send.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
    pub struct TxRequest {
        /// The grant of the page holding the data.
        pub gref: u32,
        /// Where the data starts in the page.
        pub offset: u16,
        /// `NETTXF_*`.
        pub flags: u16,
        /// Echoed in the response.
        pub id: u16,
        /// Bytes of data (the whole frame's, in a frame's first request).
        pub size: u16,
    }

    /// `struct netif_tx_response`.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
    pub struct TxResponse {
        /// The request's id.
        pub id: u16,
        /// `NETIF_RSP_*`.
        pub status: i16,
    }

    /// `struct netif_rx_request`: a page the backend may copy a frame into.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
    pub struct RxRequest {
        /// Echoed in the response.
        pub id: u16,
        /// Padding (`uint16_t _pad`, implicit in the header).
        pub pad: u16,
        /// The grant of the page (writable by the backend).
        pub gref: u32,
    }

    /// `struct netif_rx_response`.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
    pub struct RxResponse {
        /// The request's id.
        pub id: u16,
        /// Where the frame starts in the page.
        pub offset: u16,
        /// `NETRXF_*`.
        pub flags: u16,
        /// The frame's size if `>= 0`, else `NETIF_RSP_*`.
        pub status: i16,
    }

    /// Bytes of one slot of the transmit ring: the larger of request and
    /// response (`union netif_tx_sring_entry`).
    pub const TX_SLOT_SIZE: usize = 12;
    /// Bytes of one slot of the receive ring.
    pub const RX_SLOT_SIZE: usize = 8;

    /// `__CONST_RING_SIZE`: the entries that fit after the header on one
    /// page, rounded down to a power of two.
    pub const fn ring_size(slot_size: usize) -> u32 {
        let fit = (super::PAGE_SIZE - SRING_ENTRIES) / slot_size;
        if fit == 0 {
            return 0;
        }
        1 << (usize::BITS - 1 - fit.leading_zeros())
    }

    /// Entries of the transmit ring on one page (256).
    pub const TX_RING_SIZE: u32 = ring_size(TX_SLOT_SIZE);
    /// Entries of the receive ring on one page (256).
    pub const RX_RING_SIZE: u32 = ring_size(RX_SLOT_SIZE);
}

#[cfg(test)]
mod netif_layout_tests {
    use super::netif::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn netif_entries_match_io_netif_h() {
        assert_eq!(size_of::<TxRequest>(), 12);
        assert_eq!(
            [offset_of!(TxRequest, gref), offset_of!(TxRequest, offset), offset_of!(TxRequest, flags)],
            [0, 4, 6]
        );
        assert_eq!([offset_of!(TxRequest, id), offset_of!(TxRequest, size)], [8, 10]);
        assert_eq!((size_of::<TxResponse>(), offset_of!(TxResponse, status)), (4, 2));
        assert_eq!((size_of::<RxRequest>(), offset_of!(RxRequest, gref)), (8, 4));
        assert_eq!(size_of::<RxResponse>(), 8);
        assert_eq!(
            [offset_of!(RxResponse, offset), offset_of!(RxResponse, flags), offset_of!(RxResponse, status)],
            [2, 4, 6]
        );
        assert_eq!(TX_SLOT_SIZE, size_of::<TxRequest>().max(size_of::<TxResponse>()));
        assert_eq!(RX_SLOT_SIZE, size_of::<RxRequest>().max(size_of::<RxResponse>()));
    }

    #[test]
    fn both_rings_have_256_entries_on_a_page() {
        // (4096 - 64) / 12 = 336 and 4032 / 8 = 504, rounded down.
        assert_eq!((TX_RING_SIZE, RX_RING_SIZE), (256, 256));
        assert_eq!(ring_size(4032), 1);
        assert_eq!(ring_size(5000), 0);
        assert_eq!(ring_size(63), 64);
    }
}
