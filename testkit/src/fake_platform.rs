//! A platform handle for testing an app's code without a simulation:
//! sleeps complete at once, and every part is configurable.

use alloc::boxed::Box;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::time::Duration;

use mirage_types::platform::Platform;
use mirage_types::random::{Random, RandomError};
use mirage_types::time::{Instant, MonotonicClock, PosixTime, Sleep, WallClock};

use crate::SeededRandom;

/// A task handed to [`Platform::spawn`], as a [`FakePlatform`] passes it on.
pub type LocalTask = Pin<Box<dyn Future<Output = ()>>>;

/// A [`Platform`] for unit tests of an app's generic code, where a
/// [`Simulation`](crate::Simulation) would be more than needed: the code
/// under test can be polled to its end with a no-op waker or
/// `futures::executor::block_on`.
///
/// By default:
///
/// - the monotonic clock reads [`Instant::ZERO`] and moves only by sleeping;
/// - a sleep completes at its first poll, moving the clock to its deadline
///   (and records the deadline, see [`FakePlatform::sleep_deadlines`]);
/// - the wall clock reads the monotonic time as POSIX time;
/// - randomness is a [`SeededRandom`] with seed 0;
/// - there are no arguments, [`Platform::spawn`] panics (give it an
///   executor with [`FakePlatform::spawning_with`]) and
///   [`Platform::exit`] panics with the status.
///
/// Clones share the same clock, randomness and records.
///
/// ```
/// use core::time::Duration;
/// use mirage_testkit::FakePlatform;
/// use mirage_types::time::{Instant, MonotonicClock, Sleep};
///
/// // Every wake-up comes 300 ms after its deadline, as on a busy machine.
/// let platform = FakePlatform::new()
///     .starting_at(Instant::from_millis(5_000))
///     .waking_late_by(Duration::from_millis(300));
/// futures::executor::block_on(platform.sleep(Duration::from_secs(1)));
/// assert_eq!(platform.now(), Instant::from_millis(6_300));
/// assert_eq!(platform.sleep_deadlines(), [Instant::from_millis(6_000)]);
/// ```
#[derive(Clone)]
pub struct FakePlatform {
    state: Rc<FakeState>,
}

struct FakeState {
    now: Cell<Instant>,
    /// Added to the clock at every reading of [`MonotonicClock::now`].
    step_per_reading: Duration,
    lateness: Duration,
    timers_fire: bool,
    deadlines: RefCell<Vec<Instant>>,
    wall_time: Option<PosixTime>,
    random: Option<SeededRandom>,
    spawner: Option<Box<dyn Fn(LocalTask)>>,
    args: Vec<String>,
}

impl Default for FakePlatform {
    fn default() -> FakePlatform {
        FakePlatform::new()
    }
}

impl FakePlatform {
    /// The platform described in the [type documentation](FakePlatform).
    pub fn new() -> FakePlatform {
        let state = FakeState {
            now: Cell::new(Instant::ZERO),
            step_per_reading: Duration::ZERO,
            lateness: Duration::ZERO,
            timers_fire: true,
            deadlines: RefCell::default(),
            wall_time: None,
            random: Some(SeededRandom::new(0)),
            spawner: None,
            args: Vec::new(),
        };
        FakePlatform { state: Rc::new(state) }
    }

    /// Applies `change` to the configuration. Only called by the builder
    /// methods, before the handle is cloned.
    fn configured(mut self, change: impl FnOnce(&mut FakeState)) -> FakePlatform {
        let state = Rc::get_mut(&mut self.state).expect("configure a FakePlatform before cloning it");
        change(state);
        self
    }

    /// The monotonic clock starts at `start`.
    pub fn starting_at(self, start: Instant) -> FakePlatform {
        self.configured(|state| state.now.set(start))
    }

    /// Each sleep ends `lateness` after its deadline (or after the time it
    /// was asked, if its deadline had passed), as when the event loop is
    /// late: code that schedules from the time it wakes drifts,
    /// code that schedules from fixed deadlines does not.
    pub fn waking_late_by(self, lateness: Duration) -> FakePlatform {
        self.configured(|state| state.lateness = lateness)
    }

    /// The clock moves `step` forward at every reading, so code that
    /// measures an interval sees time pass although nothing sleeps.
    pub fn advancing_per_reading(self, step: Duration) -> FakePlatform {
        self.configured(|state| state.step_per_reading = step)
    }

    /// No sleep ever completes (the deadline is still recorded): for code
    /// whose timeouts must not interfere with what the test looks at.
    pub fn with_timers_that_never_fire(self) -> FakePlatform {
        self.configured(|state| state.timers_fire = false)
    }

    /// The wall clock reads `time` for ever, instead of following the
    /// monotonic clock.
    pub fn with_wall_time(self, time: PosixTime) -> FakePlatform {
        self.configured(|state| state.wall_time = Some(time))
    }

    /// Randomness from a [`SeededRandom`] seeded with `seed`.
    pub fn with_seed(self, seed: u64) -> FakePlatform {
        self.configured(|state| state.random = Some(SeededRandom::new(seed)))
    }

    /// Randomness fails with [`RandomError::Unavailable`], as on a machine
    /// without an entropy source.
    pub fn without_randomness(self) -> FakePlatform {
        self.configured(|state| state.random = None)
    }

