//! The IP layer: addressing, routing, fragmentation and reassembly.
//!
//! The trait is generic over the address type ([`Ip::Addr`]): IPv4 today
//! ([`core::net::Ipv4Addr`]), IPv6 beside it later with the same trait.
//! Upper layers (ICMP, UDP, TCP) are written against [`Ip`] and so work
//! over either.
//!
//! # For implementors
//!
//! [`Ip::input`] validates headers (version, header length, total length,
//! checksum) and drops what fails, reassembles fragments within documented
//! bounds, and returns only complete datagrams for our addresses (or
//! broadcast/subscribed multicast). [`Ip::write`] fragments datagrams
//! larger than the link MTU, unless `dont_fragment` is set, in which case
//! it fails with [`ErrorKind::WouldFragment`].
//!
//! # For users
//!
//! ```
//! use mirage_types::ip::{Ip, IpProtocol, WriteOptions};
//!
//! /// Sends an experimental-protocol datagram that must not be fragmented.
//! async fn probe<I: Ip>(ip: &I, dst: I::Addr, payload: &[u8]) -> Result<(), I::Error> {
//!     let options = WriteOptions { dont_fragment: true, ..WriteOptions::default() };
//!     ip.write(dst, IpProtocol::EXPERIMENTAL, options, payload.len(), |buf| {
//!         buf.copy_from_slice(payload)
//!     })
//!     .await
//! }
//! ```

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::net::{IpAddr, Ipv4Addr};
use core::str::FromStr;

use bytes::Bytes;

error_family!("ip" {
    /// No route to the destination (no address configured, no gateway).
    NoRoute => "no route to host",
    /// The next hop did not answer link-layer resolution.
    HostUnreachable => "host unreachable",
    /// The datagram is larger than IP allows (65 535 bytes with header).
    TooLarge => "datagram too large",
    /// The datagram needs fragmenting but `dont_fragment` was asked.
    WouldFragment => "datagram would need fragmenting",
    /// The link below failed.
    Device => "link failure",
    /// Anything else.
    Other => "ip failure",
});

/// The ready-made error of this family.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IpError {
    /// See [`ErrorKind::NoRoute`].
    #[error("no route to {0}")]
    NoRoute(IpAddr),
    /// See [`ErrorKind::HostUnreachable`].
    #[error("{0} is unreachable: its link-layer address could not be resolved")]
    HostUnreachable(IpAddr),
    /// See [`ErrorKind::TooLarge`].
    #[error("datagram of {len} bytes exceeds the IP maximum of {max}")]
    TooLarge {
        /// Requested payload length.
        len: usize,
        /// Largest payload allowed.
        max: usize,
    },
    /// See [`ErrorKind::WouldFragment`].
    #[error("datagram of {len} bytes exceeds the path MTU of {mtu} and fragmenting is forbidden")]
    WouldFragment {
        /// Requested payload length.
        len: usize,
        /// Largest unfragmented payload toward the destination.
        mtu: usize,
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

impl Error for IpError {
    fn kind(&self) -> ErrorKind {
        match self {
            IpError::NoRoute(_) => ErrorKind::NoRoute,
            IpError::HostUnreachable(_) => ErrorKind::HostUnreachable,
            IpError::TooLarge { .. } => ErrorKind::TooLarge,
            IpError::WouldFragment { .. } => ErrorKind::WouldFragment,
            IpError::Other { kind, .. } => *kind,
        }
    }
}

/// The protocol field of an IPv4 header (next header in IPv6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IpProtocol(pub u8);

impl IpProtocol {
    /// ICMP for IPv4 (RFC 792).
    pub const ICMP: IpProtocol = IpProtocol(1);
    /// TCP (RFC 9293).
    pub const TCP: IpProtocol = IpProtocol(6);
    /// UDP (RFC 768).
    pub const UDP: IpProtocol = IpProtocol(17);
    /// ICMP for IPv6 (RFC 4443).
    pub const ICMPV6: IpProtocol = IpProtocol(58);
    /// Reserved for experimentation (RFC 3692).
    pub const EXPERIMENTAL: IpProtocol = IpProtocol(253);
}

/// An IPv4 address with a prefix length: an interface address and its
/// on-link network, written `10.0.0.2/24`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ipv4Cidr {
    address: Ipv4Addr,
    prefix_len: u8,
}

impl Ipv4Cidr {
    /// `address/prefix_len`; `None` if `prefix_len > 32`.
    pub const fn new(address: Ipv4Addr, prefix_len: u8) -> Option<Ipv4Cidr> {
        if prefix_len <= 32 {
            Some(Ipv4Cidr { address, prefix_len })
        } else {
            None
        }
    }

    /// The interface address.
    pub const fn address(&self) -> Ipv4Addr {
        self.address
    }

    /// The prefix length.
    pub const fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// The network mask, e.g. 255.255.255.0 for /24.
    pub fn netmask(&self) -> Ipv4Addr {
        let bits = u32::MAX.checked_shl(32 - u32::from(self.prefix_len)).unwrap_or(0);
        Ipv4Addr::from(bits)
    }

    /// The network's directed broadcast address.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.address) | !u32::from(self.netmask()))
    }

    /// Whether `ip` is on this network.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::from(self.netmask());
        u32::from(ip) & mask == u32::from(self.address) & mask
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix_len)
    }
}

/// The text was not an IPv4 address with a prefix length.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid IPv4 network {0:?}: expected ADDRESS/PREFIX like 10.0.0.2/24")]
pub struct ParseCidrError(pub String);

