//! `LogKv`: a crash-safe read-write key-value store over any block device.
//!
//! # Design
//!
//! (The reasoning behind these choices is in
//! `docs/decisions/0100-logkv-design.md`.)
//!
//! ```text
//! sector 0        sector 1        sectors 2 ..            .. 2 + 2h
//! [superblock A] [superblock B] [ half 0: h sectors ][ half 1: h sectors ]
//! ```
//!
//! - **Superblocks.** Two slots; generation `g` is written to slot `g % 2`,
//!   so a torn superblock write leaves the previous one intact. Each holds
//!   a magic, a version, the geometry, the generation, which half holds the
//!   live log, the live log's *epoch*, the next epoch to hand out, and a
//!   CRC-32. Mount uses the valid one with the highest generation. Valid
//!   means more than the CRC: the generation belongs in its slot, the
//!   geometry fits the device (so no offset computed from it overflows),
//!   the epochs are in order; a superblock with a right CRC and an
//!   impossible field is a `Corrupt` mount error naming the field and the
//!   sector if it claims to be newer than the other slot's, since falling
//!   back to the older superblock would silently roll the store back to
//!   before the last compaction. A slot skipped for any reason (blank after
//!   a compaction, torn, damaged, inconsistent) is reported by
//!   [`LogKv::check`]. The generation and the epochs are counters: a
//!   compaction that would need one past `u64::MAX` fails (before writing
//!   anything) with an error saying so, never wraps.
//! - **The log.** The live half holds an append-only sequence of records,
//!   each starting on a sector boundary: a 96-byte header (kind, the log's
//!   epoch, sequence number, modification time, key
//!   lengths, value length, SHA-256 of the value, CRC-32 of the whole
//!   record), the key (and for a rename the target key), then the value.
//!   Kinds are *put* (set a value), *delete* (a value or a whole
//!   dictionary) and *rename* (a value or a whole dictionary), so every
//!   operation of [`KvWrite`] is exactly one record.
//! - **Commit.** A write appends its record followed by one zero sector (a
//!   terminator, when there is room) in one device write, then flushes. `Ok`
//!   is returned only after the flush, so `Ok` means durable.
//! - **Recovery.** Mount scans the live half from its start and stops at the
//!   first record that is not valid: bad magic, another epoch (left from an
//!   older log in this half), a sequence number other than the next, a
//!   length past the half, or a CRC mismatch. A record torn by a crash fails
//!   its CRC, so a key holds its old or its new value, never a mix; earlier
//!   records were flushed before their operations returned, so every
//!   acknowledged operation is replayed, in order. The terminator ends the
//!   scan after a short record written over a longer torn one, so stale
//!   sectors are never read as records. A record that passes its CRC but
//!   makes no sense (an invalid key, a put below a value, a delete of
//!   nothing) is a mount error of kind [`ErrorKind::Corrupt`]: the store
//!   never serves garbage.
//! - **Compaction.** When a record does not fit in the rest of the live half,
//!   the store first makes durable a superblock that takes a fresh epoch
//!   (bumps the next epoch to hand out), then writes the live data *with the
//!   new operation applied* into the other half (one put record per live
//!   value, stamped with that epoch), flushes, writes the next superblock
//!   naming that half and epoch, and flushes again. A crash before the
//!   superblock is durable leaves the old log in charge; after it, the new
//!   one. If the live data and the new operation do not fit in one half the
//!   operation fails with [`ErrorKind::NoSpace`] before anything is written.
//!   Because the new operation rides along with the compaction, removing or
//!   shrinking keys in a full store always succeeds.
//! - **Damage.** Replay cannot tell by itself a record torn by a crash (the
//!   one in flight, never acknowledged) from an acknowledged record damaged
//!   later on the medium: both fail their CRC. What tells them apart is what
//!   lies after it. A record is written only after the one before it was
//!   flushed, always at the head of the log, and epochs are never reused
//!   (not by an interrupted compaction, whose epoch was made durable first,
//!   nor by a store formatted over an old one, which starts above the old
//!   superblocks' epochs, or at the clock's nanoseconds when there are
//!   none). So after the record where replay stops, mount reads the rest of
//!   the half: a valid record of the live epoch with a higher sequence number
//!   there proves the stopping record had been acknowledged, and mount fails
//!   with [`ErrorKind::Corrupt`] naming the sector, instead of silently
//!   dropping the acknowledged writes after it. Not detected: damage to the
//!   newest record (nothing follows it, so it looks exactly like a torn
//!   tail), and damage that leaves a record valid (CRC-32 collisions).
//!
//! # Costs and bounds
//!
//! - Space: half the device is held back for compaction. Each record takes
//!   at least one sector (96 bytes of header plus the key(s) plus the
//!   value, rounded up to whole sectors). A value can be at most one half
//!   minus its header.
//! - Memory: the index holds one entry per live key: the key's bytes plus
//!   about 120 bytes (position, length, time, SHA-256, tree node). The
//!   number of keys is bounded by [`FormatOptions::max_keys`], recorded in
//!   the superblock, and in any case by the number of sectors of a half. A
//!   write holds its record in memory (value plus header); compaction holds
//!   at most one value, or 1 MiB of small records, at a time.
//! - Time: mount reads the whole live half: the live log to check every
//!   record's CRC, and the rest to look for records past damage. A crafted
//!   image full of headers claiming long records can make that quadratic in
//!   the half's size (each candidate's CRC is checked), never unbounded in
//!   memory.
//!   [`KvWrite::set_partial`] rewrites the whole value as a new record.
//!   When live data nears a half, writes compact often: keep the live data
//!   well below half the device.
//! - Concurrency: operations are serialised by an async lock, so
//!   concurrent tasks may share one store; a read waits for a write in
//!   progress.
//!
//! # Semantics
//!
//! - Dictionaries are implied by the values below them; an empty dictionary
//!   does not exist. [`KvRead::exists`] of a key below a value is `None`;
//!   the other methods report [`ErrorKind::NotADictionary`] with the value's
//!   key. Setting a key that is a dictionary is [`ErrorKind::NotAValue`].
//!   Removing or renaming a key that does not exist is
//!   [`ErrorKind::NotFound`].
//! - [`KvWrite::rename`] keeps the modification times of what it moves (as
//!   POSIX `rename` does); moving a key below itself is
//!   [`ErrorKind::InvalidKey`]; renaming a key to itself does nothing.
//! - Digests: a value's is its SHA-256 (computed at write time, kept in the
//!   record, checked again by [`KvRead::get`]). A dictionary's is the
//!   SHA-256 of, for each value below it in key order, the value's path
//!   relative to the dictionary (as a 4-byte little-endian length and the
//!   bytes) followed by the value's SHA-256. [`TarKv`](crate::tar::TarKv)
//!   uses the same definition, so the same tree gives the same digest in
//!   both stores.
//! - [`KvRead::last_modified`] of a value is the wall-clock time of the
//!   write that set it; of a dictionary, the latest of the values below it;
//!   of the empty root, the epoch.

mod layout;

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::fmt;

