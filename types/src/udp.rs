//! UDP (RFC 768): datagrams to and from ports.
//!
//! Binding a port returns a socket; dropping the socket stops listening.
//!
//! # For implementors
//!
//! Incoming datagrams for a bound port queue in a bounded buffer per
//! socket (document the bound); when it is full, new datagrams are dropped
//! and counted. A datagram to a port nobody bound is answered with ICMP
//! port unreachable (rate-limited) where the stack can.
//!
//! # For users
//!
//! ```
//! use core::net::SocketAddr;
//! use mirage_types::udp::{Udp, UdpSocket};
//!
//! /// Echoes `count` datagrams back to their senders.
//! async fn echo<U: Udp>(udp: &U, local: SocketAddr, count: usize) -> Result<(), U::Error> {
//!     let socket = udp.bind(local).await?;
//!     for _ in 0..count {
//!         let datagram = socket.recv_from().await?;
//!         socket.send_to(&datagram.payload, datagram.src).await?;
//!     }
//!     Ok(())
//! }
//! ```

use alloc::string::String;
use core::net::SocketAddr;

use bytes::Bytes;

error_family!("udp" {
    /// The local address is already bound.
    AddressInUse => "address in use",
    /// The local address is not one of ours.
    AddressNotAvailable => "address not available",
    /// No route, or the next hop did not resolve.
    Unreachable => "destination unreachable",
    /// The payload is larger than a datagram can carry.
    TooLarge => "datagram too large",
    /// Anything else.
    Other => "udp failure",
});

/// The ready-made error of this family.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UdpError {
    /// See [`ErrorKind::AddressInUse`].
    #[error("UDP {0} is already bound")]
    AddressInUse(SocketAddr),
    /// See [`ErrorKind::AddressNotAvailable`].
    #[error("cannot bind UDP {0}: not a local address")]
    AddressNotAvailable(SocketAddr),
    /// See [`ErrorKind::TooLarge`].
    #[error("UDP payload of {len} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// Requested payload length.
        len: usize,
        /// Largest payload.
        max: usize,
    },
    /// Any other failure, with its kind.
    #[error("{message}")]
    Other {
        /// The kind reported.
        kind: ErrorKind,
        /// What failed and where.
        message: String,
    },
}

impl Error for UdpError {
    fn kind(&self) -> ErrorKind {
        match self {
            UdpError::AddressInUse(_) => ErrorKind::AddressInUse,
            UdpError::AddressNotAvailable(_) => ErrorKind::AddressNotAvailable,
            UdpError::TooLarge { .. } => ErrorKind::TooLarge,
            UdpError::Other { kind, .. } => *kind,
        }
    }
}

/// A received datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datagram {
    /// Sender.
    pub src: SocketAddr,
    /// The address it was sent to (ours, or a broadcast address).
    pub dst: SocketAddr,
    /// The payload, sliced from the received frame where possible.
    pub payload: Bytes,
}

/// UDP on a stack.
pub trait Udp {
    /// The error.
    type Error: Error;
    /// A bound socket.
    type Socket: UdpSocket<Error = Self::Error>;

    /// Binds `local`: port 0 picks a free ephemeral port; the unspecified
    /// address (0.0.0.0) receives on every local address.
    async fn bind(&self, local: SocketAddr) -> Result<Self::Socket, Self::Error>;
}

/// A bound UDP socket; dropping it unbinds the port.
pub trait UdpSocket {
    /// The error.
    type Error: Error;

    /// The bound address (with the chosen port if 0 was asked).
    fn local_addr(&self) -> SocketAddr;

    /// Sends one datagram to `dst`. `Ok` means handed to the network.
    /// Cancel-safe: if dropped, nothing or the whole datagram was sent.
    async fn send_to(&self, payload: &[u8], dst: SocketAddr) -> Result<(), Self::Error>;

    /// Waits for the next datagram. Cancel-safe: none is lost if dropped.
    async fn recv_from(&self) -> Result<Datagram, Self::Error>;
}

forward_handle!(Udp {
    type Error = T::Error;
    type Socket = T::Socket;
    async fn bind(&self, local: SocketAddr) -> Result<Self::Socket, Self::Error> {
        (**self).bind(local).await
    }
});
