//! Run mirage-rs applications as Linux processes.
//!
//! An application written against `mirage-types` becomes a Linux program
//! through [`run`], which `mirage::main!` (crate `mirage-rs`) calls; by
//! hand it is:
//!
//! ```no_run
//! use std::process::ExitCode;
//! use mirage_types::devices::Devices;
//! use mirage_types::platform::{App, AppError, Platform};
//! use mirage_types::time::Sleep;
//!
//! struct Nap;
//!
//! impl App for Nap {
//!     async fn start<P: Platform, D: Devices>(self, platform: P, _devices: D) -> Result<(), AppError> {
//!         platform.sleep(core::time::Duration::from_millis(10)).await;
//!         Ok(())
//!     }
//! }
//!
//! fn main() -> ExitCode {
//!     mirage_platform_unix::run("nap", Nap)
//! }
//! ```
//!
//! The platform (decision 0001; docs/architecture.md) is tokio's current-thread runtime with a
//! `LocalSet`: one event loop on one thread.
//!
//! | item | what it is |
//! |---|---|
//! | [`run`] | parses the command line, installs the logger, runs the application |
//! | [`UnixPlatform`] | clocks, sleep, getrandom(2), task spawning, arguments, exit |
//! | [`UnixDevices`] | `mirage_types::devices::Devices`: what the command line connected, taken by name |
//! | [`SocketNet`], [`TapNet`] | the two ways its stacks reach the network: host sockets, or our stack on TAP |
//! | [`HostClock`] | the same clocks, `Send + Sync`, for a logger |
//! | [`StdioConsole`] | the console over stdin and stdout |
//! | [`FileBlock`] | a block device over a host file or block device |
//! | `TapNetwork` | a network device over a host TAP interface |
//! | `SocketStack` | the network stack of the host kernel's sockets |
//!
//! # Command line
//!
//! The flags are every platform's ([`mirage_types::devices`]); on unix
//! their backings are:
//!
//! ```text
//! APP [--net NAME[=socket] | --net NAME=tap:IFACE]... [--ipv4 ADDR/PREFIX] [--ipv4-gateway ADDR]
//!     [--block NAME=PATH[:ro][:direct][:sector=BYTES]]... [-l LEVEL[,MODULE=LEVEL]...] [-- APP-ARGS...]
//! ```
//!
//! - `--net net0` (or no `--net` at all) gives the application the host's
//!   sockets; `--net net0=tap:tap0` our own stack on the TAP interface
//!   `tap0`, addressed by `--ipv4` (and `--ipv4-gateway`) or by DHCP. The
//!   two kinds do not mix in one process.
//! - `--block disk=/tmp/disk.img` connects the block device the application
//!   asks for as `disk`; `:ro` opens it read-only, `:direct` with
//!   `O_DIRECT`, `:sector=4096` sets the sector size.
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
pub use runner::{run, run_with_args, SocketNet, TapNet, UnixDevices, UnixNet};

pub mod socket_stack;
pub mod tap;