use mirage_types::block::BlockDevice;
use mirage_types::kv::{Digest, EntryKind, Error as _, ErrorKind, Key, KvError, KvRead, KvWrite};
use mirage_types::time::{PosixTime, WallClock};
use mirage_types::Bytes;
use sha2::{Digest as _, Sha256};

use crate::exclusive::Exclusive;
use layout::{sectors_for, RecordHeader, RecordKind, RecordSpec, SlotError, Superblock, HEADER_LEN, LOG_START};

/// Small records are gathered up to this many bytes before compaction
/// writes them, so compacting many small keys is not one write per key.
const COMPACTION_BATCH: usize = 1 << 20;
/// The scan reads values in chunks of this many bytes to check their CRC.
const SCAN_CHUNK: u64 = 1 << 20;

/// Choices made once, when a store is formatted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct FormatOptions {
    /// The most keys the store will hold; a write that would create more
    /// fails with [`ErrorKind::NoSpace`]. This bounds the memory of the
    /// in-memory index (see the module documentation for its per-key
    /// cost). Default: 1,048,576.
    pub max_keys: u64,
}

impl Default for FormatOptions {
    fn default() -> FormatOptions {
        FormatOptions { max_keys: 1 << 20 }
    }
}

/// Where a live value is and what it is.
#[derive(Clone, Copy, Debug)]
struct Entry {
    /// First sector of its record.
    sector: u64,
    /// Bytes from the record's start to the value.
    value_offset: u64,
    len: u64,
    mtime: PosixTime,
    sha256: [u8; 32],
}

/// Values by key path (as [`Key::as_str`]). Invariant: no key is a proper
/// prefix (by segments) of another, since dictionaries are implied.
type Index = BTreeMap<String, Entry>;

/// One change to the store, as a record says it.
#[derive(Clone, Copy, Debug)]
enum Change<'a> {
    Put { key: &'a str, value_len: u64, sha256: [u8; 32] },
    Delete { key: &'a str },
    Rename { from: &'a str, to: &'a str },
}

/// What the scan of a log found.
struct Scan {
    index: Index,
    /// First sector after the last valid record.
    head: u64,
    next_seq: u64,
    records: u64,
    /// Sectors of all valid records, live or not.
    used_sectors: u64,
    /// Why the log cannot be trusted to end at `head`: a valid later record
    /// lies past it (see "Damage" in the module documentation).
    damage: Option<String>,
}

struct State {
    sb: Superblock,
    head: u64,
    next_seq: u64,
    index: Index,
}

/// The result of [`LogKv::check`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Generation of the superblock in use: it counts superblock writes, 1
    /// at format and 2 more for each compaction.
    pub generation: u64,
    /// Valid records in the live log.
    pub records: u64,
    /// Keys holding a value.
    pub live_keys: u64,
    /// Bytes of the live values (not counting headers and padding).
    pub live_bytes: u64,
    /// Bytes of the log held by records that later ones superseded: what
    /// the next compaction will reclaim.
    pub dead_bytes: u64,
    /// Bytes left in the live half before the next compaction.
    pub free_bytes: u64,
    /// Every problem found, each saying where. Empty means clean.
    pub errors: Vec<String>,
}

impl CheckReport {
    /// Whether no problem was found.
    pub fn is_clean(&self) -> bool {
        self.errors.is_empty()
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "generation {}, {} records in the log", self.generation, self.records)?;
        writeln!(f, "{} live keys holding {} bytes", self.live_keys, self.live_bytes)?;
        writeln!(f, "{} dead bytes to reclaim, {} bytes free before compaction", self.dead_bytes, self.free_bytes)?;
        if self.errors.is_empty() {
            write!(f, "clean")
        } else {
            self.errors.iter().try_for_each(|e| writeln!(f, "error: {e}"))
        }
    }
}

/// The superblock in force on a device, and what is wrong with the other
/// slot, if anything.
struct Superblocks {
    sb: Superblock,
    /// Why the slot not in force does not hold the superblock before this
    /// one: `None` if it does, or if it is the blank slot of a new store.
    /// Mount goes on without it; [`LogKv::check`] reports it.
    other: Option<String>,
}

/// Reads both superblock slots of `dev` and picks the one in force: the
/// valid one with the higher generation. A slot without a valid superblock
/// (blank, torn, damaged) is skipped, and said so in
/// [`Superblocks::other`]; but a slot whose checksum is right and whose
/// fields are impossible is no torn write, and if it claims a newer
/// generation than the valid slot, falling back to the older superblock
/// would silently roll the store back to before the last compaction, so
/// that is a `Corrupt` error.
async fn read_superblocks<B: BlockDevice>(dev: &B) -> Result<Superblocks, KvError> {
    let info = dev.info();
    if info.sector_count < LOG_START {
        return Err(corrupt(format!(
            "not a LogKv store: the device has {} sectors, fewer than the two superblocks",
            info.sector_count
        )));
    }
    let mut slots = vec![0u8; 2 * info.sector_size as usize];
    dev.read(0, &mut slots).await.map_err(storage("reading the superblocks"))?;
    let (a, b) = slots.split_at(info.sector_size as usize);
    let a = Superblock::decode(a, 0, info.sector_size, info.sector_count);
    let b = Superblock::decode(b, 1, info.sector_size, info.sector_count);
    let (sb, other) = match (a, b) {
        (Ok(a), Ok(b)) => {
            let (live, old) = if a.generation > b.generation { (a, b) } else { (b, a) };
            return Ok(Superblocks { sb: live, other: compare_superblocks(&live, &old) });
        }
        (Ok(sb), Err(e)) | (Err(e), Ok(sb)) => (sb, e),
        (Err(ea), Err(eb)) => {
            let what = if matches!(ea, SlotError::Inconsistent { .. }) || matches!(eb, SlotError::Inconsistent { .. }) {
                "no usable LogKv superblock"
            } else {
                "not a LogKv store"
            };
            return Err(corrupt(format!("{what}: sector 0: {ea}; sector 1: {eb}")));
        }
    };
    let (slot, live_slot) = (1 - sb.slot(), sb.slot());
    let other = match other {
        SlotError::Blank if sb.generation == 1 => None,
        SlotError::Inconsistent { generation, message } if generation > sb.generation => {
            return Err(corrupt(format!(
                "LogKv superblock in sector {slot} (generation {generation}, valid checksum): {message}; mounting \
                 the older superblock in sector {live_slot} (generation {}) instead would roll the store back",
                sb.generation
            )));
        }
        e => Some(format!(
            "superblock slot in sector {slot} skipped: {e}; the store uses the superblock in sector {live_slot} \
             (generation {}), and has no valid previous one",
            sb.generation
        )),
    };
    Ok(Superblocks { sb, other })
}

