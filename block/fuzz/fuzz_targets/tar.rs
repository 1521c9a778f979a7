//! Arbitrary bytes as a tar archive: mount it as a TarKv and read all it offers.
#![no_main]
use futures::executor::block_on;
use libfuzzer_sys::fuzz_target;
use mirage_block::{MemBlock, TarKv};
use mirage_types::kv::{Key, KvRead};

fuzz_target!(|data: &[u8]| {
    let mut image = data.to_vec();
    image.resize(image.len().div_ceil(512) * 512, 0);
    let Ok(dev) = MemBlock::from_vec(512, image) else { return };
    block_on(async {
        let Ok(store) = TarKv::mount(dev).await else { return };
        let mut todo = vec![Key::root()];
        let mut budget = 1000;
        while let Some(dir) = todo.pop() {
            let Ok(children) = store.list(&dir).await else { continue };
            for (name, _) in children {
                budget -= 1;
                if budget == 0 {
                    return;
                }
                let Ok(child) = dir.child(&name) else { continue };
                let _ = store.get(&child).await;
                let _ = store.digest(&child).await;
                todo.push(child);
            }
        }
    });
});
