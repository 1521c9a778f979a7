//! The classic MBR partition table: four primary entries in sector 0.
//!
//! Reading list: the IBM PC/AT partition table as documented by the UEFI
//! specification 2.10, §5.2.1 ("Legacy Master Boot Record") and §5.2.3
//! ("Protective MBR").
//!
//! Layout of sector 0: boot code (bytes 0..440), the disk signature
//! (440..444), four 16-byte entries at 446, and the signature `55 AA` at
//! 510. Each entry: boot indicator (0x00 or 0x80), starting CHS, type, ending
//! CHS, first LBA (u32 LE), sector count (u32 LE). Extended partitions
//! (types 0x05, 0x0F, 0x85) are reported as entries; their logical
//! partitions are not followed.

use alloc::format;
use alloc::string::String;

use mirage_types::block::{BlockDevice, BlockError, ErrorKind, Operation};

/// Where the disk signature starts.
const DISK_SIGNATURE: usize = 440;
/// Where the first of the four entries starts.
const TABLE: usize = 446;
/// Where `55 AA` sits.
const SIGNATURE: usize = 510;
/// Bytes per entry.
const ENTRY_LEN: usize = 16;

/// The partition type of a GPT protective MBR entry (UEFI §5.2.3).
pub const PROTECTIVE_TYPE: u8 = 0xee;

/// Why a partition table could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TableError {
    /// The device failed.
    #[error("partition table I/O failed: {0}")]
    Device(BlockError),
    /// The bytes on the disk are not a valid table; `offset` is the byte
    /// offset on the disk of the field at fault.
    #[error("byte {offset}: {message}")]
    Corrupt {
        /// Byte offset on the disk (from the start of sector 0).
        offset: u64,
        /// What is wrong.
        message: String,
    },
    /// A table given to a writer does not fit the disk or itself, or the
    /// disk cannot hold a table.
    #[error("{0}")]
    Invalid(String),
}

impl mirage_types::block::Error for TableError {
    fn kind(&self) -> ErrorKind {
        match self {
            TableError::Device(e) => e.kind(),
            TableError::Corrupt { .. } | TableError::Invalid(_) => ErrorKind::Other,
        }
    }
}

impl TableError {
    pub(crate) fn device<E: mirage_types::block::Error>(e: E) -> TableError {
        TableError::Device(BlockError::from_error(&e))
    }

    pub(crate) fn corrupt(offset: u64, message: String) -> TableError {
        TableError::Corrupt { offset, message }
    }
}

/// One of the four primary entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MbrPartition {
    /// The boot indicator is 0x80 (active).
    pub bootable: bool,
    /// The partition type (0x83 Linux, 0x0c FAT32 LBA, 0xee GPT protective…).
    pub partition_type: u8,
    /// First sector.
    pub first_lba: u32,
    /// Length in sectors (never 0 in a parsed entry).
    pub sector_count: u32,
}

impl MbrPartition {
    /// One past the last sector.
    pub fn end_lba(&self) -> u64 {
        u64::from(self.first_lba) + u64::from(self.sector_count)
    }
}

/// An MBR partition table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mbr {
    /// The 32-bit disk signature at byte 440.
    pub disk_signature: u32,
    /// The four primary entries; `None` is an empty entry (type 0).
    pub partitions: [Option<MbrPartition>; 4],
}