/// What is wrong with `old`, the valid superblock in the slot not in force,
/// beside `live`: it should be the one written just before (generation one
/// lower, the same geometry).
fn compare_superblocks(live: &Superblock, old: &Superblock) -> Option<String> {
    let mut wrong = Vec::new();
    if live.generation.checked_sub(1) != Some(old.generation) {
        wrong.push(format!(
            "generation {}, not {} (the superblock written before the one in force)",
            old.generation,
            live.generation.saturating_sub(1)
        ));
    }
    for (field, theirs, ours) in [
        ("sector_count", old.sector_count, live.sector_count),
        ("half_sectors", old.half_sectors, live.half_sectors),
        ("max_keys", old.max_keys, live.max_keys),
    ] {
        if theirs != ours {
            wrong.push(format!("{field} {theirs}, not {ours} as in the superblock in force"));
        }
    }
    (!wrong.is_empty()).then(|| {
        format!(
            "superblock in sector {} (generation {}) has {}; the store uses the superblock in sector {} (generation {})",
            old.slot(),
            old.generation,
            wrong.join(", "),
            live.slot(),
            live.generation
        )
    })
}

/// Reads the superblocks and replays the log of the store on `dev`: the
/// checks of [`LogKv::mount`], which builds the store from the result.
async fn replay<B: BlockDevice>(dev: &B) -> Result<State, KvError> {
    let sb = read_superblocks(dev).await?.sb;
    let scan = scan(dev, &sb).await?;
    if let Some(damage) = scan.damage {
        return Err(corrupt(damage));
    }
    Ok(State { sb, head: scan.head, next_seq: scan.next_seq, index: scan.index })
}

/// How [`LogKv::mount_or_format`] opened a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opened {
    /// The device held a store, which was mounted.
    Mounted,
    /// The device was blank and now holds a new, empty store.
    Formatted,
}

impl fmt::Display for Opened {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Opened::Mounted => "mounted the store on the device",
            Opened::Formatted => "the device was blank: formatted a new store",
        })
    }
}

/// The most bytes one read of [`LogKv::mount_or_format`]'s blank check
/// moves (one sector if sectors are larger).
pub const BLANK_CHECK_BYTES: usize = 1024 * 1024;

/// Whether every byte of `dev` is zero.
async fn is_blank<B: BlockDevice>(dev: &B) -> Result<bool, KvError> {
    let info = dev.info();
    let sector_size = info.sector_size as usize;
    let chunk_sectors = (BLANK_CHECK_BYTES / sector_size.max(1)).max(1) as u64;
    let mut buffer = vec![0u8; chunk_sectors.min(info.sector_count) as usize * sector_size];
    let mut sector = 0;
    while sector < info.sector_count {
        let count = chunk_sectors.min(info.sector_count - sector);
        let chunk = &mut buffer[..count as usize * sector_size];
        dev.read(sector, chunk).await.map_err(storage("reading the device to check that it is blank"))?;
        if chunk.iter().any(|&b| b != 0) {
            return Ok(false);
        }
        sector += count;
    }
    Ok(true)
}

/// A crash-safe read-write key-value store on a block device; see the
/// module documentation for its format, guarantees and costs.
///
/// `C` supplies the modification times ([`KvRead::last_modified`]).
pub struct LogKv<B, C> {
    dev: B,
    clock: C,
    /// Serialises operations so that no two interleave their device I/O
    /// across an `.await`. The state itself stays in a `RefCell` because
    /// the synchronous helpers (lookups, `check_change`) borrow it briefly.
    lock: Exclusive<()>,
    state: RefCell<State>,
}

