//! ARP packets for IPv4 over Ethernet.
//!
//! Reading list:
//! - RFC 826: the packet format and the request/reply exchange.
//! - RFC 5227: address conflict detection (ARP probes have a zero sender
//!   protocol address; they parse like any request).
//! - RFC 5494 and the IANA "ARP Parameters" registry: hardware type 1
//!   (Ethernet), operation codes.
//!
//! Only Ethernet hardware addresses and IPv4 protocol addresses are
//! supported, so the view has fixed offsets and [`ArpPacket::new_checked`]
//! checks for the 28 bytes that format needs; [`ArpRepr::parse`] rejects
//! any other hardware type, protocol type, address length or operation.
//! See the [module contract](super#the-contract): after `new_checked`, no
//! getter panics.

use core::net::Ipv4Addr;

use mirage_types::ethernet::EtherType;
use mirage_types::net::MacAddress;

use super::{need, read_u16, write_u16, WireError};

mod field {
    use core::ops::Range;

    pub const HTYPE: usize = 0;
    pub const PTYPE: usize = 2;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: usize = 6;
    pub const SHA: Range<usize> = 8..14;
    pub const SPA: Range<usize> = 14..18;
    pub const THA: Range<usize> = 18..24;
    pub const TPA: Range<usize> = 24..28;
}

/// Bytes in an ARP packet for IPv4 over Ethernet.
pub const ARP_ETHERNET_IPV4_LEN: usize = 28;

/// ARP hardware type of Ethernet (RFC 826, IANA registry).
const HTYPE_ETHERNET: u16 = 1;

/// A view of an ARP packet for IPv4 over Ethernet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// Wraps a buffer without checking it; getters panic if it is shorter
    /// than 28 bytes.
    pub const fn new_unchecked(buffer: T) -> ArpPacket<T> {
        ArpPacket { buffer }
    }

    /// Wraps a buffer after checking it holds the 28 bytes of an
    /// Ethernet/IPv4 ARP packet (more, such as Ethernet padding, is fine).
    ///
    /// `Ok` means no getter panics; it does not mean the types are
    /// Ethernet and IPv4 ([`ArpRepr::parse`] checks that). Errors with
    /// [`WireError::Truncated`] on a shorter buffer.
    pub fn new_checked(buffer: T) -> Result<ArpPacket<T>, WireError> {
        need("ARP packet", buffer.as_ref().len(), ARP_ETHERNET_IPV4_LEN)?;
        Ok(ArpPacket { buffer })
    }

    /// The buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The hardware type (1 for Ethernet).
    pub fn hardware_type(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::HTYPE)
    }

    /// The protocol type, an EtherType (0x0800 for IPv4).
    pub fn protocol_type(&self) -> EtherType {
        EtherType(read_u16(self.buffer.as_ref(), field::PTYPE))
    }

    /// The hardware address length (6 for Ethernet).
    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }

    /// The protocol address length (4 for IPv4).
    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref()[field::PLEN]
    }

    /// The operation code (1 request, 2 reply).
    pub fn operation(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::OPER)
    }

    /// The sender's hardware address.
    pub fn source_hardware_addr(&self) -> MacAddress {
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&self.buffer.as_ref()[field::SHA]);
        MacAddress(mac)
    }

    /// The sender's protocol address.
    pub fn source_protocol_addr(&self) -> Ipv4Addr {
        ipv4(&self.buffer.as_ref()[field::SPA])
    }

    /// The target's hardware address (zero in a request).
    pub fn target_hardware_addr(&self) -> MacAddress {
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&self.buffer.as_ref()[field::THA]);
        MacAddress(mac)
    }

    /// The target's protocol address.
    pub fn target_protocol_addr(&self) -> Ipv4Addr {
        ipv4(&self.buffer.as_ref()[field::TPA])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    /// Sets the hardware type.
    pub fn set_hardware_type(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::HTYPE, value);
    }

    /// Sets the protocol type.
    pub fn set_protocol_type(&mut self, value: EtherType) {
        write_u16(self.buffer.as_mut(), field::PTYPE, value.0);
    }

    /// Sets the hardware address length.
    pub fn set_hardware_len(&mut self, value: u8) {
        self.buffer.as_mut()[field::HLEN] = value;
    }

    /// Sets the protocol address length.
    pub fn set_protocol_len(&mut self, value: u8) {
        self.buffer.as_mut()[field::PLEN] = value;
    }

    /// Sets the operation code.
    pub fn set_operation(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::OPER, value);
    }

    /// Sets the sender's hardware address.
    pub fn set_source_hardware_addr(&mut self, addr: MacAddress) {
        self.buffer.as_mut()[field::SHA].copy_from_slice(&addr.0);
    }

    /// Sets the sender's protocol address.
    pub fn set_source_protocol_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::SPA].copy_from_slice(&addr.octets());
    }

    /// Sets the target's hardware address.
    pub fn set_target_hardware_addr(&mut self, addr: MacAddress) {
        self.buffer.as_mut()[field::THA].copy_from_slice(&addr.0);
    }

    /// Sets the target's protocol address.
    pub fn set_target_protocol_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::TPA].copy_from_slice(&addr.octets());
    }
}

