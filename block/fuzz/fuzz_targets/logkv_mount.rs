//! Arbitrary bytes as a LogKv image and a sequence of operations on it:
//! mount, check, then set/set_partial/remove/rename (enough to compact a
//! small store several times), check again, and remount the result, which
//! must hold exactly what the store served (`Ok` means durable).
//!
//! Input layout:
//!
//! - byte 0: `h`. The image has `6 + (h & 63)` sectors of 512 bytes. If bit
//!   7 is set, its two superblock slots are replaced by those of a store
//!   formatted on a blank device of that size (log epoch 1), so that
//!   arbitrary bytes reach the record parser and the damage scan without
//!   a valid superblock CRC.
//! - the image's bytes (zero-padded if the input ends first);
//! - the operations, up to [`MAX_OPS`]: an op byte `o`, whose bits 0-1 are
//!   the kind (set, remove, rename, set_partial), bits 2-4 key A and bits 5-7
//!   key B (indices into [`KEYS`]); a set and a set_partial take one more
//!   byte (the value's length in units of 8 bytes; the offset in units of 8).
//!
//! The seed corpus (`corpus/logkv_mount`, see `corpus/README.md`) holds
//! real images made by `mirage-kv` followed by operations that compact.
#![no_main]
use futures::executor::block_on;
use libfuzzer_sys::fuzz_target;
use mirage_block::{FormatOptions, LogKv, MemBlock};
use mirage_types::kv::{EntryKind, Key, KvRead, KvWrite};
use mirage_types::time::{PosixTime, WallClock};

struct Clock;

impl WallClock for Clock {
    fn wall_time(&self) -> PosixTime {
        PosixTime::EPOCH
    }
}

const SECTOR: usize = 512;
/// Keys the operations use: values, dictionaries above them, and keys
/// below values (refused), so every check of `KvWrite` is reached.
const KEYS: [&str; 8] = ["a", "b", "a/x", "a/y", "c/d/e", "c", "k", "fuzz"];
/// Most operations run per input, to bound an input's time.
const MAX_OPS: usize = 100;
/// Most keys read back by the final comparison.
const MAX_KEYS: usize = 200;

type Store = LogKv<MemBlock, Clock>;

/// Every value of `store` (depth-first from the root, bounded) with what
/// `get` returns for it.
async fn contents(store: &Store) -> Vec<(String, Result<Vec<u8>, String>)> {
    let mut out = Vec::new();
    let mut todo = vec![Key::root()];
    while let Some(dir) = todo.pop() {
        let Ok(children) = store.list(&dir).await else { continue };
        for (name, kind) in children {
            if out.len() + todo.len() >= MAX_KEYS {
                return out;
            }
            let Ok(key) = dir.child(&name) else { continue };
            match kind {
                EntryKind::Dictionary => todo.push(key),
                EntryKind::Value => {
                    let value = store.get(&key).await.map(|b| b.to_vec()).map_err(|e| e.to_string());
                    out.push((key.as_str().to_string(), value));
                }
            }
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&h, rest)) = data.split_first() else { return };
    let sectors = 6 + usize::from(h & 63);
    let split = rest.len().min(sectors * SECTOR);
    let (image_bytes, mut ops) = rest.split_at(split);
    let mut image = image_bytes.to_vec();
    image.resize(sectors * SECTOR, 0);
    block_on(async {
        if h & 0x80 != 0 {
            let dev = MemBlock::new(SECTOR as u32, sectors as u64).unwrap();
            let Ok(fresh) = LogKv::format(dev, Clock, FormatOptions::default()).await else { return };
            image[..2 * SECTOR].copy_from_slice(&fresh.into_device().into_vec()[..2 * SECTOR]);
        }
        let Ok(dev) = MemBlock::from_vec(SECTOR as u32, image) else { return };
        let Ok(store) = LogKv::mount(dev, Clock).await else { return };
        let _ = store.check().await;
        let key = |i: u8| Key::parse(KEYS[usize::from(i & 7)]).unwrap();
        for _ in 0..MAX_OPS {
            let Some((&o, tail)) = ops.split_first() else { break };
            ops = tail;
            let (a, b) = (key(o >> 2), key(o >> 5));
            let mut arg = || {
                let (&n, tail) = ops.split_first().unwrap_or((&0, &[]));
                ops = tail;
                usize::from(n) * 8
            };
            let _ = match o & 3 {
                0 => store.set(&a, &vec![o; arg()]).await,
                1 => store.remove(&a).await,
                2 => store.rename(&a, &b).await,
                _ => store.set_partial(&a, arg() as u64, &[o; 32]).await,
            };
        }
        let _ = store.check().await;
        let served = contents(&store).await;
        // Every acknowledged operation is durable: a remount of the device
        // serves the same. (Mount may also refuse a crafted image whose
        // other half held records with the epoch a compaction then took.)
        let image = store.into_device().into_vec();
        let Ok(again) = LogKv::mount(MemBlock::from_vec(SECTOR as u32, image).unwrap(), Clock).await else {
            return;
        };
        assert_eq!(contents(&again).await, served, "the remounted store differs from the one that wrote it");
    });
});
