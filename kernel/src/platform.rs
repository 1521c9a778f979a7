//! The platform handle, the clocks, the serial console and [`run`]: what
//! an application on the kernel receives.

use alloc::rc::Rc;
use alloc::string::String;
use core::fmt;
use core::future::{poll_fn, Future};
use core::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use core::task::{Poll, Waker};

use mirage_console::{LogFilter, Logger};
use mirage_rng::Drbg;
use mirage_types::console::Console;
use mirage_types::devices::{CommandLine, UsageError};
use mirage_types::flow::FlowError;
use mirage_types::platform::Platform;
use mirage_types::random::{Random, RandomError};
use mirage_types::time::{Instant, MonotonicClock, PosixTime, Sleep, WallClock};

use crate::arch::serial::Uart16550;
use crate::arch::{cmos, cpu, pit, power};
use crate::executor::{Executor, Idle};
use crate::time::{ticks_for, TscScale};
use crate::BootInfo;

/// The exit status of a command line the kernel cannot parse.
pub const USAGE_STATUS: u8 = mirage_types::devices::USAGE_STATUS;

/// The exit status when the application returns an error.
pub const APP_ERROR_STATUS: u8 = 1;

/// How long the TSC is measured against the PIT at boot, in PIT ticks
/// (25 ms): long enough for an error under 0.01 %, short for boot time.
pub const CALIBRATION_PIT_TICKS: u64 = 29_830;

/// How many PIT reads calibration makes at most before deciding the PIT
/// does not count (absent, or `-M microvm,pit=off`).
pub const CALIBRATION_MAX_READS: u32 = 10_000_000;

static TSC_AT_BOOT: AtomicU64 = AtomicU64::new(0);
static TSC_MULT: AtomicU64 = AtomicU64::new(0);
static WALL_SECS_AT_BOOT: AtomicI64 = AtomicI64::new(0);

/// Why the clocks could not be set up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClockError {
    /// The PIT did not advance during calibration.
    PitNotCounting {
        /// PIT ticks seen.
        ticks: u64,
    },
    /// The measured TSC frequency is implausible.
    BadFrequency(crate::time::BadTscFrequency),
}

impl fmt::Display for ClockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClockError::PitNotCounting { ticks } => write!(
                f,
                "cannot calibrate the TSC: the PIT advanced {ticks} of {CALIBRATION_PIT_TICKS} ticks in \
                 {CALIBRATION_MAX_READS} reads (is the machine's i8254 disabled?)"
            ),
            ClockError::BadFrequency(e) => write!(f, "cannot calibrate the TSC: {e}"),
        }
    }
}

/// Measures the TSC against the PIT (on Xen: takes the frequency Xen
/// reports in CPUID) and reads the wall clock from the CMOS RTC. Call once at boot with interrupts masked; until then the clocks
/// read zero.
///
/// `Ok` carries the TSC frequency in Hz. A CMOS clock that cannot be read
/// is not an error: the wall clock then starts at the epoch, and a warning
/// says so once logging is up (see [`wall_clock_is_set`]).
pub fn init_clocks() -> Result<u64, ClockError> {
    if let Some(khz) = cpu::xen_tsc_khz() {
        // Xen says the frequency it keeps the guest's TSC at, and a PVH
        // guest has no PIT to measure it with.
        let hz = u64::from(khz) * 1000;
        let scale = TscScale::from_hz(hz).map_err(ClockError::BadFrequency)?;
        TSC_MULT.store(scale.mult(), Ordering::Relaxed);
        TSC_AT_BOOT.store(cpu::rdtsc(), Ordering::Relaxed);
        if let Some(wall) = cmos::read_rtc().and_then(|r| r.to_posix().ok()) {
            WALL_SECS_AT_BOOT.store(wall.secs(), Ordering::Relaxed);
        }
        return Ok(hz);
    }
    pit::start_free_running();
    let mut previous = pit::read_counter();
    let start = cpu::rdtsc();
    let mut elapsed = 0u64;
    for _ in 0..CALIBRATION_MAX_READS {
        let count = pit::read_counter();
        elapsed += u64::from(previous.wrapping_sub(count));
        previous = count;
        if elapsed >= CALIBRATION_PIT_TICKS {
            break;
        }
    }
    let ticks = cpu::rdtsc().wrapping_sub(start);
    if elapsed < CALIBRATION_PIT_TICKS {
        return Err(ClockError::PitNotCounting { ticks: elapsed });
    }
    let scale = TscScale::from_measurement(ticks, elapsed, pit::PIT_HZ).map_err(ClockError::BadFrequency)?;
    TSC_MULT.store(scale.mult(), Ordering::Relaxed);
    TSC_AT_BOOT.store(start, Ordering::Relaxed);
    if let Some(wall) = cmos::read_rtc().and_then(|r| r.to_posix().ok()) {
        // Stamped at the calibration's start, the clock's origin.
        WALL_SECS_AT_BOOT.store(wall.secs(), Ordering::Relaxed);
    }
    Ok(u64::try_from(u128::from(ticks) * u128::from(pit::PIT_HZ) / u128::from(elapsed)).unwrap_or(u64::MAX))
}

