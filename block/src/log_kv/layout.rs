//! The on-disk format of a [`LogKv`](super::LogKv) store: superblocks and
//! log records, all little-endian. See the module documentation of
//! `log_kv` for how they are used.

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use mirage_types::kv::Key;
use mirage_types::time::PosixTime;

/// First bytes of a superblock.
pub(crate) const SUPER_MAGIC: [u8; 8] = *b"MIRAGEKV";
/// The format version. Version 1 stamped records with the superblock
/// generation, which an interrupted compaction could reuse; version 2 keeps a
/// separate, never reused record epoch (see [`Superblock::next_epoch`]).
pub(crate) const VERSION: u32 = 2;
/// Offset of the superblock's CRC, which covers the bytes before it.
const SUPER_CRC_AT: usize = 72;
/// Bytes of a superblock that carry information (the rest of its sector is zero).
const SUPER_LEN: usize = SUPER_CRC_AT + 4;
/// Sectors 0 and 1 hold the two superblock slots; the log halves follow.
pub(crate) const LOG_START: u64 = 2;

/// First bytes of a log record.
pub(crate) const RECORD_MAGIC: [u8; 4] = *b"LKVr";
/// Bytes of a record header; the keys and the value follow it.
pub(crate) const HEADER_LEN: usize = 96;
/// Offset of the CRC in a record header; the CRC covers the header bytes
/// before it, then both keys, then the value.
const CRC_AT: usize = 88;

/// One of the two copies of the store's root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Superblock {
    pub(crate) sector_size: u32,
    pub(crate) sector_count: u64,
    /// Bumped by every superblock write (twice per compaction); the valid
    /// slot with the highest generation is the one in force.
    pub(crate) generation: u64,
    pub(crate) half_sectors: u64,
    pub(crate) max_keys: u64,
    /// Which half (0 or 1) holds the live log.
    pub(crate) active_half: u32,
    /// The epoch stamped on every record of the live log, so records left
    /// from older logs in the same half are not replayed.
    pub(crate) log_epoch: u64,
    /// The lowest epoch never handed out. A compaction first makes a
    /// superblock with this bumped durable and only then writes records with
    /// the epoch it took, so records of an interrupted compaction carry an
    /// epoch no later log uses: mount can then treat any valid record of the
    /// live epoch past a damaged one as proof of acknowledged writes.
    pub(crate) next_epoch: u64,
}

impl Superblock {
    /// The slot (sector 0 or 1) this superblock is written to: alternating
    /// slots means the previous superblock survives a torn write of this one.
    pub(crate) fn slot(&self) -> u64 {
        self.generation % 2
    }

    /// First sector of half `half`.
    pub(crate) fn half_start(&self, half: u32) -> u64 {
        LOG_START + u64::from(half) * self.half_sectors
    }

    /// First sector of the live log.
    pub(crate) fn log_start(&self) -> u64 {
        self.half_start(self.active_half)
    }

    /// One past the last sector the live log may use.
    pub(crate) fn log_end(&self) -> u64 {
        self.log_start() + self.half_sectors
    }

