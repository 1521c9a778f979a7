//! Single CPU instructions: interrupts on and off, halting, the time stamp
//! counter, CPUID, control register 2, and the hardware random number
//! generator.

use core::arch::asm;

/// Disables maskable interrupts.
pub fn disable_interrupts() {
    // SAFETY: `cli` only masks interrupts. Code that relies on interrupts
    // arriving re-enables them itself. Not `nomem`: it opens a section the
    // interrupt handlers cannot enter, so it must also be a compiler
    // barrier, keeping memory shared with them from moving across it.
    unsafe { asm!("cli", options(nostack)) };
}

/// Enables maskable interrupts and halts until the next one, atomically:
/// `sti` takes effect after the following instruction, so an interrupt that
/// is already pending wakes the `hlt` instead of being taken before it and
/// leaving the CPU asleep with its work undone. Returns with interrupts
/// enabled, after the handler has run.
pub fn enable_interrupts_and_halt() {
    // SAFETY: halting waits for an interrupt; the handlers installed by the
    // kernel save and restore every register they use. Not `nomem`: the
    // handler runs inside it and writes memory (wake-ups, event flags), so
    // the compiler must not keep values read before it in registers.
    unsafe { asm!("sti", "hlt", options(nostack)) };
}

/// Halts forever with interrupts off: the end of a system that could not
/// power itself off.
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: as above; with interrupts masked only an NMI wakes the CPU,
        // and the loop halts it again.
        unsafe { asm!("cli", "hlt", options(nomem, nostack)) };
    }
}

/// Raises a breakpoint exception (`int3`). The kernel has no debugger:
/// its handler reports the exception and powers off, so this is how a test
/// or a fatal-error path checks the exception path end to end.
pub fn breakpoint() {
    // SAFETY: `int3` only raises vector 3, whose handler the kernel installs.
    unsafe { asm!("int3", options(nomem, nostack)) };
}

/// The time stamp counter.
pub fn rdtsc() -> u64 {
    let (low, high): (u32, u32);
    // SAFETY: `rdtsc` reads a counter into edx:eax and has no other effect.
    unsafe { asm!("rdtsc", out("eax") low, out("edx") high, options(nomem, nostack, preserves_flags)) };
    (u64::from(high) << 32) | u64::from(low)
}

/// The four registers CPUID returns for a leaf and subleaf.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuidResult {
    /// EAX.
    pub eax: u32,
    /// EBX.
    pub ebx: u32,
    /// ECX.
    pub ecx: u32,
    /// EDX.
    pub edx: u32,
}

/// Executes CPUID for `leaf` and `subleaf`.
pub fn cpuid(leaf: u32, subleaf: u32) -> CpuidResult {
    let (eax, ebx, ecx, edx): (u32, u32, u32, u32);
    // SAFETY: CPUID only reads identification registers. RBX is reserved by
    // LLVM, hence the exchange through a scratch register.
    unsafe {
        asm!(
            "mov {rbx_save:r}, rbx",
            "cpuid",
            "xchg {rbx_save:r}, rbx",
            rbx_save = out(reg) ebx,
            inout("eax") leaf => eax,
            inout("ecx") subleaf => ecx,
            out("edx") edx,
            options(nomem, nostack, preserves_flags),
        )
    };
    CpuidResult { eax, ebx, ecx, edx }
}

/// The first CPUID leaf a hypervisor may use; hypervisors that offer
/// several interfaces (Xen with Viridian) place theirs every 0x100 leaves.
const HYPERVISOR_LEAVES: core::ops::Range<u32> = 0x4000_0000..0x4001_0000;

/// The CPUID base leaf of Xen's interface ("XenVMMXenVMM" in EBX, ECX,
/// EDX of the base leaf) and its largest leaf, if the kernel runs on Xen.
pub fn xen_cpuid_base() -> Option<(u32, u32)> {
    // Without the hypervisor bit (CPUID.01H:ECX[31]) the 0x4000_0000 leaves
    // echo the highest basic leaf and mean nothing.
    if cpuid(1, 0).ecx & (1 << 31) == 0 {
        return None;
    }
    HYPERVISOR_LEAVES.step_by(0x100).find_map(|base| {
        let id = cpuid(base, 0);
        // Compared word by word: this runs before the heap exists.
        let xen = [id.ebx, id.ecx, id.edx] == [0x566e_6558, 0x65584d4d, 0x4d4d_566e]; // "XenVMMXenVMM"
        (xen && id.eax >= base + 3).then_some((base, id.eax))
    })
}

/// The guest TSC frequency in kHz that Xen reports in its time leaf
/// (the base leaf plus 3, sub-leaf 0, ECX), if the kernel runs on Xen and
/// it says. Xen guests have no PIT to calibrate against (PVH has none).
pub fn xen_tsc_khz() -> Option<u32> {
    let (base, _) = xen_cpuid_base()?;
    Some(cpuid(base + 3, 0).ecx).filter(|&khz| khz != 0)
}

/// Whether the CPU has RDRAND (CPUID.01H:ECX bit 30).
pub fn has_rdrand() -> bool {
    cpuid(1, 0).ecx & (1 << 30) != 0
}

/// Whether the CPU has RDSEED (CPUID.(EAX=07H,ECX=0):EBX bit 18).
pub fn has_rdseed() -> bool {
    cpuid(0, 0).eax >= 7 && cpuid(7, 0).ebx & (1 << 18) != 0
}

/// One RDRAND output, or `None` if the instruction reported no data ready
/// (carry clear). Only call after [`has_rdrand`] said yes: on a CPU without
/// it the instruction faults.
pub fn rdrand() -> Option<u64> {
    let value: u64;
    let ok: u8;
    // SAFETY: RDRAND writes a register and the carry flag only. On a CPU
    // without it the instruction raises #UD, which the kernel reports and
    // exits on: no memory is corrupted either way.
    unsafe { asm!("rdrand {v}", "setc {ok}", v = out(reg) value, ok = out(reg_byte) ok, options(nomem, nostack)) };
    (ok != 0).then_some(value)
}

/// One RDSEED output, or `None` if none was ready; see [`rdrand`].
pub fn rdseed() -> Option<u64> {
    let value: u64;
    let ok: u8;
    // SAFETY: as for `rdrand`.
    unsafe { asm!("rdseed {v}", "setc {ok}", v = out(reg) value, ok = out(reg_byte) ok, options(nomem, nostack)) };
    (ok != 0).then_some(value)
}

/// Control register 2: the linear address of the last page fault.
pub fn read_cr2() -> u64 {
    let value: u64;
    // SAFETY: reading CR2 has no effect; the kernel runs in ring 0.
    unsafe { asm!("mov {}, cr2", out(reg) value, options(nomem, nostack, preserves_flags)) };
    value
}
