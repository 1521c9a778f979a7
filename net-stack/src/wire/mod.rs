//! Wire formats: zero-copy views of packets and their decoded values.
//!
//! Each protocol has one file and follows the same pattern (after smoltcp):
//!
//! - `XxxPacket<T: AsRef<[u8]>>` is a view over a byte buffer. Getters read
//!   fields straight from the bytes, setters (on `T: AsMut<[u8]>`) write
//!   them, `payload()`/`payload_mut()` give the bytes the header carries.
//! - `XxxPacket::new_unchecked` wraps any buffer; its getters may panic if
//!   the buffer is too short. `XxxPacket::new_checked` validates lengths
//!   (the buffer and every length field the getters and `payload()` use)
//!   and is the constructor for input from outside.
//! - `XxxRepr` is the decoded header: `parse` checks what the protocol
//!   requires (version, checksum, supported types) and returns a
//!   [`WireError`] that says what was wrong; `emit` writes the header into a
//!   packet view of at least `buffer_len()` bytes.
//!
//! # The contract
//!
//! **After `new_checked` returns `Ok`, no getter and no `payload()` of that
//! view panics, whatever the bytes are, and neither does `Repr::parse`.**
//! Property tests in each file feed arbitrary bytes through `new_checked`,
//! every getter and `parse` to hold this, and the fuzz targets in
//! `net-stack/fuzz` do the same with coverage guidance.
//!
//! `emit` is for values our own code built: it panics if the packet view is
//! shorter than `buffer_len()`, which is a bug in the caller, not bad input.

pub mod arp;
pub mod checksum;
pub mod dhcp;
pub mod ethernet;
pub mod icmpv4;
pub mod ipv4;
pub mod ipv6;
pub mod tcp;
pub mod udp;

pub use arp::{ArpOperation, ArpPacket, ArpRepr};
pub use dhcp::{DhcpMessageType, DhcpPacket, DhcpRepr};
pub use ethernet::{EthernetPacket, EthernetRepr};
pub use icmpv4::{Icmpv4DstUnreachable, Icmpv4Packet, Icmpv4Repr, Icmpv4TimeExceeded};
pub use ipv4::{Ipv4Packet, Ipv4Repr};
pub use ipv6::{Ipv6Packet, Ipv6Repr};
pub use tcp::{SeqNumber, TcpFlags, TcpOptions, TcpPacket, TcpRepr};
pub use udp::{UdpPacket, UdpRepr};

/// Why bytes are not a valid packet of some protocol.
///
/// Every variant names the protocol (`what`, such as "IPv4 header") so a
/// log line says where the packet went wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The buffer or a length field is shorter than the format needs.
    #[error("{what} truncated: {len} bytes where at least {needed} are needed")]
    Truncated {
        /// Which structure was cut short.
        what: &'static str,
        /// Bytes available (or claimed by a length field).
        len: usize,
        /// Bytes the structure needs.
        needed: usize,
    },
    /// The checksum does not match the contents.
    #[error("{what}: checksum mismatch")]
    BadChecksum {
        /// Which checksum failed.
        what: &'static str,
    },
    /// An IP header of another version than the one parsed.
    #[error("IP version {found} where {expected} was expected")]
    BadVersion {
        /// The version found in the header.
        found: u8,
        /// The version this parser handles.
        expected: u8,
    },
    /// A well-formed value this implementation does not handle (an ARP
    /// hardware type other than Ethernet, an unknown ICMP type).
    #[error("unsupported {what} {value:#x}")]
    Unsupported {
        /// Which field.
        what: &'static str,
        /// The value found.
        value: u32,
    },
    /// A field holds a value the format forbids.
    #[error("malformed packet: {what}")]
    Malformed {
        /// What rule the packet breaks.
        what: &'static str,
    },
}

/// Checks that `len` bytes hold at least `needed`, naming `what` otherwise.
pub(crate) fn need(what: &'static str, len: usize, needed: usize) -> Result<(), WireError> {
    if len < needed {
        Err(WireError::Truncated { what, len, needed })
    } else {
        Ok(())
    }
}

/// Reads a big-endian `u16` from the two bytes at `at`.
///
/// Callers pass offsets inside a length they checked; a short slice is a
/// bug in this module and panics.
pub(crate) fn read_u16(bytes: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([bytes[at], bytes[at + 1]])
}

/// Writes `value` big-endian into the two bytes at `at`.
pub(crate) fn write_u16(bytes: &mut [u8], at: usize, value: u16) {
    bytes[at..at + 2].copy_from_slice(&value.to_be_bytes());
}
