//! LogKv and crafted images: superblocks whose checksum is right but whose
//! numbers are extreme or impossible. None may make mount, a write or a
//! compaction panic or wrap around: an impossible value is a `Corrupt`
//! mount error naming the field and the sector, and a counter that is used
//! up is an error of the operation that would need the next value, with the
//! store left as it was.
//!
//! Also the superblock slot that mount skips: `check()` reports it, even
//! when the other slot mounts.

mod kv_support;

use futures::executor::block_on;
use kv_support::{dump, key, TickClock};
use mirage_block::{FormatOptions, LogKv, MemBlock};
use mirage_types::kv::{Error as _, ErrorKind, KvError, KvRead, KvWrite};

const SS: usize = 512;
/// Sectors of the test stores: two 31-sector halves.
const SECTORS: u64 = 64;

/// The superblock fields, at their byte offsets in the sector (see
/// `block/src/log_kv/layout.rs`); the CRC-32 of bytes 0..72 is at 72.
#[derive(Clone, Copy, Debug)]
struct Fields {
    sector_size: u32,
    sector_count: u64,
    generation: u64,
    half_sectors: u64,
    max_keys: u64,
    active_half: u32,
    log_epoch: u64,
    next_epoch: u64,
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes(b[..4].try_into().unwrap())
}

fn le64(b: &[u8]) -> u64 {
    u64::from_le_bytes(b[..8].try_into().unwrap())
}

impl Fields {
    fn read(image: &[u8], slot: usize) -> Fields {
        let s = &image[slot * SS..(slot + 1) * SS];
        assert_eq!(&s[0..8], b"MIRAGEKV", "no superblock in slot {slot}");
        assert_eq!(crc32fast::hash(&s[..72]), le32(&s[72..76]), "slot {slot} has a bad CRC");
        Fields {
            sector_size: le32(&s[12..]),
            sector_count: le64(&s[16..]),
            generation: le64(&s[24..]),
            half_sectors: le64(&s[32..]),
            max_keys: le64(&s[40..]),
            active_half: le32(&s[48..]),
            log_epoch: le64(&s[56..]),
            next_epoch: le64(&s[64..]),
        }
    }

    /// Writes these fields into `slot` with a correct CRC, exactly as
    /// `Superblock::encode` does.
    fn write(&self, image: &mut [u8], slot: usize) {
        let s = &mut image[slot * SS..(slot + 1) * SS];
        s.fill(0);
        s[0..8].copy_from_slice(b"MIRAGEKV");
        s[8..12].copy_from_slice(&2u32.to_le_bytes());
        s[12..16].copy_from_slice(&self.sector_size.to_le_bytes());
        s[16..24].copy_from_slice(&self.sector_count.to_le_bytes());
        s[24..32].copy_from_slice(&self.generation.to_le_bytes());
        s[32..40].copy_from_slice(&self.half_sectors.to_le_bytes());
        s[40..48].copy_from_slice(&self.max_keys.to_le_bytes());
        s[48..52].copy_from_slice(&self.active_half.to_le_bytes());
        s[56..64].copy_from_slice(&self.log_epoch.to_le_bytes());
        s[64..72].copy_from_slice(&self.next_epoch.to_le_bytes());
        let crc = crc32fast::hash(&s[..72]);
        s[72..76].copy_from_slice(&crc.to_le_bytes());
    }
}

type Store = LogKv<MemBlock, TickClock>;

/// A fresh store holding a few keys: its superblock (generation 1) is in
/// slot 1, slot 0 is zero.
fn fresh_image() -> Vec<u8> {
    block_on(async {
        let dev = MemBlock::new(SS as u32, SECTORS).unwrap();
        let s = LogKv::format(dev, TickClock::default(), FormatOptions::default()).await.unwrap();
        for k in ["a", "b/c", "d"] {
            s.set(&key(k), k.as_bytes()).await.unwrap();
        }
        s.into_device().into_vec()
    })
}

