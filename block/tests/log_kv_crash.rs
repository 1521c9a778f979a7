//! LogKv under power loss: crash at every write and every flush of a
//! workload, then at random points of longer random workloads, and check
//! after each recovery that the store holds exactly the acknowledged
//! operations, plus possibly the one in flight, and checks clean.

mod kv_support;

use futures::executor::block_on;
use kv_support::{dump, key, run, Model, Op, SplitMix, TickClock};
use mirage_block::{CrashBlock, FormatOptions, LogKv, MemBlock, Persistence};
use mirage_types::kv::KvWrite;

/// A formatted, empty store's image of `sectors` 512-byte sectors.
fn formatted(sectors: u64) -> Vec<u8> {
    let dev = MemBlock::new(512, sectors).unwrap();
    let store = block_on(LogKv::format(dev, TickClock::default(), FormatOptions::default())).unwrap();
    store.into_device().into_vec()
}

/// Sets, partial sets, renames and removes over nested keys; on a
/// 32-sector store (two 15-sector halves) it compacts several times.
fn workload() -> Vec<Op> {
    let v = |len: usize, b: u8| (0..len).map(|i| b.wrapping_add(i as u8)).collect::<Vec<u8>>();
    vec![
        Op::Set(key("a"), v(100, 1)),
        Op::Set(key("d/x"), v(700, 2)),
        Op::Set(key("d/y"), v(1300, 3)),
        Op::SetPartial(key("a"), 50, v(600, 4)),
        Op::Rename(key("d"), key("e")),
        Op::Set(key("a"), v(1200, 5)),
        Op::Remove(key("e/x")),
        Op::SetPartial(key("n"), 10, v(20, 6)),
        Op::Set(key("e/x"), v(900, 7)),
        Op::Rename(key("e/y"), key("a")),
        Op::Set(key("f/g/h"), v(1500, 8)),
        Op::Remove(key("e")),
        Op::Set(key("a"), v(300, 9)),
        Op::Rename(key("f"), key("e")),
        Op::SetPartial(key("e/g/h"), 1400, v(300, 10)),
        Op::Remove(key("n")),
    ]
}

/// What one crashed run found.
struct Outcome {
    /// The model after the acknowledged operations.
    acknowledged: Model,
    /// The model with the interrupted operation applied too, if one was.
    with_in_flight: Option<Model>,
}

/// Runs `ops` on `dev`, whose store holds `start`, until the first error
/// (the crash), tracking the model.
fn run_until_crash(dev: &CrashBlock, ops: &[Op], start: Model) -> Outcome {
    block_on(async {
        let store = LogKv::mount(dev, TickClock::default()).await.unwrap();
        let mut model = start;
        for op in ops {
            let mut next = model.clone();
            let valid = next.apply(op).is_ok();
            match run(&store, op).await {
                Ok(()) => model = next,
                Err(_) if dev.is_crashed() => {
                    return Outcome { acknowledged: model, with_in_flight: valid.then_some(next) };
                }
                // Refusals (NotFound, NoSpace) change nothing.
                Err(_) => {}
            }
        }
        Outcome { acknowledged: model, with_in_flight: None }
    })
}

/// Mounts the recovered disk and checks it against the outcome.
fn check_recovery(dev: &CrashBlock, outcome: &Outcome, what: &str) {
    block_on(async {
        let recovered = dev.recovered_device();
        let store = LogKv::mount(recovered, TickClock::default())
            .await
            .unwrap_or_else(|e| panic!("{what}: mount after the crash failed: {e}"));
        let found = dump(&store).await;
        let matches_in_flight = outcome.with_in_flight.as_ref().is_some_and(|m| m.0 == found);
        assert!(
            found == outcome.acknowledged.0 || matches_in_flight,
            "{what}: the store holds {:?}, expected the acknowledged {:?} or with the op in flight {:?}",
            found.keys().collect::<Vec<_>>(),
            outcome.acknowledged.0.keys().collect::<Vec<_>>(),
            outcome.with_in_flight.as_ref().map(|m| m.0.keys().collect::<Vec<_>>()),
        );
        let report = store.check().await.unwrap();
        assert!(report.is_clean(), "{what}: {report}");
        // The recovered store keeps working.
        store.set(&key("after/crash"), b"ok").await.unwrap_or_else(|e| panic!("{what}: write after recovery: {e}"));
    });
}

