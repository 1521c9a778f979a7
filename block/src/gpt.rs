//! The GUID Partition Table.
//!
//! Reading list: UEFI specification 2.10, §5.3 ("GUID Partition Table
//! (GPT) Disk Layout"): table 5-5 (header), table 5-6 (entry), §5.3.2
//! (validity checks), §5.2.3 (protective MBR).
//!
//! Layout: a protective MBR in LBA 0, the primary header in LBA 1, the
//! primary entry array from the header's `PartitionEntryLBA` (normally 2),
//! the backup entry array just before the last LBA, and the backup header
//! in the last LBA. Each header carries the CRC32 of its first
//! `HeaderSize` bytes (CRC field zeroed) and the CRC32 of its entry array.
//!
//! Bound: an entry array larger than [`MAX_ENTRY_ARRAY_BYTES`] is refused
//! before anything is allocated for it.

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use mirage_types::block::{BlockDevice, BlockInfo};

use crate::mbr::{Mbr, TableError};

/// "EFI PART".
const SIGNATURE: &[u8; 8] = b"EFI PART";
/// Revision 1.0.
const REVISION: u32 = 0x0001_0000;
/// The header's length as this writer emits it (UEFI table 5-5).
const HEADER_LEN: usize = 92;
/// The entry length this writer emits.
const ENTRY_LEN: usize = 128;
/// Entries this writer allocates (16 KiB, the minimum UEFI §5.3.2 asks for).
const ENTRY_COUNT: u32 = 128;
/// UTF-16 code units in an entry's name.
const NAME_UNITS: usize = 36;

/// The largest entry array (entries × entry size) a reader accepts: 1 MiB,
/// 64 times what partitioning tools create.
pub const MAX_ENTRY_ARRAY_BYTES: u64 = 1 << 20;

/// A GUID, stored as on disk (the first three fields little-endian).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    /// The all-zero GUID, which marks an unused entry.
    pub const ZERO: Guid = Guid([0; 16]);
    /// "Linux filesystem data", 0FC63DAF-8483-4772-8E79-3D69D8477DE4.
    pub const LINUX_FILESYSTEM: Guid =
        Guid::from_fields(0x0fc6_3daf, 0x8483, 0x4772, [0x8e, 0x79, 0x3d, 0x69, 0xd8, 0x47, 0x7d, 0xe4]);
    /// "EFI System", C12A7328-F81F-11D2-BA4B-00A0C93EC93B.
    pub const EFI_SYSTEM: Guid =
        Guid::from_fields(0xc12a_7328, 0xf81f, 0x11d2, [0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9, 0x3b]);

    /// The GUID written `d1-d2-d3-d4[0..2]-d4[2..8]` in text.
    pub const fn from_fields(d1: u32, d2: u16, d3: u16, d4: [u8; 8]) -> Guid {
        let a = d1.to_le_bytes();
        let b = d2.to_le_bytes();
        let c = d3.to_le_bytes();
        Guid([a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d4[0], d4[1], d4[2], d4[3], d4[4], d4[5], d4[6], d4[7]])
    }

    /// Parses the text form `XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX` (either
    /// case); `None` if `s` is not one.
    pub fn parse(s: &str) -> Option<Guid> {
        let s = s.as_bytes();
        if s.len() != 36 || [8, 13, 18, 23].iter().any(|&i| s[i] != b'-') {
            return None;
        }
        let mut text = [0u8; 16];
        let hex = s.iter().filter(|&&c| c != b'-');
        let mut digits = [0u8; 32];
        let mut n = 0;
        for &c in hex {
            if n == 32 {
                return None;
            }
            digits[n] = (c as char).to_digit(16)? as u8;
            n += 1;
        }
        if n != 32 {
            return None;
        }
        for (i, byte) in text.iter_mut().enumerate() {
            *byte = digits[2 * i] << 4 | digits[2 * i + 1];
        }
        let t = text;
        Some(Guid::from_fields(
            u32::from_be_bytes([t[0], t[1], t[2], t[3]]),
            u16::from_be_bytes([t[4], t[5]]),
            u16::from_be_bytes([t[6], t[7]]),
            [t[8], t[9], t[10], t[11], t[12], t[13], t[14], t[15]],
        ))
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:08X}-{:04X}-{:04X}-{:02X}{:02X}-{:02X}{:02X}{:02X}{:02X}{:02X}{:02X}",
            u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            u16::from_le_bytes([b[4], b[5]]),
            u16::from_le_bytes([b[6], b[7]]),
            b[8],
            b[9],
            b[10],
            b[11],
            b[12],
            b[13],
            b[14],
            b[15]
        )
    }
}