impl Mbr {
    /// Parses sector 0. Checks the `55 AA` signature and each entry's boot
    /// indicator; an entry of type 0 is empty. Never panics.
    ///
    /// Errors with [`TableError::Corrupt`] naming the offending byte. Does
    /// not check the entries against a disk: see [`Mbr::check`].
    pub fn parse(sector: &[u8]) -> Result<Mbr, TableError> {
        if sector.len() < 512 {
            return Err(TableError::Invalid(format!("an MBR needs a 512-byte sector, got {} bytes", sector.len())));
        }
        if sector[SIGNATURE..SIGNATURE + 2] != [0x55, 0xaa] {
            return Err(TableError::corrupt(
                SIGNATURE as u64,
                format!("no MBR: signature is {:02x} {:02x}, expected 55 aa", sector[SIGNATURE], sector[SIGNATURE + 1]),
            ));
        }
        let mut mbr = Mbr { disk_signature: le32(&sector[DISK_SIGNATURE..]), partitions: [None; 4] };
        for (i, slot) in mbr.partitions.iter_mut().enumerate() {
            let at = TABLE + i * ENTRY_LEN;
            let e = &sector[at..at + ENTRY_LEN];
            let (boot, partition_type) = (e[0], e[4]);
            if partition_type == 0 {
                continue;
            }
            if boot != 0 && boot != 0x80 {
                return Err(TableError::corrupt(
                    at as u64,
                    format!("MBR entry {}: boot indicator {boot:#04x} is neither 0x00 nor 0x80", i + 1),
                ));
            }
            let p = MbrPartition {
                bootable: boot == 0x80,
                partition_type,
                first_lba: le32(&e[8..]),
                sector_count: le32(&e[12..]),
            };
            if p.sector_count == 0 {
                return Err(TableError::corrupt(
                    at as u64 + 12,
                    format!("MBR entry {}: type {partition_type:#04x} but 0 sectors", i + 1),
                ));
            }
            *slot = Some(p);
        }
        Ok(mbr)
    }

