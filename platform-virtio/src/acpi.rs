//! The little of ACPI the platform needs: where PCI's memory-mapped
//! configuration space (ECAM) is, from the MCFG table.
//!
//! The walk is RSDP (revision 0 or 2+, both checksums) → XSDT when the RSDP
//! has one, else RSDT → the table signed `MCFG` → its allocation for PCI
//! segment 0 that covers bus 0. Every table is read through a
//! [`PhysicalMemory`], which refuses ranges outside what is mapped; every
//! length is checked against the structure's minimum and [`MAX_TABLE_LEN`]
//! before anything past the header is read, and every table used is
//! checksummed. Nothing here panics on what the tables say.
//!
//! # Bounds
//!
//! One table is at most [`MAX_TABLE_LEN`] bytes, so the RSDT/XSDT names
//! at most `(MAX_TABLE_LEN - 36) / 4` tables and an MCFG holds at most
//! `(MAX_TABLE_LEN - 44) / 16` allocations; nothing is allocated.

use core::fmt;

/// The largest ACPI table this walk reads (RSDT, XSDT, MCFG). QEMU's are a
/// few hundred bytes; 64 KiB leaves room for any real machine's root
/// table while bounding a corrupt length.
pub const MAX_TABLE_LEN: u32 = 64 * 1024;

/// The size of the common header of every system description table.
const HEADER_LEN: usize = 36;
/// The RSDP of revision 0 (ACPI 1.0).
const RSDP_V1_LEN: usize = 20;
/// The RSDP of revision 2 and later, with the XSDT address.
const RSDP_V2_LEN: usize = 36;
/// MCFG: header, 8 reserved bytes, then the allocations.
const MCFG_ALLOCATIONS_AT: usize = HEADER_LEN + 8;
const MCFG_ALLOCATION_LEN: usize = 16;

/// Read access to physical memory for the walk.
pub trait PhysicalMemory {
    /// The `len` bytes at physical address `paddr`, or `None` when any of
    /// them is not readable memory (not mapped, or device registers whose
    /// reading could have an effect).
    fn bytes(&self, paddr: u64, len: usize) -> Option<&[u8]>;
}

/// Physical memory as the kernel's identity map shows it, limited to the
/// first 3 GiB: that is where firmware puts ACPI tables (the BIOS area and
/// the top of low RAM), and the fourth GiB, mapped uncached, holds device
/// registers that a corrupt pointer must not make us read.
#[derive(Debug)]
pub struct IdentityMapped(());

/// The end of the memory [`IdentityMapped`] reads.
pub const IDENTITY_TABLES_END: u64 = 3 << 30;

impl IdentityMapped {
    /// Reads through the kernel's identity map.
    ///
    /// # Safety
    ///
    /// Only in a kernel image, whose boot page tables identity-map the first
    /// [`IDENTITY_TABLES_END`] bytes, and only while nothing writes the
    /// ACPI tables (the kernel never does).
    pub unsafe fn new() -> IdentityMapped {
        IdentityMapped(())
    }
}

impl PhysicalMemory for IdentityMapped {
    fn bytes(&self, paddr: u64, len: usize) -> Option<&[u8]> {
        let end = paddr.checked_add(u64::try_from(len).ok()?)?;
        if paddr == 0 || end > IDENTITY_TABLES_END {
            return None;
        }
        // SAFETY: the range is non-null, below IDENTITY_TABLES_END and so
        // identity-mapped (constructor's contract), RAM or firmware ROM that
        // reads without effect, and not written while the slice lives.
        Some(unsafe { core::slice::from_raw_parts(paddr as *const u8, len) })
    }
}

/// Where PCI segment 0's ECAM window is, from the MCFG.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ecam {
    /// The physical address of bus 0's configuration space (bus `n` is at
    /// `base + (n << 20)`).
    pub base: u64,
    /// The first bus the window decodes (always 0 here: the allocation
    /// chosen covers bus 0).
    pub start_bus: u8,
    /// The last bus it decodes.
    pub end_bus: u8,
}