    /// [`Platform::spawn`] hands its tasks to `spawn`, for example a
    /// `futures::executor::LocalPool`'s spawner.
    pub fn spawning_with(self, spawn: impl Fn(LocalTask) + 'static) -> FakePlatform {
        self.configured(|state| state.spawner = Some(Box::new(spawn)))
    }

    /// [`Platform::args`] returns `args`.
    pub fn with_args<S: Into<String>>(self, args: impl IntoIterator<Item = S>) -> FakePlatform {
        let args = args.into_iter().map(Into::into).collect();
        self.configured(|state| state.args = args)
    }

    /// Moves the clock to `t` (or leaves it if it is already later).
    pub fn advance_to(&self, t: Instant) {
        self.state.now.set(self.state.now.get().max(t));
    }

    /// The deadline of every sleep so far, in the order they were asked.
    pub fn sleep_deadlines(&self) -> Vec<Instant> {
        self.state.deadlines.borrow().clone()
    }
}

impl fmt::Debug for FakePlatform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakePlatform")
            .field("now", &self.state.now.get())
            .field("sleeps", &self.state.deadlines.borrow().len())
            .finish()
    }
}

impl MonotonicClock for FakePlatform {
    fn now(&self) -> Instant {
        let now = &self.state.now;
        now.set(now.get() + self.state.step_per_reading);
        now.get()
    }
}

impl Sleep for FakePlatform {
    async fn sleep_until(&self, deadline: Instant) {
        self.state.deadlines.borrow_mut().push(deadline);
        if !self.state.timers_fire {
            futures::future::pending::<()>().await;
        }
        let now = &self.state.now;
        now.set(now.get().max(deadline) + self.state.lateness);
    }
}

impl WallClock for FakePlatform {
    fn wall_time(&self) -> PosixTime {
        if let Some(time) = self.state.wall_time {
            return time;
        }
        let nanos = self.state.now.get().as_nanos();
        // In range by construction: nanos / 1e9 < 2^35 and the remainder is
        // below one second.
        PosixTime::new((nanos / 1_000_000_000) as i64, (nanos % 1_000_000_000) as u32).unwrap_or(PosixTime::EPOCH)
    }
}

impl Random for FakePlatform {
    fn fill(&self, buf: &mut [u8]) -> Result<(), RandomError> {
        match &self.state.random {
            Some(random) => random.fill(buf),
            None => Err(RandomError::Unavailable(String::from("the fake platform was made without randomness"))),
        }
    }
}

impl Platform for FakePlatform {
    fn spawn(&self, task: impl Future<Output = ()> + 'static) {
        match &self.state.spawner {
            Some(spawn) => spawn(Box::pin(task)),
            None => panic!("FakePlatform::spawn without an executor: give it one with spawning_with"),
        }
    }

    fn args(&self) -> &[String] {
        &self.state.args
    }

    fn exit(&self, status: u8) -> ! {
        panic!("the app exited with status {status}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use core::task::{Context, Poll, Waker};

    fn poll_once<F: Future>(f: F) -> Poll<F::Output> {
        core::pin::pin!(f).poll(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn sleeps_complete_at_once_and_move_the_clock() {
        let platform = FakePlatform::new();
        assert_eq!(poll_once(platform.sleep_until(Instant::from_millis(20))), Poll::Ready(()));
        assert_eq!(platform.now(), Instant::from_millis(20));
        // A deadline in the past leaves the clock where it is.
        assert_eq!(poll_once(platform.sleep_until(Instant::from_millis(5))), Poll::Ready(()));
        assert_eq!(platform.now(), Instant::from_millis(20));
        assert_eq!(platform.sleep_deadlines(), [Instant::from_millis(20), Instant::from_millis(5)]);
        assert_eq!(platform.wall_time(), PosixTime::new(0, 20_000_000).unwrap());
    }

    #[test]
    fn timers_that_never_fire_still_record_their_deadline() {
        let platform = FakePlatform::new().with_timers_that_never_fire();
        assert_eq!(poll_once(platform.sleep_until(Instant::from_millis(1))), Poll::Pending);
        assert_eq!(platform.sleep_deadlines(), [Instant::from_millis(1)]);
        assert_eq!(platform.now(), Instant::ZERO);
    }

    #[test]
    fn each_reading_advances_the_clock_by_its_step() {
        let platform = FakePlatform::new().advancing_per_reading(Duration::from_millis(1));
        assert_eq!((platform.now(), platform.now()), (Instant::from_millis(1), Instant::from_millis(2)));
    }

    #[test]
    fn randomness_is_seeded_or_unavailable() {
        let (a, b) = (FakePlatform::new().with_seed(3), FakePlatform::new().with_seed(3));
        assert_eq!(a.next_u64().unwrap(), b.next_u64().unwrap());
        let none = FakePlatform::new().without_randomness();
        assert!(none.next_u64().is_err());
    }

    #[test]
    fn spawn_goes_to_the_given_executor_and_args_are_given() {
        let spawned = Rc::new(Cell::new(0));
        let count = spawned.clone();
        let platform =
            FakePlatform::new().spawning_with(move |_task| count.set(count.get() + 1)).with_args(["--port", "80"]);
        platform.spawn(async {});
        assert_eq!(spawned.get(), 1);
        assert_eq!(platform.args(), vec![String::from("--port"), String::from("80")]);
    }
}
