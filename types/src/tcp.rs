//! TCP (RFC 9293): connecting, listening, and connections as flows.
//!
//! A connection is a [`TcpFlow`]: a [`Flow`] with addresses and options.
//!
//! # For implementors
//!
//! - [`Tcp::listen`]'s `backlog` bounds connections that completed their
//!   handshake but were not yet accepted; beyond it, new handshakes are
//!   refused or handled statelessly (SYN cookies), never queued without
//!   bound.
//! - [`Tcp::connect`] fails with [`ErrorKind::ConnectionRefused`] on a
//!   reset and [`ErrorKind::TimedOut`] after the stack's connect timeout.
//! - Dropping a flow without closing it resets the connection; dropping a
//!   listener resets the connections waiting in its backlog.
//!
//! # For users
//!
//! ```
//! use core::net::SocketAddr;
//! use mirage_types::flow::Flow;
//! use mirage_types::tcp::{Tcp, TcpListener};
//!
//! /// Accepts one connection and greets it.
//! async fn greet_one<T: Tcp>(tcp: &T, local: SocketAddr) -> Result<(), T::Error> {
//!     let listener = tcp.listen(local, 16).await?;
//!     let mut flow = listener.accept().await?;
//!     // Errors from a single connection are the peer's business, not ours.
//!     let _ = flow.write_all(b"hello\n").await;
//!     let _ = flow.close().await;
//!     Ok(())
//! }
//! ```

use alloc::string::String;
use core::net::SocketAddr;
use core::time::Duration;

use crate::flow::Flow;

error_family!("tcp" {
    /// The peer answered with a reset.
    ConnectionRefused => "connection refused",
    /// No answer within the connect timeout.
    TimedOut => "connection timed out",
    /// No route, or the next hop did not resolve.
    Unreachable => "destination unreachable",
    /// The local address is already bound.
    AddressInUse => "address in use",
    /// The local address is not one of ours.
    AddressNotAvailable => "address not available",
    /// A limit was reached (connections, ports, memory).
    ResourceExhausted => "resource limit reached",
    /// An argument was not valid (port 0 to connect to, backlog 0).
    InvalidInput => "invalid argument",
    /// Anything else.
    Other => "tcp failure",
});

/// The ready-made error of this family.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TcpError {
    /// See [`ErrorKind::ConnectionRefused`].
    #[error("connection to {0} refused")]
    ConnectionRefused(SocketAddr),
    /// See [`ErrorKind::TimedOut`].
    #[error("connection to {0} timed out")]
    TimedOut(SocketAddr),
    /// See [`ErrorKind::AddressInUse`].
    #[error("TCP {0} is already bound")]
    AddressInUse(SocketAddr),
    /// See [`ErrorKind::AddressNotAvailable`].
    #[error("cannot bind TCP {0}: not a local address")]
    AddressNotAvailable(SocketAddr),
    /// See [`ErrorKind::Unreachable`].
    #[error("{0} is unreachable")]
    Unreachable(SocketAddr),
    /// Any other failure, with its kind.
    #[error("{message}")]
    Other {
        /// The kind reported.
        kind: ErrorKind,
        /// What failed and where.
        message: String,
    },
}

impl Error for TcpError {
    fn kind(&self) -> ErrorKind {
        match self {
            TcpError::ConnectionRefused(_) => ErrorKind::ConnectionRefused,
            TcpError::TimedOut(_) => ErrorKind::TimedOut,
            TcpError::AddressInUse(_) => ErrorKind::AddressInUse,
            TcpError::AddressNotAvailable(_) => ErrorKind::AddressNotAvailable,
            TcpError::Unreachable(_) => ErrorKind::Unreachable,
            TcpError::Other { kind, .. } => *kind,
        }
    }
}

/// Keepalive probing of an idle connection (RFC 9293 §3.8.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keepalive {
    /// Idle time before the first probe.
    pub idle: Duration,
    /// Time between unanswered probes.
    pub interval: Duration,
    /// Unanswered probes after which the connection is aborted.
    pub probes: u32,
}

/// TCP on a stack.
pub trait Tcp {
    /// Errors of connecting and listening.
    type Error: Error;
    /// A connection.
    type Flow: TcpFlow;
    /// A listening socket.
    type Listener: TcpListener<Flow = Self::Flow, Error = Self::Error>;

    /// Opens a connection to `remote`.
    ///
    /// Cancel-safe: dropping the future abandons the attempt (a half-open
    /// connection is reset).
    async fn connect(&self, remote: SocketAddr) -> Result<Self::Flow, Self::Error>;

    /// Listens on `local` (unspecified address: every local address) with
    /// room for `backlog` connections waiting to be accepted.
    async fn listen(&self, local: SocketAddr, backlog: usize) -> Result<Self::Listener, Self::Error>;
}

/// A listening socket; dropping it stops listening.
pub trait TcpListener {
    /// The connections it accepts.
    type Flow: TcpFlow;
    /// The error.
    type Error: Error;

    /// The address listened on.
    fn local_addr(&self) -> SocketAddr;

    /// Waits for the next established connection.
    ///
    /// Cancel-safe: a connection is never lost to a dropped future. Several
    /// tasks may accept on the same listener.
    async fn accept(&self) -> Result<Self::Flow, Self::Error>;
}

/// A TCP connection.
pub trait TcpFlow: Flow {
    /// Our end.
    fn local_addr(&self) -> SocketAddr;

    /// The peer's end.
    fn remote_addr(&self) -> SocketAddr;

    /// Turns Nagle's algorithm off (`true`) or on (RFC 9293 §3.7.4).
    fn set_nodelay(&mut self, nodelay: bool) -> Result<(), Self::Error>;

    /// Enables keepalive probing with these settings, or disables it.
    fn set_keepalive(&mut self, keepalive: Option<Keepalive>) -> Result<(), Self::Error>;
}

forward_handle!(Tcp {
    type Error = T::Error;
    type Flow = T::Flow;
    type Listener = T::Listener;
    async fn connect(&self, remote: SocketAddr) -> Result<Self::Flow, Self::Error> {
        (**self).connect(remote).await
    }
    async fn listen(&self, local: SocketAddr, backlog: usize) -> Result<Self::Listener, Self::Error> {
        (**self).listen(local, backlog).await
    }
});