/// A store that has compacted once (by rewriting one key until its half
/// is full), so both slots hold valid superblocks: generation 2 in slot 0
/// and 3 in slot 1.
fn compacted_image() -> Vec<u8> {
    let image = fresh_image();
    let s = mount(image).unwrap();
    block_on(async {
        let mut round = 0u32;
        while s.check().await.unwrap().generation == 1 {
            round += 1;
            assert!(round < 100, "never compacted");
            s.set(&key("a"), &round.to_le_bytes()).await.unwrap();
        }
        assert_eq!(s.check().await.unwrap().generation, 3);
        s.into_device().into_vec()
    })
}

fn mount(image: Vec<u8>) -> Result<Store, KvError> {
    block_on(LogKv::mount(MemBlock::from_vec(SS as u32, image).unwrap(), TickClock::default()))
}

/// Mounts `image`, which must be refused as corrupt with a message that
/// contains each of `words`.
fn assert_refused(image: Vec<u8>, what: &str, words: &[&str]) {
    let e = match mount(image) {
        Ok(s) => panic!("{what}: mounted with {:?}", block_on(dump(&s)).keys().collect::<Vec<_>>()),
        Err(e) => e,
    };
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{what}: {e}");
    let msg = e.to_string();
    for word in words {
        assert!(msg.contains(word), "{what}: {msg:?} does not say {word:?}");
    }
}

/// Rewrites three small keys until a write fails: the half fills after
/// about 28 writes, and the failing write is one that compacts (the live
/// data is small, so the compaction has room). Returns its error; panics if
/// 200 writes all succeed.
fn write_until_error(s: &Store) -> KvError {
    block_on(async {
        for i in 0..200 {
            if let Err(e) = s.set(&key(&format!("new{}", i % 3)), &[i as u8; 100]).await {
                return e;
            }
        }
        panic!("200 writes succeeded: no compaction failed");
    })
}

/// Writes new keys until the store is full; returns the error.
fn fill_until_error(s: &Store) -> KvError {
    block_on(async {
        for i in 0..200 {
            if let Err(e) = s.set(&key(&format!("fill{i}")), &[i as u8; 100]).await {
                return e;
            }
        }
        panic!("200 new keys fit in a 64-sector store");
    })
}

#[test]
fn generation_at_u64_max_fails_the_compaction_instead_of_panicking() {
    let mut image = fresh_image();
    let mut sb = Fields::read(&image, 1);
    assert_eq!(sb.generation, 1);
    sb.generation = u64::MAX;
    sb.write(&mut image, 1);
    let s = mount(image).expect("generation u64::MAX is a legal (if used-up) counter");
    let before = block_on(dump(&s));
    assert_eq!(before.keys().collect::<Vec<_>>(), ["a", "b/c", "d"]);
    let e = write_until_error(&s);
    assert_eq!(e.kind(), ErrorKind::Other, "{e}");
    assert!(e.to_string().contains("generation"), "{e}");
    // Nothing was written by the failed compaction; reads and mount still work.
    let expected = block_on(dump(&s));
    assert!(expected.len() > before.len());
    // The check finds only what the crafting left: no superblock before
    // generation u64::MAX in slot 0.
    let report = block_on(s.check()).unwrap();
    assert_eq!(report.errors.len(), 1, "{report}");
    assert!(report.errors[0].contains("sector 0 skipped: all zero"), "{report}");
    let image = s.into_device().into_vec();
    assert_eq!(Fields::read(&image, 1).generation, u64::MAX);
    assert!(image[..SS].iter().all(|&b| b == 0), "slot 0 was written");
    let again = mount(image).unwrap();
    assert_eq!(block_on(dump(&again)), expected);
    // The half is full, so a remove needs a compaction too: the same error.
    let e = block_on(again.remove(&key("a"))).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Other, "{e}");
    assert_eq!(block_on(dump(&again)), expected);
}

#[test]
fn generation_one_below_u64_max_fails_before_writing_either_superblock() {
    // Generation u64::MAX - 1 is even: it lives in slot 0. The compaction
    // would write u64::MAX (fine) and then u64::MAX + 1 (not): it must
    // refuse before its first write.
    let mut image = fresh_image();
    let mut sb = Fields::read(&image, 1);
    sb.generation = u64::MAX - 1;
    sb.write(&mut image, 0);
    image[SS..2 * SS].fill(0);
    let s = mount(image.clone()).unwrap();
    let e = write_until_error(&s);
    assert_eq!(e.kind(), ErrorKind::Other, "{e}");
    assert!(e.to_string().contains("generation"), "{e}");
    let after = s.into_device().into_vec();
    assert_eq!(after[..2 * SS], image[..2 * SS], "a superblock was written");
}

