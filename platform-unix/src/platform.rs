//! The platform handle of a Linux process: clocks, sleep, entropy, tasks,
//! arguments and exit, on tokio's current-thread runtime.

use std::future::Future;
use std::io::Write;
use std::rc::Rc;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mirage_rng::{Drbg, DrbgConfig};
use mirage_types::platform::Platform;
use mirage_types::random::{Random, RandomError};
use mirage_types::time::{Instant, MonotonicClock, PosixTime, Sleep, WallClock};

/// The origin of every [`HostClock`] in the process, fixed at first use.
///
/// One origin for the whole process means that all clocks agree (the
/// logger's timestamps and the application's deadlines are comparable) and
/// that an [`Instant`] converts back to a host instant exactly, which
/// `sleep_until` needs.
fn origin() -> std::time::Instant {
    static ORIGIN: OnceLock<std::time::Instant> = OnceLock::new();
    *ORIGIN.get_or_init(std::time::Instant::now)
}

/// The host's clocks: monotonic time (nanoseconds since the process first
/// read a clock) and the wall clock.
///
/// Unlike [`UnixPlatform`] it is `Send + Sync` and needs no runtime, so a
/// logger that may be called from any thread can own one.
#[derive(Clone, Copy, Debug, Default)]
pub struct HostClock;

impl HostClock {
    /// Converts a reading of this clock back to a host instant; `None` when
    /// it lies beyond what the host can represent (centuries away).
    fn to_host(self, at: Instant) -> Option<std::time::Instant> {
        origin().checked_add(Duration::from_nanos(at.as_nanos()))
    }
}

impl MonotonicClock for HostClock {
    /// Never goes back: the host's `CLOCK_MONOTONIC` (through
    /// [`std::time::Instant`]) measured from one process-wide origin.
    fn now(&self) -> Instant {
        let since = origin().elapsed();
        // 2^64 ns is 584 years of uptime: saturating is the honest answer.
        Instant::from_nanos(u64::try_from(since.as_nanos()).unwrap_or(u64::MAX))
    }
}

impl WallClock for HostClock {
    /// The host's `CLOCK_REALTIME`; times before 1970 are negative.
    fn wall_time(&self) -> PosixTime {
        let (secs, nanos) = match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => (i64::try_from(d.as_secs()).unwrap_or(i64::MAX), d.subsec_nanos()),
            Err(before) => {
                let d = before.duration();
                let secs = i64::try_from(d.as_secs()).map_or(i64::MIN, |s| -s);
                // -1.25 s is secs = -2, nanos = 0.75 s.
                if d.subsec_nanos() == 0 {
                    (secs, 0)
                } else {
                    (secs.saturating_sub(1), 1_000_000_000 - d.subsec_nanos())
                }
            }
        };
        // `nanos` is below 10^9 on both arms above.
        PosixTime::new(secs, nanos).unwrap_or(PosixTime::EPOCH)
    }
}

impl Sleep for HostClock {
    /// A tokio timer; must be awaited inside a tokio runtime with time
    /// enabled (the runner's is). A deadline in the past yields to the event
    /// loop once and completes.
    async fn sleep_until(&self, deadline: Instant) {
        if deadline <= self.now() {
            tokio::task::yield_now().await;
            return;
        }
        match self.to_host(deadline) {
            Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
            // Unrepresentable on the host, so it never comes.
            None => std::future::pending().await,
        }
    }
}

impl Random for HostClock {
    /// The kernel's CSPRNG through getrandom(2); fails (never falls back to
    /// a weaker source) if the kernel cannot provide it.
    fn fill(&self, buf: &mut [u8]) -> Result<(), RandomError> {
        getrandom::fill(buf).map_err(|e| RandomError::Unavailable(format!("getrandom(2) failed: {e}")))
    }
}

struct PlatformState {
    args: Vec<String>,
    random: Drbg<HostClock>,
}

/// The platform handle of a mirage-rs application running as a Linux
/// process.
///
/// Cheap to clone: clones share one `Rc`. It is not `Send`: it belongs to
/// the event loop's thread, like everything in a mirage-rs application.
/// The runner ([`crate::run`]) builds it; build one yourself with
/// [`UnixPlatform::new`] only inside a tokio current-thread runtime running
/// a [`tokio::task::LocalSet`].
#[derive(Clone)]
pub struct UnixPlatform {
    clock: HostClock,
    state: Rc<PlatformState>,
}