    /// A zero-padded sector holding this superblock.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = vec![0u8; self.sector_size as usize];
        out[0..8].copy_from_slice(&SUPER_MAGIC);
        out[8..12].copy_from_slice(&VERSION.to_le_bytes());
        out[12..16].copy_from_slice(&self.sector_size.to_le_bytes());
        out[16..24].copy_from_slice(&self.sector_count.to_le_bytes());
        out[24..32].copy_from_slice(&self.generation.to_le_bytes());
        out[32..40].copy_from_slice(&self.half_sectors.to_le_bytes());
        out[40..48].copy_from_slice(&self.max_keys.to_le_bytes());
        out[48..52].copy_from_slice(&self.active_half.to_le_bytes());
        out[56..64].copy_from_slice(&self.log_epoch.to_le_bytes());
        out[64..72].copy_from_slice(&self.next_epoch.to_le_bytes());
        let crc = crc32fast::hash(&out[..SUPER_CRC_AT]);
        out[SUPER_CRC_AT..SUPER_LEN].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Parses the superblock sector of slot `slot` (0 or 1), checking its
    /// magic, version, CRC, that its generation belongs in that slot, and
    /// that its geometry and epochs are self-consistent and fit a device of
    /// `dev_sectors` sectors of `dev_sector_size` bytes, so that no
    /// arithmetic on them can overflow. The error says which field is wrong
    /// and why, for the mount error message and the check report.
    pub(crate) fn decode(
        sector: &[u8],
        slot: u64,
        dev_sector_size: u32,
        dev_sectors: u64,
    ) -> Result<Superblock, SlotError> {
        if sector.iter().all(|&b| b == 0) {
            return Err(SlotError::Blank);
        }
        if sector.len() < SUPER_LEN || sector[0..8] != SUPER_MAGIC {
            return Err(SlotError::Damaged("no LogKv superblock magic".into()));
        }
        let version = le_u32(&sector[8..12]);
        if version != VERSION {
            return Err(SlotError::Damaged(format!(
                "unsupported LogKv format version {version} (version 1 images: rebuild them with `mirage-kv build`)"
            )));
        }
        if crc32fast::hash(&sector[..SUPER_CRC_AT]) != le_u32(&sector[SUPER_CRC_AT..SUPER_LEN]) {
            return Err(SlotError::Damaged("superblock checksum mismatch (a torn write, or damage)".into()));
        }
        let sb = Superblock {
            sector_size: le_u32(&sector[12..16]),
            sector_count: le_u64(&sector[16..24]),
            generation: le_u64(&sector[24..32]),
            half_sectors: le_u64(&sector[32..40]),
            max_keys: le_u64(&sector[40..48]),
            active_half: le_u32(&sector[48..52]),
            log_epoch: le_u64(&sector[56..64]),
            next_epoch: le_u64(&sector[64..72]),
        };
        let bad = |message: String| Err(SlotError::Inconsistent { generation: sb.generation, message });
        if sb.sector_size != dev_sector_size {
            return bad(format!(
                "sector_size (bytes 12..16) is {}, but the device's sectors are {dev_sector_size} bytes",
                sb.sector_size
            ));
        }
        if sb.sector_count > dev_sectors {
            return bad(format!(
                "sector_count (bytes 16..24) is {}: the store is larger than the device of {dev_sectors} sectors \
                 (truncated image?)",
                sb.sector_count
            ));
        }
        if sb.sector_count.checked_mul(u64::from(sb.sector_size)).is_none() {
            return bad(format!(
                "sector_count (bytes 16..24) is {}: {}-byte sectors make more than 2^64 bytes",
                sb.sector_count, sb.sector_size
            ));
        }
        let log_end = sb.half_sectors.checked_mul(2).and_then(|n| n.checked_add(LOG_START));
        if sb.half_sectors == 0 || log_end.is_none_or(|end| end > sb.sector_count) {
            return bad(format!(
                "half_sectors (bytes 32..40) is {}: two log halves of that size after the {LOG_START} superblock \
                 sectors do not fit in the store's sector_count of {}",
                sb.half_sectors, sb.sector_count
            ));
        }
        if sb.active_half > 1 {
            return bad(format!("active_half (bytes 48..52) is {}, neither 0 nor 1", sb.active_half));
        }
        if sb.slot() != slot {
            return bad(format!(
                "generation (bytes 24..32) is {}, which belongs in sector {}, not sector {slot}",
                sb.generation,
                sb.slot()
            ));
        }
        if sb.log_epoch >= sb.next_epoch {
            return bad(format!(
                "next_epoch (bytes 64..72) is {}, not above the live log's log_epoch (bytes 56..64) of {}: \
                 epochs would be reused",
                sb.next_epoch, sb.log_epoch
            ));
        }
        Ok(sb)
    }
}