impl<B: BlockDevice, C: WallClock> LogKv<B, C> {
    /// Writes an empty store over the whole device and mounts it.
    ///
    /// Whatever the device held is lost (an old store on it is made
    /// unmountable first, so it cannot come back). `Ok` means the empty
    /// store is durable. Errors: [`ErrorKind::Other`] if the device is
    /// read-only or smaller than 6 sectors, [`ErrorKind::Storage`] if the
    /// device fails (the device then holds no mountable store, or the old
    /// one).
    pub async fn format(dev: B, clock: C, options: FormatOptions) -> Result<LogKv<B, C>, KvError> {
        let info = dev.info();
        if !info.read_write {
            return Err(other(ErrorKind::Other, "cannot format a read-only device".to_string()));
        }
        let half_sectors = info.sector_count.saturating_sub(LOG_START) / 2;
        if half_sectors < 2 {
            return Err(other(
                ErrorKind::Other,
                format!("a {}-sector device is too small for a LogKv store (at least 6 sectors)", info.sector_count),
            ));
        }
        // Records of an old store may remain in the halves: the new log's
        // epochs must differ from theirs, or mount could take them for
        // records of the new log (see "Damage" in the module docs). The old
        // superblocks say which epochs the old store used; when there are
        // none, the clock's nanoseconds make a collision all but impossible.
        let mut slots = vec![0u8; 2 * info.sector_size as usize];
        dev.read(0, &mut slots).await.map_err(storage("reading the old superblocks"))?;
        let (a, b) = slots.split_at(info.sector_size as usize);
        let now = clock.wall_time();
        let clock_epoch = u64::try_from(now.secs())
            .unwrap_or(0)
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::from(now.subsec_nanos()));
        let log_epoch = [layout::epoch_floor(a), layout::epoch_floor(b), Some(clock_epoch), Some(1)]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(1);
        let next_epoch = log_epoch.checked_add(1).ok_or_else(|| {
            other(
                ErrorKind::Other,
                "the old store on the device used up every record epoch, so none is safe from its records: \
                     zero the device (or at least its first two sectors) to format it"
                    .to_string(),
            )
        })?;
        let sb = Superblock {
            sector_size: info.sector_size,
            sector_count: info.sector_count,
            generation: 1,
            half_sectors,
            max_keys: options.max_keys,
            active_half: 0,
            log_epoch,
            next_epoch,
        };
        let zero = vec![0u8; info.sector_size as usize];
        // Invalidate both slots and terminate the new log before the new
        // superblock can make any of it live.
        dev.write(0, &zero).await.map_err(storage("erasing superblock 0"))?;
        dev.write(1, &zero).await.map_err(storage("erasing superblock 1"))?;
        dev.write(sb.log_start(), &zero).await.map_err(storage("writing the empty log"))?;
        dev.flush().await.map_err(storage("flushing the empty log"))?;
        dev.write(sb.slot(), &sb.encode()).await.map_err(storage("writing the superblock"))?;
        dev.flush().await.map_err(storage("flushing the superblock"))?;
        let state = State { sb, head: sb.log_start(), next_seq: 0, index: Index::new() };
        Ok(LogKv { dev, clock, lock: Exclusive::new(()), state: RefCell::new(state) })
    }

    /// Mounts the store on `dev`, replaying its log.
    ///
    /// `Ok` means the superblock and every record replayed passed their
    /// checksums and made sense, and that no record written after the end of
    /// the replayed log was found. Errors: [`ErrorKind::Corrupt`] if there is
    /// no valid superblock (not a LogKv store, or both copies damaged), a
    /// record is inconsistent, or a damaged record in the middle of the log
    /// would drop acknowledged writes after it (see "Damage" in the module
    /// documentation), each with the sector; [`ErrorKind::Storage`] if
    /// the device fails. Nothing is written.
    pub async fn mount(dev: B, clock: C) -> Result<LogKv<B, C>, KvError> {
        let state = replay(&dev).await?;
        Ok(LogKv { dev, clock, lock: Exclusive::new(()), state: RefCell::new(state) })
    }

    /// Mounts the store on `dev`, or formats the device with `options` if
    /// no store mounts and every byte of the device is zero (a new disk
    /// image, a zeroed device). A device holding anything else, a damaged
    /// store included, is never formatted over: that is [`LogKv::mount`]'s
    /// error (with a note that the device was left alone), so that an
    /// operator decides what to do with it. The blank
    /// check reads the whole device, [`BLANK_CHECK_BYTES`] at a time, and
    /// only when no store mounts.
    ///
    /// Errors: [`LogKv::mount`]'s for a device that is not blank,
    /// [`LogKv::format`]'s for one that is, [`ErrorKind::Storage`] if a
    /// read of the blank check fails.
    pub async fn mount_or_format(dev: B, clock: C, options: FormatOptions) -> Result<(LogKv<B, C>, Opened), KvError> {
        let mount = match replay(&dev).await {
            Ok(state) => {
                let store = LogKv { dev, clock, lock: Exclusive::new(()), state: RefCell::new(state) };
                return Ok((store, Opened::Mounted));
            }
            Err(e) if e.kind() == ErrorKind::Corrupt => e,
            Err(e) => return Err(e),
        };
        if !is_blank(&dev).await? {
            return Err(corrupt(format!(
                "{mount}; the device is not blank, so it is not formatted over: zero it (or recreate the image \
                 file) to start a new store"
            )));
        }
        Ok((LogKv::format(dev, clock, options).await?, Opened::Formatted))
    }

    /// Checks the whole store against the device: re-reads both superblock
    /// slots (reporting the one not in force if it is blank, damaged or
    /// inconsistent, even though mount went on without it, and the one in
    /// force if it is not the store's), re-reads and re-checks every record
    /// of the log, compares the result with the store's view, checks the
    /// SHA-256 of every live value, and looks past the end of the log for
    /// valid records (which would mean records were lost to a damaged one
    /// before them).
    ///
    /// `Ok` carries the report, whose `errors` list every problem found;
    /// `Err` only if the device fails or the log no longer replays.
    pub async fn check(&self) -> Result<CheckReport, KvError> {
        let _guard = self.lock.lock().await;
        let (sb, head, next_seq, index) = {
            let state = self.state.borrow();
            (state.sb, state.head, state.next_seq, state.index.clone())
        };
        let superblocks = read_superblocks(&self.dev).await;
        let scan = scan(&self.dev, &sb).await?;
        let sector_size = u64::from(sb.sector_size);
        let mut report = CheckReport {
            generation: sb.generation,
            records: scan.records,
            live_keys: index.len() as u64,
            live_bytes: index.values().fold(0u64, |sum, e| sum.saturating_add(e.len)),
            free_bytes: sb.log_end().saturating_sub(head).saturating_mul(sector_size),
            ..CheckReport::default()
        };
        match superblocks {
            Ok(found) => {
                if found.sb != sb {
                    report.errors.push(format!(
                        "the superblock in force on the device (sector {}, generation {}) is not the store's \
                         (sector {}, generation {})",
                        found.sb.slot(),
                        found.sb.generation,
                        sb.slot(),
                        sb.generation
                    ));
                }
                report.errors.extend(found.other);
            }
            Err(e) => report.errors.push(format!("the superblocks on the device no longer mount: {e}")),
        }
        let live_sectors = index
            .values()
            .fold(0u64, |sum, e| sum.saturating_add(sectors_for(e.value_offset.saturating_add(e.len), sb.sector_size)));
        report.dead_bytes = scan.used_sectors.saturating_sub(live_sectors).saturating_mul(sector_size);
        if scan.head != head || scan.next_seq != next_seq {
            report.errors.push(format!(
                "the log on the device ends at sector {} (sequence {}), the store's view at sector {head} (sequence {next_seq})",
                scan.head, scan.next_seq
            ));
        }
        for (key, entry) in &index {
            match scan.index.get(key) {
                Some(found) if found.sector == entry.sector && found.len == entry.len => {}
                _ => report
                    .errors
                    .push(format!("/{key}: the log on the device does not hold the value the store serves")),
            }
            match read_value(&self.dev, entry, sb.sector_size).await {
                Ok(data) if Sha256::digest(&data)[..] == entry.sha256 => {}
                Ok(_) => {
                    report.errors.push(format!("/{key}: value at sector {} does not match its SHA-256", entry.sector))
                }
                Err(e) => report.errors.push(format!("/{key}: {e}")),
            }
        }
        if scan.index.len() != index.len() {
            report.errors.push(format!("the log holds {} keys, the store serves {}", scan.index.len(), index.len()));
        }
        if let Some(damage) = scan.damage {
            report.errors.push(damage);
        }
        Ok(report)
    }

    /// The device the store is on.
    pub fn device(&self) -> &B {
        &self.dev
    }

    /// Gives the device back.
    pub fn into_device(self) -> B {
        self.dev
    }

    /// Appends the record of one change (or compacts with it applied) and
    /// makes it durable; then applies it to the index.
    async fn commit(&self, spec: RecordSpec<'_>, change: Change<'_>, error_key: &Key) -> Result<(), KvError> {
        let (sb, head, seq, new_keys) = {
            let state = self.state.borrow();
            check_change(&state.index, change)?;
            let new_keys = match change {
                Change::Put { key, .. } if !state.index.contains_key(key) => 1,
                _ => 0,
            };
            (state.sb, state.head, state.next_seq, new_keys)
        };
        let sector_size = sb.sector_size;
        let len = self.state.borrow().index.len() as u64;
        if len + new_keys > sb.max_keys {
            return Err(KvError::NoSpace { key: error_key.clone(), needed: 1, free: 0 });
        }
        let spec = RecordSpec { epoch: sb.log_epoch, seq, ..spec };
        let record_sectors = sectors_for(spec.len() as u64, sector_size);
        if head + record_sectors <= sb.log_end() {
            let mut buf = Vec::new();
            spec.encode_into(sector_size, &mut buf);
            if head + record_sectors < sb.log_end() {
                buf.resize(buf.len() + sector_size as usize, 0);
            }
            self.dev.write(head, &buf).await.map_err(storage_at("appending to the log", head))?;
            self.dev.flush().await.map_err(storage("flushing the log"))?;
            let mut state = self.state.borrow_mut();
            apply_change(&mut state.index, change, head, &spec);
            state.head = head + record_sectors;
            state.next_seq = seq + 1;
            return Ok(());
        }
        self.compact(change, &spec, error_key).await
    }

    /// Writes the live data with `change` applied into the other half and
    /// switches to it; see "Compaction" in the module documentation.
    async fn compact(&self, change: Change<'_>, spec: &RecordSpec<'_>, error_key: &Key) -> Result<(), KvError> {
        let (sb, mut plan) = {
            let state = self.state.borrow();
            (state.sb, state.index.clone())
        };
        // The new value's entry gets its real position when it is written.
        apply_change(&mut plan, change, 0, spec);
        let new_key = match change {
            Change::Put { key, .. } => Some(key),
            _ => None,
        };
        let needed = record_sectors(&plan, sb.sector_size);
        let sector_size = u64::from(sb.sector_size);
        if needed > sb.half_sectors {
            let old = record_sectors(&self.state.borrow().index, sb.sector_size);
            return Err(KvError::NoSpace {
                key: error_key.clone(),
                needed: spec.len() as u64,
                free: sb.half_sectors.saturating_sub(old).saturating_mul(sector_size),
            });
        }
        // Take a fresh epoch for the new log and make that durable before
        // any record carries it, so an interrupted compaction's records are
        // never mistaken for a later log's (see "Damage" in the module docs).
        // The two superblocks take the next two generations. Both counters
        // are checked before anything is written.
        let epoch = sb.next_epoch;
        let used_up = |what: String| {
            other(
                ErrorKind::Other,
                format!(
                    "cannot compact the store: {what}, so no compaction can ever run again (the store stays \
                     readable, and writes go on while its live half has room): copy its data to a new store"
                ),
            )
        };
        let next_epoch = epoch.checked_add(1).ok_or_else(|| {
            used_up(format!("it has used up every record epoch (next_epoch {epoch} in sector {})", sb.slot()))
        })?;
        let (Some(reserved_generation), Some(next_generation)) =
            (sb.generation.checked_add(1), sb.generation.checked_add(2))
        else {
            return Err(used_up(format!(
                "its superblock generation {} (sector {}) leaves no room for the two superblocks a compaction \
                 writes",
                sb.generation,
                sb.slot()
            )));
        };
        let reserved = Superblock { generation: reserved_generation, next_epoch, ..sb };
        self.dev.write(reserved.slot(), &reserved.encode()).await.map_err(storage("writing the superblock"))?;
        self.dev.flush().await.map_err(storage("flushing the superblock"))?;
        self.state.borrow_mut().sb = reserved;
        let next =
            Superblock { generation: next_generation, active_half: 1 - sb.active_half, log_epoch: epoch, ..reserved };
        let mut at = next.log_start();
        let mut batch_start = at;
        let mut batch = Vec::new();
        let mut index = Index::new();
        for (seq, (key, entry)) in plan.iter().enumerate() {
            let stored;
            let value: &[u8] = if Some(key.as_str()) == new_key {
                spec.value
            } else {
                stored = read_value(&self.dev, entry, sb.sector_size).await?;
                &stored
            };
            let record = RecordSpec {
                kind: RecordKind::Put,
                epoch: next.log_epoch,
                seq: seq as u64,
                mtime: entry.mtime,
                key,
                key2: "",
                value,
                sha256: entry.sha256,
            };
            index.insert(key.clone(), Entry { sector: at, value_offset: (HEADER_LEN + key.len()) as u64, ..*entry });
            record.encode_into(sb.sector_size, &mut batch);
            at += sectors_for(record.len() as u64, sb.sector_size);
            if batch.len() >= COMPACTION_BATCH {
                self.dev.write(batch_start, &batch).await.map_err(storage_at("compacting the log", batch_start))?;
                batch.clear();
                batch_start = at;
            }
        }
        if at < next.log_end() {
            batch.resize(batch.len() + sector_size as usize, 0);
        }
        if !batch.is_empty() {
            self.dev.write(batch_start, &batch).await.map_err(storage_at("compacting the log", batch_start))?;
        }
        self.dev.flush().await.map_err(storage("flushing the compacted log"))?;
        self.dev.write(next.slot(), &next.encode()).await.map_err(storage("writing the superblock"))?;
        self.dev.flush().await.map_err(storage("flushing the superblock"))?;
        *self.state.borrow_mut() = State { sb: next, head: at, next_seq: plan.len() as u64, index };
        Ok(())
    }

    /// The entry of the value at `key`, with the sector size.
    fn value_entry(&self, key: &Key) -> Result<(Entry, u32), KvError> {
        let state = self.state.borrow();
        match lookup(&state.index, key.as_str())? {
            Some(EntryKind::Value) => Ok((state.index[key.as_str()], state.sb.sector_size)),
            Some(EntryKind::Dictionary) => Err(KvError::NotAValue(key.clone())),
            None => Err(KvError::NotFound(key.clone())),
        }
    }

    /// The kind of `key`, or NotFound.
    fn kind_of(&self, key: &Key) -> Result<EntryKind, KvError> {
        lookup(&self.state.borrow().index, key.as_str())?.ok_or_else(|| KvError::NotFound(key.clone()))
    }
}