impl UnixPlatform {
    /// A platform handle whose application arguments are `args` (without a
    /// program name).
    pub fn new(args: Vec<String>) -> UnixPlatform {
        let mut random = Drbg::new(HostClock, DrbgConfig::default());
        random.add_source("getrandom", HostClock);
        UnixPlatform { clock: HostClock, state: Rc::new(PlatformState { args, random }) }
    }

    /// A `Send + Sync` clock that reads the same monotonic time as this
    /// platform, for a logger's timestamps.
    pub fn clock(&self) -> HostClock {
        self.clock
    }
}

impl std::fmt::Debug for UnixPlatform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnixPlatform").field("args", &self.state.args).finish()
    }
}

impl MonotonicClock for UnixPlatform {
    fn now(&self) -> Instant {
        self.clock.now()
    }
}

impl WallClock for UnixPlatform {
    fn wall_time(&self) -> PosixTime {
        self.clock.wall_time()
    }
}

impl Sleep for UnixPlatform {
    async fn sleep_until(&self, deadline: Instant) {
        self.clock.sleep_until(deadline).await
    }
}

impl Random for UnixPlatform {
    /// From a ChaCha20 DRBG (`mirage_rng`) seeded and reseeded from the
    /// host's getrandom(2), as on the unikernel platforms (which seed
    /// theirs from their devices): one system call per reseed, not per
    /// fill. Fails only at the first fill, if getrandom fails.
    fn fill(&self, buf: &mut [u8]) -> Result<(), RandomError> {
        self.state.random.fill(buf)
    }
}

impl Platform for UnixPlatform {
    /// Runs `task` on the current [`tokio::task::LocalSet`] with
    /// [`tokio::task::spawn_local`].
    ///
    /// # Panics
    ///
    /// Outside a `LocalSet` (a program error: the runner always provides
    /// one).
    fn spawn(&self, task: impl Future<Output = ()> + 'static) {
        // The join handle is dropped: the task keeps running detached.
        drop(tokio::task::spawn_local(task));
    }

    fn args(&self) -> &[String] {
        &self.state.args
    }

    /// Flushes stdout and stderr, then ends the process with `status`
    /// without running destructors of other tasks.
    fn exit(&self, status: u8) -> ! {
        // Nowhere is left to report a failed flush.
        let _ = std::io::stdout().lock().flush();
        let _ = std::io::stderr().lock().flush();
        std::process::exit(i32::from(status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local<F: Future>(f: F) -> F::Output {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime");
        tokio::task::LocalSet::new().block_on(&rt, f)
    }

    #[test]
    fn monotonic_clock_never_goes_back() {
        let clock = HostClock;
        let mut last = clock.now();
        for _ in 0..10_000 {
            let now = clock.now();
            assert!(now >= last, "{now} < {last}");
            last = now;
        }
        // Two handles read the same clock.
        let p = UnixPlatform::new(Vec::new());
        assert!(p.now() >= last);
    }

    #[test]
    fn wall_clock_is_after_2020() {
        // 2020-01-01T00:00:00Z: any host clock set at all reads later.
        assert!(HostClock.wall_time().secs() > 1_577_836_800);
    }

    #[test]
    fn sleep_until_waits_for_the_deadline() {
        local(async {
            let p = UnixPlatform::new(Vec::new());
            let deadline = p.now() + Duration::from_millis(20);
            p.sleep_until(deadline).await;
            assert!(p.now() >= deadline);
            // Past and unrepresentable deadlines: the first completes, the
            // second does not within a short real wait.
            p.sleep_until(Instant::ZERO).await;
            let never = tokio::time::timeout(Duration::from_millis(20), p.sleep_until(Instant::from_nanos(u64::MAX)));
            assert!(never.await.is_err());
        });
    }

    #[test]
    fn random_fills_distinct_values() {
        let p = UnixPlatform::new(Vec::new());
        let mut a = [0u8; 32];
        let mut b = [0u8; 32];
        p.fill(&mut a).expect("getrandom");
        p.fill(&mut b).expect("getrandom");
        // Equal 256-bit draws from a working CSPRNG do not happen.
        assert_ne!(a, b);
    }

    #[test]
    fn spawn_runs_the_task_and_args_are_kept() {
        local(async {
            let p = UnixPlatform::new(vec!["one".into(), "two".into()]);
            assert_eq!(p.args(), ["one", "two"]);
            let (tx, rx) = tokio::sync::oneshot::channel();
            p.clone().spawn(async move {
                let _ = tx.send(42);
            });
            assert_eq!(rx.await, Ok(42));
        });
    }
}
