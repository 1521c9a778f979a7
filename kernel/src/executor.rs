//! A single-threaded executor with a timer queue: the kernel's event loop.
//!
//! Tasks are `Pin<Box<dyn Future>>`s polled when woken; sleeping tasks
//! register their deadline in a timer queue. When nothing is ready the
//! executor asks its [`Idle`] to wait until the earliest deadline (on the
//! hardware: program a one-shot timer and halt). The executor itself reads
//! no hardware, so it is tested on the host with virtual time.
//!
//! Bounds: one ready-queue slot and one waker per live task (a task woken
//! many times is queued once); one timer entry per pending [`SleepUntil`].
//! Both grow only with what the application itself creates.

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::rc::Rc;
use alloc::sync::Arc;
use alloc::task::Wake;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use core::future::Future;
use core::pin::Pin;
use core::sync::atomic::{AtomicBool, Ordering};
use core::task::{Context, Poll, Waker};

use mirage_types::time::Instant;

/// What the executor does when no task is ready.
pub trait Idle {
    /// The monotonic clock.
    fn now(&self) -> Instant;

    /// Waits until `deadline` (or until some interrupt, if `None`). May
    /// return early (a spurious wake-up); the executor checks again.
    fn wait(&mut self, deadline: Option<Instant>);
}

/// A task waiting to run.
type Task = Pin<Box<dyn Future<Output = ()>>>;

/// The wake side of a task: queues its id once until it is polled.
struct TaskWaker {
    id: usize,
    queued: AtomicBool,
    ready: Arc<spin::Mutex<VecDeque<usize>>>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            self.ready.lock().push_back(self.id);
        }
    }
}

struct Slot {
    task: Option<Task>,
    waker: Arc<TaskWaker>,
}

/// The executor's state, shared by the handles that spawn and sleep.
struct Shared {
    slots: RefCell<Vec<Option<Slot>>>,
    free: RefCell<Vec<usize>>,
    live: Cell<usize>,
    ready: Arc<spin::Mutex<VecDeque<usize>>>,
    timers: RefCell<BTreeMap<(Instant, u64), Waker>>,
    next_timer: Cell<u64>,
}

/// A handle to the event loop: spawns tasks and creates timers. Cheap to
/// clone; every clone refers to the same loop.
#[derive(Clone)]
pub struct Executor {
    shared: Rc<Shared>,
}

impl Default for Executor {
    fn default() -> Self {
        Executor::new()
    }
}

impl Executor {
    /// An executor with no task.
    pub fn new() -> Executor {
        Executor {
            shared: Rc::new(Shared {
                slots: RefCell::new(Vec::new()),
                free: RefCell::new(Vec::new()),
                live: Cell::new(0),
                ready: Arc::new(spin::Mutex::new(VecDeque::new())),
                timers: RefCell::new(BTreeMap::new()),
                next_timer: Cell::new(0),
            }),
        }
    }

    /// Adds `task`, to be polled from the event loop (never from here).
    pub fn spawn(&self, task: impl Future<Output = ()> + 'static) {
        let shared = &self.shared;
        let mut slots = shared.slots.borrow_mut();
        let id = shared.free.borrow_mut().pop().unwrap_or(slots.len());
        let waker = Arc::new(TaskWaker { id, queued: AtomicBool::new(false), ready: shared.ready.clone() });
        let slot = Slot { task: Some(Box::pin(task)), waker: waker.clone() };
        if id == slots.len() {
            slots.push(Some(slot));
        } else {
            slots[id] = Some(slot);
        }
        shared.live.set(shared.live.get() + 1);
        waker.wake_by_ref();
    }

    /// How many tasks have been spawned and not completed.
    pub fn live_tasks(&self) -> usize {
        self.shared.live.get()
    }

    /// A future that completes once `idle.now()`, as seen by the executor,
    /// reaches `deadline` (see [`SleepUntil`]).
    pub fn sleep_until(&self, deadline: Instant) -> SleepUntil {
        SleepUntil { executor: self.clone(), deadline, key: None, yielded: false }
    }

