//! The platform handle: the one value an application receives for time,
//! randomness, task spawning, its arguments and exit.
//!
//! Devices (block, network, console) are not reached through this handle:
//! the platform's entry point connects the devices the application asks for
//! and passes them to it as separate arguments, so code given a platform
//! cannot open devices it was not given (BRIEF.md §3).
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

use alloc::string::String;
use core::future::Future;

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
