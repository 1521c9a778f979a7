//! [`XenPlatform`], the idle loop ([`XenIdle`]: `SCHEDOP_poll` on the
//! bound ports with a timeout), and [`run`].
//!
//! # Clocks
//!
//! Both clocks come from Xen's time: the monotonic clock is the kernel's
//! TSC clock, whose frequency the kernel takes from Xen's CPUID time leaf
//! (the rate at which Xen keeps the guest's TSC), so it runs at the rate of
//! Xen system time without reading the shared info page's versioned
//! record on every call; it starts at 0 at boot. The wall clock is Xen's
//! (`wc_sec`/`wc_nsec`, the wall time at Xen system time 0) plus Xen
//! system time from the shared info page. Deadlines cross from the one to
//! the other only as a distance: the idle loop arms Xen's timer at Xen's
//! "now" plus the time left on the monotonic clock, at each wait, so the
//! two never drift apart by more than one wait's worth of rate error.

use alloc::rc::Rc;
use alloc::string::String;
use core::fmt;
use core::future::Future;
use core::sync::atomic::{AtomicU64, Ordering};

use mirage_console::{LogFilter, Logger};
use mirage_kernel::arch::port::Port;
use mirage_kernel::executor::{Executor, Idle};
use mirage_kernel::platform::APP_ERROR_STATUS;
use mirage_kernel::{BootInfo, KernelClock, KernelPlatform};
use mirage_types::console::Console;
use mirage_types::devices::{CommandLine, UsageError};
use mirage_types::platform::{App, AppError, Platform};
use mirage_types::random::{Random, RandomError};
use mirage_types::time::{Instant, MonotonicClock, PosixTime, Sleep, WallClock};

use crate::console::{console_io_allowed, DomainConsole};
use crate::devices::{xen_specs, XenDevices};
use crate::hypercall::{self, XenError};
use crate::hypervisor::{shutdown, ShutdownReason};
use crate::{event, shared_info};

/// The exit status when Xen cannot be set up (not on Xen, no hypercall
/// page, shared info not mappable); the kernel's boot failures use 100.
pub const XEN_SETUP_STATUS: u8 = 103;

/// QEMU's `isa-debug-exit` port, which the test harness gives the machine
/// Xen runs on; only the hardware domain reaches it.
const QEMU_DEBUG_EXIT_PORT: u16 = 0xf4;

/// Waits for the executor's next deadline or an event: blocks in Xen with
/// `SCHEDOP_poll` on the bound ports, its timeout the deadline or, with
/// none, the event module's one-second backstop (after which every waiting
/// driver looks at its ring again), then dispatches the ports that fired
/// to their waiting tasks (see [`crate::event`]'s delivery and backstop
/// sections for why this does not halt and wait for the upcall). If the
/// poll fails (it should not), the loop spins: slower, not wrong.
#[derive(Debug, Default)]
pub struct XenIdle;

impl Idle for XenIdle {
    fn now(&self) -> Instant {
        KernelClock.now()
    }

    fn wait(&mut self, deadline: Option<Instant>) {
        let timeout = match deadline {
            None => None,
            Some(deadline) => {
                let now = KernelClock.now();
                if deadline <= now {
                    return;
                }
                let Some(xen_now) = shared_info::now() else { return };
                // 0 would mean "no timeout" to SCHEDOP_poll: at least 1.
                Some(xen_now.saturating_add((deadline - now).as_nanos() as u64).max(1))
            }
        };
        // A port that fired already wakes its task without blocking; else
        // block until an event (one since the scan leaves its port pending,
        // which ends the poll at once) or the deadline or backstop.
        if event::dispatch() == 0 {
            // On failure the executor calls again: the loop spins instead
            // of sleeping, which is slower but not wrong.
            let _ = event::block(timeout);
        }
        report();
    }
}

/// How often (Xen system time, ns) the idle loop logs the event path's
/// state at debug level: with the backstop, a vCPU that still runs logs
/// this at least every 10 s even when no event comes, so a log that stops
/// means a vCPU that stopped, and one that goes on names the ports' bits.
const IDLE_REPORT_NS: u64 = 10_000_000_000;