    /// Runs `main` and every spawned task until `main` completes, and
    /// returns its output. Tasks still pending then are left in place.
    pub fn block_on<T: 'static>(&self, main: impl Future<Output = T> + 'static, idle: &mut impl Idle) -> T {
        let output: Rc<RefCell<Option<T>>> = Rc::new(RefCell::new(None));
        let slot = output.clone();
        self.spawn(async move {
            let value = main.await;
            *slot.borrow_mut() = Some(value);
        });
        loop {
            self.run_ready();
            if let Some(value) = output.borrow_mut().take() {
                return value;
            }
            self.fire_timers(idle.now());
            if self.shared.ready.lock().is_empty() {
                let deadline = self.shared.timers.borrow().keys().next().map(|&(deadline, _)| deadline);
                idle.wait(deadline);
                self.fire_timers(idle.now());
            }
        }
    }

    /// Polls every task that was ready when the round began, once.
    fn run_ready(&self) {
        // Bounded by the queue length at the start: tasks woken during this
        // round run in the next, so a task that wakes itself cannot starve
        // the timers.
        let round = self.shared.ready.lock().len();
        for _ in 0..round {
            let Some(id) = self.shared.ready.lock().pop_front() else { break };
            let (task, waker) = {
                let mut slots = self.shared.slots.borrow_mut();
                let Some(Some(slot)) = slots.get_mut(id) else { continue };
                slot.waker.queued.store(false, Ordering::Release);
                let Some(task) = slot.task.take() else { continue };
                (task, slot.waker.clone())
            };
            let mut task = task;
            // No borrow is held while polling: the task may spawn and sleep.
            let done = task.as_mut().poll(&mut Context::from_waker(&Waker::from(waker))).is_ready();
            let mut slots = self.shared.slots.borrow_mut();
            if done {
                slots[id] = None;
                self.shared.free.borrow_mut().push(id);
                self.shared.live.set(self.shared.live.get() - 1);
            } else if let Some(Some(slot)) = slots.get_mut(id) {
                slot.task = Some(task);
            }
        }
    }

    /// Wakes every timer whose deadline is at or before `now`.
    fn fire_timers(&self, now: Instant) {
        let mut timers = self.shared.timers.borrow_mut();
        while let Some(entry) = timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            entry.remove().wake();
        }
    }
}

/// Completes once the executor's clock reaches the deadline.
///
/// A deadline already passed at the first poll still yields once to the
/// event loop (`mirage_types::time::Sleep`'s contract). Dropping the future
/// removes its timer (cancel-safe).
pub struct SleepUntil {
    executor: Executor,
    deadline: Instant,
    key: Option<(Instant, u64)>,
    yielded: bool,
}

impl SleepUntil {
    /// Polls against the clock reading `now`.
    pub fn poll_at(&mut self, now: Instant, cx: &mut Context<'_>) -> Poll<()> {
        let shared = &self.executor.shared;
        if now >= self.deadline {
            if let Some(key) = self.key.take() {
                shared.timers.borrow_mut().remove(&key);
            } else if !self.yielded {
                self.yielded = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            return Poll::Ready(());
        }
        self.yielded = true;
        let mut timers = shared.timers.borrow_mut();
        match self.key {
            Some(key) => {
                // Woken spuriously or moved to another task: keep the waker current.
                if let Some(waker) = timers.get_mut(&key) {
                    waker.clone_from(cx.waker());
                } else {
                    timers.insert(key, cx.waker().clone());
                }
            }
            None => {
                let key = (self.deadline, shared.next_timer.get());
                shared.next_timer.set(key.1.wrapping_add(1));
                timers.insert(key, cx.waker().clone());
                self.key = Some(key);
            }
        }
        Poll::Pending
    }
}

impl Drop for SleepUntil {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.executor.shared.timers.borrow_mut().remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use core::time::Duration;

    /// Virtual time: waiting jumps to the deadline; records every wait.
    struct VirtualTime {
        now: Rc<Cell<Instant>>,
        waits: Vec<Option<Instant>>,
    }

    impl VirtualTime {
        fn new() -> VirtualTime {
            VirtualTime { now: Rc::new(Cell::new(Instant::ZERO)), waits: Vec::new() }
        }
    }

    impl Idle for VirtualTime {
        fn now(&self) -> Instant {
            self.now.get()
        }
        fn wait(&mut self, deadline: Option<Instant>) {
            assert!(self.waits.len() < 1000, "the executor waited too often");
            self.waits.push(deadline);
            let deadline = deadline.expect("waited with no timer: the test would hang");
            self.now.set(self.now.get().max(deadline));
        }
    }

    /// A sleep against the virtual clock shared with `time`.
    async fn sleep(executor: &Executor, now: &Rc<Cell<Instant>>, deadline: Instant) {
        let mut sleep = executor.sleep_until(deadline);
        core::future::poll_fn(|cx| sleep.poll_at(now.get(), cx)).await
    }

    #[test]
    fn block_on_returns_main_output_without_waiting() {
        let executor = Executor::new();
        let mut time = VirtualTime::new();
        assert_eq!(executor.block_on(async { 7 }, &mut time), 7);
        assert!(time.waits.is_empty());
        assert_eq!(executor.live_tasks(), 0);
    }

