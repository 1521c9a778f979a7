//! The seed corpora of the fuzz targets (`fuzz/corpus/TARGET/seed-*`, made
//! by `fuzz/corpus/make-seeds.sh` from images written by sfdisk, sgdisk and
//! mirage-kv) still reach what they were made for: the MBR seeds parse and
//! check, the GPT seeds read (one through its backup), and the LogKv seeds
//! mount, check clean, and compact under their operations. A format change
//! that breaks them fails here: run the script again.

mod kv_support;

use std::path::PathBuf;

use futures::executor::block_on;
use kv_support::{dump, TickClock};
use mirage_block::{Gpt, LogKv, Mbr, MemBlock};
use mirage_types::kv::{Key, KvWrite};

/// The seeds of `target`, by file name.
fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.file_name().unwrap().to_str().unwrap().starts_with("seed-"))
        .map(|path| (path.file_name().unwrap().to_str().unwrap().to_string(), std::fs::read(&path).unwrap()))
        .collect();
    out.sort();
    assert!(out.len() >= 3, "{}: only {} seeds", dir.display(), out.len());
    for (name, bytes) in &out {
        assert!(bytes.len() <= 40 << 10, "{target}/{name}: {} bytes; keep seeds small", bytes.len());
    }
    out
}

#[test]
fn mbr_seeds_parse_and_check() {
    for (name, sector) in seeds("mbr") {
        // As the target does: parse, then check against a 2^20-sector disk.
        let mbr = Mbr::parse(&sector).unwrap_or_else(|e| panic!("{name}: {e}"));
        mbr.check(1 << 20).unwrap_or_else(|e| panic!("{name}: {e}"));
        let used = mbr.partitions.iter().flatten().count();
        assert!(used >= 1, "{name}: no partitions");
        assert_eq!(mbr.is_protective(), name.starts_with("seed-sgdisk"), "{name}");
        let mut emitted = sector.clone();
        mbr.emit(&mut emitted).unwrap();
        assert_eq!(Mbr::parse(&emitted).unwrap(), mbr, "{name}");
    }
}

#[test]
fn gpt_seeds_read_and_one_falls_back_to_its_backup() {
    let mut backups = 0;
    for (name, image) in seeds("gpt") {
        // As the target does: the bytes are the whole disk.
        let dev = MemBlock::from_vec(512, image).unwrap();
        let read = block_on(Gpt::read(&dev)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(read.backup_error, None, "{name}");
        assert!(!read.gpt.partitions.is_empty(), "{name}: no partitions");
        if read.primary_error.is_some() {
            backups += 1;
            assert!(name.contains("bad-primary"), "{name}: {:?}", read.primary_error);
        }
    }
    assert_eq!(backups, 1);
}

/// The fuzz target's keys and operations (`fuzz/fuzz_targets/logkv_mount.rs`).
const KEYS: [&str; 8] = ["a", "b", "a/x", "a/y", "c/d/e", "c", "k", "fuzz"];

#[test]
fn logkv_seeds_mount_check_clean_and_compact_under_their_operations() {
    for (name, input) in seeds("logkv_mount") {
        let h = input[0];
        assert_eq!(h & 0x80, 0, "{name}: the seed keeps its own superblocks");
        let sectors = 6 + usize::from(h & 63);
        let (image, mut ops) = input[1..].split_at(sectors * 512);
        block_on(async {
            let dev = MemBlock::from_vec(512, image.to_vec()).unwrap();
            let store = LogKv::mount(dev, TickClock::default()).await.unwrap_or_else(|e| panic!("{name}: {e}"));
            let report = store.check().await.unwrap();
            assert!(report.is_clean(), "{name}: {report}");
            assert!(report.live_keys >= 3, "{name}: {report}");
            let generation = report.generation;
            let key = |i: u8| Key::parse(KEYS[usize::from(i & 7)]).unwrap();
            let mut acknowledged = 0;
            while let Some((&o, tail)) = ops.split_first() {
                ops = tail;
                let (a, b) = (key(o >> 2), key(o >> 5));
                let mut arg = || {
                    let (&n, tail) = ops.split_first().unwrap_or((&0, &[]));
                    ops = tail;
                    usize::from(n) * 8
                };
                let result = match o & 3 {
                    0 => store.set(&a, &vec![o; arg()]).await,
                    1 => store.remove(&a).await,
                    2 => store.rename(&a, &b).await,
                    _ => store.set_partial(&a, arg() as u64, &[o; 32]).await,
                };
                acknowledged += u32::from(result.is_ok());
            }
            let report = store.check().await.unwrap();
            assert!(report.is_clean(), "{name}: {report}");
            assert!(report.generation > generation, "{name}: the operations did not compact");
            assert!(acknowledged >= 10, "{name}: only {acknowledged} operations succeeded");
            let served = dump(&store).await;
            let again = LogKv::mount(store.into_device(), TickClock::default()).await.unwrap();
            assert_eq!(dump(&again).await, served, "{name}");
        });
    }
}
