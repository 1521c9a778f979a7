//! Flows: reliable, ordered byte streams (TCP connections, host pipes).
//!
//! A flow is an owned value; its I/O takes `&mut self` and dropping it
//! releases it (a TCP flow dropped without [`Flow::close`] is reset).
//! End of stream is not an error: [`Flow::read`] returns `Ok(0)` for it.
//!
//! # For implementors
//!
//! - `read` into a non-empty buffer returns `Ok(n)` with `n > 0`, or `Ok(0)`
//!   exactly when the peer will send nothing more; later reads keep
//!   returning `Ok(0)`.
//! - `write` of a non-empty buffer returns `Ok(n)` with `n > 0`; it waits
//!   while the send path has no room.
//! - `write_bytes` has a default that calls `write` (a copy). A flow
//!   that can keep the `Bytes` it is given (a reference count) until the
//!   data is acknowledged overrides it, with `write`'s contract otherwise;
//!   a forwarding wrapper forwards it, or loses the saving.
//! - After `close` (or `shutdown(Both)`), I/O fails with
//!   [`ErrorKind::NotConnected`]; after `shutdown(Write)`, writes fail with
//!   [`ErrorKind::BrokenPipe`].
//!
//! # For users
//!
//! ```
//! use mirage_types::flow::Flow;
//!
//! /// Copies everything read from `flow` back to it until end of stream;
//! /// returns the number of bytes echoed.
//! async fn echo<F: Flow>(flow: &mut F) -> Result<u64, F::Error> {
//!     let mut buf = [0u8; 4096];
//!     let mut total = 0;
//!     loop {
//!         let n = flow.read(&mut buf).await?;
//!         if n == 0 {
//!             flow.close().await?;
//!             return Ok(total);
//!         }
//!         flow.write_all(&buf[..n]).await?;
//!         total += n as u64;
//!     }
//! }
//! ```

use alloc::string::String;

use bytes::Bytes;

error_family!("flow" {
    /// The peer reset the connection; data in flight is lost.
    ConnectionReset => "connection reset by peer",
    /// The connection was aborted locally (a timeout, a resource limit, the stack shutting down).
    ConnectionAborted => "connection aborted",
    /// The flow is closed (or shut down in both directions).
    NotConnected => "not connected",
    /// Writing after the write side was shut down.
    BrokenPipe => "write after shutdown",
    /// The peer stopped acknowledging for longer than the user timeout.
    TimedOut => "connection timed out",
    /// An argument was out of range (an option value the flow cannot take).
    InvalidInput => "invalid argument",
    /// The underlying device or host call failed.
    Io => "I/O error",
    /// Anything else.
    Other => "flow failure",
});

/// The ready-made error of this family.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FlowError {
    /// The peer reset the connection.
    #[error("connection reset by peer")]
    ConnectionReset,
    /// I/O on a closed flow.
    #[error("{0} on a closed flow")]
    NotConnected(&'static str),
    /// A write after `shutdown(Write)`.
    #[error("write after the write side was shut down")]
    BrokenPipe,
    /// Any other failure, with its kind.
    #[error("{message}")]
    Other {
        /// The kind reported.
        kind: ErrorKind,
        /// What failed and where.
        message: String,
    },
}

impl FlowError {
    /// A ready-made error with the kind and message of any flow error.
    pub fn from_error<E: Error + ?Sized>(e: &E) -> FlowError {
        FlowError::Other { kind: e.kind(), message: alloc::string::ToString::to_string(e) }
    }
}

impl Error for FlowError {
    fn kind(&self) -> ErrorKind {
        match self {
            FlowError::ConnectionReset => ErrorKind::ConnectionReset,
            FlowError::NotConnected(_) => ErrorKind::NotConnected,
            FlowError::BrokenPipe => ErrorKind::BrokenPipe,
            FlowError::Other { kind, .. } => *kind,
        }
    }
}

/// Which direction(s) of a flow to shut down.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Shutdown {
    /// No more reads: data that arrives later is discarded.
    Read,
    /// No more writes: the peer sees end of stream after the data already written.
    Write,
    /// Both.
    Both,
}

/// A reliable, ordered byte stream.
pub trait Flow {
    /// The error of this flow.
    type Error: Error;

    /// Reads into `buf`; `Ok(0)` for a non-empty `buf` means end of stream.
    ///
    /// Cancel-safe: if the future is dropped, no data was consumed.
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error>;

    /// Writes some of `buf`, waiting while the send path is full, and
    /// returns how much was accepted (at least one byte unless `buf` is
    /// empty). `Ok` means accepted for sending, not received by the peer.
    ///
    /// Cancel-safe: if the future is dropped, nothing was accepted.
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error>;