impl<B: BlockDevice, C: WallClock> KvRead for LogKv<B, C> {
    type Error = KvError;

    async fn exists(&self, key: &Key) -> Result<Option<EntryKind>, KvError> {
        let _guard = self.lock.lock().await;
        match lookup(&self.state.borrow().index, key.as_str()) {
            Ok(kind) => Ok(kind),
            Err(KvError::NotADictionary(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Checks the value against its SHA-256: a mismatch is
    /// [`ErrorKind::Corrupt`].
    async fn get(&self, key: &Key) -> Result<Bytes, KvError> {
        let _guard = self.lock.lock().await;
        let (entry, sector_size) = self.value_entry(key)?;
        let data = read_value(&self.dev, &entry, sector_size).await?;
        if Sha256::digest(&data)[..] != entry.sha256 {
            return Err(corrupt(format!("{key}: value at sector {} does not match its SHA-256", entry.sector)));
        }
        Ok(data)
    }

    /// Reads only the sectors holding the range; unlike `get`, it cannot
    /// check the value's SHA-256.
    async fn get_partial(&self, key: &Key, offset: u64, len: usize) -> Result<Bytes, KvError> {
        let _guard = self.lock.lock().await;
        let (entry, sector_size) = self.value_entry(key)?;
        let start = offset.min(entry.len);
        let end = start.saturating_add(len as u64).min(entry.len);
        read_bytes(&self.dev, value_byte(&entry, sector_size, start)?, end - start).await
    }

    async fn list(&self, key: &Key) -> Result<Vec<(String, EntryKind)>, KvError> {
        let _guard = self.lock.lock().await;
        match self.kind_of(key)? {
            EntryKind::Value => Err(KvError::NotADictionary(key.clone())),
            EntryKind::Dictionary => Ok(children(self.state.borrow().index.keys().map(String::as_str), key.as_str())),
        }
    }

    async fn last_modified(&self, key: &Key) -> Result<PosixTime, KvError> {
        let _guard = self.lock.lock().await;
        let kind = self.kind_of(key)?;
        let state = self.state.borrow();
        Ok(match kind {
            EntryKind::Value => state.index[key.as_str()].mtime,
            EntryKind::Dictionary => {
                subtree(&state.index, key.as_str()).map(|(_, e)| e.mtime).max().unwrap_or(PosixTime::EPOCH)
            }
        })
    }

    async fn digest(&self, key: &Key) -> Result<Digest, KvError> {
        let _guard = self.lock.lock().await;
        let state = self.state.borrow();
        match self.kind_of(key)? {
            EntryKind::Value => Ok(Digest(state.index[key.as_str()].sha256.to_vec())),
            EntryKind::Dictionary => {
                let skip = if key.is_root() { 0 } else { key.as_str().len() + 1 };
                Ok(tree_digest(subtree(&state.index, key.as_str()).map(|(k, e)| (&k[skip..], e.sha256))))
            }
        }
    }

    async fn size(&self, key: &Key) -> Result<u64, KvError> {
        let _guard = self.lock.lock().await;
        Ok(self.value_entry(key)?.0.len)
    }
}

impl<B: BlockDevice, C: WallClock> KvWrite for LogKv<B, C> {
    /// See [`KvWrite::set`]. Also [`ErrorKind::NotAValue`] if `key` is a
    /// dictionary or the root, [`ErrorKind::NotADictionary`] if a prefix is
    /// a value, [`ErrorKind::NoSpace`] (store unchanged) if the value does
    /// not fit, [`ErrorKind::Storage`] if the device failed (the change may
    /// or may not have happened, entirely or not at all).
    async fn set(&self, key: &Key, value: &[u8]) -> Result<(), KvError> {
        let _guard = self.lock.lock().await;
        self.put(key, value).await
    }

    /// Reads the old value, patches it in memory and writes it whole as one
    /// record, so the change is atomic. Errors as for `set`; an end past
    /// what one half of the device could hold is [`ErrorKind::NoSpace`]
    /// before anything is allocated.
    async fn set_partial(&self, key: &Key, offset: u64, data: &[u8]) -> Result<(), KvError> {
        let _guard = self.lock.lock().await;
        let (old, half_bytes) = {
            let state = self.state.borrow();
            let half_bytes = state.sb.half_sectors.saturating_mul(u64::from(state.sb.sector_size));
            (lookup(&state.index, key.as_str())?, half_bytes)
        };
        let end = offset.checked_add(data.len() as u64).filter(|&end| end <= half_bytes).ok_or_else(|| {
            KvError::NoSpace { key: key.clone(), needed: offset.saturating_add(data.len() as u64), free: half_bytes }
        })?;
        let mut value = match old {
            Some(EntryKind::Value) => {
                let (entry, sector_size) = self.value_entry(key)?;
                read_value(&self.dev, &entry, sector_size).await?.to_vec()
            }
            Some(EntryKind::Dictionary) => return Err(KvError::NotAValue(key.clone())),
            None => Vec::new(),
        };
        let end = end as usize;
        if value.len() < end {
            value.resize(end, 0);
        }
        value[offset as usize..end].copy_from_slice(data);
        self.put(key, &value).await
    }

    /// Errors: [`ErrorKind::NotFound`] if nothing is at `key` (nothing is
    /// written), [`ErrorKind::Storage`] as for `set`.
    async fn remove(&self, key: &Key) -> Result<(), KvError> {
        let _guard = self.lock.lock().await;
        let spec = self.spec(RecordKind::Delete, key.as_str(), "", &[], [0; 32]);
        self.commit(spec, Change::Delete { key: key.as_str() }, key).await
    }

    /// Errors: [`ErrorKind::NotFound`] if nothing is at `from`,
    /// [`ErrorKind::InvalidKey`] if `to` lies below `from` or either is the
    /// root, [`ErrorKind::NotADictionary`] if a prefix of `to` is a value,
    /// [`ErrorKind::Storage`] as for `set`.
    async fn rename(&self, from: &Key, to: &Key) -> Result<(), KvError> {
        let _guard = self.lock.lock().await;
        if from == to {
            self.kind_of(from)?;
            return Ok(());
        }
        let spec = self.spec(RecordKind::Rename, from.as_str(), to.as_str(), &[], [0; 32]);
        self.commit(spec, Change::Rename { from: from.as_str(), to: to.as_str() }, from).await
    }
}

impl<B: BlockDevice, C: WallClock> LogKv<B, C> {
    /// A record for this change; epoch and sequence are filled in by `commit`.
    fn spec<'a>(
        &self,
        kind: RecordKind,
        key: &'a str,
        key2: &'a str,
        value: &'a [u8],
        sha256: [u8; 32],
    ) -> RecordSpec<'a> {
        RecordSpec { kind, epoch: 0, seq: 0, mtime: self.clock.wall_time(), key, key2, value, sha256 }
    }

    /// `set` with the lock held.
    async fn put(&self, key: &Key, value: &[u8]) -> Result<(), KvError> {
        if key.is_root() {
            return Err(KvError::NotAValue(key.clone()));
        }
        let half_bytes = {
            let sb = self.state.borrow().sb;
            sb.half_sectors.saturating_mul(u64::from(sb.sector_size))
        };
        let needed = (HEADER_LEN + key.as_str().len()) as u64 + value.len() as u64;
        if needed > half_bytes {
            return Err(KvError::NoSpace { key: key.clone(), needed, free: half_bytes });
        }
        let sha256: [u8; 32] = Sha256::digest(value).into();
        let spec = self.spec(RecordKind::Put, key.as_str(), "", value, sha256);
        self.commit(spec, Change::Put { key: key.as_str(), value_len: value.len() as u64, sha256 }, key).await
    }
}

/// Scans the live log of `sb`; see "Recovery" and "Damage" in the module
/// documentation.
async fn scan<B: BlockDevice>(dev: &B, sb: &Superblock) -> Result<Scan, KvError> {
    let sector_size = sb.sector_size;
    let mut out =
        Scan { index: Index::new(), head: sb.log_start(), next_seq: 0, records: 0, used_sectors: 0, damage: None };
    let end = sb.log_end();
    let mut first = vec![0u8; sector_size as usize];
    // Why the replay stopped where it did, for the damage report.
    let mut why = "the log fills its half";
    while out.head < end {
        let at = out.head;
        dev.read(at, &mut first).await.map_err(storage_at("reading the log", at))?;
        let Some(header) = RecordHeader::decode(&first) else {
            why = if first.iter().all(|&b| b == 0) { "an empty sector" } else { "not a record header" };
            break;
        };
        if header.epoch != sb.log_epoch {
            why = "a record of another log";
            break;
        }
        if header.seq != out.next_seq {
            why = "a record out of sequence";
            break;
        }
        let Some((head, sectors)) = read_valid_record(dev, sb, at, &header).await? else {
            why = "a record whose checksum or length is wrong";
            break;
        };
        let bad = |what: &str| corrupt(format!("log record {} at sector {at}: {what}", header.seq));
        let keys_len = header.value_offset() as usize;
        let key_end = HEADER_LEN + header.key_len as usize;
        let key = parse_key(&head[HEADER_LEN..key_end]).ok_or_else(|| bad("invalid key"))?;
        let key2 = parse_key(&head[key_end..keys_len]).ok_or_else(|| bad("invalid target key"))?;
        let change = match header.kind {
            RecordKind::Put => Change::Put { key: key.as_str(), value_len: header.value_len, sha256: header.sha256 },
            RecordKind::Delete => Change::Delete { key: key.as_str() },
            RecordKind::Rename => Change::Rename { from: key.as_str(), to: key2.as_str() },
        };
        check_change(&out.index, change).map_err(|e| bad(&e.to_string()))?;
        let spec = RecordSpec {
            kind: header.kind,
            epoch: header.epoch,
            seq: header.seq,
            mtime: header.mtime,
            key: key.as_str(),
            key2: key2.as_str(),
            value: &[],
            sha256: header.sha256,
        };
        apply_change(&mut out.index, change, at, &spec);
        if out.index.len() as u64 > sb.max_keys {
            return Err(bad("more keys than the store's maximum"));
        }
        out.head = at + sectors;
        out.next_seq += 1;
        out.records += 1;
        out.used_sectors += sectors;
    }
    // Only a record with a higher sequence number proves that the one where
    // replay stopped had been acknowledged: the one in flight at a crash
    // carries the next number, and is only ever written at the head.
    let later = later_record(dev, sb, out.head.saturating_add(1), out.next_seq.saturating_add(1)).await?;
    if let Some((sector, seq)) = later {
        out.damage = Some(format!(
            "log damaged at sector {}: the log should continue there with record {} but holds {why}, yet record \
             {seq} at sector {sector} was written after it, so acknowledged writes would be lost; \
             the store needs repair (rebuild it from a backup)",
            out.head, out.next_seq
        ));
    }
    Ok(out)
}

/// Reads the record whose header is at sector `at` and checks its length
/// and CRC. `Ok(Some)` carries the sectors holding the header and keys (at
/// most `2 * Key::MAX_LEN` bytes beyond the header, by
/// [`RecordHeader::decode`]) and the record's length in sectors; `Ok(None)`
/// means it is not a valid record. Values are read in chunks of
/// [`SCAN_CHUNK`] bytes, so memory stays bounded whatever the header claims.
async fn read_valid_record<B: BlockDevice>(
    dev: &B,
    sb: &Superblock,
    at: u64,
    header: &RecordHeader,
) -> Result<Option<(Vec<u8>, u64)>, KvError> {
    let sector_size = sb.sector_size;
    let ss = u64::from(sector_size);
    let Some(total) = header.total_len() else { return Ok(None) };
    let sectors = sectors_for(total, sector_size);
    if sectors > sb.log_end().saturating_sub(at) {
        return Ok(None);
    }
    let keys_len = header.value_offset();
    let mut head = vec![0u8; (sectors_for(keys_len, sector_size).min(sectors) * ss) as usize];
    dev.read(at, &mut head).await.map_err(storage_at("reading the log", at))?;
    let mut crc = layout::record_crc(&head);
    let head_value_end = (head.len() as u64).min(total);
    crc.update(&head[HEADER_LEN..head_value_end as usize]);
    let mut pos = head.len() as u64;
    while pos < total {
        let chunk = (total - pos).min(SCAN_CHUNK);
        let mut buf = vec![0u8; (sectors_for(chunk, sector_size) * ss) as usize];
        let sector = at + pos / ss;
        dev.read(sector, &mut buf).await.map_err(storage_at("reading the log", sector))?;
        crc.update(&buf[..chunk as usize]);
        pos += chunk;
    }
    Ok((crc.finalize() == header.crc).then_some((head, sectors)))
}

/// The first valid record of the live log's epoch with a sequence number of
/// at least `min_seq`, at or after sector `from`: `(sector, sequence)`. Such a
/// record past the end of the replayed log proves that the record where
/// replay stopped had been acknowledged (see "Damage" in the module docs).
/// Reads the rest of the half in chunks of [`SCAN_CHUNK`] bytes.
async fn later_record<B: BlockDevice>(
    dev: &B,
    sb: &Superblock,
    from: u64,
    min_seq: u64,
) -> Result<Option<(u64, u64)>, KvError> {
    let ss = u64::from(sb.sector_size);
    let end = sb.log_end();
    let chunk_sectors = (SCAN_CHUNK / ss).max(1);
    let mut buf = Vec::new();
    let mut start = from;
    while start < end {
        let count = chunk_sectors.min(end - start);
        buf.resize((count * ss) as usize, 0);
        dev.read(start, &mut buf).await.map_err(storage_at("reading the log", start))?;
        for (i, sector) in buf.chunks_exact(ss as usize).enumerate() {
            let at = start + i as u64;
            let Some(header) = RecordHeader::decode(sector) else { continue };
            if header.epoch == sb.log_epoch
                && header.seq >= min_seq
                && read_valid_record(dev, sb, at, &header).await?.is_some()
            {
                return Ok(Some((at, header.seq)));
            }
        }
        start += count;
    }
    Ok(None)
}

/// Sectors the records of a compaction of `index` take (a put record per
/// value), saturating: a sum that large fails the caller's bound anyway.
fn record_sectors(index: &Index, sector_size: u32) -> u64 {
    index.iter().fold(0u64, |sum, (key, entry)| {
        let len = ((HEADER_LEN + key.len()) as u64).saturating_add(entry.len);
        sum.saturating_add(sectors_for(len, sector_size))
    })
}

fn parse_key(bytes: &[u8]) -> Option<Key> {
    Key::parse(core::str::from_utf8(bytes).ok()?).ok()
}

/// What `key` names in `index`: `Err(NotADictionary(prefix))` if a proper
/// prefix of it is a value.
fn lookup(index: &Index, key: &str) -> Result<Option<EntryKind>, KvError> {
    if key.is_empty() {
        return Ok(Some(EntryKind::Dictionary));
    }
    for (i, _) in key.match_indices('/') {
        if index.contains_key(&key[..i]) {
            return Err(KvError::NotADictionary(key_of(&key[..i])));
        }
    }
    if index.contains_key(key) {
        return Ok(Some(EntryKind::Value));
    }
    Ok(subtree(index, key).next().map(|_| EntryKind::Dictionary))
}

/// The values strictly below the dictionary `key` ("" for the root).
fn subtree<'a>(index: &'a Index, key: &str) -> impl Iterator<Item = (&'a String, &'a Entry)> {
    let prefix = if key.is_empty() { String::new() } else { format!("{key}/") };
    index.range(prefix.clone()..).take_while(move |(k, _)| k.starts_with(prefix.as_str()))
}

/// A `Key` for a path taken from a valid key.
fn key_of(path: &str) -> Key {
    // Every path here is a prefix (at a '/') or the whole of a valid key.
    Key::parse(path).expect("a prefix of a valid key is a valid key")
}

/// Refuses a change that the store's invariants do not allow, with the
/// error the user sees; mount treats any refusal as corruption.
fn check_change(index: &Index, change: Change<'_>) -> Result<(), KvError> {
    match change {
        Change::Put { key, .. } => match lookup(index, key)? {
            _ if key.is_empty() => Err(KvError::NotAValue(Key::root())),
            Some(EntryKind::Dictionary) => Err(KvError::NotAValue(key_of(key))),
            _ => Ok(()),
        },
        Change::Delete { key } => match lookup(index, key)? {
            None => Err(KvError::NotFound(key_of(key))),
            Some(EntryKind::Dictionary) if key.is_empty() && index.is_empty() => Err(KvError::NotFound(Key::root())),
            Some(_) => Ok(()),
        },
        Change::Rename { from, to } => {
            if from.is_empty() || to.is_empty() {
                return Err(invalid(format!("cannot rename /{from} to /{to}: the root cannot be moved or replaced")));
            }
            if lookup(index, from)?.is_none() {
                return Err(KvError::NotFound(key_of(from)));
            }
            if key_of(to).starts_with(&key_of(from)) {
                return Err(invalid(format!("cannot move /{from} below itself to /{to}")));
            }
            let longest = subtree(index, from).map(|(k, _)| k.len()).max().unwrap_or(from.len());
            if to.len() + (longest - from.len()) > Key::MAX_LEN {
                return Err(invalid(format!("renaming /{from} to /{to} makes a key longer than the maximum")));
            }
            // A value on the way to `to` is refused, unless it is `from`
            // itself, which the move takes away ("a/b" -> "a").
            for (i, _) in to.match_indices('/') {
                let prefix = &to[..i];
                if index.contains_key(prefix) && prefix != from {
                    return Err(KvError::NotADictionary(key_of(prefix)));
                }
            }
            Ok(())
        }
    }
}

/// Applies a change that `check_change` accepted; a put's record starts
/// at `sector`.
fn apply_change(index: &mut Index, change: Change<'_>, sector: u64, spec: &RecordSpec<'_>) {
    match change {
        Change::Put { key, value_len, sha256 } => {
            let entry = Entry {
                sector,
                value_offset: (HEADER_LEN + key.len()) as u64,
                len: value_len,
                mtime: spec.mtime,
                sha256,
            };
            index.insert(key.to_string(), entry);
        }
        Change::Delete { key } => {
            let doomed: Vec<String> = subtree(index, key).map(|(k, _)| k.clone()).collect();
            doomed.iter().for_each(|k| {
                index.remove(k);
            });
            index.remove(key);
        }
        Change::Rename { from, to } => {
            let mut moved: Vec<(String, Entry)> = subtree(index, from).map(|(k, e)| (k.clone(), *e)).collect();
            if let Some(e) = index.get(from) {
                moved.push((from.to_string(), *e));
            }
            for (k, _) in &moved {
                index.remove(k);
            }
            let replaced: Vec<String> = subtree(index, to).map(|(k, _)| k.clone()).collect();
            replaced.iter().for_each(|k| {
                index.remove(k);
            });
            index.remove(to);
            for (k, e) in moved {
                index.insert(format!("{to}{}", &k[from.len()..]), e);
            }
        }
    }
}

/// The names directly below the dictionary `key` among sorted `paths`.
pub(crate) fn children<'a>(paths: impl Iterator<Item = &'a str>, key: &str) -> Vec<(String, EntryKind)> {
    let prefix = if key.is_empty() { String::new() } else { format!("{key}/") };
    let mut out: BTreeMap<&str, EntryKind> = BTreeMap::new();
    for path in paths {
        let Some(rest) = path.strip_prefix(prefix.as_str()) else { continue };
        if rest.is_empty() {
            continue;
        }
        match rest.split_once('/') {
            Some((name, _)) => {
                out.insert(name, EntryKind::Dictionary);
            }
            None => {
                out.entry(rest).or_insert(EntryKind::Value);
            }
        }
    }
    out.into_iter().map(|(n, k)| (n.to_string(), k)).collect()
}

