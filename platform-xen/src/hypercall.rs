//! Xen detection and hypercalls: the hypercall page and the raw calls
//! through it. The only module here that executes hypercalls; the typed
//! wrappers in [`crate::hypervisor`] build on [`call`].
//!
//! Xen writes the hypercall page itself (one 32-byte stub per hypercall,
//! `mov $nr, %eax; vmcall` or `vmmcall` for the CPU) once the guest writes
//! the page's physical address to the MSR that CPUID leaf base + 2 names
//! (`xen/include/public/arch-x86/cpuid.h`). Calls follow the x86_64
//! convention: number in RAX (set by the stub), arguments in RDI, RSI, RDX,
//! R10, R8, result in RAX; Xen may clobber the argument registers.

use alloc::alloc::{alloc_zeroed, Layout};
use core::arch::asm;
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

use mirage_kernel::arch::cpu;

use crate::abi::{errno_name, HYPERCALL_STUB_LEN, PAGE_SIZE};

/// The address of the hypercall page, 0 until [`init`] has set it up.
/// The page is identity-mapped (physical = virtual, as the kernel maps all
/// RAM below 4 GiB).
static PAGE: AtomicU64 = AtomicU64::new(0);

/// Why Xen could not be set up, or a hypercall failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum XenError {
    /// CPUID shows no Xen: not running on Xen.
    NotXen,
    /// Xen offers no hypercall page (CPUID leaf base + 2 says 0 pages).
    NoHypercallPage,
    /// The page for the hypercall page or another shared page could not be
    /// allocated.
    OutOfMemory(&'static str),
    /// A hypercall was made before [`init`].
    NotInitialised,
    /// Xen wrote no stub where it should have (the MSR write had no effect).
    BadHypercallPage {
        /// The hypercall whose stub was checked.
        hypercall: usize,
        /// The stub's first bytes.
        found: [u8; 5],
    },
    /// Xen answered, but not as its interface promises.
    Unexpected(&'static str),
    /// A hypercall returned an error.
    Hypercall {
        /// Which operation, e.g. `"EVTCHNOP_send"`.
        op: &'static str,
        /// The (negative) error number.
        errno: i64,
    },
}

impl fmt::Display for XenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            XenError::NotXen => write!(f, "not running on Xen: no \"XenVMMXenVMM\" CPUID leaf at 0x40000000..0x40010000"),
            XenError::NoHypercallPage => write!(f, "Xen's CPUID leaf offers no hypercall page"),
            XenError::OutOfMemory(what) => write!(f, "no memory for the {what} page"),
            XenError::NotInitialised => write!(f, "hypercall before the hypercall page was set up"),
            XenError::BadHypercallPage { hypercall, found } => write!(
                f,
                "the hypercall page holds no stub for hypercall {hypercall} (bytes {found:02x?}, expected mov $nr, %eax)"
            ),
            XenError::Unexpected(what) => write!(f, "Xen misbehaved: {what}"),
            XenError::Hypercall { op, errno } => write!(f, "{op} failed: {} ({errno})", errno_name(*errno)),
        }
    }
}

/// Allocates a zeroed, page-aligned page that is never freed (it is given
/// to Xen) and returns its address, which is also its physical address.
pub(crate) fn leak_page(what: &'static str) -> Result<u64, XenError> {
    let layout = Layout::from_size_align(PAGE_SIZE, PAGE_SIZE).map_err(|_| XenError::OutOfMemory(what))?;
    // SAFETY: the layout has a non-zero size.
    let page = unsafe { alloc_zeroed(layout) };
    if page.is_null() {
        return Err(XenError::OutOfMemory(what));
    }
    Ok(page as u64)
}

/// What [`init`] found.
#[derive(Clone, Copy, Debug)]
pub struct HypercallPage {
    /// The CPUID base leaf of Xen's interface.
    pub cpuid_base: u32,
    /// The page's (physical = virtual) address.
    pub address: u64,
}