impl FromStr for Ipv4Cidr {
    type Err = ParseCidrError;
    fn from_str(s: &str) -> Result<Ipv4Cidr, ParseCidrError> {
        let err = || ParseCidrError(String::from(s));
        let (address, prefix) = s.split_once('/').ok_or_else(err)?;
        let address: Ipv4Addr = address.parse().map_err(|_| err())?;
        // `u8::from_str` accepts a leading '+'; a prefix is digits only.
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err());
        }
        let prefix_len: u8 = prefix.parse().map_err(|_| err())?;
        Ipv4Cidr::new(address, prefix_len).ok_or_else(err)
    }
}

/// A received datagram for us, reassembled and validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpPacket<A> {
    /// Sender.
    pub src: A,
    /// Destination: one of our addresses, broadcast or a subscribed group.
    pub dst: A,
    /// The upper-layer protocol.
    pub protocol: IpProtocol,
    /// Time to live (hop limit) as received.
    pub ttl: u8,
    /// The payload, sliced from the received frame(s).
    pub payload: Bytes,
}

/// How to send a datagram. `Default` gives the usual: the stack picks the
/// source, default TTL, fragmenting allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteOptions<A = Ipv4Addr> {
    /// Source address; `None` lets the stack choose by the route.
    pub src: Option<A>,
    /// TTL; `None` for the stack's default (64).
    pub ttl: Option<u8>,
    /// Refuse to fragment ([`ErrorKind::WouldFragment`]) and set DF.
    pub dont_fragment: bool,
}

// Not derived: that would require `A: Default`, which addresses are not.
impl<A> Default for WriteOptions<A> {
    fn default() -> Self {
        WriteOptions { src: None, ttl: None, dont_fragment: false }
    }
}

/// An IP layer.
pub trait Ip {
    /// The address type: [`Ipv4Addr`] or `Ipv6Addr`.
    type Addr: Copy + Eq + fmt::Debug + fmt::Display + Into<IpAddr>;
    /// The layer's error.
    type Error: Error;

    /// This interface's configured addresses (empty before configuration,
    /// e.g. while DHCP runs).
    fn addresses(&self) -> Vec<Self::Addr>;

    /// The source address the layer would use toward `dst`, or `None` if
    /// there is no route.
    fn source_for(&self, dst: Self::Addr) -> Option<Self::Addr>;

    /// The largest payload that reaches `dst` without fragmenting.
    fn mtu(&self, dst: Self::Addr) -> usize;

    /// Handles a received IP packet (an Ethernet payload). Returns the
    /// complete datagram when the packet completes one for us; `None` when
    /// it was dropped (invalid, not for us) or is a fragment of a datagram
    /// not yet complete.
    fn input(&self, packet: Bytes) -> Option<IpPacket<Self::Addr>>;

    /// Sends a datagram of `payload_len` bytes to `dst`; `fill` writes the
    /// payload and is called once (before fragmenting, if it is needed).
    ///
    /// `Ok` means handed to the link. Cancel-safe until `fill` has run.
    async fn write<R>(
        &self,
        dst: Self::Addr,
        protocol: IpProtocol,
        options: WriteOptions<Self::Addr>,
        payload_len: usize,
        fill: impl FnOnce(&mut [u8]) -> R,
    ) -> Result<R, Self::Error>;
}

forward_handle!(Ip {
    type Addr = T::Addr;
    type Error = T::Error;
    fn addresses(&self) -> Vec<Self::Addr> {
        (**self).addresses()
    }
    fn source_for(&self, dst: Self::Addr) -> Option<Self::Addr> {
        (**self).source_for(dst)
    }
    fn mtu(&self, dst: Self::Addr) -> usize {
        (**self).mtu(dst)
    }
    fn input(&self, packet: Bytes) -> Option<IpPacket<Self::Addr>> {
        (**self).input(packet)
    }
    async fn write<R>(
        &self,
        dst: Self::Addr,
        protocol: IpProtocol,
        options: WriteOptions<Self::Addr>,
        payload_len: usize,
        fill: impl FnOnce(&mut [u8]) -> R,
    ) -> Result<R, Self::Error> {
        (**self).write(dst, protocol, options, payload_len, fill).await
    }
});

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn cidr_parses_and_computes_network() {
        let c: Ipv4Cidr = "10.0.0.2/24".parse().unwrap();
        assert_eq!(c.address(), Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(c.netmask(), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(c.broadcast(), Ipv4Addr::new(10, 0, 0, 255));
        assert!(c.contains(Ipv4Addr::new(10, 0, 0, 200)));
        assert!(!c.contains(Ipv4Addr::new(10, 0, 1, 1)));
        assert_eq!(c.to_string(), "10.0.0.2/24");
        let all: Ipv4Cidr = "1.2.3.4/0".parse().unwrap();
        assert_eq!(all.netmask(), Ipv4Addr::UNSPECIFIED);
        assert!(all.contains(Ipv4Addr::new(8, 8, 8, 8)));
        let host: Ipv4Cidr = "1.2.3.4/32".parse().unwrap();
        assert_eq!(host.broadcast(), Ipv4Addr::new(1, 2, 3, 4));
    }

    #[test]
    fn cidr_rejects_malformed_text() {
        for bad in ["10.0.0.2", "10.0.0.2/33", "10.0.0.2/", "10.0.0/24", "10.0.0.2/+4", "/24", "10.0.0.2/2 4"] {
            let e = bad.parse::<Ipv4Cidr>().unwrap_err();
            assert!(e.to_string().contains("ADDRESS/PREFIX"), "{bad}: {e}");
        }
    }
}
