//! The client against the simulated xenstored ([`super::fake`]) on a heap
//! ring page: each wait of the client runs one step of the daemon.

use alloc::boxed::Box;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::future::Future;
use core::pin::{pin, Pin};
use core::task::{Context, Poll, Waker};

use super::fake::{block_on, daemon, simulated};
use super::wire::{Header, MessageType};
use super::*;

/// A boxed future for [`run_all`].
type Task<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

fn store() -> Rc<Xenstore> {
    simulated()
}

/// Polls all `futures` round robin until all complete, calling `check`
/// after each poll.
fn run_all<T>(mut futures: Vec<Task<'_, T>>, mut check: impl FnMut()) -> Vec<T> {
    let mut results: Vec<Option<T>> = futures.iter().map(|_| None).collect();
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..100_000 {
        for (future, result) in futures.iter_mut().zip(results.iter_mut()) {
            if result.is_none() {
                if let Poll::Ready(v) = future.as_mut().poll(&mut cx) {
                    *result = Some(v);
                }
                check();
            }
        }
        if results.iter().all(Option::is_some) {
            return results.into_iter().flatten().collect();
        }
    }
    panic!("the futures never completed");
}

#[test]
fn read_write_directory_and_remove_with_relative_and_absolute_paths() {
    let store = store();
    block_on(async {
        assert_eq!(store.read("name").await.unwrap(), "guest");
        assert_eq!(store.read("/local/domain/7/domid").await.unwrap(), "7");
        assert_eq!(store.directory("device").await.unwrap(), ["vbd", "vif"]);
        store.write("data/mirage-test", "hello").await.unwrap();
        assert_eq!(store.read("/local/domain/7/data/mirage-test").await.unwrap(), "hello");
        assert!(store.directory("data/mirage-test").await.unwrap().is_empty());
        store.remove("data").await.unwrap();
        let gone = store.read("data/mirage-test").await.unwrap_err();
        assert!(gone.is_not_found(), "{gone}");
        assert_eq!(gone.to_string(), "xenstore XS_READ of \"data/mirage-test\": ENOENT");
        assert!(store.remove("data").await.unwrap_err().is_not_found());
        store.mkdir("empty").await.unwrap();
        assert_eq!(store.read("empty").await.unwrap(), "");
    });
}

#[test]
fn messages_longer_than_the_rings_cross_them_in_pieces() {
    let store = store();
    // Replies come 7 bytes per step: every message is split, and the
    // 4000-byte value needs several fills of the 1 KiB rings both ways.
    daemon(&store).chunk = 7;
    let value: String = (0..4000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    block_on(async {
        for round in 0..3 {
            store.write("data/big", &value[round..]).await.unwrap();
            assert_eq!(store.read("data/big").await.unwrap(), value[round..]);
        }
    });
    let too_long = "x".repeat(wire::PAYLOAD_MAX);
    let err = block_on(store.write("data/big", &too_long)).unwrap_err();
    assert!(matches!(err, XenstoreError::TooLong { .. }), "{err}");
    // Refused before sending: the daemon saw 6 requests only.
    assert_eq!(daemon(&store).seen.len(), 6);
}

#[test]
fn replies_out_of_order_reach_their_own_requests() {
    let store = store();
    daemon(&store).reverse = true;
    let paths = ["name", "domid", "device/vbd/768/backend-id"];
    let futures: Vec<Task<'_, _>> = paths.iter().map(|p| Box::pin(store.read(p)) as Task<'_, _>).collect();
    let results = run_all(futures, || {});
    let values: Vec<String> = results.into_iter().map(Result::unwrap).collect();
    assert_eq!(values, ["guest", "7", "0"]);
}

