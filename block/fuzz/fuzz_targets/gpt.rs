//! Arbitrary bytes as the start of a disk: read its GPT (primary, backup).
#![no_main]
use futures::executor::block_on;
use libfuzzer_sys::fuzz_target;
use mirage_block::{Gpt, MemBlock};

fuzz_target!(|data: &[u8]| {
    // At least the protective MBR, a header and one sector of entries.
    let mut image = data.to_vec();
    image.resize(image.len().div_ceil(512).max(8) * 512, 0);
    let Ok(dev) = MemBlock::from_vec(512, image) else { return };
    let _ = block_on(Gpt::read(&dev));
});
