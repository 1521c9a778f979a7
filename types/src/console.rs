//! The console: the system's text input and output (stdio on unix, the
//! serial port or the Xen PV console on unikernels).
//!
//! A console reads and writes bytes with flow semantics ([`crate::flow`]):
//! `read` returns `Ok(0)` at end of input, errors are flow errors. Unlike a
//! flow it is a shared device handle (`&self`), because logging, the
//! application and a panic handler all write to it.
//!
//! # For implementors
//!
//! Besides the async [`Console::read`] and [`Console::write`], implement
//! [`Console::write_diagnostic`]: a synchronous write that never waits on
//! the event loop (it may spin on the hardware), used for log lines and
//! panic messages, which must get out even when the event loop is stuck.
//!
//! The console a platform logs through must be `Send + Sync`, because the
//! `log` crate requires that of its backend (`mirage-console`'s `Logger`):
//! make it a stateless handle (a file descriptor, a UART port) or guard its
//! state with a spin lock, even though the system is single-threaded.
//!
//! # For users
//!
//! ```
//! use mirage_types::console::Console;
//!
//! /// Prints a prompt and reads one chunk of the answer.
//! async fn ask<C: Console>(console: &C, prompt: &str, answer: &mut [u8]) -> Result<usize, C::Error> {
//!     console.write_all(prompt.as_bytes()).await?;
//!     console.read(answer).await
//! }
//! ```

// `async_trait` expands to code naming `Box`.
use alloc::boxed::Box;

use crate::flow::{self, FlowError};

/// A console device.
pub trait Console {
    /// Errors are flow errors.
    type Error: flow::Error;

    /// Reads input; `Ok(0)` means the input has ended (stdin closed).
    ///
    /// Cancel-safe: if the future is dropped, no input was consumed.
    async fn read(&self, buf: &mut [u8]) -> Result<usize, Self::Error>;

    /// Writes some of `buf` and returns how much (at least one byte unless
    /// `buf` is empty).
    ///
    /// Cancel-safe: if the future is dropped, nothing was written.
    async fn write(&self, buf: &[u8]) -> Result<usize, Self::Error>;

    /// Writes all of `buf`. Not cancel-safe: a prefix may have been written.
    async fn write_all(&self, mut buf: &[u8]) -> Result<(), Self::Error> {
        while !buf.is_empty() {
            let n = self.write(buf).await?;
            assert!(n > 0, "Console::write accepted no bytes of a non-empty buffer");
            buf = &buf[n..];
        }
        Ok(())
    }

    /// Writes `bytes` synchronously, for logs and panic messages. Never
    /// waits on the event loop; failures are ignored (there is nowhere left
    /// to report them).
    fn write_diagnostic(&self, bytes: &[u8]);
}

forward_handle!(Console {
    type Error = T::Error;
    async fn read(&self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        (**self).read(buf).await
    }
    async fn write(&self, buf: &[u8]) -> Result<usize, Self::Error> {
        (**self).write(buf).await
    }
    fn write_diagnostic(&self, bytes: &[u8]) {
        (**self).write_diagnostic(bytes)
    }
});

/// The object-safe counterpart of [`Console`], for consoles chosen at run time.
#[async_trait::async_trait(?Send)]
pub trait DynConsole {
    /// See [`Console::read`].
    async fn read(&self, buf: &mut [u8]) -> Result<usize, FlowError>;
    /// See [`Console::write`].
    async fn write(&self, buf: &[u8]) -> Result<usize, FlowError>;
    /// See [`Console::write_diagnostic`].
    fn write_diagnostic(&self, bytes: &[u8]);
}

#[async_trait::async_trait(?Send)]
impl<C: Console> DynConsole for C {
    async fn read(&self, buf: &mut [u8]) -> Result<usize, FlowError> {
        Console::read(self, buf).await.map_err(|e| FlowError::from_error(&e))
    }
    async fn write(&self, buf: &[u8]) -> Result<usize, FlowError> {
        Console::write(self, buf).await.map_err(|e| FlowError::from_error(&e))
    }
    fn write_diagnostic(&self, bytes: &[u8]) {
        Console::write_diagnostic(self, bytes)
    }
}

impl Console for dyn DynConsole + '_ {
    type Error = FlowError;
    async fn read(&self, buf: &mut [u8]) -> Result<usize, FlowError> {
        DynConsole::read(self, buf).await
    }
    async fn write(&self, buf: &[u8]) -> Result<usize, FlowError> {
        DynConsole::write(self, buf).await
    }
    fn write_diagnostic(&self, bytes: &[u8]) {
        DynConsole::write_diagnostic(self, bytes)
    }
}