/// Whether [`init_clocks`] could read the CMOS clock.
pub fn wall_clock_is_set() -> bool {
    WALL_SECS_AT_BOOT.load(Ordering::Relaxed) != 0
}

/// The monotonic clock (the TSC since boot) and the wall clock (the CMOS
/// RTC at boot plus the monotonic time since). Zero-sized, `Send + Sync`,
/// so a logger can hold it.
#[derive(Clone, Copy, Debug, Default)]
pub struct KernelClock;

impl MonotonicClock for KernelClock {
    /// Never goes back: one CPU, and an invariant TSC on every CPU a VMM
    /// of interest exposes.
    fn now(&self) -> Instant {
        let ticks = cpu::rdtsc().saturating_sub(TSC_AT_BOOT.load(Ordering::Relaxed));
        Instant::from_nanos(TscScale::from_mult(TSC_MULT.load(Ordering::Relaxed)).ticks_to_nanos(ticks))
    }
}

impl WallClock for KernelClock {
    fn wall_time(&self) -> PosixTime {
        let since_boot = self.now().as_nanos();
        let secs = WALL_SECS_AT_BOOT.load(Ordering::Relaxed).saturating_add((since_boot / 1_000_000_000) as i64);
        PosixTime::new(secs, (since_boot % 1_000_000_000) as u32).unwrap_or(PosixTime::EPOCH)
    }
}

/// Waits for the next deadline with the PIT's one-shot timer and `hlt`.
#[derive(Debug, Default)]
pub struct PitIdle;

impl Idle for PitIdle {
    fn now(&self) -> Instant {
        KernelClock.now()
    }

    /// Arms the PIT for `deadline` (at most 55 ms ahead: the executor calls
    /// again for longer waits) and halts until an interrupt.
    fn wait(&mut self, deadline: Option<Instant>) {
        if let Some(deadline) = deadline {
            let now = KernelClock.now();
            if deadline <= now {
                return;
            }
            let ticks = ticks_for((deadline - now).as_nanos() as u64, pit::PIT_HZ, u64::from(u16::MAX));
            pit::one_shot(ticks as u16);
        }
        cpu::enable_interrupts_and_halt();
        cpu::disable_interrupts();
    }
}

/// The task waiting for serial input, woken from the UART's interrupt.
static SERIAL_READER: spin::Mutex<Option<Waker>> = spin::Mutex::new(None);

/// Called by the interrupt handler of the UART's receive interrupt.
pub fn on_serial_interrupt() {
    if let Some(waker) = SERIAL_READER.lock().take() {
        waker.wake();
    }
}

/// The console on COM1. Output is written synchronously (polled); input
/// waits for the UART's receive interrupt. Zero-sized, `Send + Sync`.
#[derive(Clone, Copy, Debug, Default)]
pub struct SerialConsole;

impl Console for SerialConsole {
    /// The UART never fails; this type is never constructed.
    type Error = FlowError;

