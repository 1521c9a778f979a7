//! A first-come mutual exclusion for async code on one event loop.
//!
//! `futures`' `Mutex` needs `std`; this one needs only `core` and `alloc`,
//! which is all a single-threaded loop requires: no atomics, no spinning.

use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, Waker};

/// Serialises the store's operations so that no two interleave their
/// device I/O across an `.await`.
#[derive(Debug, Default)]
pub(crate) struct AsyncLock {
    held: Cell<bool>,
    // One waker per task waiting (deduplicated with `will_wake`), so this is
    // bounded by the number of tasks using the store at once.
    waiters: RefCell<Vec<Waker>>,
}

impl AsyncLock {
    /// Completes once the lock is ours; dropping the future before then
    /// has no effect on the lock, so waiting is cancel-safe.
    pub(crate) fn lock(&self) -> Acquire<'_> {
        Acquire { lock: self }
    }
}

/// The future of [`AsyncLock::lock`].
pub(crate) struct Acquire<'a> {
    lock: &'a AsyncLock,
}

impl<'a> Future for Acquire<'a> {
    type Output = Guard<'a>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Guard<'a>> {
        let lock = self.lock;
        if !lock.held.get() {
            lock.held.set(true);
            return Poll::Ready(Guard { lock });
        }
        let mut waiters = lock.waiters.borrow_mut();
        if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
            waiters.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// Holds the lock until dropped.
pub(crate) struct Guard<'a> {
    lock: &'a AsyncLock,
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        self.lock.held.set(false);
        // Waking every waiter (not just the first) matters: a waiter whose
        // future was dropped would swallow a single wake-up and leave the
        // others asleep forever. The losers simply register again.
        let waiters = core::mem::take(&mut *self.lock.waiters.borrow_mut());
        waiters.into_iter().for_each(Waker::wake);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::task::Poll;
    use futures::task::noop_waker;

    #[test]
    fn second_acquirer_waits_until_the_first_guard_drops() {
        let lock = AsyncLock::default();
        let waker = noop_waker();
        let mut cx = Context::from_waker(&waker);
        let first = futures::executor::block_on(lock.lock());
        let mut second = lock.lock();
        assert!(Pin::new(&mut second).poll(&mut cx).is_pending());
        drop(first);
        assert!(matches!(Pin::new(&mut second).poll(&mut cx), Poll::Ready(_)));
    }
}
