//! Run mirage-rs applications as Linux processes.
//!
//! An application written against `mirage-types` becomes a Linux program
//! with a `main` of one line:
//!
//! ```no_run
//! use std::process::ExitCode;
//! use mirage_types::time::Sleep;
//!
//! fn main() -> ExitCode {
//!     mirage_platform_unix::run("nap", |platform, _devices| async move {
//!         platform.sleep(core::time::Duration::from_millis(10)).await;
//!         Ok(())
//!     })
//! }
//! ```
//!
//! The platform (BRIEF.md §3, §4) is tokio's current-thread runtime with a
//! `LocalSet`: one event loop on one thread.
//!
//! | item | what it is |
//! |---|---|
//! | [`run`] | parses the command line, installs the logger, runs the application |
//! | [`UnixPlatform`] | clocks, sleep, getrandom(2), task spawning, arguments, exit |
//! | [`HostClock`] | the same clocks, `Send + Sync`, for a logger |
//! | [`StdioConsole`] | the console over stdin and stdout |
//! | [`FileBlock`] | a block device over a host file or block device |
//! | [`Devices`] | what the command line connected, taken by name |
//! | `TapNetwork` | a network device over a host TAP interface |
//! | `SocketStack` | the network stack of the host kernel's sockets |
//!
//! # Command line
//!
//! ```text
//! APP [--block NAME=PATH[:ro][:direct][:sector=BYTES]]...
//!     [--net NAME=tap:IFACE | --net socket]...
//!     [--ipv4 ADDR/PREFIX] [--ipv4-gateway ADDR]
//!     [-l LEVEL[,MODULE=LEVEL]...] [-- APP-ARGS...]
//! ```
//!
//! - `--block disk=/tmp/disk.img` connects the block device the application
//!   asks for as `disk` ([`Devices::block`]); `:ro` opens it read-only,
//!   `:direct` with `O_DIRECT`, `:sector=4096` sets the sector size.
//! - `--net net0=tap:tap0` connects the network device `net0` to the TAP
//!   interface `tap0` ([`Devices::tap`]); `--net socket` (the default when
//!   no `--net` is given) offers the host's sockets
//!   ([`Devices::socket_stack`]).
//! - `--ipv4` and `--ipv4-gateway` configure the application's own stack
//!   ([`Devices::ipv4`], [`Devices::ipv4_gateway`]).
//! - `-l` filters log lines: `-l debug`, `-l warn,mirage_net_stack=trace`.
//! - Everything after `--` is the application's
//!   ([`mirage_types::platform::Platform::args`]).
//!
//! A malformed or unknown flag is a usage error naming the flag (exit
//! status 2); an application error is logged and exits with status 1.
//!
//! # Cargo features
//!
//! This crate has no Cargo features.

mod console;
mod file_block;
mod flags;
mod platform;
mod runner;

pub use console::StdioConsole;
pub use file_block::{FileBlock, FileBlockOptions, OpenError, BOUNCE_BUFFER_LEN, MAX_SECTOR_SIZE, MIN_SECTOR_SIZE};
pub use platform::{HostClock, UnixPlatform};
pub use runner::{run, run_with_args, DeviceError, Devices};

pub mod socket_stack;
pub mod tap;