/// Why a superblock slot holds no usable superblock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SlotError {
    /// Every byte is zero: a slot never written (slot 0 of a new store).
    Blank,
    /// No superblock of this format: no magic, another version, or a
    /// checksum mismatch, which is what a torn write (or damage) leaves.
    Damaged(String),
    /// The checksum is right, so this is no torn write, but a field is
    /// impossible (or does not fit the device). `generation` is what the
    /// superblock claims, so mount can refuse to fall back to an older
    /// superblock than this one.
    Inconsistent { generation: u64, message: String },
}

impl fmt::Display for SlotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SlotError::Blank => f.write_str("all zero, no superblock"),
            SlotError::Damaged(message) => f.write_str(message),
            SlotError::Inconsistent { generation, message } => {
                write!(f, "superblock of generation {generation} with a valid checksum: {message}")
            }
        }
    }
}

/// The lowest record epoch a new store formatted over `sector` (a
/// superblock slot of whatever the device held) may use without meeting
/// records of the old store stamped with the same epoch: `None` if the
/// sector holds no LogKv superblock with a valid checksum. Version 1
/// superblocks stamped records with their generation, and an interrupted
/// compaction used the generation after.
pub(crate) fn epoch_floor(sector: &[u8]) -> Option<u64> {
    if sector.len() < SUPER_LEN || sector[0..8] != SUPER_MAGIC {
        return None;
    }
    match le_u32(&sector[8..12]) {
        // A generation this close to the end used (up to) every epoch: the
        // floor saturates, so format then says the epochs are used up.
        1 if crc32fast::hash(&sector[..52]) == le_u32(&sector[52..56]) => {
            Some(le_u64(&sector[24..32]).saturating_add(2))
        }
        VERSION if crc32fast::hash(&sector[..SUPER_CRC_AT]) == le_u32(&sector[SUPER_CRC_AT..SUPER_LEN]) => {
            Some(le_u64(&sector[64..72]))
        }
        _ => None,
    }
}

/// What a record does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RecordKind {
    /// Sets `key` to the value.
    Put = 1,
    /// Removes the value or dictionary at `key`.
    Delete = 2,
    /// Moves the value or dictionary at `key` to `key2`.
    Rename = 3,
}

/// A record header, as read from the log.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RecordHeader {
    pub(crate) kind: RecordKind,
    pub(crate) epoch: u64,
    pub(crate) seq: u64,
    pub(crate) mtime: PosixTime,
    pub(crate) key_len: u32,
    pub(crate) key2_len: u32,
    pub(crate) value_len: u64,
    pub(crate) sha256: [u8; 32],
    pub(crate) crc: u32,
}

impl RecordHeader {
    /// Bytes from the record's start to its value.
    pub(crate) fn value_offset(&self) -> u64 {
        HEADER_LEN as u64 + u64::from(self.key_len) + u64::from(self.key2_len)
    }

    /// Bytes of the whole record, before padding.
    pub(crate) fn total_len(&self) -> Option<u64> {
        self.value_offset().checked_add(self.value_len)
    }

    /// Parses a header, or `None` if these bytes are not one (the end of
    /// the log, or a torn write). Lengths are bounded here so that nothing
    /// read from the device can make the scan allocate more than a key.
    pub(crate) fn decode(bytes: &[u8]) -> Option<RecordHeader> {
        if bytes.len() < HEADER_LEN || bytes[0..4] != RECORD_MAGIC {
            return None;
        }
        let kind = match bytes[4] {
            1 => RecordKind::Put,
            2 => RecordKind::Delete,
            3 => RecordKind::Rename,
            _ => return None,
        };
        let key_len = le_u32(&bytes[36..40]);
        let key2_len = le_u32(&bytes[40..44]);
        if key_len as usize > Key::MAX_LEN || key2_len as usize > Key::MAX_LEN {
            return None;
        }
        let mut sha256 = [0u8; 32];
        sha256.copy_from_slice(&bytes[56..88]);
        Some(RecordHeader {
            kind,
            epoch: le_u64(&bytes[8..16]),
            seq: le_u64(&bytes[16..24]),
            mtime: PosixTime::new(le_u64(&bytes[24..32]) as i64, le_u32(&bytes[32..36]))?,
            key_len,
            key2_len,
            value_len: le_u64(&bytes[48..56]),
            sha256,
            crc: le_u32(&bytes[CRC_AT..CRC_AT + 4]),
        })
    }
}