    /// Returns the bytes the UART has received (at least one), waiting for
    /// one if none has. Never returns `Ok(0)`: a serial line does not end.
    /// Cancel-safe: bytes stay in the UART until a read takes them.
    ///
    /// One reader at a time: the interrupt wakes the task that polled last,
    /// so of two tasks reading at once only one is woken (read from one
    /// task, e.g. through `mirage_console::LineReader`). Bytes beyond the
    /// UART's 16-byte FIFO that arrive while no read is pending are lost.
    async fn read(&self, buf: &mut [u8]) -> Result<usize, FlowError> {
        if buf.is_empty() {
            return Ok(0);
        }
        let uart = Uart16550::com1();
        poll_fn(|cx| {
            let mut n = 0;
            while n < buf.len() {
                let Some(byte) = uart.try_read_byte() else { break };
                buf[n] = byte;
                n += 1;
            }
            if n > 0 {
                return Poll::Ready(Ok(n));
            }
            // Interrupts are masked outside the executor's halt, so the
            // interrupt cannot slip in between the check and this store.
            *SERIAL_READER.lock() = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Writes all of `buf` before returning (the UART is polled).
    async fn write(&self, buf: &[u8]) -> Result<usize, FlowError> {
        Uart16550::com1().write_bytes(buf);
        Ok(buf.len())
    }

    fn write_diagnostic(&self, bytes: &[u8]) {
        Uart16550::com1().write_bytes(bytes);
    }
}

/// The platform handle of kernel applications: the TSC clock, the PIT
/// timer, a DRBG over RDSEED and RDRAND, the executor, the application's arguments
/// and power-off. Cheap to clone; clones share one event loop.
#[derive(Clone)]
pub struct KernelPlatform {
    executor: Executor,
    args: Rc<[String]>,
    random: Rc<Drbg<KernelClock>>,
}

impl KernelPlatform {
    /// A platform spawning on `executor` with `args` as the application's
    /// arguments, its randomness from the CPU's sources.
    pub fn new(executor: Executor, args: impl Into<Rc<[String]>>) -> KernelPlatform {
        KernelPlatform { executor, args: args.into(), random: Rc::new(crate::entropy::cpu_drbg()) }
    }
}

impl MonotonicClock for KernelPlatform {
    fn now(&self) -> Instant {
        KernelClock.now()
    }
}

impl WallClock for KernelPlatform {
    fn wall_time(&self) -> PosixTime {
        KernelClock.wall_time()
    }
}

impl Sleep for KernelPlatform {
    /// Cancel-safe: dropping the future removes its timer.
    async fn sleep_until(&self, deadline: Instant) {
        let mut sleep = self.executor.sleep_until(deadline);
        poll_fn(|cx| sleep.poll_at(KernelClock.now(), cx)).await
    }
}

impl Random for KernelPlatform {
    /// Bytes from the kernel's DRBG ([`crate::entropy::cpu_drbg`]: ChaCha20
    /// seeded and reseeded from RDSEED and RDRAND). Fails only at the first
    /// fill, with `Unavailable`, if the CPU has neither.
    fn fill(&self, buf: &mut [u8]) -> Result<(), RandomError> {
        self.random.fill(buf)
    }
}

impl Platform for KernelPlatform {
    fn spawn(&self, task: impl Future<Output = ()> + 'static) {
        self.executor.spawn(task);
    }

    fn args(&self) -> &[String] {
        &self.args
    }

    /// Powers the VM off through QEMU's `isa-debug-exit` (QEMU's exit code
    /// is then `status * 2 + 1`), else ACPI; see [`power::power_off`].
    fn exit(&self, status: u8) -> ! {
        Uart16550::com1().flush();
        power::power_off(status)
    }
}

/// Prints `what` (a usage error, or the usage for `--help`) on the serial
/// port, prefixed with `app_name`, and powers off with its status.
pub fn usage_exit(app_name: &str, what: &UsageError) -> ! {
    let _ = fmt::Write::write_fmt(&mut Uart16550::com1(), format_args!("{app_name}: {what}\n"));
    Uart16550::com1().flush();
    power::power_off(what.status())
}

/// Runs an application that takes no devices (the kernel's own test
/// images): parses the command line ([`CommandLine`]; a `--net` or
/// `--block` flag is a usage error, since this kernel connects no
/// device), then [`run_parsed`].
pub fn run<F, Fut, E>(boot: BootInfo, app: F) -> !
where
    F: FnOnce(KernelPlatform) -> Fut,
    Fut: Future<Output = Result<(), E>> + 'static,
    E: fmt::Display + 'static,
{
    let line = CommandLine::parse(boot.command_line.split_ascii_whitespace())
        .unwrap_or_else(|e| usage_exit("mirage-kernel", &e));
    if let Some(flag) = line.nets.first().or(line.blocks.first()) {
        let message = alloc::format!("the device flag naming {:?}: this kernel connects no devices", flag.name);
        usage_exit("mirage-kernel", &UsageError::Bad(message));
    }
    run_parsed(boot, &line.log, line.app_args, app)
}

/// Runs an application with a command line already parsed by the
/// platform: installs the logger on the serial port with the `log` filter
/// (a bad filter is a usage error), runs `app` on the event loop until it
/// returns, and powers off with status 0 if it returned `Ok`,
/// [`APP_ERROR_STATUS`] after logging the error if it returned `Err`.
pub fn run_parsed<F, Fut, E>(boot: BootInfo, log: &str, app_args: alloc::vec::Vec<String>, app: F) -> !
where
    F: FnOnce(KernelPlatform) -> Fut,
    Fut: Future<Output = Result<(), E>> + 'static,
    E: fmt::Display + 'static,
{
    let filter: LogFilter = log
        .parse()
        .unwrap_or_else(|e| usage_exit("mirage-kernel", &UsageError::Bad(alloc::format!("--log {log:?}: {e}"))));
    // Only fails if a logger is installed already, which then stays.
    let _ = Logger::new(SerialConsole, KernelClock, filter).install();
    log::debug!(
        "heap {:#x}..{:#x} ({} MiB), command line {:?}",
        boot.heap.start,
        boot.heap.end,
        (boot.heap.end - boot.heap.start) >> 20,
        boot.command_line
    );
    if !wall_clock_is_set() {
        log::warn!("the CMOS clock could not be read: the wall clock starts at the epoch");
    }
    let executor = Executor::new();
    let platform = KernelPlatform::new(executor.clone(), app_args);
    let exit = platform.clone();
    match executor.block_on(app(platform), &mut PitIdle) {
        Ok(()) => exit.exit(0),
        Err(e) => {
            log::error!("application failed: {e}");
            exit.exit(APP_ERROR_STATUS)
        }
    }
}
