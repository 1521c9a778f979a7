//! Mounting damaged or arbitrary images never panics: it is an error or,
//! for bytes that happen to parse, a store whose every read works.

mod kv_support;

use futures::executor::block_on;
use kv_support::{key, TickClock};
use mirage_block::{FormatOptions, LogKv, MemBlock, TarKv};
use mirage_types::kv::{Error as _, ErrorKind, KvRead, KvWrite};
use proptest::prelude::*;

/// Reads everything a mounted store offers, to show nothing panics.
async fn walk<S: KvRead>(store: &S) {
    let mut todo = vec![mirage_types::kv::Key::root()];
    let mut budget = 10_000;
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
            let _ = store.last_modified(&child).await;
            todo.push(child);
        }
    }
}

fn small_store_image() -> Vec<u8> {
    block_on(async {
        let s = LogKv::format(MemBlock::new(512, 64).unwrap(), TickClock::default(), FormatOptions::default())
            .await
            .unwrap();
        s.set(&key("a/b"), &[1; 700]).await.unwrap();
        s.set(&key("c"), b"cc").await.unwrap();
        s.rename(&key("a"), &key("z")).await.unwrap();
        s.into_device().into_vec()
    })
}

#[test]
fn logkv_mount_refuses_non_stores_and_survives_damaged_logs() {
    let image = small_store_image();
    block_on(async {
        // Zeros, and a device too small to hold the superblocks.
        let e = LogKv::mount(MemBlock::new(512, 64).unwrap(), TickClock::default()).await.err().unwrap();
        assert_eq!(e.kind(), ErrorKind::Corrupt);
        assert!(e.to_string().contains("not a LogKv store"), "{e}");
        let e = LogKv::mount(MemBlock::new(512, 1).unwrap(), TickClock::default()).await.err().unwrap();
        assert_eq!(e.kind(), ErrorKind::Corrupt);
        // A truncated image: the superblock says the store is larger.
        let e = LogKv::mount(MemBlock::from_vec(512, image[..512 * 32].to_vec()).unwrap(), TickClock::default())
            .await
            .err()
            .unwrap();
        assert!(e.to_string().contains("larger than the device"), "{e}");
        // Both superblocks damaged.
        let mut bad = image.clone();
        bad[30] ^= 1;
        bad[512 + 30] ^= 1;
        assert!(LogKv::mount(MemBlock::from_vec(512, bad).unwrap(), TickClock::default()).await.is_err());
        // A record damaged before later ones is a mount error naming it,
        // never a store that silently lacks the writes after it.
        let mut bad = image.clone();
        bad[2 * 512 + 200] ^= 1;
        let e = LogKv::mount(MemBlock::from_vec(512, bad).unwrap(), TickClock::default()).await.err().unwrap();
        assert_eq!(e.kind(), ErrorKind::Corrupt);
        assert!(e.to_string().contains("damaged at sector 2:"), "{e}");
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn logkv_mount_of_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..8192)) {
        let mut image = bytes;
        image.resize(image.len().div_ceil(512) * 512, 0);
        block_on(async {
            if let Ok(s) = LogKv::mount(MemBlock::from_vec(512, image).unwrap(), TickClock::default()).await {
                walk(&s).await;
            }
        });
    }

    #[test]
    fn logkv_mount_of_a_store_with_random_damage_never_panics(
        flips in prop::collection::vec((0usize..64 * 512, any::<u8>()), 1..20)
    ) {
        let mut image = small_store_image();
        for (at, x) in flips {
            image[at] ^= x;
        }
        block_on(async {
            if let Ok(s) = LogKv::mount(MemBlock::from_vec(512, image).unwrap(), TickClock::default()).await {
                walk(&s).await;
                let _ = s.check().await;
                let _ = s.set(&key("new"), b"v").await;
            }
        });
    }

    #[test]
    fn tar_mount_of_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..8192)) {
        let mut image = bytes;
        image.resize(image.len().div_ceil(512) * 512, 0);
        block_on(async {
            if let Ok(s) = TarKv::mount(MemBlock::from_vec(512, image).unwrap()).await {
                walk(&s).await;
            }
        });
    }

    #[test]
    fn tar_mount_of_headers_with_valid_checksums_never_panics(
        fields in prop::collection::vec((any::<[u8; 16]>(), 0usize..496, any::<u8>()), 1..8)
    ) {
        // Random headers that pass the checksum reach the parser proper.
        let mut image = vec![0u8; 8 * 512 + 1024];
        for (i, (junk, at, kind)) in fields.iter().enumerate() {
            let h = &mut image[i * 512..(i + 1) * 512];
            h[*at..*at + 16].copy_from_slice(junk);
            h[156] = b"0125xLg7"[(*kind % 8) as usize];
            h[148..156].copy_from_slice(b"        ");
            let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
            h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        }
        block_on(async {
            if let Ok(s) = TarKv::mount(MemBlock::from_vec(512, image).unwrap()).await {
                walk(&s).await;
            }
        });
    }
}
