//! Exclusive access to a value across `.await`s, on one event loop.
//!
//! `futures`' `Mutex` needs `std`. On a single-threaded loop mutual
//! exclusion needs no atomics: a flag, the value in a `RefCell`, and the
//! wakers of the tasks waiting.

use alloc::vec::Vec;
use core::cell::{Cell, RefCell, RefMut};
use core::future::Future;
use core::ops::{Deref, DerefMut};
use core::pin::Pin;
use core::task::{Context, Poll, Waker};

/// A value that one task at a time may use, holding it across `.await`s.
#[derive(Debug)]
pub(crate) struct Exclusive<T> {
    held: Cell<bool>,
    value: RefCell<T>,
    // At most one waker per waiting task (deduplicated with `will_wake`).
    waiters: RefCell<Vec<Waker>>,
}

impl<T> Exclusive<T> {
    pub(crate) fn new(value: T) -> Exclusive<T> {
        Exclusive { held: Cell::new(false), value: RefCell::new(value), waiters: RefCell::new(Vec::new()) }
    }

    /// Completes with the value once no other task holds it. Waiting is
    /// cancel-safe: dropping the future leaves the lock as it was.
    pub(crate) fn lock(&self) -> Acquire<'_, T> {
        Acquire { lock: self }
    }
}

/// The future of [`Exclusive::lock`].
pub(crate) struct Acquire<'a, T> {
    lock: &'a Exclusive<T>,
}

impl<'a, T> Future for Acquire<'a, T> {
    type Output = Guard<'a, T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Guard<'a, T>> {
        let lock = self.lock;
        if !lock.held.get() {
            lock.held.set(true);
            // `held` was false, so no other guard, hence no other borrow,
            // exists.
            return Poll::Ready(Guard { lock, value: Some(lock.value.borrow_mut()) });
        }
        let mut waiters = lock.waiters.borrow_mut();
        if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
            waiters.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// The value, held until dropped.
pub(crate) struct Guard<'a, T> {
    lock: &'a Exclusive<T>,
    value: Option<RefMut<'a, T>>,
}

impl<T> Deref for Guard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.value.as_deref().unwrap_or_else(|| unreachable!("only `drop` takes the value"))
    }
}

impl<T> DerefMut for Guard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.value.as_deref_mut().unwrap_or_else(|| unreachable!("only `drop` takes the value"))
    }
}

impl<T> Drop for Guard<'_, T> {
    fn drop(&mut self) {
        self.value = None;
        self.lock.held.set(false);
        // Wake every waiter, not just the first: a waiter whose future was
        // dropped would swallow a single wake-up and leave the rest asleep.
        // The losers register again.
        let waiters = core::mem::take(&mut *self.lock.waiters.borrow_mut());
        waiters.into_iter().for_each(Waker::wake);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::task::noop_waker;

    #[test]
    fn second_task_waits_for_the_first_guard() {
        let cell = Exclusive::new(1u32);
        let waker = noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut first = futures::executor::block_on(cell.lock());
        *first += 1;
        let mut second = cell.lock();
        assert!(Pin::new(&mut second).poll(&mut cx).is_pending());
        drop(first);
        match Pin::new(&mut second).poll(&mut cx) {
            Poll::Ready(guard) => assert_eq!(*guard, 2),
            Poll::Pending => panic!("the lock was released"),
        };
    }
}
