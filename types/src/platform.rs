//! The platform handle: the one value an application receives for time,
//! randomness, task spawning, its arguments and exit.
//!
//! Devices (block, network, console) are not reached through this handle:
//! the platform's entry point connects the devices the application asks for
//! and passes them to it as separate arguments, so code given a platform
//! cannot open devices it was not given (decision 0009, the device
//! contract).
//!
//! # For implementors
//!
//! The handle is cheap to clone (an `Rc` or a zero-sized type) and every
//! clone refers to the same event loop. [`Platform::spawn`] must not poll the
//! task before returning; it runs it on the single event loop alongside the
//! caller. [`Platform::exit`] ends the whole system (process or VM) with the
//! given status and never returns.
//!
//! # For users
//!
//! Take the handle by value as a generic parameter and clone it into tasks:
//!
//! ```
//! use core::time::Duration;
//! use mirage_types::platform::Platform;
//! use mirage_types::time::Sleep;
//!
//! /// Starts a heartbeat task and exits after `beats` beats.
//! fn heartbeat<P: Platform>(platform: P, beats: u32) {
//!     let p = platform.clone();
//!     platform.spawn(async move {
//!         for _ in 0..beats {
//!             p.sleep(Duration::from_millis(10)).await;
//!         }
//!         p.exit(0);
//!     });
//! }
//! ```

use alloc::boxed::Box;
use alloc::string::String;
use core::convert::Infallible;
use core::future::Future;

use crate::devices::Devices;
use crate::random::Random;
use crate::time::{Sleep, WallClock};

/// Time, randomness, tasks, arguments and exit: everything an application
/// needs from the system besides its devices.
pub trait Platform: Sleep + WallClock + Random + Clone + 'static {
    /// Runs `task` on the event loop, concurrently with the caller.
    ///
    /// The task runs until it completes or the system exits; there is no
    /// join handle (use a channel to get a result back).
    fn spawn(&self, task: impl Future<Output = ()> + 'static);

    /// The application's own arguments: what is left of the command line
    /// (process arguments or kernel command line) after the platform has
    /// taken its device flags. Does not include a program name.
    fn args(&self) -> &[String];

    /// Ends the system with `status` (0 for success). Output written before
    /// the call through the console's diagnostic path is not lost.
    fn exit(&self, status: u8) -> !;
}

/// An application's failure as every platform reports it: logged at error
/// level, then exit status 1. Any error type converts into it with `?`.
pub type AppError = Box<dyn core::error::Error>;

/// An application: what a platform's entry point starts, with the
/// platform handle and the [`Devices`].
///
/// Applications do not implement this by hand: `mirage::main!(start)`
/// (crate `mirage-rs`) implements it for the app's generic
/// `async fn start<P: Platform, D: Devices>(platform: P, devices: D)`.
/// A platform's runner calls [`App::start`] once, possibly with one of
/// several `Devices` types chosen at run time (the unix platform picks host
/// sockets or its own stack on TAP from the flags), which is why the
/// method, not the trait, is generic.
pub trait App {
    /// Runs the application to its end. `Ok` is exit status 0.
    async fn start<P: Platform, D: Devices>(self, platform: P, devices: D) -> Result<(), AppError>;
}

/// What an application's `start` may return: `()`, `Result<(), E>` or
/// `Result<Infallible, E>` (a server that never returns but on error), for
/// any `E` that converts into [`AppError`].
pub trait AppOutcome {
    /// The outcome as a platform reports it.
    fn into_result(self) -> Result<(), AppError>;
}

impl AppOutcome for () {
    fn into_result(self) -> Result<(), AppError> {
        Ok(())
    }
}

impl<E: Into<AppError>> AppOutcome for Result<(), E> {
    fn into_result(self) -> Result<(), AppError> {
        self.map_err(Into::into)
    }
}

impl<E: Into<AppError>> AppOutcome for Result<Infallible, E> {
    fn into_result(self) -> Result<(), AppError> {
        match self {
            Ok(never) => match never {},
            Err(e) => Err(e.into()),
        }
    }
}
