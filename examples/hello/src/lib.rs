//! The hello example: the smallest mirage-rs application.
//!
//! It logs a greeting four times, one second apart, and returns. It needs
//! no device, only a platform for its clock, so it runs unchanged on every
//! platform.

#![no_std]

use core::time::Duration;

use mirage::devices::Devices;
use mirage::platform::Platform;

/// How many greetings [`start`] logs.
pub const GREETINGS: u32 = 4;

/// The time between two greetings.
pub const PERIOD: Duration = Duration::from_secs(1);

/// Logs "hello from mirage-rs (i/4)" at info level [`GREETINGS`] times,
/// [`PERIOD`] apart, then returns.
///
/// The greetings are scheduled against deadlines computed once from the
/// start time, so the period does not drift with the time logging takes.
pub async fn start<P: Platform, D: Devices>(platform: P, _devices: D) {
    greet(platform).await
}

/// The greetings of [`start`], which needs no device.
pub async fn greet<P: Platform>(platform: P) {
    let started = platform.now();
    for i in 0..GREETINGS {
        platform.sleep_until(started + PERIOD * i).await;
        log::info!("hello from mirage-rs ({}/{GREETINGS})", i + 1);
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use std::cell::RefCell;
    use std::rc::Rc;
    use std::string::String;
    use std::vec::Vec;

    use core::future::Future;
    use core::pin::pin;
    use core::task::{Context, Poll, Waker};

    use mirage::random::{Random, RandomError};
    use mirage::time::{Instant, MonotonicClock, PosixTime, Sleep, WallClock};

    use super::*;

    /// Virtual time: each sleep jumps to its deadline and then 300 ms
    /// further, as if the event loop were late, and records the deadline.
    #[derive(Clone, Default)]
    struct LatePlatform {
        now: Rc<RefCell<Instant>>,
        deadlines: Rc<RefCell<Vec<Instant>>>,
    }

    impl MonotonicClock for LatePlatform {
        fn now(&self) -> Instant {
            *self.now.borrow()
        }
    }
    impl Sleep for LatePlatform {
        async fn sleep_until(&self, deadline: Instant) {
            self.deadlines.borrow_mut().push(deadline);
            let mut now = self.now.borrow_mut();
            *now = (*now).max(deadline) + Duration::from_millis(300);
        }
    }
    impl WallClock for LatePlatform {
        fn wall_time(&self) -> PosixTime {
            PosixTime::EPOCH
        }
    }
    impl Random for LatePlatform {
        fn fill(&self, _: &mut [u8]) -> Result<(), RandomError> {
            Err(RandomError::Unavailable(String::from("not needed by hello")))
        }
    }
    impl Platform for LatePlatform {
        fn spawn(&self, _: impl Future<Output = ()> + 'static) {
            unreachable!("hello spawns nothing")
        }
        fn args(&self) -> &[String] {
            &[]
        }
        fn exit(&self, status: u8) -> ! {
            panic!("hello does not exit (status {status})")
        }
    }

    #[test]
    fn greetings_follow_fixed_deadlines_despite_late_wakeups() {
        let platform = LatePlatform::default();
        *platform.now.borrow_mut() = Instant::from_millis(5_000);
        let mut task = pin!(greet(platform.clone()));
        // The fake never returns Pending, so one poll runs it to the end.
        assert_eq!(task.as_mut().poll(&mut Context::from_waker(Waker::noop())), Poll::Ready(()));
        let expected: Vec<Instant> = (0..4).map(|i| Instant::from_millis(5_000 + 1_000 * i)).collect();
        assert_eq!(*platform.deadlines.borrow(), expected);
    }
}