fn ipv4(bytes: &[u8]) -> Ipv4Addr {
    let mut octets = [0u8; 4];
    octets.copy_from_slice(bytes);
    Ipv4Addr::from(octets)
}

/// The ARP operations this stack handles (RFC 826).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ArpOperation {
    /// "Who has the target protocol address?" (code 1).
    Request,
    /// "The sender protocol address is at the sender hardware address"
    /// (code 2).
    Reply,
}

impl ArpOperation {
    /// The operation's code on the wire.
    pub const fn code(self) -> u16 {
        match self {
            ArpOperation::Request => 1,
            ArpOperation::Reply => 2,
        }
    }
}

/// A decoded ARP packet for IPv4 over Ethernet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ArpRepr {
    /// Request or reply.
    pub operation: ArpOperation,
    /// The sender's MAC address.
    pub source_hardware_addr: MacAddress,
    /// The sender's IPv4 address (0.0.0.0 in an RFC 5227 probe).
    pub source_protocol_addr: Ipv4Addr,
    /// The target's MAC address (ignored in requests, usually zero).
    pub target_hardware_addr: MacAddress,
    /// The IPv4 address asked about (request) or answered to (reply).
    pub target_protocol_addr: Ipv4Addr,
}

impl ArpRepr {
    /// Decodes a checked packet.
    ///
    /// Errors with [`WireError::Unsupported`] for a hardware type other
    /// than Ethernet, a protocol type other than IPv4, or an operation other
    /// than request and reply (RARP and InARP are not handled), and with
    /// [`WireError::Malformed`] if the address lengths are not 6 and 4.
    pub fn parse<T: AsRef<[u8]>>(packet: &ArpPacket<T>) -> Result<ArpRepr, WireError> {
        if packet.hardware_type() != HTYPE_ETHERNET {
            return Err(WireError::Unsupported { what: "ARP hardware type", value: packet.hardware_type().into() });
        }
        if packet.protocol_type() != EtherType::IPV4 {
            return Err(WireError::Unsupported { what: "ARP protocol type", value: packet.protocol_type().0.into() });
        }
        // RFC 826 lets the lengths vary with the types; for Ethernet/IPv4
        // anything but 6 and 4 is a broken packet, not another format.
        if packet.hardware_len() != 6 || packet.protocol_len() != 4 {
            return Err(WireError::Malformed { what: "ARP address lengths are not 6 and 4 for Ethernet/IPv4" });
        }
        let operation = match packet.operation() {
            1 => ArpOperation::Request,
            2 => ArpOperation::Reply,
            other => return Err(WireError::Unsupported { what: "ARP operation", value: other.into() }),
        };
        Ok(ArpRepr {
            operation,
            source_hardware_addr: packet.source_hardware_addr(),
            source_protocol_addr: packet.source_protocol_addr(),
            target_hardware_addr: packet.target_hardware_addr(),
            target_protocol_addr: packet.target_protocol_addr(),
        })
    }

    /// Bytes the packet takes: 28.
    pub const fn buffer_len(&self) -> usize {
        ARP_ETHERNET_IPV4_LEN
    }