/// A used entry of the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GptPartition {
    /// The slot in the entry array (0-based; tools number from 1).
    pub index: u32,
    /// What the partition holds ([`Guid::LINUX_FILESYSTEM`]…); never zero.
    pub type_guid: Guid,
    /// This partition's own GUID.
    pub unique_guid: Guid,
    /// First sector.
    pub first_lba: u64,
    /// Last sector, inclusive.
    pub last_lba: u64,
    /// Attribute bits (bit 0: required by the platform, …).
    pub attributes: u64,
    /// The name, at most 36 UTF-16 code units. Invalid UTF-16 on disk is
    /// read with U+FFFD in its place.
    pub name: String,
}

impl GptPartition {
    /// Sectors in the partition (0 if `last_lba` is below `first_lba`,
    /// which no table read or written here holds; `u64::MAX` for the
    /// whole 64-bit range).
    pub fn sector_count(&self) -> u64 {
        self.last_lba.checked_sub(self.first_lba).map_or(0, |n| n.saturating_add(1))
    }
}

/// A GUID partition table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gpt {
    /// The disk's GUID.
    pub disk_guid: Guid,
    /// The first sector partitions may use.
    pub first_usable_lba: u64,
    /// The last sector partitions may use, inclusive.
    pub last_usable_lba: u64,
    /// Slots in the entry array.
    pub entry_count: u32,
    /// The used entries, by increasing `index`.
    pub partitions: Vec<GptPartition>,
}

/// What [`Gpt::read`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GptRead {
    /// The table: the primary's if it is valid, else the backup's.
    pub gpt: Gpt,
    /// Why the primary header or entries were not used, if they were not.
    pub primary_error: Option<TableError>,
    /// Why the backup header or entries are not valid, if they are not.
    pub backup_error: Option<TableError>,
}

/// The fields of a header that locate and check the rest.
struct Header {
    alternate_lba: u64,
    first_usable_lba: u64,
    last_usable_lba: u64,
    disk_guid: Guid,
    entries_lba: u64,
    entry_count: u32,
    entry_size: u32,
    entries_crc: u32,
}

impl Gpt {
    /// An empty table for `info`'s disk, with 128 entries and the usable
    /// range every tool makes (LBA 34 to the last LBA − 33 for 512-byte
    /// sectors). The caller provides `disk_guid`, normally random.
    ///
    /// Errors with [`TableError::Invalid`] if the disk is too small.
    pub fn new(disk_guid: Guid, info: BlockInfo) -> Result<Gpt, TableError> {
        let array_sectors = array_sectors(info.sector_size, ENTRY_COUNT, ENTRY_LEN as u32);
        let reserved = 2 * array_sectors + 3;
        if info.sector_count <= reserved {
            return Err(TableError::Invalid(format!(
                "a {}-sector disk is too small for a GPT ({reserved} sectors of metadata)",
                info.sector_count
            )));
        }
        Ok(Gpt {
            disk_guid,
            first_usable_lba: 2 + array_sectors,
            last_usable_lba: info.sector_count - 2 - array_sectors,
            entry_count: ENTRY_COUNT,
            partitions: Vec::new(),
        })
    }

    /// The partition in slot `index`, if used.
    pub fn partition(&self, index: u32) -> Option<&GptPartition> {
        self.partitions.iter().find(|p| p.index == index)
    }

