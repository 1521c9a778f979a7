//! LogKv: semantics, a model check over random operation sequences with
//! remounts, space reclamation and NoSpace, large values.

mod kv_support;

use futures::executor::block_on;
use kv_support::{dump, key, kind_of, run, Model, Op, SplitMix, TickClock};
use mirage_block::{FormatOptions, LogKv, MemBlock, Opened};
use mirage_types::kv::{EntryKind, Error as _, ErrorKind, KvRead, KvWrite};
use proptest::prelude::*;

type Store = LogKv<MemBlock, TickClock>;

async fn fresh(sectors: u64) -> Store {
    LogKv::format(MemBlock::new(512, sectors).unwrap(), TickClock::default(), FormatOptions::default()).await.unwrap()
}

async fn remount(store: Store) -> Store {
    let dev = store.into_device();
    LogKv::mount(dev, TickClock::default()).await.unwrap()
}

#[test]
fn mount_or_format_formats_only_a_blank_device() {
    block_on(async {
        let options = FormatOptions::default();
        let blank = MemBlock::new(512, 64).unwrap();
        let (store, opened) =
            LogKv::mount_or_format(blank, TickClock::default(), options).await.expect("a blank device is formatted");
        assert_eq!(opened, Opened::Formatted);
        store.set(&key("a"), b"kept").await.unwrap();
        let (store, opened) = LogKv::mount_or_format(store.into_device(), TickClock::default(), options)
            .await
            .expect("a store is mounted, not formatted again");
        assert_eq!(opened, Opened::Mounted);
        assert_eq!(&store.get(&key("a")).await.unwrap()[..], b"kept");

        // Zero superblocks but data further on: not blank, never formatted.
        let mut image = vec![0u8; 64 * 512];
        image[40 * 512 + 7] = 1;
        let other = MemBlock::from_vec(512, image).unwrap();
        let e =
            LogKv::mount_or_format(other, TickClock::default(), options).await.err().expect("not blank, not a store");
        assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
        assert!(e.to_string().contains("not formatted over"), "{e}");
    });
}

#[test]
fn values_dictionaries_and_their_errors() {
    block_on(async {
        let s = fresh(256).await;
        assert_eq!(s.list(&key("/")).await.unwrap(), vec![]);
        s.set(&key("/a/b/c"), b"abc").await.unwrap();
        s.set(&key("/a/d"), b"").await.unwrap();
        assert_eq!(s.get(&key("a/b/c")).await.unwrap(), &b"abc"[..]);
        assert_eq!(s.get(&key("a/d")).await.unwrap(), &b""[..]);
        assert_eq!(s.exists(&key("a/b")).await.unwrap(), Some(EntryKind::Dictionary));
        assert_eq!(s.exists(&key("a/b/c/d")).await.unwrap(), None);
        assert_eq!(
            s.list(&key("a")).await.unwrap(),
            vec![("b".to_string(), EntryKind::Dictionary), ("d".to_string(), EntryKind::Value)]
        );
        assert_eq!(s.get(&key("a/b")).await.unwrap_err().kind(), ErrorKind::NotAValue);
        assert_eq!(s.get(&key("zz")).await.unwrap_err().kind(), ErrorKind::NotFound);
        let e = s.set(&key("a/b/c/d"), b"x").await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotADictionary);
        assert!(e.to_string().contains("/a/b/c"), "{e}");
        assert_eq!(s.set(&key("a/b"), b"x").await.unwrap_err().kind(), ErrorKind::NotAValue);
        assert_eq!(s.list(&key("a/d")).await.unwrap_err().kind(), ErrorKind::NotADictionary);
        assert_eq!(s.remove(&key("nope")).await.unwrap_err().kind(), ErrorKind::NotFound);
        assert_eq!(s.rename(&key("a"), &key("a/q")).await.unwrap_err().kind(), ErrorKind::InvalidKey);
        assert_eq!(s.get_partial(&key("a/b/c"), 1, 10).await.unwrap(), &b"bc"[..]);
        assert_eq!(s.get_partial(&key("a/b/c"), 9, 10).await.unwrap(), &b""[..]);
        assert_eq!(s.size(&key("a/b/c")).await.unwrap(), 3);
        // Times come from the clock; a dictionary's is its latest value's.
        let t_c = s.last_modified(&key("a/b/c")).await.unwrap();
        let t_d = s.last_modified(&key("a/d")).await.unwrap();
        assert!(t_c < t_d, "{t_c:?} {t_d:?}");
        assert_eq!(s.last_modified(&key("a")).await.unwrap(), t_d);
        // A gap past the end reads as zeros.
        s.set_partial(&key("a/d"), 2, b"yz").await.unwrap();
        assert_eq!(s.get(&key("a/d")).await.unwrap(), &b"\0\0yz"[..]);
        // Digests: equal trees, equal digests, wherever they are.
        let before = s.digest(&key("a")).await.unwrap();
        s.rename(&key("a"), &key("z/a")).await.unwrap();
        assert_eq!(s.digest(&key("z/a")).await.unwrap(), before);
        assert_eq!(s.exists(&key("a")).await.unwrap(), None);
        s.set(&key("z/a/d"), b"other").await.unwrap();
        assert_ne!(s.digest(&key("z/a")).await.unwrap(), before);
        s.remove(&key("z")).await.unwrap();
        assert_eq!(s.list(&key("/")).await.unwrap(), vec![]);
        assert!(s.check().await.unwrap().is_clean());
    });
}