#[test]
fn next_epoch_at_u64_max_fails_the_compaction_instead_of_panicking() {
    let mut image = fresh_image();
    let mut sb = Fields::read(&image, 1);
    sb.next_epoch = u64::MAX;
    sb.write(&mut image, 1);
    let s = mount(image.clone()).unwrap();
    let e = write_until_error(&s);
    assert_eq!(e.kind(), ErrorKind::Other, "{e}");
    assert!(e.to_string().contains("epoch"), "{e}");
    let after = s.into_device().into_vec();
    assert_eq!(after[..2 * SS], image[..2 * SS], "a superblock was written");
}

#[test]
fn impossible_epochs_are_corrupt_mounts_naming_the_field_and_sector() {
    let image = fresh_image();
    let base = Fields::read(&image, 1);
    let cases: [(&str, u64, u64); 3] = [
        ("both epochs u64::MAX", u64::MAX, u64::MAX),
        ("log epoch u64::MAX, next wrapped to 0", u64::MAX, 0),
        ("next epoch below the log's", base.log_epoch, base.log_epoch - 1),
    ];
    for (what, log_epoch, next_epoch) in cases {
        let mut bad = image.clone();
        Fields { log_epoch, next_epoch, ..base }.write(&mut bad, 1);
        assert_refused(bad, what, &["sector 1", "next_epoch"]);
    }
}

#[test]
fn geometry_inconsistent_with_the_device_is_a_corrupt_mount_naming_the_field_and_sector() {
    let image = fresh_image();
    let base = Fields::read(&image, 1);
    assert_eq!((base.sector_count, base.half_sectors), (SECTORS, 31));
    let cases: Vec<(&str, Fields, &str)> = vec![
        ("sector count u64::MAX", Fields { sector_count: u64::MAX, ..base }, "sector_count"),
        ("sector count past the device", Fields { sector_count: SECTORS + 1, ..base }, "sector_count"),
        ("sector count below the halves", Fields { sector_count: 63, ..base }, "half_sectors"),
        ("half sectors u64::MAX", Fields { half_sectors: u64::MAX, ..base }, "half_sectors"),
        ("half sectors u64::MAX / 2 + 1 (2h wraps)", Fields { half_sectors: u64::MAX / 2 + 1, ..base }, "half_sectors"),
        ("half sectors 2^63 - 1 (2h + 2 wraps)", Fields { half_sectors: (1 << 63) - 1, ..base }, "half_sectors"),
        ("half sectors one too many", Fields { half_sectors: 32, ..base }, "half_sectors"),
        ("half sectors zero", Fields { half_sectors: 0, ..base }, "half_sectors"),
        ("sector size u32::MAX", Fields { sector_size: u32::MAX, ..base }, "sector_size"),
        ("sector size 4096 on a 512-byte device", Fields { sector_size: 4096, ..base }, "sector_size"),
        ("active half 2", Fields { active_half: 2, ..base }, "active_half"),
        ("active half u32::MAX", Fields { active_half: u32::MAX, ..base }, "active_half"),
        ("generation 2 in slot 1", Fields { generation: 2, ..base }, "generation"),
        ("generation u64::MAX - 1 in slot 1", Fields { generation: u64::MAX - 1, ..base }, "generation"),
    ];
    for (what, fields, field) in cases {
        let mut bad = image.clone();
        fields.write(&mut bad, 1);
        assert_refused(bad, what, &["sector 1", field]);
    }
}

#[test]
fn a_store_smaller_than_the_device_still_mounts() {
    // The image grew after it was formatted (sector_count below the
    // device's): the store keeps to its own sectors.
    let mut image = fresh_image();
    image.resize(image.len() + 16 * SS, 0);
    let s = mount(image).unwrap();
    assert!(block_on(s.check()).unwrap().is_clean());
    let e = fill_until_error(&s);
    assert_eq!(e.kind(), ErrorKind::NoSpace, "{e}");
}