    /// Reads the table of `dev`: the primary header and entries if valid,
    /// else the backup ones (the reason is in
    /// [`GptRead::primary_error`]). Both copies are checked (signature,
    /// revision, header size, both CRC32s, the header's own LBA, usable
    /// range inside the disk and clear of the metadata, every entry inside
    /// the usable range, no overlaps).
    ///
    /// Errors: [`TableError::Device`] if reading fails, otherwise the
    /// primary's error if neither copy is valid.
    pub async fn read<B: BlockDevice>(dev: &B) -> Result<GptRead, TableError> {
        let info = dev.info();
        if info.sector_count < 3 {
            return Err(TableError::Invalid(format!("a {}-sector disk cannot hold a GPT", info.sector_count)));
        }
        let last = info.sector_count - 1;
        let primary = read_copy(dev, 1).await;
        let backup_lba = match &primary {
            Ok((_, alternate)) if *alternate > 1 && *alternate <= last => *alternate,
            _ => last,
        };
        let backup = read_copy(dev, backup_lba).await;
        match (primary, backup) {
            (Err(TableError::Device(e)), _) | (_, Err(TableError::Device(e))) => Err(TableError::Device(e)),
            (Ok((gpt, _)), backup) => Ok(GptRead { gpt, primary_error: None, backup_error: backup.err() }),
            (Err(primary), Ok((gpt, _))) => Ok(GptRead { gpt, primary_error: Some(primary), backup_error: None }),
            (Err(primary), Err(_)) => Err(primary),
        }
    }

    /// Checks the table against a disk of `info`'s geometry: the usable
    /// range lies between the metadata at each end, every partition is
    /// inside it with a nonzero type, slots are distinct and below
    /// `entry_count`, names fit, and no partitions overlap.
    pub fn check(&self, info: BlockInfo) -> Result<(), TableError> {
        let array_sectors = array_sectors(info.sector_size, self.entry_count, ENTRY_LEN as u32);
        let invalid = |m: String| Err(TableError::Invalid(m));
        if self.entry_count == 0 || u64::from(self.entry_count) * ENTRY_LEN as u64 > MAX_ENTRY_ARRAY_BYTES {
            return invalid(format!("{} entries do not make a valid GPT entry array", self.entry_count));
        }
        if self.first_usable_lba < 2 + array_sectors
            || info.sector_count < 2 * array_sectors + 3
            || self.last_usable_lba > info.sector_count - 2 - array_sectors
            || self.first_usable_lba > self.last_usable_lba
        {
            return invalid(format!(
                "usable range {}..={} does not fit between the GPT metadata of a {}-sector disk",
                self.first_usable_lba, self.last_usable_lba, info.sector_count
            ));
        }
        for (i, p) in self.partitions.iter().enumerate() {
            let n = p.index + 1;
            if p.index >= self.entry_count || self.partitions[..i].iter().any(|q| q.index == p.index) {
                return invalid(format!(
                    "partition {n}: slot missing or used twice in a {}-entry table",
                    self.entry_count
                ));
            }
            if p.type_guid == Guid::ZERO {
                return invalid(format!("partition {n}: the zero type GUID marks an unused entry"));
            }
            if p.name.encode_utf16().count() > NAME_UNITS {
                return invalid(format!("partition {n}: name {:?} is longer than 36 UTF-16 code units", p.name));
            }
            if p.first_lba > p.last_lba || p.first_lba < self.first_usable_lba || p.last_lba > self.last_usable_lba {
                return invalid(format!(
                    "partition {n}: sectors {}..={} are not inside the usable range {}..={}",
                    p.first_lba, p.last_lba, self.first_usable_lba, self.last_usable_lba
                ));
            }
        }
        if let Some((a, b)) = first_overlap(&self.partitions) {
            return invalid(format!("partitions {} and {} overlap", a + 1, b + 1));
        }
        Ok(())
    }