#[test]
fn rename_replaces_the_target_and_may_move_up_over_its_parent() {
    block_on(async {
        let s = fresh(256).await;
        s.set(&key("x/v"), b"1").await.unwrap();
        s.set(&key("y/old"), b"2").await.unwrap();
        s.rename(&key("x"), &key("y")).await.unwrap();
        assert_eq!(dump(&s).await.into_iter().collect::<Vec<_>>(), vec![("y/v".to_string(), b"1".to_vec())]);
        s.rename(&key("y/v"), &key("y")).await.unwrap();
        assert_eq!(s.get(&key("y")).await.unwrap(), &b"1"[..]);
        let s = remount(s).await;
        assert_eq!(s.get(&key("y")).await.unwrap(), &b"1"[..]);
    });
}

#[test]
fn full_store_refuses_with_no_space_then_deletes_reclaim_room() {
    block_on(async {
        // 64 sectors: two halves of 31 sectors.
        let s = fresh(64).await;
        let value = vec![7u8; 1000]; // 3 sectors per record
        let mut stored = 0;
        let err = loop {
            match s.set(&key(&format!("k{stored}")), &value).await {
                Ok(()) => stored += 1,
                Err(e) => break e,
            }
            assert!(stored < 100, "a 64-sector store took 100 values");
        };
        assert_eq!(err.kind(), ErrorKind::NoSpace, "{err}");
        assert_eq!(stored, 10);
        let before = dump(&s).await;
        assert_eq!(before.len(), stored);
        // Overwrites compact away the dead records, again and again.
        for round in 0..20u8 {
            s.set(&key("k0"), &[round; 1000]).await.unwrap();
        }
        let s = remount(s).await;
        assert_eq!(s.get(&key("k0")).await.unwrap(), &[19u8; 1000][..]);
        assert_eq!(s.set(&key("big"), &value).await.unwrap_err().kind(), ErrorKind::NoSpace);
        // Removing from a full store always works, and frees room.
        s.remove(&key("k1")).await.unwrap();
        s.set(&key("big"), &value).await.unwrap();
        let report = s.check().await.unwrap();
        assert!(report.is_clean(), "{report}");
        assert_eq!(report.live_keys, 10);
        assert!(report.generation > 1, "never compacted");
        // A value larger than half the device is refused up front.
        let e = s.set(&key("huge"), &vec![0; 64 * 512]).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NoSpace);
        let e = s.set_partial(&key("huge"), u64::MAX - 1, b"xy").await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NoSpace);
    });
}

