//! Deterministic fakes for testing code written against `mirage-types`:
//! the test kit the mirage-rs crates share and offer to apps.
//!
//! - [`VirtualClock`]: a [`MonotonicClock`](mirage_types::time::MonotonicClock)
//!   and [`Sleep`](mirage_types::time::Sleep) whose time moves only when
//!   told to ([`VirtualClock::advance_to`]).
//! - [`Simulation`]: a single-threaded executor that polls its tasks and,
//!   when every task is idle, advances the clock to the next pending
//!   deadline. A test that waits 60 virtual seconds takes microseconds.
//! - [`VirtualPlatform`]: the clock plus a [`SeededRandom`] plus spawning
//!   on the simulation, as one handle implementing
//!   [`Platform`](mirage_types::platform::Platform), to give to code that
//!   takes a platform. `mirage-net-stack`'s virtual switch (feature
//!   `test-utils`) runs on the same clock.
//! - [`FakePlatform`]: a platform for unit tests of an app's code without a
//!   simulation: sleeps complete at once, and the start time, lateness,
//!   randomness, arguments and executor are configurable.
//! - [`ScriptedFlow`]: a [`Flow`](mirage_types::flow::Flow) that reads a
//!   fixed input and records what is written.
//! - [`pattern`]: pseudo-random test data in which a misplaced byte shows.
//!
//! Everything is deterministic: the same seed and the same test give the
//! same result, so a failure replays exactly. Nothing here is secure or
//! fast; it is for tests only.
//!
//! ```
//! use core::time::Duration;
//! use mirage_testkit::{Simulation, VirtualClock, VirtualPlatform};
//! use mirage_types::platform::Platform;
//! use mirage_types::time::{Instant, MonotonicClock, Sleep};
//!
//! let clock = VirtualClock::new();
//! let sim = Simulation::new(&clock);
//! let platform = VirtualPlatform::new(&sim, 1);
//! let background = platform.clone();
//! platform.spawn(async move { background.sleep(Duration::from_secs(30)).await });
//! let woke_at = sim
//!     .run_until(
//!         async {
//!             platform.sleep(Duration::from_secs(60)).await;
//!             platform.now()
//!         },
//!         Duration::from_secs(120),
//!     )
//!     .unwrap();
//! assert_eq!(woke_at, Instant::ZERO + Duration::from_secs(60));
//! ```
//!
//! This crate has no Cargo features.

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod clock;
mod fake_platform;
mod flow;
mod pattern;
mod random;
mod simulation;
mod virtual_platform;

pub use clock::VirtualClock;
pub use fake_platform::{FakePlatform, LocalTask};
pub use flow::ScriptedFlow;
pub use pattern::pattern;
pub use random::SeededRandom;
pub use simulation::{Simulation, SimulationError};
pub use virtual_platform::VirtualPlatform;