    /// Checks the table, then writes a protective MBR, the backup entries
    /// and header, flushes, writes the primary entries and header, and
    /// flushes again: the primary header is the commit point, so a crash
    /// leaves one valid copy. `Ok`: the table is durable.
    pub async fn write<B: BlockDevice>(&self, dev: &B) -> Result<(), TableError> {
        let info = dev.info();
        self.check(info).map_err(|e| TableError::Invalid(format!("refusing to write the GPT: {e}")))?;
        let sector_size = info.sector_size as usize;
        let array_sectors = array_sectors(info.sector_size, self.entry_count, ENTRY_LEN as u32);
        let last = info.sector_count - 1;
        let mut array = vec![0u8; array_sectors as usize * sector_size];
        for p in &self.partitions {
            let e = &mut array[p.index as usize * ENTRY_LEN..(p.index as usize + 1) * ENTRY_LEN];
            e[0..16].copy_from_slice(&p.type_guid.0);
            e[16..32].copy_from_slice(&p.unique_guid.0);
            e[32..40].copy_from_slice(&p.first_lba.to_le_bytes());
            e[40..48].copy_from_slice(&p.last_lba.to_le_bytes());
            e[48..56].copy_from_slice(&p.attributes.to_le_bytes());
            for (k, unit) in p.name.encode_utf16().enumerate() {
                e[56 + 2 * k..58 + 2 * k].copy_from_slice(&unit.to_le_bytes());
            }
        }
        let array_len = self.entry_count as usize * ENTRY_LEN;
        let entries_crc = crc32fast::hash(&array[..array_len]);
        let backup_array = last - array_sectors;
        let header = |my_lba: u64, alternate_lba: u64, entries_lba: u64| {
            let mut h = vec![0u8; sector_size];
            h[0..8].copy_from_slice(SIGNATURE);
            h[8..12].copy_from_slice(&REVISION.to_le_bytes());
            h[12..16].copy_from_slice(&(HEADER_LEN as u32).to_le_bytes());
            h[24..32].copy_from_slice(&my_lba.to_le_bytes());
            h[32..40].copy_from_slice(&alternate_lba.to_le_bytes());
            h[40..48].copy_from_slice(&self.first_usable_lba.to_le_bytes());
            h[48..56].copy_from_slice(&self.last_usable_lba.to_le_bytes());
            h[56..72].copy_from_slice(&self.disk_guid.0);
            h[72..80].copy_from_slice(&entries_lba.to_le_bytes());
            h[80..84].copy_from_slice(&self.entry_count.to_le_bytes());
            h[84..88].copy_from_slice(&(ENTRY_LEN as u32).to_le_bytes());
            h[88..92].copy_from_slice(&entries_crc.to_le_bytes());
            let crc = crc32fast::hash(&h[..HEADER_LEN]);
            h[16..20].copy_from_slice(&crc.to_le_bytes());
            h
        };
        let mut mbr = vec![0u8; sector_size];
        Mbr::protective(info.sector_count).emit(&mut mbr)?;
        let io = TableError::device;
        dev.write(0, &mbr).await.map_err(io)?;
        dev.write(backup_array, &array).await.map_err(io)?;
        dev.write(last, &header(last, 1, backup_array)).await.map_err(io)?;
        dev.flush().await.map_err(io)?;
        dev.write(2, &array).await.map_err(io)?;
        dev.write(1, &header(1, last, 2)).await.map_err(io)?;
        dev.flush().await.map_err(io)
    }
}

/// Sectors an entry array of `count` entries of `size` bytes occupies.
fn array_sectors(sector_size: u32, count: u32, size: u32) -> u64 {
    (u64::from(count) * u64::from(size)).div_ceil(u64::from(sector_size))
}

/// The slots of the first two overlapping partitions, if any.
fn first_overlap(partitions: &[GptPartition]) -> Option<(u32, u32)> {
    let mut by_start: Vec<&GptPartition> = partitions.iter().collect();
    by_start.sort_by_key(|p| p.first_lba);
    by_start.windows(2).find(|w| w[1].first_lba <= w[0].last_lba).map(|w| (w[0].index, w[1].index))
}

fn le64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

use crate::mbr::le32;