#[test]
fn max_keys_bounds_the_index() {
    block_on(async {
        let mut options = FormatOptions::default();
        options.max_keys = 3;
        let s = LogKv::format(MemBlock::new(512, 256).unwrap(), TickClock::default(), options).await.unwrap();
        for k in ["a", "b", "c"] {
            s.set(&key(k), b"v").await.unwrap();
        }
        assert_eq!(s.set(&key("d"), b"v").await.unwrap_err().kind(), ErrorKind::NoSpace);
        s.set(&key("a"), b"overwrite is fine").await.unwrap();
    });
}

#[test]
fn a_16_mib_value_round_trips_across_a_remount() {
    block_on(async {
        let s = fresh(2 * (16 << 20) / 512 + 64).await;
        let value: Vec<u8> = (0..16u32 << 20).map(|i| (i * 7 / 3) as u8).collect();
        s.set(&key("big"), &value).await.unwrap();
        s.set_partial(&key("big"), 5, b"patch").await.unwrap();
        let s = remount(s).await;
        let back = s.get(&key("big")).await.unwrap();
        assert_eq!(back.len(), value.len());
        assert_eq!(&back[..5], &value[..5]);
        assert_eq!(&back[5..10], b"patch");
        assert_eq!(&back[10..], &value[10..]);
        assert_eq!(s.get_partial(&key("big"), (16 << 20) - 3, 100).await.unwrap(), &value[(16 << 20) - 3..]);
    });
}

#[test]
fn works_on_4096_byte_sectors() {
    block_on(async {
        let dev = MemBlock::new(4096, 64).unwrap();
        let s = LogKv::format(dev, TickClock::default(), FormatOptions::default()).await.unwrap();
        s.set(&key("a"), &[1; 5000]).await.unwrap();
        let s = LogKv::mount(s.into_device(), TickClock::default()).await.unwrap();
        assert_eq!(s.get(&key("a")).await.unwrap(), &[1u8; 5000][..]);
    });
}

/// Runs `ops` on a store of `sectors` sectors and on the model, remounting
/// every `remount_every` operations; panics on the first difference.
fn check_against_model(ops: &[Op], sectors: u64, remount_every: usize) {
    block_on(async {
        let mut store = fresh(sectors).await;
        let mut model = Model::default();
        for (i, op) in ops.iter().enumerate() {
            let expected = model.clone().apply(op);
            let got = kind_of(run(&store, op).await);
            match (expected, got) {
                (Ok(()), Ok(())) => drop(model.apply(op)),
                // The model has no size limit: the store may run out of room.
                (Ok(()), Err(ErrorKind::NoSpace)) => {}
                (Err(e), Err(g)) if e == g => {}
                (e, g) => panic!("op {i} {op:?}: model says {e:?}, store says {g:?}"),
            }
            if (i + 1) % remount_every == 0 {
                store = remount(store).await;
            }
            assert_eq!(dump(&store).await, model.0, "after op {i} {op:?}");
        }
        let report = store.check().await.unwrap();
        assert!(report.is_clean(), "{report}");
        assert_eq!(report.live_keys, model.0.len() as u64);
    });
}

#[test]
fn seeded_workloads_match_the_model() {
    for seed in 0..20 {
        let mut rng = SplitMix(seed);
        let ops: Vec<Op> = (0..150).map(|_| rng.op(1500)).collect();
        check_against_model(&ops, 48, 7);
    }
}

fn arb_op() -> impl Strategy<Value = Op> {
    let keys = prop::sample::select(vec!["a", "b", "a/x", "a/y", "b/x/deep", "c", "a/x/z"]).prop_map(key);
    let value = prop::collection::vec(any::<u8>(), 0..1200);
    prop_oneof![
        (keys.clone(), value.clone()).prop_map(|(k, v)| Op::Set(k, v)),
        (keys.clone(), 0u64..800, value).prop_map(|(k, o, v)| Op::SetPartial(k, o, v)),
        keys.clone().prop_map(Op::Remove),
        (keys.clone(), keys).prop_map(|(a, b)| Op::Rename(a, b)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_operations_match_the_model(ops in prop::collection::vec(arb_op(), 1..60), every in 1usize..10) {
        check_against_model(&ops, 40, every);
    }
}