/// Why no ECAM window was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AcpiError {
    /// `what` at `paddr` (`len` bytes) is not in readable memory.
    NotMapped {
        /// The structure.
        what: &'static str,
        /// Its physical address.
        paddr: u64,
        /// The bytes that were to be read.
        len: usize,
    },
    /// The structure at `paddr` does not carry the signature it must.
    BadSignature {
        /// The expected signature.
        expected: &'static str,
        /// The structure's address.
        paddr: u64,
    },
    /// The bytes of `what` at `paddr` do not sum to 0.
    BadChecksum {
        /// The structure.
        what: &'static str,
        /// Its address.
        paddr: u64,
    },
    /// The length field of `what` is below its minimum or above
    /// [`MAX_TABLE_LEN`].
    BadLength {
        /// The structure.
        what: &'static str,
        /// Its address.
        paddr: u64,
        /// The length it claims.
        len: u32,
    },
    /// The root table names no MCFG: the machine has no ECAM (i440fx, or
    /// microvm without PCIe).
    NoMcfg,
    /// The MCFG has no allocation for segment 0 covering bus 0.
    NoSegment0,
}

impl fmt::Display for AcpiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AcpiError::NotMapped { what, paddr, len } => {
                write!(f, "ACPI {what} at {paddr:#x} ({len} bytes) is outside readable memory")
            }
            AcpiError::BadSignature { expected, paddr } => {
                write!(f, "the ACPI structure at {paddr:#x} is not signed {expected:?}")
            }
            AcpiError::BadChecksum { what, paddr } => write!(f, "ACPI {what} at {paddr:#x} has a bad checksum"),
            AcpiError::BadLength { what, paddr, len } => write!(
                f,
                "ACPI {what} at {paddr:#x} claims {len} bytes, outside the bounds of such a table \
                 (at most {MAX_TABLE_LEN})"
            ),
            AcpiError::NoMcfg => write!(f, "the ACPI root table lists no MCFG (no PCIe ECAM on this machine)"),
            AcpiError::NoSegment0 => write!(f, "the ACPI MCFG has no ECAM allocation for PCI segment 0, bus 0"),
        }
    }
}

impl core::error::Error for AcpiError {}

fn read<'m>(memory: &'m dyn PhysicalMemory, what: &'static str, paddr: u64, len: usize) -> Result<&'m [u8], AcpiError> {
    memory.bytes(paddr, len).ok_or(AcpiError::NotMapped { what, paddr, len })
}

fn sums_to_zero(bytes: &[u8]) -> bool {
    bytes.iter().fold(0u8, |sum, &b| sum.wrapping_add(b)) == 0
}

fn le_u32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

fn le_u64(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at.checked_add(8)?)?.try_into().ok()?))
}

/// Reads the whole table at `paddr`, checking its signature, its length
/// (at least `min_len`, at most [`MAX_TABLE_LEN`]) and its checksum.
fn table<'m>(
    memory: &'m dyn PhysicalMemory,
    what: &'static str,
    signature: &'static str,
    paddr: u64,
    min_len: usize,
) -> Result<&'m [u8], AcpiError> {
    let header = read(memory, what, paddr, HEADER_LEN)?;
    if header.get(..4) != Some(signature.as_bytes()) {
        return Err(AcpiError::BadSignature { expected: signature, paddr });
    }
    let len = le_u32(header, 4).unwrap_or(0);
    let usable = usize::try_from(len).ok().filter(|&l| l >= min_len && len <= MAX_TABLE_LEN);
    let Some(usable) = usable else { return Err(AcpiError::BadLength { what, paddr, len }) };
    let bytes = read(memory, what, paddr, usable)?;
    if !sums_to_zero(bytes) {
        return Err(AcpiError::BadChecksum { what, paddr });
    }
    Ok(bytes)
}