/// Reads and checks the header at `lba` and its entries; returns the table
/// and the header's alternate LBA.
async fn read_copy<B: BlockDevice>(dev: &B, lba: u64) -> Result<(Gpt, u64), TableError> {
    let info = dev.info();
    let mut sector = vec![0u8; info.sector_size as usize];
    dev.read(lba, &mut sector).await.map_err(TableError::device)?;
    let header = parse_header(&sector, lba, info)?;
    let array_len = u64::from(header.entry_count) * u64::from(header.entry_size);
    let sectors = array_sectors(info.sector_size, header.entry_count, header.entry_size);
    // parse_header bounded the array by MAX_ENTRY_ARRAY_BYTES and the disk.
    let mut array = vec![0u8; (sectors * u64::from(info.sector_size)) as usize];
    dev.read(header.entries_lba, &mut array).await.map_err(TableError::device)?;
    let array_offset = header.entries_lba.saturating_mul(u64::from(info.sector_size));
    let crc = crc32fast::hash(&array[..array_len as usize]);
    if crc != header.entries_crc {
        return Err(TableError::corrupt(
            array_offset,
            format!(
                "GPT entry array of the header at LBA {lba}: CRC32 is {crc:#010x}, the header says {:#010x}",
                header.entries_crc
            ),
        ));
    }
    let gpt = parse_entries(&header, &array[..array_len as usize], array_offset)?;
    Ok((gpt, header.alternate_lba))
}

/// Checks a header sector read from `lba` (UEFI §5.3.2).
fn parse_header(h: &[u8], lba: u64, info: BlockInfo) -> Result<Header, TableError> {
    let base = lba.saturating_mul(u64::from(info.sector_size));
    let bad = |field: u64, m: String| {
        Err(TableError::corrupt(base.saturating_add(field), format!("GPT header at LBA {lba}: {m}")))
    };
    if &h[0..8] != SIGNATURE {
        return bad(0, "no \"EFI PART\" signature".into());
    }
    let revision = le32(&h[8..]);
    if revision >> 16 != 1 {
        return bad(8, format!("unsupported revision {revision:#010x}"));
    }
    let header_size = le32(&h[12..]) as usize;
    if header_size < HEADER_LEN || header_size > h.len() {
        return bad(12, format!("header size {header_size} is not between {HEADER_LEN} and the sector size"));
    }
    let stored = le32(&h[16..]);
    let mut copy = h[..header_size].to_vec();
    copy[16..20].fill(0);
    let crc = crc32fast::hash(&copy);
    if crc != stored {
        return bad(16, format!("header CRC32 is {stored:#010x}, computed {crc:#010x}"));
    }
    let my_lba = le64(&h[24..]);
    if my_lba != lba {
        return bad(24, format!("header says it is at LBA {my_lba}"));
    }
    let header = Header {
        alternate_lba: le64(&h[32..]),
        first_usable_lba: le64(&h[40..]),
        last_usable_lba: le64(&h[48..]),
        disk_guid: Guid(h[56..72].try_into().unwrap_or_default()),
        entries_lba: le64(&h[72..]),
        entry_count: le32(&h[80..]),
        entry_size: le32(&h[84..]),
        entries_crc: le32(&h[88..]),
    };
    let count = info.sector_count;
    if header.entry_size < ENTRY_LEN as u32 || !header.entry_size.is_power_of_two() {
        return bad(84, format!("entry size {} is not 128 × a power of two", header.entry_size));
    }
    let array_len = u64::from(header.entry_count) * u64::from(header.entry_size);
    if header.entry_count == 0 || array_len > MAX_ENTRY_ARRAY_BYTES {
        return bad(
            80,
            format!(
                "{} entries of {} bytes exceed the {MAX_ENTRY_ARRAY_BYTES}-byte bound",
                header.entry_count, header.entry_size
            ),
        );
    }
    let sectors = array_sectors(info.sector_size, header.entry_count, header.entry_size);
    let array_end = header.entries_lba.checked_add(sectors);
    if header.entries_lba < 2 || array_end.is_none_or(|end| end > count - 1) {
        return bad(
            72,
            format!("entry array of {sectors} sectors at LBA {} is not inside the disk", header.entries_lba),
        );
    }
    let array_end = header.entries_lba + sectors;
    let (first, last) = (header.first_usable_lba, header.last_usable_lba);
    if first < 2 || last >= count - 1 || first > last.saturating_add(1) {
        return bad(40, format!("usable range {first}..={last} does not fit a {count}-sector disk"));
    }
    if header.entries_lba <= last && first < array_end {
        return bad(
            72,
            format!("entry array at LBA {} overlaps the usable range {first}..={last}", header.entries_lba),
        );
    }
    Ok(header)
}