#[test]
fn max_keys_at_the_extremes_mount_and_bound_writes() {
    for max_keys in [0, u64::MAX] {
        let mut image = fresh_image();
        let mut sb = Fields::read(&image, 1);
        sb.max_keys = max_keys;
        sb.write(&mut image, 1);
        if max_keys == 0 {
            // The log holds more keys than the superblock allows.
            assert_refused(image, "max_keys 0 below the log's keys", &["sector"]);
            continue;
        }
        let s = mount(image).unwrap();
        let e = fill_until_error(&s);
        assert_eq!(e.kind(), ErrorKind::NoSpace, "{e}");
    }
}

#[test]
fn format_over_a_store_whose_epochs_are_used_up_is_an_error_not_a_panic() {
    let mut image = fresh_image();
    let mut sb = Fields::read(&image, 1);
    sb.next_epoch = u64::MAX;
    sb.log_epoch = u64::MAX - 1;
    sb.write(&mut image, 1);
    let dev = MemBlock::from_vec(SS as u32, image).unwrap();
    let e = block_on(LogKv::format(dev, TickClock::default(), FormatOptions::default())).err().unwrap();
    assert!(e.to_string().contains("epoch"), "{e}");
    // The same with a version-1 superblock (epochs were generations):
    // generation u64::MAX used every epoch up to u64::MAX + 1.
    let mut image = fresh_image();
    let s = &mut image[SS..2 * SS];
    s[8..12].copy_from_slice(&1u32.to_le_bytes());
    s[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
    let crc = crc32fast::hash(&s[..52]);
    s[52..56].copy_from_slice(&crc.to_le_bytes());
    let dev = MemBlock::from_vec(SS as u32, image).unwrap();
    let e = block_on(LogKv::format(dev, TickClock::default(), FormatOptions::default())).err().unwrap();
    assert!(e.to_string().contains("epoch"), "{e}");
}

#[test]
fn crafted_superblocks_never_panic_mount_writes_or_compaction() {
    // Every field at 0, 1, u64::MAX - 1 and u64::MAX (u32 fields at their
    // own extremes), in either slot, over a compacted store: whatever
    // mounts must survive writes that compact twice.
    let image = compacted_image();
    let base = Fields::read(&image, 1);
    let extremes = [0, 1, 2, u64::MAX / 2, u64::MAX - 2, u64::MAX - 1, u64::MAX];
    let mut variants = Vec::new();
    for &v in &extremes {
        let v32 = u32::try_from(v).unwrap_or(u32::MAX - (u64::MAX - v).min(2) as u32);
        variants.push(Fields { sector_size: v32, ..base });
        variants.push(Fields { sector_count: v, ..base });
        variants.push(Fields { generation: v, ..base });
        variants.push(Fields { half_sectors: v, ..base });
        variants.push(Fields { max_keys: v, ..base });
        variants.push(Fields { active_half: v32, ..base });
        variants.push(Fields { log_epoch: v, ..base });
        variants.push(Fields { next_epoch: v, ..base });
        variants.push(Fields { log_epoch: v.saturating_sub(1), next_epoch: v, ..base });
    }
    for fields in variants {
        for slot in [0, 1] {
            let mut bad = image.clone();
            fields.write(&mut bad, slot);
            let Ok(s) = mount(bad) else { continue };
            block_on(async {
                let _ = s.check().await;
                for i in 0..80u32 {
                    let _ = s.set(&key(&format!("k{}", i % 7)), &i.to_le_bytes().repeat(40)).await;
                }
                let _ = s.rename(&key("k1"), &key("z")).await;
                let _ = s.remove(&key("k2")).await;
                let _ = s.check().await;
                let _ = s.get(&key("z")).await;
            });
        }
    }
}

// The slot mount skips.

#[test]
fn a_fresh_store_checks_clean_with_its_unused_zero_slot() {
    let s = mount(fresh_image()).unwrap();
    let report = block_on(s.check()).unwrap();
    assert!(report.is_clean(), "{report}");
    let s = mount(compacted_image()).unwrap();
    let report = block_on(s.check()).unwrap();
    assert!(report.is_clean(), "{report}");
}

/// Mounts `image`, which must mount with `keys`, and returns its check's
/// findings.
fn findings(image: Vec<u8>, what: &str) -> Vec<String> {
    let s = mount(image).unwrap_or_else(|e| panic!("{what}: {e}"));
    let report = block_on(s.check()).unwrap();
    assert!(!report.is_clean(), "{what}: the check is clean:\n{report}");
    assert!(!report.to_string().contains("clean"), "{what}: the report says clean:\n{report}");
    report.errors
}

#[test]
fn check_reports_the_superblock_slot_that_mount_skipped() {
    let image = compacted_image();
    let old = Fields::read(&image, 0);
    assert_eq!(old.generation, 2);
    let keys = block_on(dump(&mount(image.clone()).unwrap()));

    // (what, damage to slot 0 (the older), words of the finding)
    type Damage = Box<dyn Fn(&mut Vec<u8>)>;
    let cases: Vec<(&str, Damage, &[&str])> = vec![
        ("a flipped bit (bad CRC)", Box::new(|i: &mut Vec<u8>| i[30] ^= 1), &["sector 0", "checksum"]),
        ("zeroed after a compaction", Box::new(|i: &mut Vec<u8>| i[..SS].fill(0)), &["sector 0"]),
        (
            "invalid geometry, valid CRC",
            Box::new(move |i: &mut Vec<u8>| Fields { half_sectors: 40, ..old }.write(i, 0)),
            &["sector 0", "half_sectors"],
        ),
        (
            "an older generation than the last compaction's",
            Box::new(move |i: &mut Vec<u8>| Fields { generation: 0, ..old }.write(i, 0)),
            &["sector 0", "generation 0"],
        ),
        (
            "a different geometry than the one in force, valid CRC",
            Box::new(move |i: &mut Vec<u8>| Fields { max_keys: 7, ..old }.write(i, 0)),
            &["sector 0", "max_keys"],
        ),
        (
            "version 1",
            Box::new(|i: &mut Vec<u8>| {
                i[8] = 1;
                let crc = crc32fast::hash(&i[..52]);
                i[52..56].copy_from_slice(&crc.to_le_bytes());
            }),
            &["sector 0", "version"],
        ),
    ];
    for (what, damage, words) in cases {
        let mut bad = image.clone();
        damage(&mut bad);
        let s = mount(bad.clone()).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(block_on(dump(&s)), keys, "{what}");
        let found = findings(bad, what);
        let all = found.join("\n");
        for word in words {
            assert!(all.contains(word), "{what}: findings {found:?} do not say {word:?}");
        }
    }
}

#[test]
fn an_inconsistent_newer_slot_is_not_silently_rolled_back_to_the_older() {
    // Slot 1 holds generation 3, the superblock in force. Making its
    // geometry impossible (with a valid CRC) must not make mount fall back
    // to slot 0's generation 2, which names the log before the compaction.
    let image = compacted_image();
    let live = Fields::read(&image, 1);
    let mut bad = image.clone();
    Fields { half_sectors: 40, ..live }.write(&mut bad, 1);
    assert_refused(bad, "newer slot inconsistent", &["sector 1", "half_sectors", "sector 0"]);
    // A damaged (bad CRC) newer slot looks like a torn write: mount uses
    // the older one, and the check says so.
    let mut torn = image.clone();
    torn[SS + 30] ^= 1;
    let found = findings(torn, "torn newer slot");
    assert!(found.iter().any(|f| f.contains("sector 1") && f.contains("checksum")), "{found:?}");
}

#[test]
fn the_store_keeps_working_after_the_skipped_slot_is_rewritten() {
    // The next compaction rewrites the damaged slot: clean again.
    let mut image = compacted_image();
    image[30] ^= 1;
    let s = mount(image).unwrap();
    assert!(!block_on(s.check()).unwrap().is_clean());
    block_on(async {
        let generation = s.check().await.unwrap().generation;
        let mut round = 0u32;
        while s.check().await.unwrap().generation == generation {
            round += 1;
            assert!(round < 100, "never compacted");
            s.set(&key("a"), &round.to_le_bytes()).await.unwrap();
        }
        let report = s.check().await.unwrap();
        assert!(report.is_clean(), "{report}");
        assert_eq!(s.get(&key("d")).await.unwrap(), b"d"[..]);
    });
}
