//! Virtual time: a clock that moves only when told to.

use alloc::collections::BTreeMap;
use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, Waker};
use core::time::Duration;

use mirage_types::time::{Instant, MonotonicClock, Sleep};

/// A clock whose time advances only when [`VirtualClock::advance_to`] (or a
/// [`Simulation`](crate::Simulation)) moves it. Clones share the same time.
///
/// It starts at [`Instant::ZERO`]. Sleepers register a timer; advancing the
/// clock wakes every timer whose deadline has come. Timers of dropped
/// [`Sleep`] futures are removed, so the timer list holds at most one entry
/// per live sleep future.
#[derive(Clone, Default)]
pub struct VirtualClock {
    state: Rc<RefCell<ClockState>>,
}

#[derive(Default)]
struct ClockState {
    now: Instant,
    /// Pending timers by (deadline, registration number).
    timers: BTreeMap<(Instant, u64), Waker>,
    next_timer: u64,
}

impl VirtualClock {
    /// A clock reading [`Instant::ZERO`] with no timers.
    pub fn new() -> VirtualClock {
        VirtualClock::default()
    }

    /// Moves time forward to `t` (never back: an earlier `t` is ignored) and
    /// wakes every sleeper whose deadline is at or before it.
    pub fn advance_to(&self, t: Instant) {
        let due: Vec<Waker> = {
            let mut state = self.state.borrow_mut();
            if t > state.now {
                state.now = t;
            }
            let now = state.now;
            let mut due = Vec::new();
            while let Some(entry) = state.timers.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                due.push(entry.remove());
            }
            due
        };
        // Woken outside the borrow: a waker may poll nothing, but it may
        // touch the clock again through other handles.
        for waker in due {
            waker.wake();
        }
    }

    /// Moves time forward by `d`.
    pub fn advance(&self, d: Duration) {
        let t = self.now() + d;
        self.advance_to(t);
    }

    /// The earliest deadline of a pending sleeper, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.state.borrow().timers.first_key_value().map(|(k, _)| k.0)
    }

    /// Number of pending timers (one per live, pending sleep future).
    pub fn pending_timers(&self) -> usize {
        self.state.borrow().timers.len()
    }
}

impl fmt::Debug for VirtualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.borrow();
        f.debug_struct("VirtualClock").field("now", &state.now).field("timers", &state.timers.len()).finish()
    }
}

impl MonotonicClock for VirtualClock {
    fn now(&self) -> Instant {
        self.state.borrow().now
    }
}

impl Sleep for VirtualClock {
    async fn sleep_until(&self, deadline: Instant) {
        VirtualSleep { clock: self.clone(), deadline, timer: None, yielded: false }.await
    }
}

/// The future of [`VirtualClock::sleep_until`].
struct VirtualSleep {
    clock: VirtualClock,
    deadline: Instant,
    timer: Option<(Instant, u64)>,
    yielded: bool,
}

impl Future for VirtualSleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let mut state = this.clock.state.borrow_mut();
        if state.now >= this.deadline {
            if let Some(key) = this.timer.take() {
                state.timers.remove(&key);
                return Poll::Ready(());
            }
            // A deadline already past still yields once to the event loop
            // (the `Sleep` contract), so a loop of zero sleeps cannot starve
            // other tasks.
            if this.yielded {
                return Poll::Ready(());
            }
            this.yielded = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let key = match this.timer {
            Some(key) => key,
            None => {
                let key = (this.deadline, state.next_timer);
                state.next_timer += 1;
                this.timer = Some(key);
                key
            }
        };
        state.timers.insert(key, cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for VirtualSleep {
    fn drop(&mut self) {
        if let Some(key) = self.timer.take() {
            // The clock may be borrowed if the drop happens inside a waker
            // call chain; a leftover timer then only causes a spurious wake.
            if let Ok(mut state) = self.clock.state.try_borrow_mut() {
                state.timers.remove(&key);
            }
        }
    }
}