/// Parses and checks an entry array whose first byte is at disk byte
/// `offset`.
fn parse_entries(header: &Header, array: &[u8], offset: u64) -> Result<Gpt, TableError> {
    let mut partitions = Vec::new();
    for (i, e) in array.chunks_exact(header.entry_size as usize).enumerate() {
        let type_guid = Guid(e[0..16].try_into().unwrap_or_default());
        if type_guid == Guid::ZERO {
            continue;
        }
        let at = offset.saturating_add((i * header.entry_size as usize) as u64);
        let units = e[56..128].chunks_exact(2).map(|u| u16::from_le_bytes([u[0], u[1]])).take_while(|&u| u != 0);
        let p = GptPartition {
            index: i as u32,
            type_guid,
            unique_guid: Guid(e[16..32].try_into().unwrap_or_default()),
            first_lba: le64(&e[32..]),
            last_lba: le64(&e[40..]),
            attributes: le64(&e[48..]),
            name: char::decode_utf16(units).map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER)).collect(),
        };
        if p.first_lba > p.last_lba || p.first_lba < header.first_usable_lba || p.last_lba > header.last_usable_lba {
            return Err(TableError::corrupt(
                at.saturating_add(32),
                format!(
                    "GPT entry {}: sectors {}..={} are not inside the usable range {}..={}",
                    i + 1,
                    p.first_lba,
                    p.last_lba,
                    header.first_usable_lba,
                    header.last_usable_lba
                ),
            ));
        }
        partitions.push(p);
    }
    if let Some((a, b)) = first_overlap(&partitions) {
        let at = offset.saturating_add(u64::from(b) * u64::from(header.entry_size) + 32);
        return Err(TableError::corrupt(at, format!("GPT entries {} and {} overlap", a + 1, b + 1)));
    }
    Ok(Gpt {
        disk_guid: header.disk_guid,
        first_usable_lba: header.first_usable_lba,
        last_usable_lba: header.last_usable_lba,
        entry_count: header.entry_count,
        partitions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemBlock;
    use alloc::string::ToString;
    use futures::executor::block_on;
    use proptest::prelude::*;

    const DISK: Guid = Guid::from_fields(0x1234_5678, 0x9abc, 0xdef0, [1, 2, 3, 4, 5, 6, 7, 8]);

    fn two_partitions(info: BlockInfo) -> Gpt {
        let mut gpt = Gpt::new(DISK, info).unwrap();
        gpt.partitions.push(GptPartition {
            index: 0,
            type_guid: Guid::EFI_SYSTEM,
            unique_guid: Guid::from_fields(1, 2, 3, [4; 8]),
            first_lba: 2048,
            last_lba: 4095,
            attributes: 1,
            name: "EFI system".into(),
        });
        gpt.partitions.push(GptPartition {
            index: 2,
            type_guid: Guid::LINUX_FILESYSTEM,
            unique_guid: Guid::from_fields(5, 6, 7, [8; 8]),
            first_lba: 4096,
            last_lba: gpt.last_usable_lba,
            attributes: 0,
            name: "données ✓".into(),
        });
        gpt
    }

    fn written(sectors: u64) -> (MemBlock, Gpt) {
        let dev = MemBlock::new(512, sectors).unwrap();
        let gpt = two_partitions(dev.info());
        block_on(gpt.write(&dev)).unwrap();
        (dev, gpt)
    }

    #[test]
    fn sector_counts_never_overflow() {
        let p = |first_lba, last_lba| GptPartition {
            index: 0,
            type_guid: Guid::LINUX_FILESYSTEM,
            unique_guid: Guid::ZERO,
            first_lba,
            last_lba,
            attributes: 0,
            name: String::new(),
        };
        assert_eq!(p(34, 34).sector_count(), 1);
        assert_eq!(p(0, u64::MAX).sector_count(), u64::MAX);
        assert_eq!(p(10, 9).sector_count(), 0);
    }

    #[test]
    fn guid_text_round_trips_with_mixed_endianness() {
        let text = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
        assert_eq!(Guid::parse(text), Some(Guid::EFI_SYSTEM));
        assert_eq!(Guid::EFI_SYSTEM.to_string(), text);
        assert_eq!(Guid::EFI_SYSTEM.0[..4], [0x28, 0x73, 0x2a, 0xc1]);
        assert_eq!(Guid::parse(&text.to_lowercase()), Some(Guid::EFI_SYSTEM));
        assert_eq!(Guid::parse("C12A7328-F81F-11D2-BA4B-00A0C93EC93"), None);
        assert_eq!(Guid::parse("C12A7328+F81F-11D2-BA4B-00A0C93EC93B"), None);
        assert_eq!(Guid::parse("G12A7328-F81F-11D2-BA4B-00A0C93EC93B"), None);
    }

    #[test]
    fn round_trips_and_both_copies_are_valid() {
        let (dev, gpt) = written(20_000);
        let read = block_on(Gpt::read(&dev)).unwrap();
        assert_eq!(read, GptRead { gpt: gpt.clone(), primary_error: None, backup_error: None });
        assert_eq!(read.gpt.first_usable_lba, 34);
        assert_eq!(read.gpt.last_usable_lba, 20_000 - 34);
        assert_eq!(read.gpt.partition(2).unwrap().name, "données ✓");
        assert!(block_on(Mbr::read(&dev)).unwrap().is_protective());
    }

    #[test]
    fn damaged_primary_header_is_recovered_from_the_backup_and_reported() {
        let (dev, gpt) = written(20_000);
        block_on(dev.write(1, &[0; 512])).unwrap();
        let read = block_on(Gpt::read(&dev)).unwrap();
        assert_eq!(read.gpt, gpt);
        let e = read.primary_error.unwrap();
        assert!(matches!(e, TableError::Corrupt { offset: 512, .. }), "{e}");
        assert!(read.backup_error.is_none());
    }

    #[test]
    fn wrong_crcs_are_rejected_naming_the_offset() {
        let (dev, _) = written(20_000);
        let mut h = [0u8; 512];
        block_on(dev.read(1, &mut h)).unwrap();
        h[40] ^= 1; // first usable LBA, covered by the header CRC
        block_on(dev.write(1, &h)).unwrap();
        let read = block_on(Gpt::read(&dev)).unwrap();
        let e = read.primary_error.unwrap().to_string();
        assert!(e.starts_with("byte 528: GPT header at LBA 1: header CRC32 is"), "{e}");

        // Damage a backup entry instead: the backup's array CRC fails.
        let (dev, _) = written(20_000);
        let backup_array = 20_000 - 1 - 32;
        block_on(dev.write(backup_array, &[0xff; 512])).unwrap();
        let read = block_on(Gpt::read(&dev)).unwrap();
        assert!(read.primary_error.is_none());
        let e = read.backup_error.unwrap();
        assert!(matches!(&e, TableError::Corrupt { offset, .. } if *offset == backup_array * 512), "{e}");
        assert!(e.to_string().contains("GPT entry array of the header at LBA 19999: CRC32 is"), "{e}");

        // Both copies damaged: the primary's error.
        block_on(dev.write(1, &[0; 512])).unwrap();
        let e = block_on(Gpt::read(&dev)).unwrap_err();
        assert!(e.to_string().contains("no \"EFI PART\" signature"), "{e}");
    }

    #[test]
    fn writer_refuses_partitions_outside_the_disk_or_overlapping() {
        let dev = MemBlock::new(512, 20_000).unwrap();
        let mut gpt = two_partitions(dev.info());
        gpt.partitions[1].last_lba = 20_000;
        let e = block_on(gpt.write(&dev)).unwrap_err().to_string();
        assert!(e.contains("partition 3: sectors 4096..=20000 are not inside the usable range 34..=19966"), "{e}");
        let mut gpt = two_partitions(dev.info());
        gpt.partitions[1].first_lba = 4000;
        assert!(block_on(gpt.write(&dev)).unwrap_err().to_string().contains("partitions 1 and 3 overlap"));
        let mut gpt = two_partitions(dev.info());
        gpt.partitions[0].name = "x".repeat(37);
        assert!(block_on(gpt.write(&dev)).unwrap_err().to_string().contains("longer than 36"));
        assert!(dev.snapshot().iter().all(|&b| b == 0), "nothing written");
        assert!(Gpt::new(DISK, MemBlock::new(512, 67).unwrap().info()).is_err());
    }

    #[test]
    fn reader_refuses_an_entry_outside_the_usable_range() {
        // Forge a table whose header and CRCs are right but whose entry
        // goes past the usable range, as a damaged or hostile disk might.
        let dev = MemBlock::new(512, 20_000).unwrap();
        let gpt = two_partitions(dev.info());
        block_on(gpt.write(&dev)).unwrap();
        // Entry 3 (slot 2) sits 256 bytes into the primary array at LBA 2;
        // its last LBA is at byte 40 of the entry. Recompute both CRCs.
        let mut image = dev.into_vec();
        let last = 30_000u64.to_le_bytes();
        image[2 * 512 + 256 + 40..2 * 512 + 256 + 48].copy_from_slice(&last);
        let crc = crc32fast::hash(&image[2 * 512..2 * 512 + 128 * 128]);
        image[512 + 88..512 + 92].copy_from_slice(&crc.to_le_bytes());
        image[512 + 16..512 + 20].fill(0);
        let hcrc = crc32fast::hash(&image[512..512 + 92]);
        image[512 + 16..512 + 20].copy_from_slice(&hcrc.to_le_bytes());
        let dev = MemBlock::from_vec(512, image).unwrap();
        let read = block_on(Gpt::read(&dev)).unwrap();
        let e = read.primary_error.unwrap();
        assert_eq!(
            e.to_string(),
            "byte 1312: GPT entry 3: sectors 4096..=30000 are not inside the usable range 34..=19966"
        );
        assert_eq!(read.gpt, gpt, "the backup is used");
    }

    #[test]
    fn four_kib_sectors_use_four_sector_entry_arrays() {
        let dev = MemBlock::new(4096, 1000).unwrap();
        let mut gpt = Gpt::new(DISK, dev.info()).unwrap();
        assert_eq!((gpt.first_usable_lba, gpt.last_usable_lba), (6, 994));
        gpt.partitions.push(GptPartition {
            index: 127,
            type_guid: Guid::LINUX_FILESYSTEM,
            unique_guid: DISK,
            first_lba: 6,
            last_lba: 994,
            attributes: 0,
            name: String::new(),
        });
        block_on(gpt.write(&dev)).unwrap();
        assert_eq!(block_on(Gpt::read(&dev)).unwrap().gpt, gpt);
    }

    proptest! {
        /// Whatever the disk holds, reading its GPT never panics.
        #[test]
        fn arbitrary_disks_never_panic(
            header in proptest::collection::vec(any::<u8>(), 512),
            patch in proptest::collection::vec((0usize..92, any::<u8>()), 0..8),
            entries in proptest::collection::vec(any::<u8>(), 0..1024),
            sectors in 3u64..80,
        ) {
            // Start from a valid table sometimes, so the deeper checks run.
            let dev = MemBlock::new(512, sectors.max(70)).unwrap();
            if sectors >= 70 {
                let gpt = Gpt::new(DISK, dev.info()).unwrap();
                block_on(gpt.write(&dev)).unwrap();
                let mut h = [0u8; 512];
                block_on(dev.read(1, &mut h)).unwrap();
                for (at, v) in patch {
                    h[at] = v;
                }
                block_on(dev.write(1, &h)).unwrap();
            } else {
                block_on(dev.write(1, &header)).unwrap();
            }
            let n = entries.len() / 512;
            block_on(dev.write(2, &entries[..n * 512])).unwrap();
            let _ = block_on(Gpt::read(&dev));
        }

        #[test]
        fn parse_header_never_panics(h in proptest::collection::vec(any::<u8>(), 512), lba: u64, count: u64) {
            let info = BlockInfo { sector_size: 512, sector_count: count.max(3), read_write: true };
            if let Ok(header) = parse_header(&h, lba, info) {
                let array = vec![0u8; (header.entry_count * header.entry_size) as usize];
                let _ = parse_entries(&header, &array, 0);
            }
        }
    }
}
