//! The platform handle of a simulation.

use alloc::rc::Rc;
use alloc::string::String;
use core::fmt;
use core::future::Future;

use mirage_types::platform::Platform;
use mirage_types::random::{Random, RandomError};
use mirage_types::time::{Instant, MonotonicClock, PosixTime, Sleep, WallClock};

use crate::{SeededRandom, Simulation, VirtualClock};

/// Virtual time, seeded randomness and spawning on a [`Simulation`], as one
/// cheaply cloned handle implementing [`Platform`].
///
/// The wall clock reads the virtual monotonic time as POSIX time since the
/// epoch. [`Platform::exit`] panics (there is no process to end), which
/// fails the test that reached it with the status in the message.
#[derive(Clone)]
pub struct VirtualPlatform {
    sim: Simulation,
    rng: Rc<SeededRandom>,
}

impl VirtualPlatform {
    /// A handle over `sim`'s clock whose randomness is seeded with `seed`.
    pub fn new(sim: &Simulation, seed: u64) -> VirtualPlatform {
        VirtualPlatform { sim: sim.clone(), rng: Rc::new(SeededRandom::new(seed)) }
    }

    /// The clock.
    pub fn clock(&self) -> &VirtualClock {
        self.sim.clock()
    }

    /// The simulation tasks are spawned on.
    pub fn simulation(&self) -> &Simulation {
        &self.sim
    }
}

impl fmt::Debug for VirtualPlatform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VirtualPlatform").field("sim", &self.sim).finish()
    }
}

impl MonotonicClock for VirtualPlatform {
    fn now(&self) -> Instant {
        self.sim.clock().now()
    }
}

impl Sleep for VirtualPlatform {
    async fn sleep_until(&self, deadline: Instant) {
        self.sim.clock().sleep_until(deadline).await
    }
}

impl WallClock for VirtualPlatform {
    fn wall_time(&self) -> PosixTime {
        let nanos = self.now().as_nanos();
        // Both parts are in range by construction: nanos / 1e9 < 2^35 and
        // the remainder is below one second.
        PosixTime::new((nanos / 1_000_000_000) as i64, (nanos % 1_000_000_000) as u32).unwrap_or(PosixTime::EPOCH)
    }
}

impl Random for VirtualPlatform {
    fn fill(&self, buf: &mut [u8]) -> Result<(), RandomError> {
        self.rng.fill(buf)
    }
}

impl Platform for VirtualPlatform {
    fn spawn(&self, task: impl Future<Output = ()> + 'static) {
        self.sim.spawn(task);
    }

    fn args(&self) -> &[String] {
        &[]
    }

    fn exit(&self, status: u8) -> ! {
        panic!("simulated system exited with status {status}")
    }
}