/// The digest of a dictionary from its values' relative paths (in key
/// order) and SHA-256s; the definition is in the module documentation.
pub(crate) fn tree_digest<'a>(values: impl Iterator<Item = (&'a str, [u8; 32])>) -> Digest {
    let mut sha = Sha256::new();
    for (path, digest) in values {
        sha.update((path.len() as u32).to_le_bytes());
        sha.update(path.as_bytes());
        sha.update(digest);
    }
    Digest(sha.finalize().to_vec())
}

async fn read_value<B: BlockDevice>(dev: &B, entry: &Entry, sector_size: u32) -> Result<Bytes, KvError> {
    read_bytes(dev, value_byte(entry, sector_size, 0)?, entry.len).await
}

/// The device byte of byte `offset` of `entry`'s value. Mount bounded every
/// record by the store, whose size in bytes fits a `u64`, so this overflows
/// only on a corrupt index; it is checked all the same.
fn value_byte(entry: &Entry, sector_size: u32, offset: u64) -> Result<u64, KvError> {
    entry
        .sector
        .checked_mul(u64::from(sector_size))
        .and_then(|at| at.checked_add(entry.value_offset))
        .and_then(|at| at.checked_add(offset))
        .ok_or_else(|| corrupt(format!("the value of the record at sector {} lies past 2^64 bytes", entry.sector)))
}

