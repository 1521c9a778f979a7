//! The PVH boot protocol's start info: what the VMM tells the kernel about
//! the machine (Xen's `hvm_start_info`, `xen/include/public/arch-x86/hvm/start_info.h`).
//!
//! The structure, its memory map and its command line are read from guest
//! memory the VMM wrote. This module parses bytes only; the kernel image
//! hands it slices of that memory. Parsing checks every size and count and
//! never panics: a VMM that gets it wrong gets an error naming the field.

use core::fmt;
use core::ops::Range;

/// `hvm_start_info.magic`: "xEn3" with bit 7 of the last byte set.
pub const START_INFO_MAGIC: u32 = 0x336e_c578;

/// The size of `hvm_start_info` in version 1, which has the memory map.
pub const START_INFO_LEN: usize = 56;

/// The size of one `hvm_memmap_table_entry`.
pub const MEMMAP_ENTRY_LEN: usize = 24;

/// The most memory map entries the kernel reads; a VMM's map for a small
/// VM has a handful. More is reported as an error, not truncated, because
/// silently ignoring RAM or a reservation is worse than not booting.
pub const MAX_MEMMAP_ENTRIES: usize = 128;

/// The longest command line read, in bytes, without the terminating NUL.
pub const MAX_CMDLINE_LEN: usize = 4096;

/// The memory map type of usable RAM (the E820 type).
pub const MEMMAP_TYPE_RAM: u32 = 1;

/// What was wrong with the start info.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartInfoError {
    /// Fewer bytes than the structure needs.
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        available: usize,
    },
    /// The magic number is not [`START_INFO_MAGIC`].
    BadMagic(u32),
    /// Version 0 has no memory map, which the kernel needs to find its heap.
    NoMemoryMap {
        /// The version found.
        version: u32,
    },
    /// More memory map entries than [`MAX_MEMMAP_ENTRIES`].
    TooManyMemoryRegions(u32),
    /// No NUL within [`MAX_CMDLINE_LEN`] bytes of the command line.
    CommandLineTooLong,
    /// The command line is not UTF-8.
    CommandLineNotUtf8 {
        /// Offset of the first invalid byte.
        at: usize,
    },
}

impl fmt::Display for StartInfoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartInfoError::Truncated { what, needed, available } => {
                write!(f, "PVH {what} needs {needed} bytes but only {available} are readable")
            }
            StartInfoError::BadMagic(magic) => {
                write!(f, "PVH start info magic is {magic:#x}, not {START_INFO_MAGIC:#x}: not booted through PVH?")
            }
            StartInfoError::NoMemoryMap { version } => {
                write!(f, "PVH start info version {version} has no memory map (version 1 or later needed)")
            }
            StartInfoError::TooManyMemoryRegions(n) => {
                write!(f, "PVH memory map has {n} entries, more than the {MAX_MEMMAP_ENTRIES} the kernel reads")
            }
            StartInfoError::CommandLineTooLong => {
                write!(f, "kernel command line is longer than {MAX_CMDLINE_LEN} bytes")
            }
            StartInfoError::CommandLineNotUtf8 { at } => {
                write!(f, "kernel command line is not UTF-8 (invalid byte at offset {at})")
            }
        }
    }
}

impl core::error::Error for StartInfoError {}

/// The fields of `hvm_start_info` the kernel uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StartInfo {
    /// The structure's version (1 or later).
    pub version: u32,
    /// Physical address of the NUL-terminated command line, 0 if none.
    pub cmdline_paddr: u64,
    /// Physical address of the ACPI RSDP, 0 if none.
    pub rsdp_paddr: u64,
    /// Physical address of the memory map.
    pub memmap_paddr: u64,
    /// Number of memory map entries, at most [`MAX_MEMMAP_ENTRIES`].
    pub memmap_entries: usize,
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

fn check_len(what: &'static str, bytes: &[u8], needed: usize) -> Result<(), StartInfoError> {
    if bytes.len() < needed {
        return Err(StartInfoError::Truncated { what, needed, available: bytes.len() });
    }
    Ok(())
}

