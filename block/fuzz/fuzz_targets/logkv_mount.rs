//! Arbitrary bytes as a LogKv image: mount, check, read and write.
//!
//! Random bytes rarely pass the superblock CRC, so the image is a fresh
//! 64-sector store (valid superblock, log epoch 1) whose log the input
//! overwrites: that reaches the record parser and the damage scan. Input
//! past the log's 62 sectors overwrites the superblocks too.
#![no_main]
use futures::executor::block_on;
use libfuzzer_sys::fuzz_target;
use mirage_block::{FormatOptions, LogKv, MemBlock};
use mirage_types::kv::{Key, KvRead, KvWrite};
use mirage_types::time::{PosixTime, WallClock};

struct Clock;

impl WallClock for Clock {
    fn wall_time(&self) -> PosixTime {
        PosixTime::EPOCH
    }
}

fuzz_target!(|data: &[u8]| {
    block_on(async {
        // A real superblock from a fresh store, then the fuzzer's log.
        let Ok(fresh) = LogKv::format(MemBlock::new(512, 64).unwrap(), Clock, FormatOptions::default()).await
        else {
            return;
        };
        let mut image = fresh.into_device().into_vec();
        for (at, byte) in data.iter().take(62 * 512).enumerate() {
            image[2 * 512 + at] = *byte;
        }
        // Inputs longer than the log overwrite the superblocks too.
        for (at, byte) in data.iter().skip(62 * 512).take(1024).enumerate() {
            image[at] = *byte;
        }
        let Ok(dev) = MemBlock::from_vec(512, image) else { return };
        let Ok(store) = LogKv::mount(dev, Clock).await else { return };
        let _ = store.check().await;
        if let Ok(children) = store.list(&Key::root()).await {
            for (name, _) in children.into_iter().take(100) {
                if let Ok(key) = Key::root().child(&name) {
                    let _ = store.get(&key).await;
                }
            }
        }
        let _ = store.set(&Key::parse("fuzz").unwrap(), b"value").await;
    });
});