/// Finds segment 0's ECAM window from the RSDP at `rsdp_paddr`; see the
/// [module documentation](self) for the walk.
///
/// `Ok` means every structure on the way was mapped, correctly signed,
/// of a sane length and checksummed, and the returned allocation covers
/// bus 0. The window's own address is the firmware's word: the caller
/// checks it against what it has mapped.
pub fn find_ecam(memory: &dyn PhysicalMemory, rsdp_paddr: u64) -> Result<Ecam, AcpiError> {
    let rsdp = read(memory, "RSDP", rsdp_paddr, RSDP_V1_LEN)?;
    if rsdp.get(..8) != Some(b"RSD PTR ".as_slice()) {
        return Err(AcpiError::BadSignature { expected: "RSD PTR ", paddr: rsdp_paddr });
    }
    if !sums_to_zero(rsdp) {
        return Err(AcpiError::BadChecksum { what: "RSDP", paddr: rsdp_paddr });
    }
    let revision = rsdp.get(15).copied().unwrap_or(0);
    let mut root = None;
    if revision >= 2 {
        let head = read(memory, "RSDP", rsdp_paddr, RSDP_V2_LEN)?;
        let len = le_u32(head, 20).unwrap_or(0);
        let usable = usize::try_from(len).ok().filter(|&l| l >= RSDP_V2_LEN && len <= MAX_TABLE_LEN);
        let Some(usable) = usable else {
            return Err(AcpiError::BadLength { what: "RSDP", paddr: rsdp_paddr, len });
        };
        let whole = read(memory, "RSDP", rsdp_paddr, usable)?;
        if !sums_to_zero(whole) {
            return Err(AcpiError::BadChecksum { what: "extended RSDP", paddr: rsdp_paddr });
        }
        let xsdt = le_u64(head, 24).unwrap_or(0);
        if xsdt != 0 {
            root = Some((table(memory, "XSDT", "XSDT", xsdt, HEADER_LEN)?, 8));
        }
    }
    let (root, entry_len) = match root {
        Some(root) => root,
        None => {
            let rsdt = le_u32(rsdp, 16).map_or(0, u64::from);
            (table(memory, "RSDT", "RSDT", rsdt, HEADER_LEN)?, 4)
        }
    };
    let entries = root.get(HEADER_LEN..).unwrap_or_default();
    let mcfg = entries
        .chunks_exact(entry_len)
        .map(|entry| if entry_len == 8 { le_u64(entry, 0).unwrap_or(0) } else { le_u32(entry, 0).map_or(0, u64::from) })
        .find(|&paddr| memory.bytes(paddr, 4) == Some(b"MCFG".as_slice()))
        .ok_or(AcpiError::NoMcfg)?;
    let mcfg = table(memory, "MCFG", "MCFG", mcfg, MCFG_ALLOCATIONS_AT)?;
    mcfg.get(MCFG_ALLOCATIONS_AT..)
        .unwrap_or_default()
        .chunks_exact(MCFG_ALLOCATION_LEN)
        .filter_map(|allocation| {
            let base = le_u64(allocation, 0)?;
            let segment = u16::from_le_bytes([*allocation.get(8)?, *allocation.get(9)?]);
            let (start_bus, end_bus) = (*allocation.get(10)?, *allocation.get(11)?);
            (segment == 0 && start_bus == 0 && end_bus >= start_bus).then_some(Ecam { base, start_bus, end_bus })
        })
        .next()
        .ok_or(AcpiError::NoSegment0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A few tables laid out in a buffer standing for physical memory
    /// from `BASE`.
    struct Buffer(Vec<u8>);

    const BASE: u64 = 0xe_0000;
    const RSDP_AT: u64 = BASE;
    const RSDT_AT: u64 = BASE + 0x100;
    const XSDT_AT: u64 = BASE + 0x200;
    const OTHER_AT: u64 = BASE + 0x300;
    const MCFG_AT: u64 = BASE + 0x400;

    impl PhysicalMemory for Buffer {
        fn bytes(&self, paddr: u64, len: usize) -> Option<&[u8]> {
            let start = usize::try_from(paddr.checked_sub(BASE)?).ok()?;
            self.0.get(start..start.checked_add(len)?)
        }
    }

    fn fix_checksum(bytes: &mut [u8], at: usize) {
        bytes[at] = 0;
        let sum = bytes.iter().fold(0u8, |s, &b| s.wrapping_add(b));
        bytes[at] = sum.wrapping_neg();
    }

    fn sdt(signature: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut t = vec![0u8; HEADER_LEN];
        t[..4].copy_from_slice(signature);
        t[4..8].copy_from_slice(&((HEADER_LEN + body.len()) as u32).to_le_bytes());
        t[8] = 1;
        t.extend_from_slice(body);
        fix_checksum(&mut t, 9);
        t
    }

    fn mcfg(allocations: &[(u64, u16, u8, u8)]) -> Vec<u8> {
        let mut body = vec![0u8; 8];
        for &(base, segment, start, end) in allocations {
            body.extend_from_slice(&base.to_le_bytes());
            body.extend_from_slice(&segment.to_le_bytes());
            body.extend_from_slice(&[start, end, 0, 0, 0, 0]);
        }
        sdt(b"MCFG", &body)
    }

    fn rsdp(revision: u8) -> Vec<u8> {
        let mut r = vec![0u8; RSDP_V2_LEN];
        r[..8].copy_from_slice(b"RSD PTR ");
        r[15] = revision;
        r[16..20].copy_from_slice(&(RSDT_AT as u32).to_le_bytes());
        fix_checksum(&mut r[..RSDP_V1_LEN], 8);
        if revision < 2 {
            r.truncate(RSDP_V1_LEN);
        } else {
            r[20..24].copy_from_slice(&(RSDP_V2_LEN as u32).to_le_bytes());
            r[24..32].copy_from_slice(&XSDT_AT.to_le_bytes());
            // The extended checksum covers the whole structure, the first
            // checksum included, so it comes last.
            fix_checksum(&mut r, 32);
        }
        r
    }

    /// Memory with an RSDP of `revision`, an RSDT and an XSDT that both
    /// list a non-MCFG table then the MCFG.
    fn machine(revision: u8, mcfg_table: Vec<u8>) -> Buffer {
        let mut memory = vec![0u8; 0x1000];
        let mut put = |at: u64, bytes: &[u8]| {
            let at = (at - BASE) as usize;
            memory[at..at + bytes.len()].copy_from_slice(bytes);
        };
        put(RSDP_AT, &rsdp(revision));
        let rsdt_body: Vec<u8> = [OTHER_AT as u32, MCFG_AT as u32].iter().flat_map(|a| a.to_le_bytes()).collect();
        put(RSDT_AT, &sdt(b"RSDT", &rsdt_body));
        let xsdt_body: Vec<u8> = [OTHER_AT, MCFG_AT].iter().flat_map(|a| a.to_le_bytes()).collect();
        put(XSDT_AT, &sdt(b"XSDT", &xsdt_body));
        put(OTHER_AT, &sdt(b"FACP", &[7; 20]));
        put(MCFG_AT, &mcfg_table);
        Buffer(memory)
    }

    const Q35: (u64, u16, u8, u8) = (0xb000_0000, 0, 0, 255);

    #[test]
    fn finds_segment_0_through_rsdt_and_xsdt() {
        for revision in [0, 2] {
            let memory = machine(revision, mcfg(&[(0xc000_0000, 1, 0, 255), Q35]));
            assert_eq!(
                find_ecam(&memory, RSDP_AT),
                Ok(Ecam { base: 0xb000_0000, start_bus: 0, end_bus: 255 }),
                "revision {revision}"
            );
        }
    }

    #[test]
    fn revision_2_uses_the_xsdt() {
        let mut memory = machine(2, mcfg(&[Q35]));
        // Break the RSDT: a revision 2 walk must not look at it.
        memory.0[(RSDT_AT - BASE) as usize] = b'X';
        assert!(find_ecam(&memory, RSDP_AT).is_ok());
        let memory_v0 = {
            let mut m = machine(0, mcfg(&[Q35]));
            m.0[(RSDT_AT - BASE) as usize] = b'X';
            m
        };
        assert_eq!(find_ecam(&memory_v0, RSDP_AT), Err(AcpiError::BadSignature { expected: "RSDT", paddr: RSDT_AT }));
    }

    #[test]
    fn corrupted_checksums_are_refused() {
        let cases: [(u64, usize, &str); 4] =
            [(RSDP_AT, 0, "RSDP"), (RSDP_AT, 30, "extended RSDP"), (XSDT_AT, 40, "XSDT"), (MCFG_AT, 50, "MCFG")];
        for (at, offset, what) in cases {
            let mut memory = machine(2, mcfg(&[Q35]));
            let byte = &mut memory.0[(at - BASE) as usize + offset];
            *byte = byte.wrapping_add(1);
            let expected = if offset == 0 {
                // The signature's first byte: caught before the checksum.
                AcpiError::BadSignature { expected: "RSD PTR ", paddr: at }
            } else {
                AcpiError::BadChecksum { what, paddr: at }
            };
            assert_eq!(find_ecam(&memory, RSDP_AT), Err(expected), "{what}");
        }
    }

    #[test]
    fn truncated_and_oversized_tables_are_refused() {
        // The MCFG's length runs past the end of memory.
        let mut memory = machine(2, mcfg(&[Q35]));
        memory.0.truncate((MCFG_AT - BASE) as usize + 50);
        assert!(matches!(find_ecam(&memory, RSDP_AT), Err(AcpiError::NotMapped { what: "MCFG", .. })));
        // Lengths below the header or above the bound.
        for len in [10u32, MAX_TABLE_LEN + 1, u32::MAX] {
            let mut memory = machine(2, mcfg(&[Q35]));
            let at = (XSDT_AT - BASE) as usize;
            memory.0[at + 4..at + 8].copy_from_slice(&len.to_le_bytes());
            assert_eq!(find_ecam(&memory, RSDP_AT), Err(AcpiError::BadLength { what: "XSDT", paddr: XSDT_AT, len }));
        }
        // An RSDP at the very end of memory.
        let memory = machine(2, mcfg(&[Q35]));
        let last = BASE + memory.0.len() as u64 - 4;
        assert!(matches!(find_ecam(&memory, last), Err(AcpiError::NotMapped { what: "RSDP", .. })));
        assert!(matches!(find_ecam(&memory, u64::MAX - 2), Err(AcpiError::NotMapped { .. })));
    }

    #[test]
    fn missing_mcfg_or_segment_0() {
        let mut memory = machine(2, mcfg(&[Q35]));
        memory.0[(MCFG_AT - BASE) as usize] = b'X';
        assert_eq!(find_ecam(&memory, RSDP_AT), Err(AcpiError::NoMcfg));
        let memory = machine(2, mcfg(&[(0xb000_0000, 1, 0, 255), (0xb000_0000, 0, 1, 255)]));
        assert_eq!(find_ecam(&memory, RSDP_AT), Err(AcpiError::NoSegment0));
        let memory = machine(2, mcfg(&[]));
        assert_eq!(find_ecam(&memory, RSDP_AT), Err(AcpiError::NoSegment0));
    }

    #[test]
    fn errors_say_where() {
        let message = AcpiError::BadChecksum { what: "MCFG", paddr: 0x7ffe_0000 }.to_string();
        assert!(message.contains("MCFG") && message.contains("0x7ffe0000"), "{message}");
    }
}