#[test]
fn crash_at_every_write_and_flush_keeps_acknowledged_operations() {
    let image = formatted(32);
    let ops = workload();
    // First count the requests of an uninterrupted run (and check that the
    // workload does compact, so crashes during compaction are covered).
    let clean = CrashBlock::from_image(512, image.clone(), Persistence::DropUnflushed).unwrap();
    let outcome = run_until_crash(&clean, &ops, Model::default());
    assert!(outcome.with_in_flight.is_none());
    let generation = block_on(async {
        let store = LogKv::mount(&clean, TickClock::default()).await.unwrap();
        assert_eq!(dump(&store).await, outcome.acknowledged.0);
        store.check().await.unwrap().generation
    });
    assert!(generation >= 5, "the workload compacted only {} times", (generation - 1) / 2);
    let (writes, flushes) = (clean.writes(), clean.flushes());
    assert!(writes >= 16, "only {writes} writes");
    for persistence in [
        Persistence::DropUnflushed,
        Persistence::KeepUnflushed,
        Persistence::Random { seed: 1 },
        Persistence::Random { seed: 2 },
    ] {
        for index in 0..writes {
            let dev = CrashBlock::from_image(512, image.clone(), persistence).unwrap();
            dev.crash_at_write(index);
            let outcome = run_until_crash(&dev, &ops, Model::default());
            check_recovery(&dev, &outcome, &format!("{persistence:?}, crash at write {index}"));
        }
        for index in 0..flushes {
            let dev = CrashBlock::from_image(512, image.clone(), persistence).unwrap();
            dev.crash_at_flush(index);
            let outcome = run_until_crash(&dev, &ops, Model::default());
            check_recovery(&dev, &outcome, &format!("{persistence:?}, crash at flush {index}"));
        }
    }
}

#[test]
fn crash_at_random_points_of_random_workloads() {
    let image = formatted(96);
    for seed in 0..60u64 {
        let mut rng = SplitMix(seed);
        let ops: Vec<Op> = (0..80).map(|_| rng.op(2000)).collect();
        let dev = CrashBlock::from_image(512, image.clone(), Persistence::Random { seed }).unwrap();
        // 80 operations make well over 80 writes; most crashes land inside.
        dev.crash_at_write(rng.below(120));
        let outcome = run_until_crash(&dev, &ops, Model::default());
        check_recovery(&dev, &outcome, &format!("seed {seed}"));
    }
}

#[test]
fn crashing_again_after_recovery_is_harmless_too() {
    // Crash, recover, run the workload again on the recovered image and
    // crash again: recovery leaves nothing that a second crash can break.
    let image = formatted(32);
    let ops = workload();
    for index in (0..40).step_by(3) {
        let dev = CrashBlock::from_image(512, image.clone(), Persistence::Random { seed: index }).unwrap();
        dev.crash_at_write(index);
        let first = run_until_crash(&dev, &ops, Model::default());
        let again =
            CrashBlock::from_image(512, dev.recovered_image(), Persistence::Random { seed: index + 1 }).unwrap();
        let start = block_on(async { dump(&LogKv::mount(&again, TickClock::default()).await.unwrap()).await });
        assert!(start == first.acknowledged.0 || first.with_in_flight.as_ref().is_some_and(|m| m.0 == start));
        again.crash_at_write(index / 2 + 1);
        let second = run_until_crash(&again, &ops, Model(start));
        check_recovery(&again, &second, &format!("second crash after write {index}"));
    }
}
