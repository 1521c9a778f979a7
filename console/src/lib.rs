//! Logging and line input over any console.
//!
//! The platforms give an application a [`Console`](mirage_types::console::Console)
//! (stdio, a serial port, the Xen PV console). This crate builds on any of
//! them:
//!
//! - [`Logger`]: a backend for the [`log`] crate that writes each record as
//!   one timestamped line through the console's synchronous diagnostic
//!   path, filtered by a [`LogFilter`] parsed from a flag such as
//!   `info,mirage_net_stack::tcp=trace`.
//! - [`DiagnosticWriter`]: `core::fmt::Write` over the diagnostic path, for
//!   panic handlers.
//! - [`LineReader`]: async line input with a bound on line length.
//! - `MemConsole` (feature `test-utils`): an in-memory console for tests.
//!
//! The crate is `#![no_std]`, needs only `alloc`, and logs without
//! allocating.
//!
//! # Cargo features
//!
//! - `test-utils` (off by default): exports `MemConsole`, an in-memory
//!   console with scripted input and captured output, for the tests of any
//!   crate that uses a console. It adds a dependency on `spin` (no `std`).
//!
//! # Example
//!
//! An application's start-up: install the logger from a flag, then answer
//! lines typed at the console.
//!
//! ```
//! use mirage_console::{LineReader, LogFilter, Logger};
//! use mirage_types::console::Console;
//! use mirage_types::time::MonotonicClock;
//!
//! async fn run<C, K>(console: &'static C, clock: K, log_flag: &str) -> Result<(), Box<dyn std::error::Error>>
//! where
//!     C: Console + Send + Sync,
//!     C::Error: 'static,
//!     K: MonotonicClock + Send + Sync + 'static,
//! {
//!     let filter: LogFilter = log_flag.parse()?;
//!     // `SetLoggerError` is an `Error` only with `log`'s `std` feature.
//!     Logger::new(console, clock, filter).install().map_err(|e| e.to_string())?;
//!     log::info!("ready");
//!     let mut lines = LineReader::new(console, 256);
//!     while let Some(line) = lines.read_line().await? {
//!         console.write_all(line.to_uppercase().as_bytes()).await?;
//!         console.write_all(b"\n").await?;
//!     }
//!     Ok(())
//! }
//!
//! // Run against the in-memory console of the `test-utils` feature.
//! # use mirage_console::MemConsole;
//! # use mirage_types::time::Instant;
//! # struct Clock;
//! # impl MonotonicClock for Clock { fn now(&self) -> Instant { Instant::from_millis(250) } }
//! let console: &'static MemConsole = Box::leak(Box::new(MemConsole::new()));
//! console.push_input(b"hello\r\nworld\n");
//! futures::executor::block_on(run(console, Clock, "info"))?;
//! assert_eq!(console.output_string(), "HELLO\nWORLD\n");
//! assert_eq!(console.diagnostics_string(), format!("[     0.250000] INFO  {}: ready\n", module_path!()));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod diagnostic;
mod filter;
mod line;
mod logger;
#[cfg(any(test, feature = "test-utils"))]
mod mem;

pub use diagnostic::DiagnosticWriter;
pub use filter::{LogFilter, LogFilterError, MAX_MODULE_DIRECTIVES};
pub use line::{LineError, LineReader, READ_CHUNK};
pub use logger::{Logger, MAX_LINE_LEN, TRUNCATION_MARKER};
#[cfg(feature = "test-utils")]
pub use mem::MemConsole;