    #[test]
    fn sleeps_wake_in_deadline_order_and_wait_for_the_earliest() {
        let executor = Executor::new();
        let mut time = VirtualTime::new();
        let log = Rc::new(RefCell::new(Vec::new()));
        for (name, ms) in [("c", 300), ("a", 100), ("b", 200)] {
            let (executor2, now, log) = (executor.clone(), time.now.clone(), log.clone());
            executor.spawn(async move {
                sleep(&executor2, &now, Instant::from_millis(ms)).await;
                log.borrow_mut().push((name, now.get()));
            });
        }
        let (executor2, now) = (executor.clone(), time.now.clone());
        executor.block_on(async move { sleep(&executor2, &now, Instant::from_millis(250)).await }, &mut time);
        assert_eq!(*log.borrow(), vec![("a", Instant::from_millis(100)), ("b", Instant::from_millis(200))]);
        assert_eq!(
            time.waits,
            vec![Some(Instant::from_millis(100)), Some(Instant::from_millis(200)), Some(Instant::from_millis(250))]
        );
        // The 300 ms sleeper is still pending.
        assert_eq!(executor.live_tasks(), 1);
    }

    #[test]
    fn a_past_deadline_yields_once_then_completes() {
        let executor = Executor::new();
        let mut time = VirtualTime::new();
        time.now.set(Instant::from_millis(50));
        let order = Rc::new(RefCell::new(Vec::new()));
        let (executor2, now) = (executor.clone(), time.now.clone());
        let o = order.clone();
        executor.block_on(
            async move {
                let o2 = o.clone();
                executor2.spawn(async move { o2.borrow_mut().push("spawned") });
                // Without the yield, this task would run on past the sleep
                // before the spawned task got its first poll.
                sleep(&executor2, &now, Instant::from_millis(10)).await;
                o.borrow_mut().push("sleeper");
            },
            &mut time,
        );
        assert_eq!(*order.borrow(), vec!["spawned", "sleeper"]);
        assert!(time.waits.is_empty(), "a past deadline needs no wait");
    }

    #[test]
    fn dropping_a_sleep_cancels_its_timer() {
        let executor = Executor::new();
        let mut time = VirtualTime::new();
        let (executor2, now) = (executor.clone(), time.now.clone());
        executor.block_on(
            async move {
                let mut long = executor2.sleep_until(Instant::from_millis(10_000));
                // Register the long timer, then give up on it.
                core::future::poll_fn(|cx| {
                    assert_eq!(long.poll_at(now.get(), cx), Poll::Pending);
                    Poll::Ready(())
                })
                .await;
                assert_eq!(executor2.shared.timers.borrow().len(), 1);
                drop(long);
                assert!(executor2.shared.timers.borrow().is_empty());
                sleep(&executor2, &now, Instant::from_millis(5)).await;
            },
            &mut time,
        );
        assert_eq!(time.waits, vec![Some(Instant::from_millis(5))]);
    }

    #[test]
    fn tasks_spawned_from_tasks_run_and_slots_are_reused() {
        let executor = Executor::new();
        let mut time = VirtualTime::new();
        let count = Rc::new(Cell::new(0));
        let (executor2, count2, now) = (executor.clone(), count.clone(), time.now.clone());
        executor.block_on(
            async move {
                for round in 0..3u64 {
                    for _ in 0..4 {
                        let count = count2.clone();
                        executor2.spawn(async move { count.set(count.get() + 1) });
                    }
                    sleep(&executor2, &now, Instant::from_millis(round + 1)).await;
                }
            },
            &mut time,
        );
        assert_eq!(count.get(), 12);
        // Four children at a time plus main: slots are recycled, not grown.
        assert!(executor.shared.slots.borrow().len() <= 5, "{}", executor.shared.slots.borrow().len());
    }

    #[test]
    fn many_wakes_queue_a_task_once() {
        let executor = Executor::new();
        let mut time = VirtualTime::new();
        let waker_slot: Rc<RefCell<Option<Waker>>> = Rc::new(RefCell::new(None));
        let ws = waker_slot.clone();
        let polls = Rc::new(Cell::new(0));
        let p = polls.clone();
        executor.spawn(core::future::poll_fn(move |cx| {
            p.set(p.get() + 1);
            *ws.borrow_mut() = Some(cx.waker().clone());
            Poll::<()>::Pending
        }));
        let (executor2, now, ws) = (executor.clone(), time.now.clone(), waker_slot.clone());
        executor.block_on(
            async move {
                sleep(&executor2, &now, Instant::from_millis(1)).await; // let the task register
                let waker = ws.borrow().clone().unwrap();
                for _ in 0..100 {
                    waker.wake_by_ref();
                }
                assert_eq!(executor2.shared.ready.lock().len(), 1);
                sleep(&executor2, &now, Instant::from_millis(1) + Duration::from_millis(1)).await;
            },
            &mut time,
        );
        assert_eq!(polls.get(), 2);
    }
}
