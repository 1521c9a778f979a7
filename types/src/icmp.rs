//! ICMP echo for applications (ping).
//!
//! The stack itself answers echo requests and reports errors (destination
//! unreachable); what an application needs is to send an echo request and
//! wait for its reply, which this trait offers on both our own stack and
//! the host's (through ping sockets).
//!
//! # For implementors
//!
//! Match replies by identifier and sequence number; a reply to a request
//! nobody waits for any more is dropped.
//!
//! # For users
//!
//! ```
//! use core::net::IpAddr;
//! use core::time::Duration;
//! use mirage_types::icmp::Icmp;
//!
//! /// Counts how many of `count` pings to `dst` are answered.
//! async fn answered<I: Icmp>(icmp: &I, dst: IpAddr, count: u16) -> u16 {
//!     let mut ok = 0;
//!     for seq in 0..count {
//!         if icmp.ping(dst, seq, b"mirage", Duration::from_secs(1)).await.is_ok() {
//!             ok += 1;
//!         }
//!     }
//!     ok
//! }
//! ```

use alloc::string::String;
use core::net::IpAddr;
use core::time::Duration;

use bytes::Bytes;

error_family!("icmp" {
    /// No reply within the timeout.
    TimedOut => "no echo reply",
    /// The destination cannot be reached (no route, no link-layer answer,
    /// or an ICMP destination-unreachable came back).
    Unreachable => "destination unreachable",
    /// The host does not let this process send ICMP.
    PermissionDenied => "ICMP not permitted",
    /// Anything else.
    Other => "icmp failure",
});

/// The ready-made error of this family.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IcmpError {
    /// See [`ErrorKind::TimedOut`].
    #[error("no echo reply from {dst} (sequence {seq}) within {timeout:?}")]
    TimedOut {
        /// The destination pinged.
        dst: IpAddr,
        /// Sequence number of the request.
        seq: u16,
        /// How long we waited.
        timeout: Duration,
    },
    /// See [`ErrorKind::Unreachable`].
    #[error("{dst} unreachable: {reason}")]
    Unreachable {
        /// The destination.
        dst: IpAddr,
        /// Why.
        reason: String,
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

impl Error for IcmpError {
    fn kind(&self) -> ErrorKind {
        match self {
            IcmpError::TimedOut { .. } => ErrorKind::TimedOut,
            IcmpError::Unreachable { .. } => ErrorKind::Unreachable,
            IcmpError::Other { kind, .. } => *kind,
        }
    }
}

/// An echo reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EchoReply {
    /// Who answered.
    pub from: IpAddr,
    /// The sequence number echoed.
    pub seq: u16,
    /// The TTL of the reply as received, if the implementation sees it.
    pub ttl: Option<u8>,
    /// The payload echoed back.
    pub payload: Bytes,
}

/// Sending echo requests.
pub trait Icmp {
    /// The error.
    type Error: Error;

    /// Sends an echo request with `seq` and `payload` to `dst` and waits up
    /// to `timeout` for its reply.
    ///
    /// Cancel-safe: dropping the future forgets the wait.
    async fn ping(&self, dst: IpAddr, seq: u16, payload: &[u8], timeout: Duration) -> Result<EchoReply, Self::Error>;
}

forward_handle!(Icmp {
    type Error = T::Error;
    async fn ping(&self, dst: IpAddr, seq: u16, payload: &[u8], timeout: Duration) -> Result<EchoReply, Self::Error> {
        (**self).ping(dst, seq, payload, timeout).await
    }
});