    /// Checks the entries against a disk of `sector_count` sectors: each
    /// lies past sector 0 and inside the disk, and none overlap. A
    /// protective entry may claim more than the disk holds (UEFI §5.2.3
    /// caps its size at 2^32 - 1 whatever the disk).
    pub fn check(&self, sector_count: u64) -> Result<(), TableError> {
        let used = || self.partitions.iter().enumerate().filter_map(|(i, p)| p.map(|p| (i, p)));
        for (i, p) in used() {
            let at = (TABLE + i * ENTRY_LEN) as u64 + 8;
            if p.first_lba == 0 {
                return Err(TableError::corrupt(at, format!("MBR entry {} starts at sector 0, the MBR itself", i + 1)));
            }
            if p.partition_type != PROTECTIVE_TYPE && p.end_lba() > sector_count {
                return Err(TableError::corrupt(
                    at,
                    format!(
                        "MBR entry {}: {} sectors at sector {} go past the end of a {sector_count}-sector disk",
                        i + 1,
                        p.sector_count,
                        p.first_lba
                    ),
                ));
            }
            for (j, q) in used().filter(|&(j, _)| j > i) {
                if u64::from(p.first_lba) < q.end_lba() && u64::from(q.first_lba) < p.end_lba() {
                    return Err(TableError::corrupt(
                        (TABLE + j * ENTRY_LEN) as u64 + 8,
                        format!("MBR entries {} and {} overlap", i + 1, j + 1),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Whether this is the protective MBR of a GPT disk: an entry of type
    /// 0xEE starting at LBA 1 (UEFI §5.2.3).
    pub fn is_protective(&self) -> bool {
        self.partitions.iter().flatten().any(|p| p.partition_type == PROTECTIVE_TYPE && p.first_lba == 1)
    }

    /// The protective MBR for a GPT disk of `sector_count` sectors.
    pub fn protective(sector_count: u64) -> Mbr {
        let count = u32::try_from(sector_count.saturating_sub(1)).unwrap_or(u32::MAX);
        let entry =
            MbrPartition { bootable: false, partition_type: PROTECTIVE_TYPE, first_lba: 1, sector_count: count };
        Mbr { disk_signature: 0, partitions: [Some(entry), None, None, None] }
    }

    /// Writes the disk signature, the four entries and `55 AA` into
    /// `sector` (at least 512 bytes), leaving the boot code and the rest
    /// of the sector as they are. CHS fields are computed as Linux fdisk
    /// does for LBA disks (255 heads, 63 sectors per track, 1023/254/63
    /// past the CHS limit).
    pub fn emit(&self, sector: &mut [u8]) -> Result<(), TableError> {
        if sector.len() < 512 {
            return Err(TableError::Invalid(format!("an MBR needs a 512-byte sector, got {} bytes", sector.len())));
        }
        sector[DISK_SIGNATURE..DISK_SIGNATURE + 4].copy_from_slice(&self.disk_signature.to_le_bytes());
        sector[444..446].fill(0);
        for (i, p) in self.partitions.iter().enumerate() {
            let e = &mut sector[TABLE + i * ENTRY_LEN..TABLE + (i + 1) * ENTRY_LEN];
            e.fill(0);
            let Some(p) = p else { continue };
            e[0] = if p.bootable { 0x80 } else { 0 };
            e[4] = p.partition_type;
            if p.partition_type == PROTECTIVE_TYPE {
                // UEFI §5.2.3 fixes these: start CHS 0x000200, end 0xFFFFFF.
                e[1..4].copy_from_slice(&[0x00, 0x02, 0x00]);
                e[5..8].copy_from_slice(&[0xff, 0xff, 0xff]);
            } else {
                e[1..4].copy_from_slice(&chs(u64::from(p.first_lba)));
                e[5..8].copy_from_slice(&chs(p.end_lba().saturating_sub(1)));
            }
            e[8..12].copy_from_slice(&p.first_lba.to_le_bytes());
            e[12..16].copy_from_slice(&p.sector_count.to_le_bytes());
        }
        sector[SIGNATURE] = 0x55;
        sector[SIGNATURE + 1] = 0xaa;
        Ok(())
    }

    /// Reads, parses and [checks](Mbr::check) sector 0 of `dev`.
    pub async fn read<B: BlockDevice>(dev: &B) -> Result<Mbr, TableError> {
        let info = dev.info();
        let mut sector = alloc::vec![0u8; info.sector_size as usize];
        dev.read(0, &mut sector).await.map_err(TableError::device)?;
        let mbr = Mbr::parse(&sector)?;
        mbr.check(info.sector_count)?;
        Ok(mbr)
    }

    /// Checks the table against `dev`, writes it into sector 0 (keeping the
    /// boot code there) and flushes. `Ok`: the table is durable. On `Err`
    /// from the device, sector 0 may hold the old or the new table.
    pub async fn write<B: BlockDevice>(&self, dev: &B) -> Result<(), TableError> {
        let info = dev.info();
        self.check(info.sector_count).map_err(|e| TableError::Invalid(format!("refusing to write the MBR: {e}")))?;
        info.check(Operation::Write, 0, info.sector_size as usize).map_err(TableError::Device)?;
        let mut sector = alloc::vec![0u8; info.sector_size as usize];
        dev.read(0, &mut sector).await.map_err(TableError::device)?;
        self.emit(&mut sector)?;
        dev.write(0, &sector).await.map_err(TableError::device)?;
        dev.flush().await.map_err(TableError::device)
    }
}

/// The CHS address of `lba` in the 255-head, 63-sector geometry Linux
/// tools assume, clamped to 1023/254/63, encoded as in an entry.
fn chs(lba: u64) -> [u8; 3] {
    const HEADS: u64 = 255;
    const SECTORS: u64 = 63;
    let cylinder = lba / (HEADS * SECTORS);
    let (c, h, s) =
        if cylinder > 1023 { (1023, 254, 63) } else { (cylinder, (lba / SECTORS) % HEADS, lba % SECTORS + 1) };
    [h as u8, (s as u8) | (((c >> 2) & 0xc0) as u8), c as u8]
}

pub(crate) fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemBlock;
    use alloc::string::ToString;
    use alloc::vec;
    use futures::executor::block_on;
    use proptest::prelude::*;

    fn linux(first_lba: u32, sector_count: u32) -> Option<MbrPartition> {
        Some(MbrPartition { bootable: false, partition_type: 0x83, first_lba, sector_count })
    }

    #[test]
    fn round_trips_through_a_device_and_keeps_the_boot_code() {
        let dev = MemBlock::new(512, 10_000).unwrap();
        block_on(dev.write(0, &[0x90; 512])).unwrap();
        let mbr = Mbr {
            disk_signature: 0xdead_beef,
            partitions: [
                linux(2048, 4096),
                None,
                Some(MbrPartition { bootable: true, partition_type: 0x0c, first_lba: 6144, sector_count: 3856 }),
                None,
            ],
        };
        block_on(mbr.write(&dev)).unwrap();
        assert_eq!(block_on(Mbr::read(&dev)).unwrap(), mbr);
        let image = dev.into_vec();
        assert_eq!(image[..440], [0x90; 440]);
        assert_eq!(image[510..512], [0x55, 0xaa]);
        // CHS of LBA 2048: cylinder 0, head 32, sector 33.
        assert_eq!(image[447..450], [32, 33, 0]);
    }

    #[test]
    fn chs_follows_the_lba_geometry_and_clamps() {
        assert_eq!(chs(0), [0, 1, 0]);
        assert_eq!(chs(63), [1, 1, 0]);
        // Cylinder 300 = 0b1_0010_1100: its top two bits go to the sector byte.
        assert_eq!(chs(255 * 63 * 300), [0, 0b0100_0001, 0b0010_1100]);
        assert_eq!(chs(u64::from(u32::MAX)), [254, 0xff, 0xff]);
    }

    #[test]
    fn refuses_bad_signature_and_boot_flag_naming_the_offset() {
        let mut sector = [0u8; 512];
        let e = Mbr::parse(&sector).unwrap_err();
        assert!(matches!(e, TableError::Corrupt { offset: 510, .. }), "{e}");
        sector[510] = 0x55;
        sector[511] = 0xaa;
        assert_eq!(Mbr::parse(&sector).unwrap(), Mbr::default());
        sector[TABLE + 16] = 0x12;
        sector[TABLE + 16 + 4] = 0x83;
        let e = Mbr::parse(&sector).unwrap_err();
        assert_eq!(e.to_string(), "byte 462: MBR entry 2: boot indicator 0x12 is neither 0x00 nor 0x80");
    }

    #[test]
    fn check_refuses_entries_outside_the_disk_or_overlapping() {
        let mbr = Mbr { disk_signature: 0, partitions: [linux(100, 50), linux(149, 10), None, None] };
        assert!(mbr.check(1000).unwrap_err().to_string().contains("entries 1 and 2 overlap"));
        let mbr = Mbr { disk_signature: 0, partitions: [linux(100, 50), None, None, linux(900, 101)] };
        let e = mbr.check(1000).unwrap_err();
        assert!(e.to_string().contains("past the end of a 1000-sector disk"), "{e}");
        let dev = MemBlock::new(512, 1000).unwrap();
        assert!(matches!(block_on(mbr.write(&dev)), Err(TableError::Invalid(_))));
        assert!(Mbr { disk_signature: 0, partitions: [linux(0, 5), None, None, None] }.check(1000).is_err());
    }

    #[test]
    fn protective_mbr_is_recognised() {
        let mbr = Mbr::protective(1 << 40);
        assert_eq!(mbr.partitions[0].unwrap().sector_count, u32::MAX);
        let mut sector = [0u8; 512];
        mbr.emit(&mut sector).unwrap();
        let back = Mbr::parse(&sector).unwrap();
        assert!(back.is_protective());
        back.check(1 << 40).unwrap();
        assert!(!Mbr::default().is_protective());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600), count: u64) {
            if let Ok(mbr) = Mbr::parse(&bytes) {
                let _ = mbr.check(count);
            }
        }

        #[test]
        fn emit_then_parse_round_trips(sig: u32, entries in proptest::array::uniform4(proptest::option::of((any::<bool>(), 1u8..=255, any::<u32>(), 1u32..)))) {
            let mut mbr = Mbr { disk_signature: sig, partitions: [None; 4] };
            for (slot, e) in mbr.partitions.iter_mut().zip(entries) {
                *slot = e.map(|(bootable, partition_type, first_lba, sector_count)| MbrPartition { bootable, partition_type, first_lba, sector_count });
            }
            let mut sector = vec![0xa5u8; 512];
            mbr.emit(&mut sector).unwrap();
            prop_assert_eq!(Mbr::parse(&sector).unwrap(), mbr);
        }
    }
}