/// The Xen time of the last idle report.
static LAST_IDLE_REPORT: AtomicU64 = AtomicU64::new(0);

/// After an idle wait: the warning about events without an upcall (once),
/// and the periodic debug report.
fn report() {
    event::report_lost();
    let Some(now) = shared_info::now() else { return };
    let last = LAST_IDLE_REPORT.load(Ordering::Relaxed);
    if now.saturating_sub(last) < IDLE_REPORT_NS || !log::log_enabled!(log::Level::Debug) {
        return;
    }
    LAST_IDLE_REPORT.store(now, Ordering::Relaxed);
    log::debug!(
        "idle: {:?}; upcall flag/mask/selector {:?}; ports (port, pending, masked) {:?}",
        event::stats(),
        shared_info::upcall_state(),
        event::port_states()
    );
}

/// The platform handle of applications on Xen: the kernel's monotonic
/// clock (at Xen's TSC rate; see the module's clocks section), executor
/// and DRBG over RDSEED and RDRAND ([`KernelPlatform`]), Xen's wall clock, and exit
/// through `SCHEDOP_shutdown`. Cheap to clone; clones share one event loop.
#[derive(Clone)]
pub struct XenPlatform {
    kernel: KernelPlatform,
}

impl MonotonicClock for XenPlatform {
    fn now(&self) -> Instant {
        self.kernel.now()
    }
}

impl WallClock for XenPlatform {
    /// Xen's wall clock (`wc_sec`/`wc_nsec` plus Xen system time), which
    /// the toolstack or dom0 keeps; the epoch if Xen has none.
    fn wall_time(&self) -> PosixTime {
        let (Some((secs, nanos)), Some(system)) = (shared_info::wall_clock_base(), shared_info::now()) else {
            return self.kernel.wall_time();
        };
        let total = u128::from(nanos) + u128::from(system);
        let secs = secs.saturating_add((total / 1_000_000_000) as i64);
        PosixTime::new(secs, (total % 1_000_000_000) as u32).unwrap_or(PosixTime::EPOCH)
    }
}

impl Sleep for XenPlatform {
    /// Cancel-safe: dropping the future removes its timer.
    async fn sleep_until(&self, deadline: Instant) {
        self.kernel.sleep_until(deadline).await
    }
}

impl Random for XenPlatform {
    /// From the kernel's DRBG, seeded and reseeded from RDSEED and RDRAND
    /// (Xen passes them through when the CPU has them).
    fn fill(&self, buf: &mut [u8]) -> Result<(), RandomError> {
        self.kernel.fill(buf)
    }
}

impl Platform for XenPlatform {
    fn spawn(&self, task: impl Future<Output = ()> + 'static) {
        self.kernel.spawn(task)
    }

    fn args(&self) -> &[String] {
        self.kernel.args()
    }

    /// Shuts the domain down: `SHUTDOWN_poweroff` for status 0,
    /// `SHUTDOWN_crash` otherwise (a domU's toolstack sees no number). The
    /// hardware domain first writes the status to QEMU's `isa-debug-exit`
    /// port, so under the test harness QEMU exits with `status * 2 + 1`.
    fn exit(&self, status: u8) -> ! {
        exit(status)
    }
}

/// See [`XenPlatform::exit`].
pub fn exit(status: u8) -> ! {
    if console_io_allowed() {
        // SAFETY: the hardware domain may use the port; without QEMU's
        // isa-debug-exit behind it, a write to 0xf4 (no device on PCs) is
        // ignored.
        unsafe { Port::new(QEMU_DEBUG_EXIT_PORT) }.write_u8(status);
    }
    if let DomainConsole::Ring(ring) = DomainConsole::detect() {
        // The toolstack destroys a domain that powered off: what the
        // backend has not read by then is lost.
        let _ = ring.flush();
    }
    let reason = if status == 0 { ShutdownReason::PowerOff } else { ShutdownReason::Crash };
    let error = shutdown(reason);
    DomainConsole::detect()
        .write_diagnostic(alloc::format!("mirage-platform-xen: cannot shut down: {error}\n").as_bytes());
    mirage_kernel::arch::power::power_off(status)
}

