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

    use std::vec::Vec;

    use core::future::Future;
    use core::pin::pin;
    use core::task::{Context, Poll, Waker};

    use mirage::time::Instant;
    use mirage_testkit::FakePlatform;

    use super::*;

    #[test]
    fn greetings_follow_fixed_deadlines_despite_late_wakeups() {
        let platform = FakePlatform::new()
            .starting_at(Instant::from_millis(5_000))
            .waking_late_by(Duration::from_millis(300))
            .without_randomness();
        let mut task = pin!(greet(platform.clone()));
        // The fake's sleeps never return Pending, so one poll runs it to the end.
        assert_eq!(task.as_mut().poll(&mut Context::from_waker(Waker::noop())), Poll::Ready(()));
        let expected: Vec<Instant> = (0..4).map(|i| Instant::from_millis(5_000 + 1_000 * i)).collect();
        assert_eq!(platform.sleep_deadlines(), expected);
    }
}
