//! Installing the logger globally. In its own test binary because `log`
//! takes one logger per process.

use mirage_console::{Logger, MemConsole};
use mirage_types::time::{Instant, MonotonicClock};

struct FixedClock;

impl MonotonicClock for FixedClock {
    fn now(&self) -> Instant {
        Instant::from_nanos(42_000_007_000)
    }
}

#[test]
fn installed_logger_serves_the_log_macros_and_sets_the_max_level() {
    let console: &'static MemConsole = Box::leak(Box::new(MemConsole::new()));
    let filter = "warn,install=debug".parse().unwrap();
    Logger::new(console, FixedClock, filter).install().expect("first install succeeds");
    assert_eq!(log::max_level(), log::LevelFilter::Debug);

    log::debug!(target: "install::x", "kept {}", 1);
    log::trace!(target: "install::x", "below debug");
    log::info!(target: "other", "below warn");
    log::warn!(target: "other", "kept {}", 2);
    assert_eq!(
        console.diagnostics_string(),
        "[    42.000007] DEBUG install::x: kept 1\n[    42.000007] WARN  other: kept 2\n"
    );

    let second = Logger::new(console, FixedClock, "trace".parse().unwrap());
    assert!(second.install().is_err(), "a second logger is refused");
    assert_eq!(log::max_level(), log::LevelFilter::Debug, "the refused logger changed nothing");
}