/// A whole record ready to be written: header, keys, value, zero padding
/// to a whole number of `sector_size` sectors.
pub(crate) struct RecordSpec<'a> {
    pub(crate) kind: RecordKind,
    pub(crate) epoch: u64,
    pub(crate) seq: u64,
    pub(crate) mtime: PosixTime,
    pub(crate) key: &'a str,
    pub(crate) key2: &'a str,
    pub(crate) value: &'a [u8],
    pub(crate) sha256: [u8; 32],
}

impl RecordSpec<'_> {
    /// Bytes of the encoded record before padding.
    pub(crate) fn len(&self) -> usize {
        HEADER_LEN + self.key.len() + self.key2.len() + self.value.len()
    }

    /// Appends the encoded, padded record to `out`.
    pub(crate) fn encode_into(&self, sector_size: u32, out: &mut Vec<u8>) {
        let start = out.len();
        let mut header = [0u8; HEADER_LEN];
        header[0..4].copy_from_slice(&RECORD_MAGIC);
        header[4] = self.kind as u8;
        header[8..16].copy_from_slice(&self.epoch.to_le_bytes());
        header[16..24].copy_from_slice(&self.seq.to_le_bytes());
        header[24..32].copy_from_slice(&self.mtime.secs().to_le_bytes());
        header[32..36].copy_from_slice(&self.mtime.subsec_nanos().to_le_bytes());
        header[36..40].copy_from_slice(&(self.key.len() as u32).to_le_bytes());
        header[40..44].copy_from_slice(&(self.key2.len() as u32).to_le_bytes());
        header[48..56].copy_from_slice(&(self.value.len() as u64).to_le_bytes());
        header[56..88].copy_from_slice(&self.sha256);
        let mut crc = crc32fast::Hasher::new();
        crc.update(&header[..CRC_AT]);
        crc.update(self.key.as_bytes());
        crc.update(self.key2.as_bytes());
        crc.update(self.value);
        header[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.finalize().to_le_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(self.key.as_bytes());
        out.extend_from_slice(self.key2.as_bytes());
        out.extend_from_slice(self.value);
        let padded = sectors_for(self.len() as u64, sector_size) * u64::from(sector_size);
        out.resize(start + padded as usize, 0);
    }
}

/// Starts the CRC of a record from its header bytes; the caller feeds the
/// keys and the value and compares with [`RecordHeader::crc`].
pub(crate) fn record_crc(header: &[u8]) -> crc32fast::Hasher {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&header[..CRC_AT]);
    crc
}

/// Sectors needed for `len` bytes.
pub(crate) fn sectors_for(len: u64, sector_size: u32) -> u64 {
    len.div_ceil(u64::from(sector_size))
}

fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sb() -> Superblock {
        Superblock {
            sector_size: 512,
            sector_count: 100,
            generation: 7,
            half_sectors: 49,
            max_keys: 10,
            active_half: 1,
            log_epoch: 40,
            next_epoch: 42,
        }
    }

    #[test]
    fn superblock_round_trips_and_rejects_damage() {
        let bytes = sb().encode();
        assert_eq!(Superblock::decode(&bytes, 1, 512, 100), Ok(sb()));
        for at in [0, 9, 20, 30, 53, 60, 70, 73] {
            let mut bad = bytes.clone();
            bad[at] ^= 1;
            assert!(Superblock::decode(&bad, 1, 512, 100).is_err(), "flip at {at} accepted");
        }
        assert_eq!(Superblock::decode(&[0; 512], 0, 512, 100), Err(SlotError::Blank));
        let err = |bytes: &[u8], slot, sectors| match Superblock::decode(bytes, slot, 512, sectors) {
            Err(SlotError::Inconsistent { generation: 7, message }) => message,
            other => panic!("{other:?}"),
        };
        assert!(
            err(&bytes, 1, 99).starts_with("sector_count (bytes 16..24) is 100: the store is larger than the device")
        );
        assert!(err(&bytes, 0, 100).starts_with("generation (bytes 24..32) is 7, which belongs in sector 1"));
        assert!(Superblock::decode(&bytes, 1, 4096, 100).is_err());
        for half_sectors in [0, 50, u64::MAX, u64::MAX / 2, u64::MAX / 2 + 1] {
            let odd = Superblock { half_sectors, ..sb() };
            assert!(err(&odd.encode(), 1, 100).starts_with("half_sectors (bytes 32..40)"), "{half_sectors}");
        }
        let reused = Superblock { next_epoch: sb().log_epoch, ..sb() };
        assert!(err(&reused.encode(), 1, 100).starts_with("next_epoch (bytes 64..72) is 40"));
        let last = Superblock { log_epoch: u64::MAX, next_epoch: u64::MAX, ..sb() };
        assert!(err(&last.encode(), 1, 100).starts_with("next_epoch"));
        let active = Superblock { active_half: 2, ..sb() };
        assert!(err(&active.encode(), 1, 100).starts_with("active_half (bytes 48..52) is 2"));
    }

    #[test]
    fn a_new_store_starts_its_epochs_above_the_old_ones() {
        assert_eq!(epoch_floor(&sb().encode()), Some(42));
        let mut v1 = sb().encode();
        v1[8..12].copy_from_slice(&1u32.to_le_bytes());
        let crc = crc32fast::hash(&v1[..52]);
        v1[52..56].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(epoch_floor(&v1), Some(9));
        v1[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
        let crc = crc32fast::hash(&v1[..52]);
        v1[52..56].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(epoch_floor(&v1), Some(u64::MAX));
        let mut bad = sb().encode();
        bad[64] ^= 1;
        assert_eq!(epoch_floor(&bad), None);
        assert_eq!(epoch_floor(&[0u8; 512]), None);
    }

    #[test]
    fn record_round_trips_with_checksum_over_everything() {
        let spec = RecordSpec {
            kind: RecordKind::Rename,
            epoch: 3,
            seq: 9,
            mtime: PosixTime::new(-5, 7).unwrap(),
            key: "a/b",
            key2: "c",
            value: b"xyz",
            sha256: [4; 32],
        };
        let mut out = vec![0xa5];
        spec.encode_into(512, &mut out);
        assert_eq!(out.len(), 1 + 512);
        let rec = &out[1..];
        let h = RecordHeader::decode(rec).unwrap();
        assert_eq!((h.kind, h.epoch, h.seq, h.key_len, h.key2_len, h.value_len), (RecordKind::Rename, 3, 9, 3, 1, 3));
        assert_eq!(h.mtime, PosixTime::new(-5, 7).unwrap());
        assert_eq!(h.sha256, [4; 32]);
        let mut crc = record_crc(rec);
        crc.update(&rec[HEADER_LEN..HEADER_LEN + 7]);
        assert_eq!(crc.finalize(), h.crc);
        assert_eq!(h.value_offset(), HEADER_LEN as u64 + 4);
        let mut bad = rec.to_vec();
        bad[4] = 9;
        assert!(RecordHeader::decode(&bad).is_none());
    }
}