impl StartInfo {
    /// Parses the structure from its first [`START_INFO_LEN`] bytes.
    ///
    /// `Ok` means the magic matched, the version has a memory map and the
    /// entry count is within [`MAX_MEMMAP_ENTRIES`]; the addresses are not
    /// checked (they are the VMM's word).
    pub fn parse(bytes: &[u8]) -> Result<StartInfo, StartInfoError> {
        check_len("start info", bytes, 8)?;
        let magic = u32_at(bytes, 0);
        if magic != START_INFO_MAGIC {
            return Err(StartInfoError::BadMagic(magic));
        }
        let version = u32_at(bytes, 4);
        if version < 1 {
            return Err(StartInfoError::NoMemoryMap { version });
        }
        check_len("start info", bytes, START_INFO_LEN)?;
        let entries = u32_at(bytes, 48);
        let memmap_entries = usize::try_from(entries)
            .ok()
            .filter(|&n| n <= MAX_MEMMAP_ENTRIES)
            .ok_or(StartInfoError::TooManyMemoryRegions(entries))?;
        Ok(StartInfo {
            version,
            cmdline_paddr: u64_at(bytes, 24),
            rsdp_paddr: u64_at(bytes, 32),
            memmap_paddr: u64_at(bytes, 40),
            memmap_entries,
        })
    }

    /// Parses a start info of any version, memory map or not: for a
    /// version 0 structure (Xen 4.17 gives its PVH dom0 one) the memory map
    /// fields are 0 and the map must come from elsewhere (on Xen, the
    /// `XENMEM_memory_map` hypercall, see [`parse_e820_map`]).
    pub fn parse_any_version(bytes: &[u8]) -> Result<StartInfo, StartInfoError> {
        match StartInfo::parse(bytes) {
            Err(StartInfoError::NoMemoryMap { version }) => {
                // Version 0 is the first 48 bytes; the map fields follow them.
                check_len("start info", bytes, 48)?;
                Ok(StartInfo {
                    version,
                    cmdline_paddr: u64_at(bytes, 24),
                    rsdp_paddr: u64_at(bytes, 32),
                    memmap_paddr: 0,
                    memmap_entries: 0,
                })
            }
            other => other,
        }
    }

    /// The size in bytes of the memory map table.
    pub fn memmap_len(&self) -> usize {
        self.memmap_entries * MEMMAP_ENTRY_LEN
    }
}

/// One memory map entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryRegion {
    /// Physical start address.
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
    /// E820 type: [`MEMMAP_TYPE_RAM`] for usable RAM; anything else is
    /// reserved for the kernel's purposes.
    pub kind: u32,
}

impl MemoryRegion {
    /// Whether this is usable RAM.
    pub fn is_ram(&self) -> bool {
        self.kind == MEMMAP_TYPE_RAM
    }

    /// The addresses covered, clamped at the top of the address space.
    pub fn range(&self) -> Range<u64> {
        self.start..self.start.saturating_add(self.len)
    }
}

/// The size of one entry of Xen's `XENMEM_memory_map` answer: a packed
/// E820 entry (address, size, type), not the PVH table's 24 bytes.
pub const E820_ENTRY_LEN: usize = 20;

/// Parses `count` packed E820 entries (as `XENMEM_memory_map` returns
/// them) from `bytes` into `out`, returning the filled part of `out`.
///
/// `Err` if `bytes` holds fewer entries or `out` has less room than `count`.
pub fn parse_e820_map<'a>(
    bytes: &[u8],
    count: usize,
    out: &'a mut [MemoryRegion],
) -> Result<&'a [MemoryRegion], StartInfoError> {
    if count > out.len() {
        return Err(StartInfoError::TooManyMemoryRegions(u32::try_from(count).unwrap_or(u32::MAX)));
    }
    check_len("E820 memory map", bytes, count * E820_ENTRY_LEN)?;
    for (i, slot) in out[..count].iter_mut().enumerate() {
        let entry = &bytes[i * E820_ENTRY_LEN..(i + 1) * E820_ENTRY_LEN];
        *slot = MemoryRegion { start: u64_at(entry, 0), len: u64_at(entry, 8), kind: u32_at(entry, 16) };
    }
    Ok(&out[..count])
}

