//! The simulation executor: runs tasks on a [`VirtualClock`] and moves
//! time to the next deadline whenever every task waits.

use alloc::boxed::Box;
use alloc::rc::Rc;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::sync::atomic::{AtomicBool, Ordering};
use core::task::{Context, Poll};
use core::time::Duration;

use futures::task::ArcWake;
use mirage_types::time::{Instant, MonotonicClock};

use crate::VirtualClock;

/// Why [`Simulation::run_until`] stopped before its future completed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimulationError {
    /// Every task waits, and no timer is pending: nothing can ever happen.
    Deadlock {
        /// Virtual time when it was detected.
        now: Instant,
    },
    /// The next event lies beyond the time limit given to `run_until`.
    TimeLimit {
        /// The limit.
        limit: Duration,
        /// Virtual time when it stopped.
        now: Instant,
    },
    /// More polls than [`Simulation::MAX_POLLS`] in one `run_until`: some
    /// task wakes itself forever without advancing time.
    PollLimit(u64),
}

impl fmt::Display for SimulationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimulationError::Deadlock { now } => {
                write!(f, "simulation deadlocked at virtual time {now}: every task waits and no timer is pending")
            }
            SimulationError::TimeLimit { limit, now } => write!(
                f,
                "simulation reached its time limit of {limit:?} at virtual time {now} before the future completed"
            ),
            SimulationError::PollLimit(polls) => {
                write!(f, "simulation exceeded {polls} polls without finishing: a task is busy-looping")
            }
        }
    }
}

impl core::error::Error for SimulationError {}

/// A single-threaded executor over a [`VirtualClock`]: it polls the tasks
/// that were woken and, when none is, advances the clock to the next pending
/// deadline. Clones share the same task list.
#[derive(Clone)]
pub struct Simulation {
    clock: VirtualClock,
    /// Tasks spawned but not yet picked up by `run_until`.
    spawned: Rc<RefCell<Vec<Task>>>,
    /// Tasks being run; taken out of here while `run_until` runs.
    tasks: Rc<RefCell<Vec<Task>>>,
}

struct Task {
    future: Pin<Box<dyn Future<Output = ()>>>,
    woken: Arc<WakeFlag>,
}

struct WakeFlag(AtomicBool);

impl ArcWake for WakeFlag {
    fn wake_by_ref(arc_self: &Arc<Self>) {
        arc_self.0.store(true, Ordering::Relaxed);
    }
}

impl Simulation {
    /// Upper bound on polls in one [`Simulation::run_until`]: it bounds a
    /// busy-looping test instead of hanging it.
    pub const MAX_POLLS: u64 = 50_000_000;

    /// An executor with no tasks, driving `clock`.
    pub fn new(clock: &VirtualClock) -> Simulation {
        Simulation { clock: clock.clone(), spawned: Rc::default(), tasks: Rc::default() }
    }

    /// The clock this simulation drives.
    pub fn clock(&self) -> &VirtualClock {
        &self.clock
    }

    /// Adds a background task. It first runs in the next
    /// [`Simulation::run_until`] (or the current one, if called from a
    /// task), and keeps running across calls until it completes.
    pub fn spawn(&self, task: impl Future<Output = ()> + 'static) {
        let woken = Arc::new(WakeFlag(AtomicBool::new(true)));
        self.spawned.borrow_mut().push(Task { future: Box::pin(task), woken });
    }