/// Sets up the hypercall page and maps shared info.
fn init() -> Result<(), XenError> {
    hypercall::init()?;
    shared_info::map()?;
    Ok(())
}

/// Runs `app` as this Xen guest (what `mirage::main!` calls): see
/// [`run_with`].
pub fn run(boot: BootInfo, app_name: &'static str, app: impl App + 'static) -> ! {
    run_with(boot, app_name, move |platform, devices| app.start(platform, devices))
}

/// Runs `start` as this Xen guest with the concrete platform and devices
/// (for the platform's own test images): sets up the hypercall page and
/// shared info, parses the command line ([`CommandLine`]; see
/// [`crate::devices`] for the Xen backings), logs to the [`DomainConsole`]
/// (Xen's console in dom0, the PV console ring in a domU), runs `start` on
/// the kernel's executor idling in Xen, and shuts the domain down with
/// status 0 if it returned `Ok`, [`APP_ERROR_STATUS`] after logging the
/// error, `mirage_types::devices::USAGE_STATUS` after printing a usage
/// error and the usage,
/// [`XEN_SETUP_STATUS`] if Xen cannot be set up (the reason is printed on
/// the Xen console where possible and on COM1).
pub fn run_with<F, Fut>(boot: BootInfo, app_name: &'static str, start: F) -> !
where
    F: FnOnce(XenPlatform, XenDevices) -> Fut,
    Fut: Future<Output = Result<(), AppError>> + 'static,
{
    let fail = |status: u8, message: &dyn fmt::Display| -> ! {
        let line = alloc::format!("{app_name}: {message}\n");
        DomainConsole::detect().write_diagnostic(line.as_bytes());
        mirage_kernel::SerialConsole.write_diagnostic(line.as_bytes());
        exit(status)
    };
    if let Err(e) = init() {
        fail(XEN_SETUP_STATUS, &e);
    }
    let usage = |e: UsageError| -> ! { fail(e.status(), &e) };
    let line = CommandLine::parse(boot.command_line.split_ascii_whitespace()).unwrap_or_else(|e| usage(e));
    let blocks = xen_specs(&line.blocks, "--block").unwrap_or_else(|e| usage(e));
    let nets = xen_specs(&line.nets, "--net").unwrap_or_else(|e| usage(e));
    let filter: LogFilter =
        line.log.parse().unwrap_or_else(|e| usage(UsageError::Bad(alloc::format!("--log {:?}: {e}", line.log))));
    // Only fails if a logger is installed already, which then stays.
    let _ = Logger::new(DomainConsole::detect(), KernelClock, filter).install();
    match event::enable_upcalls() {
        Ok(vector) => log::debug!("event channel upcall on vector {vector} (the idle loop polls: see event)"),
        Err(e) => log::debug!("no event channel upcall ({e}); the idle loop polls as always"),
    }
    log::debug!(
        "heap {:#x}..{:#x} ({} MiB), TSC {} kHz, command line {:?}",
        boot.heap.start,
        boot.heap.end,
        (boot.heap.end - boot.heap.start) >> 20,
        boot.tsc_hz / 1000,
        boot.command_line
    );
    let executor = Executor::new();
    let app_args: Rc<[String]> = line.app_args.into();
    let platform = XenPlatform { kernel: KernelPlatform::new(executor.clone(), app_args) };
    let devices = XenDevices::new(platform.clone(), blocks, nets, line.ipv4, line.ipv4_gateway);
    match executor.block_on(start(platform, devices), &mut XenIdle) {
        Ok(()) => exit(0),
        Err(e) => {
            log::error!("{app_name}: {e}");
            exit(APP_ERROR_STATUS)
        }
    }
}