/// Parses `count` memory map entries from `bytes` into `out`, returning
/// the filled part of `out`.
///
/// `Err` if `bytes` holds fewer entries or `out` has less room than `count`.
pub fn parse_memory_map<'a>(
    bytes: &[u8],
    count: usize,
    out: &'a mut [MemoryRegion],
) -> Result<&'a [MemoryRegion], StartInfoError> {
    if count > out.len() {
        return Err(StartInfoError::TooManyMemoryRegions(u32::try_from(count).unwrap_or(u32::MAX)));
    }
    check_len("memory map", bytes, count * MEMMAP_ENTRY_LEN)?;
    for (i, slot) in out[..count].iter_mut().enumerate() {
        let entry = &bytes[i * MEMMAP_ENTRY_LEN..(i + 1) * MEMMAP_ENTRY_LEN];
        *slot = MemoryRegion { start: u64_at(entry, 0), len: u64_at(entry, 8), kind: u32_at(entry, 16) };
    }
    Ok(&out[..count])
}

/// The command line in `bytes`, up to its terminating NUL.
///
/// `Err` if there is no NUL within [`MAX_CMDLINE_LEN`] bytes (or within
/// `bytes`) or the text is not UTF-8.
pub fn parse_command_line(bytes: &[u8]) -> Result<&str, StartInfoError> {
    let window = &bytes[..bytes.len().min(MAX_CMDLINE_LEN + 1)];
    let end = window.iter().position(|&b| b == 0).ok_or(StartInfoError::CommandLineTooLong)?;
    core::str::from_utf8(&window[..end]).map_err(|e| StartInfoError::CommandLineNotUtf8 { at: e.valid_up_to() })
}

