//! A `log` backend that writes timestamped lines to a console.

use alloc::boxed::Box;
use core::fmt::{self, Write as _};

use log::{Log, Metadata, Record, SetLoggerError};
use mirage_types::console::Console;
use mirage_types::time::MonotonicClock;

use crate::filter::LogFilter;

/// The longest log line written, in bytes, newline included.
///
/// Lines are formatted into a buffer of this size on the stack, so logging
/// never allocates and a record with a huge message cannot make us allocate
/// either. Longer lines are cut at a character boundary and end in
/// [`TRUNCATION_MARKER`].
pub const MAX_LINE_LEN: usize = 1024;

/// What ends a log line that did not fit in [`MAX_LINE_LEN`] bytes.
pub const TRUNCATION_MARKER: &str = "…[truncated]\n";

/// The room for the text of a line; the rest is kept for the newline or
/// the truncation marker, so either always fits.
const TEXT_CAPACITY: usize = MAX_LINE_LEN - TRUNCATION_MARKER.len();

/// A `log` backend writing to a console.
///
/// Each record that passes the filter becomes one line, written whole with
/// one call to [`Console::write_diagnostic`] (the `log` API is synchronous,
/// and diagnostics must get out even when the event loop is stuck):
///
/// ```text
/// [    12.345678] INFO  mirage_net_stack::arp: 10.0.0.2 is at 52:54:00:12:34:56
/// ```
///
/// The timestamp is the monotonic clock in seconds with microseconds; the
/// level is padded to five columns; then come the record's target (by
/// default its module path) and message. Control characters other than
/// tab are escaped (`\n`, `\u{1b}`), so a record is always exactly one
/// line and a message carrying text from the network cannot forge log
/// lines or send escape sequences to a terminal. Lines longer than
/// [`MAX_LINE_LEN`] are truncated (see there).
///
/// `log` requires its backend to be `Send + Sync`, hence the bounds on the
/// console and the clock. On the single-threaded platforms of this OS that
/// costs nothing: their handles are `Sync` because nothing ever shares them
/// across threads.
///
/// ```
/// use log::{Level, Log, Record};
/// use mirage_console::{Logger, MemConsole};
/// use mirage_types::time::{Instant, MonotonicClock};
///
/// struct Boot;
/// impl MonotonicClock for Boot {
///     fn now(&self) -> Instant {
///         Instant::from_millis(1_500)
///     }
/// }
///
/// let console = MemConsole::new();
/// let logger = Logger::new(&console, Boot, "info".parse()?);
/// // In an application: `logger.install()?`, then the `log` macros.
/// logger.log(&Record::builder().level(Level::Info).target("app").args(format_args!("up")).build());
/// assert_eq!(console.diagnostics_string(), "[     1.500000] INFO  app: up\n");
/// # Ok::<(), mirage_console::LogFilterError>(())
/// ```
pub struct Logger<C, K> {
    console: C,
    clock: K,
    filter: LogFilter,
}

impl<C, K> Logger<C, K>
where
    C: Console + Send + Sync,
    K: MonotonicClock + Send + Sync,
{
    /// A logger writing the records `filter` passes to `console`, stamped
    /// with `clock`. It logs nothing until [`Logger::install`]ed, except
    /// through direct calls of [`Log::log`].
    pub fn new(console: C, clock: K, filter: LogFilter) -> Logger<C, K> {
        Logger { console, clock, filter }
    }

    /// The filter records are checked against.
    pub fn filter(&self) -> &LogFilter {
        &self.filter
    }

    /// The console lines are written to.
    pub fn console(&self) -> &C {
        &self.console
    }

    /// Makes this the global `log` backend and sets `log`'s maximum level
    /// from the filter, so disabled `debug!`/`trace!` calls cost one
    /// comparison.
    ///
    /// `Ok` means every later `log` macro call goes through this logger.
    /// `Err` means a logger was already installed (there can be one per
    /// program); it stays in place. Either way this logger is leaked: `log`
    /// needs a `'static` backend, and installing happens once at start-up.
    pub fn install(self) -> Result<(), SetLoggerError>
    where
        C: 'static,
        K: 'static,
    {
        let max_level = self.filter.max_level();
        log::set_logger(Box::leak(Box::new(self)))?;
        log::set_max_level(max_level);
        Ok(())
    }
}

impl<C, K> Log for Logger<C, K>
where
    C: Console + Send + Sync,
    K: MonotonicClock + Send + Sync,
{
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.filter.enabled(metadata.target(), metadata.level())
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let mut line = LineBuffer::new();
        let nanos = self.clock.now().as_nanos();
        // The same digits as `Instant`'s `Display`, which ignores width, so
        // the seconds are padded here to keep messages in one column.
        let (secs, micros) = (nanos / 1_000_000_000, nanos % 1_000_000_000 / 1_000);
        // An error only means the line filled up; `finish` marks that.
        let _ = write!(line, "[{secs:>6}.{micros:06}] {:<5} {}: {}", record.level(), record.target(), record.args());
        self.console.write_diagnostic(line.finish());
    }

    /// Nothing to do: every line was written synchronously.
    fn flush(&self) {}
}