/// Reads `len` bytes from byte `at` of the device, reading only the
/// sectors that hold them.
pub(crate) async fn read_bytes<B: BlockDevice>(dev: &B, at: u64, len: u64) -> Result<Bytes, KvError> {
    if len == 0 {
        return Ok(Bytes::new());
    }
    let ss = u64::from(dev.info().sector_size);
    let first = at / ss;
    let end = at.checked_add(len).ok_or_else(|| corrupt(format!("{len} bytes at byte {at} overflow")))?;
    let sectors = end.div_ceil(ss) - first;
    let buf_len = sectors
        .checked_mul(ss)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| other(ErrorKind::Other, format!("{len} bytes at byte {at} do not fit in memory")))?;
    let mut buf = Vec::new();
    buf.try_reserve_exact(buf_len)
        .map_err(|_| other(ErrorKind::Other, format!("cannot allocate {buf_len} bytes to read byte {at}")))?;
    buf.resize(buf_len, 0);
    dev.read(first, &mut buf).await.map_err(storage_at("reading", first))?;
    let skip = (at - first * ss) as usize;
    Ok(Bytes::from(buf).slice(skip..skip + len as usize))
}

pub(crate) fn other(kind: ErrorKind, message: String) -> KvError {
    KvError::Other { kind, message }
}

pub(crate) fn corrupt(message: String) -> KvError {
    other(ErrorKind::Corrupt, message)
}

fn invalid(message: String) -> KvError {
    other(ErrorKind::InvalidKey, message)
}

/// Maps a device error to [`ErrorKind::Storage`], saying what we were doing.
pub(crate) fn storage<E: mirage_types::block::Error>(what: &'static str) -> impl Fn(E) -> KvError {
    move |e| other(ErrorKind::Storage, format!("{what}: {e}"))
}

/// Like [`storage`], naming the sector.
pub(crate) fn storage_at<E: mirage_types::block::Error>(what: &'static str, sector: u64) -> impl Fn(E) -> KvError {
    move |e| other(ErrorKind::Storage, format!("{what} at sector {sector}: {e}"))
}