/// The largest stretch of RAM in `map` below `limit` that overlaps none of
/// `reserved`, or `None` if there is none.
///
/// The kernel puts its heap there: `limit` is the end of the identity-mapped
/// cacheable memory, `reserved` the image itself and the boot data it still
/// reads. Ranges that reserved entries of the map cover are excluded even
/// where a RAM entry overlaps them, since VMMs' maps may overlap.
pub fn largest_free_region(map: &[MemoryRegion], reserved: &[Range<u64>], limit: u64) -> Option<Range<u64>> {
    let mut best: Option<Range<u64>> = None;
    for region in map.iter().filter(|r| r.is_ram()) {
        let range = region.start.min(limit)..region.range().end.min(limit);
        // Cut `range` at every reserved range: what is left between two cuts
        // is a candidate. The number of pieces is bounded by the number of
        // reserved ranges plus one.
        let mut cuts: [Range<u64>; MAX_MEMMAP_ENTRIES + 8] = core::array::from_fn(|_| 0..0);
        let mut n = 0;
        let blockers = reserved.iter().cloned().chain(map.iter().filter(|r| !r.is_ram()).map(MemoryRegion::range));
        for cut in blockers.filter(|c| c.start < range.end && c.end > range.start) {
            if n < cuts.len() {
                cuts[n] = cut;
                n += 1;
            }
        }
        let cuts = &mut cuts[..n];
        cuts.sort_unstable_by_key(|c| c.start);
        let mut cursor = range.start;
        let mut consider = |piece: Range<u64>| {
            if piece.end > piece.start && best.as_ref().is_none_or(|b| piece.end - piece.start > b.end - b.start) {
                best = Some(piece);
            }
        };
        for cut in cuts.iter() {
            consider(cursor..cut.start.max(cursor));
            cursor = cursor.max(cut.end);
        }
        consider(cursor..range.end.max(cursor));
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_0_parses_without_a_memory_map_when_asked() {
        let info = StartInfo::parse_any_version(&start_info(0, 3)[..48]).unwrap();
        assert_eq!((info.version, info.cmdline_paddr, info.memmap_paddr, info.memmap_entries), (0, 0x2000, 0, 0));
        let info = StartInfo::parse_any_version(&start_info(1, 3)).unwrap();
        assert_eq!((info.memmap_paddr, info.memmap_entries), (0x3000, 3));
        assert!(matches!(StartInfo::parse_any_version(&start_info(0, 3)[..40]), Err(StartInfoError::Truncated { .. })));
    }

    #[test]
    fn e820_entries_are_20_bytes_packed() {
        let mut bytes = [0xa5u8; 2 * E820_ENTRY_LEN];
        for (i, (start, len, kind)) in [(0u64, 0x9f000u64, 1u32), (0x100000, 0x3f00000, 2)].into_iter().enumerate() {
            let e = &mut bytes[i * E820_ENTRY_LEN..];
            e[0..8].copy_from_slice(&start.to_le_bytes());
            e[8..16].copy_from_slice(&len.to_le_bytes());
            e[16..20].copy_from_slice(&kind.to_le_bytes());
        }
        let mut out = [MemoryRegion::default(); 4];
        let map = parse_e820_map(&bytes, 2, &mut out).unwrap();
        assert_eq!(map[1], MemoryRegion { start: 0x100000, len: 0x3f00000, kind: 2 });
        assert!(map[0].is_ram() && !map[1].is_ram());
        assert!(parse_e820_map(&bytes, 3, &mut out).is_err());
        assert!(parse_e820_map(&bytes, 5, &mut out).is_err());
    }

    fn start_info(version: u32, entries: u32) -> [u8; START_INFO_LEN] {
        let mut bytes = [0xa5; START_INFO_LEN];
        bytes[0..4].copy_from_slice(&START_INFO_MAGIC.to_le_bytes());
        bytes[4..8].copy_from_slice(&version.to_le_bytes());
        bytes[24..32].copy_from_slice(&0x2000u64.to_le_bytes());
        bytes[32..40].copy_from_slice(&0u64.to_le_bytes());
        bytes[40..48].copy_from_slice(&0x3000u64.to_le_bytes());
        bytes[48..52].copy_from_slice(&entries.to_le_bytes());
        bytes
    }

    #[test]
    fn parses_version_1() {
        let info = StartInfo::parse(&start_info(1, 3)).unwrap();
        assert_eq!(info.cmdline_paddr, 0x2000);
        assert_eq!(info.memmap_paddr, 0x3000);
        assert_eq!(info.memmap_entries, 3);
        assert_eq!(info.memmap_len(), 72);
    }

    #[test]
    fn rejects_bad_magic_old_version_truncation_and_huge_maps() {
        let mut bytes = start_info(1, 3);
        bytes[0] = 0;
        assert!(matches!(StartInfo::parse(&bytes), Err(StartInfoError::BadMagic(_))));
        assert_eq!(StartInfo::parse(&start_info(0, 3)), Err(StartInfoError::NoMemoryMap { version: 0 }));
        let err = StartInfo::parse(&start_info(1, 3)[..40]).unwrap_err();
        assert_eq!(err, StartInfoError::Truncated { what: "start info", needed: 56, available: 40 });
        assert!(err.to_string().contains("56 bytes"));
        assert_eq!(StartInfo::parse(&start_info(1, 129)), Err(StartInfoError::TooManyMemoryRegions(129)));
        assert!(StartInfo::parse(&start_info(1, 128)).is_ok());
        assert!(StartInfo::parse(&[]).is_err());
    }

    #[test]
    fn parses_memory_map_entries() {
        let mut bytes = [0u8; 48];
        bytes[0..8].copy_from_slice(&0u64.to_le_bytes());
        bytes[8..16].copy_from_slice(&0x9fc00u64.to_le_bytes());
        bytes[16..20].copy_from_slice(&1u32.to_le_bytes());
        bytes[24..32].copy_from_slice(&0x10_0000u64.to_le_bytes());
        bytes[32..40].copy_from_slice(&0x7f0_0000u64.to_le_bytes());
        bytes[40..44].copy_from_slice(&2u32.to_le_bytes());
        let mut out = [MemoryRegion::default(); 4];
        let map = parse_memory_map(&bytes, 2, &mut out).unwrap();
        assert_eq!(map[0], MemoryRegion { start: 0, len: 0x9fc00, kind: 1 });
        assert_eq!(map[1], MemoryRegion { start: 0x10_0000, len: 0x7f0_0000, kind: 2 });
        assert!(map[0].is_ram() && !map[1].is_ram());
        assert!(parse_memory_map(&bytes, 3, &mut out).is_err());
        assert!(parse_memory_map(&bytes, 2, &mut out[..1]).is_err());
    }

    #[test]
    fn command_line_ends_at_nul_is_bounded_and_utf8() {
        assert_eq!(parse_command_line(b"-l debug -- panic\0garbage"), Ok("-l debug -- panic"));
        assert_eq!(parse_command_line(b"\0"), Ok(""));
        assert_eq!(parse_command_line(b"no nul"), Err(StartInfoError::CommandLineTooLong));
        let long = [b'x'; MAX_CMDLINE_LEN + 10];
        assert_eq!(parse_command_line(&long), Err(StartInfoError::CommandLineTooLong));
        let mut exact = [b'x'; MAX_CMDLINE_LEN + 1];
        exact[MAX_CMDLINE_LEN] = 0;
        assert_eq!(parse_command_line(&exact).map(str::len), Ok(MAX_CMDLINE_LEN));
        assert_eq!(parse_command_line(b"ab\xffc\0"), Err(StartInfoError::CommandLineNotUtf8 { at: 2 }));
    }

    fn ram(start: u64, len: u64) -> MemoryRegion {
        MemoryRegion { start, len, kind: MEMMAP_TYPE_RAM }
    }

    #[test]
    fn heap_goes_to_the_largest_free_piece() {
        const MIB: u64 = 1 << 20;
        // QEMU microvm with 128 MiB: low RAM, then RAM from 1 MiB.
        let map = [ram(0, 0x9fc00), ram(MIB, 127 * MIB)];
        // The kernel image occupies 1..3 MiB.
        let heap = largest_free_region(&map, core::slice::from_ref(&(MIB..3 * MIB)), 3 << 30).unwrap();
        assert_eq!(heap, 3 * MIB..128 * MIB);
        // A reservation in the middle leaves the bigger side.
        let heap = largest_free_region(&map, &[MIB..3 * MIB, 100 * MIB..101 * MIB], 3 << 30).unwrap();
        assert_eq!(heap, 3 * MIB..100 * MIB);
        // The limit clips RAM above it.
        let heap = largest_free_region(&[ram(0, 8 << 30)], core::slice::from_ref(&(0..MIB)), 3 << 30).unwrap();
        assert_eq!(heap, MIB..3 << 30);
        // Reserved map entries overlapping RAM are honoured.
        let reserved = MemoryRegion { start: 10 * MIB, len: 200 * MIB, kind: 2 };
        let heap = largest_free_region(&[ram(0, 64 * MIB), reserved], &[], 3 << 30).unwrap();
        assert_eq!(heap, 0..10 * MIB);
        // Nothing free.
        assert_eq!(largest_free_region(&[ram(MIB, MIB)], core::slice::from_ref(&(0..4 * MIB)), 3 << 30), None);
        assert_eq!(largest_free_region(&[MemoryRegion { start: 0, len: MIB, kind: 2 }], &[], 3 << 30), None);
        // A region wrapping the address space does not overflow.
        assert_eq!(largest_free_region(&[ram(u64::MAX - 5, 100)], &[], u64::MAX), Some(u64::MAX - 5..u64::MAX));
    }
}