/// A log line being formatted, on the stack.
struct LineBuffer {
    bytes: [u8; MAX_LINE_LEN],
    len: usize,
    truncated: bool,
}

impl LineBuffer {
    fn new() -> LineBuffer {
        LineBuffer { bytes: [0; MAX_LINE_LEN], len: 0, truncated: false }
    }

    /// The whole line, ending in a newline or in the truncation marker.
    fn finish(&mut self) -> &[u8] {
        let end: &str = if self.truncated { TRUNCATION_MARKER } else { "\n" };
        // `write_str` never fills more than TEXT_CAPACITY, which leaves room for either ending.
        self.bytes[self.len..self.len + end.len()].copy_from_slice(end.as_bytes());
        &self.bytes[..self.len + end.len()]
    }
}

impl LineBuffer {
    /// Appends `s`, or as much of it as fits at a character boundary; on
    /// running out of room, fails so formatting stops early.
    fn push(&mut self, s: &str) -> fmt::Result {
        let room = TEXT_CAPACITY - self.len;
        if s.len() <= room {
            self.bytes[self.len..self.len + s.len()].copy_from_slice(s.as_bytes());
            self.len += s.len();
            return Ok(());
        }
        let mut cut = room;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        self.bytes[self.len..self.len + cut].copy_from_slice(&s.as_bytes()[..cut]);
        self.len += cut;
        self.truncated = true;
        Err(fmt::Error)
    }
}

/// Whether `c` is written escaped: control characters would let a message
/// break the one-record-one-line rule (`\n`, `\r`) or drive the terminal
/// (ESC sequences), and messages often carry text from the network.
fn needs_escape(c: char) -> bool {
    c.is_control() && c != '\t'
}

impl fmt::Write for LineBuffer {
    /// Appends `s` with control characters other than tab escaped as
    /// `char::escape_default` does (`\n`, `\u{1b}`).
    fn write_str(&mut self, mut s: &str) -> fmt::Result {
        while let Some((at, c)) = s.char_indices().find(|&(_, c)| needs_escape(c)) {
            self.push(&s[..at])?;
            for e in c.escape_default() {
                self.push(e.encode_utf8(&mut [0; 4]))?;
            }
            s = &s[at + c.len_utf8()..];
        }
        self.push(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::MemConsole;
    use alloc::string::String;
    use core::sync::atomic::{AtomicU64, Ordering};
    use log::Level;

    /// A clock the test sets by hand.
    struct FakeClock(AtomicU64);

    impl MonotonicClock for FakeClock {
        fn now(&self) -> mirage_types::time::Instant {
            mirage_types::time::Instant::from_nanos(self.0.load(Ordering::Relaxed))
        }
    }

    fn logger<'a>(console: &'a MemConsole, nanos: u64, filter: &str) -> Logger<&'a MemConsole, FakeClock> {
        Logger::new(console, FakeClock(AtomicU64::new(nanos)), filter.parse().unwrap())
    }

    fn log(logger: &impl Log, level: Level, target: &str, args: fmt::Arguments<'_>) {
        logger.log(&Record::builder().level(level).target(target).args(args).build());
    }

    #[test]
    fn lines_carry_time_level_target_and_message() {
        let console = MemConsole::new();
        let logger = logger(&console, 12_345_678_901, "trace");
        log(&logger, Level::Info, "mirage_net_stack::arp", format_args!("10.0.0.{} is at {}", 2, "52:54:00:12:34:56"));
        log(&logger, Level::Error, "app", format_args!("boom"));
        log(&logger, Level::Trace, "a", format_args!(""));
        logger.clock.0.store(1_234_567_000_000_999, Ordering::Relaxed);
        log(&logger, Level::Warn, "a", format_args!("late"));
        assert_eq!(
            console.diagnostics_string(),
            "[    12.345678] INFO  mirage_net_stack::arp: 10.0.0.2 is at 52:54:00:12:34:56\n\
             [    12.345678] ERROR app: boom\n\
             [    12.345678] TRACE a: \n\
             [1234567.000000] WARN  a: late\n"
        );
        // Logging goes to the diagnostic path only.
        assert!(console.output().is_empty());
    }

    #[test]
    fn each_line_is_one_diagnostic_write() {
        let console = MemConsole::new();
        let logger = logger(&console, 0, "info");
        log(&logger, Level::Info, "a", format_args!("one {} {}", 1, "two"));
        log(&logger, Level::Info, "a", format_args!("two"));
        assert_eq!(console.diagnostic_writes(), 2);
    }