/// Detects Xen and sets up the hypercall page; idempotent. Needs the heap.
///
/// `Ok` means Xen filled the page: the stub of `xen_version` has been
/// checked to load its own number. Errors: [`XenError::NotXen`] off Xen,
/// [`XenError::NoHypercallPage`], [`XenError::OutOfMemory`],
/// [`XenError::BadHypercallPage`].
pub fn init() -> Result<HypercallPage, XenError> {
    let (base, _) = cpu::xen_cpuid_base().ok_or(XenError::NotXen)?;
    let existing = PAGE.load(Ordering::Relaxed);
    if existing != 0 {
        return Ok(HypercallPage { cpuid_base: base, address: existing });
    }
    let leaf = cpu::cpuid(base + 2, 0);
    if leaf.eax == 0 {
        return Err(XenError::NoHypercallPage);
    }
    let page = leak_page("hypercall")?;
    // SAFETY: the MSR is the one Xen's CPUID leaf names for this purpose;
    // writing it makes Xen overwrite `page`, which we own (leaked above) and
    // which the kernel maps read-write-execute.
    unsafe { write_msr(leaf.ebx, page) };
    let stub = crate::abi::HYPERCALL_XEN_VERSION * HYPERCALL_STUB_LEN;
    let mut found = [0u8; 5];
    for (i, byte) in found.iter_mut().enumerate() {
        // SAFETY: `page` is a live page-sized allocation; Xen wrote it
        // during the MSR write, before these reads.
        *byte = unsafe { core::ptr::read_volatile((page as *const u8).add(stub + i)) };
    }
    let expected_imm = (crate::abi::HYPERCALL_XEN_VERSION as u32).to_le_bytes();
    if found[0] != 0xb8 || found[1..] != expected_imm {
        return Err(XenError::BadHypercallPage { hypercall: crate::abi::HYPERCALL_XEN_VERSION, found });
    }
    PAGE.store(page, Ordering::Relaxed);
    Ok(HypercallPage { cpuid_base: base, address: page })
}

/// Writes `value` to model-specific register `msr`.
///
/// # Safety
///
/// The write must be one the CPU (or hypervisor) defines and whose effects
/// the caller accounts for.
unsafe fn write_msr(msr: u32, value: u64) {
    // SAFETY: the caller vouches for the register and its effects.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32, options(nostack, preserves_flags))
    };
}

/// Makes hypercall `nr` with up to five arguments and returns Xen's result
/// (negative: an error number).
///
/// # Safety
///
/// The arguments must be valid for the hypercall: pointers must point to
/// live, initialised structures of the layout Xen expects for `nr` and its
/// sub-command, writable where Xen writes, for the duration of the call.
pub unsafe fn call(nr: usize, args: [u64; 5]) -> Result<i64, XenError> {
    let page = PAGE.load(Ordering::Relaxed);
    if page == 0 {
        return Err(XenError::NotInitialised);
    }
    let entry = page + (nr * HYPERCALL_STUB_LEN) as u64;
    let result: i64;
    // SAFETY: `entry` is the stub Xen wrote for `nr` (checked at `init`);
    // it returns with `ret`. The caller vouches for the arguments. Without
    // `nostack`, the compiler keeps the red zone clear of the return
    // address `call` pushes.
    unsafe {
        asm!(
            "call {entry}",
            entry = in(reg) entry,
            inlateout("rdi") args[0] => _,
            inlateout("rsi") args[1] => _,
            inlateout("rdx") args[2] => _,
            inlateout("r10") args[3] => _,
            inlateout("r8") args[4] => _,
            lateout("rax") result,
            lateout("rcx") _,
            lateout("r11") _,
        )
    };
    Ok(result)
}

/// [`call`], with a negative result turned into [`XenError::Hypercall`]
/// naming `op`.
///
/// # Safety
///
/// As for [`call`].
pub unsafe fn call_checked(op: &'static str, nr: usize, args: [u64; 5]) -> Result<i64, XenError> {
    // SAFETY: the caller's guarantees are [`call`]'s.
    let result = unsafe { call(nr, args) }?;
    if result < 0 {
        return Err(XenError::Hypercall { op, errno: result });
    }
    Ok(result)
}
