//! LogKv and damage that is not a crash: a record rotting in the middle of
//! the log must be a mount error naming the sector, never a silent loss of
//! the acknowledged writes after it; and the records an interrupted
//! compaction leaves behind must never be taken for such evidence.

mod kv_support;

use futures::executor::block_on;
use kv_support::{dump, key, TickClock};
use mirage_block::{FormatOptions, LogKv, MemBlock};
use mirage_types::block::BlockDevice;
use mirage_types::kv::{Error as _, ErrorKind, KvWrite};

const SS: usize = 512;
/// The first sector of half 0, where a fresh store's log starts.
const LOG_START: usize = 2;

/// An image of a `sectors`-sector store holding a, b, c (one record
/// sector each, at sectors 2, 3 and 4), a large value d (sectors 5..=7)
/// and e (sector 8).
fn five_records(sectors: u64) -> Vec<u8> {
    block_on(async {
        let dev = MemBlock::new(SS as u32, sectors).unwrap();
        let s = LogKv::format(dev, TickClock::default(), FormatOptions::default()).await.unwrap();
        for k in ["a", "b", "c"] {
            s.set(&key(k), &[k.as_bytes()[0]; 10]).await.unwrap();
        }
        s.set(&key("d"), &[7u8; 1200]).await.unwrap();
        s.set(&key("e"), b"newest").await.unwrap();
        s.into_device().into_vec()
    })
}

fn mount(image: Vec<u8>) -> Result<LogKv<MemBlock, TickClock>, mirage_types::kv::KvError> {
    block_on(LogKv::mount(MemBlock::from_vec(SS as u32, image).unwrap(), TickClock::default()))
}

fn keys(s: &LogKv<MemBlock, TickClock>) -> Vec<String> {
    block_on(dump(s)).into_keys().collect()
}

#[test]
fn an_undamaged_image_mounts_with_everything() {
    let s = mount(five_records(64)).unwrap();
    assert_eq!(keys(&s), ["a", "b", "c", "d", "e"]);
}

#[test]
fn a_record_damaged_in_the_middle_is_a_corrupt_mount_naming_its_sector() {
    let image = five_records(64);
    let b = (LOG_START + 1) * SS;
    let d = (LOG_START + 3) * SS;
    // (what, byte, bit to flip or None to zero the sector, first sector of
    // the damaged record). The zeroed sector is what some devices return
    // for an unreadable one.
    let damages: [(&str, usize, Option<u8>, usize); 5] = [
        ("a bit of b's value", b + 100, Some(0x10), 3),
        ("b's magic", b, Some(0x01), 3),
        ("b's sequence number", b + 16, Some(0x02), 3),
        ("b's sector zeroed", b, None, 3),
        ("a bit in the last sector of d", d + 2 * SS + 100, Some(0x80), 5),
    ];
    for (what, at, flip, record) in damages {
        let mut bad = image.clone();
        match flip {
            Some(bit) => bad[at] ^= bit,
            None => bad[at..at + SS].fill(0),
        }
        let err = match mount(bad) {
            Ok(s) => panic!("{what}: the damaged store mounted with only {:?}", keys(&s)),
            Err(e) => e,
        };
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{what}: {err}");
        let msg = err.to_string();
        assert!(msg.contains(&format!("damaged at sector {record}:")), "{what}: {msg}");
    }
}

#[test]
fn damage_to_the_newest_record_looks_like_a_torn_tail_and_drops_only_it() {
    // The documented blind spot: nothing follows the newest record, so its
    // damage is indistinguishable from a crash during its write.
    let mut image = five_records(64);
    image[(LOG_START + 6) * SS + 100] ^= 1;
    let s = mount(image).unwrap();
    assert_eq!(keys(&s), ["a", "b", "c", "d"]);
    let report = block_on(s.check()).unwrap();
    assert!(report.is_clean(), "{report}");
}

#[test]
fn check_reports_damage_that_happened_after_mount() {
    let s = mount(five_records(64)).unwrap();
    let mut sector = vec![0u8; SS];
    block_on(async {
        let dev = s.device();
        dev.read((LOG_START + 1) as u64, &mut sector).await.unwrap();
        sector[100] ^= 4;
        dev.write((LOG_START + 1) as u64, &sector).await.unwrap();
    });
    let report = block_on(s.check()).unwrap();
    assert!(!report.is_clean());
    assert!(report.errors.iter().any(|e| e.contains("damaged at sector 3:")), "{report}");
}

/// Sets small keys until the live half is full, so the next write compacts.
async fn fill(s: &LogKv<MemBlock, TickClock>) {
    for i in 0..10 {
        s.set(&key(&format!("k{i}")), &[i as u8; 10]).await.unwrap();
    }
    let mut round = 0u8;
    while s.check().await.unwrap().free_bytes > 0 {
        round += 1;
        assert!(round < 100, "the half never filled");
        s.set(&key("k0"), &[round; 10]).await.unwrap();
    }
}

#[test]
fn records_of_an_interrupted_compaction_are_not_taken_for_damage() {
    // A 32-sector store has two 15-sector halves: half 1 is sectors 17..32.
    let full = block_on(async {
        let s = LogKv::format(MemBlock::new(SS as u32, 32).unwrap(), TickClock::default(), FormatOptions::default())
            .await
            .unwrap();
        fill(&s).await;
        s.into_device().into_vec()
    });
    // Compaction A (11 records into half 1) runs to the end; then the
    // superblock that would switch to it is taken back, as if power failed
    // before it reached the disk. Its records stay in half 1.
    let s = mount(full.clone()).unwrap();
    let interrupted = block_on(async {
        let before = s.check().await.unwrap().generation;
        s.set(&key("zz"), b"A").await.unwrap();
        let after = s.check().await.unwrap();
        assert_eq!(after.generation, before + 2, "set did not compact");
        let mut image = s.into_device().into_vec();
        let final_slot = (after.generation % 2) as usize;
        image[final_slot * SS..(final_slot + 1) * SS].copy_from_slice(&full[final_slot * SS..(final_slot + 1) * SS]);
        image
    });
    // Compaction B writes fewer records into half 1, then a new record is
    // torn at the head: A's later records lie beyond it, valid, with higher
    // sequence numbers.
    let s = mount(interrupted).unwrap();
    let torn = block_on(async {
        assert!(s.check().await.unwrap().is_clean());
        assert!(!dump(&s).await.contains_key("zz"), "the interrupted compaction's write came back");
        s.remove(&key("k5")).await.unwrap();
        let report = s.check().await.unwrap();
        assert!(report.is_clean(), "{report}");
        let head = 32 - report.free_bytes as usize / SS;
        let mut image = s.into_device().into_vec();
        image[head * SS..head * SS + 48].copy_from_slice(&[0x5a; 48]);
        image
    });
    let s = mount(torn).expect("records of an interrupted compaction were taken for damage");
    let report = block_on(s.check()).unwrap();
    assert!(report.is_clean(), "{report}");
    assert_eq!(keys(&s), ["k0", "k1", "k2", "k3", "k4", "k6", "k7", "k8", "k9"]);
}
