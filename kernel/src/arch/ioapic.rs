//! The I/O APIC: routes device interrupt lines (GSIs) to CPU vectors
//! through the local APIC.
//!
//! There is no ACPI table parsing in the kernel, so I/O APICs are found at
//! the addresses every PC-compatible VMM uses: the first at `0xfec00000`
//! with GSIs from 0, and, on QEMU's `microvm` (`ioapic2=on`, its default
//! since QEMU 5.2), a second at `0xfec10000` with GSIs from 24, which is
//! where microvm wires its virtio-mmio transports. An address is taken to
//! hold an I/O APIC when its version register reads like one (version
//! 0x11–0x2f, at least 8 and at most 240 redirection entries); unassigned
//! memory in QEMU reads as zeros or ones and fails the check.
//!
//! Every line is programmed level-triggered and active-high, fixed
//! delivery to the boot CPU's local APIC. Level triggering is what makes
//! masking safe: a line still asserted when it is unmasked interrupts
//! again, so no event is lost while a line is masked (see
//! [`crate::interrupt`]).

/// Register select (index) and window (data), offsets from the base.
const IOREGSEL: usize = 0x00;
const IOWIN: usize = 0x10;
/// Directed EOI register (I/O APIC version 0x20 and later).
const EOI: usize = 0x40;

/// Register indices.
const IOAPICVER: u32 = 0x01;
const IOREDTBL: u32 = 0x10;

/// Redirection entry bits.
const ENTRY_MASKED: u32 = 1 << 16;
const ENTRY_LEVEL: u32 = 1 << 15;

/// The standard address of the first I/O APIC.
pub const FIRST_IOAPIC: u64 = 0xfec0_0000;
/// Where QEMU's microvm puts its second I/O APIC (GSIs 24–47).
pub const MICROVM_SECOND_IOAPIC: u64 = 0xfec1_0000;

/// The end of memory the boot page tables map (uncached from 3 GiB).
const MAPPED_DEVICE_END: u64 = 4 << 30;

/// One I/O APIC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoApic {
    base: u64,
    gsi_base: u32,
    pins: u32,
    version: u32,
}

impl IoApic {
    /// The I/O APIC at physical address `base` serving GSIs from
    /// `gsi_base`, or `None` if its version register does not read like an
    /// I/O APIC's.
    ///
    /// # Safety
    ///
    /// `base` must be identity-mapped uncached (the boot page tables map the
    /// fourth GiB so) and reading and writing its first 0x20 bytes must not
    /// break memory safety: either an I/O APIC is there, or nothing is (the
    /// VMM ignores writes to unassigned addresses).
    pub unsafe fn probe(base: u64, gsi_base: u32) -> Option<IoApic> {
        if base % 0x1000 != 0 || base + 0x1000 > MAPPED_DEVICE_END {
            return None;
        }
        let mut apic = IoApic { base, gsi_base, pins: 0, version: 0 };
        let version = apic.read(IOAPICVER);
        let (id, max_entry) = (version & 0xff, (version >> 16) & 0xff);
        if !(0x11..=0x2f).contains(&id) || !(7..=239).contains(&max_entry) {
            return None;
        }
        apic.pins = max_entry + 1;
        apic.version = id;
        Some(apic)
    }

    /// The first GSI this I/O APIC serves.
    pub fn gsi_base(&self) -> u32 {
        self.gsi_base
    }

    /// How many lines (pins) it has.
    pub fn pins(&self) -> u32 {
        self.pins
    }

    /// Whether `gsi` is one of its lines.
    pub fn serves(&self, gsi: u32) -> bool {
        gsi.checked_sub(self.gsi_base).is_some_and(|pin| pin < self.pins)
    }

    fn read(&self, register: u32) -> u32 {
        // SAFETY: `probe`'s contract: the two registers at `base` belong to
        // an I/O APIC (or nothing) and are mapped; they are 32-bit aligned.
        unsafe {
            ((self.base as usize + IOREGSEL) as *mut u32).write_volatile(register);
            ((self.base as usize + IOWIN) as *const u32).read_volatile()
        }
    }

    fn write(&self, register: u32, value: u32) {
        // SAFETY: as in `read`; redirection entries only change how
        // interrupts are delivered.
        unsafe {
            ((self.base as usize + IOREGSEL) as *mut u32).write_volatile(register);
            ((self.base as usize + IOWIN) as *mut u32).write_volatile(value);
        }
    }

    /// Routes `gsi` to `vector` on the local APIC `apic_id`, level-triggered,
    /// active-high, masked. Does nothing for a GSI it does not serve.
    pub fn route(&self, gsi: u32, vector: u8, apic_id: u8) {
        let Some(pin) = gsi.checked_sub(self.gsi_base).filter(|&pin| pin < self.pins) else { return };
        // Masked first, so a half-written entry never delivers.
        self.write(IOREDTBL + 2 * pin, ENTRY_MASKED);
        self.write(IOREDTBL + 2 * pin + 1, u32::from(apic_id) << 24);
        self.write(IOREDTBL + 2 * pin, ENTRY_MASKED | ENTRY_LEVEL | u32::from(vector));
    }

    /// Ends a level-triggered interrupt of `vector` at the I/O APIC itself
    /// (clearing Remote IRR), for machines where the local APIC's EOI
    /// broadcast does not reach it (observed on QEMU q35). Only version
    /// 0x20 and later have the register; older ones rely on the broadcast.
    pub fn end_of_interrupt(&self, vector: u8) {
        if self.version >= 0x20 {
            // SAFETY: as in `read`; the EOI register only clears Remote IRR
            // of entries with this vector.
            unsafe { ((self.base as usize + EOI) as *mut u32).write_volatile(u32::from(vector)) };
        }
    }

    /// Masks (`true`) or unmasks `gsi`, keeping the rest of its entry.
    pub fn set_masked(&self, gsi: u32, masked: bool) {
        let Some(pin) = gsi.checked_sub(self.gsi_base).filter(|&pin| pin < self.pins) else { return };
        let low = self.read(IOREDTBL + 2 * pin);
        let low = if masked { low | ENTRY_MASKED } else { low & !ENTRY_MASKED };
        self.write(IOREDTBL + 2 * pin, low);
    }
}