    /// Runs `main` and the spawned tasks until `main` completes, advancing
    /// virtual time whenever every task waits. Fails if `main` cannot
    /// complete: deadlock, or the next event is more than `limit` of
    /// virtual time after the call started.
    ///
    /// Background tasks that have not completed stay spawned for the next
    /// call.
    pub fn run_until<F: Future>(&self, main: F, limit: Duration) -> Result<F::Output, SimulationError> {
        let start = self.clock.now();
        let end = start + limit;
        let mut main = core::pin::pin!(main);
        let main_flag = Arc::new(WakeFlag(AtomicBool::new(true)));
        let main_waker = futures::task::waker(main_flag.clone());
        let mut tasks = core::mem::take(&mut *self.tasks.borrow_mut());
        let mut polls = 0u64;
        let result = loop {
            tasks.append(&mut self.spawned.borrow_mut());
            let mut progressed = false;
            if main_flag.0.swap(false, Ordering::Relaxed) {
                progressed = true;
                polls += 1;
                if let Poll::Ready(out) = main.as_mut().poll(&mut Context::from_waker(&main_waker)) {
                    break Ok(out);
                }
            }
            let mut i = 0;
            while i < tasks.len() {
                if tasks[i].woken.0.swap(false, Ordering::Relaxed) {
                    progressed = true;
                    polls += 1;
                    let waker = futures::task::waker(tasks[i].woken.clone());
                    if tasks[i].future.as_mut().poll(&mut Context::from_waker(&waker)).is_ready() {
                        tasks.swap_remove(i);
                        continue;
                    }
                }
                i += 1;
            }
            if polls > Self::MAX_POLLS {
                break Err(SimulationError::PollLimit(Self::MAX_POLLS));
            }
            if progressed || !self.spawned.borrow().is_empty() {
                continue;
            }
            match self.clock.next_deadline() {
                Some(t) if t <= end => self.clock.advance_to(t),
                Some(_) => break Err(SimulationError::TimeLimit { limit, now: self.clock.now() }),
                None => break Err(SimulationError::Deadlock { now: self.clock.now() }),
            }
        };
        tasks.append(&mut self.spawned.borrow_mut());
        // Tasks spawned while this ran go back for the next call; mark
        // everything woken so the next call re-polls after any state change
        // the test made in between.
        for task in &tasks {
            task.woken.0.store(true, Ordering::Relaxed);
        }
        self.tasks.borrow_mut().append(&mut tasks);
        result
    }
}

impl fmt::Debug for Simulation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Simulation")
            .field("clock", &self.clock)
            .field("tasks", &(self.tasks.borrow().len() + self.spawned.borrow().len()))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::cell::Cell;
    use futures::future;
    use mirage_types::time::Sleep;

    #[test]
    fn sleep_advances_virtual_time_only() {
        let clock = VirtualClock::new();
        let sim = Simulation::new(&clock);
        let t = sim
            .run_until(
                async {
                    clock.sleep(Duration::from_secs(3600)).await;
                    clock.now()
                },
                Duration::from_secs(7200),
            )
            .unwrap();
        assert_eq!(t, Instant::ZERO + Duration::from_secs(3600));
        assert_eq!(clock.pending_timers(), 0);
    }

    #[test]
    fn dropped_sleep_removes_its_timer() {
        let clock = VirtualClock::new();
        let sim = Simulation::new(&clock);
        sim.run_until(
            async {
                let long = core::pin::pin!(clock.sleep(Duration::from_secs(100)));
                let short = core::pin::pin!(clock.sleep(Duration::from_secs(1)));
                let _ = future::select(long, short).await;
            },
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(clock.pending_timers(), 0);
        assert_eq!(clock.now(), Instant::ZERO + Duration::from_secs(1));
    }

    #[test]
    fn deadlock_and_time_limit_are_reported() {
        let clock = VirtualClock::new();
        let sim = Simulation::new(&clock);
        let e = sim.run_until(future::pending::<()>(), Duration::from_secs(1)).unwrap_err();
        assert!(matches!(e, SimulationError::Deadlock { .. }), "{e}");
        let e = sim.run_until(clock.sleep(Duration::from_secs(5)), Duration::from_secs(1)).unwrap_err();
        assert!(matches!(e, SimulationError::TimeLimit { .. }), "{e}");
    }

    #[test]
    fn spawned_tasks_run_alongside_main() {
        let clock = VirtualClock::new();
        let sim = Simulation::new(&clock);
        let counter = Rc::new(Cell::new(0));
        let c = counter.clone();
        let task_clock = clock.clone();
        sim.spawn(async move {
            for _ in 0..10 {
                task_clock.sleep(Duration::from_secs(1)).await;
                c.set(c.get() + 1);
            }
        });
        sim.run_until(clock.sleep(Duration::from_millis(5500)), Duration::from_secs(60)).unwrap();
        assert_eq!(counter.get(), 5);
        sim.run_until(clock.sleep(Duration::from_secs(10)), Duration::from_secs(60)).unwrap();
        assert_eq!(counter.get(), 10);
    }
}