    #[test]
    fn filter_decides_what_is_written() {
        let console = MemConsole::new();
        let logger = logger(&console, 0, "warn,net=debug,net::tcp=off");
        log(&logger, Level::Info, "block", format_args!("dropped: below warn"));
        log(&logger, Level::Warn, "block", format_args!("kept"));
        log(&logger, Level::Debug, "net::arp", format_args!("kept"));
        log(&logger, Level::Trace, "net::arp", format_args!("dropped: below debug"));
        log(&logger, Level::Error, "net::tcp::timer", format_args!("dropped: off"));
        log(&logger, Level::Debug, "network", format_args!("dropped: not under net"));
        let out = console.diagnostics_string();
        assert_eq!(out.lines().count(), 2, "{out}");
        assert!(out.contains("WARN  block: kept") && out.contains("DEBUG net::arp: kept"), "{out}");
        assert!(!out.contains("dropped"), "{out}");

        let metadata = |level, target| Metadata::builder().level(level).target(target).build();
        assert!(logger.enabled(&metadata(Level::Debug, "net")));
        assert!(!logger.enabled(&metadata(Level::Error, "net::tcp")));
        assert_eq!(logger.filter().max_level(), log::LevelFilter::Debug);
    }

    #[test]
    fn over_long_lines_are_truncated_with_a_marker() {
        let console = MemConsole::new();
        let logger = logger(&console, 0, "info");
        let long = "x".repeat(3 * MAX_LINE_LEN);
        log(&logger, Level::Info, "a", format_args!("{long}"));
        log(&logger, Level::Info, "a", format_args!("next"));
        let out = console.diagnostics_string();
        let mut lines = out.split_inclusive('\n');
        let first = lines.next().unwrap();
        assert_eq!(first.len(), MAX_LINE_LEN);
        assert!(first.starts_with("[     0.000000] INFO  a: xxx"), "{first}");
        assert!(first.ends_with("x…[truncated]\n"), "{first}");
        assert_eq!(lines.next(), Some("[     0.000000] INFO  a: next\n"));
        assert_eq!(lines.next(), None);
    }

    #[test]
    fn truncation_never_splits_a_character() {
        // Shift a run of 3-byte characters across the cut point so that
        // every offset within a character meets it once.
        for pad in 0..3 {
            let console = MemConsole::new();
            let logger = logger(&console, 0, "info");
            let message = String::from("p").repeat(pad) + &"€".repeat(MAX_LINE_LEN);
            log(&logger, Level::Info, "a", format_args!("{message}"));
            let out = console.diagnostics();
            let text = core::str::from_utf8(&out).expect("output stays valid UTF-8");
            assert!(text.ends_with("€…[truncated]\n"), "{text}");
            assert!(out.len() <= MAX_LINE_LEN && out.len() > MAX_LINE_LEN - 3 - TRUNCATION_MARKER.len());
        }
    }

    #[test]
    fn control_characters_are_escaped_so_a_record_is_one_line() {
        let console = MemConsole::new();
        let logger = logger(&console, 0, "info");
        let from_peer = "GET /\r\n[     9.000000] ERROR forged: \x1b[31mred\u{9b}\u{7f}\ttab é";
        log(&logger, Level::Info, "http", format_args!("{from_peer}"));
        assert_eq!(
            console.diagnostics_string(),
            "[     0.000000] INFO  http: GET /\\r\\n[     9.000000] ERROR forged: \\u{1b}[31mred\\u{9b}\\u{7f}\ttab é\n"
        );
    }

    #[test]
    fn escapes_are_truncated_like_any_text() {
        let console = MemConsole::new();
        let logger = logger(&console, 0, "info");
        let message = "\x1b".repeat(MAX_LINE_LEN);
        log(&logger, Level::Info, "a", format_args!("{message}"));
        let out = console.diagnostics_string();
        assert!(out.len() <= MAX_LINE_LEN, "{}", out.len());
        assert!(out.ends_with("…[truncated]\n"), "{out}");
        assert_eq!(out.matches('\n').count(), 1);
    }

    #[test]
    fn a_line_that_exactly_fits_is_not_truncated() {
        let console = MemConsole::new();
        let logger = logger(&console, 0, "info");
        let prefix_len = "[     0.000000] INFO  a: ".len();
        let message = "y".repeat(TEXT_CAPACITY - prefix_len);
        log(&logger, Level::Info, "a", format_args!("{message}"));
        let out = console.diagnostics_string();
        assert_eq!(out.len(), TEXT_CAPACITY + 1);
        assert!(out.ends_with("yy\n"), "{out}");
        log(&logger, Level::Info, "a", format_args!("{message}z"));
        assert!(console.diagnostics_string().ends_with("yy…[truncated]\n"));
    }
}