    /// Writes the packet.
    ///
    /// Panics if the packet's buffer is shorter than [`Self::buffer_len`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut ArpPacket<T>) {
        packet.set_hardware_type(HTYPE_ETHERNET);
        packet.set_protocol_type(EtherType::IPV4);
        packet.set_hardware_len(6);
        packet.set_protocol_len(4);
        packet.set_operation(self.operation.code());
        packet.set_source_hardware_addr(self.source_hardware_addr);
        packet.set_source_protocol_addr(self.source_protocol_addr);
        packet.set_target_hardware_addr(self.target_hardware_addr);
        packet.set_target_protocol_addr(self.target_protocol_addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::vec;

    // A request laid out by hand from RFC 826: "who has 10.0.0.1? tell
    // 10.0.0.2 (52:54:00:12:34:56)", target hardware address zero.
    const REQUEST: [u8; 28] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x0a, 0x00, 0x00, 0x02,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x01,
    ];

    #[test]
    fn parses_a_request() {
        let repr = ArpRepr::parse(&ArpPacket::new_checked(&REQUEST[..]).unwrap()).unwrap();
        assert_eq!(
            repr,
            ArpRepr {
                operation: ArpOperation::Request,
                source_hardware_addr: MacAddress([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]),
                source_protocol_addr: Ipv4Addr::new(10, 0, 0, 2),
                target_hardware_addr: MacAddress::UNSPECIFIED,
                target_protocol_addr: Ipv4Addr::new(10, 0, 0, 1),
            }
        );
    }

    #[test]
    fn ethernet_padding_is_accepted() {
        let mut padded = REQUEST.to_vec();
        padded.resize(46, 0);
        assert!(ArpRepr::parse(&ArpPacket::new_checked(&padded[..]).unwrap()).is_ok());
    }

    #[test]
    fn rejects_what_is_not_ethernet_ipv4() {
        let parse = |bytes: &[u8]| ArpRepr::parse(&ArpPacket::new_checked(bytes).unwrap());
        let mut other = REQUEST;
        other[1] = 6; // IEEE 802 networks
        assert!(matches!(parse(&other), Err(WireError::Unsupported { what: "ARP hardware type", value: 6 })));
        let mut other = REQUEST;
        other[2..4].copy_from_slice(&[0x86, 0xdd]);
        assert!(matches!(parse(&other), Err(WireError::Unsupported { what: "ARP protocol type", value: 0x86dd })));
        let mut other = REQUEST;
        other[5] = 16;
        assert!(matches!(parse(&other), Err(WireError::Malformed { .. })));
        let mut other = REQUEST;
        other[7] = 3; // RARP request
        assert!(matches!(parse(&other), Err(WireError::Unsupported { what: "ARP operation", value: 3 })));
        assert!(matches!(ArpPacket::new_checked(&REQUEST[..27]), Err(WireError::Truncated { .. })));
    }

    fn repr_strategy() -> impl Strategy<Value = ArpRepr> {
        (any::<bool>(), any::<[u8; 6]>(), any::<[u8; 4]>(), any::<[u8; 6]>(), any::<[u8; 4]>()).prop_map(
            |(reply, sha, spa, tha, tpa)| ArpRepr {
                operation: if reply { ArpOperation::Reply } else { ArpOperation::Request },
                source_hardware_addr: MacAddress(sha),
                source_protocol_addr: Ipv4Addr::from(spa),
                target_hardware_addr: MacAddress(tha),
                target_protocol_addr: Ipv4Addr::from(tpa),
            },
        )
    }

    proptest! {
        #[test]
        fn emit_then_parse_round_trips(repr in repr_strategy()) {
            let mut buf = vec![0xa5u8; repr.buffer_len()];
            repr.emit(&mut ArpPacket::new_unchecked(&mut buf[..]));
            prop_assert_eq!(ArpRepr::parse(&ArpPacket::new_checked(&buf[..]).unwrap()).unwrap(), repr);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(p) = ArpPacket::new_checked(&bytes[..]) {
                let _ = (p.hardware_type(), p.protocol_type(), p.hardware_len(), p.protocol_len(), p.operation());
                let _ = (p.source_hardware_addr(), p.source_protocol_addr());
                let _ = (p.target_hardware_addr(), p.target_protocol_addr());
                let _ = ArpRepr::parse(&p);
            }
        }
    }
}
