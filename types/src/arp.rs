//! ARP (RFC 826): resolving IPv4 addresses to MAC addresses on a link.
//!
//! # For implementors
//!
//! The cache is bounded and entries expire; requests are retried and a
//! resolution that gets no answer fails with [`ErrorKind::Timeout`]
//! instead of waiting forever. [`Arp::input`] answers requests for our
//! addresses and learns from replies. Changing the address set
//! announces the new addresses (gratuitous ARP, RFC 5227).
//!
//! # For users
//!
//! ```
//! use core::net::Ipv4Addr;
//! use mirage_types::arp::Arp;
//! use mirage_types::net::MacAddress;
//!
//! /// Resolves the gateway, for a diagnostic line.
//! async fn gateway_mac<A: Arp>(arp: &A, gateway: Ipv4Addr) -> Option<MacAddress> {
//!     arp.resolve(gateway).await.ok()
//! }
//! ```

use alloc::string::String;
use alloc::vec::Vec;
use core::net::Ipv4Addr;

use bytes::Bytes;

use crate::net::MacAddress;

error_family!("arp" {
    /// Nobody answered the requests in time.
    Timeout => "no ARP reply",
    /// Too many packets already wait for resolution.
    QueueFull => "ARP wait queue full",
    /// The link below failed.
    Device => "link failure",
    /// Anything else.
    Other => "ARP failure",
});

/// The ready-made error of this family.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ArpError {
    /// See [`ErrorKind::Timeout`].
    #[error("no ARP reply from {ip} after {attempts} requests")]
    Timeout {
        /// The address being resolved.
        ip: Ipv4Addr,
        /// Requests sent.
        attempts: u32,
    },
    /// See [`ErrorKind::QueueFull`].
    #[error("{waiting} resolutions already pending; refusing {ip}")]
    QueueFull {
        /// The address refused.
        ip: Ipv4Addr,
        /// The bound that was reached.
        waiting: usize,
    },
    /// See [`ErrorKind::Device`].
    #[error("link: {0}")]
    Device(String),
}

impl Error for ArpError {
    fn kind(&self) -> ErrorKind {
        match self {
            ArpError::Timeout { .. } => ErrorKind::Timeout,
            ArpError::QueueFull { .. } => ErrorKind::QueueFull,
            ArpError::Device(_) => ErrorKind::Device,
        }
    }
}

/// An ARP layer for one interface.
pub trait Arp {
    /// The layer's error.
    type Error: Error;

    /// The MAC address of `ip` on the link, from the cache or by asking.
    ///
    /// Cancel-safe: dropping the future forgets the wait; the request may
    /// still be answered and cached.
    async fn resolve(&self, ip: Ipv4Addr) -> Result<MacAddress, Self::Error>;

    /// Handles a received ARP packet (an Ethernet payload): learns from it
    /// and replies if it asks for one of our addresses. Malformed packets
    /// are dropped.
    async fn input(&self, packet: Bytes);

    /// The addresses this interface answers for.
    fn addresses(&self) -> Vec<Ipv4Addr>;

    /// Replaces the addresses this interface answers for and announces the
    /// new ones.
    async fn set_addresses(&self, addresses: &[Ipv4Addr]) -> Result<(), Self::Error>;
}

forward_handle!(Arp {
    type Error = T::Error;
    async fn resolve(&self, ip: Ipv4Addr) -> Result<MacAddress, Self::Error> {
        (**self).resolve(ip).await
    }
    async fn input(&self, packet: Bytes) {
        (**self).input(packet).await
    }
    fn addresses(&self) -> Vec<Ipv4Addr> {
        (**self).addresses()
    }
    async fn set_addresses(&self, addresses: &[Ipv4Addr]) -> Result<(), Self::Error> {
        (**self).set_addresses(addresses).await
    }
});