    /// Writes some of `data`, as [`Flow::write`] does, handing the bytes
    /// taken to the flow rather than lending them: a flow that can keeps
    /// them (a reference count, not a copy) until they are delivered, and
    /// returns how many it took (the rest is the caller's to write again).
    /// The default copies, as `write` does.
    ///
    /// Cancel-safe: if the future is dropped, nothing was accepted.
    async fn write_bytes(&mut self, data: Bytes) -> Result<usize, Self::Error> {
        self.write(&data).await
    }

    /// Writes all of `buf`.
    ///
    /// Not cancel-safe: if dropped or on `Err`, an unknown prefix of `buf`
    /// may have been accepted.
    async fn write_all(&mut self, mut buf: &[u8]) -> Result<(), Self::Error> {
        while !buf.is_empty() {
            let n = self.write(buf).await?;
            // A zero-length write of a non-empty buffer breaks the contract above.
            assert!(n > 0, "Flow::write accepted no bytes of a non-empty buffer");
            buf = &buf[n..];
        }
        Ok(())
    }

    /// Shuts down one or both directions. Shutting down the write side
    /// sends end of stream after the data already written.
    async fn shutdown(&mut self, how: Shutdown) -> Result<(), Self::Error>;

    /// Closes the flow gracefully: written data is still delivered, then
    /// the peer sees end of stream. Later I/O fails with
    /// [`ErrorKind::NotConnected`]. Closing twice is not an error.
    ///
    /// Read to end of stream before closing where the protocol allows:
    /// TCP implementations (the host kernel's among them) answer a close
    /// with received data still unread by resetting the connection
    /// (RFC 2525 §2.17), which can discard data in flight.
    async fn close(&mut self) -> Result<(), Self::Error>;
}

forward_flow!(Flow {
    type Error = T::Error;
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        (**self).read(buf).await
    }
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        (**self).write(buf).await
    }
    async fn write_bytes(&mut self, data: Bytes) -> Result<usize, Self::Error> {
        (**self).write_bytes(data).await
    }
    async fn shutdown(&mut self, how: Shutdown) -> Result<(), Self::Error> {
        (**self).shutdown(how).await
    }
    async fn close(&mut self) -> Result<(), Self::Error> {
        (**self).close().await
    }
});

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    /// A flow that takes at most 4 bytes per write, into `copied` or, by
    /// `write_bytes` when `keeps` is set, into `held`.
    #[derive(Default)]
    struct Sink {
        copied: Vec<u8>,
        held: Vec<Bytes>,
        keeps: bool,
    }

    impl Flow for Sink {
        type Error = FlowError;
        async fn read(&mut self, _: &mut [u8]) -> Result<usize, FlowError> {
            Ok(0)
        }
        async fn write(&mut self, buf: &[u8]) -> Result<usize, FlowError> {
            let n = buf.len().min(4);
            self.copied.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        async fn write_bytes(&mut self, data: Bytes) -> Result<usize, FlowError> {
            if !self.keeps {
                return self.write(&data).await;
            }
            let n = data.len().min(4);
            self.held.push(data.slice(..n));
            Ok(n)
        }
        async fn shutdown(&mut self, _: Shutdown) -> Result<(), FlowError> {
            Ok(())
        }
        async fn close(&mut self) -> Result<(), FlowError> {
            Ok(())
        }
    }

    /// The default `write_bytes` of a flow that does not override it.
    struct Plain(Sink);

    impl Flow for Plain {
        type Error = FlowError;
        async fn read(&mut self, buf: &mut [u8]) -> Result<usize, FlowError> {
            self.0.read(buf).await
        }
        async fn write(&mut self, buf: &[u8]) -> Result<usize, FlowError> {
            self.0.write(buf).await
        }
        async fn shutdown(&mut self, how: Shutdown) -> Result<(), FlowError> {
            self.0.shutdown(how).await
        }
        async fn close(&mut self) -> Result<(), FlowError> {
            self.0.close().await
        }
    }

    #[test]
    fn write_bytes_defaults_to_a_copying_write_and_is_forwarded() {
        futures::executor::block_on(async {
            let data = Bytes::from_static(b"abcdefgh");
            let mut plain = Plain(Sink::default());
            assert_eq!(plain.write_bytes(data.clone()).await, Ok(4));
            assert_eq!(plain.0.copied, b"abcd");
            // Through `&mut` and `Box`, an override is reached.
            let mut keeping = Sink { keeps: true, ..Sink::default() };
            let mut by_ref = &mut keeping;
            assert_eq!(<&mut Sink as Flow>::write_bytes(&mut by_ref, data.slice(4..)).await, Ok(4));
            let mut boxed = alloc::boxed::Box::new(keeping);
            assert_eq!(<alloc::boxed::Box<Sink> as Flow>::write_bytes(&mut boxed, data.clone()).await, Ok(4));
            assert_eq!(boxed.held, [data.slice(4..), data.slice(..4)]);
            assert!(boxed.copied.is_empty());
        });
    }
}