#[test]
fn at_most_max_in_flight_requests_wait_at_once() {
    let store = store();
    let n = 3 * MAX_IN_FLIGHT;
    let paths: Vec<String> = (0..n).map(|i| alloc::format!("data/{i}")).collect();
    let futures: Vec<Task<'_, Result<String, XenstoreError>>> = paths
        .iter()
        .map(|p| Box::pin(async { store.write(p, p).await.and(store.read(p).await) }) as Task<'_, _>)
        .collect();
    let mut most = 0;
    let results = run_all(futures, || {
        let in_flight = store.core.borrow().in_flight();
        most = most.max(in_flight);
        assert!(in_flight <= MAX_IN_FLIGHT);
    });
    assert_eq!(most, MAX_IN_FLIGHT);
    for (path, value) in paths.iter().zip(results) {
        assert_eq!(&value.unwrap(), path);
    }
}

#[test]
fn a_watch_fires_at_once_then_on_changes_and_unwatches_when_dropped() {
    let store = store();
    block_on(async {
        let mut watch = store.watch("device").await.unwrap();
        assert_eq!(watch.changed().await.unwrap(), "device");
        store.write("device/vbd/768/state", "4").await.unwrap();
        assert_eq!(watch.changed().await.unwrap(), "device/vbd/768/state");
        // Another domain's write fires it too.
        daemon(&store).write_from_outside("device/vif/0/state", "2");
        assert_eq!(watch.changed().await.unwrap(), "device/vif/0/state");
        // A write elsewhere does not.
        store.write("data/x", "1").await.unwrap();
        drop(watch);
        // The unwatch is sent at the drop; one more request lets the daemon
        // read it.
        store.read("name").await.unwrap();
    });
    assert!(daemon(&store).watches.is_empty());
    assert!(daemon(&store).seen.iter().any(|(kind, _)| *kind == MessageType::Unwatch));
}

#[test]
fn watch_events_coalesce_and_overflow_to_the_watched_path() {
    let store = store();
    block_on(async {
        let mut watch = store.watch("data").await.unwrap();
        assert_eq!(watch.changed().await.unwrap(), "data");
        store.write("data/a", "1").await.unwrap();
        store.write("data/a/b", "1").await.unwrap(); // under data/a: coalesced
        store.write("data/a", "2").await.unwrap(); // equal: coalesced
        store.write("data/c", "1").await.unwrap();
        assert_eq!(watch.changed().await.unwrap(), "data/a");
        assert_eq!(watch.changed().await.unwrap(), "data/c");
        for i in 0..=MAX_WATCH_EVENTS {
            store.write(&alloc::format!("data/{i}"), "x").await.unwrap();
        }
        let queued = store.core.borrow().watches.values().map(|w| w.events.len()).sum::<usize>();
        assert!(queued <= MAX_WATCH_EVENTS);
        assert_eq!(watch.changed().await.unwrap(), "data");
        assert!(store.core.borrow().watches.values().all(|w| w.events.is_empty()));
    });
}

#[test]
fn a_transaction_commits_and_retries_on_eagain_a_bounded_number_of_times() {
    let store = store();
    daemon(&store).fail_commits = 2;
    let mut runs = 0;
    let value = block_on(store.transaction(|tx| {
        runs += 1;
        async move {
            let name = tx.read("name").await?;
            tx.write("data/tx", &name).await?;
            Ok(tx.id())
        }
    }))
    .unwrap();
    assert_eq!((runs, daemon(&store).commits), (3, 1));
    // Each run's requests carried its own transaction id.
    assert!(daemon(&store).seen.iter().any(|&(kind, tx)| kind == MessageType::Write && tx == value));

    daemon(&store).fail_commits = u32::MAX;
    let mut runs = 0;
    let err = block_on(store.transaction(|tx| {
        runs += 1;
        async move { tx.write("data/tx", "x").await }
    }))
    .unwrap_err();
    assert!(err.is_again(), "{err}");
    assert_eq!(runs, 1 + MAX_TRANSACTION_RETRIES);
}

#[test]
fn a_failing_body_aborts_the_transaction_and_returns_its_error() {
    let store = store();
    let err = block_on(store.transaction(|tx| async move { tx.read("no/such/node").await })).unwrap_err();
    assert!(err.is_not_found());
    assert_eq!(daemon(&store).seen.last().map(|s| s.0), Some(MessageType::TransactionEnd));
    assert_eq!(daemon(&store).commits, 0);
}

#[test]
fn a_message_of_unknown_type_fails_the_connection_for_everyone() {
    let store = store();
    let mut garbage = Header { kind: 99, req_id: 0, tx_id: 0, len: 0 }.emit().to_vec();
    garbage.extend_from_slice(&[0; 4]);
    daemon(&store).inject(&garbage);
    let err = block_on(store.read("name")).unwrap_err();
    assert!(matches!(err, XenstoreError::Malformed(_)), "{err}");
    assert!(matches!(block_on(store.read("name")), Err(XenstoreError::Malformed(_))));
}

#[test]
fn a_reply_to_no_request_or_of_the_wrong_type_is_malformed() {
    for (kind, req_id) in [(MessageType::Read, 1000), (MessageType::Directory, 0)] {
        let store = store();
        daemon(&store).inject(&Header { kind: kind as u32, req_id, tx_id: 0, len: 0 }.emit());
        let err = block_on(store.read("name")).unwrap_err();
        assert!(matches!(err, XenstoreError::Malformed(_)), "{err}");
    }
}

#[test]
fn ring_indices_out_of_range_fail_the_connection() {
    let store = store();
    store.page.write::<u32>(ring::offset::RSP_PROD, 5000);
    let err = block_on(store.read("name")).unwrap_err();
    assert!(matches!(err, XenstoreError::Malformed(ref m) if m.contains("ahead")), "{err}");
}

#[test]
fn a_cancelled_request_leaves_the_stream_in_step() {
    let store = store();
    {
        // Poll once (the request is sent), then drop it.
        let mut read = Box::pin(store.read("name"));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(read.as_mut().poll(&mut cx).is_pending());
    }
    assert_eq!(store.core.borrow().in_flight(), 0);
    assert_eq!(block_on(store.read("domid")).unwrap(), "7");
    assert!(store.core.borrow().pending.is_empty());
}

/// Arbitrary bytes in the response ring never panic the client: a read
/// either completes (with a value or an error) or still waits for the rest
/// of a message the garbage announced.
#[test]
fn garbage_replies_never_panic() {
    use proptest::prelude::*;
    let mut runner = proptest::test_runner::TestRunner::default();
    runner
        .run(&proptest::collection::vec(any::<u8>(), 0..3000), |bytes| {
            let store = store();
            daemon(&store).inject(&bytes);
            let mut read = pin!(store.read("name"));
            let mut cx = Context::from_waker(Waker::noop());
            for _ in 0..500 {
                if read.as_mut().poll(&mut cx).is_ready() {
                    break;
                }
            }
            Ok(())
        })
        .unwrap();
}
